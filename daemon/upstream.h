/*
 * upstream.h - reach a mail server: asynchronous name resolution, then a
 * non-blocking TCP connect to each address in turn, each bounded by the
 * connect timeout.
 */
#ifndef MAILTLSD_UPSTREAM_H
#define MAILTLSD_UPSTREAM_H

#include <stdint.h>

struct bufferevent;
struct event_base;
struct evdns_base;
struct upstream;

/* Why no address could be reached. */
enum upstream_failure {
	UPSTREAM_OK = 0,
	UPSTREAM_FAIL_DNS,	/* the name did not resolve */
	UPSTREAM_FAIL_CONNECT,	/* refused, unreachable */
	UPSTREAM_FAIL_TIMEOUT,	/* an address did not answer in time */
	UPSTREAM_FAIL_OTHER	/* out of memory */
};

/*
 * Called once, always from the event loop: with a connected bufferevent
 * (now the caller's), the peer address as text and UPSTREAM_OK, or with
 * NULL, the reason every address failed and the gravest failure's kind
 * (a timeout outweighs a refusal).
 */
typedef void	(*upstream_done_cb)(struct bufferevent *, const char *text,
		    enum upstream_failure, void *arg);

/* Start reaching host:port; NULL when out of memory. */
struct upstream	*upstream_connect(struct event_base *, struct evdns_base *,
		    const char *host, uint16_t port, unsigned timeout_seconds,
		    upstream_done_cb, void *arg);

/*
 * Each step of the attempt in words, for mailtlsd -p: "HOST resolved to N
 * address(es)", "trying ADDR", and each failure ("connection refused by
 * ADDR").  It may be called before upstream_connect_traced() returns, and
 * must only take note (never free or cancel anything).
 */
typedef void	(*upstream_trace_cb)(const char *text, void *arg);

/* upstream_connect() that also reports each step to trace. */
struct upstream	*upstream_connect_traced(struct event_base *,
		    struct evdns_base *, const char *host, uint16_t port,
		    unsigned timeout_seconds, upstream_done_cb,
		    upstream_trace_cb trace, void *arg);

/*
 * The asynchronous resolver on base, from /etc/resolv.conf and /etc/hosts
 * (MAILTLSD_RESOLV_CONF names another resolv.conf, for the tests); NULL
 * when out of memory.
 */
struct evdns_base *upstream_dns_new(struct event_base *);

/* Stop and free; the callback will not be called.  NULL is fine. */
void		 upstream_cancel(struct upstream *);

#endif /* MAILTLSD_UPSTREAM_H */
