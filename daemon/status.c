/*
 * status.c - the renderings of a status picture (see status.h): text for
 * people, JSON for programs, the Prometheus exposition format for metrics.
 *
 * The three show the same numbers.  Text from outside (a server's words
 * in a failure's reason) is made safe for each: control characters become
 * '?' in text, JSON escapes, and the metrics carry no free text at all,
 * only names that the configuration already restricts (escaped anyway).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "config.h"
#include "oauth2.h"
#include "stats.h"
#include "status.h"

#define STATUS_DAY	86400

/* The phases a client's session shows (the pool is shown apart). */
static const enum stats_phase status_client_phases[] = {
	STATS_PHASE_REACHING, STATS_PHASE_LOGIN, STATS_PHASE_RELAYING,
	STATS_PHASE_CLOSING
};
#define STATUS_CLIENT_PHASES \
	(sizeof(status_client_phases) / sizeof(status_client_phases[0]))

/* Add an OAuth2 account, copying its strings. */
void
status_add_oauth2_account(const struct oauth2_account_status *a, void *arg)
{
	struct status		*st = arg;
	struct status_account	*acc, *v;
	int			 cap;

	if (st->n_accounts >= STATUS_ACCOUNTS_MAX) {
		st->accounts_dropped++;
		return;
	}
	if (st->n_accounts == st->cap_accounts) {
		cap = st->cap_accounts == 0 ? 8 : st->cap_accounts * 2;
		if ((v = realloc(st->accounts, (size_t)cap * sizeof(*v))) ==
		    NULL) {
			st->accounts_dropped++;
			return;
		}
		st->accounts = v;
		st->cap_accounts = cap;
	}
	acc = &st->accounts[st->n_accounts++];
	memset(acc, 0, sizeof(*acc));
	snprintf(acc->section, sizeof(acc->section), "%s",
	    a->section != NULL ? a->section : "");
	snprintf(acc->user, sizeof(acc->user), "%s",
	    a->user != NULL ? a->user : "");
	acc->authorised = a->authorised;
	acc->flow_pending = a->flow_pending;
	acc->access_expires = a->access_expires;
	acc->last_refresh = a->last_refresh;
	if (a->last_error != NULL)
		snprintf(acc->last_error, sizeof(acc->last_error), "%s",
		    a->last_error);
}

/* Free the services and the accounts. */
void
status_clear(struct status *st)
{
	free(st->services);
	st->services = NULL;
	st->n_services = 0;
	free(st->accounts);
	st->accounts = NULL;
	st->n_accounts = st->cap_accounts = 0;
}

/* ---- Shared pieces -------------------------------------------------------- */

/* "2025-12-07 06:10:00 UTC" (iso: "2025-12-07T06:10:00Z"). */
static void
status_time(time_t t, int iso, char *buf, size_t len)
{
	struct tm	tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, iso ? "%Y-%m-%dT%H:%M:%SZ" :
	    "%Y-%m-%d %H:%M:%S UTC", &tm);
}

/* A duration in words: "45s", "12m 03s", "2h 03m", "3d 04h". */
static void
status_duration(long long secs, char *buf, size_t len)
{
	if (secs < 0)
		secs = 0;
	if (secs < 60)
		snprintf(buf, len, "%llds", secs);
	else if (secs < 3600)
		snprintf(buf, len, "%lldm %02llds", secs / 60, secs % 60);
	else if (secs < STATUS_DAY)
		snprintf(buf, len, "%lldh %02lldm", secs / 3600,
		    secs % 3600 / 60);
	else
		snprintf(buf, len, "%lldd %02lldh", secs / STATUS_DAY,
		    secs % STATUS_DAY / 3600);
}

/* A byte count in words: "512 B", "1.2 KiB", "45.3 MiB". */
static void
status_bytes(uint64_t n, char *buf, size_t len)
{
	static const char *const units[] = { "KiB", "MiB", "GiB", "TiB" };
	double	v = (double)n;
	int	i = -1;

	if (n < 1024) {
		snprintf(buf, len, "%llu B", (unsigned long long)n);
		return;
	}
	while (v >= 1024 && i < 3) {
		v /= 1024;
		i++;
	}
	snprintf(buf, len, "%.1f %s", v, units[i]);
}

/* Control characters of outside text as '?', for a terminal or a log. */
static void
status_safe(const char *in, char *out, size_t len)
{
	size_t	i;

	for (i = 0; in[i] != '\0' && i + 1 < len; i++)
		out[i] = (unsigned char)in[i] < 0x20 || in[i] == 0x7f ? '?' :
		    in[i];
	out[i] = '\0';
}

/* The listen addresses of a service, separated by sep. */
static void
status_listen(const struct service_config *sc, const char *sep, char *buf,
    size_t len)
{
	size_t	n = 0;
	int	i;

	buf[0] = '\0';
	for (i = 0; i < sc->n_listen && n < len; i++)
		n += (size_t)snprintf(buf + n, len - n, "%s%s", i > 0 ? sep :
		    "", sc->listen[i].text);
}

/* Client sessions of a service now, pool members aside. */
static unsigned
status_active(const struct status_service *svc)
{
	unsigned	n = 0;
	size_t		i;

	for (i = 0; i < STATUS_CLIENT_PHASES; i++)
		n += svc->active[status_client_phases[i]];
	return n;
}

/* Whether a service's last attempts to reach its server failed. */
static int
status_failing(const struct status_service *svc)
{
	return svc->c != NULL && svc->c->streak > 0;
}

/* The systemd status line. */
void
status_line(const struct status *st, char *buf, size_t len)
{
	int	i, failing = 0;

	for (i = 0; i < st->n_services; i++)
		failing += status_failing(&st->services[i]);
	snprintf(buf, len, "serving %d service%s, %u session%s, %d failing",
	    st->n_services, st->n_services == 1 ? "" : "s", st->sessions,
	    st->sessions == 1 ? "" : "s", failing);
}

/* ---- Text ---------------------------------------------------------------- */

/* The failures of a service, "connect 1, tls_verify 2" or "none". */
static void
status_text_failures(const struct stats_counters *c, char *buf, size_t len)
{
	size_t	n = 0;
	int	r;

	buf[0] = '\0';
	for (r = STATS_REASON_NONE + 1; r < STATS_REASONS && n < len; r++)
		if (c->failures[r] > 0)
			n += (size_t)snprintf(buf + n, len - n, "%s%s %llu",
			    n > 0 ? ", " : "", stats_reason_name(r),
			    (unsigned long long)c->failures[r]);
	if (n == 0)
		snprintf(buf, len, "none");
}

/* The daemon's lines before the services. */
static void
status_text_head(const struct status *st, struct evbuffer *out)
{
	char	up[32], since[40];

	status_duration((long long)(st->now - st->started), up, sizeof(up));
	status_time(st->started, 0, since, sizeof(since));
	evbuffer_add_printf(out, "mailtlsd %s, pid %ld, up %s (since %s)%s\n",
	    st->version, st->pid, up, since, st->draining ?
	    ", shutting down" : "");
	evbuffer_add_printf(out, "sessions: %u (max_sessions %u)\n",
	    st->sessions, st->max_sessions);
}

/* Sessions now and the pool of a service. */
static void
status_text_now(const struct status_service *svc, struct evbuffer *out)
{
	evbuffer_add_printf(out, "  sessions now:  %u (%u reaching the server, "
	    "%u before login, %u relaying, %u closing)\n", status_active(svc),
	    svc->active[STATS_PHASE_REACHING], svc->active[STATS_PHASE_LOGIN],
	    svc->active[STATS_PHASE_RELAYING],
	    svc->active[STATS_PHASE_CLOSING]);
	if (svc->pool_size == 0)
		return;
	evbuffer_add_printf(out, "  pool:          %u ready of %u", svc->pool_ready,
	    svc->pool_size);
	if (svc->pool_backing_off)
		evbuffer_add_printf(out, ", backing off after %u failure(s) in "
		    "a row", svc->pool_failures);
	evbuffer_add_printf(out, "\n");
}

/* Totals and failures of a service. */
static void
status_text_totals(const struct status *st, const struct stats_counters *c,
    struct evbuffer *out)
{
	char	up[32], down[32], fails[400], when[40], ago[32], text[256];

	status_bytes(c->bytes_up, up, sizeof(up));
	status_bytes(c->bytes_down, down, sizeof(down));
	evbuffer_add_printf(out, "  since start:   %llu sessions (%llu ok, %llu "
	    "failed), %s to the server, %s to clients\n",
	    (unsigned long long)(c->sessions_ok + c->sessions_failed),
	    (unsigned long long)c->sessions_ok,
	    (unsigned long long)c->sessions_failed, up, down);
	status_text_failures(c, fails, sizeof(fails));
	evbuffer_add_printf(out, "  failures:      %s\n", fails);
	if (c->last_reason != STATS_REASON_NONE) {
		status_time(c->last_failure, 0, when, sizeof(when));
		status_duration((long long)(st->now - c->last_failure), ago,
		    sizeof(ago));
		status_safe(c->last_text, text, sizeof(text));
		evbuffer_add_printf(out, "  last failure:  %s (%s ago), %s: "
		    "%s\n", when, ago, stats_reason_name(c->last_reason), text);
	}
	if (c->streak >= STATS_STREAK_WARN)
		evbuffer_add_printf(out, "  WARNING:       the last %u attempts "
		    "to reach the server failed (%s): %s\n", c->streak,
		    stats_reason_name(c->last_reason),
		    stats_reason_advice(c->last_reason));
	else if (c->streak > 0)
		evbuffer_add_printf(out, "  failing:       the last %u "
		    "attempt(s) to reach the server failed\n", c->streak);
}

/* TLS and the certificate of a service's server. */
static void
status_text_tls(const struct status *st, const struct stats_counters *c,
    struct evbuffer *out)
{
	char	when[40], left[32], ago[32], version[32], suite[96];

	if (c->handshakes == 0) {
		evbuffer_add_printf(out, "  TLS:           no verified "
		    "connection to the server yet\n");
		return;
	}
	status_duration((long long)(st->now - c->last_handshake), ago,
	    sizeof(ago));
	status_safe(c->tls_version, version, sizeof(version));
	status_safe(c->tls_suite, suite, sizeof(suite));
	evbuffer_add_printf(out, "  TLS:           %s, %s (%s ago); %llu "
	    "handshake(s), %.0f%% resumed, %.3fs on average\n", version, suite,
	    ago, (unsigned long long)c->handshakes,
	    100.0 * (double)c->resumed / (double)c->handshakes,
	    c->handshake_seconds / (double)c->handshakes);
	if (c->cert_expires == 0)
		return;
	status_time(c->cert_expires, 0, when, sizeof(when));
	status_duration((long long)(c->cert_expires - st->now), left,
	    sizeof(left));
	evbuffer_add_printf(out, "  certificate:   the server's chain expires "
	    "%s (in %s)%s\n", when, left, stats_expiring(c, st->now) ?
	    "; WARNING: within 14 days, the server's administrator must "
	    "renew it" : "");
}

/* One service. */
static void
status_text_service(const struct status *st,
    const struct status_service *svc, struct evbuffer *out)
{
	const struct service_config	*sc = svc->cfg;
	char				 listen[CONFIG_MAX_LISTEN * 82];

	status_listen(sc, ", ", listen, sizeof(listen));
	evbuffer_add_printf(out, "\n[%s] %s, %s TLS: %s -> %s:%u\n", sc->name,
	    config_protocol_name(sc->protocol), config_tls_mode_name(sc->tls),
	    listen, sc->remote_host, (unsigned)sc->remote_port);
	status_text_now(svc, out);
	if (svc->c == NULL)
		return;
	status_text_totals(st, svc->c, out);
	status_text_tls(st, svc->c, out);
}

/* The OAuth2 accounts. */
static void
status_text_accounts(const struct status *st, struct evbuffer *out)
{
	const struct status_account	*a;
	char				 when[40], left[32];
	char				 text[OAUTH2_TEXT_MAX];
	int				 i;

	if (st->n_accounts == 0 && st->accounts_dropped == 0)
		return;
	evbuffer_add_printf(out, "\nOAuth2 accounts:\n");
	for (i = 0; i < st->n_accounts; i++) {
		a = &st->accounts[i];
		status_safe(a->user, text, sizeof(text));
		evbuffer_add_printf(out, "  [%s] %s: %s", a->section, text,
		    a->authorised ? "authorised" : a->flow_pending ?
		    "waiting for a person to authorise" : "not authorised");
		if (a->access_expires != 0) {
			status_time(a->access_expires, 0, when, sizeof(when));
			status_duration((long long)(a->access_expires -
			    st->now), left, sizeof(left));
			evbuffer_add_printf(out, ", access token %s %s%s%s",
			    a->access_expires > st->now ? "expires" : "expired",
			    when, a->access_expires > st->now ? " (in " : "",
			    a->access_expires > st->now ? left : "");
			if (a->access_expires > st->now)
				evbuffer_add_printf(out, ")");
		}
		if (a->last_refresh != 0) {
			status_time(a->last_refresh, 0, when, sizeof(when));
			evbuffer_add_printf(out, ", last refresh %s", when);
		}
		if (a->last_error[0] != '\0') {
			status_safe(a->last_error, text, sizeof(text));
			evbuffer_add_printf(out, ", last error: %s", text);
		}
		evbuffer_add_printf(out, "\n");
	}
	if (st->accounts_dropped > 0)
		evbuffer_add_printf(out, "  (%d more not shown)\n",
		    st->accounts_dropped);
}

/* The text of mailtlsd -s. */
int
status_text(const struct status *st, struct evbuffer *out)
{
	int	i;

	status_text_head(st, out);
	for (i = 0; i < st->n_services; i++)
		status_text_service(st, &st->services[i], out);
	status_text_accounts(st, out);
	return 0;
}

/* ---- JSON ---------------------------------------------------------------- */

/* Set key of obj to val (taken); notes a failure in *err. */
static void
status_jset(json_t *obj, const char *key, json_t *val, int *err)
{
	if (val == NULL || json_object_set_new(obj, key, val) != 0)
		*err = 1;
}

/* A moment as an ISO 8601 string, or null for 0. */
static json_t *
status_jtime(time_t t)
{
	char	buf[40];

	if (t == 0)
		return json_null();
	status_time(t, 1, buf, sizeof(buf));
	return json_string(buf);
}

/* A counter (JSON integers are signed 64-bit in jansson). */
static json_t *
status_jcount(uint64_t n)
{
	return json_integer(n > INT64_MAX ? INT64_MAX : (json_int_t)n);
}

/* The sessions now of a service, by phase, and its pool. */
static void
status_json_now(const struct status_service *svc, json_t *o, int *err)
{
	json_t	*now = json_object(), *pool = json_object();
	size_t	 i;

	if (now == NULL || pool == NULL) {
		json_decref(now);
		json_decref(pool);
		*err = 1;
		return;
	}
	for (i = 0; i < STATUS_CLIENT_PHASES; i++)
		status_jset(now, stats_phase_name(status_client_phases[i]),
		    json_integer(svc->active[status_client_phases[i]]), err);
	status_jset(o, "sessions_now", now, err);
	status_jset(pool, "size", json_integer(svc->pool_size), err);
	status_jset(pool, "ready", json_integer(svc->pool_ready), err);
	status_jset(pool, "backing_off", json_boolean(svc->pool_backing_off),
	    err);
	status_jset(pool, "failures_in_row", json_integer(svc->pool_failures),
	    err);
	status_jset(o, "pool", pool, err);
}

/* Totals and the last failure. */
static void
status_json_totals(const struct stats_counters *c, json_t *o, int *err)
{
	json_t	*t = json_object(), *f = json_object(), *last;
	int	 r;

	if (t == NULL || f == NULL) {
		json_decref(t);
		json_decref(f);
		*err = 1;
		return;
	}
	status_jset(t, "sessions_ok", status_jcount(c->sessions_ok), err);
	status_jset(t, "sessions_failed", status_jcount(c->sessions_failed),
	    err);
	status_jset(t, "bytes_to_server", status_jcount(c->bytes_up), err);
	status_jset(t, "bytes_to_client", status_jcount(c->bytes_down), err);
	for (r = STATS_REASON_NONE + 1; r < STATS_REASONS; r++)
		status_jset(f, stats_reason_name(r),
		    status_jcount(c->failures[r]), err);
	status_jset(t, "failures", f, err);
	status_jset(o, "totals", t, err);
	if (c->last_reason == STATS_REASON_NONE)
		last = json_null();
	else if ((last = json_object()) != NULL) {
		status_jset(last, "time", status_jtime(c->last_failure), err);
		status_jset(last, "reason",
		    json_string(stats_reason_name(c->last_reason)), err);
		status_jset(last, "text", json_string(c->last_text), err);
	}
	status_jset(o, "last_failure", last, err);
	status_jset(o, "failures_in_row", json_integer(c->streak), err);
	status_jset(o, "failing_warning", json_boolean(c->streak >=
	    STATS_STREAK_WARN), err);
}

/* TLS and the server's certificate. */
static void
status_json_tls(const struct status *st, const struct stats_counters *c,
    json_t *o, int *err)
{
	json_t	*t = json_object(), *cert = json_object();

	if (t == NULL || cert == NULL) {
		json_decref(t);
		json_decref(cert);
		*err = 1;
		return;
	}
	status_jset(t, "handshakes", status_jcount(c->handshakes), err);
	status_jset(t, "resumed", status_jcount(c->resumed), err);
	status_jset(t, "resumption_rate", c->handshakes == 0 ? json_null() :
	    json_real((double)c->resumed / (double)c->handshakes), err);
	status_jset(t, "handshake_seconds_sum",
	    json_real(c->handshake_seconds), err);
	status_jset(t, "last_handshake", status_jtime(c->last_handshake), err);
	status_jset(t, "version", c->tls_version[0] == '\0' ? json_null() :
	    json_string(c->tls_version), err);
	status_jset(t, "ciphersuite", c->tls_suite[0] == '\0' ? json_null() :
	    json_string(c->tls_suite), err);
	status_jset(o, "tls", t, err);
	status_jset(cert, "expires", status_jtime(c->cert_expires), err);
	status_jset(cert, "expires_in_seconds", c->cert_expires == 0 ?
	    json_null() : json_integer((json_int_t)(c->cert_expires -
	    st->now)), err);
	status_jset(cert, "expiring_soon", json_boolean(stats_expiring(c,
	    st->now)), err);
	status_jset(o, "server_certificate", cert, err);
}

/* One service as an object. */
static json_t *
status_json_service(const struct status *st,
    const struct status_service *svc, int *err)
{
	const struct service_config	*sc = svc->cfg;
	json_t				*o, *listen;
	char				 remote[CONFIG_HOST_MAX + 8];
	int				 i;

	if ((o = json_object()) == NULL || (listen = json_array()) == NULL) {
		json_decref(o);
		*err = 1;
		return NULL;
	}
	status_jset(o, "name", json_string(sc->name), err);
	status_jset(o, "protocol",
	    json_string(config_protocol_name(sc->protocol)), err);
	status_jset(o, "tls_mode",
	    json_string(config_tls_mode_name(sc->tls)), err);
	for (i = 0; i < sc->n_listen; i++)
		if (json_array_append_new(listen,
		    json_string(sc->listen[i].text)) != 0)
			*err = 1;
	status_jset(o, "listen", listen, err);
	snprintf(remote, sizeof(remote), "%s:%u", sc->remote_host,
	    (unsigned)sc->remote_port);
	status_jset(o, "remote", json_string(remote), err);
	status_json_now(svc, o, err);
	if (svc->c != NULL) {
		status_json_totals(svc->c, o, err);
		status_json_tls(st, svc->c, o, err);
	}
	return o;
}

/* One OAuth2 account as an object. */
static json_t *
status_json_account(const struct status_account *a, int *err)
{
	json_t	*o;

	if ((o = json_object()) == NULL) {
		*err = 1;
		return NULL;
	}
	status_jset(o, "section", json_string(a->section), err);
	status_jset(o, "user", json_string(a->user), err);
	status_jset(o, "authorised", json_boolean(a->authorised), err);
	status_jset(o, "flow_pending", json_boolean(a->flow_pending), err);
	status_jset(o, "access_token_expires", status_jtime(a->access_expires),
	    err);
	status_jset(o, "last_refresh", status_jtime(a->last_refresh), err);
	status_jset(o, "last_error", a->last_error[0] == '\0' ? json_null() :
	    json_string(a->last_error), err);
	return o;
}

/* The whole picture as an object. */
static json_t *
status_json_object(const struct status *st, int *err)
{
	json_t	*o, *services, *accounts;
	int	 i;

	if ((o = json_object()) == NULL)
		return NULL;
	status_jset(o, "version", json_string(st->version), err);
	status_jset(o, "pid", json_integer(st->pid), err);
	status_jset(o, "now", status_jtime(st->now), err);
	status_jset(o, "started", status_jtime(st->started), err);
	status_jset(o, "uptime_seconds",
	    json_integer((json_int_t)(st->now - st->started)), err);
	status_jset(o, "shutting_down", json_boolean(st->draining), err);
	status_jset(o, "sessions", json_integer(st->sessions), err);
	status_jset(o, "max_sessions", json_integer(st->max_sessions), err);
	if ((services = json_array()) != NULL)
		for (i = 0; i < st->n_services; i++)
			if (json_array_append_new(services,
			    status_json_service(st, &st->services[i], err)) != 0)
				*err = 1;
	status_jset(o, "services", services, err);
	if ((accounts = json_array()) != NULL)
		for (i = 0; i < st->n_accounts; i++)
			if (json_array_append_new(accounts,
			    status_json_account(&st->accounts[i], err)) != 0)
				*err = 1;
	status_jset(o, "oauth2_accounts", accounts, err);
	return o;
}

/* The JSON of mailtlsd -s -j, one object and a newline. */
int
status_json(const struct status *st, struct evbuffer *out)
{
	json_t	*o;
	char	*text = NULL;
	int	 err = 0, ret = -1;

	if ((o = status_json_object(st, &err)) != NULL && !err)
		text = json_dumps(o, JSON_INDENT(2));
	if (text != NULL && evbuffer_add_printf(out, "%s\n", text) >= 0)
		ret = 0;
	free(text);
	json_decref(o);
	return ret;
}

/* ---- Prometheus ---------------------------------------------------------- */

/* A label value with \, " and newline escaped. */
static void
status_label(const char *in, char *out, size_t len)
{
	size_t	n = 0;

	for (; *in != '\0' && n + 3 < len; in++) {
		if (*in == '\\' || *in == '"') {
			out[n++] = '\\';
			out[n++] = *in;
		} else if (*in == '\n') {
			out[n++] = '\\';
			out[n++] = 'n';
		} else
			out[n++] = *in;
	}
	out[n] = '\0';
}

/* The HELP and TYPE lines of a metric family. */
static void
status_family(struct evbuffer *out, const char *name, const char *type,
    const char *help)
{
	evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help,
	    name, type);
}

/* The daemon-wide metrics. */
static void
status_prom_daemon(const struct status *st, struct evbuffer *out)
{
	char	version[64];

	status_label(st->version, version, sizeof(version));
	status_family(out, "mailtlsd_info", "gauge",
	    "The running mailtlsd's version (always 1).");
	evbuffer_add_printf(out, "mailtlsd_info{version=\"%s\"} 1\n", version);
	status_family(out, "mailtlsd_start_time_seconds", "gauge",
	    "When the daemon started, seconds since the Unix epoch.");
	evbuffer_add_printf(out, "mailtlsd_start_time_seconds %lld\n",
	    (long long)st->started);
	status_family(out, "mailtlsd_sessions_open", "gauge",
	    "Client sessions open now, all services.");
	evbuffer_add_printf(out, "mailtlsd_sessions_open %u\n", st->sessions);
	status_family(out, "mailtlsd_sessions_limit", "gauge",
	    "max_sessions: the most client sessions at once.");
	evbuffer_add_printf(out, "mailtlsd_sessions_limit %u\n",
	    st->max_sessions);
}

/* One sample per service of a counter or gauge read from the counters. */
static void
status_prom_each(const struct status *st, struct evbuffer *out,
    const char *name, const char *type, const char *help,
    uint64_t (*value)(const struct status_service *))
{
	int	i;

	status_family(out, name, type, help);
	for (i = 0; i < st->n_services; i++)
		evbuffer_add_printf(out, "%s{service=\"%s\"} %llu\n", name,
		    st->services[i].cfg->name,
		    (unsigned long long)value(&st->services[i]));
}

static uint64_t
status_v_resumed(const struct status_service *svc)
{
	return svc->c != NULL ? svc->c->resumed : 0;
}

static uint64_t
status_v_streak(const struct status_service *svc)
{
	return svc->c != NULL ? svc->c->streak : 0;
}

static uint64_t
status_v_pool_size(const struct status_service *svc)
{
	return svc->pool_size;
}

static uint64_t
status_v_pool_ready(const struct status_service *svc)
{
	return svc->pool_ready;
}

static uint64_t
status_v_pool_backing_off(const struct status_service *svc)
{
	return svc->pool_backing_off ? 1 : 0;
}

/* Sessions by result, failures by reason, bytes by direction. */
static void
status_prom_totals(const struct status *st, struct evbuffer *out)
{
	const struct stats_counters	*c;
	const char			*name;
	int				 i, r;

	status_family(out, "mailtlsd_sessions_total", "counter",
	    "Client sessions that ended, by service and result.");
	for (i = 0; i < st->n_services; i++) {
		if ((c = st->services[i].c) == NULL)
			continue;
		name = st->services[i].cfg->name;
		evbuffer_add_printf(out, "mailtlsd_sessions_total{service=\"%s\","
		    "result=\"ok\"} %llu\n", name,
		    (unsigned long long)c->sessions_ok);
		evbuffer_add_printf(out, "mailtlsd_sessions_total{service=\"%s\","
		    "result=\"failed\"} %llu\n", name,
		    (unsigned long long)c->sessions_failed);
	}
	status_family(out, "mailtlsd_failures_total", "counter",
	    "Failed sessions and failed attempts of the pool to reach the "
	    "server, by service and reason class.");
	for (i = 0; i < st->n_services; i++) {
		if ((c = st->services[i].c) == NULL)
			continue;
		for (r = STATS_REASON_NONE + 1; r < STATS_REASONS; r++)
			evbuffer_add_printf(out, "mailtlsd_failures_total{service="
			    "\"%s\",reason=\"%s\"} %llu\n",
			    st->services[i].cfg->name, stats_reason_name(r),
			    (unsigned long long)c->failures[r]);
	}
	status_family(out, "mailtlsd_relayed_bytes_total", "counter",
	    "Bytes relayed, by service and direction.");
	for (i = 0; i < st->n_services; i++) {
		if ((c = st->services[i].c) == NULL)
			continue;
		name = st->services[i].cfg->name;
		evbuffer_add_printf(out, "mailtlsd_relayed_bytes_total{service="
		    "\"%s\",direction=\"to_server\"} %llu\n", name,
		    (unsigned long long)c->bytes_up);
		evbuffer_add_printf(out, "mailtlsd_relayed_bytes_total{service="
		    "\"%s\",direction=\"to_client\"} %llu\n", name,
		    (unsigned long long)c->bytes_down);
	}
}

/* Sessions now by phase, and the pools. */
static void
status_prom_now(const struct status *st, struct evbuffer *out)
{
	size_t	p;
	int	i;

	status_family(out, "mailtlsd_sessions_active", "gauge",
	    "Client sessions open now, by service and phase.");
	for (i = 0; i < st->n_services; i++)
		for (p = 0; p < STATUS_CLIENT_PHASES; p++)
			evbuffer_add_printf(out, "mailtlsd_sessions_active{service="
			    "\"%s\",phase=\"%s\"} %u\n",
			    st->services[i].cfg->name,
			    stats_phase_name(status_client_phases[p]),
			    st->services[i].active[status_client_phases[p]]);
	status_prom_each(st, out, "mailtlsd_pool_size", "gauge",
	    "pool_size: server connections to keep ready.", status_v_pool_size);
	status_prom_each(st, out, "mailtlsd_pool_ready", "gauge",
	    "Server connections ready for a client now.", status_v_pool_ready);
	status_prom_each(st, out, "mailtlsd_pool_backing_off", "gauge",
	    "1 while the pool waits after failures, else 0.",
	    status_v_pool_backing_off);
}

/* The handshake duration histogram. */
static void
status_prom_histogram(const struct status *st, struct evbuffer *out)
{
	const struct stats_counters	*c;
	const char			*name;
	uint64_t			 cum;
	int				 i, b;

	status_family(out, "mailtlsd_handshake_duration_seconds", "histogram",
	    "Time from the TCP connect to a verified TLS connection with the "
	    "server (STARTTLS dialogue included).");
	for (i = 0; i < st->n_services; i++) {
		if ((c = st->services[i].c) == NULL)
			continue;
		name = st->services[i].cfg->name;
		cum = 0;
		for (b = 0; b < STATS_BUCKETS; b++) {
			cum += c->buckets[b];
			evbuffer_add_printf(out,
			    "mailtlsd_handshake_duration_seconds_bucket{service="
			    "\"%s\",le=\"%g\"} %llu\n", name,
			    stats_bucket_bounds[b], (unsigned long long)cum);
		}
		evbuffer_add_printf(out, "mailtlsd_handshake_duration_seconds_"
		    "bucket{service=\"%s\",le=\"+Inf\"} %llu\n", name,
		    (unsigned long long)c->handshakes);
		evbuffer_add_printf(out, "mailtlsd_handshake_duration_seconds_"
		    "sum{service=\"%s\"} %.6f\n", name, c->handshake_seconds);
		evbuffer_add_printf(out, "mailtlsd_handshake_duration_seconds_"
		    "count{service=\"%s\"} %llu\n", name,
		    (unsigned long long)c->handshakes);
	}
}

/* TLS, the certificate and the failures in a row. */
static void
status_prom_tls(const struct status *st, struct evbuffer *out)
{
	const struct stats_counters	*c;
	int				 i;

	status_prom_each(st, out, "mailtlsd_tls_resumed_total", "counter",
	    "Handshakes with the server that resumed a session.",
	    status_v_resumed);
	status_family(out, "mailtlsd_server_certificate_expiry_timestamp_"
	    "seconds", "gauge", "When the first certificate of the server's "
	    "verified chain expires, seconds since the Unix epoch.");
	for (i = 0; i < st->n_services; i++)
		if ((c = st->services[i].c) != NULL && c->cert_expires != 0)
			evbuffer_add_printf(out, "mailtlsd_server_certificate_"
			    "expiry_timestamp_seconds{service=\"%s\"} %lld\n",
			    st->services[i].cfg->name,
			    (long long)c->cert_expires);
	status_prom_each(st, out, "mailtlsd_failures_in_row", "gauge",
	    "Attempts to reach the server that failed since the last success.",
	    status_v_streak);
	status_family(out, "mailtlsd_last_failure_timestamp_seconds", "gauge",
	    "When the service last failed, seconds since the Unix epoch.");
	for (i = 0; i < st->n_services; i++)
		if ((c = st->services[i].c) != NULL &&
		    c->last_reason != STATS_REASON_NONE)
			evbuffer_add_printf(out, "mailtlsd_last_failure_timestamp_"
			    "seconds{service=\"%s\"} %lld\n",
			    st->services[i].cfg->name,
			    (long long)c->last_failure);
}

/* The OAuth2 accounts. */
static void
status_prom_accounts(const struct status *st, struct evbuffer *out)
{
	const struct status_account	*a;
	char				 section[160], user[520];
	int				 i;

	if (st->n_accounts == 0)
		return;
	status_family(out, "mailtlsd_oauth2_authorised", "gauge",
	    "1 when the OAuth2 account holds a grant, else 0.");
	for (i = 0; i < st->n_accounts; i++) {
		a = &st->accounts[i];
		status_label(a->section, section, sizeof(section));
		status_label(a->user, user, sizeof(user));
		evbuffer_add_printf(out, "mailtlsd_oauth2_authorised{section="
		    "\"%s\",user=\"%s\"} %d\n", section, user,
		    a->authorised ? 1 : 0);
	}
	status_family(out, "mailtlsd_oauth2_access_token_expiry_timestamp_"
	    "seconds", "gauge", "When the OAuth2 account's access token "
	    "expires, seconds since the Unix epoch.");
	for (i = 0; i < st->n_accounts; i++) {
		a = &st->accounts[i];
		if (a->access_expires == 0)
			continue;
		status_label(a->section, section, sizeof(section));
		status_label(a->user, user, sizeof(user));
		evbuffer_add_printf(out, "mailtlsd_oauth2_access_token_expiry_"
		    "timestamp_seconds{section=\"%s\",user=\"%s\"} %lld\n",
		    section, user, (long long)a->access_expires);
	}
}

/* The metrics in the Prometheus text exposition format (0.0.4). */
int
status_prometheus(const struct status *st, struct evbuffer *out)
{
	status_prom_daemon(st, out);
	status_prom_totals(st, out);
	status_prom_now(st, out);
	status_prom_histogram(st, out);
	status_prom_tls(st, out);
	status_prom_accounts(st, out);
	return 0;
}
