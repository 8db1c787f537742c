/*
 * status.h - one picture of the running daemon, and its three renderings:
 * the text of `mailtlsd -s`, the JSON of `mailtlsd -s -j`, and the
 * Prometheus text exposition format of the metrics endpoint.
 *
 * runtime.c fills a struct status from its services, sessions and pools;
 * the renderings are pure (a picture in, bytes out), so the unit tests
 * feed them pictures.  Nothing secret is in a picture: no password, token
 * or client data, only counts, names, addresses and the reasons of
 * failures in the daemon's own words.
 */
#ifndef MAILTLSD_STATUS_H
#define MAILTLSD_STATUS_H

#include <stddef.h>
#include <time.h>

#include "oauth2.h"
#include "stats.h"

struct evbuffer;
struct service_config;

#define STATUS_ACCOUNTS_MAX	1024	/* OAuth2 accounts shown */

/* One service of the configuration in force. */
struct status_service {
	const struct service_config	*cfg;
	const struct stats_counters	*c;	/* NULL: none (out of memory) */
	unsigned			 active[STATS_PHASES];
	unsigned			 pool_size;
	unsigned			 pool_ready;
	unsigned			 pool_failures;	/* in a row */
	int				 pool_backing_off;
};

/* One OAuth2 account, copied (its strings may not outlive the call). */
struct status_account {
	char	section[64];
	char	user[256];
	int	authorised;
	int	flow_pending;
	time_t	access_expires;		/* 0: unknown */
	time_t	last_refresh;		/* 0: none since start */
	char	last_error[OAUTH2_TEXT_MAX];	/* "": none */
};

struct status {
	const char		*version;
	long			 pid;
	time_t			 now;
	time_t			 started;
	unsigned		 sessions;	/* client sessions, all services */
	unsigned		 max_sessions;
	int			 draining;	/* shutting down */
	struct status_service	*services;
	int			 n_services;
	struct status_account	*accounts;
	int			 n_accounts;
	int			 cap_accounts;
	int			 accounts_dropped;	/* over the maximum */
};

/*
 * Add an OAuth2 account to st (a struct status *); the signature of
 * oauth2_foreach_account()'s callback.
 */
void	status_add_oauth2_account(const struct oauth2_account_status *,
	    void *st);

/*
 * Free what the picture holds (services and accounts, from malloc);
 * not st itself.
 */
void	status_clear(struct status *);

/*
 * The renderings, appended to out.  status_json() returns -1 when out of
 * memory (nothing is appended); the others return 0, their output cut
 * short if memory runs out.
 */
int	status_text(const struct status *, struct evbuffer *out);
int	status_json(const struct status *, struct evbuffer *out);
int	status_prometheus(const struct status *, struct evbuffer *out);

/* The systemd status line: "serving 5 services, 3 sessions, 0 failing". */
void	status_line(const struct status *, char *buf, size_t len);

#endif /* MAILTLSD_STATUS_H */
