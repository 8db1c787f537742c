/*
 * uplink.c - reach a service's mail server securely (see uplink.h).
 *
 *   CONNECTING -> [DIALOGUE] -> HANDSHAKING -> DONE
 *
 * CONNECTING is upstream.c's: resolving and each address's TCP connect,
 * bounded by connect_timeout.  DIALOGUE is the plaintext STARTTLS step
 * (tls = starttls), spoken by mailtlsd itself one server line at a time
 * through proto.h; nothing the server says there goes anywhere else.  After
 * the go-ahead, bytes already received are an injection: fail.  The
 * handshake verifies the chain, the name and the pins (tls.c).  One timer
 * bounds DIALOGUE and HANDSHAKING together by handshake_timeout.  Every
 * end goes through uplink_finish(), which calls back once and frees; a
 * failure carries its reason class (stats.h), decided here where it is
 * found.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

#include "config.h"
#include "log.h"
#include "proto.h"
#include "stats.h"
#include "tls.h"
#include "tlsstream.h"
#include "uplink.h"
#include "upstream.h"

#define UPLINK_BUF_MAX		(64 * 1024)	/* input read ahead */

enum uplink_state {
	UPLINK_CONNECTING,
	UPLINK_DIALOGUE,
	UPLINK_HANDSHAKING,
	UPLINK_DONE
};

static const char *const uplink_state_names[] = {
	"CONNECTING", "DIALOGUE", "HANDSHAKING", "DONE"
};

struct uplink {
	const struct service_config	*sc;
	struct tls_ctx			*ctx;
	struct uplink_callbacks		 cb;
	enum uplink_state		 state;
	struct upstream			*connecting;
	struct bufferevent		*bev;
	struct tls_stream		*tls;
	struct proto_dialogue		*dialogue;
	struct evbuffer			*to_send;	/* the dialogue's lines */
	struct event			*timer;
	struct timespec			 connected;	/* TCP connect done */
	enum stats_reason		 failure;	/* in failed() */
	int				 eof;		/* the socket ended */
	char				 peer[80];
	char				 line[PROTO_LINE_MAX + 1];
};

/* Free everything the uplink still holds. */
static void
uplink_free(struct uplink *u)
{
	upstream_cancel(u->connecting);
	tls_stream_free(u->tls);
	if (u->bev != NULL)
		bufferevent_free(u->bev);
	proto_dialogue_free(u->dialogue);
	if (u->to_send != NULL)
		evbuffer_free(u->to_send);
	if (u->timer != NULL)
		event_free(u->timer);
	free(u);
}

/* Tell the trace callback, if any. */
static void
uplink_trace(struct uplink *u, enum uplink_trace what, const char *text,
    size_t len)
{
	if (u->cb.trace != NULL)
		u->cb.trace(what, text, len, u->cb.arg);
}

/* Enter a state, and tell the trace (as "CONNECTING -> DIALOGUE"). */
static void
uplink_set_state(struct uplink *u, enum uplink_state state,
    enum uplink_trace what)
{
	char	text[40];

	snprintf(text, sizeof(text), "%s -> %s", uplink_state_names[u->state],
	    uplink_state_names[state]);
	u->state = state;
	uplink_trace(u, what, text, strlen(text));
}

/*
 * The end: call back once (reason NULL: ready; else failed for the class
 * why), then free.  Always -1.
 */
static int
uplink_finish(struct uplink *u, enum stats_reason why, const char *reason)
{
	u->failure = why;
	u->state = UPLINK_DONE;
	evtimer_del(u->timer);
	if (u->bev != NULL)
		bufferevent_setcb(u->bev, NULL, NULL, NULL, NULL);
	if (reason == NULL)
		u->cb.ready(u, u->cb.arg);
	else
		u->cb.failed(u, reason, u->cb.arg);
	uplink_free(u);
	return -1;
}

/* Drive the handshake with what has arrived; -1 once finished. */
static int
uplink_handshake(struct uplink *u)
{
	switch (tls_stream_handshake(u->tls)) {
	case 0:
		return 0;
	case 1:
		return uplink_finish(u, STATS_REASON_NONE, NULL);
	default:
		break;
	}
	if (u->sc->tls == TLS_MODE_STARTTLS &&
	    tls_stream_saw_plaintext(u->tls))
		return uplink_finish(u, STATS_REASON_INJECTION, "data injected "
		    "after the STARTTLS response, or the server did not start "
		    "TLS");
	return uplink_finish(u, tls_conn_verify_failed(tls_stream_conn(
	    u->tls)) ? STATS_REASON_TLS_VERIFY : STATS_REASON_TLS_HANDSHAKE,
	    tls_stream_error(u->tls));
}

/* Start the TLS handshake on the connected socket. */
static int
uplink_begin_tls(struct uplink *u)
{
	if ((u->tls = tls_connect(u->ctx, u->bev)) == NULL)
		return uplink_finish(u, STATS_REASON_OTHER,
		    "out of memory for TLS");
	uplink_set_state(u, UPLINK_HANDSHAKING, UPLINK_TRACE_HANDSHAKE);
	return uplink_handshake(u);
}

/* Send what the dialogue wrote for the server; 0 or -1 (finished). */
static int
uplink_send(struct uplink *u, struct evbuffer *out)
{
	size_t	len = evbuffer_get_length(out);

	if (len == 0)
		return 0;
	if (u->cb.trace != NULL)
		uplink_trace(u, UPLINK_TRACE_SENT,
		    (const char *)evbuffer_pullup(out, -1), len);
	if (bufferevent_write_buffer(u->bev, out) != 0)
		return uplink_finish(u, STATS_REASON_OTHER, "out of memory");
	return 0;
}

/* The plaintext STARTTLS dialogue: one server line at a time. */
static int
uplink_dialogue(struct uplink *u)
{
	struct evbuffer		*in = bufferevent_get_input(u->bev);
	struct evbuffer		*out = u->to_send;
	enum proto_verdict	 verdict;
	size_t			 len;
	int			 got;

	while ((got = proto_take_line(in, u->line, &len)) > 0) {
		uplink_trace(u, UPLINK_TRACE_RECEIVED, u->line, len);
		verdict = proto_dialogue_line(u->dialogue, u->line, len, out);
		if (uplink_send(u, out) != 0)
			return -1;
		switch (verdict) {
		case PROTO_MORE:
			continue;
		case PROTO_FAIL:
			return uplink_finish(u, STATS_REASON_STARTTLS,
			    proto_dialogue_reason(u->dialogue));
		case PROTO_UPGRADE:
			/* Bytes after the go-ahead were not sent by TLS. */
			if (evbuffer_get_length(in) > 0)
				return uplink_finish(u,
				    STATS_REASON_INJECTION, "data injected "
				    "after the STARTTLS response");
			proto_dialogue_free(u->dialogue);
			u->dialogue = NULL;
			return uplink_begin_tls(u);
		}
	}
	if (got < 0) {
		snprintf(u->line, sizeof(u->line), "server line longer than "
		    "%d bytes in the STARTTLS dialogue", PROTO_LINE_MAX);
		return uplink_finish(u, STATS_REASON_STARTTLS, u->line);
	}
	if (u->eof)
		return uplink_finish(u, STATS_REASON_STARTTLS, "server closed "
		    "the connection during the STARTTLS dialogue");
	return 0;
}

/* Move the current step on with what has arrived. */
static void
uplink_input(struct uplink *u)
{
	switch (u->state) {
	case UPLINK_DIALOGUE:
		uplink_dialogue(u);
		return;
	case UPLINK_HANDSHAKING:
		uplink_handshake(u);
		return;
	case UPLINK_CONNECTING:
	case UPLINK_DONE:
		break;
	}
	fatalx("uplink: input in state %d", (int)u->state);
}

/* Bytes arrived from the server. */
static void
uplink_read_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	uplink_input(arg);
}

/* The socket ended or failed. */
static void
uplink_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct uplink	*u = arg;
	char		 reason[160];
	int		 err = EVUTIL_SOCKET_ERROR();

	(void)bev;
	u->eof = 1;
	if (u->tls != NULL)
		tls_stream_set_eof(u->tls);
	if (what & BEV_EVENT_ERROR) {
		snprintf(reason, sizeof(reason), "%s during the %s with %s",
		    evutil_socket_error_to_string(err),
		    u->state == UPLINK_DIALOGUE ? "STARTTLS dialogue" :
		    "TLS handshake", u->peer);
		uplink_finish(u, STATS_REASON_SERVER, reason);
		return;
	}
	uplink_input(u);	/* what arrived before the end, then the end */
}

/* handshake_timeout passed since the TCP connect. */
static void
uplink_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct uplink	*u = arg;

	(void)fd;
	(void)what;
	uplink_finish(u, STATS_REASON_TIMEOUT, u->state == UPLINK_DIALOGUE ?
	    "STARTTLS dialogue timed out" : "TLS handshake timed out");
}

/* Resolving and connecting, step by step (mailtlsd -p). */
static void
uplink_upstream_trace_cb(const char *text, void *arg)
{
	uplink_trace(arg, UPLINK_TRACE_STEP, text, strlen(text));
}

/* The reason class of a failed connect. */
static enum stats_reason
uplink_connect_failure(enum upstream_failure failure)
{
	switch (failure) {
	case UPSTREAM_FAIL_DNS:
		return STATS_REASON_DNS;
	case UPSTREAM_FAIL_CONNECT:
		return STATS_REASON_CONNECT;
	case UPSTREAM_FAIL_TIMEOUT:
		return STATS_REASON_TIMEOUT;
	case UPSTREAM_OK:
	case UPSTREAM_FAIL_OTHER:
		break;
	}
	return STATS_REASON_OTHER;
}

/* The TCP connection is up, or every address failed. */
static void
uplink_connected_cb(struct bufferevent *bev, const char *text,
    enum upstream_failure failure, void *arg)
{
	struct uplink	*u = arg;
	struct timeval	 tv = { (time_t)u->sc->handshake_timeout, 0 };
	char		 step[120];

	u->connecting = NULL;
	if (bev == NULL) {
		uplink_finish(u, uplink_connect_failure(failure), text);
		return;
	}
	clock_gettime(CLOCK_MONOTONIC, &u->connected);
	u->bev = bev;
	snprintf(u->peer, sizeof(u->peer), "%s", text);
	snprintf(step, sizeof(step), "TCP connected to %s", text);
	uplink_trace(u, UPLINK_TRACE_STEP, step, strlen(step));
	bufferevent_setcb(bev, uplink_read_cb, NULL, uplink_event_cb, u);
	bufferevent_setwatermark(bev, EV_READ, 0, UPLINK_BUF_MAX);
	bufferevent_enable(bev, EV_READ);
	evtimer_add(u->timer, &tv);
	if (u->sc->tls != TLS_MODE_STARTTLS) {
		uplink_begin_tls(u);
		return;
	}
	if ((u->dialogue = proto_dialogue_new(u->sc)) == NULL ||
	    (u->to_send = evbuffer_new()) == NULL) {
		uplink_finish(u, STATS_REASON_OTHER, "out of memory");
		return;
	}
	uplink_set_state(u, UPLINK_DIALOGUE, UPLINK_TRACE_DIALOGUE);
	uplink_dialogue(u);
}

/* Start reaching the service's server. */
struct uplink *
uplink_start(struct event_base *base, struct evdns_base *dns,
    const struct service_config *sc, struct tls_ctx *ctx,
    const struct uplink_callbacks *cb)
{
	struct uplink	*u;

	if ((u = calloc(1, sizeof(*u))) == NULL)
		return NULL;
	u->sc = sc;
	u->ctx = ctx;
	u->cb = *cb;
	u->state = UPLINK_CONNECTING;
	if ((u->timer = evtimer_new(base, uplink_timer_cb, u)) == NULL)
		goto err;
	u->connecting = upstream_connect_traced(base, dns, sc->remote_host,
	    sc->remote_port, sc->connect_timeout, uplink_connected_cb,
	    cb->trace != NULL ? uplink_upstream_trace_cb : NULL, u);
	if (u->connecting == NULL)
		goto err;
	return u;
err:
	uplink_free(u);
	return NULL;
}

/* Stop before the end; no callback comes. */
void
uplink_cancel(struct uplink *u)
{
	if (u != NULL)
		uplink_free(u);
}

/* In ready(): the socket and its TLS stream are the caller's now. */
int
uplink_take(struct uplink *u, struct bufferevent **bev,
    struct tls_stream **tls)
{
	*bev = u->bev;
	*tls = u->tls;
	u->bev = NULL;
	u->tls = NULL;
	return u->eof;
}

/* The server's address once connected. */
const char *
uplink_peer(const struct uplink *u)
{
	return u->peer;
}

/* In failed(): the reason class. */
enum stats_reason
uplink_failure(const struct uplink *u)
{
	return u->failure;
}

/* In ready(): seconds from the TCP connect to the verified handshake. */
double
uplink_handshake_seconds(const struct uplink *u)
{
	struct timespec	now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - u->connected.tv_sec) +
	    (double)(now.tv_nsec - u->connected.tv_nsec) / 1e9;
}

/* The TLS stream, if the handshake began. */
struct tls_stream *
uplink_tls(struct uplink *u)
{
	return u->tls;
}
