/*
 * pool.c - ready upstream connections, per service.
 *
 * A member is a session without a client, parked once it is ready.  A
 * member that fails (cannot connect, bad certificate, server closes or
 * talks while it waits) makes the pool back off exponentially, capped, so
 * that a server that is down sees no connection storm and the daemon no
 * busy loop; only a member that proved healthy (taken by a client, or aged
 * out after pool_max_age) resets the back-off.  Members count against
 * max_sessions like any session.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "log.h"
#include "pool.h"
#include "service.h"
#include "session.h"

#define POOL_BACKOFF_FIRST_MS	1000
#define POOL_BACKOFF_MAX_MS	60000

struct pool {
	struct session_host *host;
	struct service	 *svc;		/* owns the pool: no reference */
	struct session	**member;	/* pool_size slots, NULL = empty */
	int		 *ready;
	unsigned	  size;
	unsigned	  failures;	/* in a row, since the last healthy */
	int		  backing_off;
	int		  stopping;
	struct event	 *timer;
};

static void	pool_member_ready(struct session *, void *);
static void	pool_member_gone(struct session *, int, void *);

/* Run the refill from the loop after delay_ms. */
static void
pool_schedule(struct pool *p, uint64_t delay_ms)
{
	struct timeval	tv;

	tv.tv_sec = (time_t)(delay_ms / 1000);
	tv.tv_usec = (suseconds_t)(delay_ms % 1000) * 1000;
	evtimer_add(p->timer, &tv);
}

/* Start members for empty slots while max_sessions leaves room. */
static void
pool_fill(struct pool *p)
{
	const struct session_pool_cb	cb = {
		.ready = pool_member_ready,
		.gone = pool_member_gone,
		.arg = p,
	};
	unsigned			i;

	for (i = 0; i < p->size; i++) {
		if (p->member[i] != NULL)
			continue;
		if (!session_host_may_accept(p->host))
			return;		/* pool_kick() retries later */
		p->ready[i] = 0;
		p->member[i] = session_start_pooled(p->host, p->svc, &cb);
		if (p->member[i] == NULL) {
			pool_member_gone(NULL, 1, p);
			return;
		}
	}
}

/* The refill or back-off timer fired. */
static void
pool_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pool	*p = arg;

	(void)fd;
	(void)what;
	p->backing_off = 0;
	pool_fill(p);
}

/* Keep svc's pool_size connections ready. */
struct pool *
pool_new(struct session_host *host, struct service *svc)
{
	struct pool	*p;

	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	p->host = host;
	p->svc = svc;
	p->size = svc->cfg.pool_size;
	p->member = calloc(p->size, sizeof(*p->member));
	p->ready = calloc(p->size, sizeof(*p->ready));
	p->timer = evtimer_new(host->base, pool_timer_cb, p);
	if (p->member == NULL || p->ready == NULL || p->timer == NULL) {
		pool_free(p);
		return NULL;
	}
	pool_schedule(p, 0);
	return p;
}

/* Close the members and free the pool. */
void
pool_free(struct pool *p)
{
	unsigned	i;

	if (p == NULL)
		return;
	p->stopping = 1;
	for (i = 0; p->member != NULL && i < p->size; i++)
		if (p->member[i] != NULL)
			session_abort(p->member[i]);
	if (p->timer != NULL)
		event_free(p->timer);
	free(p->member);
	free(p->ready);
	free(p);
}

/* The slot of s, or -1. */
static int
pool_slot(const struct pool *p, const struct session *s)
{
	unsigned	i;

	for (i = 0; s != NULL && i < p->size; i++)
		if (p->member[i] == s)
			return (int)i;
	return -1;
}

/* A ready member for a client; the pool refills behind it. */
struct session *
pool_take(struct pool *p)
{
	struct session	*s;
	unsigned	 i;

	if (p == NULL)
		return NULL;
	for (i = 0; i < p->size; i++) {
		if (p->member[i] == NULL || !p->ready[i])
			continue;
		s = p->member[i];
		p->member[i] = NULL;
		p->failures = 0;	/* it worked */
		if (!p->backing_off)
			pool_schedule(p, 0);
		return s;
	}
	return NULL;
}

/* Refill soon unless backing off. */
void
pool_kick(struct pool *p)
{
	if (p != NULL && !p->stopping && !p->backing_off)
		pool_schedule(p, 0);
}

/* What the status shows of the pool. */
void
pool_get_info(const struct pool *p, struct pool_info *info)
{
	unsigned	i;

	memset(info, 0, sizeof(*info));
	if (p == NULL)
		return;
	info->size = p->size;
	info->failures = p->failures;
	info->backing_off = p->backing_off;
	for (i = 0; i < p->size; i++)
		if (p->member[i] != NULL && p->ready[i])
			info->ready++;
}

/* A member finished TCP, TLS and the dialogue and waits for a client. */
static void
pool_member_ready(struct session *s, void *arg)
{
	struct pool	*p = arg;
	int		 i;

	if ((i = pool_slot(p, s)) >= 0)
		p->ready[i] = 1;
}

/* A member went away: refill now, or after a back-off when it failed. */
static void
pool_member_gone(struct session *s, int failed, void *arg)
{
	struct pool	*p = arg;
	uint64_t	 delay;
	unsigned	 shift;
	int		 i;

	if (p->stopping)
		return;
	if ((i = pool_slot(p, s)) >= 0)
		p->member[i] = NULL;
	if (!failed) {
		p->failures = 0;
		if (!p->backing_off)
			pool_schedule(p, 0);
		return;
	}
	p->failures++;
	shift = p->failures - 1 < 6 ? p->failures - 1 : 6;
	delay = (uint64_t)POOL_BACKOFF_FIRST_MS << shift;
	if (delay > POOL_BACKOFF_MAX_MS)
		delay = POOL_BACKOFF_MAX_MS;
	log_info("[%s] pool: connection failed (%u in a row); next attempt in "
	    "%.1fs", p->svc->cfg.name, p->failures, (double)delay / 1000.0);
	p->backing_off = 1;
	pool_schedule(p, delay);
}
