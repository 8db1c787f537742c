/*
 * metrics.c - GET /metrics over evhttp (see metrics.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "log.h"
#include "metrics.h"

#define METRICS_BACKLOG		16
#define METRICS_CONTENT_TYPE	"text/plain; version=0.0.4; charset=utf-8"

struct metrics {
	struct evhttp		*http;
	metrics_render_fn	*render;
	void			*arg;
};

/* Bind and listen on the metrics address. */
int
metrics_bind(const struct sockaddr *sa, socklen_t salen, const char *text,
    char *err, size_t errlen)
{
	int	fd, one = 1;

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd < 0) {
		snprintf(err, errlen, "metrics_listen %s: socket: %s", text,
		    strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (sa->sa_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, sa, salen) != 0 || listen(fd, METRICS_BACKLOG) != 0) {
		snprintf(err, errlen, "metrics_listen %s: cannot listen: %s",
		    text, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* Answer one request: /metrics, or 404. */
static void
metrics_request_cb(struct evhttp_request *req, void *arg)
{
	struct metrics		*m = arg;
	const struct evhttp_uri	*uri = evhttp_request_get_evhttp_uri(req);
	const char		*path = uri != NULL ? evhttp_uri_get_path(uri) :
				    NULL;
	struct evbuffer		*body;

	if (path == NULL || strcmp(path, "/metrics") != 0) {
		evhttp_send_error(req, HTTP_NOTFOUND, "Not Found (the metrics "
		    "are at /metrics)");
		return;
	}
	if ((body = evbuffer_new()) == NULL || m->render(body, m->arg) != 0) {
		if (body != NULL)
			evbuffer_free(body);
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", METRICS_CONTENT_TYPE);
	evhttp_send_reply(req, HTTP_OK, "OK", body);
	evbuffer_free(body);
}

/* Serve the bound socket. */
struct metrics *
metrics_new(struct event_base *base, int fd, metrics_render_fn *render,
    void *arg)
{
	struct metrics	*m;

	if ((m = calloc(1, sizeof(*m))) == NULL)
		return NULL;
	m->render = render;
	m->arg = arg;
	if ((m->http = evhttp_new(base)) == NULL) {
		free(m);
		return NULL;
	}
	evhttp_set_allowed_methods(m->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_max_headers_size(m->http, METRICS_HEADERS_MAX);
	evhttp_set_max_body_size(m->http, 0);
	evhttp_set_timeout(m->http, METRICS_TIMEOUT);
	evhttp_set_gencb(m->http, metrics_request_cb, m);
	if (evhttp_accept_socket_with_handle(m->http, fd) == NULL) {
		evhttp_free(m->http);
		free(m);
		return NULL;
	}
	return m;
}

/* Stop serving. */
void
metrics_free(struct metrics *m)
{
	if (m == NULL)
		return;
	evhttp_free(m->http);
	free(m);
}
