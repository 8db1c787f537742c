/*
 * pool.h - per service, a few upstream connections kept ready: TCP, TLS
 * and (STARTTLS mode) the whole dialogue done, the server's greeting
 * (implicit TLS) received, so a new client is greeted at once.
 */
#ifndef MAILTLSD_POOL_H
#define MAILTLSD_POOL_H

struct pool;
struct service;
struct session;
struct session_host;

/* Start keeping svc->cfg.pool_size connections ready; NULL (no memory). */
struct pool	*pool_new(struct session_host *, struct service *);

/* Close every pooled connection and free the pool; NULL is fine. */
void		 pool_free(struct pool *);

/* Hand out one ready connection (never again), or NULL. */
struct session	*pool_take(struct pool *);

/* Refill soon if there is room (a session ended somewhere). */
void		 pool_kick(struct pool *);

/* What the status shows of a pool. */
struct pool_info {
	unsigned	size;		/* pool_size */
	unsigned	ready;		/* parked, greeted, waiting for a client */
	unsigned	failures;	/* in a row, since the last healthy one */
	int		backing_off;	/* waiting before the next attempt */
};

/* Fill info (all zero for NULL: no pool). */
void		 pool_get_info(const struct pool *, struct pool_info *);

#endif /* MAILTLSD_POOL_H */
