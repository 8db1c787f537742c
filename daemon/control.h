/*
 * control.h - the control socket: a Unix stream socket on which the
 * running daemon answers `mailtlsd -s`.
 *
 * The protocol is one request line, one answer, then the daemon closes:
 *
 *   status\n		the status as text
 *   status json\n	the same as one JSON object
 *   sessions\n		one line per live session
 *
 * A request is at most CONTROL_REQUEST_MAX bytes with its newline; an
 * unknown or over-long one gets a line starting "error: ".  A client has
 * CONTROL_TIMEOUT seconds to send its request and as long again to read
 * the answer, which is held in one bounded buffer: a client that stalls
 * costs the daemon that buffer until its timeout, never the event loop.
 * At most CONTROL_CLIENTS_MAX clients are served at once: one more closes
 * the oldest, so clients that stall cannot lock `mailtlsd -s` out.
 */
#ifndef MAILTLSD_CONTROL_H
#define MAILTLSD_CONTROL_H

#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

struct control;
struct event_base;
struct evbuffer;

#define CONTROL_REQUEST_MAX	64
#define CONTROL_ANSWER_MAX	(4 * 1024 * 1024)
#define CONTROL_TIMEOUT		5	/* seconds */
#define CONTROL_CLIENTS_MAX	16

/*
 * Write the answer to request (the line without its newline) into out;
 * 0, or -1 for an unknown request (out then holds why).
 */
typedef int	control_answer_fn(const char *request, struct evbuffer *out,
		    void *arg);

/*
 * Bind the control socket at path, mode 0600 and owned by uid/gid (when
 * not -1: the user the daemon drops to), before the privilege drop.  A
 * stale socket of an earlier daemon is replaced; one a running daemon
 * answers on is an error.  make_dir: create a missing parent directory
 * (mode 0750, same owner).  The listening descriptor, or -1 with err.
 */
int		 control_bind(const char *path, uid_t, gid_t, int make_dir,
		    char *err, size_t errlen);

/* Serve requests on the bound fd (now the control's); NULL: memory. */
struct control	*control_new(struct event_base *, int fd, const char *path,
		    control_answer_fn *, void *arg);

/* Stop serving, close every client, remove the socket file if still ours. */
void		 control_free(struct control *);

/*
 * mailtlsd -s: send request to the daemon at path, copy the answer to
 * out.  0, 1 when the daemon answered with an error line, -1 with err
 * when it could not be asked.  Blocking, with timeouts: not for the
 * daemon's loop.
 */
int		 control_query(const char *path, const char *request, FILE *out,
		    char *err, size_t errlen);

#endif /* MAILTLSD_CONTROL_H */
