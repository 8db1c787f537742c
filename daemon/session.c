/*
 * session.c - one mail client's session through mailtlsd.
 *
 *   REACHING -> [PARKED] -> [WAITING] -> RELAYING -> CLOSING
 *
 * REACHING is uplink.c's work: resolve, connect, the STARTTLS dialogue, the
 * TLS handshake and its verification.  PARKED is a pooled connection
 * without a client yet (pool.c): it holds the server's greeting (implicit
 * TLS) and is discarded when the server sends anything more, closes, or
 * when it reaches pool_max_age.  Until RELAYING the client's bytes wait in
 * its bounded input buffer: nothing reaches the server before TLS is up
 * and verified.  A failure before RELAYING gives the client one
 * protocol-correct line.  In RELAYING the session moves plaintext between
 * two streams -- the client's socket (or its TLS stream) and the server's
 * TLS stream -- with the protocol filter between them until the client
 * has logged in; then the relay is a plain copy.  Each direction stops
 * taking input while the buffer on its far side is full, so a slow reader
 * holds at most SESSION_BUF_MAX per buffer.
 *
 * With local_tls the client's side has a small machine of its own, run
 * while the server is being reached:
 *
 *   [OPENING] -> HANDSHAKING -> SECURE		(PLAIN without local_tls)
 *
 * OPENING is mailtlsd's own plaintext greeting and STARTTLS toward the
 * client (local_tls = starttls, proto_local.c).  The client's TLS is a
 * tls_stream like the server's, so the relay reads session_client_in() and
 * writes session_client_out() whatever the client speaks.  WAITING is a
 * server that is ready for a client that is not; RELAYING starts only when
 * both are.  Every session ends in session_close() and is freed once, in
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
#include "oauth2.h"
#include "peers.h"
#include "proto.h"
#include "proto_local.h"
#include "readahead.h"
#include "service.h"
#include "session.h"
#include "stats.h"
#include "tls.h"
#include "tlsstream.h"
#include "uplink.h"

#define SESSION_BUF_MAX		(64 * 1024)	/* per buffer, per direction */
#define SESSION_CHUNK		(16 * 1024)	/* one TLS record */
#define SESSION_LINGER_MS	5000		/* flush and close at the end */
#define SESSION_LINGER_MAX_MS	30000		/* ... however slow the flush */
#define SESSION_POOL_HEALTHY_MS	10000		/* a pool member proved fine */

enum session_state {
	SESSION_REACHING,	/* the uplink reaches the server */
	SESSION_PARKED,		/* a pool member waits for a client */
	SESSION_WAITING,	/* server ready, the client's TLS is not */
	SESSION_RELAYING,
	SESSION_CLOSING
};

static const char *const session_state_names[] = {
	"REACHING", "PARKED", "WAITING", "RELAYING", "CLOSING"
};

/* The client's side (local_tls). */
enum client_state {
	CLIENT_PLAIN,		/* no local_tls: ready from the start */
	CLIENT_OPENING,		/* mailtlsd's plaintext opening */
	CLIENT_HANDSHAKING,	/* TLS handshake with the client */
	CLIENT_SECURE		/* TLS with the client is up */
};

static const char *const client_state_names[] = {
	"PLAIN", "OPENING", "HANDSHAKING", "SECURE"
};

/* One end of the session: its socket, its TLS, how far it has ended. */
struct side {
	struct bufferevent	*bev;
	struct tls_stream	*tls;		/* NULL: plaintext (a client) */
	unsigned		 eof : 1;	/* the socket reached its end */
	unsigned		 done : 1;	/* will send no more: FIN or
						   close_notify, all taken */
	unsigned		 shut : 1;	/* we sent FIN */
	unsigned		 broken : 1;	/* the socket failed */
};

struct session {
	TAILQ_ENTRY(session)	 entry;
	struct session_host	*host;
	struct service		*svc;
	unsigned long long	 id;
	enum session_state	 state;
	enum client_state	 cstate;

	struct side		 client;	/* the mail client */
	struct side		 server;	/* the mail server, over TLS */
	struct uplink		*uplink;	/* while REACHING */
	struct proto_local	*local;		/* local STARTTLS opening */
	struct event		*timer;
	struct proto_filter	*filter;	/* until the client logged in */
	struct oauth2_request	*login_req;	/* oauth2: a token on its way */
	struct evbuffer		*down_plain;	/* server bytes for the filter */
	struct evbuffer		*up_plain;	/* filtered client bytes */
	struct session_pool_cb	 pool;		/* its pool's callbacks */
	unsigned		 in_pool : 1;	/* while a pool member */
	struct evbuffer		*parked;	/* for the client to come */
	struct peer		*peer;		/* the client's address count */

	uint64_t		 started_ms;
	uint64_t		 state_ms;	/* when the state was entered */
	uint64_t		 active_ms;	/* last byte moved either way */
	uint64_t		 drain_ms;	/* shutdown deadline, 0 = none */

	unsigned		 client_failed : 1;	/* ended by the client */
	unsigned		 tls_refused : 1;	/* TLS 1.3: refused on read */
	unsigned		 pool_ready : 1;	/* parked, greeted */
	unsigned		 pool_aged : 1;		/* reached pool_max_age */
	unsigned		 starttls_logged : 1;	/* a refusal was logged */
	unsigned		 login_retried : 1;	/* oauth2: one refresh */

	unsigned long long	 bytes_up;
	unsigned long long	 bytes_down;
	enum stats_reason	 failure;	/* why it failed, if it did */
	char			 client_addr[ADDR_TEXT_MAX];
	char			 server_addr[80];
	char			 reason[200];
};

static int	session_close(struct session *, enum log_level, const char *);
static int	session_fail(struct session *, enum stats_reason,
		    enum log_level, const char *);
static int	session_client_close(struct session *, enum log_level,
		    const char *);
static int	session_pump_up(struct session *);
static int	session_login_step(struct session *);
static int	session_filter_failed(struct session *, enum stats_reason);
static int	session_client_flush(struct session *);
static int	session_relay(struct session *);
static int	session_park(struct session *);
static void	session_arm_timer(struct session *);

/*
 * Let one read or write move a whole buffer: libevent's default of 16 KiB
 * costs several system calls and callbacks per TLS record in bulk transfers.
 */
static void
session_tune_io(struct bufferevent *bev)
{
	(void)bufferevent_set_max_single_read(bev, SESSION_BUF_MAX);
	(void)bufferevent_set_max_single_write(bev, SESSION_BUF_MAX);
}

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
	log_msg(level, "[%s#%llu] %s", s->svc->cfg.name, s->id, text);
}

/* An event came in a state where it cannot: a bug, not a peer's doing. */
static void __attribute__((noreturn))
session_bad_state(const struct session *s, const char *event)
{
	fatalx("session: %s in state %s", event,
	    session_state_names[s->state]);
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

/* Move the client's side on and re-arm the timer. */
static void
session_set_client_state(struct session *s, enum client_state cstate)
{
	session_log(s, LOG_LEVEL_DEBUG, "client: %s -> %s",
	    client_state_names[s->cstate], client_state_names[cstate]);
	s->cstate = cstate;
	session_arm_timer(s);
}

/* Whether the server's bytes may not have reached the client yet. */
static int
session_before_relay(const struct session *s)
{
	switch (s->state) {
	case SESSION_REACHING:
	case SESSION_PARKED:
	case SESSION_WAITING:
		return 1;
	case SESSION_RELAYING:
	case SESSION_CLOSING:
		return 0;
	}
	fatalx("session: bad state %d", (int)s->state);
}

/* Whether the client may take part in the relay (its TLS, if any, is up). */
static int
session_client_ready(const struct session *s)
{
	return s->cstate == CLIENT_PLAIN || s->cstate == CLIENT_SECURE;
}

/* Free everything, once. */
static void
session_free(struct session *s)
{
	struct session_host	*host = s->host;
	double			 seconds;

	seconds = (double)(session_now_ms() - s->started_ms) / 1000.0;
	/* Pool members that never served a client are routine: debug. */
	session_log(s, s->client_addr[0] != '\0' ? LOG_LEVEL_INFO :
	    LOG_LEVEL_DEBUG, "closed: %s (%llu bytes up, %llu down, %.1fs)",
	    s->reason, s->bytes_up, s->bytes_down, seconds);
	if (s->client_addr[0] != '\0')
		stats_session_ended(s->svc->stats,
		    s->failure != STATS_REASON_NONE);
	uplink_cancel(s->uplink);
	oauth2_cancel(s->login_req);
	tls_stream_free(s->server.tls);
	tls_stream_free(s->client.tls);
	proto_local_free(s->local);
	proto_filter_free(s->filter);
	if (s->down_plain != NULL)
		evbuffer_free(s->down_plain);
	if (s->up_plain != NULL)
		evbuffer_free(s->up_plain);
	if (s->parked != NULL)
		evbuffer_free(s->parked);
	if (s->in_pool)
		s->pool.gone(s, !s->pool_aged, s->pool.arg);
	if (s->server.bev != NULL)
		bufferevent_free(s->server.bev);
	if (s->client.bev != NULL)
		bufferevent_free(s->client.bev);
	if (s->timer != NULL)
		event_free(s->timer);
	peers_release(host->peers, s->peer);
	TAILQ_REMOVE(&host->sessions, s, entry);
	host->n_sessions--;
	service_unref(s->svc);
	free(s);
	host->ended(host->arg);
}

/*
 * When the client's opening and TLS handshake must be over (local_tls):
 * handshake_timeout after it came; UINT64_MAX when nothing is due.
 */
static uint64_t
session_client_deadline(const struct session *s)
{
	if (s->client.bev == NULL || session_client_ready(s) ||
	    s->state == SESSION_CLOSING)
		return UINT64_MAX;
	return s->started_ms + (uint64_t)s->svc->cfg.handshake_timeout * 1000;
}

/*
 * When the client must have logged in: login_timeout after it connected
 * (or took a pooled connection); UINT64_MAX once it has, or without one.
 */
static uint64_t
session_login_deadline(const struct session *s)
{
	unsigned	seconds = s->svc->cfg.login_timeout;

	if (s->client.bev == NULL || seconds == 0 || s->state == SESSION_CLOSING)
		return UINT64_MAX;
	if (s->state == SESSION_RELAYING && (s->filter == NULL ||
	    proto_filter_past_login(s->filter)))
		return UINT64_MAX;
	return s->started_ms + (uint64_t)seconds * 1000;
}

/* The earliest moment the timer must look at this session. */
static uint64_t
session_deadline(const struct session *s)
{
	const struct service_config	*sc = &s->svc->cfg;
	uint64_t			 deadline = session_client_deadline(s);
	uint64_t			 idle, login;

	switch (s->state) {
	case SESSION_REACHING:
		/* The uplink bounds itself; the client's deadline, above. */
		break;
	case SESSION_PARKED:
		deadline = s->started_ms + (uint64_t)sc->pool_max_age * 1000;
		break;
	case SESSION_WAITING:
		/* The client's deadline, above. */
		break;
	case SESSION_RELAYING:
		/* Once the client has finished, the server gets less time. */
		idle = s->client.done ? sc->handshake_timeout :
		    sc->idle_timeout;
		deadline = s->active_ms + idle * 1000;
		break;
	case SESSION_CLOSING:
		/*
		 * From the close, or from the last flushing progress, but never
		 * past a cap: a peer cannot keep a closing session alive.
		 */
		deadline = (s->active_ms > s->state_ms ? s->active_ms :
		    s->state_ms) + SESSION_LINGER_MS;
		if (deadline > s->state_ms + SESSION_LINGER_MAX_MS)
			deadline = s->state_ms + SESSION_LINGER_MAX_MS;
		break;
	}
	if ((login = session_login_deadline(s)) < deadline)
		deadline = login;
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

/* The client's bytes for the relay: decrypted ones with local TLS. */
static struct evbuffer *
session_client_in(struct session *s)
{
	return s->client.tls != NULL ? tls_stream_input(s->client.tls) :
	    bufferevent_get_input(s->client.bev);
}

/* Where bytes for the client go: its socket, its TLS, or the parked buffer. */
static struct evbuffer *
session_client_out(struct session *s)
{
	if (s->client.bev == NULL)
		return s->parked;
	return s->client.tls != NULL ? tls_stream_output(s->client.tls) :
	    bufferevent_get_output(s->client.bev);
}

/* Bytes on their way to the client, encrypted or not yet. */
static size_t
session_client_pending(struct session *s)
{
	size_t	n = evbuffer_get_length(bufferevent_get_output(s->client.bev));

	if (s->client.tls != NULL)
		n += evbuffer_get_length(tls_stream_output(s->client.tls));
	return n;
}

/* Whether the client will send no more and all it sent was taken. */
static int
session_client_drained(struct session *s)
{
	return s->client.done &&
	    evbuffer_get_length(session_client_in(s)) == 0;
}

/* Encrypt what waits for the client while its socket has room. */
static int
session_client_flush(struct session *s)
{
	if (s->client.tls == NULL || s->cstate != CLIENT_SECURE)
		return 0;
	if (tls_stream_encrypt(s->client.tls, SESSION_BUF_MAX) != 0)
		return session_fail(s, STATS_REASON_CLIENT, LOG_LEVEL_WARN,
		    tls_stream_error(s->client.tls));
	return 0;
}

/* Free the session if nothing is left to flush; -1 when freed. */
static int
session_try_finish(struct session *s)
{
	/* The server side is done as soon as close_notify has left. */
	if (s->server.bev != NULL &&
	    evbuffer_get_length(bufferevent_get_output(s->server.bev)) == 0) {
		tls_stream_free(s->server.tls);
		s->server.tls = NULL;
		bufferevent_free(s->server.bev);
		s->server.bev = NULL;
	}
	if (s->client.bev != NULL && session_client_pending(s) > 0)
		return 0;
	if (s->server.bev != NULL)
		return 0;
	/* Let the client read our last bytes before it sees the close. */
	if (s->client.bev != NULL && !s->client.eof) {
		if (!s->client.shut) {
			s->client.shut = 1;
			shutdown(bufferevent_getfd(s->client.bev), SHUT_WR);
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
	int	early;		/* nothing came from the server yet */

	if (s->state == SESSION_CLOSING) {
		session_try_finish(s);
		return -1;
	}
	snprintf(s->reason, sizeof(s->reason), "%s", reason);
	if (s->failure != STATS_REASON_NONE)
		stats_failure(s->svc->stats, s->failure, reason, time(NULL));
	if (s->in_pool) {
		/*
		 * A member that waited a while before the server dropped it met
		 * the server's idle timeout, not a failure: no back-off.
		 */
		if (s->pool_ready && session_now_ms() - s->state_ms >=
		    SESSION_POOL_HEALTHY_MS)
			s->pool_aged = 1;
		/* Out of the pool at once: a closing member is never handed out. */
		s->in_pool = 0;
		s->pool.gone(s, !s->pool_aged, s->pool.arg);
	}
	early = session_before_relay(s) || s->tls_refused;
	if (s->client_failed)
		session_log(s, level, "client %s: %s", s->client_addr, reason);
	else if (s->client.bev == NULL && early)
		session_log(s, level, "pool: %s", reason);
	else if (early) {
		session_log(s, level, "cannot reach %s:%u securely: %s",
		    s->svc->cfg.remote_host, s->svc->cfg.remote_port, reason);
		/* Never a plaintext line into the client's TLS handshake. */
		if (s->client.bev != NULL && s->cstate != CLIENT_HANDSHAKING)
			proto_write_unavailable(session_client_out(s),
			    s->svc->cfg.protocol, "mailtlsd cannot reach the mail "
			    "server securely; see the mailtlsd log");
	} else
		session_log(s, level, "ending: %s", reason);
	uplink_cancel(s->uplink);
	s->uplink = NULL;
	oauth2_cancel(s->login_req);
	s->login_req = NULL;
	if (s->server.bev != NULL && s->server.broken) {
		/* Nothing can be flushed there any more. */
		tls_stream_free(s->server.tls);
		s->server.tls = NULL;
		bufferevent_free(s->server.bev);
		s->server.bev = NULL;
	} else if (s->server.bev != NULL) {
		tls_stream_close_notify(s->server.tls);
		bufferevent_disable(s->server.bev, EV_READ);
	}
	if (s->client.bev != NULL) {
		/* Discard what the client still sends until it closes. */
		evbuffer_drain(session_client_in(s),
		    evbuffer_get_length(session_client_in(s)));
		evbuffer_drain(bufferevent_get_input(s->client.bev),
		    evbuffer_get_length(bufferevent_get_input(s->client.bev)));
		if (s->client.tls != NULL && s->cstate == CLIENT_SECURE)
			tls_stream_close_notify(s->client.tls);
		bufferevent_setwatermark(s->client.bev, EV_WRITE, 0, 0);
	}
	session_set_state(s, SESSION_CLOSING);
	session_try_finish(s);
	return -1;
}

/* End the session as a failure of the class why. */
static int
session_fail(struct session *s, enum stats_reason why, enum log_level level,
    const char *reason)
{
	if (s->state != SESSION_CLOSING && s->failure == STATS_REASON_NONE)
		s->failure = why;
	return session_close(s, level, reason);
}

/* End the session for the client's doing (before relaying: no line). */
static int
session_client_close(struct session *s, enum log_level level,
    const char *reason)
{
	if (s->state != SESSION_RELAYING)
		s->client_failed = 1;
	return session_fail(s, STATS_REASON_CLIENT, level, reason);
}

/* The server finished its side: flush to the client and end. */
static int
session_server_finished(struct session *s, int how)
{
	/*
	 * Not a byte from the server (at its connection limit, or idle in a
	 * STARTTLS session before the client spoke): the client, still there,
	 * hears why instead of a bare close.
	 */
	if (s->bytes_down == 0 && s->client.bev != NULL && !s->client.done &&
	    s->cstate != CLIENT_HANDSHAKING) {
		proto_write_unavailable(session_client_out(s),
		    s->svc->cfg.protocol, "the mail server closed the "
		    "connection; see the mailtlsd log");
		return session_fail(s, STATS_REASON_SERVER, LOG_LEVEL_WARN,
		    how == TLS_CLOSED ?
		    "server closed the session before sending anything" :
		    "server closed the connection before sending anything "
		    "(without close_notify)");
	}
	/* The stream ended: an unterminated last line still goes out. */
	if (s->down_plain != NULL && s->state == SESSION_RELAYING)
		evbuffer_add_buffer(session_client_out(s), s->down_plain);
	/* The server only followed a client that had finished. */
	if (s->client.done)
		return session_close(s, LOG_LEVEL_INFO,
		    "client ended the session");
	return session_close(s, LOG_LEVEL_INFO, how == TLS_CLOSED ?
	    "server closed the session" :
	    "server closed the connection without close_notify");
}

/* ---- OAuth2 logins (services with oauth2 = NAME) ------------------------ */

/*
 * The filter takes the client's login itself; a token comes from oauth2.c
 * (which may unlock the token file, refresh, or start an authorisation)
 * and goes to the server as XOAUTH2 or OAUTHBEARER.  A server that refuses
 * a token gets one refreshed token within the same login.
 */

/* The end of an oauth2_login(): send the token, or answer the client. */
static void
session_login_cb(enum oauth2_result result, const char *token,
    const char *client_text, const char *log_text, void *arg)
{
	struct session	*s = arg;
	int		 temporary = 0, alert = 0;
	enum log_level	 level = LOG_LEVEL_INFO;

	s->login_req = NULL;
	if (s->state != SESSION_RELAYING || s->filter == NULL)
		session_bad_state(s, "oauth2 login answer");
	switch (result) {
	case OAUTH2_TOKEN:
		session_log(s, LOG_LEVEL_DEBUG, "oauth2: access token ready, "
		    "logging in to the server");
		if (proto_filter_login_token(s->filter, token, s->up_plain) == 0) {
			session_pump_up(s);
			return;
		}
		if (proto_filter_failed(s->filter)) {
			session_filter_failed(s, STATS_REASON_OTHER);
			return;
		}
		/* A token the filter cannot send (not visible ASCII). */
		temporary = 1;
		level = LOG_LEVEL_WARN;
		client_text = "mailtlsd: the provider gave an access token "
		    "that cannot be sent; see mailtlsd's log";
		log_text = "the provider's access token cannot be sent in "
		    "SASL (empty, too long or not visible ASCII)";
		break;
	case OAUTH2_AUTHORISE:
		temporary = alert = 1;		/* try again once authorised */
		break;
	case OAUTH2_REFUSED:
		alert = 1;
		level = LOG_LEVEL_WARN;
		break;
	case OAUTH2_TEMPORARY:
		temporary = 1;
		level = LOG_LEVEL_WARN;
		break;
	case OAUTH2_WRONG_PASSWORD:
		level = LOG_LEVEL_WARN;
		break;
	}
	session_log(s, level, "login refused: %s", log_text);
	if (proto_filter_login_refuse(s->filter, temporary, alert, client_text,
	    session_client_out(s)) != 0) {
		session_fail(s, STATS_REASON_OTHER, LOG_LEVEL_ERROR,
		    "out of memory");
		return;
	}
	/* The client may try again, or have sent its next command. */
	session_pump_up(s);
}

/* Ask oauth2.c for a token for the login the filter holds; 0 or -1. */
static int
session_login_request(struct session *s, int refresh)
{
	const char	*user, *password;
	size_t		 pwlen;

	if (s->host->oauth2 == NULL)
		session_bad_state(s, "oauth2 login without accounts");
	proto_filter_login_credentials(s->filter, &user, &password, &pwlen);
	s->login_req = oauth2_login(s->host->oauth2, s->svc->cfg.oauth2, user,
	    password, pwlen, refresh, session_login_cb, s);
	if (s->login_req == NULL)
		return session_fail(s, STATS_REASON_OTHER, LOG_LEVEL_ERROR,
		    "out of memory");
	return 0;
}

/* What the filter's login needs next; 0, or -1 when the session ended. */
static int
session_login_step(struct session *s)
{
	char		 text[512];
	const char	*explained;

	if (s->login_req != NULL)
		return 0;		/* waiting for oauth2.c */
	switch (proto_filter_login(s->filter)) {
	case PROTO_LOGIN_WANTED:
		s->login_retried = 0;
		return session_login_request(s, 0);
	case PROTO_LOGIN_REJECTED:
		if (!s->login_retried) {
			s->login_retried = 1;
			session_log(s, LOG_LEVEL_INFO, "oauth2: the server "
			    "refused the access token (%s): refreshing it once",
			    proto_filter_login_error(s->filter));
			return session_login_request(s, 1);
		}
		explained = oauth2_explain_server_error(
		    proto_filter_login_error(s->filter));
		if (explained != NULL)
			snprintf(text, sizeof(text), "%s", explained);
		else
			snprintf(text, sizeof(text), "mailtlsd: the server "
			    "refused the login: %s",
			    proto_filter_login_error(s->filter));
		session_log(s, LOG_LEVEL_WARN, "login refused by the server: "
		    "%s", proto_filter_login_error(s->filter));
		/* [ALERT] only for what the user can act on. */
		if (proto_filter_login_refuse(s->filter, 0, explained != NULL,
		    text, session_client_out(s)) != 0)
			return session_fail(s, STATS_REASON_OTHER,
			    LOG_LEVEL_ERROR, "out of memory");
		return session_client_flush(s);
	default:
		return 0;
	}
}

/*
 * The server refused a login that passed through the filter (a service
 * without oauth2): the log says so, with what to change when mailtlsd
 * knows, and the filter adds the same words to the client's answer where
 * the protocol has room.  A wrong password is the client's everyday
 * business (info); a server that wants another kind of login needs its
 * user or administrator (warning).
 */
static const char *
session_login_refused(const char *server_text, void *arg)
{
	struct session	*s = arg;
	const char	*explained = oauth2_explain_server_error(server_text);

	if (explained != NULL)
		session_log(s, LOG_LEVEL_WARN, "login refused by the server: "
		    "%s; %s", server_text, explained);
	else
		session_log(s, LOG_LEVEL_INFO, "login refused by the server: "
		    "%s", server_text);
	return explained;
}

/* The client has logged in: the relay becomes a plain copy. */
static void
session_filter_done(struct session *s)
{
	session_log(s, LOG_LEVEL_DEBUG, "client logged in: plain relay");
	evbuffer_add_buffer(session_client_out(s), s->down_plain);
	evbuffer_prepend_buffer(session_client_in(s), s->up_plain);
	proto_filter_free(s->filter);
	s->filter = NULL;
	evbuffer_free(s->down_plain);
	s->down_plain = NULL;
	evbuffer_free(s->up_plain);
	s->up_plain = NULL;
}

/*
 * The filter found a protocol violation (by the client, or by the
 * server: who): tell the client, then end.
 */
static int
session_filter_failed(struct session *s, enum stats_reason who)
{
	/* Before login the client's output always ends at a line boundary. */
	proto_write_unavailable(session_client_out(s),
	    s->svc->cfg.protocol, "mailtlsd ended the session: protocol "
	    "error before login; see the mailtlsd log");
	return session_fail(s, who, LOG_LEVEL_WARN,
	    proto_filter_reason(s->filter));
}

/* Run the server's bytes through the filter; -1 when the session ended. */
static int
session_filter_down(struct session *s)
{
	if (proto_filter_server(s->filter, s->down_plain,
	    session_client_out(s)) != 0)
		return session_filter_failed(s, STATS_REASON_SERVER);
	if (proto_filter_done(s->filter))
		session_filter_done(s);
	else if (session_login_step(s) != 0)
		return -1;
	/*
	 * The filter holds client bytes whose meaning waited for this, or
	 * wrote the next step of an OAuth2 login for the server.
	 */
	if (s->client.bev != NULL &&
	    (evbuffer_get_length(session_client_in(s)) > 0 ||
	    (s->up_plain != NULL && evbuffer_get_length(s->up_plain) > 0)))
		return session_pump_up(s);
	return 0;
}

/* Move decrypted server bytes to the client while it has room. */
static int
session_pump_down(struct session *s)
{
	struct evbuffer	*out = session_client_out(s);
	struct evbuffer	*in = tls_stream_input(s->server.tls);
	struct evbuffer	*dst;
	size_t		 n;
	int		 r = TLS_WANT;

	for (;;) {
		if (s->client.bev != NULL && session_client_flush(s) != 0)
			return -1;
		if (evbuffer_get_length(out) >= SESSION_BUF_MAX)
			break;
		r = tls_stream_decrypt(s->server.tls, SESSION_CHUNK);
		if ((n = evbuffer_get_length(in)) == 0)
			break;
		/* Before login the filter sees the bytes first. */
		dst = s->filter != NULL ? s->down_plain : out;
		if (evbuffer_add_buffer(dst, in) != 0)
			return session_fail(s, STATS_REASON_OTHER, LOG_LEVEL_ERROR,
			    "out of memory");
		s->bytes_down += (unsigned long long)n;
		stats_bytes(s->svc->stats, 0, n);
		if (s->filter != NULL && session_filter_down(s) != 0)
			return -1;
	}
	if (s->client.bev != NULL && session_client_flush(s) != 0)
		return -1;
	if (evbuffer_get_length(out) >= SESSION_BUF_MAX)
		return 0;	/* resumed by session_client_write_cb */
	switch (r) {
	case TLS_WANT:
		return 0;
	case TLS_CLOSED:
	case TLS_EOF:
		return session_server_finished(s, r);
	default:
		/*
		 * A TLS 1.3 server judges the client certificate after the
		 * handshake and refuses with an alert on the first read:
		 * before its first byte, that still cannot reach it securely.
		 */
		s->tls_refused = s->bytes_down == 0;
		return session_fail(s, s->tls_refused ?
		    STATS_REASON_TLS_HANDSHAKE : STATS_REASON_SERVER,
		    LOG_LEVEL_WARN, tls_stream_error(s->server.tls));
	}
}

/* The client finished sending: say so to the server, keep listening. */
static void
session_client_finished(struct session *s)
{
	struct evbuffer	*out = bufferevent_get_output(s->server.bev);

	tls_stream_close_notify(s->server.tls);
	if (!s->server.shut && evbuffer_get_length(out) == 0) {
		s->server.shut = 1;
		shutdown(bufferevent_getfd(s->server.bev), SHUT_WR);
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
	if (proto_filter_client(s->filter, session_client_in(s), s->up_plain,
	    session_client_out(s)) != 0)
		return session_filter_failed(s, STATS_REASON_CLIENT);
	if (proto_filter_refused(s->filter) > 0 && !s->starttls_logged) {
		/* Once: a client that insists repeats it on every connect. */
		s->starttls_logged = 1;
		session_log(s, LOG_LEVEL_INFO, "client STARTTLS refused: "
		    "mailtlsd already uses TLS to the server; set the "
		    "client's connection security to none, or give the "
		    "service local_tls = starttls");
	}
	if (proto_filter_done(s->filter))
		session_filter_done(s);
	else if (session_login_step(s) != 0)
		return -1;
	return 0;
}

/*
 * Decrypt the client's records (local TLS): 1 when some bytes came, 0
 * when none, -1 when the session ended.
 */
static int
session_client_decrypt(struct session *s)
{
	struct evbuffer	*in;
	size_t		 before;
	char		 reason[300];

	if (s->client.tls == NULL || s->client.done)
		return 0;
	in = tls_stream_input(s->client.tls);
	before = evbuffer_get_length(in);
	switch (tls_stream_decrypt(s->client.tls, SESSION_BUF_MAX)) {
	case TLS_WANT:
		break;
	case TLS_CLOSED:
	case TLS_EOF:
		s->client.done = 1;	/* close_notify, or just the end */
		break;
	default:
		snprintf(reason, sizeof(reason), "client TLS: %s",
		    tls_stream_error(s->client.tls));
		return session_fail(s, STATS_REASON_CLIENT, LOG_LEVEL_WARN,
		    reason);
	}
	return evbuffer_get_length(in) > before;
}

/*
 * Encrypt plaintext from in for the server while its socket has room, one
 * record's worth at a time; 0, or -1 when the session ended.
 */
static int
session_server_send(struct session *s, struct evbuffer *in)
{
	struct evbuffer	*plain = tls_stream_output(s->server.tls);
	struct evbuffer	*raw = bufferevent_get_output(s->server.bev);
	size_t		 n;

	for (;;) {
		if (tls_stream_encrypt(s->server.tls, SESSION_BUF_MAX) != 0)
			return session_fail(s, STATS_REASON_SERVER,
			    LOG_LEVEL_WARN, tls_stream_error(s->server.tls));
		if (evbuffer_get_length(plain) > 0 ||
		    evbuffer_get_length(in) == 0 ||
		    evbuffer_get_length(raw) >= SESSION_BUF_MAX)
			return 0;
		n = evbuffer_get_length(in);
		if (n > SESSION_CHUNK)
			n = SESSION_CHUNK;
		if (evbuffer_remove_buffer(in, plain, n) != (int)n)
			return session_fail(s, STATS_REASON_OTHER, LOG_LEVEL_ERROR,
			    "out of memory");
		s->bytes_up += (unsigned long long)n;
		stats_bytes(s->svc->stats, n, 0);
	}
}

/* Move the client's bytes to the server while it has room. */
static int
session_pump_up(struct session *s)
{
	struct evbuffer	*in;
	struct evbuffer	*raw = bufferevent_get_output(s->server.bev);
	int		 more;

	/* Plaintext from the client: all it sent, not 4 KiB per event. */
	if (s->client.tls == NULL && s->client.bev != NULL)
		(void)readahead_fill(s->client.bev, SESSION_BUF_MAX);
	do {
		/* With local TLS, go on while decrypting yields bytes. */
		if ((more = session_client_decrypt(s)) < 0)
			return -1;
		if (s->filter != NULL && session_filter_up(s) != 0)
			return -1;
		in = s->filter != NULL ? s->up_plain : session_client_in(s);
		if (session_server_send(s, in) != 0)
			return -1;
	} while (more && evbuffer_get_length(raw) < SESSION_BUF_MAX);
	/* Nobody waits for an OAuth2 login's end: no token goes out. */
	if (s->filter != NULL && session_client_drained(s) &&
	    proto_filter_login(s->filter) != PROTO_LOGIN_NONE)
		return session_close(s, LOG_LEVEL_INFO, "client ended the "
		    "session during its login");
	if (evbuffer_get_length(in) == 0 &&
	    evbuffer_get_length(tls_stream_output(s->server.tls)) == 0 &&
	    session_client_drained(s))
		session_client_finished(s);
	/* The filter may have answered the client itself. */
	return session_client_flush(s);
}

/*
 * What the client sees first: the greeting a pooled connection kept, or
 * mailtlsd's own after STARTTLS to the server (whose plaintext greeting was
 * never trustworthy) -- unless the local STARTTLS opening greeted the
 * client already.  0 or -1.
 */
static int
session_greet(struct session *s)
{
	const struct service_config	*sc = &s->svc->cfg;
	struct evbuffer			*out = session_client_out(s);
	int				 greeted;

	greeted = sc->local_tls == LOCAL_TLS_STARTTLS;
	if (s->parked != NULL) {
		if (greeted)
			evbuffer_drain(s->parked,
			    evbuffer_get_length(s->parked));
		else if (evbuffer_add_buffer(out, s->parked) != 0)
			return -1;
		evbuffer_free(s->parked);
		s->parked = NULL;
	}
	if (sc->tls == TLS_MODE_STARTTLS && !greeted)
		return proto_write_greeting(out, sc);
	return 0;
}

/* Greet the client and start relaying, once its side is ready too. */
static int
session_relay(struct session *s)
{
	if (!session_client_ready(s)) {
		session_set_state(s, SESSION_WAITING);
		return 0;
	}
	if (session_greet(s) != 0)
		return session_fail(s, STATS_REASON_OTHER, LOG_LEVEL_ERROR,
		    "out of memory");
	session_set_state(s, SESSION_RELAYING);
	/* What arrived meanwhile, both ways. */
	return session_pump_down(s) == 0 ? session_pump_up(s) : -1;
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
		return session_fail(s, STATS_REASON_SERVER, LOG_LEVEL_INFO,
		    "server sent data while the connection waited in the "
		    "pool");
	if (greeted == 1 && !s->pool_ready) {
		s->pool_ready = 1;
		session_log(s, LOG_LEVEL_DEBUG, "ready in the pool");
		s->pool.ready(s, s->pool.arg);
	}
	return 0;
}

/* A pool member finished TLS: wait for a client. */
static int
session_park(struct session *s)
{
	if ((s->parked = evbuffer_new()) == NULL)
		return session_fail(s, STATS_REASON_OTHER, LOG_LEVEL_ERROR,
		    "out of memory");
	session_set_state(s, SESSION_PARKED);
	/* The greeting may have come with the handshake. */
	return session_pump_down(s) == 0 ? session_parked_check(s) : -1;
}

/* TLS is up and verified: start relaying. */
static int
session_start_relay(struct session *s)
{
	const struct service_config	*sc = &s->svc->cfg;

	session_log(s, LOG_LEVEL_INFO, "connected to %s with %s, %s%s",
	    s->server_addr, tls_stream_version(s->server.tls),
	    tls_stream_ciphersuite(s->server.tls),
	    tls_stream_resumed(s->server.tls) ? ", resumed" : "");
	/* Until login, capabilities reach the client as they are after TLS. */
	s->filter = proto_filter_new(sc->protocol);
	s->down_plain = evbuffer_new();
	s->up_plain = evbuffer_new();
	if (s->filter == NULL || s->down_plain == NULL || s->up_plain == NULL)
		return session_fail(s, STATS_REASON_OTHER, LOG_LEVEL_ERROR,
		    "out of memory");
	if (sc->oauth2[0] != '\0' && proto_filter_use_oauth2(s->filter) != 0)
		return session_fail(s, STATS_REASON_OTHER, LOG_LEVEL_ERROR,
		    "out of memory");
	if (sc->oauth2[0] == '\0')
		proto_filter_on_refusal(s->filter, session_login_refused, s);
	/* After the local STARTTLS the client has had its greeting. */
	if (sc->tls == TLS_MODE_IMPLICIT && s->client.bev != NULL &&
	    sc->local_tls == LOCAL_TLS_STARTTLS)
		proto_filter_drop_greeting(s->filter);
	else if (sc->tls == TLS_MODE_IMPLICIT)
		proto_filter_expect_greeting(s->filter);
	if (s->client.bev == NULL)
		return session_park(s);
	return session_relay(s);
}

/* Mark traffic for the idle timeout. */
static void
session_touch(struct session *s)
{
	s->active_ms = session_now_ms();
}

/*
 * Take what arrived from the server (records, or the end): a parked member
 * checks it is still only greeted, a relay passes it on; while WAITING it
 * stays until the client's TLS is up.
 */
static void
session_server_input(struct session *s)
{
	switch (s->state) {
	case SESSION_REACHING:		/* the socket is the uplink's */
	case SESSION_CLOSING:		/* reading is off */
		session_bad_state(s, "server input");
	case SESSION_PARKED:
		if (session_pump_down(s) == 0)
			session_parked_check(s);
		return;
	case SESSION_RELAYING:
		session_pump_down(s);
		return;
	case SESSION_WAITING:
		return;
	}
}

/* Bytes (TLS records) arrived from the server. */
static void
session_server_read_cb(struct bufferevent *bev, void *arg)
{
	struct session	*s = arg;

	(void)bev;
	session_touch(s);
	session_server_input(s);
}

/* The server's output buffer drained below its low-water mark. */
static void
session_server_write_cb(struct bufferevent *bev, void *arg)
{
	struct session	*s = arg;

	session_touch(s);
	switch (s->state) {
	case SESSION_REACHING:
		session_bad_state(s, "server write");
	case SESSION_PARKED:
	case SESSION_WAITING:
		return;		/* nothing was written yet */
	case SESSION_CLOSING:
		session_try_finish(s);
		return;
	case SESSION_RELAYING:
		if (session_client_drained(s) && !s->server.shut &&
		    evbuffer_get_length(tls_stream_output(s->server.tls)) ==
		    0 && evbuffer_get_length(bufferevent_get_output(bev)) ==
		    0) {
			s->server.shut = 1;
			shutdown(bufferevent_getfd(bev), SHUT_WR);
		}
		session_pump_up(s);
		return;
	}
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
		tls_stream_free(s->server.tls);
		s->server.tls = NULL;
		bufferevent_free(s->server.bev);
		s->server.bev = NULL;
		session_try_finish(s);
		return;
	}
	s->server.eof = 1;
	tls_stream_set_eof(s->server.tls);
	if ((what & BEV_EVENT_ERROR) && session_before_relay(s)) {
		s->server.broken = 1;
		snprintf(reason, sizeof(reason), "%s %s with %s",
		    evutil_socket_error_to_string(err),
		    s->state == SESSION_WAITING ? "during the wait for the "
		    "client's TLS" : "while waiting in the pool",
		    s->server_addr);
		session_fail(s, STATS_REASON_SERVER, LOG_LEVEL_WARN, reason);
		return;
	}
	/* Records already received still go to the client. */
	if (what & BEV_EVENT_ERROR)
		s->server.broken = 1;
	session_server_input(s);
}

/* Count the verified handshake with the server in the service's stats. */
static void
session_count_handshake(struct session *s, double seconds)
{
	struct tls_stream	*ts = s->server.tls;
	struct stats_tls	 tls = {
		.seconds = seconds,
		.version = tls_stream_version(ts),
		.suite = tls_stream_ciphersuite(ts),
		.resumed = tls_stream_resumed(ts),
		.chain_expires = tls_conn_chain_expires(tls_stream_conn(ts)),
	};

	stats_handshake(s->svc->stats, &tls, time(NULL));
}

/* The uplink is up: TLS to the server verified.  Relay, or park. */
static void
session_uplink_ready(struct uplink *u, void *arg)
{
	struct session	*s = arg;
	struct side	*srv = &s->server;

	s->uplink = NULL;
	srv->eof = uplink_take(u, &srv->bev, &srv->tls);
	snprintf(s->server_addr, sizeof(s->server_addr), "%s",
	    uplink_peer(u));
	session_count_handshake(s, uplink_handshake_seconds(u));
	bufferevent_setcb(srv->bev, session_server_read_cb,
	    session_server_write_cb, session_server_event_cb, s);
	bufferevent_setwatermark(srv->bev, EV_READ, 0, SESSION_BUF_MAX);
	session_tune_io(srv->bev);
	bufferevent_setwatermark(srv->bev, EV_WRITE, SESSION_BUF_MAX / 2, 0);
	session_start_relay(s);
}

/* The server could not be reached securely. */
static void
session_uplink_failed(struct uplink *u, const char *reason, void *arg)
{
	struct session	*s = arg;

	s->uplink = NULL;
	session_fail(s, uplink_failure(u), LOG_LEVEL_WARN, reason);
}

/* The uplink's steps, for the debug log. */
static void
session_uplink_trace(enum uplink_trace what, const char *text, size_t len,
    void *arg)
{
	struct session	*s = arg;

	switch (what) {
	case UPLINK_TRACE_STEP:
		session_log(s, LOG_LEVEL_DEBUG, "%.*s", (int)len, text);
		break;
	case UPLINK_TRACE_RECEIVED:
		session_log(s, LOG_LEVEL_DEBUG, "STARTTLS dialogue: server line "
		    "of %zu bytes", len);
		break;
	case UPLINK_TRACE_DIALOGUE:
	case UPLINK_TRACE_HANDSHAKE:
		session_log(s, LOG_LEVEL_DEBUG, "uplink: %.*s", (int)len, text);
		break;
	case UPLINK_TRACE_SENT:
		break;
	}
}

/* Drive the client's TLS handshake with what has arrived. */
static int
session_client_handshake(struct session *s)
{
	char	reason[300];

	switch (tls_stream_handshake(s->client.tls)) {
	case 0:
		return 0;
	case 1:
		break;
	default:
		snprintf(reason, sizeof(reason), "TLS handshake failed: %s",
		    tls_stream_error(s->client.tls));
		return session_client_close(s, LOG_LEVEL_WARN, reason);
	}
	session_log(s, LOG_LEVEL_INFO, "client %s: TLS with %s, %s",
	    s->client_addr, tls_stream_version(s->client.tls),
	    tls_stream_ciphersuite(s->client.tls));
	session_set_client_state(s, CLIENT_SECURE);
	if (s->state == SESSION_WAITING)
		return session_relay(s);
	return 0;	/* the server side calls session_relay() */
}

/* Start TLS with the client: from its first byte, or after STARTTLS. */
static int
session_client_begin_tls(struct session *s)
{
	s->client.tls = tls_accept(s->svc->local_tls_ctx, s->client.bev);
	if (s->client.tls == NULL)
		return session_fail(s, STATS_REASON_OTHER, LOG_LEVEL_ERROR, "out of memory for "
		    "the client's TLS");
	session_set_client_state(s, CLIENT_HANDSHAKING);
	return session_client_handshake(s);
}

/* mailtlsd's own plaintext opening, up to the client's STARTTLS. */
static int
session_local_opening(struct session *s)
{
	struct evbuffer	*in = bufferevent_get_input(s->client.bev);

	switch (proto_local_input(s->local, in,
	    bufferevent_get_output(s->client.bev))) {
	case PROTO_LOCAL_MORE:
		return 0;
	case PROTO_LOCAL_QUIT:
		return session_client_close(s, LOG_LEVEL_INFO,
		    proto_local_reason(s->local));
	case PROTO_LOCAL_FAIL:
		return session_client_close(s, LOG_LEVEL_WARN,
		    proto_local_reason(s->local));
	case PROTO_LOCAL_UPGRADE:
		break;
	}
	/* Bytes after the STARTTLS line were not sent by the client's TLS. */
	if (evbuffer_get_length(in) > 0)
		return session_client_close(s, LOG_LEVEL_WARN, "data injected "
		    "after the client's STARTTLS, before its TLS handshake");
	proto_local_free(s->local);
	s->local = NULL;
	return session_client_begin_tls(s);
}

/* Bytes arrived from the mail client. */
static void
session_client_read_cb(struct bufferevent *bev, void *arg)
{
	struct session	*s = arg;
	struct evbuffer	*in = bufferevent_get_input(bev);

	if (s->state == SESSION_CLOSING) {
		/* Discarded: no sign of life that could hold the close off. */
		evbuffer_drain(in, evbuffer_get_length(in));
		return;
	}
	session_touch(s);
	switch (s->cstate) {
	case CLIENT_OPENING:
		session_local_opening(s);
		return;
	case CLIENT_HANDSHAKING:
		session_client_handshake(s);
		return;
	case CLIENT_PLAIN:
	case CLIENT_SECURE:
		break;
	}
	switch (s->state) {
	case SESSION_PARKED:		/* no client yet */
	case SESSION_CLOSING:		/* handled above */
		session_bad_state(s, "client read");
	case SESSION_REACHING:
	case SESSION_WAITING:
		return;	/* the bytes wait: nothing goes out unencrypted */
	case SESSION_RELAYING:
		session_pump_up(s);
		return;
	}
}

/* The client's output buffer drained below its low-water mark. */
static void
session_client_write_cb(struct bufferevent *bev, void *arg)
{
	struct session	*s = arg;

	(void)bev;
	session_touch(s);
	switch (s->state) {
	case SESSION_PARKED:
		session_bad_state(s, "client write");
	case SESSION_REACHING:
	case SESSION_WAITING:
		return;		/* the opening or the handshake wrote */
	case SESSION_RELAYING:
		/* Client commands may have waited for the client to read. */
		if (session_pump_down(s) == 0 && s->filter != NULL)
			session_pump_up(s);
		return;
	case SESSION_CLOSING:
		session_try_finish(s);
		return;
	}
}

/* The client closed or failed. */
static void
session_client_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct session	*s = arg;

	(void)bev;
	if (what & BEV_EVENT_ERROR) {
		/* A reset client can be sent nothing more. */
		tls_stream_free(s->client.tls);
		s->client.tls = NULL;
		bufferevent_free(s->client.bev);
		s->client.bev = NULL;
		session_fail(s, session_before_relay(s) ? STATS_REASON_CLIENT :
		    STATS_REASON_NONE, LOG_LEVEL_INFO,
		    "client connection reset");
		return;
	}
	s->client.eof = 1;
	if (s->client.tls != NULL)
		tls_stream_set_eof(s->client.tls);	/* done at its last record */
	else
		s->client.done = 1;
	switch (s->state) {
	case SESSION_RELAYING:
		session_pump_up(s);
		return;
	case SESSION_CLOSING:
		session_try_finish(s);
		return;
	case SESSION_PARKED:
		session_bad_state(s, "client event");
	case SESSION_REACHING:
	case SESSION_WAITING:
		if (s->cstate == CLIENT_PLAIN)
			session_fail(s, STATS_REASON_CLIENT, LOG_LEVEL_INFO,
			    "client left before the server was reached");
		else
			session_client_close(s, LOG_LEVEL_INFO,
			    s->cstate == CLIENT_OPENING ? "left before "
			    "STARTTLS" : s->cstate == CLIENT_HANDSHAKING ?
			    "left during the TLS handshake" : "left before "
			    "the server was reached");
		return;
	}
}

/* The client did not log in within login_timeout: say so and end. */
static void
session_login_expired(struct session *s)
{
	char	text[80], reason[80];

	snprintf(text, sizeof(text), "mailtlsd: no login within %u seconds",
	    s->svc->cfg.login_timeout);
	/* Never a plaintext line into the client's TLS handshake. */
	if (s->cstate != CLIENT_HANDSHAKING)
		proto_write_login_timeout(session_client_out(s),
		    s->svc->cfg.protocol, text);
	snprintf(reason, sizeof(reason), "no login within login_timeout "
	    "(%u s)", s->svc->cfg.login_timeout);
	session_client_close(s, LOG_LEVEL_WARN, reason);
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
	if (now >= session_client_deadline(s)) {
		if (s->cstate != CLIENT_OPENING) {
			session_client_close(s, LOG_LEVEL_WARN,
			    "TLS handshake timed out");
			return;
		}
		/* Still plaintext, between whole lines: say why. */
		proto_write_unavailable(session_client_out(s),
		    s->svc->cfg.protocol, "no STARTTLS in time; mailtlsd "
		    "takes mail only over TLS");
		session_client_close(s, LOG_LEVEL_WARN, "no STARTTLS within "
		    "handshake_timeout");
		return;
	}
	if (now >= session_login_deadline(s)) {
		session_login_expired(s);
		return;
	}
	switch (s->state) {
	case SESSION_RELAYING:
		session_close(s, LOG_LEVEL_INFO, s->client.done ?
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
	case SESSION_REACHING:
	case SESSION_WAITING:
		break;		/* the uplink's, or the client's deadline */
	}
}

/* Whether max_sessions leaves room for one more session. */
int
session_host_may_accept(const struct session_host *host)
{
	return host->n_sessions < host->max_sessions;
}

/* Whether the client's address holds fewer sessions than its limit. */
int
session_host_may_accept_client(const struct session_host *host,
    const struct sockaddr *sa)
{
	return host->max_per_client == 0 ||
	    peers_count(host->peers, sa) < host->max_per_client;
}

/* A new session in the host's list, without sockets yet. */
static struct session *
session_new(struct session_host *host, struct service *svc)
{
	struct session	*s;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->host = host;
	s->svc = service_ref(svc);
	s->id = ++host->next_id;
	s->started_ms = session_now_ms();
	s->state_ms = s->active_ms = s->started_ms;
	snprintf(s->reason, sizeof(s->reason), "out of memory");
	TAILQ_INSERT_TAIL(&host->sessions, s, entry);
	host->n_sessions++;
	if ((s->timer = evtimer_new(host->base, session_timer_cb, s)) ==
	    NULL) {
		session_free(s);
		return NULL;
	}
	return s;
}

/* local_tls: greet and offer STARTTLS, or expect a ClientHello.  0, -1. */
static int
session_setup_local(struct session *s)
{
	const struct service_config	*sc = &s->svc->cfg;

	switch (sc->local_tls) {
	case LOCAL_TLS_NONE:
		s->cstate = CLIENT_PLAIN;
		return 0;
	case LOCAL_TLS_STARTTLS:
		s->cstate = CLIENT_OPENING;
		if ((s->local = proto_local_new(sc)) == NULL ||
		    proto_local_greeting(s->local,
		    bufferevent_get_output(s->client.bev)) != 0)
			return -1;
		return 0;
	case LOCAL_TLS_IMPLICIT:
		s->cstate = CLIENT_HANDSHAKING;
		s->client.tls = tls_accept(s->svc->local_tls_ctx, s->client.bev);
		return s->client.tls != NULL ? 0 : -1;
	}
	return -1;
}

/* Give the session its client socket; 0, or -1 (fd closed). */
static int
session_setup_client(struct session *s, int fd, const struct sockaddr *sa)
{
	addr_format(sa, s->client_addr, sizeof(s->client_addr));
	/* Without a bufferevent the fd stays the caller's, to refuse. */
	if ((s->peer = peers_add(s->host->peers, sa)) == NULL)
		return -1;
	s->client.bev = bufferevent_socket_new(s->host->base, fd,
	    BEV_OPT_CLOSE_ON_FREE);
	if (s->client.bev == NULL)
		return -1;
	bufferevent_setcb(s->client.bev, session_client_read_cb,
	    session_client_write_cb, session_client_event_cb, s);
	bufferevent_setwatermark(s->client.bev, EV_READ, 0, SESSION_BUF_MAX);
	session_tune_io(s->client.bev);
	bufferevent_setwatermark(s->client.bev, EV_WRITE, SESSION_BUF_MAX / 2, 0);
	if (bufferevent_enable(s->client.bev, EV_READ) != 0)
		return -1;
	return session_setup_local(s);
}

/* Start reaching the service's server. */
static int
session_connect(struct session *s)
{
	struct uplink_callbacks	cb = {
		.ready = session_uplink_ready,
		.failed = session_uplink_failed,
		.arg = s,
	};

	/* Each step in the debug log; nothing is formatted otherwise. */
	if (log_enabled(LOG_LEVEL_DEBUG))
		cb.trace = session_uplink_trace;
	s->uplink = uplink_start(s->host->base, s->host->dns, &s->svc->cfg,
	    s->svc->tls, &cb);
	return s->uplink != NULL ? 0 : -1;
}

/* Take over an accepted client and start reaching the server. */
int
session_start(struct session_host *host, struct service *svc, int fd,
    const struct sockaddr *sa, socklen_t salen)
{
	struct session	*s;

	(void)salen;
	if ((s = session_new(host, svc)) == NULL)
		return -1;	/* the caller refuses the client */
	if (session_setup_client(s, fd, sa) != 0) {
		if (s->client.bev == NULL) {
			session_free(s);
			return -1;
		}
		/* The client's socket is ours now: it gets the error line. */
		session_fail(s, STATS_REASON_OTHER, LOG_LEVEL_ERROR,
		    "out of memory");
		return 0;
	}
	if (session_connect(s) != 0) {
		session_fail(s, STATS_REASON_OTHER, LOG_LEVEL_ERROR,
		    "out of memory");
		return 0;
	}
	/* The client's deadlines run while the uplink reaches the server. */
	session_arm_timer(s);
	stats_session_started(svc->stats);
	session_log(s, LOG_LEVEL_INFO, "client %s, connecting to %s:%u",
	    s->client_addr, svc->cfg.remote_host, svc->cfg.remote_port);
	return 0;
}

/* A pool member: a session that connects before any client comes. */
struct session *
session_start_pooled(struct session_host *host, struct service *svc,
    const struct session_pool_cb *pool)
{
	struct session	*s;

	if ((s = session_new(host, svc)) == NULL)
		return NULL;
	if (session_connect(s) != 0) {
		session_free(s);
		return NULL;
	}
	s->pool = *pool;	/* from now on the pool hears of its end */
	s->in_pool = 1;
	session_log(s, LOG_LEVEL_DEBUG, "pool: connecting to %s:%u",
	    svc->cfg.remote_host, svc->cfg.remote_port);
	return s;
}

/* Give a ready pool member its client: greet it once its side is ready. */
int
session_attach(struct session *s, int fd, const struct sockaddr *sa,
    socklen_t salen)
{
	(void)salen;
	s->in_pool = 0;		/* taken: used by this client only, ever */
	s->started_ms = session_now_ms();
	if (session_setup_client(s, fd, sa) != 0) {
		int	fd_is_callers = s->client.bev == NULL;

		session_fail(s, STATS_REASON_OTHER, LOG_LEVEL_ERROR,
		    "out of memory");
		return fd_is_callers ? -1 : 0;
	}
	stats_session_started(s->svc->stats);
	session_log(s, LOG_LEVEL_INFO, "client %s, pooled connection to %s",
	    s->client_addr, s->server_addr);
	/*
	 * The greeting kept in s->parked goes out with session_greet().  The
	 * client's socket belongs to the session now: if relaying fails, the
	 * session has already closed it with the error line.
	 */
	(void)session_relay(s);
	return 0;
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

/* Where a live session stands, for the gauges. */
static enum stats_phase
session_phase(const struct session *s)
{
	if (s->client_addr[0] == '\0')
		return STATS_PHASE_POOL;
	switch (s->state) {
	case SESSION_REACHING:
	case SESSION_PARKED:
	case SESSION_WAITING:
		return STATS_PHASE_REACHING;
	case SESSION_RELAYING:
		return s->filter != NULL && !proto_filter_past_login(s->filter) ?
		    STATS_PHASE_LOGIN : STATS_PHASE_RELAYING;
	case SESSION_CLOSING:
		break;
	}
	return STATS_PHASE_CLOSING;
}

/* What the status shows of a session. */
void
session_get_info(const struct session *s, struct session_info *info)
{
	info->id = s->id;
	info->svc = s->svc;
	info->client = s->client_addr;
	info->state = session_state_names[s->state];
	info->phase = session_phase(s);
	info->age = (double)(session_now_ms() - s->started_ms) / 1000.0;
	info->bytes_up = s->bytes_up;
	info->bytes_down = s->bytes_down;
}

/* The next session in the runtime's list. */
struct session *
session_next(struct session *s)
{
	return TAILQ_NEXT(s, entry);
}
