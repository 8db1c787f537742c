/*
 * readahead.c - read more of a socket per event than libevent 2.1 does
 * (see readahead.h).
 */
#include <errno.h>
#include <sys/ioctl.h>
#include <sys/uio.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "readahead.h"

/* The socket's unread bytes; 0 when unknown. */
static size_t
readahead_available(evutil_socket_t fd)
{
	int	n = 0;

	if (ioctl(fd, FIONREAD, &n) != 0 || n < 0)
		return 0;
	return (size_t)n;
}

/*
 * One readv of up to want bytes into reserved space of in, committed;
 * what readv returned.
 */
static ssize_t
readahead_readv(evutil_socket_t fd, struct evbuffer *in, size_t want)
{
	struct evbuffer_iovec	vec[2];
	size_t			got;
	ssize_t			n;
	int			nvec, i;

	if ((nvec = evbuffer_reserve_space(in, (ev_ssize_t)want, vec, 2)) < 1)
		return -1;
	/* The reserved space may be larger: take only what was wanted. */
	for (got = 0, i = 0; i < nvec; i++) {
		if (vec[i].iov_len > want - got)
			vec[i].iov_len = want - got;
		got += vec[i].iov_len;
	}
	do
		n = readv(fd, vec, nvec);
	while (n < 0 && errno == EINTR);
	if (n <= 0) {
		/* Nothing after all: libevent's next read will see why. */
		evbuffer_commit_space(in, vec, 0);
		return n;
	}
	for (got = 0, i = 0; i < nvec; i++) {
		if (vec[i].iov_len > (size_t)n - got)
			vec[i].iov_len = (size_t)n - got;
		got += vec[i].iov_len;
	}
	/* Trailing empty vectors are not committed. */
	while (nvec > 0 && vec[nvec - 1].iov_len == 0)
		nvec--;
	evbuffer_commit_space(in, vec, nvec);
	return n;
}

/* Read what the socket already holds, up to the bounds. */
size_t
readahead_fill(struct bufferevent *bev, size_t limit)
{
	struct evbuffer	*in = bufferevent_get_input(bev);
	evutil_socket_t	 fd = bufferevent_getfd(bev);
	size_t		 have = evbuffer_get_length(in), high = 0;
	size_t		 want;
	ssize_t		 n;

	if (fd < 0 || (bufferevent_get_enabled(bev) & EV_READ) == 0)
		return 0;
	/*
	 * Stop short of the high-water mark: reaching it would suspend
	 * reading, and the resumption costs two epoll_ctl calls.
	 */
	bufferevent_getwatermark(bev, EV_READ, NULL, &high);
	if (high != 0 && high - 1 < limit)
		limit = high - 1;
	if (have >= limit)
		return 0;
	want = readahead_available(fd);
	if (want > limit - have)
		want = limit - have;
	if (want == 0)
		return 0;
	/* A socket bufferevent's input takes bytes only while it reads. */
	evbuffer_unfreeze(in, 0);
	n = readahead_readv(fd, in, want);
	evbuffer_freeze(in, 0);
	return n > 0 ? (size_t)n : 0;
}
