/*
 * upstream.c - resolve and connect without ever blocking the event loop.
 *
 * Every step runs from the event loop, never from inside upstream_connect(),
 * so the caller's callback may free whatever it likes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include "addr.h"
#include "log.h"
#include "upstream.h"

#define UPSTREAM_REASON_MAX	512

enum upstream_step {
	UPSTREAM_RESOLVING,
	UPSTREAM_RESOLVED,	/* the timer runs the first connect */
	UPSTREAM_CONNECTING,
	UPSTREAM_DONE		/* the timer reports the result */
};

struct upstream {
	struct event_base		*base;
	struct evdns_getaddrinfo_request *dns_req;
	struct event			*timer;
	struct bufferevent		*bev;
	struct evutil_addrinfo		*addrs;
	struct evutil_addrinfo		*next_addr;
	enum upstream_step		 step;
	int				 cancelled;
	struct timeval			 timeout;
	upstream_done_cb		 done_cb;
	upstream_trace_cb		 trace_cb;	/* NULL: none */
	void				*done_arg;
	char				 host[256];
	char				 peer[ADDR_TEXT_MAX];
	uint16_t			 port;
	enum upstream_failure		 failure;	/* the gravest yet */
	char				 reason[UPSTREAM_REASON_MAX];
};

static void	upstream_timer_cb(evutil_socket_t, short, void *);
static void	upstream_try_next(struct upstream *);

/* Free everything the attempt holds. */
static void
upstream_free(struct upstream *u)
{
	if (u->bev != NULL)
		bufferevent_free(u->bev);
	if (u->timer != NULL)
		event_free(u->timer);
	if (u->addrs != NULL)
		evutil_freeaddrinfo(u->addrs);
	free(u);
}

/* Run the timer callback at once, from the loop. */
static void
upstream_schedule_now(struct upstream *u, enum upstream_step step)
{
	struct timeval	now = { 0, 0 };

	u->step = step;
	evtimer_add(u->timer, &now);
}

/* Report a step to the trace callback, if there is one. */
static void
upstream_trace(struct upstream *u, const char *what)
{
	if (u->trace_cb != NULL)
		u->trace_cb(what, u->done_arg);
}

/* Append one failure of kind to the reason text. */
static void
upstream_note(struct upstream *u, enum upstream_failure kind,
    const char *what)
{
	size_t	len = strlen(u->reason);

	if (kind > u->failure)
		u->failure = kind;

	upstream_trace(u, what);
	snprintf(u->reason + len, sizeof(u->reason) - len, "%s%s",
	    len > 0 ? "; " : "", what);
}

/* Name resolution finished (or was cancelled). */
static void
upstream_dns_cb(int result, struct evutil_addrinfo *res, void *arg)
{
	struct upstream	*u = arg;
	char		 what[300];

	u->dns_req = NULL;
	if (result == EVUTIL_EAI_CANCEL || u->cancelled) {
		if (res != NULL)
			evutil_freeaddrinfo(res);
		upstream_free(u);
		return;
	}
	if (result != 0) {
		snprintf(what, sizeof(what), "cannot resolve %s: %s", u->host,
		    evutil_gai_strerror(result));
		upstream_note(u, UPSTREAM_FAIL_DNS, what);
		upstream_schedule_now(u, UPSTREAM_DONE);
		return;
	}
	u->addrs = res;
	u->next_addr = res;
	if (u->trace_cb != NULL) {
		struct evutil_addrinfo	*ai;
		int			 n = 0;

		for (ai = res; ai != NULL; ai = ai->ai_next)
			n++;
		snprintf(what, sizeof(what), "%s resolved to %d address%s",
		    u->host, n, n == 1 ? "" : "es");
		upstream_trace(u, what);
	}
	upstream_schedule_now(u, UPSTREAM_RESOLVED);
}

/* The socket connected or failed. */
static void
upstream_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct upstream	*u = arg;
	char		 text[160];
	int		 err = EVUTIL_SOCKET_ERROR();
	int		 one = 1;

	(void)bev;
	evtimer_del(u->timer);
	if (what & BEV_EVENT_CONNECTED) {
		setsockopt(bufferevent_getfd(u->bev), IPPROTO_TCP, TCP_NODELAY,
		    &one, sizeof(one));
		upstream_schedule_now(u, UPSTREAM_DONE);
		bufferevent_setcb(u->bev, NULL, NULL, NULL, NULL);
		u->reason[0] = '\0';
		return;
	}
	snprintf(text, sizeof(text), "%s by %s",
	    err == ECONNREFUSED ? "connection refused" :
	    evutil_socket_error_to_string(err), u->peer);
	upstream_note(u, UPSTREAM_FAIL_CONNECT, text);
	bufferevent_free(u->bev);
	u->bev = NULL;
	upstream_try_next(u);
}

/* Start a connect to the next address, or report that all failed. */
static void
upstream_try_next(struct upstream *u)
{
	struct evutil_addrinfo	*ai;
	char			 text[160];

	while ((ai = u->next_addr) != NULL) {
		u->next_addr = ai->ai_next;
		addr_format(ai->ai_addr, u->peer, sizeof(u->peer));
		if (u->trace_cb != NULL) {
			snprintf(text, sizeof(text), "trying %s", u->peer);
			upstream_trace(u, text);
		}
		u->bev = bufferevent_socket_new(u->base, -1,
		    BEV_OPT_CLOSE_ON_FREE);
		if (u->bev == NULL) {
			upstream_note(u, UPSTREAM_FAIL_OTHER, "out of memory");
			break;
		}
		bufferevent_setcb(u->bev, NULL, NULL, upstream_event_cb, u);
		if (bufferevent_socket_connect(u->bev, ai->ai_addr,
		    (int)ai->ai_addrlen) == 0) {
			u->step = UPSTREAM_CONNECTING;
			evtimer_add(u->timer, &u->timeout);
			return;
		}
		snprintf(text, sizeof(text), "cannot connect to %s: %s",
		    u->peer, evutil_socket_error_to_string(
		    EVUTIL_SOCKET_ERROR()));
		upstream_note(u, UPSTREAM_FAIL_CONNECT, text);
		bufferevent_free(u->bev);
		u->bev = NULL;
	}
	upstream_schedule_now(u, UPSTREAM_DONE);
}

/* Report the outcome; the callback may free anything. */
static void
upstream_finish(struct upstream *u)
{
	struct bufferevent	*bev = u->bev;
	upstream_done_cb	 cb = u->done_cb;
	void			*arg = u->done_arg;
	enum upstream_failure	 failure = u->failure;
	char			 text[UPSTREAM_REASON_MAX];

	snprintf(text, sizeof(text), "%s", bev != NULL ? u->peer : u->reason);
	if (bev != NULL)
		failure = UPSTREAM_OK;
	else if (failure == UPSTREAM_OK)
		failure = UPSTREAM_FAIL_OTHER;	/* no address to try */
	u->bev = NULL;
	upstream_free(u);
	cb(bev, text, failure, arg);
}

/* The one timer: deferred steps and the connect timeout. */
static void
upstream_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct upstream	*u = arg;
	char		 text[160];

	(void)fd;
	(void)what;
	switch (u->step) {
	case UPSTREAM_RESOLVED:
		upstream_try_next(u);
		break;
	case UPSTREAM_CONNECTING:
		snprintf(text, sizeof(text), "connect timed out to %s",
		    u->peer);
		upstream_note(u, UPSTREAM_FAIL_TIMEOUT, text);
		bufferevent_free(u->bev);
		u->bev = NULL;
		upstream_try_next(u);
		break;
	case UPSTREAM_DONE:
		upstream_finish(u);
		break;
	case UPSTREAM_RESOLVING:
		break;
	}
}

/* Begin resolving host and connecting to port. */
struct upstream *
upstream_connect(struct event_base *base, struct evdns_base *dns,
    const char *host, uint16_t port, unsigned timeout_seconds,
    upstream_done_cb cb, void *arg)
{
	return upstream_connect_traced(base, dns, host, port, timeout_seconds,
	    cb, NULL, arg);
}

/* The same, reporting each step to trace (mailtlsd -p). */
struct upstream *
upstream_connect_traced(struct event_base *base, struct evdns_base *dns,
    const char *host, uint16_t port, unsigned timeout_seconds,
    upstream_done_cb cb, upstream_trace_cb trace, void *arg)
{
	struct evutil_addrinfo	 hints;
	struct upstream		*u;
	char			 service[8];

	if ((u = calloc(1, sizeof(*u))) == NULL)
		return NULL;
	u->base = base;
	u->done_cb = cb;
	u->trace_cb = trace;
	u->done_arg = arg;
	u->port = port;
	u->timeout.tv_sec = timeout_seconds;
	snprintf(u->host, sizeof(u->host), "%s", host);
	if ((u->timer = evtimer_new(base, upstream_timer_cb, u)) == NULL) {
		free(u);
		return NULL;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	snprintf(service, sizeof(service), "%u", port);
	u->step = UPSTREAM_RESOLVING;
	/* May call upstream_dns_cb before returning: it only schedules. */
	u->dns_req = evdns_getaddrinfo(dns, host, service, &hints,
	    upstream_dns_cb, u);
	return u;
}

/* Abandon the attempt. */
void
upstream_cancel(struct upstream *u)
{
	if (u == NULL)
		return;
	if (u->dns_req != NULL) {
		/* The DNS callback runs with EAI_CANCEL and frees u. */
		u->cancelled = 1;
		evdns_getaddrinfo_cancel(u->dns_req);
		return;
	}
	upstream_free(u);
}

/*
 * The asynchronous resolver, from /etc/resolv.conf and /etc/hosts.  The
 * environment variable MAILTLSD_RESOLV_CONF names another resolv.conf; the
 * tests use it to point mailtlsd at their own DNS server.
 */
struct evdns_base *
upstream_dns_new(struct event_base *base)
{
	const char		*path = getenv("MAILTLSD_RESOLV_CONF");
	struct evdns_base	*dns;
	int			 ret;

	if (path == NULL)
		path = "/etc/resolv.conf";
	dns = evdns_base_new(base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	if (dns == NULL)
		return NULL;
	ret = evdns_base_resolv_conf_parse(dns, DNS_OPTIONS_ALL, path);
	if (ret != 0 && ret != 6) {	/* 6: no nameserver, 127.0.0.1 used */
		/* Names in /etc/hosts and literal addresses still work. */
		log_warnx("cannot read the resolver configuration %s (error "
		    "%d); only addresses and /etc/hosts names will resolve",
		    path, ret);
		evdns_base_load_hosts(dns, NULL);
	}
	/* A silent name server costs at most 2 x 5 s per lookup. */
	evdns_base_set_option(dns, "timeout:", "5");
	evdns_base_set_option(dns, "attempts:", "2");
	return dns;
}
