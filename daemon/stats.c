/*
 * stats.c - per-service counters and the warnings they lead to (see
 * stats.h).
 *
 * Counters only grow; the gauges (sessions now, pool) are counted when
 * someone asks (runtime.c).  Two warnings live here because this is where
 * their state is: a service failing STATS_STREAK_WARN times in a row (once,
 * re-armed by a success) and a server certificate near its end (at most
 * once a day).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "stats.h"

#define STATS_NAME_MAX		64
#define STATS_REMOTE_MAX	300
#define STATS_DAY		86400

const double	stats_bucket_bounds[STATS_BUCKETS] = {
	0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10
};

struct stats {
	struct stats_registry	*reg;
	struct stats		*next;
	unsigned		 refs;
	char			 name[STATS_NAME_MAX];
	char			 remote[STATS_REMOTE_MAX];
	struct stats_counters	 c;
	int			 streak_warned;
	time_t			 expiry_warned;	/* 0: not yet */
};

struct stats_registry {
	struct stats	*list;
	void		(*observer)(void *);
	void		*observer_arg;
};

static const char *const stats_reason_names[STATS_REASONS] = {
	"none", "dns", "connect", "timeout", "starttls", "injection",
	"tls_handshake", "tls_verify", "server", "client", "other"
};

static const char *const stats_reason_advices[STATS_REASONS] = {
	"",
	"check the host name of remote and the resolver (/etc/resolv.conf)",
	"check that the server is up and accepts connections on the port of "
	    "remote (firewall, address)",
	"check the network path to the server and its load; connect_timeout "
	    "and handshake_timeout bound the waits",
	"check tls = and the port of remote: the server refused STARTTLS, did "
	    "not offer it or broke the dialogue",
	"something on the path inserts data into the STARTTLS step: check "
	    "the network between mailtlsd and the server",
	"check min_tls, client_cert and the server's TLS settings; mailtlsd "
	    "-p NAME shows the handshake",
	"check the server's certificate, ca_file, server_name and pin_sha256; "
	    "mailtlsd -p NAME shows the chain",
	"check the server's log: it closed or broke the sessions",
	"check the mail clients' settings",
	"see the log lines of the failed sessions"
};

static const char *const stats_phase_names[STATS_PHASES] = {
	"reaching", "login", "relaying", "closing", "pool"
};

/* The name of a reason class. */
const char *
stats_reason_name(enum stats_reason reason)
{
	if ((unsigned)reason >= STATS_REASONS)
		return "other";
	return stats_reason_names[reason];
}

/* What to check for a reason class. */
const char *
stats_reason_advice(enum stats_reason reason)
{
	if ((unsigned)reason >= STATS_REASONS)
		reason = STATS_REASON_OTHER;
	return stats_reason_advices[reason];
}

/* The name of a phase. */
const char *
stats_phase_name(enum stats_phase phase)
{
	if ((unsigned)phase >= STATS_PHASES)
		return "unknown";
	return stats_phase_names[phase];
}

/* An empty registry; NULL when out of memory. */
struct stats_registry *
stats_registry_new(void)
{
	return calloc(1, sizeof(struct stats_registry));
}

/* Free the registry and whatever it still holds. */
void
stats_registry_free(struct stats_registry *reg)
{
	struct stats	*st, *next;

	if (reg == NULL)
		return;
	for (st = reg->list; st != NULL; st = next) {
		next = st->next;
		st->reg = NULL;
		st->next = NULL;
	}
	free(reg);
}

/* Who hears of changes to what the status line shows. */
void
stats_registry_observe(struct stats_registry *reg, void (*fn)(void *),
    void *arg)
{
	reg->observer = fn;
	reg->observer_arg = arg;
}

/* Tell the observer, if any. */
static void
stats_changed(const struct stats *st)
{
	if (st->reg != NULL && st->reg->observer != NULL)
		st->reg->observer(st->reg->observer_arg);
}

/* The entry of service name, made or kept. */
struct stats *
stats_attach(struct stats_registry *reg, const char *name, const char *remote)
{
	struct stats	*st;

	for (st = reg->list; st != NULL; st = st->next)
		if (strcmp(st->name, name) == 0)
			break;
	if (st == NULL) {
		if ((st = calloc(1, sizeof(*st))) == NULL)
			return NULL;
		st->reg = reg;
		snprintf(st->name, sizeof(st->name), "%s", name);
		st->next = reg->list;
		reg->list = st;
	}
	if (strcmp(st->remote, remote) != 0) {
		/* Another server: its certificate is not known yet. */
		snprintf(st->remote, sizeof(st->remote), "%s", remote);
		st->c.last_handshake = 0;
		st->c.tls_version[0] = st->c.tls_suite[0] = '\0';
		st->c.cert_expires = 0;
		st->expiry_warned = 0;
	}
	st->refs++;
	return st;
}

/* Drop a reference; the last one takes the entry out of its registry. */
void
stats_unref(struct stats *st)
{
	struct stats	**pp;

	if (st == NULL || --st->refs > 0)
		return;
	if (st->reg != NULL) {
		for (pp = &st->reg->list; *pp != NULL; pp = &(*pp)->next)
			if (*pp == st) {
				*pp = st->next;
				break;
			}
	}
	free(st);
}

/* The counters, to read. */
const struct stats_counters *
stats_counters(const struct stats *st)
{
	return &st->c;
}

/* The service's name. */
const char *
stats_name(const struct stats *st)
{
	return st->name;
}

/* A client's session started. */
void
stats_session_started(struct stats *st)
{
	if (st != NULL)
		stats_changed(st);
}

/* A client's session ended. */
void
stats_session_ended(struct stats *st, int failed)
{
	if (st == NULL)
		return;
	if (failed)
		st->c.sessions_failed++;
	else
		st->c.sessions_ok++;
	stats_changed(st);
}

/* Bytes moved each way. */
void
stats_bytes(struct stats *st, uint64_t up, uint64_t down)
{
	if (st == NULL)
		return;
	st->c.bytes_up += up;
	st->c.bytes_down += down;
}

/* Count a failure; the streak's warning comes once. */
void
stats_failure(struct stats *st, enum stats_reason reason, const char *text,
    time_t now)
{
	if (st == NULL)
		return;
	if (reason <= STATS_REASON_NONE || reason >= STATS_REASONS)
		reason = STATS_REASON_OTHER;
	st->c.failures[reason]++;
	st->c.last_reason = reason;
	st->c.last_failure = now;
	snprintf(st->c.last_text, sizeof(st->c.last_text), "%s", text);
	if (reason == STATS_REASON_CLIENT)
		return;		/* says nothing about the server */
	if (++st->c.streak == 1)
		stats_changed(st);	/* the service is failing now */
	if (st->c.streak >= STATS_STREAK_WARN && !st->streak_warned) {
		st->streak_warned = 1;
		log_warnx("[%s] %u attempts in a row failed to reach the server "
		    "securely, the last for %s (%s): %s", st->name,
		    st->c.streak, stats_reason_name(reason), text,
		    stats_reason_advice(reason));
	}
}

/* Count a verified handshake: its time, its TLS, the chain's end. */
void
stats_handshake(struct stats *st, const struct stats_tls *tls, time_t now)
{
	unsigned	i;

	if (st == NULL)
		return;
	st->c.handshakes++;
	if (tls->resumed)
		st->c.resumed++;
	st->c.handshake_seconds += tls->seconds;
	for (i = 0; i < STATS_BUCKETS; i++)
		if (tls->seconds <= stats_bucket_bounds[i]) {
			st->c.buckets[i]++;
			break;
		}
	st->c.last_handshake = now;
	snprintf(st->c.tls_version, sizeof(st->c.tls_version), "%s",
	    tls->version);
	snprintf(st->c.tls_suite, sizeof(st->c.tls_suite), "%s", tls->suite);
	/* A resumed session shows no chain: the last one stays. */
	if (tls->chain_expires != 0)
		st->c.cert_expires = tls->chain_expires;
	if (st->c.streak > 0) {
		if (st->streak_warned)
			log_info("[%s] the server is reached securely again "
			    "after %u failure(s)", st->name, st->c.streak);
		st->c.streak = 0;
		st->streak_warned = 0;
		stats_changed(st);
	}
	stats_check_expiry(st, now);
}

/* Look at every entry's certificate. */
void
stats_registry_check_expiry(struct stats_registry *reg, time_t now)
{
	struct stats	*st;

	for (st = reg->list; st != NULL; st = st->next)
		stats_check_expiry(st, now);
}

/* Whether the last certificate seen ends within the warning window. */
int
stats_expiring(const struct stats_counters *c, time_t now)
{
	return c->cert_expires != 0 &&
	    c->cert_expires - now < (time_t)STATS_EXPIRY_WARN_DAYS * STATS_DAY;
}

/* Warn of a certificate near its end, at most once a day. */
int
stats_check_expiry(struct stats *st, time_t now)
{
	struct tm	tm;
	char		when[32];
	long		days;

	if (st == NULL || !stats_expiring(&st->c, now))
		return 0;
	if (st->expiry_warned != 0 && now - st->expiry_warned < STATS_DAY &&
	    now >= st->expiry_warned)
		return 1;
	st->expiry_warned = now;
	gmtime_r(&st->c.cert_expires, &tm);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm);
	days = (long)((st->c.cert_expires - now) / STATS_DAY);
	log_warnx("[%s] the server's certificate chain expires on %s (in %ld "
	    "day(s)); once it has, mailtlsd refuses the server: its "
	    "administrator must renew the certificate", st->name, when,
	    days < 0 ? 0 : days);
	return 1;
}
