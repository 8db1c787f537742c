/*
 * session.c - one mail client's session through mailtlsd.
 *
 *   CONNECTING -> [DIALOGUE] -> HANDSHAKING -> [PARKED] -> RELAYING -> CLOSING
 *
 * PARKED is a pooled connection without a client yet (pool.c): it holds the
 * server's greeting (implicit TLS) and is discarded when the server sends
 * anything more, closes, or when it reaches pool_max_age.
 * DIALOGUE is the plaintext STARTTLS step (tls = starttls), spoken by
 * mailtlsd itself; nothing the server says there reaches the client.  Until
 * RELAYING the client's bytes wait in its bounded input buffer: nothing
 * reaches the server before TLS is up and verified.  A failure before
 * RELAYING gives the client one protocol-correct line.  In RELAYING bytes
 * flow both ways; each direction stops taking input while the buffer on its
 * far side is full, so a slow reader holds at most SESSION_BUF_MAX per
 * buffer.  After STARTTLS, a protocol filter sits in both directions until
 * the client has logged in, then the relay becomes a plain copy.  Every session ends in session_close() and is freed once, in
 * session_free().
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

#include "addr.h"
#include "log.h"
#include "pool.h"
#include "proto.h"
#include "runtime.h"
#include "service.h"
#include "session.h"
#include "tls.h"
#include "upstream.h"

#define SESSION_BUF_MAX		(64 * 1024)	/* per buffer, per direction */
#define SESSION_CHUNK		(16 * 1024)	/* one TLS record */
#define SESSION_LINGER_MS	5000		/* flush and close at the end */

enum session_state {
	SESSION_CONNECTING,
	SESSION_DIALOGUE,
	SESSION_HANDSHAKING,
	SESSION_PARKED,
	SESSION_RELAYING,
	SESSION_CLOSING
};

static const char *const session_state_names[] = {
	"CONNECTING", "DIALOGUE", "HANDSHAKING", "PARKED", "RELAYING",
	"CLOSING"
};

struct session {
	TAILQ_ENTRY(session)	 entry;
	struct runtime		*rt;
	struct service		*svc;
	unsigned long long	 id;
	enum session_state	 state;

	struct bufferevent	*client;	/* plaintext, from the mail client */
	struct bufferevent	*server;	/* TLS records, to the mail server */
	struct tls_conn		*tls;
	struct upstream		*connecting;
	struct event		*timer;
	struct proto_dialogue	*dialogue;	/* STARTTLS, before TLS */
	struct proto_filter	*filter;	/* after STARTTLS, until login */
	struct evbuffer		*down_plain;	/* server bytes for the filter */
	struct evbuffer		*up_plain;	/* filtered client bytes */
	struct pool		*pool;		/* while a pool member */
	struct evbuffer		*parked;	/* for the client to come */

	uint64_t		 started_ms;
	uint64_t		 connected_ms;	/* TCP up: handshake clock */
	uint64_t		 state_ms;	/* when the state was entered */
	uint64_t		 active_ms;	/* last byte moved either way */
	uint64_t		 drain_ms;	/* shutdown deadline, 0 = none */

	unsigned		 client_eof : 1;	/* client sent FIN */
	unsigned		 client_shut : 1;	/* we sent FIN to client */
	unsigned		 server_done : 1;	/* server finished */
	unsigned		 server_shut : 1;	/* we sent FIN to server */
	unsigned		 server_broken : 1;	/* socket error */
	unsigned		 server_eof : 1;	/* server socket ended */
	unsigned		 pool_ready : 1;	/* parked, greeted */
	unsigned		 pool_aged : 1;		/* reached pool_max_age */

	unsigned long long	 bytes_up;
	unsigned long long	 bytes_down;
	char			 client_addr[ADDR_TEXT_MAX];
	char			 server_addr[80];
	char			 reason[200];
};

static int	session_close(struct session *, enum log_level, const char *);
static int	session_pump_up(struct session *);
static int	session_relay(struct session *);
static int	session_park(struct session *);
static void	session_arm_timer(struct session *);

/* Milliseconds of a clock that never jumps. */
static uint64_t
session_now_ms(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Log a line prefixed with the service name and session id. */
static void __attribute__((format(printf, 3, 4)))
session_log(const struct session *s, enum log_level level, const char *fmt,
    ...)
{
	char	text[1024];
	va_list	ap;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	switch (level) {
	case LOG_LEVEL_ERROR:
		log_errorx("[%s#%llu] %s", s->svc->cfg.name, s->id, text);
		break;
	case LOG_LEVEL_WARN:
		log_warnx("[%s#%llu] %s", s->svc->cfg.name, s->id, text);
		break;
	case LOG_LEVEL_INFO:
		log_info("[%s#%llu] %s", s->svc->cfg.name, s->id, text);
		break;
	case LOG_LEVEL_DEBUG:
		log_debug("[%s#%llu] %s", s->svc->cfg.name, s->id, text);
		break;
	}
}

/* Enter a state and restart its clock. */
static void
session_set_state(struct session *s, enum session_state state)
{
	session_log(s, LOG_LEVEL_DEBUG, "%s -> %s",
	    session_state_names[s->state], session_state_names[state]);
	s->state = state;
	s->state_ms = session_now_ms();
	s->active_ms = s->state_ms;
	session_arm_timer(s);
}

/* Free everything, once. */
static void
session_free(struct session *s)
{
	struct runtime	*rt = s->rt;
	double		 seconds;

	seconds = (double)(session_now_ms() - s->started_ms) / 1000.0;
	/* Pool members that never served a client are routine: debug. */
	session_log(s, s->client_addr[0] != '\0' ? LOG_LEVEL_INFO :
	    LOG_LEVEL_DEBUG, "closed: %s (%llu bytes up, %llu down, %.1fs)",
	    s->reason, s->bytes_up, s->bytes_down, seconds);
	upstream_cancel(s->connecting);
	tls_conn_free(s->tls);
	proto_dialogue_free(s->dialogue);
	proto_filter_free(s->filter);
	if (s->down_plain != NULL)
		evbuffer_free(s->down_plain);
	if (s->up_plain != NULL)
		evbuffer_free(s->up_plain);
	if (s->parked != NULL)
		evbuffer_free(s->parked);
	if (s->pool != NULL)
		pool_member_gone(s->pool, s, !s->pool_aged);
	if (s->server != NULL)
		bufferevent_free(s->server);
	if (s->client != NULL)
		bufferevent_free(s->client);
	if (s->timer != NULL)
		event_free(s->timer);
	TAILQ_REMOVE(&rt->sessions, s, entry);
	rt->n_sessions--;
	service_unref(s->svc);
	free(s);
	runtime_session_ended(rt);
}

/* The earliest moment the timer must look at this session. */
static uint64_t
session_deadline(const struct session *s)
{
	const struct service_config	*sc = &s->svc->cfg;
	uint64_t			 deadline = UINT64_MAX;
	uint64_t			 idle;

	switch (s->state) {
	case SESSION_CONNECTING:
		/* The upstream bounds resolving and each connect. */
		break;
	case SESSION_DIALOGUE:
	case SESSION_HANDSHAKING:
		/* Everything from TCP connect until the client is greeted. */
		deadline = s->connected_ms +
		    (uint64_t)sc->handshake_timeout * 1000;
		break;
	case SESSION_PARKED:
		deadline = s->started_ms + (uint64_t)sc->pool_max_age * 1000;
		break;
	case SESSION_RELAYING:
		/* Once the client has finished, the server gets less time. */
		idle = s->client_eof ? sc->handshake_timeout : sc->idle_timeout;
		deadline = s->active_ms + idle * 1000;
		break;
	case SESSION_CLOSING:
		deadline = s->active_ms + SESSION_LINGER_MS;
		break;
	}
	if (s->drain_ms != 0 && s->drain_ms < deadline)
		deadline = s->drain_ms;
	return deadline;
}

/* (Re)arm the one timer for the next deadline. */
static void
session_arm_timer(struct session *s)
{
	uint64_t	deadline = session_deadline(s);
	uint64_t	now = session_now_ms();
	struct timeval	tv;

	if (deadline == UINT64_MAX) {
		evtimer_del(s->timer);
		return;
	}
	deadline = deadline > now ? deadline - now : 0;
	tv.tv_sec = (time_t)(deadline / 1000);
	tv.tv_usec = (suseconds_t)(deadline % 1000) * 1000;
	evtimer_add(s->timer, &tv);
}

/* Free the session if nothing is left to flush; -1 when freed. */
static int
session_try_finish(struct session *s)
{
	/* The server side is done as soon as close_notify has left. */
	if (s->server != NULL &&
	    evbuffer_get_length(bufferevent_get_output(s->server)) == 0) {
		tls_conn_free(s->tls);
		s->tls = NULL;
		bufferevent_free(s->server);
		s->server = NULL;
	}
	if (s->client != NULL &&
	    evbuffer_get_length(bufferevent_get_output(s->client)) > 0)
		return 0;
	if (s->server != NULL)
		return 0;
	/* Let the client read our last bytes before it sees the close. */
	if (s->client != NULL && !s->client_eof) {
		if (!s->client_shut) {
			s->client_shut = 1;
			shutdown(bufferevent_getfd(s->client), SHUT_WR);
		}
		return 0;
	}
	session_free(s);
	return -1;
}

/*
 * End the session for reason: a client that was never connected gets the
 * protocol's error line; what is buffered is flushed within the linger
 * time.  Always returns -1: the caller stops touching the session.
 */
static int
session_close(struct session *s, enum log_level level, const char *reason)
{
	if (s->state == SESSION_CLOSING) {
		session_try_finish(s);
		return -1;
	}
	snprintf(s->reason, sizeof(s->reason), "%s", reason);
	if (s->client == NULL && s->state < SESSION_RELAYING)
		session_log(s, level, "pool: %s", reason);
	else if (s->state < SESSION_RELAYING) {
		session_log(s, level, "cannot reach %s:%u securely: %s",
		    s->svc->cfg.remote_host, s->svc->cfg.remote_port, reason);
		if (s->client != NULL)
			proto_write_unavailable(bufferevent_get_output(s->client),
			    s->svc->cfg.protocol, "mailtlsd cannot reach the mail "
			    "server securely; see the mailtlsd log");
	} else
		session_log(s, level, "ending: %s", reason);
	upstream_cancel(s->connecting);
	s->connecting = NULL;
	if (s->server != NULL && (s->state < SESSION_PARKED ||
	    s->server_broken)) {
		/* Nothing worth flushing: no session exists there yet. */
		tls_conn_free(s->tls);
		s->tls = NULL;
		bufferevent_free(s->server);
		s->server = NULL;
	} else if (s->server != NULL) {
		tls_conn_close_notify(s->tls);
		bufferevent_disable(s->server, EV_READ);
	}
	if (s->client != NULL) {
		/* Discard what the client still sends until it closes. */
		evbuffer_drain(bufferevent_get_input(s->client),
		    evbuffer_get_length(bufferevent_get_input(s->client)));
		bufferevent_setwatermark(s->client, EV_WRITE, 0, 0);
	}
	session_set_state(s, SESSION_CLOSING);
	session_try_finish(s);
	return -1;
}

/* The server finished its side: flush to the client and end. */
static int
session_server_finished(struct session *s, int how)
{
	s->server_done = 1;
	return session_close(s, LOG_LEVEL_INFO, how == TLS_CLOSED ?
	    "server closed the session" :
	    "server closed the connection without close_notify");
}

/* Where bytes for the client go: its socket, or the parked buffer. */
static struct evbuffer *
session_client_out(struct session *s)
{
	return s->client != NULL ? bufferevent_get_output(s->client) :
	    s->parked;
}

/* The client has logged in: the relay becomes a plain copy. */
static void
session_filter_done(struct session *s)
{
	session_log(s, LOG_LEVEL_DEBUG, "client logged in: plain relay");
	evbuffer_add_buffer(session_client_out(s), s->down_plain);
	evbuffer_prepend_buffer(bufferevent_get_input(s->client), s->up_plain);
	proto_filter_free(s->filter);
	s->filter = NULL;
	evbuffer_free(s->down_plain);
	s->down_plain = NULL;
	evbuffer_free(s->up_plain);
	s->up_plain = NULL;
}

/* The filter found a protocol violation: tell the client, then end. */
static int
session_filter_failed(struct session *s)
{
	/* Before login the client's output always ends at a line boundary. */
	proto_write_unavailable(session_client_out(s),
	    s->svc->cfg.protocol, "mailtlsd ended the session: protocol "
	    "error before login; see the mailtlsd log");
	return session_close(s, LOG_LEVEL_WARN,
	    proto_filter_reason(s->filter));
}

/* Run the server's bytes through the filter; -1 when the session ended. */
static int
session_filter_down(struct session *s)
{
	if (proto_filter_server(s->filter, s->down_plain,
	    session_client_out(s)) != 0)
		return session_filter_failed(s);
	if (proto_filter_done(s->filter))
		session_filter_done(s);
	/* The filter holds client bytes whose meaning waited for this. */
	if (s->client != NULL &&
	    evbuffer_get_length(bufferevent_get_input(s->client)) > 0)
		return session_pump_up(s);
	return 0;
}

/* Move decrypted server bytes to the client while it has room. */
static int
session_pump_down(struct session *s)
{
	struct evbuffer		*out = session_client_out(s);
	struct evbuffer		*dst;
	struct evbuffer_iovec	 vec;
	int			 n;

	for (;;) {
		n = TLS_WANT;
		if (evbuffer_get_length(out) >= SESSION_BUF_MAX)
			break;
		/* Reserve no memory unless a record may be there to read. */
		if (!s->server_eof && !tls_conn_pending(s->tls) &&
		    evbuffer_get_length(bufferevent_get_input(s->server)) == 0)
			break;
		/* Before login the filter sees the bytes first. */
		dst = s->filter != NULL ? s->down_plain : out;
		if (evbuffer_reserve_space(dst, SESSION_CHUNK, &vec, 1) < 1)
			return session_close(s, LOG_LEVEL_ERROR,
			    "out of memory");
		if (vec.iov_len > SESSION_CHUNK)
			vec.iov_len = SESSION_CHUNK;
		n = tls_conn_read(s->tls, vec.iov_base, vec.iov_len);
		if (n <= 0) {
			evbuffer_commit_space(dst, &vec, 0);
			break;
		}
		vec.iov_len = (size_t)n;
		evbuffer_commit_space(dst, &vec, 1);
		s->bytes_down += (unsigned long long)n;
		if (s->filter != NULL && session_filter_down(s) != 0)
			return -1;
	}
	if (evbuffer_get_length(out) >= SESSION_BUF_MAX)
		return 0;	/* resumed by session_client_write_cb */
	switch (n) {
	case TLS_WANT:
		return 0;
	case TLS_CLOSED:
	case TLS_EOF:
		return session_server_finished(s, n);
	default:
		return session_close(s, LOG_LEVEL_WARN,
		    tls_conn_error(s->tls));
	}
}

/* The client finished sending: say so to the server, keep listening. */
static void
session_client_finished(struct session *s)
{
	struct evbuffer	*out = bufferevent_get_output(s->server);

	tls_conn_close_notify(s->tls);
	if (!s->server_shut && evbuffer_get_length(out) == 0) {
		s->server_shut = 1;
		shutdown(bufferevent_getfd(s->server), SHUT_WR);
	}
	session_arm_timer(s);
}

/* Run the client's bytes through the filter; -1 when the session ended. */
static int
session_filter_up(struct session *s)
{
	/* up_plain grows by at most one client buffer: it stays bounded. */
	if (evbuffer_get_length(s->up_plain) >= SESSION_BUF_MAX)
		return 0;
	if (proto_filter_client(s->filter, bufferevent_get_input(s->client),
	    s->up_plain, bufferevent_get_output(s->client)) != 0)
		return session_filter_failed(s);
	if (proto_filter_done(s->filter))
		session_filter_done(s);
	return 0;
}

/* Encrypt client bytes to the server while it has room. */
static int
session_pump_up(struct session *s)
{
	struct evbuffer		*in;
	struct evbuffer		*out = bufferevent_get_output(s->server);
	struct evbuffer_iovec	 vec;
	size_t			 len;
	int			 n;

	if (s->filter != NULL && session_filter_up(s) != 0)
		return -1;
	in = s->filter != NULL ? s->up_plain : bufferevent_get_input(s->client);
	while (evbuffer_get_length(in) > 0 &&
	    evbuffer_get_length(out) < SESSION_BUF_MAX) {
		if (evbuffer_peek(in, -1, NULL, &vec, 1) < 1)
			break;
		len = vec.iov_len < SESSION_CHUNK ? vec.iov_len : SESSION_CHUNK;
		if ((n = tls_conn_write(s->tls, vec.iov_base, len)) < 0)
			return session_close(s, LOG_LEVEL_WARN,
			    tls_conn_error(s->tls));
		evbuffer_drain(in, (size_t)n);
		s->bytes_up += (unsigned long long)n;
	}
	if (s->client_eof && evbuffer_get_length(in) == 0 &&
	    evbuffer_get_length(bufferevent_get_input(s->client)) == 0)
		session_client_finished(s);
	return 0;
}

/* Greet the client (STARTTLS mode) and start relaying. */
static int
session_relay(struct session *s)
{
	const struct service_config	*sc = &s->svc->cfg;

	/* The server's plaintext greeting was never trustworthy. */
	if (sc->tls == TLS_MODE_STARTTLS && proto_write_greeting(
	    bufferevent_get_output(s->client), sc) != 0)
		return session_close(s, LOG_LEVEL_ERROR, "out of memory");
	session_set_state(s, SESSION_RELAYING);
	if (session_pump_down(s) != 0)
		return -1;
	return session_pump_up(s);
}

/*
 * A parked member holds the greeting (implicit TLS) or nothing (STARTTLS);
 * anything more from the server, and it is discarded.
 */
static int
session_parked_check(struct session *s)
{
	int	greeted;

	if (s->svc->cfg.tls == TLS_MODE_STARTTLS)
		greeted = evbuffer_get_length(s->parked) == 0 ? 1 : -1;
	else
		greeted = proto_greeting_complete(s->svc->cfg.protocol,
		    s->parked);
	if (greeted == 1 && evbuffer_get_length(s->down_plain) > 0)
		greeted = -1;
	if (greeted < 0)
		return session_close(s, LOG_LEVEL_INFO, "server sent data "
		    "while the connection waited in the pool");
	if (greeted == 1 && !s->pool_ready) {
		s->pool_ready = 1;
		session_log(s, LOG_LEVEL_DEBUG, "ready in the pool");
		pool_member_ready(s->pool, s);
	}
	return 0;
}

/* A pool member finished TLS: wait for a client. */
static int
session_park(struct session *s)
{
	if ((s->parked = evbuffer_new()) == NULL)
		return session_close(s, LOG_LEVEL_ERROR, "out of memory");
	session_set_state(s, SESSION_PARKED);
	if (session_pump_down(s) != 0)
		return -1;
	return session_parked_check(s);
}

/* TLS is up and verified: start relaying. */
static int
session_start_relay(struct session *s)
{
	const struct service_config	*sc = &s->svc->cfg;

	session_log(s, LOG_LEVEL_INFO, "connected to %s with %s, %s%s",
	    s->server_addr, tls_conn_version(s->tls),
	    tls_conn_ciphersuite(s->tls),
	    tls_conn_resumed(s->tls) ? ", resumed" : "");
	/* Until login, capabilities reach the client as they are after TLS. */
	s->filter = proto_filter_new(sc->protocol);
	s->down_plain = evbuffer_new();
	s->up_plain = evbuffer_new();
	if (s->filter == NULL || s->down_plain == NULL || s->up_plain == NULL)
		return session_close(s, LOG_LEVEL_ERROR, "out of memory");
	if (sc->tls == TLS_MODE_IMPLICIT)
		proto_filter_expect_greeting(s->filter);
	if (s->client == NULL)
		return session_park(s);
	return session_relay(s);
}

/* Drive the handshake with what has arrived. */
static int
session_handshake(struct session *s)
{
	char	reason[300];

	switch (tls_conn_handshake(s->tls)) {
	case 0:
		return 0;
	case 1:
		return session_start_relay(s);
	default:
		break;
	}
	if (s->svc->cfg.tls == TLS_MODE_STARTTLS &&
	    tls_conn_saw_plaintext(s->tls)) {
		snprintf(reason, sizeof(reason), "data injected after the "
		    "STARTTLS response, or the server did not start TLS");
		return session_close(s, LOG_LEVEL_WARN, reason);
	}
	return session_close(s, LOG_LEVEL_WARN, tls_conn_error(s->tls));
}

/* Start the TLS handshake on the connected socket. */
static int
session_begin_tls(struct session *s)
{
	if ((s->tls = tls_conn_new(s->svc->tls, s->server)) == NULL)
		return session_close(s, LOG_LEVEL_ERROR,
		    "out of memory for TLS");
	session_set_state(s, SESSION_HANDSHAKING);
	return session_handshake(s);
}

/* Take one complete server line of at most PROTO_LINE_MAX bytes. */
static int
session_server_line(struct session *s, char *line, size_t *len)
{
	struct evbuffer		*in = bufferevent_get_input(s->server);
	struct evbuffer_ptr	 eol;
	size_t			 eol_len;

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

/* The plaintext STARTTLS dialogue: one server line at a time. */
static int
session_dialogue(struct session *s)
{
	struct evbuffer	*in = bufferevent_get_input(s->server);
	char		 line[PROTO_LINE_MAX + 1];
	size_t		 len;
	int		 got;

	while ((got = session_server_line(s, line, &len)) > 0) {
		session_log(s, LOG_LEVEL_DEBUG, "%s: server line of %zu "
		    "bytes", proto_dialogue_state(s->dialogue), len);
		switch (proto_dialogue_line(s->dialogue, line, len,
		    bufferevent_get_output(s->server))) {
		case PROTO_MORE:
			continue;
		case PROTO_FAIL:
			return session_close(s, LOG_LEVEL_WARN,
			    proto_dialogue_reason(s->dialogue));
		case PROTO_UPGRADE:
			/* Bytes after the go-ahead were not sent by TLS. */
			if (evbuffer_get_length(in) > 0)
				return session_close(s, LOG_LEVEL_WARN,
				    "data injected after the STARTTLS "
				    "response");
			proto_dialogue_free(s->dialogue);
			s->dialogue = NULL;
			return session_begin_tls(s);
		}
	}
	if (got < 0) {
		snprintf(line, sizeof(line), "server line longer than %d bytes "
		    "in the STARTTLS dialogue", PROTO_LINE_MAX);
		return session_close(s, LOG_LEVEL_WARN, line);
	}
	if (s->server_eof)
		return session_close(s, LOG_LEVEL_WARN, "server closed the "
		    "connection during the STARTTLS dialogue");
	return 0;
}

/* Mark traffic for the idle timeout. */
static void
session_touch(struct session *s)
{
	s->active_ms = session_now_ms();
}

/* Bytes (TLS records) arrived from the server. */
static void
session_server_read_cb(struct bufferevent *bev, void *arg)
{
	struct session	*s = arg;

	(void)bev;
	session_touch(s);
	if (s->state == SESSION_DIALOGUE)
		session_dialogue(s);
	else if (s->state == SESSION_HANDSHAKING)
		session_handshake(s);
	else if (s->state == SESSION_RELAYING)
		session_pump_down(s);
	else if (s->state == SESSION_PARKED && session_pump_down(s) == 0)
		session_parked_check(s);
}

/* The server's output buffer drained below its low-water mark. */
static void
session_server_write_cb(struct bufferevent *bev, void *arg)
{
	struct session	*s = arg;

	session_touch(s);
	if (s->state == SESSION_CLOSING) {
		session_try_finish(s);
		return;
	}
	if (s->state != SESSION_RELAYING)
		return;
	if (s->client_eof && !s->server_shut &&
	    evbuffer_get_length(bufferevent_get_input(s->client)) == 0 &&
	    evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
		s->server_shut = 1;
		shutdown(bufferevent_getfd(bev), SHUT_WR);
	}
	session_pump_up(s);
}

/* The server socket closed or failed. */
static void
session_server_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct session	*s = arg;
	char		 reason[160];
	int		 err = EVUTIL_SOCKET_ERROR();

	(void)bev;
	if (s->state == SESSION_CLOSING) {
		/* Nothing more can be flushed to it. */
		bufferevent_free(s->server);
		s->server = NULL;
		session_try_finish(s);
		return;
	}
	s->server_eof = 1;
	if (s->tls != NULL)
		tls_conn_set_eof(s->tls);
	if ((what & BEV_EVENT_ERROR) && s->state < SESSION_RELAYING) {
		snprintf(reason, sizeof(reason), "%s during the %s with %s",
		    evutil_socket_error_to_string(err),
		    s->state == SESSION_DIALOGUE ? "STARTTLS dialogue" :
		    "TLS handshake", s->server_addr);
		session_close(s, LOG_LEVEL_WARN, reason);
		return;
	}
	/* Records already received still go to the client. */
	if (what & BEV_EVENT_ERROR)
		s->server_broken = 1;
	if (s->state == SESSION_DIALOGUE)
		session_dialogue(s);
	else if (s->state == SESSION_HANDSHAKING)
		session_handshake(s);
	else if (session_pump_down(s) == 0 && s->state == SESSION_PARKED)
		session_parked_check(s);
}

/* The TCP connection to the server is up, or every address failed. */
static void
session_upstream_cb(struct bufferevent *bev, const char *text, void *arg)
{
	struct session	*s = arg;

	s->connecting = NULL;
	if (bev == NULL) {
		session_close(s, LOG_LEVEL_WARN, text);
		return;
	}
	s->server = bev;
	s->connected_ms = session_now_ms();
	snprintf(s->server_addr, sizeof(s->server_addr), "%s", text);
	bufferevent_setcb(bev, session_server_read_cb, session_server_write_cb,
	    session_server_event_cb, s);
	bufferevent_setwatermark(bev, EV_READ, 0, SESSION_BUF_MAX);
	bufferevent_setwatermark(bev, EV_WRITE, SESSION_BUF_MAX / 2, 0);
	bufferevent_enable(bev, EV_READ);
	session_log(s, LOG_LEVEL_DEBUG, "TCP connected to %s", text);
	if (s->svc->cfg.tls != TLS_MODE_STARTTLS) {
		session_begin_tls(s);
		return;
	}
	if ((s->dialogue = proto_dialogue_new(&s->svc->cfg)) == NULL) {
		session_close(s, LOG_LEVEL_ERROR, "out of memory");
		return;
	}
	session_set_state(s, SESSION_DIALOGUE);
	session_dialogue(s);
}

/* Bytes arrived from the mail client. */
static void
session_client_read_cb(struct bufferevent *bev, void *arg)
{
	struct session	*s = arg;
	struct evbuffer	*in = bufferevent_get_input(bev);

	session_touch(s);
	if (s->state == SESSION_RELAYING)
		session_pump_up(s);
	else if (s->state == SESSION_CLOSING)
		evbuffer_drain(in, evbuffer_get_length(in));
	/* Before RELAYING the bytes wait: nothing goes out unencrypted. */
}

/* The client's output buffer drained below its low-water mark. */
static void
session_client_write_cb(struct bufferevent *bev, void *arg)
{
	struct session	*s = arg;

	(void)bev;
	session_touch(s);
	if (s->state == SESSION_CLOSING)
		session_try_finish(s);
	else if (s->state == SESSION_RELAYING)
		session_pump_down(s);
}

/* The client closed or failed. */
static void
session_client_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct session	*s = arg;

	(void)bev;
	if (what & BEV_EVENT_ERROR) {
		/* A reset client can be sent nothing more. */
		bufferevent_free(s->client);
		s->client = NULL;
		session_close(s, LOG_LEVEL_INFO, "client connection reset");
		return;
	}
	s->client_eof = 1;
	switch (s->state) {
	case SESSION_RELAYING:
		session_pump_up(s);
		break;
	case SESSION_CLOSING:
		session_try_finish(s);
		break;
	default:
		session_close(s, LOG_LEVEL_INFO,
		    "client left before the server was reached");
		break;
	}
}

/* The session's deadline passed (or the timer must be pushed back). */
static void
session_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session	*s = arg;
	uint64_t	 now = session_now_ms();

	(void)fd;
	(void)what;
	if (s->drain_ms != 0 && now >= s->drain_ms) {
		if (s->state == SESSION_CLOSING)
			session_free(s);
		else
			session_close(s, LOG_LEVEL_INFO, "daemon shutting down");
		return;
	}
	if (now < session_deadline(s)) {
		session_arm_timer(s);	/* there was traffic meanwhile */
		return;
	}
	switch (s->state) {
	case SESSION_DIALOGUE:
		session_close(s, LOG_LEVEL_WARN, "STARTTLS dialogue timed out");
		break;
	case SESSION_HANDSHAKING:
		session_close(s, LOG_LEVEL_WARN, "TLS handshake timed out");
		break;
	case SESSION_RELAYING:
		session_close(s, LOG_LEVEL_INFO, s->client_eof ?
		    "server did not finish after the client left" :
		    "idle timeout");
		break;
	case SESSION_PARKED:
		s->pool_aged = 1;
		session_close(s, LOG_LEVEL_DEBUG, "pooled connection reached "
		    "pool_max_age");
		break;
	case SESSION_CLOSING:
		session_free(s);
		break;
	case SESSION_CONNECTING:
		break;
	}
}

/* A new session in the runtime's list, without sockets yet. */
static struct session *
session_new(struct runtime *rt, struct service *svc)
{
	struct session	*s;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->rt = rt;
	s->svc = service_ref(svc);
	s->id = ++rt->next_session_id;
	s->started_ms = session_now_ms();
	s->state_ms = s->active_ms = s->started_ms;
	snprintf(s->reason, sizeof(s->reason), "out of memory");
	TAILQ_INSERT_TAIL(&rt->sessions, s, entry);
	rt->n_sessions++;
	if ((s->timer = evtimer_new(rt->base, session_timer_cb, s)) == NULL) {
		session_free(s);
		return NULL;
	}
	return s;
}

/* Give the session its client socket; 0, or -1 (fd closed). */
static int
session_setup_client(struct session *s, int fd, const struct sockaddr *sa)
{
	addr_format(sa, s->client_addr, sizeof(s->client_addr));
	s->client = bufferevent_socket_new(s->rt->base, fd,
	    BEV_OPT_CLOSE_ON_FREE);
	if (s->client == NULL) {
		evutil_closesocket(fd);
		return -1;
	}
	bufferevent_setcb(s->client, session_client_read_cb,
	    session_client_write_cb, session_client_event_cb, s);
	bufferevent_setwatermark(s->client, EV_READ, 0, SESSION_BUF_MAX);
	bufferevent_setwatermark(s->client, EV_WRITE, SESSION_BUF_MAX / 2, 0);
	bufferevent_enable(s->client, EV_READ);
	return 0;
}

/* Start resolving and connecting to the service's server. */
static int
session_connect(struct session *s)
{
	const struct service_config	*sc = &s->svc->cfg;

	s->connecting = upstream_connect(s->rt->base, s->rt->dns,
	    sc->remote_host, sc->remote_port, sc->connect_timeout,
	    session_upstream_cb, s);
	return s->connecting != NULL ? 0 : -1;
}

/* Take over an accepted client and start reaching the server. */
int
session_start(struct runtime *rt, struct service *svc, int fd,
    const struct sockaddr *sa, socklen_t salen)
{
	struct session	*s;

	(void)salen;
	if ((s = session_new(rt, svc)) == NULL) {
		evutil_closesocket(fd);
		goto err;
	}
	if (session_setup_client(s, fd, sa) != 0 || session_connect(s) != 0) {
		session_free(s);
		goto err;
	}
	session_log(s, LOG_LEVEL_INFO, "client %s, connecting to %s:%u",
	    s->client_addr, svc->cfg.remote_host, svc->cfg.remote_port);
	return 0;
err:
	log_errorx("[%s] cannot start a session: out of memory",
	    svc->cfg.name);
	return -1;
}

/* A pool member: a session that connects before any client comes. */
struct session *
session_start_pooled(struct runtime *rt, struct service *svc,
    struct pool *pool)
{
	struct session	*s;

	if ((s = session_new(rt, svc)) == NULL)
		return NULL;
	if (session_connect(s) != 0) {
		session_free(s);
		return NULL;
	}
	s->pool = pool;		/* from now on the pool hears of its end */
	session_log(s, LOG_LEVEL_DEBUG, "pool: connecting to %s:%u",
	    svc->cfg.remote_host, svc->cfg.remote_port);
	return s;
}

/* Give a ready pool member its client: greet it at once. */
int
session_attach(struct session *s, int fd, const struct sockaddr *sa,
    socklen_t salen)
{
	(void)salen;
	s->pool = NULL;		/* taken: used by this client only, ever */
	if (session_setup_client(s, fd, sa) != 0) {
		session_close(s, LOG_LEVEL_ERROR, "out of memory");
		return -1;
	}
	s->started_ms = session_now_ms();
	evbuffer_add_buffer(bufferevent_get_output(s->client), s->parked);
	evbuffer_free(s->parked);
	s->parked = NULL;
	session_log(s, LOG_LEVEL_INFO, "client %s, pooled connection to %s",
	    s->client_addr, s->server_addr);
	return session_relay(s);
}

/* The daemon is stopping: finish within shutdown_timeout. */
void
session_drain(struct session *s)
{
	s->drain_ms = session_now_ms() +
	    (uint64_t)s->svc->cfg.shutdown_timeout * 1000;
	session_arm_timer(s);
}

/* Close at once, flushing nothing. */
void
session_abort(struct session *s)
{
	snprintf(s->reason, sizeof(s->reason), "daemon exiting");
	session_free(s);
}

/* The next session in the runtime's list. */
struct session *
session_next(struct session *s)
{
	return TAILQ_NEXT(s, entry);
}
