/*
 * log.h - logging for mailtlsd: levels, stderr or syslog.
 *
 * OpenBSD-style API: log_warn() appends strerror(errno), the x variants do
 * not.  fatal()/fatalx() are for start-up errors and broken invariants only;
 * a misbehaving peer is never a reason to exit.
 */
#ifndef MAILTLSD_LOG_H
#define MAILTLSD_LOG_H

/* How much to log, from least to most. */
enum log_level {
	LOG_LEVEL_ERROR = 0,
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG
};

/* Where log lines go. */
enum log_target {
	LOG_TO_STDERR = 0,	/* plain lines */
	LOG_TO_JOURNAL,		/* stderr with <N> priority prefixes */
	LOG_TO_SYSLOG
};

void	log_init(enum log_target, enum log_level);

/* Whether stderr is connected to the journal (JOURNAL_STREAM matches). */
int	log_stderr_is_journal(void);
void	log_set_level(enum log_level);

/* level made more detailed by steps (-v), capped at debug. */
enum log_level	log_level_raise(enum log_level level, int steps);
int	log_enabled(enum log_level);

void	log_error(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_errorx(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_warn(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_warnx(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_info(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_debug(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_msg(enum log_level, const char *, ...)
	    __attribute__((format(printf, 2, 3)));
/* A line the operator asked for: info priority, whatever the level. */
void	log_report(const char *, ...) __attribute__((format(printf, 1, 2)));
void	fatal(const char *, ...) __attribute__((format(printf, 1, 2), noreturn));
void	fatalx(const char *, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif /* MAILTLSD_LOG_H */
