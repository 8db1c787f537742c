/*
 * listener.c - accept mail clients on one address.
 *
 * The socket is the one systemd passed for the address (socket
 * activation) or one bound here.  Over max_sessions a client gets the
 * protocol's "try later" line and is closed.  When accept fails for lack
 * of descriptors the listener pauses for a moment instead of spinning on a
 * socket that stays readable.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "activation.h"
#include "addr.h"
#include "config.h"
#include "listener.h"
#include "log.h"
#include "pool.h"
#include "proto.h"
#include "service.h"
#include "session.h"

#define LISTENER_BACKLOG	256
#define LISTENER_PAUSE_MS	500	/* after EMFILE/ENFILE */
#define LISTENER_NO_MEMORY	"mailtlsd is out of memory, try again later"

struct listener {
	struct session_host	*host;
	struct service		*svc;
	struct evconnlistener	*evl;
	struct event		*pause_timer;
	struct listen_addr	 addr;
};

/* Refuse a client with one protocol-correct line, without allocating. */
static void
listener_refuse(struct listener *l, int fd, const char *text)
{
	char	line[160];
	int	n;

	n = proto_format_unavailable(line, sizeof(line),
	    l->svc->cfg.protocol, text);
	/* A client that speaks TLS from its first byte gets no plaintext. */
	if (l->svc->cfg.local_tls == LOCAL_TLS_IMPLICIT)
		n = 0;
	/* A new socket's send buffer is empty: this never blocks. */
	if (n > 0 && send(fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		log_debug("[%s] cannot send the refusal: %s", l->svc->cfg.name,
		    strerror(errno));
	shutdown(fd, SHUT_WR);
	close(fd);
}

/* Refuse a client whose address holds max_sessions_per_client. */
static void
listener_refuse_busy_client(struct listener *l, int fd,
    const struct sockaddr *sa)
{
	char	addr[ADDR_TEXT_MAX];

	addr_format(sa, addr, sizeof(addr));
	log_warnx("[%s] max_sessions_per_client (%u) reached: refusing %s on "
	    "%s", l->svc->cfg.name, l->host->max_per_client,
	    addr, l->addr.text);
	listener_refuse(l, fd, "mailtlsd: too many connections from your "
	    "address");
}

/* A client connected. */
static void
listener_accept_cb(struct evconnlistener *evl, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct listener	*l = arg;
	struct session	*pooled;

	(void)evl;
	if (!session_host_may_accept_client(l->host, sa)) {
		listener_refuse_busy_client(l, fd, sa);
		return;
	}
	/* A ready pooled connection takes no new slot. */
	if ((pooled = pool_take(l->svc->pool)) != NULL) {
		if (session_attach(pooled, fd, sa, (socklen_t)salen) != 0)
			listener_refuse(l, fd, LISTENER_NO_MEMORY);
		return;
	}
	if (!session_host_may_accept(l->host)) {
		log_warnx("[%s] max_sessions (%u) reached: refusing a client "
		    "on %s", l->svc->cfg.name, l->host->max_sessions,
		    l->addr.text);
		listener_refuse(l, fd, "too many connections to mailtlsd, try "
		    "again later");
		return;
	}
	if (session_start(l->host, l->svc, fd, sa, (socklen_t)salen) != 0) {
		log_errorx("[%s] cannot start a session: out of memory",
		    l->svc->cfg.name);
		listener_refuse(l, fd, LISTENER_NO_MEMORY);
	}
}

/* The pause after running out of descriptors is over. */
static void
listener_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct listener	*l = arg;

	(void)fd;
	(void)what;
	evconnlistener_enable(l->evl);
}

/* accept() failed. */
static void
listener_error_cb(struct evconnlistener *evl, void *arg)
{
	struct listener	*l = arg;
	struct timeval	 pause = { 0, LISTENER_PAUSE_MS * 1000 };
	int		 err = EVUTIL_SOCKET_ERROR();

	if (err == EMFILE || err == ENFILE || err == ENOBUFS ||
	    err == ENOMEM) {
		log_warnx("[%s] cannot accept on %s: %s; pausing for %d ms",
		    l->svc->cfg.name, l->addr.text, strerror(err),
		    LISTENER_PAUSE_MS);
		evconnlistener_disable(evl);
		evtimer_add(l->pause_timer, &pause);
		return;
	}
	log_warnx("[%s] accept on %s: %s", l->svc->cfg.name, l->addr.text,
	    strerror(err));
}

/* A bound, listening, non-blocking socket for addr, or -1. */
static int
listener_bind(const struct listen_addr *addr, char *err, size_t errlen)
{
	int	fd, one = 1;

	fd = socket(addr->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto err;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0)
		goto err;
	if (addr->addr.ss_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6,
	    IPV6_V6ONLY, &one, sizeof(one)) != 0)
		goto err;
	if (bind(fd, (const struct sockaddr *)&addr->addr, addr->addrlen) != 0)
		goto err;
	if (listen(fd, LISTENER_BACKLOG) != 0)
		goto err;
	return fd;
err:
	snprintf(err, errlen, "cannot listen on %s: %s", addr->text,
	    strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

/* Start accepting on fd, a listening socket bound to addr. */
static struct listener *
listener_new_from_fd(struct session_host *host, const struct listen_addr *addr,
    struct service *svc, int fd, char *err, size_t errlen)
{
	struct listener	*l;

	if ((l = calloc(1, sizeof(*l))) == NULL)
		goto err;
	l->host = host;
	l->addr = *addr;
	l->svc = service_ref(svc);
	if ((l->pause_timer = evtimer_new(host->base, listener_resume_cb, l)) ==
	    NULL)
		goto err;
	l->evl = evconnlistener_new(host->base, listener_accept_cb, l,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (l->evl == NULL)
		goto err;
	evconnlistener_set_error_cb(l->evl, listener_error_cb);
	return l;
err:
	snprintf(err, errlen, "cannot listen on %s: out of memory",
	    addr->text);
	if (l == NULL || l->evl == NULL)
		close(fd);
	listener_free(l);
	return NULL;
}

/* Take the socket systemd passed for addr, or bind it; start accepting. */
struct listener *
listener_new(struct session_host *host, const struct listen_addr *addr,
    struct service *svc, char *err, size_t errlen)
{
	int	fd;

	if ((fd = activation_take(addr)) < 0 &&
	    (fd = listener_bind(addr, err, errlen)) < 0)
		return NULL;
	return listener_new_from_fd(host, addr, svc, fd, err, errlen);
}

/* Stop accepting and close the socket; NULL is fine. */
void
listener_free(struct listener *l)
{
	if (l == NULL)
		return;
	if (l->evl != NULL)
		evconnlistener_free(l->evl);
	if (l->pause_timer != NULL)
		event_free(l->pause_timer);
	service_unref(l->svc);
	free(l);
}

/* Whether the listener's address equals addr. */
int
listener_matches(const struct listener *l, const struct listen_addr *addr)
{
	return l->addr.addrlen == addr->addrlen &&
	    memcmp(&l->addr.addr, &addr->addr, addr->addrlen) == 0;
}

/* Hand new clients to svc from now on. */
void
listener_set_service(struct listener *l, struct service *svc)
{
	struct service	*old = l->svc;

	l->svc = service_ref(svc);
	service_unref(old);
}
