/*
 * readahead.h - read more of a socket into its bufferevent's input than
 * libevent 2.1 does at a time.
 *
 * libevent 2.1 reads at most 4096 bytes per read event, whatever
 * bufferevent_set_max_single_read() says (evbuffer_read() caps it; 2.2
 * made it settable), so a bulk transfer costs an ioctl, a readv and an
 * epoll_wait, and a pass through the relay, per 4 KiB.  A read callback
 * that calls readahead_fill() takes what the socket holds, up to a bound,
 * in one more readv.
 */
#ifndef MAILTLSD_READAHEAD_H
#define MAILTLSD_READAHEAD_H

#include <stddef.h>

struct bufferevent;

/*
 * Read what the socket of bev holds into its input buffer until that
 * holds limit bytes, or the read high-water mark if it is lower; nothing
 * when reading is disabled.  It reads only bytes the socket already has
 * (FIONREAD), so end of file and errors are left for libevent to see, as
 * always.  The number of bytes read.
 */
size_t	readahead_fill(struct bufferevent *bev, size_t limit);

#endif /* MAILTLSD_READAHEAD_H */
