/*
 * metrics.h - the metrics endpoint: libevent's evhttp serving GET
 * /metrics in the Prometheus text exposition format (metrics_listen).
 *
 * Bounded like everything else: GET and HEAD only, request headers of at
 * most METRICS_HEADERS_MAX bytes, no body, METRICS_TIMEOUT seconds for a
 * connection to send its request and take the answer.  Any other path is
 * 404.
 */
#ifndef MAILTLSD_METRICS_H
#define MAILTLSD_METRICS_H

#include <stddef.h>
#include <sys/socket.h>

struct event_base;
struct evbuffer;
struct metrics;

#define METRICS_HEADERS_MAX	8192
#define METRICS_TIMEOUT		10	/* seconds */

/* Append the exposition to out; 0, or -1 (then 500). */
typedef int	metrics_render_fn(struct evbuffer *out, void *arg);

/*
 * Bind and listen on the address (text for errors), before the privilege
 * drop; the descriptor, or -1 with err.
 */
int		 metrics_bind(const struct sockaddr *, socklen_t,
		    const char *text, char *err, size_t errlen);

/* Serve on the bound fd (now the metrics'); NULL: out of memory. */
struct metrics	*metrics_new(struct event_base *, int fd, metrics_render_fn *,
		    void *arg);

/* Stop serving and close every connection; NULL is fine. */
void		 metrics_free(struct metrics *);

#endif /* MAILTLSD_METRICS_H */
