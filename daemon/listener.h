/*
 * listener.h - one listening socket of a service: accept, enforce
 * max_sessions, hand the client to a new session.
 */
#ifndef MAILTLSD_LISTENER_H
#define MAILTLSD_LISTENER_H

#include <stddef.h>

struct listen_addr;
struct listener;
struct service;
struct session_host;

/*
 * Start accepting for svc on addr: on the socket systemd passed for it,
 * else on a newly bound one.  NULL with a reason in err.
 */
struct listener	*listener_new(struct session_host *, const struct listen_addr *,
		    struct service *, char *err, size_t errlen);
void		 listener_free(struct listener *);

/* Whether the listener is bound to exactly this address. */
int		 listener_matches(const struct listener *,
		    const struct listen_addr *);

/* Serve another service (after a reload) from the same socket. */
void		 listener_set_service(struct listener *, struct service *);

#endif /* MAILTLSD_LISTENER_H */
