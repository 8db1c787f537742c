/*
 * runtime.h - the running daemon: event loop, services, listeners and
 * sessions, and the transitions between configurations.
 */
#ifndef MAILTLSD_RUNTIME_H
#define MAILTLSD_RUNTIME_H

struct config;
struct event_base;
struct runtime;

/*
 * Build services and bind every listen address of config (which the
 * runtime then owns); NULL after logging why.
 */
struct runtime	*runtime_new(struct config *, int verbose);
void		 runtime_free(struct runtime *);

/*
 * Start the OAuth2 accounts of the configuration, after the privilege
 * drop; 0, or -1 after logging why.
 */
int		 runtime_start_oauth2(struct runtime *);

/* Log and notify that the daemon serves (after the privilege drop). */
void		 runtime_ready(const struct runtime *);

/* Run the loop until shutdown completes; the exit status. */
int		 runtime_run(struct runtime *);

/* Re-read the configuration file; on any error keep the current one. */
void		 runtime_reload(struct runtime *);

/* Stop accepting and let sessions drain (SIGTERM). */
void		 runtime_shutdown(struct runtime *);

/* The event loop; the configuration in force; -v given. */
struct event_base *runtime_base(const struct runtime *);
const struct config *runtime_config(const struct runtime *);
int		 runtime_verbose(const struct runtime *);

#endif /* MAILTLSD_RUNTIME_H */
