/*
 * proto_local.c - the plaintext opening toward the mail client when
 * local_tls = starttls: mailtlsd greets, offers STARTTLS (IMAP, RFC 3501
 * 6.2.1; SMTP, RFC 3207) or STLS (POP3, RFC 2595), refuses every login
 * before it (IMAP LOGINDISABLED, no AUTH in SMTP's EHLO, POP3 -ERR), and
 * says go ahead.  Nothing said here reaches the mail server.
 *
 * One line at a time, at most PROTO_LOCAL_LINE_MAX bytes each and
 * PROTO_LOCAL_COMMANDS in all; the line after the STARTTLS command is
 * left to the caller, which must find nothing there.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "log.h"
#include "proto_impl.h"
#include "proto_local.h"

#define LOCAL_REASON_MAX	160

/* Where the opening is. */
enum local_state {
	LOCAL_PLAIN = 0,	/* commands before STARTTLS */
	LOCAL_UPGRADED,		/* go-ahead written */
	LOCAL_QUIT,		/* the client said goodbye */
	LOCAL_FAILED		/* closed by mailtlsd: see reason */
};

static const char *const local_state_names[] = {
	[LOCAL_PLAIN] = "PLAIN",
	[LOCAL_UPGRADED] = "UPGRADED",
	[LOCAL_QUIT] = "QUIT",
	[LOCAL_FAILED] = "FAILED",
};

struct proto_local {
	enum mail_protocol	 protocol;
	enum local_state	 state;
	int			 commands;
	char			 name[CONFIG_HOST_MAX];	/* SMTP greeting */
	char			 reason[LOCAL_REASON_MAX];
};

/* A new opening for a service. */
struct proto_local *
proto_local_new(const struct service_config *sc)
{
	struct proto_local	*pl;

	if (sc->protocol != MAIL_PROTO_IMAP &&
	    sc->protocol != MAIL_PROTO_POP3 && sc->protocol != MAIL_PROTO_SMTP)
		return NULL;
	if ((pl = calloc(1, sizeof(*pl))) == NULL)
		return NULL;
	pl->protocol = sc->protocol;
	pl->state = LOCAL_PLAIN;
	snprintf(pl->name, sizeof(pl->name), "%s", sc->server_name[0] != '\0' ?
	    sc->server_name : "localhost");
	return pl;
}

/* Free an opening; NULL does nothing. */
void
proto_local_free(struct proto_local *pl)
{
	free(pl);
}

/* Append a formatted answer; -1 when out of memory. */
static int __attribute__((format(printf, 2, 3)))
local_say(struct evbuffer *out, const char *fmt, ...)
{
	va_list	ap;
	int	n;

	va_start(ap, fmt);
	n = evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
	return n < 0 ? -1 : 0;
}

/* End the opening: the protocol's closing line carrying why; FAIL. */
static enum proto_local_verdict
local_close(struct proto_local *pl, struct evbuffer *out, const char *why)
{
	snprintf(pl->reason, sizeof(pl->reason), "%s", why);
	pl->state = LOCAL_FAILED;
	switch (pl->protocol) {
	case MAIL_PROTO_IMAP:
		(void)local_say(out, "* BYE mailtlsd: %s\r\n", why);
		break;
	case MAIL_PROTO_POP3:
		(void)local_say(out, "-ERR mailtlsd: %s\r\n", why);
		break;
	case MAIL_PROTO_SMTP:
	case MAIL_PROTO_NONE:
		(void)local_say(out, "421 4.7.0 mailtlsd: %s\r\n", why);
		break;
	}
	return PROTO_LOCAL_FAIL;
}

/* After an answer (r from local_say) the opening goes on: MORE, or FAIL. */
static enum proto_local_verdict
local_answer(struct proto_local *pl, int r)
{
	if (r != 0) {
		snprintf(pl->reason, sizeof(pl->reason), "out of memory");
		pl->state = LOCAL_FAILED;
		return PROTO_LOCAL_FAIL;
	}
	return PROTO_LOCAL_MORE;
}

/* The last answer of the opening: the go-ahead or the goodbye. */
static enum proto_local_verdict
local_last(struct proto_local *pl, int r, enum local_state state)
{
	if (r != 0) {
		snprintf(pl->reason, sizeof(pl->reason), "out of memory");
		pl->state = LOCAL_FAILED;
		return PROTO_LOCAL_FAIL;
	}
	pl->state = state;
	if (state == LOCAL_QUIT) {
		snprintf(pl->reason, sizeof(pl->reason), "client quit before "
		    "STARTTLS");
		return PROTO_LOCAL_QUIT;
	}
	return PROTO_LOCAL_UPGRADE;
}

/* ---- IMAP ---------------------------------------------------------------- */

#define IMAP_LOCAL_CAPS	"IMAP4rev1 STARTTLS LOGINDISABLED"

/* Whether a tag is an IMAP tag: atom characters other than "+". */
static int
local_imap_tag_ok(const char *p, size_t len)
{
	size_t	i;

	if (len == 0)
		return 0;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c <= ' ' || c >= 0x7f || strchr("(){%*\"\\]+", c) != NULL)
			return 0;
	}
	return 1;
}

/*
 * Whether a line ends with a literal announcement ({n}, {n+}, ~{n}):
 * 1 synchronizing, 2 not, 0 none.
 */
static int
local_imap_literal(const char *p, size_t len)
{
	size_t	end, open;
	int	sync = 1;

	if (len < 3 || p[len - 1] != '}')
		return 0;
	end = len - 1;
	if (p[end - 1] == '+') {
		sync = 0;
		end--;
	}
	for (open = end; open > 0 && p[open - 1] >= '0' && p[open - 1] <= '9';
	    open--)
		;
	if (open == 0 || open == end || p[open - 1] != '{')
		return 0;
	return sync ? 1 : 2;
}

/* One IMAP command line (RFC 3501 6.1, 6.2, with LOGINDISABLED). */
static enum proto_local_verdict
local_imap(struct proto_local *pl, const char *line, size_t len,
    struct evbuffer *out)
{
	size_t		 tag = proto_word_len(line, len), cmd, rest;
	const char	*c;
	int		 lit;

	if (!local_imap_tag_ok(line, tag))
		return local_answer(pl, local_say(out, "* BAD invalid tag "
		    "or empty command\r\n"));
	if (tag == len || tag + 1 == len)
		return local_answer(pl, local_say(out, "%.*s BAD missing "
		    "command\r\n", (int)tag, line));
	c = line + tag + 1;
	cmd = proto_word_len(c, len - tag - 1);
	rest = len - tag - 1 - cmd;
	if ((lit = local_imap_literal(line, len)) == 2)
		return local_close(pl, out, "IMAP literal before STARTTLS");
	if (lit == 1)
		return local_answer(pl, local_say(out, "%.*s BAD no "
		    "literals before STARTTLS\r\n", (int)tag, line));
	if (proto_word_is(c, cmd, "STARTTLS")) {
		if (rest != 0)
			return local_answer(pl, local_say(out, "%.*s BAD "
			    "STARTTLS takes no arguments\r\n", (int)tag, line));
		return local_last(pl, local_say(out, "%.*s OK Begin TLS "
		    "negotiation now\r\n", (int)tag, line), LOCAL_UPGRADED);
	}
	if (proto_word_is(c, cmd, "CAPABILITY"))
		return local_answer(pl, local_say(out, "* CAPABILITY "
		    IMAP_LOCAL_CAPS "\r\n%.*s OK CAPABILITY completed\r\n",
		    (int)tag, line));
	if (proto_word_is(c, cmd, "NOOP"))
		return local_answer(pl, local_say(out, "%.*s OK NOOP "
		    "completed\r\n", (int)tag, line));
	if (proto_word_is(c, cmd, "LOGOUT"))
		return local_last(pl, local_say(out, "* BYE mailtlsd logging "
		    "out\r\n%.*s OK LOGOUT completed\r\n", (int)tag, line),
		    LOCAL_QUIT);
	if (proto_word_is(c, cmd, "LOGIN") ||
	    proto_word_is(c, cmd, "AUTHENTICATE"))
		return local_answer(pl, local_say(out, "%.*s NO "
		    "[PRIVACYREQUIRED] use STARTTLS first\r\n", (int)tag,
		    line));
	return local_answer(pl, local_say(out, "%.*s BAD use STARTTLS "
	    "first\r\n", (int)tag, line));
}

/* ---- POP3 ---------------------------------------------------------------- */

/* One POP3 command line (RFC 1939, 2449, 2595). */
static enum proto_local_verdict
local_pop3(struct proto_local *pl, const char *line, size_t len,
    struct evbuffer *out)
{
	size_t	verb = proto_word_len(line, len);
	int	args = verb < len;

	if (proto_word_is(line, verb, "STLS") && !args)
		return local_last(pl, local_say(out, "+OK Begin TLS "
		    "negotiation\r\n"), LOCAL_UPGRADED);
	if (proto_word_is(line, verb, "CAPA") && !args)
		return local_answer(pl, local_say(out, "+OK Capability "
		    "list follows\r\nSTLS\r\n.\r\n"));
	if (proto_word_is(line, verb, "QUIT") && !args)
		return local_last(pl, local_say(out, "+OK mailtlsd "
		    "closing\r\n"), LOCAL_QUIT);
	return local_answer(pl, local_say(out, "-ERR use STLS "
	    "first\r\n"));
}

/* ---- SMTP ---------------------------------------------------------------- */

/* One SMTP command line (RFC 5321 4.1, RFC 3207). */
static enum proto_local_verdict
local_smtp(struct proto_local *pl, const char *line, size_t len,
    struct evbuffer *out)
{
	size_t	verb = proto_word_len(line, len);
	int	args = verb < len;

	if (proto_word_is(line, verb, "EHLO"))
		return local_answer(pl, local_say(out, "250-%s\r\n"
		    "250 STARTTLS\r\n", pl->name));
	if (proto_word_is(line, verb, "HELO"))
		return local_answer(pl, local_say(out, "250 %s\r\n",
		    pl->name));
	if (proto_word_is(line, verb, "STARTTLS")) {
		if (args)
			return local_answer(pl, local_say(out, "501 5.5.4 "
			    "STARTTLS takes no parameters\r\n"));
		return local_last(pl, local_say(out, "220 2.0.0 Ready to "
		    "start TLS\r\n"), LOCAL_UPGRADED);
	}
	if (proto_word_is(line, verb, "NOOP") ||
	    proto_word_is(line, verb, "RSET"))
		return local_answer(pl, local_say(out, "250 2.0.0 "
		    "OK\r\n"));
	if (proto_word_is(line, verb, "QUIT"))
		return local_last(pl, local_say(out, "221 2.0.0 mailtlsd "
		    "closing connection\r\n"), LOCAL_QUIT);
	return local_answer(pl, local_say(out, "530 5.7.0 Must issue a "
	    "STARTTLS command first\r\n"));
}

/* ---- The opening --------------------------------------------------------- */

/* Append the greeting. */
int
proto_local_greeting(struct proto_local *pl, struct evbuffer *out)
{
	switch (pl->protocol) {
	case MAIL_PROTO_IMAP:
		return local_say(out, "* OK [CAPABILITY " IMAP_LOCAL_CAPS "] "
		    "mailtlsd ready\r\n");
	case MAIL_PROTO_POP3:
		return local_say(out, "+OK mailtlsd ready\r\n");
	case MAIL_PROTO_SMTP:
		return local_say(out, "220 %s ESMTP mailtlsd\r\n", pl->name);
	case MAIL_PROTO_NONE:
		break;
	}
	fatalx("proto_local: bad protocol %d", (int)pl->protocol);
}

/*
 * Take the first line of buf into line (without its CRLF or LF): 1, 0
 * while it is incomplete, -1 when it is longer than PROTO_LOCAL_LINE_MAX.
 */
static int
local_line(struct evbuffer *buf, char line[PROTO_LOCAL_LINE_MAX + 2],
    size_t *len)
{
	struct evbuffer_ptr	end, lf;
	size_t			avail = evbuffer_get_length(buf), limit, n;

	limit = avail < PROTO_LOCAL_LINE_MAX + 2 ? avail :
	    PROTO_LOCAL_LINE_MAX + 2;
	if (evbuffer_ptr_set(buf, &end, limit, EVBUFFER_PTR_SET) != 0)
		return -1;
	lf = evbuffer_search_range(buf, "\n", 1, NULL, &end);
	if (lf.pos < 0)
		return avail >= PROTO_LOCAL_LINE_MAX + 2 ? -1 : 0;
	n = (size_t)lf.pos + 1;
	if (evbuffer_remove(buf, line, n) != (int)n)
		return -1;
	n--;
	if (n > 0 && line[n - 1] == '\r')
		n--;
	*len = n;
	return n > PROTO_LOCAL_LINE_MAX ? -1 : 1;
}

/* Answer the client's complete lines until one ends the opening. */
enum proto_local_verdict
proto_local_input(struct proto_local *pl, struct evbuffer *in,
    struct evbuffer *out)
{
	char				line[PROTO_LOCAL_LINE_MAX + 2];
	size_t				len;
	int				r;
	enum proto_local_verdict	v;

	if (pl->state != LOCAL_PLAIN)
		return pl->state == LOCAL_UPGRADED ? PROTO_LOCAL_UPGRADE :
		    pl->state == LOCAL_QUIT ? PROTO_LOCAL_QUIT :
		    PROTO_LOCAL_FAIL;
	for (;;) {
		if ((r = local_line(in, line, &len)) == 0)
			return PROTO_LOCAL_MORE;
		if (r < 0)
			return local_close(pl, out, "line longer than "
			    PROTO_LOCAL_LINE_MAX_TEXT " bytes before STARTTLS");
		if (proto_http_line(line, len))
			return local_close(pl, out, "client sent an HTTP "
			    "request (a cross-protocol request, as a web page "
			    "can make a browser send)");
		if (++pl->commands > PROTO_LOCAL_COMMANDS)
			return local_close(pl, out, "too many commands before "
			    "STARTTLS");
		switch (pl->protocol) {
		case MAIL_PROTO_IMAP:
			v = local_imap(pl, line, len, out);
			break;
		case MAIL_PROTO_POP3:
			v = local_pop3(pl, line, len, out);
			break;
		case MAIL_PROTO_SMTP:
			v = local_smtp(pl, line, len, out);
			break;
		case MAIL_PROTO_NONE:
		default:
			fatalx("proto_local: bad protocol %d",
			    (int)pl->protocol);
		}
		if (v != PROTO_LOCAL_MORE)
			return v;
	}
}

/* Why the opening failed or ended. */
const char *
proto_local_reason(const struct proto_local *pl)
{
	return pl->reason[0] != '\0' ? pl->reason : "no failure";
}

/* The state name, for debug lines. */
const char *
proto_local_state(const struct proto_local *pl)
{
	switch (pl->state) {
	case LOCAL_PLAIN:
	case LOCAL_UPGRADED:
	case LOCAL_QUIT:
	case LOCAL_FAILED:
		return local_state_names[pl->state];
	}
	fatalx("proto_local: bad state %d", (int)pl->state);
}
