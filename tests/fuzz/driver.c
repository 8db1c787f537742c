/*
 * driver.c - run one fuzz input through the protocol code or the
 * configuration parser the way the daemon would, and check what must hold
 * whatever the input (see fuzz.h for the input format and the checks).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "config.h"
#include "fuzz.h"
#include "proto.h"
#include "proto_local.h"

#define FUZZ_DIALOGUE_SENT_MAX	(CONFIG_HOST_MAX + 16)	/* one command */
#define FUZZ_LOCAL_SAID_MAX	(64 * 1024)	/* the local opening's answers */
#define FUZZ_LOCAL_PER_BYTE	16	/* refusal bytes per client byte */

/* A growing copy of everything one side delivered. */
struct stream {
	uint8_t	*data;
	size_t	 len;
	size_t	 cap;
};

/* One run: the session's buffers and what has been seen. */
struct run {
	enum mail_protocol	 protocol;
	struct service_config	 sc;
	struct proto_dialogue	*d;		/* STARTTLS dialogue, first */
	struct proto_local	*local;		/* local STARTTLS opening */
	struct proto_filter	*f;		/* then the filter */
	int			 plain;		/* done: plain copy */
	int			 defer;		/* client bytes waiting go
						   through after a whole server
						   delivery, not each piece */
	int			 ended;		/* the session would be over */

	struct evbuffer		*raw_server;	/* dialogue input */
	struct evbuffer		*dialogue_out;	/* dialogue output */
	struct evbuffer		*from_server;
	struct evbuffer		*from_client;
	struct evbuffer		*to_client;
	struct evbuffer		*to_server;

	/* What the filter took and gave. */
	struct stream		 client;	/* what the client sent */
	size_t			 srv_taken;
	size_t			 cli_taken;
	size_t			 to_client_made;
	size_t			 to_server_match; /* client stream position */

	char			*why;
	size_t			 whylen;
	int			 bad;
};

/* Record the first broken check; -1. */
static int
run_bad(struct run *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int
run_bad(struct run *r, const char *fmt, ...)
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

/* Append bytes to a stream copy; -1 (no memory). */
static int
stream_add(struct stream *s, const uint8_t *p, size_t n)
{
	uint8_t	*nd;
	size_t	 cap;

	if (s->len + n > s->cap) {
		cap = s->cap == 0 ? 4096 : s->cap;
		while (cap < s->len + n)
			cap *= 2;
		if ((nd = realloc(s->data, cap)) == NULL)
			return -1;
		s->data = nd;
		s->cap = cap;
	}
	memcpy(s->data + s->len, p, n);
	s->len += n;
	return 0;
}

/* Whether a reason is a usable, printable string. */
static int
reason_ok(const char *reason)
{
	size_t	i;

	if (reason == NULL || reason[0] == '\0' ||
	    strcmp(reason, "no failure") == 0)
		return 0;
	for (i = 0; reason[i] != '\0'; i++)
		if ((unsigned char)reason[i] < 0x20 ||
		    (unsigned char)reason[i] >= 0x7f)
			return 0;
	return 1;
}

/* The filter failed: the session writes its line and ends. */
static void
run_filter_failed(struct run *r, int server)
{
	size_t	a = evbuffer_get_length(r->from_server);
	size_t	b = evbuffer_get_length(r->from_client);
	size_t	c = evbuffer_get_length(r->to_client);
	size_t	d = evbuffer_get_length(r->to_server);
	int	again;

	if (!reason_ok(proto_filter_reason(r->f))) {
		run_bad(r, "filter failed without a printable reason");
		return;
	}
	/* A failed filter stays failed and touches nothing. */
	again = server ? proto_filter_server(r->f, r->from_server,
	    r->to_client) : proto_filter_client(r->f, r->from_client,
	    r->to_server, r->to_client);
	if (again != -1 || a != evbuffer_get_length(r->from_server) ||
	    b != evbuffer_get_length(r->from_client) ||
	    c != evbuffer_get_length(r->to_client) ||
	    d != evbuffer_get_length(r->to_server)) {
		run_bad(r, "a failed filter did not stay failed");
		return;
	}
	if (proto_write_unavailable(r->to_client, r->protocol,
	    "mailtlsd ended the session: protocol error before login; see "
	    "the mailtlsd log") != 0)
		run_bad(r, "proto_write_unavailable failed");
	r->ended = 1;
}

/* The client has logged in: from now on a plain copy. */
static void
run_plain(struct run *r)
{
	proto_filter_free(r->f);
	r->f = NULL;
	r->plain = 1;
	evbuffer_add_buffer(r->to_client, r->from_server);
	evbuffer_add_buffer(r->to_server, r->from_client);
}

/* What the filter wrote toward the client stays within bounds. */
static int
run_check_bounds(struct run *r)
{
	if (r->to_client_made > r->srv_taken +
	    FUZZ_LOCAL_PER_BYTE * r->cli_taken)
		return run_bad(r, "the client got %zu bytes for %zu server "
		    "and %zu client bytes", r->to_client_made, r->srv_taken,
		    r->cli_taken);
	return 0;
}

/* The new bytes toward the server came from the client, in order. */
static int
run_check_to_server(struct run *r, size_t from)
{
	struct evbuffer_ptr	 at;
	size_t			 n = evbuffer_get_length(r->to_server) - from;
	size_t			 i;
	uint8_t			*p;

	if (n == 0)
		return 0;
	if ((p = malloc(n)) == NULL)
		return run_bad(r, "out of memory");
	if (evbuffer_ptr_set(r->to_server, &at, from, EVBUFFER_PTR_SET) != 0 ||
	    evbuffer_copyout_from(r->to_server, &at, p, n) != (ev_ssize_t)n) {
		free(p);
		return run_bad(r, "cannot read to_server");
	}
	for (i = 0; i < n; i++) {
		while (r->to_server_match < r->cli_taken &&
		    r->client.data[r->to_server_match] != p[i])
			r->to_server_match++;
		if (r->to_server_match == r->cli_taken) {
			free(p);
			return run_bad(r, "the server got a byte the client "
			    "did not send (or not in this order)");
		}
		r->to_server_match++;
	}
	free(p);
	return 0;
}

/* Run the client's bytes through the filter. */
static void
run_pump_client(struct run *r)
{
	size_t	in = evbuffer_get_length(r->from_client);
	size_t	tc = evbuffer_get_length(r->to_client);
	size_t	ts = evbuffer_get_length(r->to_server);
	int	rc;

	rc = proto_filter_client(r->f, r->from_client, r->to_server,
	    r->to_client);
	if (rc != 0 && rc != -1) {
		run_bad(r, "proto_filter_client returned %d", rc);
		return;
	}
	if (evbuffer_get_length(r->from_client) > in ||
	    evbuffer_get_length(r->to_client) < tc ||
	    evbuffer_get_length(r->to_server) < ts) {
		run_bad(r, "proto_filter_client moved bytes backwards");
		return;
	}
	r->cli_taken += in - evbuffer_get_length(r->from_client);
	r->to_client_made += evbuffer_get_length(r->to_client) - tc;
	if (run_check_to_server(r, ts) != 0 || run_check_bounds(r) != 0)
		return;
	if (rc != 0)
		run_filter_failed(r, 0);
	else if (proto_filter_done(r->f))
		run_plain(r);
}

/* Run the server's bytes through the filter, then the client's waiting. */
static void
run_pump_server(struct run *r)
{
	size_t	in = evbuffer_get_length(r->from_server);
	size_t	tc = evbuffer_get_length(r->to_client);
	size_t	ts = evbuffer_get_length(r->to_server);
	int	rc;

	rc = proto_filter_server(r->f, r->from_server, r->to_client);
	if (rc != 0 && rc != -1) {
		run_bad(r, "proto_filter_server returned %d", rc);
		return;
	}
	if (evbuffer_get_length(r->from_server) > in ||
	    evbuffer_get_length(r->to_client) < tc ||
	    evbuffer_get_length(r->to_server) != ts) {
		run_bad(r, "proto_filter_server touched the wrong buffers");
		return;
	}
	r->srv_taken += in - evbuffer_get_length(r->from_server);
	r->to_client_made += evbuffer_get_length(r->to_client) - tc;
	if (run_check_bounds(r) != 0)
		return;
	if (rc != 0) {
		run_filter_failed(r, 1);
		return;
	}
	if (proto_filter_done(r->f)) {
		run_plain(r);
		return;
	}
	/* A partial line waits, but never one over the limit. */
	if (evbuffer_get_length(r->from_server) > PROTO_LINE_MAX + 1) {
		run_bad(r, "%zu server bytes wait in the filter's input",
		    evbuffer_get_length(r->from_server));
		return;
	}
	if (!r->defer && evbuffer_get_length(r->from_client) > 0)
		run_pump_client(r);
}

/* The session's words for a refused login: some, for a text with a dot. */
static const char *
run_refusal(const char *server_text, void *arg)
{
	(void)arg;
	return strchr(server_text, '.') != NULL ? "mailtlsd: w" : NULL;
}

/* Start the filter (after the go-ahead, or at once). */
static int
run_start_filter(struct run *r, int flags)
{
	if ((r->f = proto_filter_new(r->protocol)) == NULL)
		return run_bad(r, "proto_filter_new failed");
	proto_filter_on_refusal(r->f, run_refusal, NULL);
	if (flags & FUZZ_DROP_GREETING)
		proto_filter_drop_greeting(r->f);
	else if (flags & FUZZ_IMPLICIT)
		proto_filter_expect_greeting(r->f);
	return 0;
}

/* The dialogue ended with PROTO_FAIL: it has a reason and stays failed. */
static void
run_dialogue_failed(struct run *r)
{
	size_t	out = evbuffer_get_length(r->dialogue_out);

	if (!reason_ok(proto_dialogue_reason(r->d))) {
		run_bad(r, "dialogue failed without a printable reason");
		return;
	}
	if (strcmp(proto_dialogue_state(r->d), "FAILED") != 0) {
		run_bad(r, "dialogue failed in state %s",
		    proto_dialogue_state(r->d));
		return;
	}
	if (proto_dialogue_line(r->d, "x", 1, r->dialogue_out) != PROTO_FAIL ||
	    evbuffer_get_length(r->dialogue_out) != out) {
		run_bad(r, "a failed dialogue took another line");
		return;
	}
	r->ended = 1;
}

/* One server line for the dialogue, as session_server_line() cuts it. */
static int
run_dialogue_line(struct run *r, char *line, size_t *len)
{
	struct evbuffer_ptr	eol;
	size_t			eol_len;

	eol = evbuffer_search_eol(r->raw_server, NULL, &eol_len,
	    EVBUFFER_EOL_CRLF);
	if (eol.pos < 0)
		return evbuffer_get_length(r->raw_server) > PROTO_LINE_MAX + 1 ?
		    -1 : 0;
	if ((size_t)eol.pos > PROTO_LINE_MAX)
		return -1;
	*len = (size_t)eol.pos;
	evbuffer_remove(r->raw_server, line, *len);
	evbuffer_drain(r->raw_server, eol_len);
	return 1;
}

/* Feed the dialogue every complete line there is. */
static void
run_dialogue(struct run *r)
{
	static char		line[PROTO_LINE_MAX + 1];
	enum proto_verdict	v;
	size_t			len, out;
	int			got;

	while ((got = run_dialogue_line(r, line, &len)) > 0) {
		out = evbuffer_get_length(r->dialogue_out);
		v = proto_dialogue_line(r->d, line, len, r->dialogue_out);
		if (evbuffer_get_length(r->dialogue_out) - out >
		    FUZZ_DIALOGUE_SENT_MAX) {
			run_bad(r, "the dialogue sent %zu bytes for one line",
			    evbuffer_get_length(r->dialogue_out) - out);
			return;
		}
		if (proto_dialogue_state(r->d) == NULL) {
			run_bad(r, "dialogue state without a name");
			return;
		}
		switch (v) {
		case PROTO_MORE:
			continue;
		case PROTO_FAIL:
			run_dialogue_failed(r);
			return;
		case PROTO_UPGRADE:
			if (strcmp(proto_dialogue_state(r->d), "UPGRADED") !=
			    0) {
				run_bad(r, "upgrade in state %s",
				    proto_dialogue_state(r->d));
				return;
			}
			proto_dialogue_free(r->d);
			r->d = NULL;
			/* Bytes after the go-ahead end the session. */
			if (evbuffer_get_length(r->raw_server) > 0) {
				r->ended = 1;
				return;
			}
			/* The daemon greets the client itself. */
			if (proto_write_greeting(r->to_client, &r->sc) != 0) {
				run_bad(r, "proto_write_greeting failed");
				return;
			}
			if (run_start_filter(r, 0) != 0)
				return;
			if (evbuffer_get_length(r->from_client) > 0)
				run_pump_client(r);
			return;
		}
		run_bad(r, "proto_dialogue_line returned %d", (int)v);
		return;
	}
	if (got < 0)
		r->ended = 1;	/* line too long: the session ends */
}

/* Bytes arrive from the server. */
static void
run_from_server(struct run *r, const uint8_t *p, size_t n)
{
	int	g;

	if (r->ended || n == 0)
		return;
	if (r->d != NULL) {
		evbuffer_add(r->raw_server, p, n);
		run_dialogue(r);
		return;
	}
	evbuffer_add(r->from_server, p, n);
	if (r->plain) {
		evbuffer_add_buffer(r->to_client, r->from_server);
		return;
	}
	if (r->local != NULL)
		return;		/* until the client's TLS is up */
	if ((g = proto_greeting_complete(r->protocol, r->from_server)) < -1 ||
	    g > 1) {
		run_bad(r, "proto_greeting_complete returned %d", g);
		return;
	}
	run_pump_server(r);
}

/* The local STARTTLS opening takes the client's lines. */
static void
run_local(struct run *r)
{
	enum proto_local_verdict	v;

	v = proto_local_input(r->local, r->from_client, r->to_client);
	if (proto_local_state(r->local) == NULL) {
		run_bad(r, "local opening state without a name");
		return;
	}
	if (evbuffer_get_length(r->to_client) > FUZZ_LOCAL_SAID_MAX) {
		run_bad(r, "the local opening said %zu bytes",
		    evbuffer_get_length(r->to_client));
		return;
	}
	switch (v) {
	case PROTO_LOCAL_MORE:
		if (evbuffer_get_length(r->from_client) >
		    PROTO_LOCAL_LINE_MAX + 1)
			run_bad(r, "%zu client bytes wait in the local opening",
			    evbuffer_get_length(r->from_client));
		return;
	case PROTO_LOCAL_QUIT:
	case PROTO_LOCAL_FAIL:
		if (!reason_ok(proto_local_reason(r->local)))
			run_bad(r, "the local opening ended without a printable "
			    "reason");
		else if (proto_local_input(r->local, r->from_client,
		    r->to_client) != v)
			run_bad(r, "the local opening did not stay ended");
		r->ended = 1;
		return;
	case PROTO_LOCAL_UPGRADE:
		proto_local_free(r->local);
		r->local = NULL;
		/* Bytes after the STARTTLS line end the session. */
		if (evbuffer_get_length(r->from_client) > 0) {
			r->ended = 1;
			return;
		}
		/* Then TLS; the server's greeting, waiting, is dropped. */
		if (run_start_filter(r, FUZZ_DROP_GREETING) == 0 &&
		    evbuffer_get_length(r->from_server) > 0)
			run_pump_server(r);
		return;
	}
	run_bad(r, "proto_local_input returned %d", (int)v);
}

/* Bytes arrive from the client. */
static void
run_from_client(struct run *r, const uint8_t *p, size_t n)
{
	if (r->ended || n == 0)
		return;
	if (r->local != NULL) {
		evbuffer_add(r->from_client, p, n);
		run_local(r);
		return;
	}
	evbuffer_add(r->from_client, p, n);
	if (r->plain) {
		evbuffer_add_buffer(r->to_server, r->from_client);
		return;
	}
	if (stream_add(&r->client, p, n) != 0) {
		run_bad(r, "out of memory");
		return;
	}
	if (r->f != NULL)
		run_pump_client(r);
	/* During the dialogue the client's bytes wait. */
}

/* Deliver a chunk, cut into pieces of at most split bytes. */
static void
run_deliver(struct run *r, int server, const uint8_t *p, size_t n,
    size_t split)
{
	size_t	k;

	while (n > 0 && !r->ended) {
		k = split == 0 || split > n ? n : split;
		if (server)
			run_from_server(r, p, k);
		else
			run_from_client(r, p, k);
		p += k;
		n -= k;
	}
	if (server && r->defer && !r->ended && r->f != NULL &&
	    evbuffer_get_length(r->from_client) > 0)
		run_pump_client(r);
}

/* Free everything a run holds. */
static void
run_free(struct run *r)
{
	proto_dialogue_free(r->d);
	proto_local_free(r->local);
	proto_filter_free(r->f);
	evbuffer_free(r->raw_server);
	evbuffer_free(r->dialogue_out);
	evbuffer_free(r->from_server);
	evbuffer_free(r->from_client);
	evbuffer_free(r->to_client);
	evbuffer_free(r->to_server);
	free(r->client.data);
}

/* Run an input with deliveries cut into pieces of split bytes. */
static void
run_input(struct run *r, enum mail_protocol protocol, const uint8_t *data,
    size_t size, size_t split)
{
	uint8_t		*chunk;
	size_t		 i, n = 0;
	int		 server = 1, flags = data[0];

	r->protocol = protocol;
	r->defer = !(flags & FUZZ_EAGER);
	r->raw_server = evbuffer_new();
	r->dialogue_out = evbuffer_new();
	r->from_server = evbuffer_new();
	r->from_client = evbuffer_new();
	r->to_client = evbuffer_new();
	r->to_server = evbuffer_new();
	if ((chunk = malloc(size)) == NULL || r->raw_server == NULL ||
	    r->dialogue_out == NULL || r->from_server == NULL ||
	    r->from_client == NULL || r->to_client == NULL ||
	    r->to_server == NULL) {
		free(chunk);
		run_bad(r, "out of memory");
		return;
	}
	r->sc.protocol = protocol;
	r->sc.tls = flags & FUZZ_STARTTLS ? TLS_MODE_STARTTLS :
	    TLS_MODE_IMPLICIT;
	snprintf(r->sc.server_name, sizeof(r->sc.server_name), "mail.example");
	snprintf(r->sc.ehlo_name, sizeof(r->sc.ehlo_name), "%s",
	    flags & FUZZ_BAD_EHLO ? "bad name" : "client.example");
	if (flags & FUZZ_STARTTLS) {
		if ((r->d = proto_dialogue_new(&r->sc)) == NULL)
			run_bad(r, "proto_dialogue_new failed");
	} else if (flags & FUZZ_LOCAL) {
		r->sc.local_tls = LOCAL_TLS_STARTTLS;
		if ((r->local = proto_local_new(&r->sc)) == NULL ||
		    proto_local_greeting(r->local, r->to_client) != 0)
			run_bad(r, "proto_local_new or its greeting failed");
	} else
		run_start_filter(r, flags);

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
		run_deliver(r, server, chunk, n, split);
		n = 0;
		if (data[i] == 'S')
			server = 1;
		else if (data[i] == 'C')
			server = 0;
	}
	run_deliver(r, server, chunk, n, split);
	free(chunk);
}

/* Whether two buffers hold the same bytes. */
static int
same_bytes(struct evbuffer *a, struct evbuffer *b)
{
	size_t		n = evbuffer_get_length(a);
	const void	*pa, *pb;

	if (n != evbuffer_get_length(b))
		return 0;
	if (n == 0)
		return 1;
	pa = evbuffer_pullup(a, -1);
	pb = evbuffer_pullup(b, -1);
	return pa != NULL && pb != NULL && memcmp(pa, pb, n) == 0;
}

/*
 * Run one protocol input.  Cutting the deliveries into pieces must change
 * nothing, so the input runs once more uncut and both sides must get the
 * same bytes; but not with a STARTTLS dialogue or opening (bytes after the
 * go-ahead in the same read end the session, so cuts matter) nor when
 * the client's waiting bytes go through between the pieces of a server
 * delivery (a client that sends before the server's answer it should wait
 * for, as a synchronizing literal or SASL data, is then read one way or
 * the other).
 */
int
fuzz_proto_run(enum mail_protocol protocol, const uint8_t *data,
    size_t size, char *why, size_t whylen)
{
	struct run	 r, whole;
	size_t		 split;
	int		 bad;

	if (whylen > 0)
		why[0] = '\0';
	if (size < 2)
		return 0;
	split = data[1];
	/* At most FUZZ_PIECES_MAX pieces: long inputs stay fast to run. */
	if (split > 0 && split < size / FUZZ_PIECES_MAX)
		split = size / FUZZ_PIECES_MAX;
	memset(&r, 0, sizeof(r));
	r.why = why;
	r.whylen = whylen;
	run_input(&r, protocol, data, size, split);
	bad = r.bad;
	if (!bad && split > 0 &&
	    !(data[0] & (FUZZ_STARTTLS | FUZZ_EAGER | FUZZ_LOCAL))) {
		memset(&whole, 0, sizeof(whole));
		whole.why = why;
		whole.whylen = whylen;
		run_input(&whole, protocol, data, size, 0);
		if (!whole.bad && (!same_bytes(r.to_client, whole.to_client) ||
		    !same_bytes(r.to_server, whole.to_server) ||
		    r.plain != whole.plain || r.ended != whole.ended))
			run_bad(&whole, "cut into pieces of %zu, the session "
			    "went otherwise: client %zu/%zu bytes, server "
			    "%zu/%zu bytes, done %d/%d, ended %d/%d", split,
			    evbuffer_get_length(r.to_client),
			    evbuffer_get_length(whole.to_client),
			    evbuffer_get_length(r.to_server),
			    evbuffer_get_length(whole.to_server), r.plain,
			    whole.plain, r.ended, whole.ended);
		bad = whole.bad;
		run_free(&whole);
	}
	run_free(&r);
	return bad ? -1 : 0;
}

/* Whether a string ends within len bytes. */
static int
bounded(const char *s, size_t len)
{
	return memchr(s, '\0', len) != NULL;
}

/* Check one service of a loaded configuration; 0 or -1. */
static int
check_service(const struct config *cfg, const struct service_config *sc,
    char *why, size_t whylen)
{
	int	i;

	if (!bounded(sc->name, sizeof(sc->name)) || sc->name[0] == '\0' ||
	    !bounded(sc->remote_host, sizeof(sc->remote_host)) ||
	    !bounded(sc->server_name, sizeof(sc->server_name)) ||
	    !bounded(sc->ca_file, sizeof(sc->ca_file)) ||
	    !bounded(sc->client_cert, sizeof(sc->client_cert)) ||
	    !bounded(sc->client_key, sizeof(sc->client_key)) ||
	    !bounded(sc->ehlo_name, sizeof(sc->ehlo_name)) ||
	    !bounded(sc->local_cert, sizeof(sc->local_cert)) ||
	    !bounded(sc->local_key, sizeof(sc->local_key))) {
		snprintf(why, whylen, "a service has an unterminated string");
		return -1;
	}
	if (config_find_service(cfg, sc->name) != sc) {
		snprintf(why, whylen, "service '%s' is not found by its name",
		    sc->name);
		return -1;
	}
	if (sc->protocol != MAIL_PROTO_IMAP &&
	    sc->protocol != MAIL_PROTO_POP3 &&
	    sc->protocol != MAIL_PROTO_SMTP) {
		snprintf(why, whylen, "service '%s': protocol %d", sc->name,
		    (int)sc->protocol);
		return -1;
	}
	if (sc->tls != TLS_MODE_IMPLICIT && sc->tls != TLS_MODE_STARTTLS) {
		snprintf(why, whylen, "service '%s': tls %d", sc->name,
		    (int)sc->tls);
		return -1;
	}
	if (sc->n_listen < 0 || sc->n_listen > CONFIG_MAX_LISTEN ||
	    sc->n_pins < 0 || sc->n_pins > CONFIG_MAX_PINS) {
		snprintf(why, whylen, "service '%s': %d listen, %d pins",
		    sc->name, sc->n_listen, sc->n_pins);
		return -1;
	}
	for (i = 0; i < sc->n_listen; i++)
		if (!bounded(sc->listen[i].text, sizeof(sc->listen[i].text)) ||
		    sc->listen[i].addrlen > sizeof(sc->listen[i].addr)) {
			snprintf(why, whylen, "service '%s': bad listen %d",
			    sc->name, i);
			return -1;
		}
	if (sc->connect_timeout > CONFIG_MAX_TIMEOUT ||
	    sc->handshake_timeout > CONFIG_MAX_TIMEOUT ||
	    sc->idle_timeout > CONFIG_MAX_TIMEOUT ||
	    sc->shutdown_timeout > CONFIG_MAX_TIMEOUT) {
		snprintf(why, whylen, "service '%s': timeout over %d",
		    sc->name, CONFIG_MAX_TIMEOUT);
		return -1;
	}
	/* These go into log lines, error lines and the EHLO command. */
	if (strpbrk(sc->name, "\r\n") != NULL ||
	    strpbrk(sc->server_name, "\r\n") != NULL ||
	    strpbrk(sc->ehlo_name, "\r\n") != NULL) {
		snprintf(why, whylen, "service '%s': a line end in a name",
		    sc->name);
		return -1;
	}
	return 0;
}

/* Load a configuration file and check what came back. */
int
fuzz_config_run(const char *path, char *why, size_t whylen)
{
	struct config_errors	 errs;
	struct config		*cfg;
	size_t			 plen = strlen(path), j;
	int			 i, r = 0;

	if (whylen > 0)
		why[0] = '\0';
	memset(&errs, 0, sizeof(errs));
	cfg = config_load(path, &errs);
	if ((cfg == NULL) == (errs.count == 0)) {
		snprintf(why, whylen, "config_load: %s with %d errors",
		    cfg == NULL ? "no config" : "a config", errs.count);
		r = -1;
	}
	if (errs.count > 101) {
		snprintf(why, whylen, "%d error lines", errs.count);
		r = -1;
	}
	for (i = 0; i < errs.count && r == 0; i++) {
		const char *e = errs.lines[i];

		if (strncmp(e, path, plen) != 0 || e[plen] != ':') {
			snprintf(why, whylen, "error without FILE: \"%.80s\"",
			    e);
			r = -1;
		}
		for (j = 0; e[j] != '\0' && r == 0; j++)
			if ((unsigned char)e[j] < 0x20 || e[j] == 0x7f) {
				snprintf(why, whylen, "control byte in error "
				    "line %d", i);
				r = -1;
			}
	}
	if (cfg != NULL && r == 0) {
		if (cfg->n_services < 0 || (cfg->n_services > 0 &&
		    cfg->services == NULL) || !bounded(cfg->user,
		    sizeof(cfg->user)) || !bounded(cfg->pid_file,
		    sizeof(cfg->pid_file)) || !bounded(cfg->state_dir,
		    sizeof(cfg->state_dir)) ||
		    cfg->log_level > LOG_LEVEL_DEBUG) {
			snprintf(why, whylen, "bad global settings");
			r = -1;
		}
		for (i = 0; i < cfg->n_services && r == 0; i++)
			r = check_service(cfg, &cfg->services[i], why, whylen);
	}
	config_free(cfg);
	config_errors_clear(&errs);
	return r;
}
