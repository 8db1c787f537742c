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
 * LOGIN and AUTHENTICATE, and is done after the tagged OK to one of them.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "log.h"
#include "proto.h"
#include "proto_impl.h"

#define IMAP_DIALOGUE_TAG	"M1"
#define IMAP_TAG_MAX		64	/* tags the filter must remember */
#define IMAP_AUTH_TAGS		8	/* LOGIN/AUTHENTICATE in flight */

#define IMAP_STARTTLS_REFUSAL	" BAD STARTTLS is not available: " \
				"mailtlsd already uses TLS to the server\r\n"
/* RFC 4978: COMPRESS belongs to the authenticated state. */
#define IMAP_COMPRESS_REFUSAL	" BAD COMPRESS is only available after " \
				"login\r\n"

/* Where the client's stream is. */
enum imap_client_state {
	IMAP_CLI_COMMAND = 0,	/* a new command starts */
	IMAP_CLI_CONTINUE,	/* the command goes on after a literal */
	IMAP_CLI_LITERAL,	/* literal bytes */
	IMAP_CLI_WAIT_LITERAL,	/* a synchronizing literal waits for "+" */
	IMAP_CLI_WAIT_AUTH,	/* AUTHENTICATE waits for "+" or its reply */
	IMAP_CLI_SASL		/* one line of SASL data */
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

/* The server answered a tagged command: follow what it means. */
static void
imap_server_tagged(struct imap_filter *im, const char *tag, size_t len,
    int ok)
{
	int	i;

	if ((i = imap_sent_find(im, imap_tag_hash(tag, len))) >= 0)
		im->sent[i] = im->sent[--im->n_sent];

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
		return;
	}
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
    size_t *code, size_t *n)
{
	size_t	w, tag;

	*n = 0;
	if (len >= 1 && p[0] == '+') {
		imap_server_continuation(im);
		return IMAP_RESP_CONTINUATION;
	}
	if (imap_untagged(p, len)) {
		if ((w = proto_skip_word(p + 2, len - 2, "CAPABILITY")) != 0) {
			*code = 2 + w;
			*n = len - *code;
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
		imap_server_tagged(im, p, tag,
		    proto_skip_word(p + tag + 1, len - tag - 1, "OK") != 0);
		w += tag + 1;
	}
	if (imap_capability_code(p + w, len - w, code, n))
		*code += w;
	return IMAP_RESP_STATUS;
}

/*
 * Write a server line with the capability list at [code, code + n)
 * filtered (n == 0: unchanged) and take it from the input.
 */
static int
imap_server_write(struct evbuffer *in, struct evbuffer *out, const char *p,
    size_t len, size_t eol, size_t code, size_t n)
{
	if (n == 0)
		return proto_move(in, out, len + eol);
	if (evbuffer_add(out, p, code) != 0 ||
	    proto_write_tokens(out, p + code, n) != 0 ||
	    evbuffer_add(out, p + code + n, len + eol - code - n) != 0)
		return -1;
	return evbuffer_drain(in, len + eol);
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
	int			lit = 0, sync;

	if (!im->srv_continue)
		kind = imap_server_classify(im, p, len, &code, &n);
	/* Status, capability and continuation lines carry no literal. */
	if (kind == IMAP_RESP_OTHER &&
	    (lit = imap_literal(p, len, 0, &size, &sync)) < 0)
		return proto_filter_fail(f, "server literal too large");
	if (imap_server_write(in, out, p, len, eol, code, n) != 0)
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
		if (imap_server_segment(f, im, in, out, p, len, eol) != 0)
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
	im->sent[im->n_sent++] = hash;
	return 0;
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
	if (tag == 0 || tag == len)
		return 0;
	im->cli_tag_ok = imap_tag_set(&im->cli_tag, p, tag) == 0;
	c = p + tag + 1;
	cmd = proto_word_len(c, len - tag - 1);
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

const struct proto_ops proto_imap_ops = {
	.name = "imap",
	.dialogue_line = imap_dialogue_line,
	.write_greeting = imap_write_greeting,
	.filter_new = imap_filter_new,
	.filter_free = imap_filter_free,
	.filter_expect_greeting = imap_filter_expect_greeting,
	.filter_server = imap_filter_server,
	.client_step = imap_client_step,
};
