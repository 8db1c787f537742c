/*
 * monitor.h - what lets an operator see into the running daemon: the
 * control socket (`mailtlsd -s`), the metrics endpoint, SIGUSR1, the
 * hourly look at the servers' certificates and the service manager's
 * status line.
 *
 * The monitor asks its owner (runtime.c) for a picture of the daemon
 * whenever it needs one; it never sees a session itself.
 */
#ifndef MAILTLSD_MONITOR_H
#define MAILTLSD_MONITOR_H

struct config;
struct event_base;
struct evbuffer;
struct monitor;
struct stats_registry;
struct status;

struct monitor_hooks {
	/* Fill st with the daemon now; status_clear() frees what it holds. */
	void	(*fill)(struct status *st, void *arg);
	/* One line per live session (no newline in a line's text). */
	void	(*sessions)(struct evbuffer *out, void *arg);
	void	*arg;
};

/*
 * Bind the control socket and the metrics endpoint of cfg (before the
 * privilege drop) and serve them on base.  NULL after logging why when a
 * socket the configuration names cannot be served; the default control
 * socket only warns.
 */
struct monitor	*monitor_new(struct event_base *, const struct config *,
		    struct stats_registry *, const struct monitor_hooks *);
void		 monitor_free(struct monitor *);

/* The runtime sent its own status line (ready, reload): ours again soon. */
void		 monitor_refresh(struct monitor *);

/* The daemon is stopping: the status line is no longer the monitor's. */
void		 monitor_stopping(struct monitor *);

#endif /* MAILTLSD_MONITOR_H */
