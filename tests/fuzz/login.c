/*
 * login.c - run one fuzz input through a pre-login filter that logs in
 * with OAuth2 (proto_filter_use_oauth2()), with the session's calls to
 * proto_filter_login_token() and proto_filter_login_refuse() where the
 * input says, and check what must hold whatever the input (fuzz.h has
 * the format).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "fuzz.h"
#include "proto.h"

#define LOGIN_TOKEN		"ya29.fuzz-Token_0123456789"
#define LOGIN_TOKEN_MAX		8192	/* proto.h: the longest token */
#define LOGIN_PER_BYTE		16	/* answers per client byte */
/* Capability lists grow: "250 x" becomes "250-x", "250 AUTH PLAIN LOGIN". */
#define LOGIN_PER_SERVER_BYTE	4
#define LOGIN_PER_ACTION	600	/* a refusal line */
#define LOGIN_PASSWORDS		8	/* passwords followed */
#define LOGIN_PASSWORD_MIN	8	/* shorter ones occur by chance */

/* A growing copy of bytes. */
struct copy {
	uint8_t	*data;
	size_t	 len;
	size_t	 cap;
};

/* One run: the session's buffers, the filter, what has been seen. */
struct login_run {
	enum mail_protocol	 protocol;
	struct proto_filter	*f;
	int			 plain;		/* done: plain copy */
	int			 ended;
	int			 defer;		/* client bytes wait for a
						   whole server delivery */
	int			 automatic;	/* the session's calls come
						   by themselves */
	int			 retried;	/* automatic: this rejection */

	struct evbuffer		*from_server;
	struct evbuffer		*from_client;
	struct evbuffer		*to_client;
	struct evbuffer		*to_server;

	struct copy		 client;	/* all the client sent */
	struct copy		 forwarded;	/* client bytes to the server */
	struct copy		 passwords[LOGIN_PASSWORDS];
	int			 n_passwords;
	char			*long_token;

	size_t			 srv_taken;
	size_t			 cli_taken;
	size_t			 actions;
	size_t			 to_client_made;
	size_t			 match;		/* in client, for forwarded */

	char			*why;
	size_t			 whylen;
	int			 bad;
};

/* Record the first broken check; -1. */
static int
login_bad(struct login_run *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int
login_bad(struct login_run *r, const char *fmt, ...)
{
	va_list	ap;

	if (!r->bad) {
		va_start(ap, fmt);
		vsnprintf(r->why, r->whylen, fmt, ap);
		va_end(ap);
	}
	r->bad = 1;
	r->ended = 1;
	return -1;
}

/* Append to a copy; -1 (no memory). */
static int
copy_add(struct copy *c, const void *p, size_t n)
{
	uint8_t	*nd;
	size_t	 cap;

	if (c->len + n > c->cap) {
		cap = c->cap == 0 ? 4096 : c->cap;
		while (cap < c->len + n)
			cap *= 2;
		if ((nd = realloc(c->data, cap)) == NULL)
			return -1;
		c->data = nd;
		c->cap = cap;
	}
	if (n > 0)
		memcpy(c->data + c->len, p, n);
	c->len += n;
	return 0;
}

/* How often needle occurs in hay. */
static size_t
count_in(const struct copy *hay, const struct copy *needle)
{
	size_t	i, n = 0;

	if (needle->len == 0 || needle->len > hay->len)
		return 0;
	for (i = 0; i + needle->len <= hay->len; i++)
		if (memcmp(hay->data + i, needle->data, needle->len) == 0)
			n++;
	return n;
}

/* Whether a string is printable ASCII. */
static int
printable(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < ' ' || (unsigned char)*s >= 0x7f)
			return 0;
	return 1;
}

/* The bytes added to buf from offset from, copied into c (reset). */
static int
login_added(struct login_run *r, struct evbuffer *buf, size_t from,
    struct copy *c)
{
	struct evbuffer_ptr	 at;
	size_t			 n = evbuffer_get_length(buf) - from;
	uint8_t			*p;
	int			 rc = 0;

	c->len = 0;
	if (n == 0)
		return 0;
	if ((p = malloc(n)) == NULL)
		return login_bad(r, "out of memory");
	if (evbuffer_ptr_set(buf, &at, from, EVBUFFER_PTR_SET) != 0 ||
	    evbuffer_copyout_from(buf, &at, p, n) != (ev_ssize_t)n)
		rc = login_bad(r, "cannot read a buffer");
	else if (copy_add(c, p, n) != 0)
		rc = login_bad(r, "out of memory");
	free(p);
	return rc;
}

/* The value of a base64 digit, or -1 (the driver's own decoder). */
static int
b64_digit(uint8_t c)
{
	static const char	digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				    "abcdefghijklmnopqrstuvwxyz0123456789+/";
	const char		*p;

	if (c == '\0' || (p = strchr(digits, c)) == NULL)
		return -1;
	return (int)(p - digits);
}

/* Decode base64 with padding into out (len / 4 * 3 bytes); -1 if not. */
static int
b64_decode(const uint8_t *in, size_t len, uint8_t *out, size_t *outlen)
{
	size_t	i, n = 0;
	int	v[4], j, pad;

	if (len == 0 || len % 4 != 0)
		return -1;
	for (i = 0; i < len; i += 4) {
		pad = 0;
		for (j = 0; j < 4; j++) {
			if (in[i + j] == '=' && i + 4 == len && j >= 2) {
				v[j] = 0;
				pad++;
			} else if (pad > 0 || (v[j] = b64_digit(in[i + j])) < 0)
				return -1;
		}
		out[n++] = (uint8_t)(v[0] << 2 | v[1] >> 4);
		if (pad < 2)
			out[n++] = (uint8_t)((v[1] & 0x0f) << 4 | v[2] >> 2);
		if (pad < 1)
			out[n++] = (uint8_t)((v[2] & 0x03) << 6 | v[3]);
	}
	*outlen = n;
	return 0;
}

/*
 * Whether base64 b carries the token in an XOAUTH2 or OAUTHBEARER
 * message: "user=...^Aauth=Bearer TOKEN^A^A" or "n,a=...,^Aauth=...".
 */
static int
login_message_ok(struct login_run *r, const uint8_t *b, size_t len)
{
	uint8_t		*m;
	size_t		 n = 0, tl;
	const char	*tokens[2] = { LOGIN_TOKEN, r->long_token };
	int		 i, ok = 0;
	char		 tail[LOGIN_TOKEN_MAX + 32];

	if ((m = malloc(len / 4 * 3 + 1)) == NULL)
		return 0;
	if (b64_decode(b, len, m, &n) == 0 && (n >= 5 &&
	    (memcmp(m, "user=", 5) == 0 || memcmp(m, "n,a=", 4) == 0)))
		for (i = 0; i < 2 && !ok; i++) {
			tl = (size_t)snprintf(tail, sizeof(tail),
			    "\001auth=Bearer %s\001\001", tokens[i]);
			ok = n > tl && memcmp(m + n - tl, tail, tl) == 0 &&
			    memchr(m, '\001', n - tl) == NULL;
		}
	free(m);
	return ok;
}

/* Whether one line the filter wrote to the server is one of its own. */
static int
login_own_line(struct login_run *r, const uint8_t *p, size_t len)
{
	const uint8_t	*sp;
	size_t		 w;

	if (len == 0 || (len == 4 && memcmp(p, "AQ==", 4) == 0))
		return 1;	/* answers to an error challenge */
	if (r->protocol == MAIL_PROTO_POP3 && len == 4 &&
	    memcmp(p, "CAPA", 4) == 0)
		return 1;
	if (r->protocol == MAIL_PROTO_IMAP) {
		if ((sp = memchr(p, ' ', len)) == NULL)
			return login_message_ok(r, p, len);
		w = (size_t)(sp - p) + 1;
		if (len - w == 10 && memcmp(sp + 1, "CAPABILITY", 10) == 0)
			return w > 8 && memcmp(p, "mailtlsd", 8) == 0;
		p += w;
		len -= w;
		if (len < 13 || memcmp(p, "AUTHENTICATE ", 13) != 0)
			return 0;
		p += 13;
		len -= 13;
	} else {
		if (len < 5 || memcmp(p, "AUTH ", 5) != 0)
			return login_message_ok(r, p, len);
		p += 5;
		len -= 5;
	}
	if ((len >= 7 && memcmp(p, "XOAUTH2", 7) == 0 && (w = 7)) ||
	    (len >= 11 && memcmp(p, "OAUTHBEARER", 11) == 0 && (w = 11))) {
		if (len == w)
			return r->protocol != MAIL_PROTO_SMTP;
		return p[w] == ' ' && login_message_ok(r, p + w + 1,
		    len - w - 1);
	}
	return 0;
}

/* What the filter itself wrote to the server: its own lines only. */
static int
login_check_own(struct login_run *r, size_t from, const char *when)
{
	struct copy	 c = { NULL, 0, 0 };
	size_t		 start = 0, i;
	int		 rc = 0;

	if (login_added(r, r->to_server, from, &c) != 0)
		return -1;
	for (i = 0; i + 1 < c.len && rc == 0; i++) {
		if (c.data[i] != '\r' || c.data[i + 1] != '\n')
			continue;
		if (!login_own_line(r, c.data + start, i - start))
			rc = login_bad(r, "%s wrote a line to the server that "
			    "is not the filter's own: \"%.*s\"", when,
			    (int)(i - start < 80 ? i - start : 80),
			    (const char *)c.data + start);
		start = i + 2;
		i++;
	}
	if (rc == 0 && start != c.len)
		rc = login_bad(r, "%s wrote a partial line to the server",
		    when);
	free(c.data);
	return rc;
}

/* The client's bytes the filter sent on came from it, in order. */
static int
login_check_forwarded(struct login_run *r, size_t from)
{
	struct copy	c = { NULL, 0, 0 };
	size_t		i;
	int		rc = 0;

	if (login_added(r, r->to_server, from, &c) != 0)
		return -1;
	for (i = 0; i < c.len && rc == 0; i++) {
		while (r->match < r->client.len &&
		    r->client.data[r->match] != c.data[i])
			r->match++;
		if (r->match == r->client.len)
			rc = login_bad(r, "the server got a byte the client "
			    "did not send (or not in this order)");
		r->match++;
	}
	if (rc == 0 && copy_add(&r->forwarded, c.data, c.len) != 0)
		rc = login_bad(r, "out of memory");
	free(c.data);
	return rc;
}

/* What the login says holds together; follow its password. */
static int
login_check_state(struct login_run *r)
{
	enum proto_login	 st = proto_filter_login(r->f);
	const char		*user, *password, *e;
	size_t			 pwlen, ulen, i;

	if (st != PROTO_LOGIN_NONE && st != PROTO_LOGIN_WANTED &&
	    st != PROTO_LOGIN_SENT && st != PROTO_LOGIN_REJECTED)
		return login_bad(r, "login state %d", (int)st);
	proto_filter_login_credentials(r->f, &user, &password, &pwlen);
	ulen = strlen(user);
	if (st == PROTO_LOGIN_NONE && (ulen != 0 || pwlen != 0))
		return login_bad(r, "credentials without a login");
	if (st == PROTO_LOGIN_NONE)
		return 0;
	if (ulen == 0 || ulen > 1024)
		return login_bad(r, "a user name of %zu bytes", ulen);
	for (i = 0; i < ulen; i++)
		if ((unsigned char)user[i] < ' ' || user[i] == 0x7f)
			return login_bad(r, "a user name with a control byte");
	if (pwlen > 1024 || password[pwlen] != '\0')
		return login_bad(r, "a password of %zu bytes", pwlen);
	e = proto_filter_login_error(r->f);
	if (st == PROTO_LOGIN_REJECTED && (e[0] == '\0' || strlen(e) > 255 ||
	    !printable(e)))
		return login_bad(r, "a rejection without a printable error");
	if (st != PROTO_LOGIN_REJECTED && e[0] != '\0')
		return login_bad(r, "an error without a rejection");
	return 0;
}

/*
 * A client call made the login want a token: its last line is the end of
 * the login command, which must not reach the server.  When the password
 * is in that line, follow it: if the client sent it nowhere else (an
 * encoded login leaves it elsewhere in plain), it must never reach the
 * server (login_check_passwords()).
 */
static int
login_note_password(struct login_run *r)
{
	const char	*user, *password;
	size_t		 pwlen, end = r->cli_taken, start, i;
	struct copy	*pw;

	proto_filter_login_credentials(r->f, &user, &password, &pwlen);
	if (pwlen < LOGIN_PASSWORD_MIN || r->n_passwords == LOGIN_PASSWORDS ||
	    end < 2)
		return 0;
	for (start = end - 1; start > 0 && r->client.data[start - 1] != '\n';
	    start--)
		;
	for (i = start; i + pwlen <= end; i++)
		if (memcmp(r->client.data + i, password, pwlen) == 0)
			break;
	if (i + pwlen > end)
		return 0;
	pw = &r->passwords[r->n_passwords++];
	if (copy_add(pw, password, pwlen) != 0)
		return login_bad(r, "out of memory");
	return 0;
}

/* The filter failed: it has a reason and stays failed. */
static void
login_failed(struct login_run *r)
{
	const char	*reason = proto_filter_reason(r->f);
	size_t		 tc = evbuffer_get_length(r->to_client);
	size_t		 ts = evbuffer_get_length(r->to_server);

	if (reason[0] == '\0' || strcmp(reason, "no failure") == 0 ||
	    !printable(reason)) {
		login_bad(r, "filter failed without a printable reason");
		return;
	}
	if (proto_filter_client(r->f, r->from_client, r->to_server,
	    r->to_client) != -1 || proto_filter_server(r->f, r->from_server,
	    r->to_client) != -1 || proto_filter_login_token(r->f,
	    LOGIN_TOKEN, r->to_server) != -1 ||
	    evbuffer_get_length(r->to_client) != tc ||
	    evbuffer_get_length(r->to_server) != ts) {
		login_bad(r, "a failed filter did not stay failed");
		return;
	}
	r->ended = 1;
}

/* The client has logged in: from now on a plain copy. */
static void
login_plain(struct login_run *r)
{
	size_t	n = evbuffer_get_length(r->from_client);

	if (proto_filter_login(r->f) != PROTO_LOGIN_NONE) {
		login_bad(r, "logged in with a login still under way");
		return;
	}
	proto_filter_free(r->f);
	r->f = NULL;
	r->plain = 1;
	if (copy_add(&r->forwarded, evbuffer_pullup(r->from_client, -1),
	    n) != 0) {
		login_bad(r, "out of memory");
		return;
	}
	evbuffer_add_buffer(r->to_client, r->from_server);
	evbuffer_add_buffer(r->to_server, r->from_client);
}

/* After a call: bounds, state, and the end of the filter. */
static void
login_after(struct login_run *r, int rc)
{
	if (r->to_client_made > LOGIN_PER_SERVER_BYTE * r->srv_taken +
	    LOGIN_PER_BYTE * r->cli_taken + LOGIN_PER_ACTION * r->actions) {
		login_bad(r, "the client got %zu bytes for %zu server and %zu "
		    "client bytes", r->to_client_made, r->srv_taken,
		    r->cli_taken);
		return;
	}
	if (rc != 0) {
		login_failed(r);
		return;
	}
	if (login_check_state(r) != 0)
		return;
	if (proto_filter_done(r->f))
		login_plain(r);
}

static void	login_session(struct login_run *);

/* Run the client's waiting bytes through the filter. */
static void
login_pump_client(struct login_run *r)
{
	size_t			in = evbuffer_get_length(r->from_client);
	size_t			tc = evbuffer_get_length(r->to_client);
	size_t			ts = evbuffer_get_length(r->to_server);
	enum proto_login	was;
	int			rc;

	if (r->ended || r->plain || in == 0)
		return;
	was = proto_filter_login(r->f);
	rc = proto_filter_client(r->f, r->from_client, r->to_server,
	    r->to_client);
	if (rc != 0 && rc != -1) {
		login_bad(r, "proto_filter_client returned %d", rc);
		return;
	}
	if (evbuffer_get_length(r->from_client) > in ||
	    evbuffer_get_length(r->to_client) < tc ||
	    evbuffer_get_length(r->to_server) < ts) {
		login_bad(r, "proto_filter_client moved bytes backwards");
		return;
	}
	r->cli_taken += in - evbuffer_get_length(r->from_client);
	r->to_client_made += evbuffer_get_length(r->to_client) - tc;
	if (login_check_forwarded(r, ts) != 0)
		return;
	if (rc == 0 && was == PROTO_LOGIN_NONE && proto_filter_login(r->f) ==
	    PROTO_LOGIN_WANTED && login_note_password(r) != 0)
		return;
	login_after(r, rc);
	login_session(r);
}

/* Run the server's bytes through the filter, then the client's. */
static void
login_pump_server(struct login_run *r)
{
	size_t	in = evbuffer_get_length(r->from_server);
	size_t	tc = evbuffer_get_length(r->to_client);
	size_t	ts = evbuffer_get_length(r->to_server);
	int	rc;

	rc = proto_filter_server(r->f, r->from_server, r->to_client);
	if (rc != 0 && rc != -1) {
		login_bad(r, "proto_filter_server returned %d", rc);
		return;
	}
	if (evbuffer_get_length(r->from_server) > in ||
	    evbuffer_get_length(r->to_client) < tc ||
	    evbuffer_get_length(r->to_server) < ts) {
		login_bad(r, "proto_filter_server moved bytes backwards");
		return;
	}
	r->srv_taken += in - evbuffer_get_length(r->from_server);
	r->to_client_made += evbuffer_get_length(r->to_client) - tc;
	if (login_check_own(r, ts, "proto_filter_server") != 0)
		return;
	login_after(r, rc);
	if (r->ended || r->plain)
		return;
	if (evbuffer_get_length(r->from_server) > PROTO_LINE_MAX + 1) {
		login_bad(r, "%zu server bytes wait in the filter's input",
		    evbuffer_get_length(r->from_server));
		return;
	}
	login_session(r);
	if (!r->defer)
		login_pump_client(r);
}

/* Give the filter a token, as the session does; the expected result. */
static void
login_token(struct login_run *r, const char *token, int valid)
{
	enum proto_login	st = proto_filter_login(r->f);
	size_t			ts = evbuffer_get_length(r->to_server);
	int			want, rc;

	want = valid && (st == PROTO_LOGIN_WANTED ||
	    st == PROTO_LOGIN_REJECTED) ? 0 : -1;
	rc = proto_filter_login_token(r->f, token, r->to_server);
	if (rc != want) {
		login_bad(r, "proto_filter_login_token returned %d, not %d in "
		    "state %d", rc, want, (int)st);
		return;
	}
	if (rc != 0 && (proto_filter_login(r->f) != st ||
	    evbuffer_get_length(r->to_server) != ts)) {
		login_bad(r, "a refused token changed the login");
		return;
	}
	if (rc == 0 && proto_filter_login(r->f) != PROTO_LOGIN_SENT) {
		login_bad(r, "a token given, the login is in state %d",
		    (int)proto_filter_login(r->f));
		return;
	}
	if (login_check_own(r, ts, "proto_filter_login_token") == 0)
		login_after(r, 0);
}

/* Refuse the login, as the session does. */
static void
login_refuse(struct login_run *r, int temporary, int alert)
{
	enum proto_login	st = proto_filter_login(r->f);
	size_t			tc = evbuffer_get_length(r->to_client);
	size_t			ts = evbuffer_get_length(r->to_server);
	int			want, rc;

	want = st == PROTO_LOGIN_WANTED || st == PROTO_LOGIN_REJECTED ? 0 :
	    -1;
	r->actions++;
	rc = proto_filter_login_refuse(r->f, temporary, alert, "mailtlsd: "
	    "refused\r\nby the fuzz driver\001", r->to_client);
	if (rc != want) {
		login_bad(r, "proto_filter_login_refuse returned %d, not %d in "
		    "state %d", rc, want, (int)st);
		return;
	}
	if (evbuffer_get_length(r->to_server) != ts ||
	    (rc == 0 && proto_filter_login(r->f) != PROTO_LOGIN_NONE) ||
	    (rc != 0 && evbuffer_get_length(r->to_client) != tc)) {
		login_bad(r, "proto_filter_login_refuse went wrong");
		return;
	}
	r->to_client_made += evbuffer_get_length(r->to_client) - tc;
	login_after(r, 0);
	login_pump_client(r);
}

/* Automatic: what a session does about the login's state. */
static void
login_session(struct login_run *r)
{
	if (!r->automatic || r->ended || r->plain)
		return;
	switch (proto_filter_login(r->f)) {
	case PROTO_LOGIN_WANTED:
		r->retried = 0;
		login_token(r, LOGIN_TOKEN, 1);
		break;
	case PROTO_LOGIN_REJECTED:
		if (r->retried++ == 0)
			login_token(r, r->long_token, 1);
		else
			login_refuse(r, 0, 1);
		break;
	case PROTO_LOGIN_NONE:
	case PROTO_LOGIN_SENT:
		break;
	}
}

/* Deliver bytes from one side, cut into pieces of at most split. */
static void
login_deliver(struct login_run *r, int server, const uint8_t *p, size_t n,
    size_t split)
{
	size_t	k;

	while (n > 0 && !r->ended) {
		k = split == 0 || split > n ? n : split;
		if (server) {
			evbuffer_add(r->from_server, p, k);
			if (r->plain)
				evbuffer_add_buffer(r->to_client,
				    r->from_server);
			else
				login_pump_server(r);
		} else {
			evbuffer_add(r->from_client, p, k);
			if (copy_add(&r->client, p, k) != 0) {
				login_bad(r, "out of memory");
				return;
			}
			if (r->plain) {
				copy_add(&r->forwarded, p, k);
				evbuffer_add_buffer(r->to_server,
				    r->from_client);
			} else
				login_pump_client(r);
		}
		p += k;
		n -= k;
	}
	if (server && r->defer && !r->ended)
		login_pump_client(r);
}

/* One of the session's calls, named by the byte after 0xfe. */
static void
login_action(struct login_run *r, uint8_t what)
{
	if (r->ended || r->plain)
		return;
	switch (what) {
	case 'T':
		login_token(r, LOGIN_TOKEN, 1);
		break;
	case 'L':
		login_token(r, r->long_token, 1);
		break;
	case 't':
		login_token(r, "not a token", 0);
		break;
	case 'R':
		login_refuse(r, 0, 0);
		break;
	case 'r':
		login_refuse(r, 1, 0);
		break;
	case 'A':
		login_refuse(r, 0, 1);
		break;
	default:
		return;
	}
	if (!r->ended && !r->plain)
		login_pump_client(r);
}

/* At the end: no password the client sent once went to the server. */
static void
login_check_passwords(struct login_run *r)
{
	int	i;

	for (i = 0; i < r->n_passwords && !r->bad; i++)
		if (count_in(&r->client, &r->passwords[i]) == 1 &&
		    count_in(&r->forwarded, &r->passwords[i]) > 0)
			login_bad(r, "a password reached the server");
}

/* Free everything a run holds. */
static void
login_free(struct login_run *r)
{
	int	i;

	proto_filter_free(r->f);
	evbuffer_free(r->from_server);
	evbuffer_free(r->from_client);
	evbuffer_free(r->to_client);
	evbuffer_free(r->to_server);
	free(r->client.data);
	free(r->forwarded.data);
	for (i = 0; i < r->n_passwords; i++)
		free(r->passwords[i].data);
	free(r->long_token);
}

/* Run an input with deliveries cut into pieces of split bytes. */
static void
login_input(struct login_run *r, const uint8_t *data, size_t size,
    size_t split)
{
	static const enum mail_protocol	protocols[] = { MAIL_PROTO_IMAP,
		MAIL_PROTO_POP3, MAIL_PROTO_SMTP, MAIL_PROTO_IMAP };
	uint8_t				*chunk;
	size_t				 i, n = 0;
	int				 server = 1, flags = data[0];

	r->protocol = protocols[FUZZ_LOGIN_PROTOCOL(flags)];
	r->defer = !(flags & FUZZ_EAGER);
	r->automatic = (flags & FUZZ_LOGIN_AUTO) != 0;
	r->from_server = evbuffer_new();
	r->from_client = evbuffer_new();
	r->to_client = evbuffer_new();
	r->to_server = evbuffer_new();
	r->f = proto_filter_new(r->protocol);
	r->long_token = malloc(LOGIN_TOKEN_MAX + 1);
	if ((chunk = malloc(size)) == NULL || r->from_server == NULL ||
	    r->from_client == NULL || r->to_client == NULL ||
	    r->to_server == NULL || r->f == NULL || r->long_token == NULL ||
	    proto_filter_use_oauth2(r->f) != 0) {
		free(chunk);
		login_bad(r, "out of memory");
		return;
	}
	memset(r->long_token, 'x', LOGIN_TOKEN_MAX);
	r->long_token[LOGIN_TOKEN_MAX] = '\0';
	if (flags & FUZZ_DROP_GREETING)
		proto_filter_drop_greeting(r->f);
	else if (flags & FUZZ_IMPLICIT)
		proto_filter_expect_greeting(r->f);
	for (i = 2; i < size && !r->ended; i++) {
		if (data[i] != FUZZ_ESCAPE || i + 1 == size) {
			chunk[n++] = data[i];
			continue;
		}
		i++;
		if (data[i] == FUZZ_ESCAPE) {
			chunk[n++] = FUZZ_ESCAPE;
			continue;
		}
		login_deliver(r, server, chunk, n, split);
		n = 0;
		if (data[i] == 'S')
			server = 1;
		else if (data[i] == 'C')
			server = 0;
		else
			login_action(r, data[i]);
	}
	login_deliver(r, server, chunk, n, split);
	free(chunk);
	if (!r->bad)
		login_check_passwords(r);
}

/* Whether two buffers hold the same bytes. */
static int
same_bytes(struct evbuffer *a, struct evbuffer *b)
{
	size_t	n = evbuffer_get_length(a);

	if (n != evbuffer_get_length(b))
		return 0;
	return n == 0 || memcmp(evbuffer_pullup(a, -1),
	    evbuffer_pullup(b, -1), n) == 0;
}

/*
 * Run one input; cut into pieces it must go as it goes whole, unless the
 * client's waiting bytes go through between the pieces of a server
 * delivery (fuzz_proto_run() says why) or the session's calls come by
 * themselves: they then come after a piece, where the server may have
 * said more after a whole delivery (a line after its refusal of the
 * token, which a retry would have answered).
 */
int
fuzz_login_run(const uint8_t *data, size_t size, char *why, size_t whylen)
{
	struct login_run	 r, whole;
	size_t			 split;
	int			 bad;

	if (whylen > 0)
		why[0] = '\0';
	if (size < 2)
		return 0;
	split = data[1];
	if (split > 0 && split < size / FUZZ_PIECES_MAX)
		split = size / FUZZ_PIECES_MAX;
	memset(&r, 0, sizeof(r));
	r.why = why;
	r.whylen = whylen;
	login_input(&r, data, size, split);
	bad = r.bad;
	if (!bad && split > 0 && !(data[0] & (FUZZ_EAGER | FUZZ_LOGIN_AUTO))) {
		memset(&whole, 0, sizeof(whole));
		whole.why = why;
		whole.whylen = whylen;
		login_input(&whole, data, size, 0);
		if (!whole.bad && (!same_bytes(r.to_client, whole.to_client) ||
		    !same_bytes(r.to_server, whole.to_server) ||
		    r.plain != whole.plain || r.ended != whole.ended))
			login_bad(&whole, "cut into pieces of %zu, the login "
			    "went otherwise: client %zu/%zu bytes, server "
			    "%zu/%zu bytes, done %d/%d, ended %d/%d", split,
			    evbuffer_get_length(r.to_client),
			    evbuffer_get_length(whole.to_client),
			    evbuffer_get_length(r.to_server),
			    evbuffer_get_length(whole.to_server), r.plain,
			    whole.plain, r.ended, whole.ended);
		bad = whole.bad;
		login_free(&whole);
	}
	login_free(&r);
	return bad ? -1 : 0;
}
