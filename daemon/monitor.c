/*
 * monitor.c - the operator's views of the running daemon (see
 * monitor.h): the control socket's requests, the metrics endpoint,
 * SIGUSR1's summary in the log, the hourly look at the certificates and
 * the service manager's status line.
 *
 * The status line follows the counts it shows (sessions, failing
 * services) as they change, at most once a second: a change arms a timer
 * for the rest of the second since the last update, and the line is sent
 * only when its text differs.
 */
#include <pwd.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "config.h"
#include "control.h"
#include "log.h"
#include "metrics.h"
#include "monitor.h"
#include "notify.h"
#include "stats.h"
#include "status.h"

#define MONITOR_LINE_MS		1000	/* the status line's fastest pace */
#define MONITOR_EXPIRY_SECS	3600	/* a look at the certificates */

struct monitor {
	struct stats_registry	*reg;
	struct monitor_hooks	 hooks;
	struct control		*control;
	struct metrics		*metrics;
	struct event		*sig_usr1;
	struct event		*expiry_timer;
	struct event		*line_timer;
	uint64_t		 line_sent_ms;
	int			 stopping;
	char			 line[160];	/* the status line last sent */
};

typedef int	monitor_render_fn(const struct status *, struct evbuffer *);

/* Milliseconds of a clock that never jumps. */
static uint64_t
monitor_now_ms(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Render a picture of the daemon now with fn into out. */
static int
monitor_render(struct monitor *m, monitor_render_fn *fn, struct evbuffer *out)
{
	struct status	st;
	int		ret;

	memset(&st, 0, sizeof(st));
	m->hooks.fill(&st, m->hooks.arg);
	ret = fn(&st, out);
	status_clear(&st);
	return ret;
}

/* A request on the control socket. */
static int
monitor_answer(const char *request, struct evbuffer *out, void *arg)
{
	struct monitor	*m = arg;

	if (strcmp(request, "status") == 0)
		return monitor_render(m, status_text, out);
	if (strcmp(request, "status json") == 0) {
		if (monitor_render(m, status_json, out) == 0)
			return 0;
		evbuffer_add_printf(out, "error: out of memory\n");
		return 0;
	}
	if (strcmp(request, "sessions") == 0) {
		m->hooks.sessions(out, m->hooks.arg);
		return 0;
	}
	evbuffer_add_printf(out, "error: unknown request; the requests are "
	    "\"status\", \"status json\" and \"sessions\"\n");
	return -1;
}

/* GET /metrics. */
static int
monitor_metrics(struct evbuffer *out, void *arg)
{
	return monitor_render(arg, status_prometheus, out);
}

/* Log every line of buf with a prefix. */
static void
monitor_log_lines(struct evbuffer *buf, const char *prefix)
{
	char	*line;
	size_t	 len;

	while ((line = evbuffer_readln(buf, &len, EVBUFFER_EOL_LF)) != NULL) {
		if (len > 0)
			log_report("%s%s", prefix, line);
		free(line);
	}
}

/* SIGUSR1: the summary and the live sessions, to the log. */
static void
monitor_usr1_cb(evutil_socket_t sig, short what, void *arg)
{
	struct monitor	*m = arg;
	struct evbuffer	*buf;

	(void)sig;
	(void)what;
	if ((buf = evbuffer_new()) == NULL) {
		log_errorx("SIGUSR1: out of memory");
		return;
	}
	log_report("status (SIGUSR1):");
	monitor_render(m, status_text, buf);
	monitor_log_lines(buf, "status: ");
	m->hooks.sessions(buf, m->hooks.arg);
	monitor_log_lines(buf, "status: ");
	log_report("status: end");
	evbuffer_free(buf);
}

/* The hourly look at the servers' certificates (each warns once a day). */
static void
monitor_expiry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct monitor	*m = arg;
	struct timeval	 tv = { MONITOR_EXPIRY_SECS, 0 };

	(void)fd;
	(void)what;
	stats_registry_check_expiry(m->reg, time(NULL));
	evtimer_add(m->expiry_timer, &tv);
}

/* Send the status line if it changed. */
static void
monitor_line_cb(evutil_socket_t fd, short what, void *arg)
{
	struct monitor	*m = arg;
	struct status	 st;
	char		 line[sizeof(m->line)];

	(void)fd;
	(void)what;
	if (m->stopping)
		return;
	memset(&st, 0, sizeof(st));
	m->hooks.fill(&st, m->hooks.arg);
	status_line(&st, line, sizeof(line));
	status_clear(&st);
	m->line_sent_ms = monitor_now_ms();
	if (strcmp(line, m->line) == 0)
		return;
	memcpy(m->line, line, sizeof(line));
	notify_send("STATUS=%s", line);
}

/* A count the status line shows changed: update it within a second. */
static void
monitor_poke(void *arg)
{
	struct monitor	*m = arg;
	struct timeval	 tv = { 0, 0 };
	uint64_t	 since;

	if (m->stopping || !notify_active() ||
	    evtimer_pending(m->line_timer, NULL))
		return;
	since = monitor_now_ms() - m->line_sent_ms;
	if (since < MONITOR_LINE_MS)
		tv.tv_usec = (suseconds_t)(MONITOR_LINE_MS - since) * 1000;
	evtimer_add(m->line_timer, &tv);
}

/* The user the control socket is for: uid and gid, or -1 for as we are. */
static void
monitor_socket_owner(const struct config *cfg, uid_t *uid, gid_t *gid)
{
	struct passwd	*pw;

	*uid = (uid_t)-1;
	*gid = (gid_t)-1;
	if (cfg->user[0] == '\0' || geteuid() != 0 ||
	    (pw = getpwnam(cfg->user)) == NULL)
		return;
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
}

/* Bind and serve the control socket; -1 after logging why. */
static int
monitor_start_control(struct monitor *m, struct event_base *base,
    const struct config *cfg)
{
	char	err[512];
	uid_t	uid;
	gid_t	gid;
	int	fd;

	if (cfg->control_socket[0] == '\0')
		return 0;
	monitor_socket_owner(cfg, &uid, &gid);
	fd = control_bind(cfg->control_socket, uid, gid,
	    !cfg->control_socket_set, err, sizeof(err));
	if (fd < 0 && cfg->control_socket_set) {
		log_errorx("%s: control_socket: %s", cfg->path, err);
		return -1;
	}
	if (fd < 0) {
		log_warnx("control socket: %s; mailtlsd -s will not work (set "
		    "control_socket in [global], or none)", err);
		return 0;
	}
	if ((m->control = control_new(base, fd, cfg->control_socket,
	    monitor_answer, m)) == NULL) {
		close(fd);
		log_errorx("control socket: out of memory");
		return -1;
	}
	log_info("control socket at %s (mailtlsd -s)", cfg->control_socket);
	return 0;
}

/* Bind and serve the metrics endpoint; -1 after logging why. */
static int
monitor_start_metrics(struct monitor *m, struct event_base *base,
    const struct config *cfg)
{
	const struct listen_addr	*la = &cfg->metrics_listen;
	char				 err[512];
	int				 fd;

	if (la->addrlen == 0)
		return 0;
	if ((fd = metrics_bind((const struct sockaddr *)&la->addr, la->addrlen,
	    la->text, err, sizeof(err))) < 0) {
		log_errorx("%s:%d: %s", cfg->path, la->line, err);
		return -1;
	}
	if ((m->metrics = metrics_new(base, fd, monitor_metrics, m)) == NULL) {
		close(fd);
		log_errorx("metrics: out of memory");
		return -1;
	}
	log_info("metrics at http://%s/metrics", la->text);
	return 0;
}

/* Start every view of cfg. */
struct monitor *
monitor_new(struct event_base *base, const struct config *cfg,
    struct stats_registry *reg, const struct monitor_hooks *hooks)
{
	struct monitor	*m;
	struct timeval	 tv = { MONITOR_EXPIRY_SECS, 0 };

	if ((m = calloc(1, sizeof(*m))) == NULL) {
		log_errorx("out of memory");
		return NULL;
	}
	m->reg = reg;
	m->hooks = *hooks;
	m->sig_usr1 = evsignal_new(base, SIGUSR1, monitor_usr1_cb, m);
	m->expiry_timer = evtimer_new(base, monitor_expiry_cb, m);
	m->line_timer = evtimer_new(base, monitor_line_cb, m);
	if (m->sig_usr1 == NULL || m->expiry_timer == NULL ||
	    m->line_timer == NULL) {
		log_errorx("out of memory");
		goto err;
	}
	if (monitor_start_control(m, base, cfg) != 0 ||
	    monitor_start_metrics(m, base, cfg) != 0)
		goto err;
	evsignal_add(m->sig_usr1, NULL);
	evtimer_add(m->expiry_timer, &tv);
	stats_registry_observe(reg, monitor_poke, m);
	return m;
err:
	monitor_free(m);
	return NULL;
}

/* The runtime's own status line is in force now (ready, reload). */
void
monitor_refresh(struct monitor *m)
{
	if (m == NULL)
		return;
	m->line[0] = '\0';
	monitor_poke(m);
}

/* Shutting down: leave the status line to the runtime. */
void
monitor_stopping(struct monitor *m)
{
	if (m == NULL)
		return;
	m->stopping = 1;
	evtimer_del(m->line_timer);
}

/* Stop every view; the control socket's file is removed. */
void
monitor_free(struct monitor *m)
{
	if (m == NULL)
		return;
	stats_registry_observe(m->reg, NULL, NULL);
	control_free(m->control);
	metrics_free(m->metrics);
	if (m->sig_usr1 != NULL)
		event_free(m->sig_usr1);
	if (m->expiry_timer != NULL)
		event_free(m->expiry_timer);
	if (m->line_timer != NULL)
		event_free(m->line_timer);
	free(m);
}
