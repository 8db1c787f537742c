/*
 * session.h - one mail client's session: reach the server, make TLS,
 * verify, then relay bytes both ways with back-pressure and timeouts.
 */
#ifndef MAILTLSD_SESSION_H
#define MAILTLSD_SESSION_H

#include <sys/queue.h>
#include <sys/socket.h>

struct pool;
struct runtime;
struct service;
struct session;

/* Take over an accepted client socket; -1 when the fd is still the
 * caller's (out of memory): it should refuse the client. */
int	session_start(struct runtime *, struct service *, int fd,
	    const struct sockaddr *, socklen_t);

/* A pool member: connects and parks until a client comes; NULL (memory). */
struct session	*session_start_pooled(struct runtime *, struct service *,
		    struct pool *);

/*
 * Give a parked pool member its client; -1 (out of memory) only while fd is
 * still the caller's, 0 once the session owns it, even if it then failed.
 */
int	session_attach(struct session *, int fd, const struct sockaddr *,
	    socklen_t);

/* The daemon is stopping: close within the service's shutdown_timeout. */
void	session_drain(struct session *);

/* Close at once (daemon exit). */
void	session_abort(struct session *);

/* For the runtime's list. */
struct session	*session_next(struct session *);

#endif /* MAILTLSD_SESSION_H */
