/*
 * proto_smtp.c - SMTP for mailtlsd: the plaintext STARTTLS dialogue
 * (RFC 3207: greeting, EHLO, STARTTLS; never HELO), the greeting written
 * for the client, and the pre-login filter.
 *
 * SMTP answers commands in order (several may be in flight with
 * PIPELINING, RFC 2920), so the filter keeps a FIFO of what each forwarded
 * command expects.  The reply to EHLO is held until its last line so that
 * the STARTTLS line can be dropped and the 250-/250 continuation fixed;
 * every other reply streams line by line.  AUTH (RFC 4954) is a lock-step
 * exchange of 334 challenges and client lines; after a 354 to DATA the
 * client's bytes are the message up to CRLF.CRLF; after BDAT n, n raw
 * bytes (RFC 3030).  The filter is done after 235.  A refusal of AUTH is
 * reported (proto_filter_on_refusal()), and mailtlsd's words become one
 * more line of it.
 *
 * With OAuth2 (proto_oauth2.c) the filter takes AUTH PLAIN and AUTH LOGIN
 * itself, answering their 334 challenges, and logs in with AUTH XOAUTH2
 * or OAUTHBEARER and an initial response; its answers and the login's
 * outcome keep their places in the FIFO.  The EHLO reply offers AUTH
 * PLAIN LOGIN.  Only the client's EHLO tells the server's mechanisms:
 * an AUTH before any EHLO is refused, as a server would.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "log.h"
#include "proto.h"
#include "proto_impl.h"

#define SMTP_EHLO_LINES		128	/* lines of an EHLO reply held */
#define SMTP_EHLO_BYTES		16384	/* and its bytes */

/*
 * 454 is what RFC 3207 gives a server that cannot start TLS, so a client
 * that insists on STARTTLS reports a TLS problem to its user, which is the
 * right diagnosis (it should use no encryption toward mailtlsd); 502 would
 * read as an unknown command.
 */
#define SMTP_STARTTLS_REFUSAL	"454 4.7.0 STARTTLS not available: " \
				"mailtlsd already uses TLS to the server\r\n"

/* The reply a forwarded command expects. */
enum smtp_expect {
	SMTP_EXP_REPLY = 0,	/* one reply */
	SMTP_EXP_EHLO,		/* EHLO's reply: held, STARTTLS dropped */
	SMTP_EXP_AUTH,		/* 334 challenges until the result */
	SMTP_EXP_DATA,		/* 354 opens the message */
	SMTP_EXP_OAUTH2,	/* OAuth2: the login, or its refusal */
	SMTP_EXP_LOCAL,		/* the daemon's own answer to STARTTLS */
	/* OAuth2: more of the daemon's own answers, in smtp_answers. */
	SMTP_EXP_GO_PLAIN,	/* AUTH PLAIN: the response is due */
	SMTP_EXP_GO_USER,	/* AUTH LOGIN: the user name is due */
	SMTP_EXP_GO_PASS,	/* AUTH LOGIN: the password is due */
	SMTP_EXP_SYNTAX,
	SMTP_EXP_EHLO_FIRST,
	SMTP_EXP_MECH,
	SMTP_EXP_CANCELLED,
	SMTP_EXP_BAD_BASE64,
	SMTP_EXP_MALFORMED,
	SMTP_EXP_AUTHZID,
	SMTP_EXP_TOO_LONG,
	SMTP_EXP_BAD_USER
};

/* The daemon's own answers, by the type of their FIFO entry. */
static const char *const smtp_answers[] = {
	[SMTP_EXP_LOCAL] = SMTP_STARTTLS_REFUSAL,
	[SMTP_EXP_GO_PLAIN] = "334 \r\n",
	[SMTP_EXP_GO_USER] = "334 VXNlcm5hbWU6\r\n",	/* "Username:" */
	[SMTP_EXP_GO_PASS] = "334 UGFzc3dvcmQ6\r\n",	/* "Password:" */
	[SMTP_EXP_SYNTAX] = "501 5.5.4 mailtlsd: malformed AUTH command\r\n",
	[SMTP_EXP_EHLO_FIRST] = "503 5.5.1 mailtlsd: send EHLO first\r\n",
	[SMTP_EXP_MECH] = "504 5.5.4 mailtlsd logs in to the server with "
	    "OAuth2 itself: use AUTH PLAIN or AUTH LOGIN\r\n",
	[SMTP_EXP_CANCELLED] = "501 5.7.0 mailtlsd: authentication "
	    "cancelled\r\n",
	[SMTP_EXP_BAD_BASE64] = "501 5.5.2 mailtlsd: the response is not "
	    "valid base64\r\n",
	[SMTP_EXP_MALFORMED] = "501 5.5.2 mailtlsd: malformed PLAIN "
	    "response\r\n",
	[SMTP_EXP_AUTHZID] = "535 5.7.8 mailtlsd: logging in as another user "
	    "(an authorization identity) is not supported\r\n",
	[SMTP_EXP_TOO_LONG] = "535 5.7.8 mailtlsd: user name or password "
	    "longer than " PROTO_USER_MAX_TEXT " bytes\r\n",
	[SMTP_EXP_BAD_USER] = "535 5.7.8 mailtlsd: the user name is empty or "
	    "holds control characters\r\n",
};

/* Where the client's stream is. */
enum smtp_client_state {
	SMTP_CLI_COMMAND = 0,	/* a command */
	SMTP_CLI_WAIT,		/* AUTH or DATA waits for the server */
	SMTP_CLI_SASL,		/* one line of SASL data */
	SMTP_CLI_BODY,		/* message data up to CRLF.CRLF */
	SMTP_CLI_CHUNK,		/* BDAT bytes */
	SMTP_CLI_PLAIN,		/* OAuth2: the PLAIN response, here */
	SMTP_CLI_LOGIN_USER,	/* OAuth2: AUTH LOGIN's user name, here */
	SMTP_CLI_LOGIN_PASS	/* OAuth2: and its password */
};

/* The filter's view of both streams. */
struct smtp_filter {
	struct proto_fifo	 fifo;
	int			 srv_code;	/* open multi-line reply */
	int			 srv_lines;	/* its lines so far */
	struct evbuffer		*hold;		/* EHLO lines but the last */
	struct evbuffer		*last;		/* last EHLO line kept */
	int			 authed;	/* login succeeded */
	int			 mail_taken;	/* 354 to DATA */

	/* OAuth2: what the EHLO reply under way offers. */
	int			 ehlo_sent;	/* the client sent EHLO */
	int			 ehlo_auth;	/* an AUTH line was seen */
	unsigned		 ehlo_mechs;	/* PROTO_MECH_* of AUTH */

	enum smtp_client_state	 cli;
	int			 cli_bol;	/* body: at a line start */
	int			 cli_cr;	/* body: last byte was CR */
	uint64_t		 cli_chunk;	/* BDAT bytes due */
};

/*
 * Parse a reply line: three digits and a space, a hyphen (more lines
 * follow) or nothing.  0 with the code, or -1.
 */
static int
smtp_reply_parse(const char *line, size_t len, int *code, int *more)
{
	int	i;

	if (len < 3)
		return -1;
	for (i = 0; i < 3; i++)
		if (line[i] < '0' || line[i] > '9')
			return -1;
	if (len > 3 && line[3] != ' ' && line[3] != '-')
		return -1;
	*code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + line[2] - '0';
	*more = len > 3 && line[3] == '-';
	return 0;
}

/* The keyword of an EHLO reply line (after "250-"): its length. */
static size_t
smtp_keyword(const char *line, size_t len, const char **kw)
{
	if (len <= 4) {
		*kw = line + len;
		return 0;
	}
	*kw = line + 4;
	return proto_word_len(line + 4, len - 4);
}

/* The greeting: 220 (on one or more lines), then EHLO. */
static enum proto_verdict
smtp_dialogue_greeting(struct proto_dialogue *d, const char *line,
    size_t len, int code, int more, struct evbuffer *to_server)
{
	if (code != 220)
		return proto_dialogue_fail(d, "server refused the connection",
		    line, len);
	if (more)
		return PROTO_MORE;
	d->reply_lines = 0;
	return proto_dialogue_send(d, to_server, DLG_EHLO_SENT,
	    "EHLO %s\r\n", d->ehlo_name);
}

/* The reply to EHLO: 250 with STARTTLS among the keywords. */
static enum proto_verdict
smtp_dialogue_ehlo(struct proto_dialogue *d, const char *line, size_t len,
    int code, int more, struct evbuffer *to_server)
{
	const char	*kw;
	size_t		 n;

	if (code != 250)
		return proto_dialogue_fail(d, "server refused EHLO (never "
		    "falling back to HELO)", line, len);
	/* The first line names the server; keywords follow. */
	n = smtp_keyword(line, len, &kw);
	if (d->reply_lines++ > 0 && proto_word_is(kw, n, "STARTTLS"))
		d->starttls = 1;
	if (more)
		return PROTO_MORE;
	if (!d->starttls)
		return proto_dialogue_fail(d, "server did not offer STARTTLS",
		    NULL, 0);
	return proto_dialogue_send(d, to_server, DLG_STARTTLS_SENT,
	    "STARTTLS\r\n");
}

/* The reply to STARTTLS: 220 goes ahead. */
static enum proto_verdict
smtp_dialogue_reply(struct proto_dialogue *d, const char *line, size_t len,
    int code, int more)
{
	if (code != 220)
		return proto_dialogue_fail(d, "server refused STARTTLS", line,
		    len);
	if (more)
		return PROTO_MORE;
	d->state = DLG_UPGRADED;
	return PROTO_UPGRADE;
}

/* One server line of the SMTP dialogue. */
static enum proto_verdict
smtp_dialogue_line(struct proto_dialogue *d, const char *line, size_t len,
    struct evbuffer *to_server)
{
	int	code, more;

	if (smtp_reply_parse(line, len, &code, &more) != 0)
		return proto_dialogue_fail(d, "malformed SMTP reply", line,
		    len);
	if (d->reply_code != 0 && code != d->reply_code)
		return proto_dialogue_fail(d, "malformed multi-line SMTP "
		    "reply (the code changed)", line, len);
	d->reply_code = more ? code : 0;
	switch (d->state) {
	case DLG_GREETING:
		return smtp_dialogue_greeting(d, line, len, code, more,
		    to_server);
	case DLG_EHLO_SENT:
		return smtp_dialogue_ehlo(d, line, len, code, more,
		    to_server);
	case DLG_STARTTLS_SENT:
		return smtp_dialogue_reply(d, line, len, code, more);
	case DLG_STLS_SENT:
	case DLG_UPGRADED:
	case DLG_FAILED:
		break;
	}
	fatalx("smtp: dialogue line in state %s", proto_dialogue_state(d));
}

/* The greeting for the client. */
static int
smtp_write_greeting(struct evbuffer *out, const struct service_config *sc)
{
	return evbuffer_add_printf(out, "220 %s ESMTP ready (mailtlsd, TLS "
	    "to the server)\r\n", sc->server_name) < 0 ? -1 : 0;
}

/* A new filter. */
static void *
smtp_filter_new(void)
{
	struct smtp_filter	*sf;

	if ((sf = calloc(1, sizeof(*sf))) == NULL)
		return NULL;
	if ((sf->hold = evbuffer_new()) == NULL ||
	    (sf->last = evbuffer_new()) == NULL) {
		if (sf->hold != NULL)
			evbuffer_free(sf->hold);
		free(sf);
		return NULL;
	}
	return sf;
}

/* Free a filter. */
static void
smtp_filter_free(void *arg)
{
	struct smtp_filter	*sf = arg;

	if (sf == NULL)
		return;
	evbuffer_free(sf->hold);
	evbuffer_free(sf->last);
	free(sf);
}

/* The server's greeting comes first: one reply. */
static void
smtp_filter_expect_greeting(struct proto_filter *f)
{
	struct smtp_filter	*sf = f->impl;

	proto_fifo_push(&sf->fifo, SMTP_EXP_REPLY);
}

/* The daemon's own answer to an entry of the FIFO (proto_local_fn). */
static int
smtp_local(struct proto_filter *f, int type, struct evbuffer *to_client)
{
	return proto_fifo_local(f, type, SMTP_EXP_OAUTH2, SMTP_EXP_LOCAL,
	    smtp_answers, sizeof(smtp_answers) / sizeof(smtp_answers[0]),
	    to_client);
}

/*
 * Between two replies: proto_fifo_settle(), not inside a multi-line one;
 * and a login's token that waited for the EHLO reply goes on.
 */
static int
smtp_settle(struct proto_filter *f, struct evbuffer *to_client)
{
	struct smtp_filter	*sf = f->impl;

	if (sf->srv_code != 0)
		return 0;
	if (proto_fifo_settle(f, &sf->fifo, smtp_local, sf->authed,
	    to_client) != 0)
		return -1;
	return proto_oauth2_proceed(f);
}

/* Move the held last line with c (' ' or '-') after its code. */
static int
smtp_last_marker(struct evbuffer *last, struct evbuffer *out, char c)
{
	char	next = '\0';

	if (proto_move(last, out, 3) != 0)
		return -1;
	evbuffer_copyout(last, &next, 1);
	if ((next == ' ' || next == '-') && evbuffer_drain(last, 1) != 0)
		return -1;
	if (evbuffer_add(out, &c, 1) != 0)
		return -1;
	return evbuffer_add_buffer(out, last);
}

/*
 * Write the held EHLO reply.  When its last line was dropped, the last
 * line kept becomes the last line: "250-" turns into "250 ".  With
 * add_auth, an AUTH line the filter serves ends the reply.
 */
static int
smtp_ehlo_flush(struct smtp_filter *sf, struct evbuffer *out,
    int last_dropped, int add_auth)
{
	if (evbuffer_add_buffer(out, sf->hold) != 0)
		return -1;
	if (add_auth)
		return smtp_last_marker(sf->last, out, '-') != 0 ? -1 :
		    evbuffer_add(out, "250 AUTH PLAIN LOGIN\r\n", 22);
	if (!last_dropped)
		return evbuffer_add_buffer(out, sf->last);
	return smtp_last_marker(sf->last, out, ' ');
}

/*
 * OAuth2: what to do with an EHLO keyword line: 0 keep, 1 drop, 2 replace
 * with the AUTH line the filter serves.  AUTH lines name the server's
 * mechanisms; the client sees one AUTH PLAIN LOGIN, and no AUTH= line
 * (the old form of it).
 */
static int
smtp_ehlo_oauth2(struct smtp_filter *sf, const char *kw, size_t n,
    const char *line, size_t len)
{
	const char	*rest = kw + n;
	size_t		 rlen = len - (size_t)(rest - line);

	if (proto_word_is(kw, n, "AUTH")) {
		sf->ehlo_mechs |= proto_oauth2_mechs(rest, rlen);
		if (sf->ehlo_auth)
			return 1;
		sf->ehlo_auth = 1;
		return 2;
	}
	if (n > 5 && proto_word_is(kw, 5, "AUTH=")) {
		sf->ehlo_mechs |= proto_oauth2_mech(kw + 5, n - 5) |
		    proto_oauth2_mechs(rest, rlen);
		return 1;
	}
	return 0;
}

/* One line of a 250 reply to EHLO: held, or dropped when it is STARTTLS. */
static int
smtp_ehlo_line(struct proto_filter *f, struct smtp_filter *sf,
    struct evbuffer *in, struct evbuffer *out, const char *line, size_t len,
    size_t eol, int more)
{
	const char	*kw;
	size_t		 n = smtp_keyword(line, len, &kw);
	int		 drop, how = 0;

	if (sf->srv_lines >= SMTP_EHLO_LINES)
		return proto_filter_fail(f, "EHLO reply longer than 128 lines");
	if (evbuffer_get_length(sf->hold) + evbuffer_get_length(sf->last) +
	    len + eol > SMTP_EHLO_BYTES)
		return proto_filter_fail(f, "EHLO reply longer than 16384 "
		    "bytes");
	if (sf->srv_lines == 0) {
		sf->ehlo_auth = 0;
		sf->ehlo_mechs = 0;
	} else if (f->oauth2 != NULL)
		how = smtp_ehlo_oauth2(sf, kw, n, line, len);
	drop = how == 1 || (sf->srv_lines > 0 && proto_token_hidden(kw, n));
	if (drop) {
		if (evbuffer_drain(in, len + eol) != 0)
			return proto_filter_fail(f, "out of memory");
	} else if (evbuffer_add_buffer(sf->hold, sf->last) != 0 ||
	    (how == 2 ? evbuffer_add_printf(sf->last, "250%cAUTH PLAIN "
	    "LOGIN\r\n", more ? '-' : ' ') < 0 ||
	    evbuffer_drain(in, len + eol) != 0 :
	    proto_move(in, sf->last, len + eol) != 0))
		return proto_filter_fail(f, "out of memory");
	if (more)
		return 0;
	proto_oauth2_caps(f, sf->ehlo_mechs);
	if (smtp_ehlo_flush(sf, out, drop, f->oauth2 != NULL &&
	    !sf->ehlo_auth) != 0)
		return proto_filter_fail(f, "out of memory");
	return 0;
}

/* A complete reply arrived: what it means for the streams. */
static void
smtp_reply_done(struct smtp_filter *sf, int code)
{
	switch (proto_fifo_head(&sf->fifo)) {
	case SMTP_EXP_REPLY:
	case SMTP_EXP_EHLO:
		break;
	case SMTP_EXP_AUTH:
		if (code == 334) {
			if (sf->cli == SMTP_CLI_WAIT)
				sf->cli = SMTP_CLI_SASL;
			return;		/* the exchange goes on */
		}
		sf->authed = code == 235;
		sf->cli = SMTP_CLI_COMMAND;
		break;
	case SMTP_EXP_DATA:
		if (code == 354) {
			sf->mail_taken = 1;
			sf->cli = SMTP_CLI_BODY;
			sf->cli_bol = 1;
			sf->cli_cr = 0;
		} else
			sf->cli = SMTP_CLI_COMMAND;
		break;
	default:
		return;		/* unsolicited (421 before closing) */
	}
	proto_fifo_pop(&sf->fifo);
}

/*
 * OAuth2: a reply line for the login under way: a challenge, the success
 * (relayed), or the failure, whose lines become the error text.  0 or -1.
 */
static int
smtp_oauth2_line(struct proto_filter *f, struct smtp_filter *sf,
    struct evbuffer *in, struct evbuffer *out, const char *line, size_t len,
    size_t eol, int code, int more)
{
	int	r = 0;

	if (code == 235) {
		if (proto_move(in, out, len + eol) != 0)
			return proto_filter_fail(f, "out of memory");
		if (!more) {
			proto_oauth2_succeeded(f);
			sf->authed = 1;
			proto_fifo_pop(&sf->fifo);
		}
		return 0;
	}
	if (code == 334 && !more)
		r = proto_oauth2_challenge(f, line + (len > 4 ? 4 : len),
		    len > 4 ? len - 4 : 0);
	else if (code != 334) {
		/* The first line whole (codes kept), then the texts. */
		if (sf->srv_code == 0)
			proto_oauth2_error_text(f, line, len);
		else if (len > 4)
			proto_oauth2_error_text(f, line + 4, len - 4);
		if (!more)
			proto_oauth2_rejected(f);
	}
	if (r == 0 && evbuffer_drain(in, len + eol) != 0)
		return proto_filter_fail(f, "out of memory");
	return r;
}

/*
 * Whether a final reply to AUTH with this code refuses the login: 4xx and
 * 5xx but 421 (the server closes) and 500-504 (syntax, sequence, an
 * unknown mechanism, a cancelled exchange), which judge no credentials.
 */
static int
smtp_refusal_code(int code)
{
	return code >= 400 && code < 600 && code != 421 &&
	    !(code >= 500 && code <= 504);
}

/*
 * The enhanced status code (RFC 3463: class.subject.detail, its class the
 * reply's) at the start of text: its length, or 0.
 */
static size_t
smtp_enhanced_code(const char *text, size_t len, int code)
{
	size_t	i = 2, part, digits;

	if (len < 5 || text[0] != '0' + code / 100 || text[1] != '.')
		return 0;
	for (part = 0; part < 2; part++) {
		for (digits = 0; i < len && digits < 3 && text[i] >= '0' &&
		    text[i] <= '9'; i++)
			digits++;
		if (digits == 0)
			return 0;
		if (part == 0 && (i == len || text[i++] != '.'))
			return 0;
	}
	return i == len || text[i] == ' ' ? i : 0;
}

/*
 * A line of the server's refusal of the client's AUTH: its text is kept
 * and, with the last line, reported.  The words mailtlsd adds end the
 * same reply as one more line: the server's last line becomes "ddd-..."
 * and "ddd X.Y.Z words" follows, with its codes (RFC 5321 4.2.1).
 */
static int
smtp_refusal_line(struct proto_filter *f, struct smtp_filter *sf,
    struct evbuffer *in, struct evbuffer *out, const char *line, size_t len,
    size_t eol, int code, int more)
{
	char		 words[PROTO_REFUSAL_MAX + 1];
	const char	*add, *text = line + (len > 4 ? 4 : len);
	size_t		 n = len > 4 ? len - 4 : 0, enhanced;

	if (sf->srv_code == 0)
		proto_refusal_add(f, 1, line, len);
	else
		proto_refusal_add(f, 0, text, n);
	if (more || (add = proto_refusal_report(f, words,
	    sizeof(words))) == NULL)
		return proto_move(in, out, len + eol);
	enhanced = smtp_enhanced_code(text, n, code);
	if (evbuffer_add(out, line, 3) != 0 || evbuffer_add(out, "-", 1) != 0 ||
	    evbuffer_add(out, text, n) != 0 ||
	    evbuffer_add(out, line + len, eol) != 0 ||
	    evbuffer_add_printf(out, "%d %.*s%s%s\r\n", code, (int)enhanced,
	    text, enhanced > 0 ? " " : "", add) < 0)
		return -1;
	return evbuffer_drain(in, len + eol);
}

/* One reply line from the server. */
static int
smtp_server_line(struct proto_filter *f, struct evbuffer *in,
    struct evbuffer *out, const char *line, size_t len, size_t eol)
{
	struct smtp_filter	*sf = f->impl;
	int			 code, more;

	if (smtp_reply_parse(line, len, &code, &more) != 0)
		return proto_filter_fail(f, "malformed SMTP reply from the "
		    "server");
	/*
	 * A reply during message data, other than 421 before a close, means
	 * the server saw the data end where mailtlsd did not (a client that
	 * ends lines with a bare LF): follow the server, which answered it.
	 */
	if (sf->cli == SMTP_CLI_BODY && code != 421)
		sf->cli = SMTP_CLI_COMMAND;
	if (sf->srv_code != 0 && code != sf->srv_code)
		return proto_filter_fail(f, "malformed multi-line SMTP reply "
		    "from the server (the code changed)");
	if (proto_fifo_head(&sf->fifo) == SMTP_EXP_OAUTH2 &&
	    proto_oauth2_awaits_server(f)) {
		if (smtp_oauth2_line(f, sf, in, out, line, len, eol, code,
		    more) != 0)
			return -1;
		sf->srv_code = more ? code : 0;
		sf->srv_lines = more ? sf->srv_lines + 1 : 0;
		return 0;
	}
	if (proto_fifo_head(&sf->fifo) == SMTP_EXP_EHLO && code == 250) {
		if (smtp_ehlo_line(f, sf, in, out, line, len, eol, more) != 0)
			return -1;
	} else if (proto_fifo_head(&sf->fifo) == SMTP_EXP_AUTH &&
	    smtp_refusal_code(code)) {
		if (smtp_refusal_line(f, sf, in, out, line, len, eol, code,
		    more) != 0)
			return proto_filter_fail(f, "out of memory");
	} else if (proto_move(in, out, len + eol) != 0)
		return proto_filter_fail(f, "out of memory");
	sf->srv_code = more ? code : 0;
	sf->srv_lines = more ? sf->srv_lines + 1 : 0;
	if (!more)
		smtp_reply_done(sf, code);
	f->mail_taken = sf->mail_taken;
	return 0;
}

/* Move server bytes to the client. */
static int
smtp_filter_server(struct proto_filter *f, struct evbuffer *in,
    struct evbuffer *out)
{
	return proto_fifo_server(f, in, out, smtp_settle, smtp_server_line);
}

/*
 * BDAT's chunk: the client state for it, or -1 when the size is a number
 * too large to follow (a size that is no number gets a 501, no chunk).
 */
static int
smtp_bdat(struct smtp_filter *sf, const char *arg, size_t len)
{
	size_t	n = proto_word_len(arg, len), i;

	if (proto_parse_number(arg, n, PROTO_PAYLOAD_MAX, &sf->cli_chunk) == 0)
		return sf->cli_chunk > 0 ? SMTP_CLI_CHUNK : SMTP_CLI_COMMAND;
	for (i = 0; i < n; i++)
		if (arg[i] < '0' || arg[i] > '9')
			return SMTP_CLI_COMMAND;
	return n > 0 ? -1 : SMTP_CLI_COMMAND;
}

/* What a client command expects; notes the client's next state. */
static int
smtp_client_expect(struct smtp_filter *sf, const char *line, size_t len)
{
	size_t	verb = proto_word_len(line, len);
	int	cli;

	if (proto_word_is(line, verb, "STARTTLS"))
		return SMTP_EXP_LOCAL;
	if (proto_word_is(line, verb, "EHLO") ||
	    proto_word_is(line, verb, "LHLO")) {
		sf->ehlo_sent = 1;
		return SMTP_EXP_EHLO;
	}
	if (proto_word_is(line, verb, "HELO"))
		sf->ehlo_sent = 0;	/* no extensions, no AUTH */
	if (proto_word_is(line, verb, "AUTH")) {
		sf->cli = SMTP_CLI_WAIT;
		return SMTP_EXP_AUTH;
	}
	if (proto_word_is(line, verb, "DATA")) {
		sf->cli = SMTP_CLI_WAIT;
		return SMTP_EXP_DATA;
	}
	if (proto_word_is(line, verb, "BDAT") && verb < len) {
		if ((cli = smtp_bdat(sf, line + verb + 1, len - verb - 1)) < 0)
			return -1;
		sf->cli = cli;
	}
	return SMTP_EXP_REPLY;
}

/* OAuth2: the FIFO entry for credentials taken, or for their refusal. */
static enum smtp_expect
smtp_login_taken(struct proto_filter *f, enum proto_cred r)
{
	switch (r) {
	case PROTO_CRED_OK:
		proto_oauth2_wanted(f);
		return SMTP_EXP_OAUTH2;
	case PROTO_CRED_BAD_BASE64:
		return SMTP_EXP_BAD_BASE64;
	case PROTO_CRED_MALFORMED:
		return SMTP_EXP_MALFORMED;
	case PROTO_CRED_AUTHZID:
		return SMTP_EXP_AUTHZID;
	case PROTO_CRED_TOO_LONG:
		return SMTP_EXP_TOO_LONG;
	case PROTO_CRED_BAD_USER:
		break;
	}
	return SMTP_EXP_BAD_USER;
}

/*
 * OAuth2: AUTH from the client (args after its name), taken here: PLAIN
 * or LOGIN, each with an initial response ("=" is an empty one, RFC 4954
 * 4) or after the filter's 334; any other mechanism is refused (504), so
 * that the client falls back to one of these.  The FIFO entry of the
 * answer.
 */
static enum smtp_expect
smtp_client_auth(struct proto_filter *f, struct smtp_filter *sf,
    const char *args, size_t len)
{
	size_t		 mech = proto_word_len(args, len), ir;
	const char	*resp;
	enum proto_cred	 r;

	proto_oauth2_forget(f);
	if (!sf->ehlo_sent)
		return SMTP_EXP_EHLO_FIRST;
	ir = mech < len ? len - mech - 1 : 0;
	if (mech == 0 || (mech < len && (ir == 0 ||
	    memchr(args + mech + 1, ' ', ir) != NULL)))
		return SMTP_EXP_SYNTAX;
	resp = args + mech + (mech < len);
	if (ir == 1 && resp[0] == '=')
		ir = 0;
	if (proto_word_is(args, mech, "PLAIN")) {
		if (mech < len)
			return smtp_login_taken(f, proto_oauth2_plain(f, resp,
			    ir));
		sf->cli = SMTP_CLI_PLAIN;
		return SMTP_EXP_GO_PLAIN;
	}
	if (!proto_word_is(args, mech, "LOGIN"))
		return SMTP_EXP_MECH;
	if (mech == len) {
		sf->cli = SMTP_CLI_LOGIN_USER;
		return SMTP_EXP_GO_USER;
	}
	if ((r = proto_oauth2_user_b64(f, resp, ir)) != PROTO_CRED_OK)
		return smtp_login_taken(f, r);
	sf->cli = SMTP_CLI_LOGIN_PASS;
	return SMTP_EXP_GO_PASS;
}

/* A command or response answered here: taken, its answer in the FIFO. */
static int
smtp_answer_here(struct proto_filter *f, struct smtp_filter *sf,
    struct evbuffer *in, size_t n, int expect, struct evbuffer *to_client)
{
	if (proto_fifo_push(&sf->fifo, expect) != 0 ||
	    evbuffer_drain(in, n) != 0)
		return proto_filter_fail(f, "out of memory");
	if (expect >= SMTP_EXP_SYNTAX)
		proto_oauth2_forget(f);
	return smtp_settle(f, to_client) == 0 ? 1 : -1;
}

/* OAuth2: a line of AUTH PLAIN or AUTH LOGIN after the filter's 334. */
static int
smtp_sasl_here(struct proto_filter *f, struct smtp_filter *sf,
    struct evbuffer *in, struct evbuffer *to_client)
{
	const char		*line;
	size_t			 len, eol;
	enum smtp_client_state	 was = sf->cli;
	int			 r, expect;

	if (sf->fifo.count == PROTO_PIPELINE_MAX)
		return 0;
	if ((r = proto_filter_line(f, 0, in, &line, &len, &eol)) <= 0)
		return r;
	sf->cli = SMTP_CLI_COMMAND;
	/* RFC 4954 4: "*" cancels, and gets 501. */
	if (len == 1 && line[0] == '*')
		expect = SMTP_EXP_CANCELLED;
	else if (was == SMTP_CLI_PLAIN)
		expect = smtp_login_taken(f, proto_oauth2_plain(f, line, len));
	else if (was == SMTP_CLI_LOGIN_PASS)
		expect = smtp_login_taken(f, proto_oauth2_password_b64(f, line,
		    len));
	else if ((r = proto_oauth2_user_b64(f, line, len)) != PROTO_CRED_OK)
		expect = smtp_login_taken(f, r);
	else {
		sf->cli = SMTP_CLI_LOGIN_PASS;
		expect = SMTP_EXP_GO_PASS;
	}
	return smtp_answer_here(f, sf, in, len + eol, expect, to_client);
}

/* OAuth2: an AUTH command (after any spaces), or -1 for another. */
static int
smtp_oauth2_command(struct proto_filter *f, struct smtp_filter *sf,
    const char *line, size_t len)
{
	size_t	verb;

	while (len > 0 && line[0] == ' ') {
		line++;
		len--;
	}
	verb = proto_word_len(line, len);
	if (!proto_word_is(line, verb, "AUTH"))
		return -1;
	return smtp_client_auth(f, sf, line + verb + (verb < len),
	    len - verb - (verb < len));
}

/* One client command: forwarded, or STARTTLS answered here. */
static int
smtp_client_command(struct proto_filter *f, struct smtp_filter *sf,
    struct evbuffer *in, struct evbuffer *out, struct evbuffer *to_client)
{
	const char		*line;
	size_t			 len, eol;
	int			 expect, r;

	/* Pipelining has no limit (RFC 2920): more commands wait. */
	if ((r = proto_fifo_command(f, &sf->fifo, in, &line, &len, &eol)) <= 0)
		return r;
	if (f->oauth2 != NULL && (r = smtp_oauth2_command(f, sf, line,
	    len)) >= 0)
		return smtp_answer_here(f, sf, in, len + eol, r, to_client);
	if ((expect = smtp_client_expect(sf, line, len)) < 0)
		return proto_filter_fail(f, "BDAT chunk too large");
	proto_fifo_push(&sf->fifo, expect);
	if (expect == SMTP_EXP_LOCAL) {
		if (proto_fifo_refuse(f, in, len + eol) != 0)
			return -1;
		return smtp_settle(f, to_client) == 0 ? 1 : -1;
	}
	if (proto_move(in, out, len + eol) != 0)
		return proto_filter_fail(f, "out of memory");
	return 1;
}

/* The byte at pos in buf (which holds it). */
static char
smtp_byte_at(struct evbuffer *buf, size_t pos)
{
	struct evbuffer_ptr	at;
	char			c = '\0';

	if (evbuffer_ptr_set(buf, &at, pos, EVBUFFER_PTR_SET) == 0)
		evbuffer_copyout_from(buf, &at, &c, 1);
	return c;
}

/*
 * At the start of a message line: 1 when it is the final ".", taken and
 * answered by one more reply; 0 when that cannot be told yet; 2 when not.
 */
static int
smtp_body_end(struct proto_filter *f, struct smtp_filter *sf,
    struct evbuffer *in, struct evbuffer *out)
{
	char	head[3];
	size_t	n = evbuffer_get_length(in);

	if (n > sizeof(head))
		n = sizeof(head);
	evbuffer_copyout(in, head, n);
	if (memcmp(head, ".\r\n", n) != 0)
		return 2;
	if (n < sizeof(head))
		return 0;
	if (proto_move(in, out, n) != 0 ||
	    proto_fifo_push(&sf->fifo, SMTP_EXP_REPLY) != 0)
		return proto_filter_fail(f, "out of memory");
	sf->cli = SMTP_CLI_COMMAND;
	return 1;
}

/*
 * Message data after 354, streamed a line (or what there is of one) at a
 * time without reading it: 1 to go on, 0 to wait for more bytes, -1.
 * Only "." on a line of its own after CRLF ends it (RFC 5321 4.1.1.4).
 */
static int
smtp_client_body(struct proto_filter *f, struct smtp_filter *sf,
    struct evbuffer *in, struct evbuffer *out)
{
	struct evbuffer_ptr	lf;
	size_t			n;
	int			r;

	if (sf->cli_bol && (r = smtp_body_end(f, sf, in, out)) != 2)
		return r;
	lf = evbuffer_search(in, "\n", 1, NULL);
	if (lf.pos < 0) {
		n = evbuffer_get_length(in);
		sf->cli_cr = smtp_byte_at(in, n - 1) == '\r';
		sf->cli_bol = 0;
	} else {
		n = (size_t)lf.pos + 1;
		sf->cli_bol = lf.pos > 0 ?
		    smtp_byte_at(in, (size_t)lf.pos - 1) == '\r' : sf->cli_cr;
		sf->cli_cr = 0;
	}
	if (proto_move(in, out, n) != 0)
		return proto_filter_fail(f, "out of memory");
	return 1;
}

/* Take client bytes while their meaning is known: 1 to go on, 0, -1. */
static int
smtp_client_step(struct proto_filter *f, struct evbuffer *in,
    struct evbuffer *out, struct evbuffer *to_client)
{
	struct smtp_filter	*sf = f->impl;
	int			 r;

	switch (sf->cli) {
	case SMTP_CLI_WAIT:
		return 0;	/* until the server has answered */
	case SMTP_CLI_SASL:
		if ((r = proto_sasl_line(f, in, out)) == 1)
			sf->cli = SMTP_CLI_WAIT;
		return r;
	case SMTP_CLI_CHUNK:
		if (proto_move_payload(in, out, &sf->cli_chunk) != 0)
			return proto_filter_fail(f, "out of memory");
		if (sf->cli_chunk == 0)
			sf->cli = SMTP_CLI_COMMAND;
		return 1;
	case SMTP_CLI_BODY:
		return smtp_client_body(f, sf, in, out);
	case SMTP_CLI_PLAIN:
	case SMTP_CLI_LOGIN_USER:
	case SMTP_CLI_LOGIN_PASS:
		return smtp_sasl_here(f, sf, in, to_client);
	case SMTP_CLI_COMMAND:
		return smtp_client_command(f, sf, in, out, to_client);
	}
	fatalx("smtp: bad client state %d", (int)sf->cli);
}

/* OAuth2: whether the client's EHLO waits for its reply. */
static int
smtp_oauth2_caps_due(struct proto_filter *f)
{
	struct smtp_filter	*sf = f->impl;

	return proto_fifo_holds(&sf->fifo, SMTP_EXP_EHLO);
}

/*
 * OAuth2: only EHLO asks an SMTP server what it offers, and a second one
 * would reset the client's session: the filter does not ask.
 */
static int
smtp_oauth2_ask_caps(struct proto_filter *f, struct evbuffer *to_server)
{
	(void)f;
	(void)to_server;
	return 0;
}

/* OAuth2: AUTH with the initial response, which SMTP always allows. */
static int
smtp_oauth2_auth(struct proto_filter *f, struct evbuffer *to_server,
    const char *mech, const char *b64, size_t len)
{
	(void)f;
	if (evbuffer_add_printf(to_server, "AUTH %s ", mech) < 0 ||
	    evbuffer_add(to_server, b64, len) != 0 ||
	    evbuffer_add(to_server, "\r\n", 2) != 0)
		return -1;
	return 1;
}

/* OAuth2: the refusal, in the login's place in the FIFO. */
static int
smtp_oauth2_refuse(struct proto_filter *f, int temporary, int alert,
    const char *text, struct evbuffer *to_client)
{
	(void)alert;
	snprintf(f->oauth2->refusal, sizeof(f->oauth2->refusal), "%s %s\r\n",
	    temporary ? "454 4.7.0" : "535 5.7.8", text);
	f->oauth2->phase = OA_REFUSING;
	return smtp_settle(f, to_client);
}

const struct proto_ops proto_smtp_ops = {
	.name = "smtp",
	.dialogue_line = smtp_dialogue_line,
	.write_greeting = smtp_write_greeting,
	.filter_new = smtp_filter_new,
	.filter_free = smtp_filter_free,
	.filter_expect_greeting = smtp_filter_expect_greeting,
	.filter_server = smtp_filter_server,
	.client_step = smtp_client_step,
	.oauth2_caps_due = smtp_oauth2_caps_due,
	.oauth2_ask_caps = smtp_oauth2_ask_caps,
	.oauth2_auth = smtp_oauth2_auth,
	.oauth2_refuse = smtp_oauth2_refuse,
};
