/*
 * stats.h - what each service has done since the daemon started: counters
 * for `mailtlsd -s` and the metrics, and the warnings they lead to.
 *
 * A service's stats outlive a reload: the registry keeps one entry per
 * service name for as long as a service of that name exists (sessions of
 * the old configuration included).  Sessions, pool members and uplinks
 * report through the few calls below; every call accepts NULL (a service
 * built for `mailtlsd -t` has no stats).  This is a leaf: it knows no
 * session, service or socket.
 */
#ifndef MAILTLSD_STATS_H
#define MAILTLSD_STATS_H

#include <stdint.h>
#include <time.h>

struct stats;
struct stats_registry;

/*
 * Why a session or an attempt to reach the server failed, decided where
 * the failure is found (upstream.c, uplink.c, tls.c, session.c).
 */
enum stats_reason {
	STATS_REASON_NONE = 0,
	STATS_REASON_DNS,		/* the server's name did not resolve */
	STATS_REASON_CONNECT,		/* TCP connect refused or unreachable */
	STATS_REASON_TIMEOUT,		/* connect, dialogue or handshake */
	STATS_REASON_STARTTLS,		/* refused, not offered, bad dialogue */
	STATS_REASON_INJECTION,		/* bytes between go-ahead and TLS */
	STATS_REASON_TLS_HANDSHAKE,	/* version, suite, alert, not TLS */
	STATS_REASON_TLS_VERIFY,	/* chain, name, dates, pins */
	STATS_REASON_SERVER,		/* server closed or broke the session */
	STATS_REASON_CLIENT,		/* the mail client's side failed */
	STATS_REASON_OTHER,		/* out of memory, anything else */
	STATS_REASONS
};

/* What a live session is doing, for the gauges. */
enum stats_phase {
	STATS_PHASE_REACHING,	/* server or client TLS not ready yet */
	STATS_PHASE_LOGIN,	/* relaying, the client not logged in yet */
	STATS_PHASE_RELAYING,	/* relaying after the login */
	STATS_PHASE_CLOSING,	/* flushing its last bytes */
	STATS_PHASE_POOL,	/* a pool member without a client */
	STATS_PHASES
};

/* Failures in a row that make one warning; certificate warning window. */
#define STATS_STREAK_WARN	5
#define STATS_EXPIRY_WARN_DAYS	14

/* Upper bounds (seconds) of the handshake duration histogram's buckets. */
#define STATS_BUCKETS		11
extern const double	stats_bucket_bounds[STATS_BUCKETS];

#define STATS_TEXT_MAX		200	/* the last failure's words */

/* A service's totals since start, and what its last sessions showed. */
struct stats_counters {
	uint64_t		sessions_ok;	/* client sessions that ended */
	uint64_t		sessions_failed;
	uint64_t		failures[STATS_REASONS];
	uint64_t		bytes_up;	/* client -> server */
	uint64_t		bytes_down;	/* server -> client */
	uint64_t		handshakes;	/* verified TLS to the server */
	uint64_t		resumed;	/* ... of which resumed */
	uint64_t		buckets[STATS_BUCKETS];	/* not cumulative */
	double			handshake_seconds;	/* their sum */

	enum stats_reason	last_reason;	/* NONE: no failure yet */
	time_t			last_failure;
	char			last_text[STATS_TEXT_MAX];
	unsigned		streak;		/* server failures in a row */

	time_t			last_handshake;	/* 0: none yet */
	char			tls_version[24];
	char			tls_suite[80];
	time_t			cert_expires;	/* 0: unknown */
};

/* What a verified TLS connection to the server showed. */
struct stats_tls {
	double		 seconds;	/* TCP connect to verified TLS */
	const char	*version;
	const char	*suite;
	int		 resumed;
	time_t		 chain_expires;	/* first end of validity, 0: unknown */
};

/* "dns", "tls_verify", ...: the metrics' reason label. */
const char	*stats_reason_name(enum stats_reason);

/* What an administrator should look at for a reason class. */
const char	*stats_reason_advice(enum stats_reason);

const char	*stats_phase_name(enum stats_phase);

struct stats_registry *stats_registry_new(void);
/* Frees the entries still registered too; NULL is fine. */
void		 stats_registry_free(struct stats_registry *);

/*
 * Called (rarely, never re-entered) when a count the status line shows
 * changes: a session started or ended, a service started or stopped
 * failing.
 */
void		 stats_registry_observe(struct stats_registry *,
		    void (*fn)(void *), void *arg);

/*
 * The entry of service name (a new one, or the one kept since an earlier
 * configuration), one reference more; NULL when out of memory.  remote
 * names the server: when it changed, what was seen of the old server's
 * TLS and certificate is forgotten.
 */
struct stats	*stats_attach(struct stats_registry *, const char *name,
		    const char *remote);
void		 stats_unref(struct stats *);

const struct stats_counters *stats_counters(const struct stats *);
const char	*stats_name(const struct stats *);

/* A client's session started; it ended (failed or not). */
void		 stats_session_started(struct stats *);
void		 stats_session_ended(struct stats *, int failed);

/* Bytes relayed each way. */
void		 stats_bytes(struct stats *, uint64_t up, uint64_t down);

/*
 * A failure of reason, in words (never a secret).  Failures other than
 * the client's count toward the streak: at STATS_STREAK_WARN in a row,
 * one warning in the log, again only after a success.
 */
void		 stats_failure(struct stats *, enum stats_reason,
		    const char *text, time_t now);

/* TLS to the server is up and verified: the streak ends. */
void		 stats_handshake(struct stats *, const struct stats_tls *,
		    time_t now);

/*
 * Warn (at most once a day) when the server's certificate chain ends
 * within STATS_EXPIRY_WARN_DAYS; 1 when it does, else 0.
 */
int		 stats_check_expiry(struct stats *, time_t now);

/* stats_check_expiry() for every entry. */
void		 stats_registry_check_expiry(struct stats_registry *,
		    time_t now);

/* Whether the certificate last seen ends within the warning window. */
int		 stats_expiring(const struct stats_counters *, time_t now);

#endif /* MAILTLSD_STATS_H */
