/*
 * activation.c - take over the listening sockets systemd passes
 * (socket activation).
 *
 * When $LISTEN_PID is this process, descriptors 3 .. 3 + $LISTEN_FDS - 1
 * are sockets the service manager bound and passed on.  Each one that is a
 * listening TCP socket is kept with its bound address; listener_new()
 * takes the one whose address equals a configured listen address.  A
 * configured address with no passed socket is bound as usual; a passed
 * socket that matches no address is closed with a warning, since nothing
 * would ever accept on it.  Sockets taken this way are then listeners like
 * any other and are kept across a reload.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "activation.h"
#include "addr.h"
#include "config.h"
#include "log.h"

#define ACTIVATION_FD_START	3	/* SD_LISTEN_FDS_START */
#define ACTIVATION_MAX_FDS	1024	/* sanity bound on $LISTEN_FDS */

/* One socket the service manager passed. */
struct passed_socket {
	int			fd;		/* -1 once taken or closed */
	struct sockaddr_storage	addr;
	char			text[ADDR_TEXT_MAX];
};

static struct passed_socket	*passed;
static int			 n_passed;

/* The non-negative decimal value of an environment variable, or -1. */
static long
activation_env_number(const char *name)
{
	const char	*s = getenv(name);
	char		*end;
	long		 v;

	if (s == NULL || *s == '\0')
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < 0)
		return -1;
	return v;
}

/* Whether fd is a listening TCP socket; records its address in p. */
static int
activation_check(int fd, struct passed_socket *p)
{
	socklen_t	len;
	int		type, listening, flags;

	len = sizeof(type);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 ||
	    type != SOCK_STREAM)
		return -1;
	len = sizeof(listening);
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 ||
	    !listening)
		return -1;
	len = sizeof(p->addr);
	if (getsockname(fd, (struct sockaddr *)&p->addr, &len) != 0 ||
	    (p->addr.ss_family != AF_INET && p->addr.ss_family != AF_INET6))
		return -1;
	if ((flags = fcntl(fd, F_GETFL)) < 0 ||
	    fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0 ||
	    fcntl(fd, F_SETFD, FD_CLOEXEC) != 0)
		return -1;
	p->fd = fd;
	addr_format((struct sockaddr *)&p->addr, p->text, sizeof(p->text));
	return 0;
}

/* Take the sockets passed to this process, if any. */
int
activation_init(void)
{
	long	pid, n, i;
	int	fd;

	pid = activation_env_number("LISTEN_PID");
	n = activation_env_number("LISTEN_FDS");
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	if (pid < 0 || n <= 0)
		return 0;
	if (pid != (long)getpid()) {
		log_debug("LISTEN_FDS is meant for process %ld: ignored", pid);
		return 0;
	}
	if (n > ACTIVATION_MAX_FDS ||
	    (passed = calloc((size_t)n, sizeof(*passed))) == NULL) {
		log_warnx("cannot take %ld sockets passed by systemd", n);
		return 0;
	}
	for (i = 0; i < n; i++) {
		fd = ACTIVATION_FD_START + (int)i;
		if (activation_check(fd, &passed[n_passed]) != 0) {
			log_warnx("descriptor %d passed by systemd is not a "
			    "listening TCP socket: closing it", fd);
			close(fd);
			continue;
		}
		log_debug("systemd passed a socket for %s as descriptor %d",
		    passed[n_passed].text, fd);
		n_passed++;
	}
	return n_passed;
}

/* Whether two socket addresses are the same address and port. */
static int
activation_same_addr(const struct sockaddr_storage *a,
    const struct sockaddr_storage *b)
{
	const struct sockaddr_in	*a4 = (const struct sockaddr_in *)a;
	const struct sockaddr_in	*b4 = (const struct sockaddr_in *)b;
	const struct sockaddr_in6	*a6 = (const struct sockaddr_in6 *)a;
	const struct sockaddr_in6	*b6 = (const struct sockaddr_in6 *)b;

	if (a->ss_family != b->ss_family)
		return 0;
	if (a->ss_family == AF_INET)
		return a4->sin_port == b4->sin_port &&
		    a4->sin_addr.s_addr == b4->sin_addr.s_addr;
	if (a->ss_family == AF_INET6)
		return a6->sin6_port == b6->sin6_port &&
		    a6->sin6_scope_id == b6->sin6_scope_id &&
		    memcmp(&a6->sin6_addr, &b6->sin6_addr,
		    sizeof(a6->sin6_addr)) == 0;
	return 0;
}

/* Hand over the passed socket bound to addr. */
int
activation_take(const struct listen_addr *addr)
{
	int	i, fd;

	for (i = 0; i < n_passed; i++) {
		if (passed[i].fd < 0 ||
		    !activation_same_addr(&passed[i].addr, &addr->addr))
			continue;
		fd = passed[i].fd;
		passed[i].fd = -1;
		log_info("using socket passed by systemd for %s", addr->text);
		return fd;
	}
	return -1;
}

/* Close what no listen address took; later takes find nothing. */
void
activation_close_unused(void)
{
	int	i;

	for (i = 0; i < n_passed; i++) {
		if (passed[i].fd < 0)
			continue;
		log_warnx("socket passed by systemd for %s matches no listen "
		    "address: closing it", passed[i].text);
		close(passed[i].fd);
	}
	free(passed);
	passed = NULL;
	n_passed = 0;
}
