/*
 * uplink.h - reach a service's mail server securely, the one way mailtlsd
 * does it for sessions, pool members and mailtlsd -p:
 *
 *   resolve -> connect (upstream.c) -> [STARTTLS dialogue] -> TLS
 *   handshake -> verification (chain, name, pins)
 *
 * Nothing the server says before TLS is given to the caller; bytes after
 * the STARTTLS go-ahead and before TLS (an injection) fail the uplink.
 * handshake_timeout bounds the dialogue and the handshake together, from
 * the TCP connect.
 */
#ifndef MAILTLSD_UPLINK_H
#define MAILTLSD_UPLINK_H

#include <stddef.h>

#include "stats.h"		/* enum stats_reason */

struct bufferevent;
struct event_base;
struct evdns_base;
struct service_config;
struct tls_ctx;
struct tls_stream;
struct uplink;

/* What a trace callback is told. */
enum uplink_trace {
	UPLINK_TRACE_STEP,	/* resolving, an address tried, connected */
	UPLINK_TRACE_DIALOGUE,	/* "CONNECTING -> DIALOGUE" */
	UPLINK_TRACE_RECEIVED,	/* a server line of the dialogue */
	UPLINK_TRACE_SENT,	/* what mailtlsd sent in the dialogue */
	UPLINK_TRACE_HANDSHAKE	/* "... -> HANDSHAKING" */
};

/*
 * Called once, from the event loop, never from uplink_start(): ready when
 * TLS is up and verified (take the connection with uplink_take()), failed
 * with the reason.  After the callback returns the uplink frees itself
 * with whatever was not taken; the callback must not cancel it.
 */
struct uplink_callbacks {
	void	(*ready)(struct uplink *, void *arg);
	void	(*failed)(struct uplink *, const char *reason, void *arg);
	/* NULL but for mailtlsd -p: each step, only to take note of. */
	void	(*trace)(enum uplink_trace, const char *text, size_t len,
		    void *arg);
	void	*arg;
};

/* Start reaching the service's server with ctx; NULL (no memory). */
struct uplink	*uplink_start(struct event_base *, struct evdns_base *,
		    const struct service_config *, struct tls_ctx *,
		    const struct uplink_callbacks *);

/* Stop and free before a callback came; NULL is fine. */
void		 uplink_cancel(struct uplink *);

/*
 * In ready(): the socket (with no callbacks set, reading enabled) and its
 * verified TLS stream become the caller's; 1 when the socket has already
 * reached its end (the stream knows), else 0.
 */
int		 uplink_take(struct uplink *, struct bufferevent **,
		    struct tls_stream **);

/* In failed(): the reason class of the failure. */
enum stats_reason uplink_failure(const struct uplink *);

/* In ready(): seconds from the TCP connect to the verified handshake. */
double		 uplink_handshake_seconds(const struct uplink *);

/* The server's address as "ADDR:PORT" once connected, else "". */
const char	*uplink_peer(const struct uplink *);

/*
 * The TLS stream, NULL before the handshake; in failed(), the stream whose
 * handshake failed, for mailtlsd -p to show what the server sent.
 */
struct tls_stream *uplink_tls(struct uplink *);

#endif /* MAILTLSD_UPLINK_H */
