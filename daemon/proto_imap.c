/*
 * proto_imap.c - IMAP for mailtlsd: the plaintext STARTTLS dialogue
 * (RFC 3501 6.2.1, RFC 2595), the greeting written for the client, and the
 * pre-login filter.
 *
 * The filter follows both streams as IMAP does: a line ending in a literal
 * announcement ({n} from the server; {n}, {n+}, ~{n}, ~{n+} from the
 * client) is followed by n raw bytes, which are streamed by count, and then
 * by the rest of the same logical line.  It hides STARTTLS and
 * LOGINDISABLED from untagged CAPABILITY responses and from [CAPABILITY]
 * response codes, refuses a client's own STARTTLS, remembers the tags of
 * LOGIN and AUTHENTICATE, reports a tagged NO to one of them (with
 * mailtlsd's words as an untagged [ALERT] before it), and is done after
 * the tagged OK to one of them.
 *
 * With OAuth2 (proto_oauth2.c) the filter takes LOGIN (atoms, quoted
 * strings, literals: it answers "+" to a synchronizing one itself) and
 * AUTHENTICATE PLAIN (SASL-IR or after its own "+") from the client and
 * logs in with AUTHENTICATE XOAUTH2 or OAUTHBEARER under the client's tag,
 * so that the server's tagged OK reaches the client as it is; capability
 * lists offer AUTH=PLAIN and no other mechanism.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "log.h"
#include "proto.h"
#include "proto_impl.h"

#define IMAP_DIALOGUE_TAG	"M1"
#define IMAP_TAG_MAX		64	/* tags the filter must remember */
#define IMAP_AUTH_TAGS		8	/* LOGIN/AUTHENTICATE in flight */
#define IMAP_OWN_TAG		"mailtlsd"	/* its capability request */

#define IMAP_STARTTLS_REFUSAL	" BAD STARTTLS is not available: " \
				"mailtlsd already uses TLS to the server\r\n"
/* RFC 4978: COMPRESS belongs to the authenticated state. */
#define IMAP_COMPRESS_REFUSAL	" BAD COMPRESS is only available after " \
				"login\r\n"

/* OAuth2: the daemon's answers while it takes the login. */
#define IMAP_LITERAL_GO		"+ Ready for literal data\r\n"
#define IMAP_PLAIN_GO		"+ \r\n"
#define IMAP_LOGIN_MALFORMED	" BAD mailtlsd: malformed LOGIN command\r\n"
#define IMAP_AUTH_MALFORMED	" BAD mailtlsd: malformed AUTHENTICATE " \
				"command\r\n"
#define IMAP_AUTH_CANCELLED	" BAD mailtlsd: AUTHENTICATE cancelled\r\n"
#define IMAP_MECH_REFUSAL	" NO [CANNOT] mailtlsd logs in to the " \
				"server with OAuth2 itself: use LOGIN or " \
				"AUTHENTICATE PLAIN\r\n"
#define IMAP_UNTAGGED_LOGIN	"* BAD mailtlsd: LOGIN or AUTHENTICATE " \
				"without a tag\r\n"

/* Where the client's stream is. */
enum imap_client_state {
	IMAP_CLI_COMMAND = 0,	/* a new command starts */
	IMAP_CLI_CONTINUE,	/* the command goes on after a literal */
	IMAP_CLI_LITERAL,	/* literal bytes */
	IMAP_CLI_WAIT_LITERAL,	/* a synchronizing literal waits for "+" */
	IMAP_CLI_WAIT_AUTH,	/* AUTHENTICATE waits for "+" or its reply */
	IMAP_CLI_SASL,		/* one line of SASL data */
	IMAP_CLI_LOGIN,		/* OAuth2: LOGIN goes on after a literal */
	IMAP_CLI_LOGIN_LITERAL,	/* OAuth2: a LOGIN argument's literal */
	IMAP_CLI_PLAIN		/* OAuth2: the PLAIN response after "+" */
};

/* What the arguments in one segment of a LOGIN came to. */
enum imap_login_parse {
	IMAP_LOGIN_DONE,	/* both arguments, and the command ended */
	IMAP_LOGIN_LITERAL,	/* a literal follows */
	IMAP_LOGIN_BAD,		/* not LOGIN's syntax */
	IMAP_LOGIN_HUGE		/* a literal over PROTO_PAYLOAD_MAX */
};

/* What the first line of a server response is. */
enum imap_response {
	IMAP_RESP_OTHER = 0,	/* data; literals possible */
	IMAP_RESP_CAPABILITY,	/* "* CAPABILITY ..." */
	IMAP_RESP_STATUS,	/* OK, NO, BAD, PREAUTH, BYE */
	IMAP_RESP_CONTINUATION	/* "+ ..." */
};

/* A tag the filter remembers. */
struct imap_tag {
	char	text[IMAP_TAG_MAX];
	size_t	len;
};

/* The filter's view of both streams. */
struct imap_filter {
	uint64_t		 srv_literal;	/* literal bytes still due */
	int			 srv_continue;	/* response goes on after one */
	int			 srv_done;	/* login OK: done at its end */
	int			 srv_refused;	/* a login's NO */

	enum imap_client_state	 cli;
	uint64_t		 cli_literal;	/* bytes due or announced */
	int			 cli_authenticate; /* command is AUTHENTICATE */
	struct imap_tag		 cli_tag;	/* tag of that command */
	int			 cli_tag_ok;	/* it fitted in cli_tag */

	struct imap_tag		 auth[IMAP_AUTH_TAGS]; /* LOGIN/AUTHENTICATE */
	int			 n_auth;
	uint64_t		 sent[PROTO_PIPELINE_MAX]; /* tags in flight, */
	int			 n_sent;		   /* as hashes */

	struct evbuffer		*local;		/* refusals for the client */
	int			 n_local;

	/* OAuth2: the login taken from the client. */
	struct imap_tag		 login_tag;	/* of LOGIN or AUTHENTICATE */
	int			 login_arg;	/* 0 user, 1 password, 2 both */
	int			 login_over;	/* an argument over its bound */
	struct imap_tag		 own_tag;	/* of its CAPABILITY */
	uint8_t			 sent_capa[PROTO_PIPELINE_MAX]; /* which of
						   sent are CAPABILITY */
};

/* Whether line begins with an untagged "* ". */
static int
imap_untagged(const char *line, size_t len)
{
	return len >= 2 && line[0] == '*' && line[1] == ' ';
}

/* The length of a status keyword starting p, or 0. */
static size_t
imap_status_word(const char *p, size_t len, int with_greetings)
{
	size_t	n;

	if ((n = proto_skip_word(p, len, "OK")) != 0 ||
	    (n = proto_skip_word(p, len, "NO")) != 0 ||
	    (n = proto_skip_word(p, len, "BAD")) != 0)
		return n;
	if (!with_greetings)
		return 0;
	if ((n = proto_skip_word(p, len, "PREAUTH")) != 0 ||
	    (n = proto_skip_word(p, len, "BYE")) != 0)
		return n;
	return 0;
}

/*
 * Find a [CAPABILITY ...] response code at p (the text after a status
 * keyword, starting with its space): 1 with the offset and length of the
 * token list inside the brackets, else 0.
 */
static int
imap_capability_code(const char *p, size_t len, size_t *start, size_t *n)
{
	const char	*close;
	size_t		 w;

	if (len < 2 || p[0] != ' ' || p[1] != '[')
		return 0;
	if ((close = memchr(p + 2, ']', len - 2)) == NULL)
		return 0;
	w = strlen("CAPABILITY");
	if ((size_t)(close - (p + 2)) < w ||
	    !proto_word_is(p + 2, w, "CAPABILITY") ||
	    (p[2 + w] != ' ' && p[2 + w] != ']'))
		return 0;
	*start = 2 + w;
	*n = (size_t)(close - p) - *start;
	return 1;
}

/* The greeting: "* OK" goes on with STARTTLS, anything else aborts. */
static enum proto_verdict
imap_dialogue_greeting(struct proto_dialogue *d, const char *line, size_t len,
    struct evbuffer *to_server)
{
	const char	*p;
	size_t		 n, w, start, caps;

	if (!imap_untagged(line, len))
		return proto_dialogue_fail(d, "malformed IMAP greeting",
		    line, len);
	p = line + 2;
	n = len - 2;
	if ((w = proto_skip_word(p, n, "OK")) != 0) {
		if (imap_capability_code(p + w, n - w, &start, &caps) &&
		    !proto_tokens_have(p + w + start, caps, "STARTTLS"))
			return proto_dialogue_fail(d,
			    "server did not offer STARTTLS", NULL, 0);
		return proto_dialogue_send(d, to_server, DLG_STARTTLS_SENT,
		    "%s STARTTLS\r\n", IMAP_DIALOGUE_TAG);
	}
	if (proto_skip_word(p, n, "PREAUTH") != 0)
		return proto_dialogue_fail(d, "IMAP PREAUTH greeting refused "
		    "(STARTTLS is impossible after it)", NULL, 0);
	if ((w = proto_skip_word(p, n, "BYE")) != 0)
		return proto_dialogue_fail(d, "server refused the connection",
		    p + w + (w < n), n - w - (w < n));
	return proto_dialogue_fail(d, "malformed IMAP greeting", line, len);
}

/* The answer to STARTTLS: untagged lines are dropped, OK goes ahead. */
static enum proto_verdict
imap_dialogue_reply(struct proto_dialogue *d, const char *line, size_t len)
{
	size_t	tag = strlen(IMAP_DIALOGUE_TAG), w;

	if (imap_untagged(line, len)) {
		/* Never forwarded: nothing said before TLS reaches anyone. */
		line += 2;
		len -= 2;
		if ((w = proto_skip_word(line, len, "BYE")) != 0)
			return proto_dialogue_fail(d, "server closed the "
			    "connection", line + w + (w < len),
			    len - w - (w < len));
		return PROTO_MORE;
	}
	if (len > tag && memcmp(line, IMAP_DIALOGUE_TAG, tag) == 0 &&
	    line[tag] == ' ') {
		line += tag + 1;
		len -= tag + 1;
		if (proto_skip_word(line, len, "OK") != 0) {
			d->state = DLG_UPGRADED;
			return PROTO_UPGRADE;
		}
		if (proto_skip_word(line, len, "NO") != 0 ||
		    proto_skip_word(line, len, "BAD") != 0)
			return proto_dialogue_fail(d,
			    "server refused STARTTLS", line, len);
	}
	return proto_dialogue_fail(d, "unexpected response to STARTTLS",
	    line, len);
}

/* One server line of the IMAP dialogue. */
static enum proto_verdict
imap_dialogue_line(struct proto_dialogue *d, const char *line, size_t len,
    struct evbuffer *to_server)
{
	switch (d->state) {
	case DLG_GREETING:
		return imap_dialogue_greeting(d, line, len, to_server);
	case DLG_STARTTLS_SENT:
		return imap_dialogue_reply(d, line, len);
	case DLG_EHLO_SENT:
	case DLG_STLS_SENT:
	case DLG_UPGRADED:
	case DLG_FAILED:
		break;
	}
	fatalx("imap: dialogue line in state %s", proto_dialogue_state(d));
}

/*
 * The greeting for the client: no CAPABILITY code (the client asks over
 * the filtered connection) and no response code at all.
 */
static int
imap_write_greeting(struct evbuffer *out, const struct service_config *sc)
{
	return evbuffer_add_printf(out, "* OK mailtlsd: IMAP4rev1 service "
	    "ready via TLS to %s\r\n", sc->server_name) < 0 ? -1 : 0;
}

/* A new filter. */
static void *
imap_filter_new(void)
{
	struct imap_filter	*im;

	if ((im = calloc(1, sizeof(*im))) == NULL)
		return NULL;
	if ((im->local = evbuffer_new()) == NULL) {
		free(im);
		return NULL;
	}
	return im;
}

/* Free a filter. */
static void
imap_filter_free(void *arg)
{
	struct imap_filter	*im = arg;

	if (im == NULL)
		return;
	evbuffer_free(im->local);
	free(im);
}

/* The greeting needs nothing special: it is an untagged response. */
static void
imap_filter_expect_greeting(struct proto_filter *f)
{
	(void)f;
}

/*
 * Whether a line segment ends with a literal announcement: 1 with its size
 * and whether the sender waits for "+", 0 if not, -1 when it is too large.
 * The server may only announce {n} (or ~{n}); the client also {n+}.
 */
static int
imap_literal(const char *p, size_t len, int client, uint64_t *size,
    int *sync)
{
	size_t	open, end;

	if (len < 3 || p[len - 1] != '}')
		return 0;
	end = len - 1;
	*sync = 1;
	if (client && p[end - 1] == '+') {
		*sync = 0;
		end--;
	}
	for (open = end; open > 0 && p[open - 1] >= '0' &&
	    p[open - 1] <= '9'; open--)
		;
	if (open == 0 || open == end || p[open - 1] != '{')
		return 0;
	if (proto_parse_number(p + open, end - open, PROTO_PAYLOAD_MAX,
	    size) != 0)
		return -1;
	return 1;
}

/* Whether a remembered tag is this one. */
static int
imap_tag_is(const struct imap_tag *t, const char *tag, size_t len)
{
	return t->len == len && memcmp(t->text, tag, len) == 0;
}

/* Remember a tag; -1 when it is longer than IMAP_TAG_MAX. */
static int
imap_tag_set(struct imap_tag *t, const char *tag, size_t len)
{
	if (len > IMAP_TAG_MAX)
		return -1;
	memcpy(t->text, tag, len);
	t->len = len;
	return 0;
}

/* A tag as a number, to keep the tags in flight small (FNV-1a). */
static uint64_t
imap_tag_hash(const char *tag, size_t len)
{
	uint64_t	h = 0xcbf29ce484222325ULL;
	size_t		i;

	for (i = 0; i < len; i++)
		h = (h ^ (unsigned char)tag[i]) * 0x100000001b3ULL;
	return h;
}

/* Where the tag is among those in flight, or -1. */
static int
imap_sent_find(const struct imap_filter *im, uint64_t hash)
{
	int	i;

	for (i = 0; i < im->n_sent; i++)
		if (im->sent[i] == hash)
			return i;
	return -1;
}

/*
 * The server answered a tagged command: follow what it means.  1 when it
 * answered a LOGIN or AUTHENTICATE of the client.
 */
static int
imap_server_tagged(struct imap_filter *im, const char *tag, size_t len,
    int ok)
{
	int	i;

	if ((i = imap_sent_find(im, imap_tag_hash(tag, len))) >= 0) {
		im->sent[i] = im->sent[--im->n_sent];
		im->sent_capa[i] = im->sent_capa[im->n_sent];
	}

	/* A refused synchronizing literal or a finished AUTHENTICATE. */
	if ((im->cli == IMAP_CLI_WAIT_LITERAL ||
	    im->cli == IMAP_CLI_WAIT_AUTH || im->cli == IMAP_CLI_SASL) &&
	    imap_tag_is(&im->cli_tag, tag, len))
		im->cli = IMAP_CLI_COMMAND;
	for (i = 0; i < im->n_auth; i++) {
		if (!imap_tag_is(&im->auth[i], tag, len))
			continue;
		memmove(&im->auth[i], &im->auth[i + 1],
		    (size_t)(im->n_auth - i - 1) * sizeof(im->auth[0]));
		im->n_auth--;
		if (ok)
			im->srv_done = 1;
		return 1;
	}
	return 0;
}

/* The server asked for more ("+"): the client's next bytes are due. */
static void
imap_server_continuation(struct imap_filter *im)
{
	if (im->cli == IMAP_CLI_WAIT_LITERAL)
		im->cli = IMAP_CLI_LITERAL;
	else if (im->cli == IMAP_CLI_WAIT_AUTH)
		im->cli = IMAP_CLI_SASL;
}

/*
 * Classify the first line of a server response and note what it means for
 * the client's stream; code and n locate a capability list to filter.
 */
static enum imap_response
imap_server_classify(struct imap_filter *im, const char *p, size_t len,
    size_t *code, size_t *n, int *caps)
{
	size_t	w, tag;

	*n = 0;
	*caps = 0;
	im->srv_refused = 0;
	if (len >= 1 && p[0] == '+') {
		imap_server_continuation(im);
		return IMAP_RESP_CONTINUATION;
	}
	if (imap_untagged(p, len)) {
		if ((w = proto_skip_word(p + 2, len - 2, "CAPABILITY")) != 0) {
			*code = 2 + w;
			*n = len - *code;
			*caps = 1;
			return IMAP_RESP_CAPABILITY;
		}
		if ((w = imap_status_word(p + 2, len - 2, 1)) == 0)
			return IMAP_RESP_OTHER;
		if (proto_skip_word(p + 2, len - 2, "PREAUTH") != 0)
			im->srv_done = 1;	/* implicit TLS only */
		w += 2;
	} else {
		tag = proto_word_len(p, len);
		if (tag == 0 || tag == len ||
		    (w = imap_status_word(p + tag + 1, len - tag - 1, 0)) == 0)
			return IMAP_RESP_OTHER;
		if (imap_server_tagged(im, p, tag, proto_skip_word(p + tag + 1,
		    len - tag - 1, "OK") != 0))
			im->srv_refused = proto_skip_word(p + tag + 1,
			    len - tag - 1, "NO") != 0;
		w += tag + 1;
	}
	if ((*caps = imap_capability_code(p + w, len - w, code, n)))
		*code += w;
	return IMAP_RESP_STATUS;
}

/* Whether a capability token is AUTH=mech (ignoring case). */
static int
imap_auth_token(const char *p, size_t len, const char *mech)
{
	return len > 5 && proto_word_is(p, 5, "AUTH=") &&
	    (mech == NULL || proto_word_is(p + 5, len - 5, mech));
}

/* What a capability list offers an OAuth2 login (PROTO_MECH_*). */
static unsigned
imap_mechs(const char *p, size_t len)
{
	unsigned	 mechs = 0;
	const char	*w;
	size_t		 n;

	while ((n = proto_next_word(&p, &len, &w)) > 0) {
		if (imap_auth_token(w, n, NULL))
			mechs |= proto_oauth2_mech(w + 5, n - 5);
		else if (proto_word_is(w, n, "SASL-IR"))
			mechs |= PROTO_MECH_SASL_IR;
	}
	return mechs;
}

/*
 * Append a capability list as the client of an OAuth2 filter sees it:
 * without the hidden tokens and without any AUTH= mechanism but PLAIN,
 * which is added when the server does not offer it (the filter serves it).
 */
static int
imap_write_oauth2_caps(struct evbuffer *out, const char *p, size_t len)
{
	size_t	sp, n;
	int	plain = 0, keep;

	while (len > 0) {
		for (sp = 0; sp < len && p[sp] == ' '; sp++)
			;
		n = proto_word_len(p + sp, len - sp);
		keep = n == 0 || (!proto_token_hidden(p + sp, n) &&
		    (!imap_auth_token(p + sp, n, NULL) ||
		    imap_auth_token(p + sp, n, "PLAIN")));
		plain |= imap_auth_token(p + sp, n, "PLAIN");
		if (keep && evbuffer_add(out, p, sp + n) != 0)
			return -1;
		p += sp + n;
		len -= sp + n;
	}
	return plain ? 0 : evbuffer_add(out, " AUTH=PLAIN", 11);
}

/*
 * Write a server line with the capability list at [code, code + n)
 * filtered (caps == 0: there is none) and take it from the input.  The
 * OAuth2 filter's mechanisms matter only before login: the list that
 * comes with the login's OK is filtered as any other filter's.
 */
static int
imap_server_write(struct proto_filter *f, struct evbuffer *in,
    struct evbuffer *out, const char *p, size_t len, size_t eol,
    size_t code, size_t n, int caps)
{
	struct imap_filter	*im = f->impl;
	int			 oauth2 = f->oauth2 != NULL && !im->srv_done;

	if (!caps || (n == 0 && !oauth2))
		return proto_move(in, out, len + eol);
	if (evbuffer_add(out, p, code) != 0 || (oauth2 ?
	    imap_write_oauth2_caps(out, p + code, n) :
	    proto_write_tokens(out, p + code, n)) != 0 ||
	    evbuffer_add(out, p + code + n, len + eol - code - n) != 0)
		return -1;
	return evbuffer_drain(in, len + eol);
}

/*
 * OAuth2: a server line that belongs to the login under way -- the
 * continuation, the tagged result, the answer to the filter's own
 * CAPABILITY -- is taken here: 1.  0 when it goes the usual way (the
 * tagged OK that logs the client in among them), -1 when the filter failed.
 */
static int
imap_oauth2_server(struct proto_filter *f, struct imap_filter *im,
    struct evbuffer *in, const char *p, size_t len, size_t eol)
{
	struct proto_oauth2	*o = f->oauth2;
	size_t			 tag, w;
	int			 r = 0;

	if (!proto_oauth2_awaits_server(f))
		return 0;
	if (len >= 1 && p[0] == '+') {
		if (o->phase == OA_CAPS_SENT)
			return proto_filter_fail(f, "IMAP server sent a "
			    "continuation to a CAPABILITY command");
		w = len >= 2 && p[1] == ' ' ? 2 : 1;
		r = proto_oauth2_challenge(f, p + w, len - w);
	} else if (imap_untagged(p, len)) {
		if (o->phase != OA_CAPS_SENT || (w = proto_skip_word(p + 2,
		    len - 2, "CAPABILITY")) == 0)
			return 0;
		/* The answer to the filter's own question: not relayed. */
		proto_oauth2_caps(f, imap_mechs(p + 2 + w, len - 2 - w));
	} else {
		tag = proto_word_len(p, len);
		if (tag == 0 || tag == len || imap_status_word(p + tag + 1,
		    len - tag - 1, 0) == 0)
			return 0;
		if (o->phase == OA_CAPS_SENT) {
			if (!imap_tag_is(&im->own_tag, p, tag))
				return 0;
			if (evbuffer_drain(in, len + eol) != 0)
				return proto_filter_fail(f, "out of memory");
			return proto_oauth2_caps_answered(f) == 0 ? 1 : -1;
		}
		if (!imap_tag_is(&im->login_tag, p, tag))
			return 0;
		if (proto_skip_word(p + tag + 1, len - tag - 1, "OK") != 0) {
			proto_oauth2_succeeded(f);
			im->srv_done = 1;
			return 0;
		}
		proto_oauth2_error_text(f, p + tag + 1, len - tag - 1);
		proto_oauth2_rejected(f);
	}
	if (r == 0 && evbuffer_drain(in, len + eol) != 0)
		return proto_filter_fail(f, "out of memory");
	return r == 0 ? 1 : -1;
}

/* Whether a status response's text (from its keyword on) is an [ALERT]. */
static int
imap_alert(const char *p, size_t len)
{
	size_t	w = proto_word_len(p, len);

	return len >= w + 8 && memcmp(p + w, " [", 2) == 0 &&
	    proto_word_is(p + w + 2, 5, "ALERT") && p[w + 7] == ']' &&
	    (len == w + 8 || p[w + 8] == ' ');
}

/*
 * The server's tagged NO to the client's LOGIN or AUTHENTICATE (line p):
 * reported; the words mailtlsd adds go before it as an untagged "* NO
 * [ALERT]" (RFC 9051 7.1), which a client shows its user, unless the
 * server's line is an alert of its own.  0 or -1 (no memory).
 */
static int
imap_server_refused(struct proto_filter *f, struct evbuffer *out,
    const char *p, size_t len)
{
	char		 words[PROTO_REFUSAL_MAX + 1];
	const char	*add;
	size_t		 tag = proto_word_len(p, len) + 1;

	proto_refusal_add(f, 1, p + tag, len - tag);
	if ((add = proto_refusal_report(f, words, sizeof(words))) == NULL ||
	    imap_alert(p + tag, len - tag))
		return 0;
	return evbuffer_add_printf(out, "* NO [ALERT] %s\r\n", add) < 0 ? -1 :
	    0;
}

/* One line (or the part of one up to a literal) from the server. */
static int
imap_server_segment(struct proto_filter *f, struct imap_filter *im,
    struct evbuffer *in, struct evbuffer *out, const char *p, size_t len,
    size_t eol)
{
	enum imap_response	kind = IMAP_RESP_OTHER;
	size_t			code = 0, n = 0;
	uint64_t		size = 0;
	int			lit = 0, sync, caps = 0, r;

	if (!im->srv_continue) {
		if (f->oauth2 != NULL && (r = imap_oauth2_server(f, im, in, p,
		    len, eol)) != 0)
			return r < 0 ? -1 : 0;
		kind = imap_server_classify(im, p, len, &code, &n, &caps);
		if (caps)
			proto_oauth2_caps(f, imap_mechs(p + code, n));
		if (im->srv_refused && imap_server_refused(f, out, p,
		    len) != 0)
			return proto_filter_fail(f, "out of memory");
	}
	/* Status, capability and continuation lines carry no literal. */
	if (kind == IMAP_RESP_OTHER &&
	    (lit = imap_literal(p, len, 0, &size, &sync)) < 0)
		return proto_filter_fail(f, "server literal too large");
	if (imap_server_write(f, in, out, p, len, eol, code, n, caps) != 0)
		return proto_filter_fail(f, "out of memory");
	im->srv_continue = lit;
	im->srv_literal = size;
	if (!lit && im->srv_done)
		f->done = 1;
	return 0;
}

/*
 * Pass the refusals kept for a line boundary of the server's stream.  They
 * are copied, not moved: moved, each short line would keep a buffer chain
 * of its own, ten times its size, in the client's output.
 */
static int
imap_flush_local(struct imap_filter *im, struct evbuffer *to_client)
{
	size_t		 len = evbuffer_get_length(im->local);
	unsigned char	*p;

	if (im->srv_literal > 0 || im->srv_continue || im->n_local == 0)
		return 0;
	im->n_local = 0;
	if ((p = evbuffer_pullup(im->local, -1)) == NULL ||
	    evbuffer_add(to_client, p, len) != 0)
		return -1;
	return evbuffer_drain(im->local, len);
}

/* Move server bytes to the client. */
static int
imap_filter_server(struct proto_filter *f, struct evbuffer *in,
    struct evbuffer *out)
{
	struct imap_filter	*im = f->impl;
	const char		*p;
	size_t			 len, eol;
	int			 r;

	while (!f->done) {
		if (im->srv_literal > 0) {
			if (evbuffer_get_length(in) == 0)
				break;
			if (proto_move_payload(in, out, &im->srv_literal) != 0)
				return proto_filter_fail(f, "out of memory");
			continue;
		}
		if (imap_flush_local(im, out) != 0)
			return proto_filter_fail(f, "out of memory");
		if ((r = proto_filter_line(f, 1, in, &p, &len, &eol)) < 0)
			return -1;
		if (r == 0)
			break;
		if (imap_server_segment(f, im, in, out, p, len, eol) != 0 ||
		    proto_oauth2_proceed(f) != 0)
			return -1;
	}
	if (imap_flush_local(im, out) != 0)
		return proto_filter_fail(f, "out of memory");
	return 0;
}

/* Answer a client's command here, at the next line boundary toward it. */
static int
imap_refuse(struct proto_filter *f, struct imap_filter *im, const char *tag,
    size_t len, const char *answer, struct evbuffer *to_client)
{
	if (im->n_local >= PROTO_PIPELINE_MAX)
		return proto_filter_fail(f, "too many pipelined commands "
		    "before login");
	if (evbuffer_add(im->local, tag, len) != 0 ||
	    evbuffer_add(im->local, answer, strlen(answer)) != 0)
		return proto_filter_fail(f, "out of memory");
	im->n_local++;
	if (imap_flush_local(im, to_client) != 0)
		return proto_filter_fail(f, "out of memory");
	return 0;
}

/* Remember the tag of a LOGIN or AUTHENTICATE. */
static int
imap_client_auth_tag(struct proto_filter *f, struct imap_filter *im,
    const char *tag, size_t len)
{
	if (im->n_auth >= IMAP_AUTH_TAGS)
		return proto_filter_fail(f, "too many LOGIN commands in "
		    "flight");
	if (imap_tag_set(&im->auth[im->n_auth], tag, len) != 0)
		return proto_filter_fail(f, "IMAP tag of a LOGIN longer than "
		    "64 bytes");
	im->n_auth++;
	return 0;
}

/*
 * Note the tag of a command that goes to the server.  Tags must be unique
 * among the commands in flight (RFC 9051 2.2.1); the login is told by the
 * tagged OK to its tag, so a LOGIN or AUTHENTICATE that shares its tag with
 * another command in flight could be taken for logged in when it was not.
 */
static int
imap_client_tag_sent(struct proto_filter *f, struct imap_filter *im,
    const char *tag, size_t len, int login)
{
	uint64_t	hash = imap_tag_hash(tag, len);
	int		i;

	if (imap_sent_find(im, hash) >= 0) {
		for (i = 0; i < im->n_auth && !login; i++)
			login = imap_tag_is(&im->auth[i], tag, len);
		if (login)
			return proto_filter_fail(f, "IMAP client gave a LOGIN "
			    "or AUTHENTICATE the tag of another command in "
			    "progress");
	}
	if (im->n_sent == PROTO_PIPELINE_MAX)
		return proto_filter_fail(f, "too many pipelined commands "
		    "before login");
	im->sent_capa[im->n_sent] = 0;
	im->sent[im->n_sent++] = hash;
	return 0;
}

/* Answer the client's login here with the login's tag (or none). */
static int
imap_login_answer(struct proto_filter *f, struct imap_filter *im,
    const char *answer, struct evbuffer *to_client)
{
	return imap_refuse(f, im, im->login_tag.text, im->login_tag.len,
	    answer, to_client);
}

/* The answer to credentials the filter cannot take. */
static const char *
imap_cred_answer(enum proto_cred r)
{
	switch (r) {
	case PROTO_CRED_BAD_BASE64:
		return " BAD mailtlsd: the PLAIN response is not valid "
		    "base64\r\n";
	case PROTO_CRED_MALFORMED:
		return " BAD mailtlsd: malformed PLAIN response\r\n";
	case PROTO_CRED_AUTHZID:
		return " NO [AUTHORIZATIONFAILED] mailtlsd: logging in as "
		    "another user (an authorization identity) is not "
		    "supported\r\n";
	case PROTO_CRED_TOO_LONG:
		return " NO [LIMIT] mailtlsd: user name or password longer "
		    "than " PROTO_USER_MAX_TEXT " bytes\r\n";
	case PROTO_CRED_BAD_USER:
	case PROTO_CRED_OK:
		break;
	}
	return " NO [AUTHENTICATIONFAILED] mailtlsd: the user name is empty "
	    "or holds control characters\r\n";
}

/* The client's login failed before it began: wipe it, answer. */
static int
imap_login_failed(struct proto_filter *f, struct imap_filter *im,
    const char *answer, struct evbuffer *to_client)
{
	proto_oauth2_forget(f);
	im->cli = IMAP_CLI_COMMAND;
	return imap_login_answer(f, im, answer, to_client);
}

/* The credentials are in: the session wants a token, or they are refused. */
static int
imap_login_taken(struct proto_filter *f, struct imap_filter *im,
    enum proto_cred r, struct evbuffer *to_client)
{
	if (r != PROTO_CRED_OK)
		return imap_login_failed(f, im, imap_cred_answer(r), to_client);
	im->cli = IMAP_CLI_COMMAND;
	proto_oauth2_wanted(f);
	return 0;
}

/* Whether c can be part of an astring's atom (bytes over 0x7f: UTF-8). */
static int
imap_astring_char(unsigned char c)
{
	return c > ' ' && c != 0x7f && strchr("(){%*\"\\", c) == NULL;
}

/* Append bytes to the LOGIN argument being read, within its bound. */
static void
imap_login_put(struct proto_filter *f, struct imap_filter *im,
    const char *p, size_t n)
{
	struct proto_oauth2	*o = f->oauth2;
	char			*dst = im->login_arg == 0 ? o->user :
				    o->password;
	size_t			*len = im->login_arg == 0 ? &o->user_len :
				    &o->password_len;
	size_t			 max = im->login_arg == 0 ? PROTO_USER_MAX :
				    PROTO_PASSWORD_MAX;

	if (im->login_over || *len + n > max) {
		im->login_over = 1;
		return;
	}
	memcpy(dst + *len, p, n);
	*len += n;
	dst[*len] = '\0';
}

/*
 * A literal announcement that is all of p: "{n}" or "{n+}".  1 with its
 * size, 0 when p is not one, -1 when the size is over PROTO_PAYLOAD_MAX.
 */
static int
imap_login_literal(const char *p, size_t len, uint64_t *size, int *sync)
{
	size_t	end, i;

	if (len < 3 || p[0] != '{' || p[len - 1] != '}')
		return 0;
	end = len - 1;
	*sync = p[end - 1] != '+';
	if (!*sync)
		end--;
	if (end < 2)
		return 0;
	for (i = 1; i < end; i++)
		if (p[i] < '0' || p[i] > '9')
			return 0;
	return proto_parse_number(p + 1, end - 1, PROTO_PAYLOAD_MAX,
	    size) == 0 ? 1 : -1;
}

/* A quoted string at p (after its '"'): its length with the '"', or 0. */
static size_t
imap_login_quoted(struct proto_filter *f, struct imap_filter *im,
    const char *p, size_t len)
{
	size_t	i;

	for (i = 0; i < len && p[i] != '"'; i++) {
		if (p[i] == '\\') {
			if (i + 1 == len || (p[i + 1] != '"' &&
			    p[i + 1] != '\\'))
				return 0;
			i++;
		}
		if (p[i] == '\0' || p[i] == '\r')
			return 0;
		imap_login_put(f, im, p + i, 1);
	}
	return i < len ? i + 2 : 0;
}

/*
 * Read LOGIN's arguments (RFC 9051: LOGIN SP userid SP password, each an
 * astring) from one segment of the command: after the command name, or a
 * continuation after a literal.
 */
static enum imap_login_parse
imap_login_args(struct proto_filter *f, struct imap_filter *im,
    const char *s, size_t n, uint64_t *size, int *sync)
{
	size_t	pos = 0, start, q;
	int	r;

	for (; im->login_arg < 2; im->login_arg++) {
		if (pos + 1 >= n || s[pos] != ' ')
			return IMAP_LOGIN_BAD;
		pos++;
		if (s[pos] == '"') {
			if ((q = imap_login_quoted(f, im, s + pos + 1,
			    n - pos - 1)) == 0)
				return IMAP_LOGIN_BAD;
			pos += q;
		} else if (s[pos] == '{') {
			if ((r = imap_login_literal(s + pos, n - pos, size,
			    sync)) == 0)
				return IMAP_LOGIN_BAD;
			return r < 0 ? IMAP_LOGIN_HUGE : IMAP_LOGIN_LITERAL;
		} else {
			for (start = pos; pos < n &&
			    imap_astring_char((unsigned char)s[pos]); pos++)
				;
			if (pos == start)
				return IMAP_LOGIN_BAD;
			imap_login_put(f, im, s + start, pos - start);
		}
	}
	return pos == n ? IMAP_LOGIN_DONE : IMAP_LOGIN_BAD;
}

/*
 * What a segment of LOGIN came to, once it is taken from the input;
 * tail_sync is 0 when the segment ends with a non-synchronizing literal
 * announcement, whose bytes come whatever the filter answers.
 */
static int
imap_login_parsed(struct proto_filter *f, struct imap_filter *im,
    enum imap_login_parse r, uint64_t size, int sync, int tail_sync,
    struct evbuffer *to_client)
{
	struct proto_oauth2	*o = f->oauth2;
	size_t			 max = im->login_arg == 0 ? PROTO_USER_MAX :
				    PROTO_PASSWORD_MAX;
	enum proto_cred		 cred;

	switch (r) {
	case IMAP_LOGIN_HUGE:
		return proto_filter_fail(f, "client literal too large");
	case IMAP_LOGIN_BAD:
		/* Its bytes could not be told from a command. */
		if (!tail_sync)
			return proto_filter_fail(f, "malformed IMAP LOGIN "
			    "with a non-synchronizing literal");
		return imap_login_failed(f, im, IMAP_LOGIN_MALFORMED,
		    to_client);
	case IMAP_LOGIN_LITERAL:
		if (size > max && sync)
			return imap_login_failed(f, im, imap_cred_answer(
			    PROTO_CRED_TOO_LONG), to_client);
		if (size > max)
			im->login_over = 1;	/* read, then refused */
		else if (sync && imap_refuse(f, im, "", 0, IMAP_LITERAL_GO,
		    to_client) != 0)
			return -1;
		im->cli_literal = size;
		im->cli = IMAP_CLI_LOGIN_LITERAL;
		return 0;
	case IMAP_LOGIN_DONE:
		if (im->login_over)
			return imap_login_taken(f, im, PROTO_CRED_TOO_LONG,
			    to_client);
		if ((cred = proto_oauth2_user(f, o->user, o->user_len)) ==
		    PROTO_CRED_OK)
			cred = proto_oauth2_password(f, o->password,
			    o->password_len);
		return imap_login_taken(f, im, cred, to_client);
	}
	fatalx("imap: bad LOGIN parse %d", (int)r);
}

/* A segment of LOGIN's arguments (p, len of the line): taken. */
static int
imap_login_segment(struct proto_filter *f, struct imap_filter *im,
    struct evbuffer *in, const char *p, size_t len, size_t eol, size_t skip,
    struct evbuffer *to_client)
{
	enum imap_login_parse	 r;
	uint64_t		 size = 0, tail_size;
	int			 sync = 1, tail_sync = 1;

	if (imap_literal(p, len, 1, &tail_size, &tail_sync) <= 0)
		tail_sync = 1;
	r = imap_login_args(f, im, p + skip, len - skip, &size, &sync);
	if (evbuffer_drain(in, len + eol) != 0)
		return proto_filter_fail(f, "out of memory");
	return imap_login_parsed(f, im, r, size, sync, tail_sync, to_client);
}

/* The bytes of a LOGIN argument's literal, as they come. */
static int
imap_login_literal_bytes(struct proto_filter *f, struct imap_filter *im,
    struct evbuffer *in)
{
	struct proto_oauth2	*o = f->oauth2;
	size_t			 n = evbuffer_get_length(in);
	char			*dst = im->login_arg == 0 ? o->user :
				    o->password;
	size_t			*len = im->login_arg == 0 ? &o->user_len :
				    &o->password_len;

	if ((uint64_t)n > im->cli_literal)
		n = (size_t)im->cli_literal;
	/* An argument is one literal: within its bound, it has room. */
	if (im->login_over) {
		if (evbuffer_drain(in, n) != 0)
			return proto_filter_fail(f, "out of memory");
	} else {
		if (evbuffer_remove(in, dst + *len, n) != (int)n)
			return proto_filter_fail(f, "out of memory");
		*len += n;
		dst[*len] = '\0';
	}
	im->cli_literal -= n;
	if (im->cli_literal == 0) {
		im->login_arg++;
		im->cli = IMAP_CLI_LOGIN;
	}
	return 1;
}

/* The PLAIN response line after the filter's "+". */
static int
imap_plain_line(struct proto_filter *f, struct imap_filter *im,
    struct evbuffer *in, struct evbuffer *to_client)
{
	const char	*p;
	size_t		 len, eol;
	enum proto_cred	 r;
	int		 got, cancel;

	if ((got = proto_filter_line(f, 0, in, &p, &len, &eol)) <= 0)
		return got;
	/* RFC 9051 6.2.2: "*" cancels, and gets a tagged BAD. */
	cancel = len == 1 && p[0] == '*';
	r = cancel ? PROTO_CRED_OK : proto_oauth2_plain(f, p, len);
	if (evbuffer_drain(in, len + eol) != 0)
		return proto_filter_fail(f, "out of memory");
	if (cancel)
		return imap_login_failed(f, im, IMAP_AUTH_CANCELLED,
		    to_client) == 0 ? 1 : -1;
	return imap_login_taken(f, im, r, to_client) == 0 ? 1 : -1;
}

/*
 * AUTHENTICATE from the client (args: what follows the command name):
 * PLAIN with SASL-IR ("=" is an empty response) or, without, after the
 * filter's own "+"; any other mechanism is refused, so that the client
 * falls back to PLAIN or LOGIN.
 */
static int
imap_oauth2_authenticate(struct proto_filter *f, struct imap_filter *im,
    const char *args, size_t n, struct evbuffer *to_client,
    enum proto_cred *cred)
{
	size_t	mech, ir;

	*cred = PROTO_CRED_OK;
	if (n < 2 || args[0] != ' ')
		return imap_login_failed(f, im, IMAP_AUTH_MALFORMED,
		    to_client);
	args++;
	n--;
	mech = proto_word_len(args, n);
	ir = mech < n ? proto_word_len(args + mech + 1, n - mech - 1) : 0;
	if (mech == 0 || (mech < n && (ir == 0 || mech + 1 + ir != n)))
		return imap_login_failed(f, im, IMAP_AUTH_MALFORMED,
		    to_client);
	if (!proto_word_is(args, mech, "PLAIN"))
		return imap_login_failed(f, im, IMAP_MECH_REFUSAL, to_client);
	if (mech == n) {
		im->cli = IMAP_CLI_PLAIN;
		return imap_refuse(f, im, "", 0, IMAP_PLAIN_GO, to_client);
	}
	args += mech + 1;
	*cred = ir == 1 && args[0] == '=' ? proto_oauth2_plain(f, "", 0) :
	    proto_oauth2_plain(f, args, ir);
	return 1;
}

/*
 * OAuth2: the client's LOGIN or AUTHENTICATE (cmd, at c, in the line p),
 * taken here and never sent on.  Its tag names the answer and must be
 * unique among the commands in flight.  0 or -1.
 */
static int
imap_oauth2_command(struct proto_filter *f, struct imap_filter *im,
    struct evbuffer *in, const char *p, size_t len, size_t eol, size_t tag,
    const char *c, size_t cmd, int lit, struct evbuffer *to_client)
{
	size_t		skip = (size_t)(c - p) + cmd;
	enum proto_cred	cred;
	int		r;

	if (imap_tag_set(&im->login_tag, p, tag) != 0)
		return proto_filter_fail(f, "IMAP tag of a LOGIN longer than "
		    "64 bytes");
	if (imap_sent_find(im, imap_tag_hash(p, tag)) >= 0)
		return proto_filter_fail(f, "IMAP client gave a LOGIN or "
		    "AUTHENTICATE the tag of another command in progress");
	proto_oauth2_forget(f);
	im->login_arg = 0;
	im->login_over = 0;
	if (proto_word_is(c, cmd, "LOGIN"))
		return imap_login_segment(f, im, in, p, len, eol, skip,
		    to_client);
	if (lit)
		return proto_filter_fail(f, "IMAP AUTHENTICATE with a "
		    "literal");
	r = imap_oauth2_authenticate(f, im, p + skip, len - skip, to_client,
	    &cred);
	if (r <= 0)
		return r < 0 || evbuffer_drain(in, len + eol) != 0 ? -1 : 0;
	if (evbuffer_drain(in, len + eol) != 0)
		return proto_filter_fail(f, "out of memory");
	return imap_login_taken(f, im, cred, to_client);
}


/*
 * The first line of a client command: 1 when it was answered
 * here (and taken from the input), 0 to forward it, -1 on failure.
 */
static int
imap_client_command(struct proto_filter *f, struct imap_filter *im,
    struct evbuffer *in, const char *p, size_t len, size_t eol,
    int lit, struct evbuffer *to_client)
{
	size_t		 tag = proto_word_len(p, len), cmd;
	const char	*c;

	const char	*answer = NULL;

	im->cli_authenticate = 0;
	im->cli_tag.len = 0;
	im->cli_tag_ok = 0;
	if (proto_client_command(f, p, len) != 0)
		return -1;
	if (f->oauth2 != NULL && (proto_word_is(p, tag, "LOGIN") ||
	    proto_word_is(p, tag, "AUTHENTICATE"))) {
		/* Never sent on: the server would take it for a tag. */
		if (lit)
			return proto_filter_fail(f, "IMAP LOGIN or "
			    "AUTHENTICATE without a tag, with a literal");
		if (imap_refuse(f, im, "", 0, IMAP_UNTAGGED_LOGIN,
		    to_client) != 0 || evbuffer_drain(in, len + eol) != 0)
			return -1;
		return 1;
	}
	if (tag == 0 || tag == len)
		return 0;
	im->cli_tag_ok = imap_tag_set(&im->cli_tag, p, tag) == 0;
	c = p + tag + 1;
	/* OAuth2: a LOGIN after more spaces is a LOGIN all the same. */
	while (f->oauth2 != NULL && c < p + len && *c == ' ')
		c++;
	cmd = proto_word_len(c, len - (size_t)(c - p));
	if (f->oauth2 != NULL && (proto_word_is(c, cmd, "LOGIN") ||
	    proto_word_is(c, cmd, "AUTHENTICATE")))
		return imap_oauth2_command(f, im, in, p, len, eol, tag, c,
		    cmd, lit, to_client) == 0 ? 1 : -1;
	/* Compressed bytes would end the filter's reading (RFC 4978). */
	if (proto_word_is(c, cmd, "COMPRESS") && lit)
		return proto_filter_fail(f, "IMAP COMPRESS before login");
	if (proto_word_is(c, cmd, "COMPRESS"))
		answer = IMAP_COMPRESS_REFUSAL;
	else if (proto_word_is(c, cmd, "STARTTLS") && !lit) {
		answer = IMAP_STARTTLS_REFUSAL;
		f->refused++;
	}
	if (answer != NULL) {
		if (imap_refuse(f, im, p, tag, answer, to_client) != 0)
			return -1;
		if (evbuffer_drain(in, len + eol) != 0)
			return proto_filter_fail(f, "out of memory");
		return 1;
	}
	if (imap_client_tag_sent(f, im, p, tag, proto_word_is(c, cmd,
	    "AUTHENTICATE") || proto_word_is(c, cmd, "LOGIN")) != 0)
		return -1;
	/* OAuth2: its answer names the server's mechanisms. */
	im->sent_capa[im->n_sent - 1] = proto_word_is(c, cmd, "CAPABILITY");
	if (proto_word_is(c, cmd, "AUTHENTICATE"))
		im->cli_authenticate = 1;
	else if (!proto_word_is(c, cmd, "LOGIN"))
		return 0;
	return imap_client_auth_tag(f, im, p, tag);
}

/* One line (or the part of one up to a literal) from the client. */
static int
imap_client_segment(struct proto_filter *f, struct imap_filter *im,
    struct evbuffer *in, struct evbuffer *out, const char *p, size_t len,
    size_t eol, struct evbuffer *to_client)
{
	uint64_t	size = 0;
	int		lit, sync = 0, r;

	if ((lit = imap_literal(p, len, 1, &size, &sync)) < 0)
		return proto_filter_fail(f, "client literal too large");
	if (im->cli == IMAP_CLI_COMMAND) {
		if ((r = imap_client_command(f, im, in, p, len, eol, lit,
		    to_client)) != 0)
			return r < 0 ? -1 : 0;
	}
	/* The server's tagged answer can refuse what the client waits for. */
	if (((lit && sync) || (!lit && im->cli_authenticate)) &&
	    !im->cli_tag_ok)
		return proto_filter_fail(f, "IMAP command without a usable tag "
		    "(at most 64 bytes) waits for the server");
	if (proto_move(in, out, len + eol) != 0)
		return proto_filter_fail(f, "out of memory");
	im->cli_literal = size;
	if (lit)
		im->cli = sync ? IMAP_CLI_WAIT_LITERAL : IMAP_CLI_LITERAL;
	else
		im->cli = im->cli_authenticate ? IMAP_CLI_WAIT_AUTH :
		    IMAP_CLI_COMMAND;
	return 0;
}

/* Take client bytes while their meaning is known: 1 to go on, 0, -1. */
static int
imap_client_step(struct proto_filter *f, struct evbuffer *in,
    struct evbuffer *out, struct evbuffer *to_client)
{
	struct imap_filter	*im = f->impl;
	const char		*p;
	size_t			 len, eol;
	int			 r;

	switch (im->cli) {
	case IMAP_CLI_WAIT_LITERAL:
	case IMAP_CLI_WAIT_AUTH:
		return 0;	/* until the server has answered */
	case IMAP_CLI_LITERAL:
		if (proto_move_payload(in, out, &im->cli_literal) != 0)
			return proto_filter_fail(f, "out of memory");
		if (im->cli_literal == 0)
			im->cli = IMAP_CLI_CONTINUE;	/* also {0} */
		return 1;
	case IMAP_CLI_SASL:
		if ((r = proto_sasl_line(f, in, out)) == 1)
			im->cli = IMAP_CLI_WAIT_AUTH;
		return r;
	case IMAP_CLI_LOGIN_LITERAL:
		return imap_login_literal_bytes(f, im, in);
	case IMAP_CLI_LOGIN:
		if ((r = proto_filter_line(f, 0, in, &p, &len, &eol)) <= 0)
			return r;
		return imap_login_segment(f, im, in, p, len, eol, 0,
		    to_client) == 0 ? 1 : -1;
	case IMAP_CLI_PLAIN:
		return imap_plain_line(f, im, in, to_client);
	case IMAP_CLI_COMMAND:
	case IMAP_CLI_CONTINUE:
		/* Any number may be pipelined: beyond these, they wait. */
		if (im->cli == IMAP_CLI_COMMAND &&
		    im->n_sent == PROTO_PIPELINE_MAX)
			return 0;
		if ((r = proto_filter_line(f, 0, in, &p, &len, &eol)) <= 0)
			return r;
		if (imap_client_segment(f, im, in, out, p, len, eol,
		    to_client) != 0)
			return -1;
		return 1;
	}
	fatalx("imap: bad client state %d", (int)im->cli);
}

/* OAuth2: whether a CAPABILITY of the client waits for its answer. */
static int
imap_oauth2_caps_due(struct proto_filter *f)
{
	struct imap_filter	*im = f->impl;
	int			 i;

	for (i = 0; i < im->n_sent; i++)
		if (im->sent_capa[i])
			return 1;
	return 0;
}

/* OAuth2: ask the server's capabilities under a tag of the filter's own. */
static int
imap_oauth2_ask_caps(struct proto_filter *f, struct evbuffer *to_server)
{
	struct imap_filter	*im = f->impl;
	char			 tag[IMAP_TAG_MAX];
	unsigned		 i;
	int			 n;

	/* At most PROTO_PIPELINE_MAX tags are in flight: one is free. */
	for (i = 0;; i++) {
		n = snprintf(tag, sizeof(tag), IMAP_OWN_TAG "%u", i);
		if (imap_sent_find(im, imap_tag_hash(tag, (size_t)n)) < 0 &&
		    !imap_tag_is(&im->login_tag, tag, (size_t)n))
			break;
	}
	imap_tag_set(&im->own_tag, tag, (size_t)n);
	return evbuffer_add_printf(to_server, "%s CAPABILITY\r\n", tag) < 0 ?
	    -1 : 1;
}

/* OAuth2: AUTHENTICATE under the client's tag, with SASL-IR if offered. */
static int
imap_oauth2_auth(struct proto_filter *f, struct evbuffer *to_server,
    const char *mech, const char *b64, size_t len)
{
	struct imap_filter	*im = f->impl;
	int			 ir;

	ir = (f->oauth2->mechs & PROTO_MECH_SASL_IR) != 0;

	if (evbuffer_add(to_server, im->login_tag.text, im->login_tag.len) !=
	    0 || evbuffer_add_printf(to_server, " AUTHENTICATE %s%s", mech,
	    ir ? " " : "") < 0 || (ir && evbuffer_add(to_server, b64,
	    len) != 0) || evbuffer_add(to_server, "\r\n", 2) != 0)
		return -1;
	return ir;
}

/* OAuth2: the login's tagged NO, with the words of mailtlsd. */
static int
imap_oauth2_refuse(struct proto_filter *f, int temporary, int alert,
    const char *text, struct evbuffer *to_client)
{
	struct imap_filter	*im = f->impl;
	char			 line[PROTO_REFUSAL_MAX + 64];

	snprintf(line, sizeof(line), " NO [%s] %s\r\n", alert ? "ALERT" :
	    temporary ? "UNAVAILABLE" : "AUTHENTICATIONFAILED", text);
	proto_oauth2_forget(f);
	return imap_login_answer(f, im, line, to_client);
}

const struct proto_ops proto_imap_ops = {
	.name = "imap",
	.dialogue_line = imap_dialogue_line,
	.write_greeting = imap_write_greeting,
	.filter_new = imap_filter_new,
	.filter_free = imap_filter_free,
	.filter_expect_greeting = imap_filter_expect_greeting,
	.filter_server = imap_filter_server,
	.client_step = imap_client_step,
	.oauth2_caps_due = imap_oauth2_caps_due,
	.oauth2_ask_caps = imap_oauth2_ask_caps,
	.oauth2_auth = imap_oauth2_auth,
	.oauth2_refuse = imap_oauth2_refuse,
};
