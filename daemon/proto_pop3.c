/*
 * proto_pop3.c - POP3 for mailtlsd: the plaintext STLS dialogue (RFC 2595
 * section 4), the greeting written for the client, and the pre-login
 * filter.
 *
 * POP3 answers commands in order, so the filter keeps a FIFO of the
 * response each forwarded command expects: one line, a multi-line response
 * when +OK (CAPA, AUTH without a mechanism, LIST, UIDL, RETR, TOP), an AUTH
 * exchange ("+ " challenges, then +OK or -ERR).  It drops the STLS line
 * from the CAPA response, answers a client's own STLS itself in its place
 * in the FIFO, reports a -ERR to PASS, APOP or AUTH
 * (proto_filter_on_refusal()), and is done after +OK to one of them.
 *
 * With OAuth2 (proto_oauth2.c) the filter answers USER itself, takes PASS
 * (the rest of the line, spaces and all) or AUTH PLAIN, and logs in with
 * AUTH XOAUTH2 or OAUTHBEARER; its answers and the login's outcome keep
 * their places in the FIFO.  CAPA offers USER and SASL PLAIN.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "log.h"
#include "proto.h"
#include "proto_impl.h"

#define POP3_STLS_REFUSAL	"-ERR STLS not available: mailtlsd already " \
				"uses TLS to the server\r\n"
#define POP3_LINE_MAX		255	/* RFC 5034 4: an AUTH command */

/* The response a forwarded command expects. */
enum pop3_expect {
	POP3_EXP_SINGLE = 0,	/* one line */
	POP3_EXP_MULTI,		/* multi-line when +OK */
	POP3_EXP_CAPA,		/* multi-line when +OK, STLS hidden */
	POP3_EXP_LOGIN,		/* one line; +OK logs in (PASS, APOP) */
	POP3_EXP_SASL,		/* AUTH exchange until +OK or -ERR */
	POP3_EXP_OAUTH2,	/* OAuth2: the login, or its refusal */
	POP3_EXP_LOCAL,		/* the daemon's own answer to STLS */
	/* OAuth2: more of the daemon's own answers, in pop3_answers. */
	POP3_EXP_USER,		/* USER taken */
	POP3_EXP_GO,		/* AUTH PLAIN: the response is due */
	POP3_EXP_MECHS,		/* AUTH: the mechanisms */
	POP3_EXP_SYNTAX,
	POP3_EXP_USER_FIRST,
	POP3_EXP_MECH,
	POP3_EXP_APOP,
	POP3_EXP_CANCELLED,
	POP3_EXP_BAD_BASE64,
	POP3_EXP_MALFORMED,
	POP3_EXP_AUTHZID,
	POP3_EXP_TOO_LONG,
	POP3_EXP_BAD_USER
};

/* The daemon's own answers, by the type of their FIFO entry. */
static const char *const pop3_answers[] = {
	[POP3_EXP_LOCAL] = POP3_STLS_REFUSAL,
	[POP3_EXP_USER] = "+OK\r\n",
	[POP3_EXP_GO] = "+ \r\n",
	[POP3_EXP_MECHS] = "+OK\r\nPLAIN\r\n.\r\n",
	[POP3_EXP_SYNTAX] = "-ERR mailtlsd: malformed command\r\n",
	[POP3_EXP_USER_FIRST] = "-ERR mailtlsd: USER first\r\n",
	[POP3_EXP_MECH] = "-ERR mailtlsd logs in to the server with OAuth2 "
	    "itself: use USER and PASS, or AUTH PLAIN\r\n",
	[POP3_EXP_APOP] = "-ERR mailtlsd logs in to the server with OAuth2 "
	    "itself: use USER and PASS\r\n",
	[POP3_EXP_CANCELLED] = "-ERR mailtlsd: AUTH cancelled\r\n",
	[POP3_EXP_BAD_BASE64] = "-ERR mailtlsd: the PLAIN response is not "
	    "valid base64\r\n",
	[POP3_EXP_MALFORMED] = "-ERR mailtlsd: malformed PLAIN response\r\n",
	[POP3_EXP_AUTHZID] = "-ERR [AUTH] mailtlsd: logging in as another "
	    "user (an authorization identity) is not supported\r\n",
	[POP3_EXP_TOO_LONG] = "-ERR [AUTH] mailtlsd: user name or password "
	    "longer than " PROTO_USER_MAX_TEXT " bytes\r\n",
	[POP3_EXP_BAD_USER] = "-ERR [AUTH] mailtlsd: the user name is empty or "
	    "holds control characters\r\n",
};

/* Where the client's stream is. */
enum pop3_client_state {
	POP3_CLI_COMMAND = 0,	/* a command */
	POP3_CLI_WAIT,		/* AUTH waits for a challenge or its result */
	POP3_CLI_SASL,		/* one line of SASL data */
	POP3_CLI_PLAIN		/* OAuth2: the PLAIN response, here */
};

/* The filter's view of both streams. */
struct pop3_filter {
	struct proto_fifo	fifo;
	int			srv_body;	/* in a multi-line response */
	int			srv_capa;	/* ... to CAPA */
	int			srv_own;	/* ... to the filter's CAPA */
	int			authed;		/* login succeeded */
	enum pop3_client_state	cli;

	/* OAuth2: what the CAPA answer under way holds. */
	int			capa_user;	/* a USER line */
	int			capa_sasl;	/* a SASL line */
	unsigned		capa_mechs;	/* what the SASL line offers */
};

/* Whether line is a status line with this indicator. */
static int
pop3_status(const char *line, size_t len, const char *indicator)
{
	return proto_skip_word(line, len, indicator) != 0;
}

/* The greeting: +OK goes on with STLS, anything else aborts. */
static enum proto_verdict
pop3_dialogue_greeting(struct proto_dialogue *d, const char *line,
    size_t len, struct evbuffer *to_server)
{
	if (pop3_status(line, len, "+OK"))
		return proto_dialogue_send(d, to_server, DLG_STLS_SENT,
		    "STLS\r\n");
	if (pop3_status(line, len, "-ERR"))
		return proto_dialogue_fail(d, "server refused the connection",
		    line, len);
	return proto_dialogue_fail(d, "malformed POP3 greeting", line, len);
}

/* The answer to STLS: +OK goes ahead. */
static enum proto_verdict
pop3_dialogue_reply(struct proto_dialogue *d, const char *line, size_t len)
{
	if (pop3_status(line, len, "+OK")) {
		d->state = DLG_UPGRADED;
		return PROTO_UPGRADE;
	}
	if (pop3_status(line, len, "-ERR"))
		return proto_dialogue_fail(d, "server refused STLS", line, len);
	return proto_dialogue_fail(d, "unexpected response to STLS", line,
	    len);
}

/* One server line of the POP3 dialogue. */
static enum proto_verdict
pop3_dialogue_line(struct proto_dialogue *d, const char *line, size_t len,
    struct evbuffer *to_server)
{
	switch (d->state) {
	case DLG_GREETING:
		return pop3_dialogue_greeting(d, line, len, to_server);
	case DLG_STLS_SENT:
		return pop3_dialogue_reply(d, line, len);
	case DLG_EHLO_SENT:
	case DLG_STARTTLS_SENT:
	case DLG_UPGRADED:
	case DLG_FAILED:
		break;
	}
	fatalx("pop3: dialogue line in state %s", proto_dialogue_state(d));
}

/* The greeting for the client, without an APOP timestamp. */
static int
pop3_write_greeting(struct evbuffer *out, const struct service_config *sc)
{
	return evbuffer_add_printf(out, "+OK mailtlsd: POP3 service ready "
	    "via TLS to %s\r\n", sc->server_name) < 0 ? -1 : 0;
}

/* A new filter. */
static void *
pop3_filter_new(void)
{
	return calloc(1, sizeof(struct pop3_filter));
}

/* Free a filter. */
static void
pop3_filter_free(void *arg)
{
	free(arg);
}

/* The server's greeting comes first: one line. */
static void
pop3_filter_expect_greeting(struct proto_filter *f)
{
	struct pop3_filter	*pf = f->impl;

	proto_fifo_push(&pf->fifo, POP3_EXP_SINGLE);
}

/* The daemon's own answer to an entry of the FIFO (proto_local_fn). */
static int
pop3_local(struct proto_filter *f, int type, struct evbuffer *to_client)
{
	return proto_fifo_local(f, type, POP3_EXP_OAUTH2, POP3_EXP_LOCAL,
	    pop3_answers, sizeof(pop3_answers) / sizeof(pop3_answers[0]),
	    to_client);
}

/*
 * Between two responses: proto_fifo_settle(), not inside a multi-line
 * one; and a login's token that waited for a capability answer goes on.
 */
static int
pop3_settle(struct proto_filter *f, struct evbuffer *to_client)
{
	struct pop3_filter	*pf = f->impl;

	if (pf->srv_body)
		return 0;
	if (proto_fifo_settle(f, &pf->fifo, pop3_local, pf->authed,
	    to_client) != 0)
		return -1;
	return proto_oauth2_proceed(f);
}

/* Whether a server line is a SASL challenge ("+ ..."), not +OK. */
static int
pop3_challenge(const char *line, size_t len)
{
	return len >= 1 && line[0] == '+' && (len == 1 || line[1] == ' ');
}

/*
 * The first line of a response: what it means for the streams; -1 when it
 * is no response at all, which means the filter lost track of the server's
 * responses (a multi-line answer it took for one line) and must not go on.
 */
static int
pop3_server_status(struct proto_filter *f, struct pop3_filter *pf,
    const char *line, size_t len)
{
	int	ok = pop3_status(line, len, "+OK"), refused = 0;

	if (proto_fifo_head(&pf->fifo) >= 0 && !ok &&
	    !pop3_status(line, len, "-ERR") && !pop3_challenge(line, len))
		return proto_filter_fail(f, "POP3 server line that is neither "
		    "+OK nor -ERR where a response was due");
	switch (proto_fifo_head(&pf->fifo)) {
	case POP3_EXP_SINGLE:
		break;
	case POP3_EXP_MULTI:
	case POP3_EXP_CAPA:
		pf->srv_body = ok;
		pf->srv_capa = proto_fifo_head(&pf->fifo) == POP3_EXP_CAPA;
		pf->capa_user = pf->capa_sasl = 0;
		pf->capa_mechs = 0;
		break;
	case POP3_EXP_LOGIN:
		pf->authed = ok;
		refused = !ok;
		break;
	case POP3_EXP_SASL:
		if (pop3_challenge(line, len)) {
			if (pf->cli == POP3_CLI_WAIT)
				pf->cli = POP3_CLI_SASL;
			return 0;	/* the exchange goes on */
		}
		pf->authed = ok;
		refused = !ok;
		pf->cli = POP3_CLI_COMMAND;
		break;
	default:
		return 0;	/* unsolicited: nothing was asked */
	}
	proto_fifo_pop(&pf->fifo);
	/* Its one line has no room for mailtlsd's words: only reported. */
	if (refused) {
		proto_refusal_add(f, 1, line, len);
		proto_refusal_report(f, NULL, 0);
	}
	return 0;
}

/*
 * OAuth2: the end of a CAPA answer.  The filter's own is dropped and lets
 * the login go on; the client's gets the USER and SASL PLAIN lines the
 * filter serves, where the server has none.  0 or -1 (no memory).
 */
static int
pop3_capa_end(struct proto_filter *f, struct pop3_filter *pf,
    struct evbuffer *out)
{
	proto_oauth2_caps(f, pf->capa_mechs);
	if (pf->srv_own) {
		pf->srv_own = 0;
		return 0;
	}
	if ((!pf->capa_user && evbuffer_add(out, "USER\r\n", 6) != 0) ||
	    (!pf->capa_sasl && evbuffer_add(out, "SASL PLAIN\r\n", 12) != 0))
		return -1;
	return 0;
}

/*
 * OAuth2: a line of a CAPA answer: 1 when it was taken here (the SASL
 * line, which offers PLAIN only; every line of the filter's own answer),
 * 0 when it goes on as it is, -1 (no memory).
 */
static int
pop3_capa_line(struct pop3_filter *pf, struct evbuffer *in,
    struct evbuffer *out, const char *line, size_t len, size_t eol)
{
	size_t	kw = proto_word_len(line, len);

	if (proto_word_is(line, kw, "SASL")) {
		if (kw < len)
			pf->capa_mechs |= proto_oauth2_mechs(line + kw + 1,
			    len - kw - 1);
		/* One SASL line, with the one mechanism the filter serves. */
		if (!pf->srv_own && !pf->capa_sasl &&
		    (evbuffer_add(out, "SASL PLAIN", 10) != 0 ||
		    evbuffer_add(out, line + len, eol) != 0))
			return -1;
		pf->capa_sasl = 1;
		return evbuffer_drain(in, len + eol) == 0 ? 1 : -1;
	}
	if (proto_word_is(line, kw, "USER"))
		pf->capa_user = 1;
	if (pf->srv_own)
		return evbuffer_drain(in, len + eol) == 0 ? 1 : -1;
	return 0;
}

/* One line of a multi-line body: 1 when it ended the response. */
static int
pop3_server_body(struct proto_filter *f, struct pop3_filter *pf,
    struct evbuffer *in, struct evbuffer *out, const char *line, size_t len,
    size_t eol)
{
	int	r;

	if (len == 1 && line[0] == '.') {
		pf->srv_body = 0;
		if (pf->srv_capa && f->oauth2 != NULL && pf->srv_own) {
			if (pop3_capa_end(f, pf, out) != 0 ||
			    evbuffer_drain(in, len + eol) != 0)
				return -1;
			return proto_oauth2_caps_answered(f) == 0 ? 1 : -1;
		}
		if (pf->srv_capa && f->oauth2 != NULL &&
		    pop3_capa_end(f, pf, out) != 0)
			return -1;
		return proto_move(in, out, len + eol) == 0 ? 1 : -1;
	}
	/* A CAPA line is a keyword and arguments; dot-stuffed lines pass. */
	if (pf->srv_capa && proto_token_hidden(line, proto_word_len(line,
	    len)))
		return evbuffer_drain(in, len + eol);
	if (pf->srv_capa && f->oauth2 != NULL &&
	    (r = pop3_capa_line(pf, in, out, line, len, eol)) != 0)
		return r < 0 ? -1 : 0;
	return proto_move(in, out, len + eol);
}

/*
 * OAuth2: a server line for the login under way: the answer to the
 * filter's own CAPA, a challenge, or the result.  0 or -1.
 */
static int
pop3_oauth2_line(struct proto_filter *f, struct pop3_filter *pf,
    struct evbuffer *in, struct evbuffer *out, const char *line, size_t len,
    size_t eol)
{
	int	ok = pop3_status(line, len, "+OK");
	int	err = pop3_status(line, len, "-ERR");
	size_t	skip;

	if (!ok && !err && !pop3_challenge(line, len))
		return proto_filter_fail(f, "POP3 server line that is neither "
		    "+OK nor -ERR where a response was due");
	if (f->oauth2->phase == OA_CAPS_SENT) {
		if (!ok && !err)
			return proto_filter_fail(f, "POP3 server sent a "
			    "challenge to CAPA");
		if (evbuffer_drain(in, len + eol) != 0)
			return proto_filter_fail(f, "out of memory");
		if (err)
			return proto_oauth2_caps_answered(f);
		pf->srv_body = pf->srv_capa = pf->srv_own = 1;
		pf->capa_user = pf->capa_sasl = 0;
		pf->capa_mechs = 0;
		return 0;
	}
	if (ok) {
		proto_oauth2_succeeded(f);
		pf->authed = 1;
		proto_fifo_pop(&pf->fifo);
		return proto_move(in, out, len + eol) == 0 ? 0 :
		    proto_filter_fail(f, "out of memory");
	}
	if (err) {
		proto_oauth2_error_text(f, line, len);
		proto_oauth2_rejected(f);
	} else {
		skip = len >= 2 ? 2 : 1;
		if (proto_oauth2_challenge(f, line + skip, len - skip) != 0)
			return -1;
	}
	return evbuffer_drain(in, len + eol) == 0 ? 0 :
	    proto_filter_fail(f, "out of memory");
}

/* One line from the server: of a multi-line body, or a response's first. */
static int
pop3_server_line(struct proto_filter *f, struct evbuffer *in,
    struct evbuffer *out, const char *line, size_t len, size_t eol)
{
	struct pop3_filter	*pf = f->impl;

	if (pf->srv_body) {
		if (pop3_server_body(f, pf, in, out, line, len, eol) < 0)
			return f->reason[0] != '\0' ? -1 :
			    proto_filter_fail(f, "out of memory");
		return 0;
	}
	if (proto_fifo_head(&pf->fifo) == POP3_EXP_OAUTH2 &&
	    proto_oauth2_awaits_server(f))
		return pop3_oauth2_line(f, pf, in, out, line, len, eol);
	if (pop3_server_status(f, pf, line, len) != 0)
		return -1;
	if (proto_move(in, out, len + eol) != 0)
		return proto_filter_fail(f, "out of memory");
	return 0;
}

/* Move server bytes to the client. */
static int
pop3_filter_server(struct proto_filter *f, struct evbuffer *in,
    struct evbuffer *out)
{
	return proto_fifo_server(f, in, out, pop3_settle, pop3_server_line);
}

/* What a client command expects from the server. */
static enum pop3_expect
pop3_client_expect(const char *line, size_t len, int *sasl)
{
	size_t	verb = proto_word_len(line, len);
	int	arg = verb + 1 < len;

	*sasl = 0;
	if (proto_word_is(line, verb, "STLS"))
		return POP3_EXP_LOCAL;
	if (proto_word_is(line, verb, "CAPA"))
		return POP3_EXP_CAPA;
	if (proto_word_is(line, verb, "AUTH")) {
		*sasl = arg;
		return arg ? POP3_EXP_SASL : POP3_EXP_MULTI;
	}
	if (proto_word_is(line, verb, "PASS") ||
	    proto_word_is(line, verb, "APOP"))
		return POP3_EXP_LOGIN;
	if (proto_word_is(line, verb, "RETR") ||
	    proto_word_is(line, verb, "TOP") ||
	    (!arg && (proto_word_is(line, verb, "LIST") ||
	    proto_word_is(line, verb, "LANG") ||	/* RFC 6856 */
	    proto_word_is(line, verb, "UIDL"))))
		return POP3_EXP_MULTI;
	return POP3_EXP_SINGLE;
}

/* OAuth2: the FIFO entry for credentials taken, or for their refusal. */
static enum pop3_expect
pop3_login_taken(struct proto_filter *f, enum proto_cred r)
{
	switch (r) {
	case PROTO_CRED_OK:
		proto_oauth2_wanted(f);
		return POP3_EXP_OAUTH2;
	case PROTO_CRED_BAD_BASE64:
		return POP3_EXP_BAD_BASE64;
	case PROTO_CRED_MALFORMED:
		return POP3_EXP_MALFORMED;
	case PROTO_CRED_AUTHZID:
		return POP3_EXP_AUTHZID;
	case PROTO_CRED_TOO_LONG:
		return POP3_EXP_TOO_LONG;
	case PROTO_CRED_BAD_USER:
		break;
	}
	return POP3_EXP_BAD_USER;
}

/* OAuth2: AUTH from the client, args after its name (len 0: none). */
static enum pop3_expect
pop3_client_auth(struct proto_filter *f, struct pop3_filter *pf,
    const char *args, size_t len)
{
	size_t	mech = proto_word_len(args, len), ir;

	if (len == 0)
		return POP3_EXP_MECHS;
	ir = mech < len ? len - mech - 1 : 0;
	if (mech == 0 || (mech < len && (ir == 0 ||
	    memchr(args + mech + 1, ' ', ir) != NULL)))
		return POP3_EXP_SYNTAX;
	if (!proto_word_is(args, mech, "PLAIN"))
		return POP3_EXP_MECH;
	if (mech == len) {
		pf->cli = POP3_CLI_PLAIN;
		return POP3_EXP_GO;
	}
	/* RFC 5034 4: "=" is an empty initial response. */
	args += mech + 1;
	if (ir == 1 && args[0] == '=')
		ir = 0;
	return pop3_login_taken(f, proto_oauth2_plain(f, args, ir));
}

/*
 * OAuth2: a login command, answered here (the FIFO entry of its answer)
 * and never sent on; -1 for any other command.  The user name of USER is
 * the rest of the line; so is PASS's password, spaces and all.
 */
static int
pop3_oauth2_command(struct proto_filter *f, struct pop3_filter *pf,
    const char *line, size_t len)
{
	size_t		 verb, arg;
	const char	*a;
	enum proto_cred	 r;

	/* A command after spaces is the same command to some servers. */
	while (len > 0 && line[0] == ' ') {
		line++;
		len--;
	}
	verb = proto_word_len(line, len);
	a = line + verb + (verb < len);
	arg = len - verb - (verb < len);
	if (proto_word_is(line, verb, "APOP"))
		return POP3_EXP_APOP;
	if (proto_word_is(line, verb, "AUTH"))
		return pop3_client_auth(f, pf, a, arg);
	if (proto_word_is(line, verb, "USER")) {
		proto_oauth2_forget(f);
		if (verb == len)
			return POP3_EXP_SYNTAX;
		if ((r = proto_oauth2_user(f, a, arg)) != PROTO_CRED_OK)
			return pop3_login_taken(f, r);
		return POP3_EXP_USER;
	}
	if (!proto_word_is(line, verb, "PASS"))
		return -1;
	if (!proto_oauth2_user_ok(f))
		return POP3_EXP_USER_FIRST;
	if (verb == len) {
		proto_oauth2_forget(f);
		return POP3_EXP_SYNTAX;
	}
	if ((r = proto_oauth2_password(f, a, arg)) != PROTO_CRED_OK)
		proto_oauth2_forget(f);
	return pop3_login_taken(f, r);
}

/* A command answered here: taken, its answer in the FIFO. */
static int
pop3_answer_here(struct proto_filter *f, struct pop3_filter *pf,
    struct evbuffer *in, size_t n, int expect, struct evbuffer *to_client)
{
	if (proto_fifo_push(&pf->fifo, expect) != 0 ||
	    evbuffer_drain(in, n) != 0)
		return proto_filter_fail(f, "out of memory");
	if (expect == POP3_EXP_BAD_USER || expect == POP3_EXP_TOO_LONG ||
	    expect == POP3_EXP_AUTHZID || expect == POP3_EXP_MALFORMED ||
	    expect == POP3_EXP_BAD_BASE64 || expect == POP3_EXP_CANCELLED)
		proto_oauth2_forget(f);
	return pop3_settle(f, to_client) == 0 ? 1 : -1;
}

/* OAuth2: the PLAIN response after the filter's "+ ". */
static int
pop3_plain_line(struct proto_filter *f, struct pop3_filter *pf,
    struct evbuffer *in, struct evbuffer *to_client)
{
	const char	*line;
	size_t		 len, eol;
	int		 r, expect;

	if (pf->fifo.count == PROTO_PIPELINE_MAX)
		return 0;
	if ((r = proto_filter_line(f, 0, in, &line, &len, &eol)) <= 0)
		return r;
	pf->cli = POP3_CLI_COMMAND;
	/* RFC 5034 4: "*" cancels, and gets -ERR. */
	if (len == 1 && line[0] == '*')
		expect = POP3_EXP_CANCELLED;
	else
		expect = pop3_login_taken(f, proto_oauth2_plain(f, line, len));
	return pop3_answer_here(f, pf, in, len + eol, expect, to_client);
}

/* One client command: forwarded, or STLS answered here. */
static int
pop3_client_command(struct proto_filter *f, struct pop3_filter *pf,
    struct evbuffer *in, struct evbuffer *out, struct evbuffer *to_client)
{
	const char		*line;
	size_t			 len, eol;
	enum pop3_expect	 expect;
	int			 r, sasl;

	if ((r = proto_fifo_command(f, &pf->fifo, in, &line, &len, &eol)) <= 0)
		return r;
	if (f->oauth2 != NULL && (r = pop3_oauth2_command(f, pf, line,
	    len)) >= 0)
		return pop3_answer_here(f, pf, in, len + eol, r, to_client);
	expect = pop3_client_expect(line, len, &sasl);
	if (proto_fifo_push(&pf->fifo, expect) != 0)
		return proto_filter_fail(f, "out of memory");
	if (expect == POP3_EXP_LOCAL) {
		if (proto_fifo_refuse(f, in, len + eol) != 0)
			return -1;
		return pop3_settle(f, to_client) == 0 ? 1 : -1;
	}
	if (proto_move(in, out, len + eol) != 0)
		return proto_filter_fail(f, "out of memory");
	if (sasl)
		pf->cli = POP3_CLI_WAIT;
	return 1;
}

/* Take client bytes while their meaning is known: 1 to go on, 0, -1. */
static int
pop3_client_step(struct proto_filter *f, struct evbuffer *in,
    struct evbuffer *out, struct evbuffer *to_client)
{
	struct pop3_filter	*pf = f->impl;
	int			 r;

	switch (pf->cli) {
	case POP3_CLI_WAIT:
		return 0;	/* until the server has answered */
	case POP3_CLI_SASL:
		if ((r = proto_sasl_line(f, in, out)) == 1)
			pf->cli = POP3_CLI_WAIT;
		return r;
	case POP3_CLI_PLAIN:
		return pop3_plain_line(f, pf, in, to_client);
	case POP3_CLI_COMMAND:
		return pop3_client_command(f, pf, in, out, to_client);
	}
	fatalx("pop3: bad client state %d", (int)pf->cli);
}

/* OAuth2: whether the client's CAPA waits for its answer. */
static int
pop3_oauth2_caps_due(struct proto_filter *f)
{
	struct pop3_filter	*pf = f->impl;

	return proto_fifo_holds(&pf->fifo, POP3_EXP_CAPA);
}

/* OAuth2: ask the server's capabilities; the answer is the filter's. */
static int
pop3_oauth2_ask_caps(struct proto_filter *f, struct evbuffer *to_server)
{
	(void)f;
	return evbuffer_add(to_server, "CAPA\r\n", 6) == 0 ? 1 : -1;
}

/*
 * OAuth2: AUTH with an initial response when the command fits in 255
 * octets (RFC 5034 4), which an access token seldom does; else the
 * response follows the server's "+".
 */
static int
pop3_oauth2_auth(struct proto_filter *f, struct evbuffer *to_server,
    const char *mech, const char *b64, size_t len)
{
	int	ir = strlen("AUTH  \r\n") + strlen(mech) + len <= POP3_LINE_MAX;

	(void)f;
	if (evbuffer_add_printf(to_server, "AUTH %s%s", mech, ir ? " " : "") <
	    0 || (ir && evbuffer_add(to_server, b64, len) != 0) ||
	    evbuffer_add(to_server, "\r\n", 2) != 0)
		return -1;
	return ir;
}

/* OAuth2: the refusal, in the login's place in the FIFO. */
static int
pop3_oauth2_refuse(struct proto_filter *f, int temporary, int alert,
    const char *text, struct evbuffer *to_client)
{
	/* Instructions (alert) are for the user: [AUTH], even if temporary. */
	snprintf(f->oauth2->refusal, sizeof(f->oauth2->refusal),
	    "-ERR [%s] %s\r\n", temporary && !alert ? "SYS/TEMP" : "AUTH",
	    text);
	f->oauth2->phase = OA_REFUSING;
	return pop3_settle(f, to_client);
}

const struct proto_ops proto_pop3_ops = {
	.name = "pop3",
	.dialogue_line = pop3_dialogue_line,
	.write_greeting = pop3_write_greeting,
	.filter_new = pop3_filter_new,
	.filter_free = pop3_filter_free,
	.filter_expect_greeting = pop3_filter_expect_greeting,
	.filter_server = pop3_filter_server,
	.client_step = pop3_client_step,
	.oauth2_caps_due = pop3_oauth2_caps_due,
	.oauth2_ask_caps = pop3_oauth2_ask_caps,
	.oauth2_auth = pop3_oauth2_auth,
	.oauth2_refuse = pop3_oauth2_refuse,
};
