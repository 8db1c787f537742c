/*
 * runtime.c - the running daemon: one event loop, the services of the
 * current configuration, their listeners, and the sessions.
 *
 * A reload builds the new services and listeners completely before it
 * touches the running ones, so an invalid file, an unreadable CA bundle or
 * an address that cannot be bound leaves the daemon exactly as it was.
 * Open sessions keep the service they started with.  The service manager
 * hears of each transition (notify.c): READY=1 once serving, RELOADING=1
 * and READY=1 around a reload, failed or not, and STOPPING=1 at shutdown.
 * While services present the generated local_tls certificate, a daily
 * timer reloads once that certificate is due for renewal, which makes it
 * again: a daemon may run longer than the certificate lasts.
 */
#include <signal.h>
#include <time.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>

#include "config.h"
#include "listener.h"
#include "localcert.h"
#include "log.h"
#include "monitor.h"
#include "notify.h"
#include "oauth2.h"
#include "peers.h"
#include "pool.h"
#include "runtime.h"
#include "service.h"
#include "session.h"
#include "stats.h"
#include "status.h"
#include "upstream.h"

#ifndef MAILTLSD_VERSION
#define MAILTLSD_VERSION "unknown"
#endif

/* The running daemon. */
struct runtime {
	struct session_host	 host;		/* loop, resolver, sessions */
	struct config		*config;
	struct service		**services;
	int			 n_services;
	struct listener		**listeners;
	int			 n_listeners;
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
	/* Counters per service name since start, and who shows them. */
	struct stats_registry	*stats;
	struct monitor		*monitor;
	time_t			 started;
	int			 oauth2_started; /* runtime_start_oauth2() ran */
};

static void	runtime_session_ended(void *);

/* A set of services and listeners being built or replaced. */
struct runtime_set {
	struct service	**services;
	int		  n_services;
	struct listener	**listeners;
	int		  n_listeners;
};

/* Free a set's services and listeners. */
static void
runtime_set_free(struct runtime_set *set)
{
	int	i;

	for (i = 0; i < set->n_listeners; i++)
		listener_free(set->listeners[i]);
	for (i = 0; i < set->n_services; i++)
		service_unref(set->services[i]);
	free(set->listeners);
	free(set->services);
	memset(set, 0, sizeof(*set));
}

/* Warn when passwords would cross a network in the clear. */
static void
runtime_warn_remote(const struct service_config *sc)
{
	int	i;

	if (!sc->allow_remote_clients || sc->local_tls != LOCAL_TLS_NONE)
		return;
	for (i = 0; i < sc->n_listen; i++)
		if (!sc->listen[i].is_loopback) {
			log_warnx("[%s] allow_remote_clients = yes with "
			    "local_tls = none: passwords cross the network "
			    "to %s in the clear; set local_tls = starttls or "
			    "implicit", sc->name, sc->listen[i].text);
			return;
		}
}

/*
 * Give the services with local_tls and no local_cert the generated
 * certificate (made or renewed in state_dir), and say when it is to be
 * made again (0: not used); -1 after logging why.
 */
static int
runtime_prepare_local_cert(struct config *cfg, time_t *renew_at)
{
	char	err[512];

	/* OAuth2 token files go in state_dir/oauth2, made by the store. */
	if (cfg->n_oauth2 > 0 &&
	    localcert_state_dir(cfg, err, sizeof(err)) != 0) {
		log_errorx("%s: oauth2: %s", cfg->path, err);
		return -1;
	}
	if (localcert_prepare(cfg, renew_at, err, sizeof(err)) == 0)
		return 0;
	log_errorx("%s: local_tls: %s", cfg->path, err);
	return -1;
}

/* Give a new service the counters kept for its name. */
static int
runtime_attach_stats(struct runtime *rt, struct service *svc)
{
	const struct service_config	*sc = &svc->cfg;
	char				 remote[CONFIG_HOST_MAX * 2 + 16];

	/* Counters are kept per name; another server, another certificate. */
	snprintf(remote, sizeof(remote), "%s:%u %s", sc->remote_host,
	    (unsigned)sc->remote_port, sc->server_name);
	if ((svc->stats = stats_attach(rt->stats, sc->name, remote)) == NULL) {
		log_errorx("[%s] out of memory", sc->name);
		return -1;
	}
	return 0;
}

/* Build every service of cfg; -1 after logging why. */
static int
runtime_build_services(struct runtime *rt, const struct config *cfg,
    struct runtime_set *set)
{
	char	err[512];
	int	i;

	set->services = calloc((size_t)cfg->n_services, sizeof(*set->services));
	if (set->services == NULL && cfg->n_services > 0) {
		log_errorx("out of memory");
		return -1;
	}
	for (i = 0; i < cfg->n_services; i++) {
		const struct service_config	*sc = &cfg->services[i];

		set->services[i] = service_new(sc, err, sizeof(err));
		if (set->services[i] == NULL) {
			log_errorx("%s:%d: [%s] %s", cfg->path, sc->line,
			    sc->name, err);
			return -1;
		}
		set->n_services++;
		if (runtime_attach_stats(rt, set->services[i]) != 0)
			return -1;
		if (!sc->verify)
			log_warnx("[%s] verify = no: the certificate of %s is "
			    "NOT checked; anyone on the path can read the "
			    "passwords", sc->name, sc->remote_host);
		runtime_warn_remote(sc);
	}
	return 0;
}

/* The listener of the current set bound to addr, taken out of it. */
static struct listener *
runtime_take_listener(struct runtime *rt, const struct listen_addr *addr)
{
	struct listener	*l;
	int		 i;

	for (i = 0; i < rt->n_listeners; i++) {
		l = rt->listeners[i];
		if (l != NULL && listener_matches(l, addr)) {
			rt->listeners[i] = NULL;
			return l;
		}
	}
	return NULL;
}

/* Put listeners taken for a failed reload back in place. */
static void
runtime_return_listeners(struct runtime *rt, struct runtime_set *set)
{
	int	i, j;

	for (i = 0; i < set->n_listeners; i++) {
		for (j = 0; j < rt->n_listeners; j++) {
			if (rt->listeners[j] == NULL) {
				rt->listeners[j] = set->listeners[i];
				set->listeners[i] = NULL;
				break;
			}
		}
	}
}

/* Bind (or take over) every listen address of the set's services. */
static int
runtime_build_listeners(struct runtime *rt, const struct config *cfg,
    struct runtime_set *set, int *n_reused)
{
	struct listener	*l;
	char		 err[512];
	int		 i, j, total = 0;

	for (i = 0; i < cfg->n_services; i++)
		total += cfg->services[i].n_listen;
	if ((set->listeners = calloc((size_t)total + 1,
	    sizeof(*set->listeners))) == NULL) {
		log_errorx("out of memory");
		return -1;
	}
	for (i = 0; i < set->n_services; i++) {
		const struct service_config	*sc = &set->services[i]->cfg;

		for (j = 0; j < sc->n_listen; j++) {
			/* A kept socket switches service in runtime_install. */
			l = runtime_take_listener(rt, &sc->listen[j]);
			if (l != NULL)
				(*n_reused)++;
			else if ((l = listener_new(&rt->host, &sc->listen[j],
			    set->services[i], err, sizeof(err))) == NULL) {
				log_errorx("%s:%d: [%s] %s", cfg->path,
				    sc->listen[j].line, sc->name, err);
				return -1;
			}
			set->listeners[set->n_listeners++] = l;
		}
	}
	return 0;
}

/* Close the pooled connections of the running services. */
static void
runtime_stop_pools(struct runtime *rt)
{
	struct pool	*pool;
	int		 i;

	for (i = 0; i < rt->n_services; i++) {
		pool = rt->services[i]->pool;
		pool_free(pool);	/* its members end before it is unset */
		rt->services[i]->pool = NULL;
	}
}

/* Start the pools of the running services that have pool_size set. */
static void
runtime_start_pools(struct runtime *rt)
{
	struct service	*svc;
	int		 i;

	for (i = 0; i < rt->n_services; i++) {
		svc = rt->services[i];
		if (svc->cfg.pool_size > 0 &&
		    (svc->pool = pool_new(&rt->host, svc)) == NULL)
			log_errorx("[%s] cannot start the pool: out of memory",
			    svc->cfg.name);
	}
}

/* Make set the running one; the previous is freed. */
static void
runtime_install(struct runtime *rt, struct runtime_set *set,
    struct config *cfg)
{
	struct runtime_set	old;
	int			i, j, k = 0;

	for (i = 0; i < set->n_services; i++)
		for (j = 0; j < set->services[i]->cfg.n_listen; j++)
			listener_set_service(set->listeners[k++],
			    set->services[i]);
	runtime_stop_pools(rt);
	old.services = rt->services;
	old.n_services = rt->n_services;
	old.listeners = rt->listeners;
	old.n_listeners = rt->n_listeners;
	runtime_set_free(&old);	/* listeners kept were taken out of it */

	rt->services = set->services;
	rt->n_services = set->n_services;
	rt->listeners = set->listeners;
	rt->n_listeners = set->n_listeners;
	config_free(rt->config);
	rt->config = cfg;
	rt->host.max_sessions = cfg->max_sessions;
	rt->host.max_per_client = cfg->max_sessions_per_client;
	log_set_level(log_level_raise(cfg->log_level, rt->verbose));
	runtime_start_pools(rt);
}

/* SIGTERM / SIGINT: stop accepting, drain. */
static void
runtime_signal_term_cb(evutil_socket_t sig, short what, void *arg)
{
	struct runtime	*rt = arg;

	(void)what;
	log_info("received %s: no longer accepting, draining %u session(s)",
	    sig == SIGINT ? "SIGINT" : "SIGTERM", rt->host.n_sessions);
	runtime_shutdown(rt);
}

/*
 * Look again at the generated certificate's renewal time within a day, or
 * never when none is in use.  Not one timer for the exact moment: the
 * wall clock may be set or the machine suspended meanwhile, and libevent
 * measures timers on the monotonic clock.
 */
static void
runtime_arm_local_cert(struct runtime *rt)
{
	struct timeval	tv;

	if (rt->local_cert_renew == 0) {
		evtimer_del(rt->local_cert_timer);
		return;
	}
	tv.tv_sec = localcert_next_check(rt->local_cert_renew, time(NULL));
	tv.tv_usec = 0;
	evtimer_add(rt->local_cert_timer, &tv);
}

static void runtime_reload_for(struct runtime *, const char *);

/*
 * The daily look: a daemon may run longer than the certificate lasts, so
 * when its renewal time has come, reload, which makes it again.  A reload
 * that fails leaves the time past, and the next try is a day later.
 */
static void
runtime_local_cert_cb(evutil_socket_t fd, short what, void *arg)
{
	struct runtime	*rt = arg;

	(void)fd;
	(void)what;
	if (rt->local_cert_renew != 0 &&
	    localcert_renew_due(rt->local_cert_renew, time(NULL)))
		runtime_reload_for(rt, "local_tls: the generated certificate "
		    "is due for renewal");
	runtime_arm_local_cert(rt);
}

/* SIGHUP: reload. */
static void
runtime_signal_hup_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	runtime_reload(arg);
}

/* The runtime's resolver. */
static int
runtime_init_dns(struct runtime *rt)
{
	rt->host.dns = upstream_dns_new(rt->host.base);
	return rt->host.dns != NULL ? 0 : -1;
}

/* Set up the loop, the resolver and the signals. */
static int
runtime_init_loop(struct runtime *rt)
{
	if ((rt->host.base = event_base_new()) == NULL)
		return -1;
	if (runtime_init_dns(rt) != 0)
		return -1;
	rt->sig_term = evsignal_new(rt->host.base, SIGTERM, runtime_signal_term_cb,
	    rt);
	rt->sig_int = evsignal_new(rt->host.base, SIGINT, runtime_signal_term_cb,
	    rt);
	rt->sig_hup = evsignal_new(rt->host.base, SIGHUP, runtime_signal_hup_cb, rt);
	if (rt->sig_term == NULL || rt->sig_int == NULL || rt->sig_hup == NULL)
		return -1;
	evsignal_add(rt->sig_term, NULL);
	evsignal_add(rt->sig_int, NULL);
	evsignal_add(rt->sig_hup, NULL);
	rt->local_cert_timer = evtimer_new(rt->host.base, runtime_local_cert_cb,
	    rt);
	return rt->local_cert_timer != NULL ? 0 : -1;
}

/* The place of a session's service in st, or -1 (a removed service). */
static int
runtime_status_index(const struct runtime *rt, const struct status *st,
    const struct service *svc)
{
	int	i;

	for (i = 0; i < st->n_services; i++)
		if (rt->services[i] == svc)
			return i;
	/* Sessions of the configuration before a reload. */
	for (i = 0; i < st->n_services; i++)
		if (strcmp(st->services[i].cfg->name, svc->cfg.name) == 0)
			return i;
	return -1;
}

/* Count the live sessions into the picture. */
static void
runtime_status_sessions(const struct runtime *rt, struct status *st)
{
	struct session		*s;
	struct session_info	 info;
	int			 i;

	for (s = TAILQ_FIRST(&rt->host.sessions); s != NULL;
	    s = session_next(s)) {
		session_get_info(s, &info);
		if (info.phase == STATS_PHASE_POOL)
			continue;	/* shown through its pool */
		st->sessions++;
		if ((i = runtime_status_index(rt, st, info.svc)) >= 0)
			st->services[i].active[info.phase]++;
	}
}

/* A picture of the daemon now, for the monitor. */
static void
runtime_fill_status(struct status *st, void *arg)
{
	struct runtime		*rt = arg;
	struct status_service	*ss;
	struct pool_info	 pool;
	int			 i;

	st->version = MAILTLSD_VERSION;
	st->pid = (long)getpid();
	st->now = time(NULL);
	st->started = rt->started;
	st->max_sessions = rt->host.max_sessions;
	st->draining = rt->draining;
	if ((st->services = calloc((size_t)rt->n_services + 1,
	    sizeof(*st->services))) != NULL)
		st->n_services = rt->n_services;
	for (i = 0; i < st->n_services; i++) {
		ss = &st->services[i];
		ss->cfg = &rt->services[i]->cfg;
		if (rt->services[i]->stats != NULL)
			ss->c = stats_counters(rt->services[i]->stats);
		pool_get_info(rt->services[i]->pool, &pool);
		ss->pool_size = pool.size;
		ss->pool_ready = pool.ready;
		ss->pool_failures = pool.failures;
		ss->pool_backing_off = pool.backing_off;
	}
	runtime_status_sessions(rt, st);
	if (rt->host.oauth2 != NULL)
		oauth2_foreach_account(rt->host.oauth2,
		    status_add_oauth2_account, st);
}

/* One line per live session, for the control socket and SIGUSR1. */
static void
runtime_list_sessions(struct evbuffer *out, void *arg)
{
	struct runtime		*rt = arg;
	struct session		*s;
	struct session_info	 info;

	evbuffer_add_printf(out, "%u session(s)\n", rt->host.n_sessions);
	for (s = TAILQ_FIRST(&rt->host.sessions); s != NULL;
	    s = session_next(s)) {
		session_get_info(s, &info);
		evbuffer_add_printf(out, "#%llu [%s] %s %s (%s), %.1fs, %llu "
		    "bytes to the server, %llu to the client\n", info.id,
		    info.svc->cfg.name, info.client[0] != '\0' ? info.client :
		    "pool", info.state, stats_phase_name(info.phase), info.age,
		    info.bytes_up, info.bytes_down);
	}
}

/* Start the control socket, the metrics and the warnings. */
static int
runtime_start_monitor(struct runtime *rt)
{
	const struct monitor_hooks	hooks = {
		.fill = runtime_fill_status,
		.sessions = runtime_list_sessions,
		.arg = rt,
	};

	rt->monitor = monitor_new(rt->host.base, rt->config, rt->stats,
	    &hooks);
	return rt->monitor != NULL ? 0 : -1;
}

/* Build the running daemon for cfg. */
struct runtime *
runtime_new(struct config *cfg, int verbose)
{
	struct runtime		*rt;
	struct runtime_set	 set = { 0 };
	time_t			 renew_at;
	int			 reused = 0;

	if ((rt = calloc(1, sizeof(*rt))) == NULL) {
		config_free(cfg);
		return NULL;
	}
	TAILQ_INIT(&rt->host.sessions);
	rt->host.ended = runtime_session_ended;
	rt->host.arg = rt;
	rt->config = cfg;
	rt->verbose = verbose;
	rt->started = time(NULL);
	if ((rt->host.peers = peers_new()) == NULL ||
	    (rt->stats = stats_registry_new()) == NULL ||
	    runtime_init_loop(rt) != 0) {
		log_errorx("cannot set up the event loop");
		goto err;
	}
	if (runtime_prepare_local_cert(cfg, &renew_at) != 0 ||
	    runtime_build_services(rt, cfg, &set) != 0 ||
	    runtime_build_listeners(rt, cfg, &set, &reused) != 0)
		goto err;
	rt->config = NULL;
	runtime_install(rt, &set, cfg);
	rt->local_cert_renew = renew_at;
	runtime_arm_local_cert(rt);
	if (runtime_start_monitor(rt) != 0)
		goto err_installed;
	return rt;
err_installed:
	runtime_free(rt);
	return NULL;
err:
	runtime_set_free(&set);
	runtime_free(rt);
	return NULL;
}

/*
 * user and pid_file act once, at start: a reload that changes them says so
 * and keeps the running values, which the new configuration then shows.
 */
static void
runtime_keep_start_settings(const struct config *running, struct config *cfg)
{
	if (strcmp(cfg->user, running->user) != 0)
		log_warnx("%s: user changed from \"%s\" to \"%s\": this takes "
		    "effect only when mailtlsd is restarted", cfg->path,
		    running->user, cfg->user);
	if (strcmp(cfg->pid_file, running->pid_file) != 0)
		log_warnx("%s: pid_file changed from \"%s\" to \"%s\": this "
		    "takes effect only when mailtlsd is restarted", cfg->path,
		    running->pid_file, cfg->pid_file);
	snprintf(cfg->user, sizeof(cfg->user), "%s", running->user);
	snprintf(cfg->pid_file, sizeof(cfg->pid_file), "%s",
	    running->pid_file);
	if (strcmp(cfg->control_socket, running->control_socket) != 0)
		log_warnx("%s: control_socket changed from \"%s\" to \"%s\": "
		    "this takes effect only when mailtlsd is restarted",
		    cfg->path, running->control_socket, cfg->control_socket);
	if (strcmp(cfg->metrics_listen.text, running->metrics_listen.text) != 0)
		log_warnx("%s: metrics_listen changed from \"%s\" to \"%s\": "
		    "this takes effect only when mailtlsd is restarted",
		    cfg->path, running->metrics_listen.text[0] != '\0' ?
		    running->metrics_listen.text : "none",
		    cfg->metrics_listen.text[0] != '\0' ?
		    cfg->metrics_listen.text : "none");
	memcpy(cfg->control_socket, running->control_socket,
	    sizeof(cfg->control_socket));
	cfg->control_socket_set = running->control_socket_set;
	cfg->metrics_listen = running->metrics_listen;
}

/*
 * Give OAuth2 accounts the configuration cfg (creating them at the first
 * section); 0, or -1 after logging why (the running accounts are kept).
 */
static int
runtime_update_oauth2(struct runtime *rt, const struct config *cfg)
{
	char	err[256];

	if (!rt->oauth2_started)
		return 0;
	if (rt->host.oauth2 != NULL) {
		if (oauth2_reload(rt->host.oauth2, cfg, err, sizeof(err)) == 0)
			return 0;
	} else if (cfg->n_oauth2 == 0 || (rt->host.oauth2 = oauth2_new(
	    rt->host.base, cfg, err, sizeof(err))) != NULL)
		return 0;
	log_errorx("oauth2: %s", err);
	return -1;
}

/*
 * OAuth2 accounts start once privileges are dropped and -d has forked:
 * their token files belong to the daemon's user, and their worker thread
 * to the process that runs.
 */
int
runtime_start_oauth2(struct runtime *rt)
{
	rt->oauth2_started = 1;
	return runtime_update_oauth2(rt, rt->config);
}

/* Load the file again and switch to it; -1 (running one kept) on error. */
static int
runtime_reload_config(struct runtime *rt)
{
	struct config_errors	 errs = { 0 };
	struct runtime_set	 set = { 0 };
	struct config		*cfg;
	time_t			 renew_at;
	int			 i, reused = 0;

	if ((cfg = config_load(rt->config->path, &errs)) == NULL) {
		for (i = 0; i < errs.count; i++)
			log_errorx("%s", errs.lines[i]);
		config_errors_clear(&errs);
		log_errorx("reload failed: keeping the running configuration");
		return -1;
	}
	for (i = 0; i < cfg->warnings.count; i++)
		log_warnx("%s", cfg->warnings.lines[i]);
	runtime_keep_start_settings(rt->config, cfg);
	if (runtime_prepare_local_cert(cfg, &renew_at) != 0 ||
	    runtime_build_services(rt, cfg, &set) != 0 ||
	    runtime_build_listeners(rt, cfg, &set, &reused) != 0 ||
	    runtime_update_oauth2(rt, cfg) != 0) {
		runtime_return_listeners(rt, &set);
		runtime_set_free(&set);
		config_free(cfg);
		log_errorx("reload failed: keeping the running configuration");
		return -1;
	}
	runtime_install(rt, &set, cfg);
	rt->local_cert_renew = renew_at;
	runtime_arm_local_cert(rt);
	log_info("configuration reloaded: %d service(s), %d listener(s) "
	    "(%d kept)", rt->n_services, rt->n_listeners, reused);
	return 0;
}

/* Tell the service manager what the daemon serves, after prefix. */
static void
runtime_notify_ready(const struct runtime *rt, const char *prefix)
{
	char	status[256];

	snprintf(status, sizeof(status), "%sserving %d service(s) on %d "
	    "address(es)", prefix, rt->n_services, rt->n_listeners);
	notify_ready(status);
	monitor_refresh(rt->monitor);
}

/* Re-read the configuration, saying why; keep the running one on error. */
static void
runtime_reload_for(struct runtime *rt, const char *why)
{
	log_info("%s: reloading %s", why, rt->config->path);
	if (rt->draining) {
		log_warnx("reload ignored: the daemon is shutting down");
		return;
	}
	notify_reloading("reloading the configuration");
	if (runtime_reload_config(rt) != 0)
		runtime_notify_ready(rt, "reload failed, see the log; ");
	else
		runtime_notify_ready(rt, "");
}

/* SIGHUP: re-read the configuration. */
void
runtime_reload(struct runtime *rt)
{
	runtime_reload_for(rt, "received SIGHUP");
}

/* Every listener is bound and privileges are dropped: say so. */
void
runtime_ready(const struct runtime *rt)
{
	log_info("ready: %d service(s) on %d address(es)", rt->n_services,
	    rt->n_listeners);
	runtime_notify_ready(rt, "");
}

/* Tell the service manager the daemon is going away. */
static void
runtime_notify_stopping(const struct runtime *rt)
{
	char	status[128];

	snprintf(status, sizeof(status), "shutting down, draining %u "
	    "session(s)", rt->host.n_sessions);
	notify_stopping(status);
}

/* Stop accepting; the loop ends when the last session has drained. */
void
runtime_shutdown(struct runtime *rt)
{
	struct session	*s;
	int		 i;

	if (!rt->draining) {
		rt->draining = 1;
		monitor_stopping(rt->monitor);
		runtime_notify_stopping(rt);
		evtimer_del(rt->local_cert_timer);
		runtime_stop_pools(rt);
		for (i = 0; i < rt->n_listeners; i++)
			listener_free(rt->listeners[i]);
		rt->n_listeners = 0;
		for (s = TAILQ_FIRST(&rt->host.sessions); s != NULL;
		    s = session_next(s))
			session_drain(s);
	}
	if (rt->host.n_sessions == 0)
		event_base_loopbreak(rt->host.base);
}

/* A session was freed: pools waiting for room may refill. */
static void
runtime_session_ended(void *arg)
{
	struct runtime	*rt = arg;
	int		 i;

	if (rt->draining) {
		if (rt->host.n_sessions == 0)
			event_base_loopbreak(rt->host.base);
		return;
	}
#if defined(__GLIBC__)
	/* Idle: give the memory of the last sessions back to the system. */
	if (rt->host.n_sessions == 0)
		malloc_trim(0);
#endif
	for (i = 0; i < rt->n_services; i++)
		pool_kick(rt->services[i]->pool);
}

/* The loop, for what must run on it (a fork's event_reinit()). */
struct event_base *
runtime_base(const struct runtime *rt)
{
	return rt->host.base;
}

/* The configuration in force. */
const struct config *
runtime_config(const struct runtime *rt)
{
	return rt->config;
}

/* How many -v the command line gave. */
int
runtime_verbose(const struct runtime *rt)
{
	return rt->verbose;
}

/* Run until shut down. */
int
runtime_run(struct runtime *rt)
{
	if (event_base_dispatch(rt->host.base) < 0) {
		log_errorx("event loop failed");
		return 1;
	}
	log_info("all sessions closed, exiting");
	return 0;
}

/* Free everything; open sessions are cut.  NULL is fine. */
void
runtime_free(struct runtime *rt)
{
	struct runtime_set	set;

	if (rt == NULL)
		return;
	monitor_free(rt->monitor);
	rt->monitor = NULL;
	runtime_stop_pools(rt);
	while (!TAILQ_EMPTY(&rt->host.sessions))
		session_abort(TAILQ_FIRST(&rt->host.sessions));
	set.services = rt->services;
	set.n_services = rt->n_services;
	set.listeners = rt->listeners;
	set.n_listeners = rt->n_listeners;
	runtime_set_free(&set);
	oauth2_free(rt->host.oauth2);
	peers_free(rt->host.peers);
	if (rt->sig_term != NULL)
		event_free(rt->sig_term);
	if (rt->sig_int != NULL)
		event_free(rt->sig_int);
	if (rt->sig_hup != NULL)
		event_free(rt->sig_hup);
	if (rt->local_cert_timer != NULL)
		event_free(rt->local_cert_timer);
	if (rt->host.dns != NULL)
		evdns_base_free(rt->host.dns, 1);
	if (rt->host.base != NULL)
		event_base_free(rt->host.base);
	config_free(rt->config);
	stats_registry_free(rt->stats);
	free(rt);
}
