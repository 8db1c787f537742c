/*
 * session.h - one mail client's session: reach the server, make TLS,
 * verify, then relay bytes both ways with back-pressure and timeouts.
 */
#ifndef MAILTLSD_SESSION_H
#define MAILTLSD_SESSION_H

#include <sys/queue.h>
#include <sys/socket.h>

#include "stats.h"		/* enum stats_phase */

struct event_base;
struct evdns_base;
struct oauth2;
struct peers;
struct service;
struct session;

TAILQ_HEAD(session_list, session);

/*
 * What the sessions share with the daemon that runs them: runtime.c owns
 * it and keeps the limits current across reloads; listeners and pools pass
 * it on.  Sessions add and remove themselves.
 */
struct session_host {
	struct event_base	*base;
	struct evdns_base	*dns;
	unsigned		 max_sessions;
	unsigned		 max_per_client;	/* 0: no limit */
	struct peers		*peers;		/* sessions per address */
	struct oauth2		*oauth2;	/* accounts; NULL without any */
	struct session_list	 sessions;
	unsigned		 n_sessions;
	unsigned long long	 next_id;
	/* A session was freed: the owner may end the loop, refill pools. */
	void			(*ended)(void *arg);
	void			*arg;
};

/* Whether max_sessions leaves room for one more session. */
int	session_host_may_accept(const struct session_host *);

/* Whether the client at sa holds fewer than max_sessions_per_client. */
int	session_host_may_accept_client(const struct session_host *,
	    const struct sockaddr *);

/* A pool member's pool (pool.c), told when the member is ready or gone. */
struct session_pool_cb {
	void	(*ready)(struct session *, void *arg);
	void	(*gone)(struct session *, int failed, void *arg);
	void	*arg;
};

/* Take over an accepted client socket; -1 when the fd is still the
 * caller's (out of memory): it should refuse the client. */
int	session_start(struct session_host *, struct service *, int fd,
	    const struct sockaddr *, socklen_t);

/* A pool member: connects and parks until a client comes; NULL (memory). */
struct session	*session_start_pooled(struct session_host *, struct service *,
		    const struct session_pool_cb *);

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

/* The next session in the host's list. */
struct session	*session_next(struct session *);

/* What the status and SIGUSR1 show of a live session (no secrets). */
struct session_info {
	unsigned long long	 id;
	const struct service	*svc;
	const char		*client;	/* "ADDR:PORT", "" in the pool */
	const char		*state;		/* "RELAYING", ... */
	enum stats_phase	 phase;
	double			 age;		/* seconds since it began */
	unsigned long long	 bytes_up;	/* client -> server */
	unsigned long long	 bytes_down;
};

void	session_get_info(const struct session *, struct session_info *);

#endif /* MAILTLSD_SESSION_H */
