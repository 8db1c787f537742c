/*
 * proto.c - protocol-correct refusal lines for mail clients, and the
 * dispatch of the STARTTLS dialogue, the client greeting and the pre-login
 * filter to proto_imap.c, proto_pop3.c and proto_smtp.c, with the helpers
 * those three share: finding lines in an evbuffer, streaming payload bytes,
 * comparing words, rewriting capability tokens, the response FIFO.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "log.h"
#include "proto.h"
#include "proto_impl.h"

/* Names of the dialogue states, for debug lines. */
static const char *const proto_dialogue_names[] = {
	[DLG_GREETING] = "GREETING",
	[DLG_EHLO_SENT] = "EHLO_SENT",
	[DLG_STARTTLS_SENT] = "STARTTLS_SENT",
	[DLG_STLS_SENT] = "STLS_SENT",
	[DLG_UPGRADED] = "UPGRADED",
	[DLG_FAILED] = "FAILED",
};

/* Capability tokens a client must never see before login. */
static const char *const proto_hidden_tokens[] = {
	"STARTTLS",
	"STLS",
	"LOGINDISABLED",
};

/* The prefix that makes a line a temporary, connection-ending failure. */
static const char *
proto_unavailable_prefix(enum mail_protocol protocol)
{
	switch (protocol) {
	case MAIL_PROTO_IMAP:
		return "* BYE [UNAVAILABLE]";	/* RFC 5530 */
	case MAIL_PROTO_POP3:
		return "-ERR [SYS/TEMP]";	/* RFC 3206 */
	case MAIL_PROTO_SMTP:
		return "421 4.7.0";		/* RFC 5321, 3463 */
	case MAIL_PROTO_NONE:
		break;
	}
	return "-ERR";
}

/* Format the refusal line, CRLF-terminated; its length or -1. */
int
proto_format_unavailable(char *buf, size_t len, enum mail_protocol protocol,
    const char *text)
{
	int	n;

	n = snprintf(buf, len, "%s %s\r\n", proto_unavailable_prefix(protocol),
	    text);
	return n < 0 || (size_t)n >= len ? -1 : n;
}

/* Append the refusal line to out. */
int
proto_write_unavailable(struct evbuffer *out, enum mail_protocol protocol,
    const char *text)
{
	char	line[256];
	int	n;

	if ((n = proto_format_unavailable(line, sizeof(line), protocol,
	    text)) < 0)
		return -1;
	return evbuffer_add(out, line, n);
}

/* Append the line for a client that did not log in in time. */
int
proto_write_login_timeout(struct evbuffer *out, enum mail_protocol protocol,
    const char *text)
{
	const char	*prefix = "-ERR";

	if (protocol == MAIL_PROTO_IMAP)
		prefix = "* BYE";
	else if (protocol == MAIL_PROTO_SMTP)
		prefix = "421 4.4.2";
	return evbuffer_add_printf(out, "%s %s\r\n", prefix, text) < 0 ? -1 :
	    0;
}

/* The operations of a protocol, or NULL. */
static const struct proto_ops *
proto_ops_for(enum mail_protocol protocol)
{
	switch (protocol) {
	case MAIL_PROTO_IMAP:
		return &proto_imap_ops;
	case MAIL_PROTO_POP3:
		return &proto_pop3_ops;
	case MAIL_PROTO_SMTP:
		return &proto_smtp_ops;
	case MAIL_PROTO_NONE:
		break;
	}
	return NULL;
}

/* Whether a name can go into an EHLO command as it is. */
static int
proto_ehlo_name_ok(const char *name)
{
	const unsigned char	*p = (const unsigned char *)name;

	if (*p == '\0')
		return 0;
	for (; *p != '\0'; p++)
		if (*p <= ' ' || *p >= 0x7f)
			return 0;
	return 1;
}

/* A new plaintext STARTTLS dialogue for a service. */
struct proto_dialogue *
proto_dialogue_new(const struct service_config *sc)
{
	struct proto_dialogue	*d;
	const struct proto_ops	*ops;

	if ((ops = proto_ops_for(sc->protocol)) == NULL)
		return NULL;
	if ((d = calloc(1, sizeof(*d))) == NULL)
		return NULL;
	d->ops = ops;
	d->state = DLG_GREETING;
	snprintf(d->ehlo_name, sizeof(d->ehlo_name), "%s",
	    proto_ehlo_name_ok(sc->ehlo_name) ? sc->ehlo_name :
	    CONFIG_DEFAULT_EHLO_NAME);
	return d;
}

/* Free a dialogue; NULL does nothing. */
void
proto_dialogue_free(struct proto_dialogue *d)
{
	free(d);
}

/* Feed one server line to the dialogue. */
enum proto_verdict
proto_dialogue_line(struct proto_dialogue *d, const char *line, size_t len,
    struct evbuffer *to_server)
{
	if (d->state == DLG_UPGRADED || d->state == DLG_FAILED)
		return proto_dialogue_fail(d, "dialogue already finished",
		    NULL, 0);
	if (++d->lines > PROTO_DIALOGUE_LINES)
		return proto_dialogue_fail(d, "too many lines before STARTTLS",
		    NULL, 0);
	if (memchr(line, '\0', len) != NULL)
		return proto_dialogue_fail(d, "server sent a NUL byte before "
		    "STARTTLS", NULL, 0);
	return d->ops->dialogue_line(d, line, len, to_server);
}

/* Why the dialogue failed. */
const char *
proto_dialogue_reason(const struct proto_dialogue *d)
{
	return d->reason[0] != '\0' ? d->reason : "no failure";
}

/* The state name, for debug lines. */
const char *
proto_dialogue_state(const struct proto_dialogue *d)
{
	switch (d->state) {
	case DLG_GREETING:
	case DLG_EHLO_SENT:
	case DLG_STARTTLS_SENT:
	case DLG_STLS_SENT:
	case DLG_UPGRADED:
	case DLG_FAILED:
		return proto_dialogue_names[d->state];
	}
	fatalx("proto: bad dialogue state %d", (int)d->state);
}

/* Take one complete line of at most PROTO_LINE_MAX bytes. */
int
proto_take_line(struct evbuffer *in, char *line, size_t *len)
{
	struct evbuffer_ptr	eol;
	size_t			eol_len;

	eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);
	if (eol.pos < 0)
		/* The line may be complete but for its LF. */
		return evbuffer_get_length(in) > PROTO_LINE_MAX + 1 ? -1 : 0;
	if ((size_t)eol.pos > PROTO_LINE_MAX)
		return -1;
	*len = (size_t)eol.pos;
	evbuffer_remove(in, line, *len);
	evbuffer_drain(in, eol_len);
	return 1;
}

/* End the dialogue: what went wrong, with some of the server's text. */
enum proto_verdict
proto_dialogue_fail(struct proto_dialogue *d, const char *what,
    const char *text, size_t len)
{
	char	safe[PROTO_TEXT_MAX + 8];

	if (text != NULL) {
		proto_safe_text(safe, sizeof(safe), text, len);
		snprintf(d->reason, sizeof(d->reason), "%s: %s", what, safe);
	} else
		snprintf(d->reason, sizeof(d->reason), "%s", what);
	d->state = DLG_FAILED;
	return PROTO_FAIL;
}

/* Send one command to the server and move to the next state. */
enum proto_verdict
proto_dialogue_send(struct proto_dialogue *d, struct evbuffer *out,
    enum proto_dialogue_state next, const char *fmt, ...)
{
	va_list	ap;
	int	n;

	va_start(ap, fmt);
	n = evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
	if (n < 0)
		return proto_dialogue_fail(d, "out of memory", NULL, 0);
	d->state = next;
	return PROTO_MORE;
}

/* Append the greeting mailtlsd writes to the client after STARTTLS. */
int
proto_write_greeting(struct evbuffer *out, const struct service_config *sc)
{
	const struct proto_ops	*ops;

	if ((ops = proto_ops_for(sc->protocol)) == NULL)
		return -1;
	return ops->write_greeting(out, sc);
}

/* A new pre-login filter for a protocol. */
struct proto_filter *
proto_filter_new(enum mail_protocol protocol)
{
	struct proto_filter	*f;
	const struct proto_ops	*ops;

	if ((ops = proto_ops_for(protocol)) == NULL)
		return NULL;
	if ((f = calloc(1, sizeof(*f))) == NULL)
		return NULL;
	f->ops = ops;
	if ((f->impl = ops->filter_new()) == NULL) {
		free(f);
		return NULL;
	}
	return f;
}

/* Free a filter; NULL does nothing. */
void
proto_filter_free(struct proto_filter *f)
{
	if (f == NULL)
		return;
	proto_oauth2_free(f);
	f->ops->filter_free(f->impl);
	free(f);
}

/* The server's own greeting comes first (implicit TLS). */
void
proto_filter_expect_greeting(struct proto_filter *f)
{
	f->ops->filter_expect_greeting(f);
}

/* The server's greeting is dropped: the client was greeted before TLS. */
void
proto_filter_drop_greeting(struct proto_filter *f)
{
	f->drop_greeting = 1;
}

static int	proto_smtp_final_line(struct evbuffer *, size_t);

/*
 * Find the end of the greeting at the start of buf: 1 with its length, 0
 * while it is incomplete; when bounded, -1 when it is longer than
 * PROTO_LINE_MAX bytes or an SMTP greeting has more than
 * PROTO_DIALOGUE_LINES lines.  IMAP and POP3 greet in one line; SMTP
 * until "ddd ".
 */
static int
proto_greeting_end(int smtp, int bounded, struct evbuffer *buf,
    size_t *len)
{
	struct evbuffer_ptr	eol;
	size_t			eol_len, start = 0;
	int			lines = 0;

	for (;;) {
		if (evbuffer_ptr_set(buf, &eol, start, EVBUFFER_PTR_SET) != 0)
			return 0;
		eol = evbuffer_search_eol(buf, &eol, &eol_len,
		    EVBUFFER_EOL_CRLF);
		/* The whole greeting, all its lines, fits in one line's bound. */
		if (eol.pos < 0)
			return bounded && evbuffer_get_length(buf) >
			    PROTO_LINE_MAX + 1 ? -1 : 0;
		if (bounded && ((size_t)eol.pos > PROTO_LINE_MAX ||
		    ++lines > PROTO_DIALOGUE_LINES))
			return -1;
		if (!smtp || proto_smtp_final_line(buf, start))
			break;
		start = (size_t)eol.pos + eol_len;
	}
	*len = (size_t)eol.pos + eol_len;
	return 1;
}

/* Whether the complete greeting at the start of buf is a positive one. */
static int
proto_greeting_positive(const struct proto_filter *f, struct evbuffer *buf,
    size_t len)
{
	const char	*p;
	size_t		 n = len < 8 ? len : 8;

	if ((p = (const char *)evbuffer_pullup(buf, (ev_ssize_t)n)) == NULL)
		return 0;
	while (n > 0 && (p[n - 1] == '\r' || p[n - 1] == '\n'))
		n--;
	if (f->ops == &proto_imap_ops)
		return n >= 4 && memcmp(p, "* ", 2) == 0 &&
		    proto_skip_word(p + 2, n - 2, "OK") != 0;
	if (f->ops == &proto_pop3_ops)
		return proto_skip_word(p, n, "+OK") != 0;
	return n >= 3 && memcmp(p, "220", 3) == 0 && (n == 3 ||
	    p[3] == ' ' || p[3] == '-');
}

/* Drop a positive greeting: 1 when it is gone or kept, 0 to wait, -1. */
static int
proto_filter_skip_greeting(struct proto_filter *f, struct evbuffer *in)
{
	size_t	len;
	int	r;

	r = proto_greeting_end(f->ops == &proto_smtp_ops, 1, in, &len);
	if (r < 0)
		return proto_filter_fail(f, "server greeting longer than "
		    PROTO_LINE_MAX_TEXT " bytes");
	if (r == 0)
		return 0;
	f->drop_greeting = 0;
	if (proto_greeting_positive(f, in, len) &&
	    evbuffer_drain(in, len) != 0)
		return proto_filter_fail(f, "out of memory");
	return 1;
}

/* A filter that failed once stays failed, with a reason. */
static int
proto_filter_result(struct proto_filter *f, int r)
{
	if (r != 0 && f->reason[0] == '\0')
		proto_filter_fail(f, "internal error in the protocol filter");
	return r != 0 ? -1 : 0;
}

/* Move server bytes to the client through the filter. */
int
proto_filter_server(struct proto_filter *f, struct evbuffer *from_server,
    struct evbuffer *to_client)
{
	if (f->reason[0] != '\0')
		return -1;
	if (f->done)
		return 0;
	if (f->drop_greeting && proto_filter_skip_greeting(f, from_server) <= 0)
		return f->reason[0] != '\0' ? -1 : 0;
	return proto_filter_result(f, f->ops->filter_server(f, from_server,
	    to_client));
}

/* Move client bytes to the server through the filter. */
int
proto_filter_client(struct proto_filter *f, struct evbuffer *from_client,
    struct evbuffer *to_server, struct evbuffer *to_client)
{
	int	r;

	if (f->reason[0] != '\0')
		return -1;
	/* During an OAuth2 login the client's next commands wait. */
	while (!f->done && evbuffer_get_length(from_client) > 0 &&
	    evbuffer_get_length(to_client) < PROTO_CLIENT_BACKLOG &&
	    !proto_oauth2_busy(f))
		if ((r = f->ops->client_step(f, from_client, to_server,
		    to_client)) <= 0)
			return proto_filter_result(f, r);
	return 0;
}

/* Whether the client has logged in. */
int
proto_filter_done(const struct proto_filter *f)
{
	return f->done;
}

/* Whether the login deadline is over. */
int
proto_filter_past_login(const struct proto_filter *f)
{
	return f->done || f->mail_taken;
}

/* How many of the client's STARTTLS commands were refused. */
unsigned
proto_filter_refused(const struct proto_filter *f)
{
	return f->refused;
}

/* Why the filter failed. */
const char *
proto_filter_reason(const struct proto_filter *f)
{
	return f->reason[0] != '\0' ? f->reason : "no failure";
}

/* Whether the filter failed. */
int
proto_filter_failed(const struct proto_filter *f)
{
	return f->reason[0] != '\0';
}

/* Record why the filter failed; -1. */
int
proto_filter_fail(struct proto_filter *f, const char *reason)
{
	snprintf(f->reason, sizeof(f->reason), "%s", reason);
	return -1;
}

/*
 * Check the first line of a client command before it goes anywhere: 0, or
 * -1 (the filter failed) for an HTTP request, whose lines must never reach
 * a mail server from the user's address.
 */
int
proto_client_command(struct proto_filter *f, const char *line, size_t len)
{
	if (proto_http_line(line, len))
		return proto_filter_fail(f, "client sent an HTTP request "
		    "(a cross-protocol request, as a web page can make a "
		    "browser send)");
	return 0;
}

/* Whether p (len bytes) starts with an HTTP method and a space. */
static int
proto_http_method(const char *p, size_t len)
{
	/* What a page can make a browser send: forms, fetch, preflights. */
	static const char *const methods[] = {
		"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS",
		"TRACE", "PATCH", "PRI"
	};
	size_t	i, n = proto_word_len(p, len);

	for (i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (n == strlen(methods[i]) && memcmp(p, methods[i], n) == 0)
			return n < len;
	return 0;
}

/* Whether p (len bytes) ends in " HTTP/d.d", after a target. */
static int
proto_http_version(const char *p, size_t len)
{
	static const char	suffix[] = " HTTP/";
	const size_t		n = sizeof(suffix) - 1;
	const char		*v;

	if (len < n + 3)
		return 0;
	v = p + len - n - 3;
	return strncasecmp(v, suffix, n) == 0 && v[n] >= '0' &&
	    v[n] <= '9' && v[n + 1] == '.' && v[n + 2] >= '0' &&
	    v[n + 2] <= '9';
}

/* Whether the line is "Name: ..." with a request header's name. */
static int
proto_http_header(const char *p, size_t len)
{
	static const char *const names[] = {
		"Host", "User-Agent", "Accept", "Accept-Language",
		"Accept-Encoding", "Accept-Charset", "Content-Type",
		"Content-Length", "Transfer-Encoding", "Connection", "Origin",
		"Referer", "Cookie", "Upgrade-Insecure-Requests",
		"Cache-Control", "Pragma", "Upgrade", "DNT", "Authorization",
		"If-Modified-Since", "If-None-Match", "Range", "TE",
		"Priority", "Sec-Fetch-Site", "Sec-Fetch-Mode",
		"Sec-Fetch-Dest", "Sec-Fetch-User", "Sec-CH-UA"
	};
	const char	*colon = memchr(p, ':', len);
	size_t		 i, n;

	if (colon == NULL)
		return 0;
	n = (size_t)(colon - p);
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (n == strlen(names[i]) && strncasecmp(p, names[i], n) == 0)
			return 1;
	return 0;
}

/* Whether a client line is an HTTP request line or request header. */
int
proto_http_line(const char *line, size_t len)
{
	size_t	method, target;

	if (proto_http_header(line, len))
		return 1;
	if (!proto_http_method(line, len))
		return 0;
	/* METHOD SP target SP HTTP/x.y, the target without spaces. */
	method = proto_word_len(line, len);
	target = proto_word_len(line + method + 1, len - method - 1);
	return target > 0 && method + 1 + target + 9 == len &&
	    proto_http_version(line, len);
}

/*
 * Find the first complete line (LF or CRLF) of buf and make it contiguous:
 * 1 with *line, its length without the line end and the line end's length;
 * 0 when the line is not complete; -1 when it is longer than PROTO_LINE_MAX.
 */
int
proto_line_find(struct evbuffer *buf, const char **line, size_t *len,
    size_t *eol)
{
	struct evbuffer_ptr	 end, lf;
	size_t			 avail = evbuffer_get_length(buf), limit;
	const char		*p;

	limit = avail < PROTO_LINE_MAX + 2 ? avail : PROTO_LINE_MAX + 2;
	if (evbuffer_ptr_set(buf, &end, limit, EVBUFFER_PTR_SET) != 0)
		return -1;
	lf = evbuffer_search_range(buf, "\n", 1, NULL, &end);
	if (lf.pos < 0)
		return avail >= PROTO_LINE_MAX + 2 ? -1 : 0;
	if ((p = (const char *)evbuffer_pullup(buf, lf.pos + 1)) == NULL)
		return -1;
	*eol = lf.pos > 0 && p[lf.pos - 1] == '\r' ? 2 : 1;
	*len = (size_t)lf.pos + 1 - *eol;
	*line = p;
	return *len > PROTO_LINE_MAX ? -1 : 1;
}

/*
 * Move one complete client line nobody needs to read (a SASL response),
 * line end included, or nothing while it is incomplete: the server reads it
 * only once it is complete, and may end the exchange before that, when the
 * rest must be read as a command of its own.  1 when a line moved, 0 when
 * none is complete yet, -1 (the filter failed) when it is longer than
 * PROTO_LINE_MAX or there is no memory.
 */
int
proto_sasl_line(struct proto_filter *f, struct evbuffer *from,
    struct evbuffer *to)
{
	const char	*line;
	size_t		 len, eol;
	int		 r;

	if ((r = proto_filter_line(f, 0, from, &line, &len, &eol)) <= 0)
		return r;
	if (proto_move(from, to, len + eol) != 0)
		return proto_filter_fail(f, "out of memory");
	return 1;
}

/*
 * The first complete line from the server (or the client) before login, as
 * proto_line_find(): 1, 0 while it is incomplete, -1 (the filter failed)
 * when it is too long.
 */
int
proto_filter_line(struct proto_filter *f, int server, struct evbuffer *in,
    const char **line, size_t *len, size_t *eol)
{
	int	r;

	if ((r = proto_line_find(in, line, len, eol)) < 0)
		return proto_filter_fail(f, server ? "server line longer than "
		    PROTO_LINE_MAX_TEXT " bytes before login" : "client line "
		    "longer than " PROTO_LINE_MAX_TEXT " bytes before login");
	return r;
}

/*
 * The next client command (POP3, SMTP), checked by proto_client_command():
 * 1 with its line, 0 while it is incomplete or the FIFO is full (pipelining
 * has no limit: more commands wait for answers), -1 (the filter failed).
 */
int
proto_fifo_command(struct proto_filter *f, const struct proto_fifo *fifo,
    struct evbuffer *in, const char **line, size_t *len, size_t *eol)
{
	int	r;

	if ((r = proto_filter_line(f, 0, in, line, len, eol)) <= 0)
		return r;
	if (proto_client_command(f, *line, *len) != 0)
		return -1;
	return fifo->count == PROTO_PIPELINE_MAX ? 0 : 1;
}

/*
 * Move server bytes to the client through a FIFO filter (POP3, SMTP):
 * settle between lines, hand each complete line to the protocol, until
 * done or no complete line is left.  0 or -1 (the filter failed).
 */
int
proto_fifo_server(struct proto_filter *f, struct evbuffer *in,
    struct evbuffer *out, proto_settle_fn *settle, proto_line_fn *server_line)
{
	const char	*line;
	size_t		 len, eol;
	int		 r;

	while (!f->done) {
		if (settle(f, out) != 0)
			return -1;
		if (f->done)
			break;
		if ((r = proto_filter_line(f, 1, in, &line, &len, &eol)) < 0)
			return -1;
		if (r == 0)
			break;
		if (server_line(f, in, out, line, len, eol) != 0)
			return -1;
	}
	return 0;
}

/*
 * A client's STARTTLS answered here (POP3, SMTP): count it and take its
 * line of n bytes; its answer waits in the FIFO.  0 or -1 (the filter
 * failed).
 */
int
proto_fifo_refuse(struct proto_filter *f, struct evbuffer *in, size_t n)
{
	f->refused++;
	if (evbuffer_drain(in, n) != 0)
		return proto_filter_fail(f, "out of memory");
	return 0;
}

/*
 * Between two responses (POP3, SMTP): write the daemon's own answers that
 * are due, and be done once logged in with none of them left.  0 or -1
 * (the filter failed).
 */
int
proto_fifo_settle(struct proto_filter *f, struct proto_fifo *fifo,
    proto_local_fn *local, int authed, struct evbuffer *to_client)
{
	int	type, i, r;

	while ((type = proto_fifo_head(fifo)) >= 0 &&
	    (r = local(f, type, to_client)) != 0) {
		if (r < 0)
			return proto_filter_fail(f, "out of memory");
		proto_fifo_pop(fifo);
	}
	if (!authed)
		return 0;
	for (i = 0; i < fifo->count; i++)
		if (local(f, fifo->entry[(fifo->head + i) %
		    PROTO_PIPELINE_MAX], NULL) != 0)
			return 0;
	f->done = 1;
	return 0;
}

/* Move len bytes from one buffer to another; 0 or -1. */
int
proto_move(struct evbuffer *from, struct evbuffer *to, size_t len)
{
	if (len == 0)
		return 0;
	return evbuffer_remove_buffer(from, to, len) == (int)len ? 0 : -1;
}

/* Stream what is there of a payload of *left bytes; 0 or -1. */
int
proto_move_payload(struct evbuffer *from, struct evbuffer *to,
    uint64_t *left)
{
	size_t	n = evbuffer_get_length(from);

	if ((uint64_t)n > *left)
		n = (size_t)*left;
	if (proto_move(from, to, n) != 0)
		return -1;
	*left -= n;
	return 0;
}

/* ASCII upper case, whatever the locale. */
static int
proto_upper(int c)
{
	return c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c;
}

/* Whether p (len bytes) is word, ignoring ASCII case. */
int
proto_word_is(const char *p, size_t len, const char *word)
{
	size_t	i;

	if (len != strlen(word))
		return 0;
	for (i = 0; i < len; i++)
		if (proto_upper((unsigned char)p[i]) != word[i])
			return 0;
	return 1;
}

/* The length of the first word of p: the bytes up to a space or the end. */
size_t
proto_word_len(const char *p, size_t len)
{
	const char	*sp = memchr(p, ' ', len);

	return sp != NULL ? (size_t)(sp - p) : len;
}

/*
 * When p begins with word (upper case, compared ignoring case) followed by
 * a space or the end, the word's length; else 0.
 */
size_t
proto_skip_word(const char *p, size_t len, const char *word)
{
	size_t	n = strlen(word);

	if (len < n || (len > n && p[n] != ' ') || !proto_word_is(p, n, word))
		return 0;
	return n;
}

/* Whether a capability token must be hidden from the client. */
int
proto_token_hidden(const char *p, size_t len)
{
	size_t	i;

	for (i = 0; i < sizeof(proto_hidden_tokens) /
	    sizeof(proto_hidden_tokens[0]); i++)
		if (proto_word_is(p, len, proto_hidden_tokens[i]))
			return 1;
	return 0;
}

/* Whether a space-separated list of tokens holds word. */
int
proto_tokens_have(const char *p, size_t len, const char *word)
{
	const char	*w;
	size_t		 n;

	while ((n = proto_next_word(&p, &len, &w)) > 0)
		if (proto_word_is(w, n, word))
			return 1;
	return 0;
}

/*
 * The next word of a space-separated list at *p (*len bytes) in *word:
 * its length, 0 at the end; *p and *len move past it.
 */
size_t
proto_next_word(const char **p, size_t *len, const char **word)
{
	size_t	n;

	while (*len > 0 && **p == ' ') {
		(*p)++;
		(*len)--;
	}
	*word = *p;
	n = proto_word_len(*p, *len);
	*p += n;
	*len -= n;
	return n;
}

/*
 * Append a list of space-separated tokens without the hidden ones: each
 * token is dropped together with the spaces before it, everything else is
 * kept byte for byte.
 */
int
proto_write_tokens(struct evbuffer *out, const char *p, size_t len)
{
	size_t	sp, n;

	while (len > 0) {
		for (sp = 0; sp < len && p[sp] == ' '; sp++)
			;
		n = proto_word_len(p + sp, len - sp);
		if (n == 0 || !proto_token_hidden(p + sp, n))
			if (evbuffer_add(out, p, sp + n) != 0)
				return -1;
		p += sp + n;
		len -= sp + n;
	}
	return 0;
}

/* Parse a decimal number of at most max; 0 or -1. */
int
proto_parse_number(const char *p, size_t len, uint64_t max, uint64_t *out)
{
	uint64_t	v = 0;
	size_t		i;

	if (len == 0 || len > 19)
		return -1;
	for (i = 0; i < len; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		v = v * 10 + (uint64_t)(p[i] - '0');
	}
	if (v > max)
		return -1;
	*out = v;
	return 0;
}

/*
 * Copy at most PROTO_TEXT_MAX bytes of a peer's text for a log line, with
 * every control or non-ASCII byte replaced by '?'.
 */
void
proto_safe_text(char *dst, size_t dstlen, const char *src, size_t len)
{
	size_t	i, n;

	if (dstlen == 0)
		return;
	n = len < PROTO_TEXT_MAX ? len : PROTO_TEXT_MAX;
	if (n > dstlen - 1)
		n = dstlen - 1;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)src[i];

		dst[i] = c < ' ' || c >= 0x7f ? '?' : (char)c;
	}
	dst[n] = '\0';
	if (n < len && dstlen - 1 - n >= 3)
		memcpy(dst + n, "...", 4);
}

/*
 * Append text to the NUL-terminated line in dst (dstlen bytes), after a
 * space when dst holds some, as far as it fits: every control or
 * non-ASCII byte becomes '?'.  How a peer's words reach the log.
 */
void
proto_text_append(char *dst, size_t dstlen, const char *text, size_t len)
{
	size_t	n = strlen(dst), i;

	if (n > 0 && n + 1 < dstlen)
		dst[n++] = ' ';
	for (i = 0; i < len && n + 1 < dstlen; i++) {
		unsigned char c = (unsigned char)text[i];

		dst[n++] = c < ' ' || c >= 0x7f ? '?' : (char)c;
	}
	dst[n] = '\0';
}

/*
 * Copy text as one safe line for a client: control bytes become spaces,
 * other bytes outside printable ASCII '?', at most PROTO_REFUSAL_MAX bytes
 * (and what fits in dstlen).
 */
void
proto_one_line(char *dst, size_t dstlen, const char *text)
{
	size_t	i, n = 0;

	for (i = 0; text[i] != '\0' && n < PROTO_REFUSAL_MAX &&
	    n + 1 < dstlen; i++) {
		unsigned char c = (unsigned char)text[i];

		dst[n++] = c < ' ' || c == 0x7f ? ' ' : c > 0x7f ? '?' :
		    (char)c;
	}
	dst[n] = '\0';
}

/* Report the refusals of logins that pass through to fn. */
void
proto_filter_on_refusal(struct proto_filter *f, proto_refusal_fn *fn,
    void *arg)
{
	f->on_refusal = fn;
	f->refusal_arg = arg;
}

/* A line of the server's refusal of a login that passes through. */
void
proto_refusal_add(struct proto_filter *f, int first, const char *text,
    size_t len)
{
	if (first)
		f->refusal[0] = '\0';
	proto_text_append(f->refusal, sizeof(f->refusal), text, len);
}

/*
 * The refusal is complete: tell the callback, and return the words it
 * adds as one safe line in words, or NULL.
 */
const char *
proto_refusal_report(struct proto_filter *f, char *words, size_t wordslen)
{
	const char	*add = NULL;

	if (f->on_refusal != NULL)
		add = f->on_refusal(f->refusal, f->refusal_arg);
	f->refusal[0] = '\0';
	if (add == NULL || add[0] == '\0' || wordslen == 0)
		return NULL;
	proto_one_line(words, wordslen, add);
	return words;
}

/* Queue an expected response; -1 when too many are outstanding. */
int
proto_fifo_push(struct proto_fifo *q, int type)
{
	if (q->count == PROTO_PIPELINE_MAX)
		return -1;
	q->entry[(q->head + q->count++) % PROTO_PIPELINE_MAX] = (uint8_t)type;
	return 0;
}

/* The oldest expected response, or -1. */
int
proto_fifo_head(const struct proto_fifo *q)
{
	return q->count > 0 ? q->entry[q->head] : -1;
}

/* Forget the oldest expected response. */
void
proto_fifo_pop(struct proto_fifo *q)
{
	if (q->count == 0)
		return;
	q->head = (q->head + 1) % PROTO_PIPELINE_MAX;
	q->count--;
}

/* Whether a response of this type is still expected. */
int
proto_fifo_holds(const struct proto_fifo *q, int type)
{
	int	i;

	for (i = 0; i < q->count; i++)
		if (q->entry[(q->head + i) % PROTO_PIPELINE_MAX] == type)
			return 1;
	return 0;
}

/* Whether the line starting at offset start of buf ends an SMTP reply. */
static int
proto_smtp_final_line(struct evbuffer *buf, size_t start)
{
	struct evbuffer_ptr	at;
	char			head[4];

	if (evbuffer_ptr_set(buf, &at, start, EVBUFFER_PTR_SET) != 0 ||
	    evbuffer_copyout_from(buf, &at, head, sizeof(head)) !=
	    (ev_ssize_t)sizeof(head))
		return 0;
	return head[3] == ' ' || head[3] == '\r' || head[3] == '\n';
}

/* Whether buf holds the complete greeting and nothing after it. */
int
proto_greeting_complete(enum mail_protocol protocol, struct evbuffer *buf)
{
	size_t	len;

	if (proto_greeting_end(protocol == MAIL_PROTO_SMTP, 0, buf, &len) != 1)
		return 0;
	return len == evbuffer_get_length(buf) ? 1 : -1;
}

/*
 * The daemon's own answer to a FIFO entry of type (POP3, SMTP): the OAuth2
 * login's refusal (oauth2_type) once it is due, or answers[type] for the
 * entries from local_first on.  1 when answered (with to_client NULL:
 * when it would be), 0 when the server answers it, -1 without memory.
 */
int
proto_fifo_local(struct proto_filter *f, int type, int oauth2_type,
    int local_first, const char *const *answers, size_t n_answers,
    struct evbuffer *to_client)
{
	const char	*answer;

	if (type == oauth2_type) {
		/* The login's refusal, which waited for its turn. */
		if (f->oauth2 == NULL || f->oauth2->phase != OA_REFUSING)
			return 0;
		answer = f->oauth2->refusal;
	} else if (type >= local_first && (size_t)type < n_answers)
		answer = answers[type];
	else
		return 0;
	if (to_client == NULL)
		return 1;
	if (evbuffer_add(to_client, answer, strlen(answer)) != 0)
		return -1;
	if (type == oauth2_type)
		proto_oauth2_forget(f);
	return 1;
}
