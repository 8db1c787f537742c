/*
 * runtime.h - the running daemon: event loop, services, listeners and
 * sessions, and the transitions between configurations.
 */
#ifndef MAILTLSD_RUNTIME_H
#define MAILTLSD_RUNTIME_H

#include <sys/queue.h>
#include <time.h>

#include "config.h"

struct event;
struct event_base;
struct evdns_base;
struct listener;
struct peers;
struct service;
struct session;
struct sockaddr;

TAILQ_HEAD(session_list, session);

struct runtime {
	struct event_base	*base;
	struct evdns_base	*dns;
	struct config		*config;
	struct service		**services;
	int			 n_services;
	struct listener		**listeners;
	int			 n_listeners;
	struct session_list	 sessions;
	unsigned		 n_sessions;
	struct peers		*peers;		/* sessions per client address */
	unsigned long long	 next_session_id;
	int			 draining;
	int			 verbose;	/* -v steps over log_level */
	struct event		*sig_term;
	struct event		*sig_int;
	struct event		*sig_hup;
	struct event		*sig_pipe;
	/* When the generated local_tls certificate in use is made again
	 * (0: none is in use), and the daily look at the clock for it. */
	time_t			 local_cert_renew;
	struct event		*local_cert_timer;
};

/*
 * Build services and bind every listen address of config (which the
 * runtime then owns); NULL after logging why.
 */
struct runtime	*runtime_new(struct config *, int verbose);
void		 runtime_free(struct runtime *);

/* Log and notify that the daemon serves (after the privilege drop). */
void		 runtime_ready(const struct runtime *);

/* Run the loop until shutdown completes; the exit status. */
int		 runtime_run(struct runtime *);

/* Re-read the configuration file; on any error keep the current one. */
void		 runtime_reload(struct runtime *);

/* Stop accepting and let sessions drain (SIGTERM). */
void		 runtime_shutdown(struct runtime *);

/* A session ended: during shutdown the last one ends the loop. */
void		 runtime_session_ended(struct runtime *);

/* Whether another session may start now. */
int		 runtime_may_accept(const struct runtime *);

/* Whether the client at sa is below max_sessions_per_client. */
int		 runtime_may_accept_client(const struct runtime *,
		    const struct sockaddr *);

/*
 * The asynchronous resolver on base, set up as the daemon's own (also used
 * by mailtlsd -p); NULL when out of memory.
 */
struct evdns_base *runtime_dns_new(struct event_base *);

#endif /* MAILTLSD_RUNTIME_H */
