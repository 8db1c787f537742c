/*
 * log.c - levels and targets for mailtlsd's log lines.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>
#include <sys/stat.h>

#include <event2/event.h>

#include "log.h"

static enum log_target	log_target = LOG_TO_STDERR;
static enum log_level	log_threshold = LOG_LEVEL_INFO;

/* libevent's own messages (resolver, backends) go where ours go. */
static void
log_libevent_cb(int severity, const char *msg)
{
	switch (severity) {
	case EVENT_LOG_DEBUG:
		log_debug("libevent: %s", msg);
		break;
	case EVENT_LOG_MSG:
		log_info("libevent: %s", msg);
		break;
	case EVENT_LOG_WARN:
		log_warnx("libevent: %s", msg);
		break;
	default:
		log_errorx("libevent: %s", msg);
		break;
	}
}

/* Choose where lines go and the most detailed level written. */
void
log_init(enum log_target target, enum log_level level)
{
	log_target = target;
	log_threshold = level;
	if (target == LOG_TO_SYSLOG)
		openlog("mailtlsd", LOG_PID | LOG_NDELAY, LOG_DAEMON);
	event_set_log_callback(log_libevent_cb);
}

/*
 * Whether standard error is the journal's stream: $JOURNAL_STREAM names
 * its device and inode ("DEV:INO"), and is only believed when it matches,
 * since a process started from a service inherits the variable too.
 */
int
log_stderr_is_journal(void)
{
	const char		*env = getenv("JOURNAL_STREAM");
	unsigned long long	 dev, ino;
	struct stat		 st;
	char			 end;

	if (env == NULL ||
	    sscanf(env, "%llu:%llu%c", &dev, &ino, &end) != 2)
		return 0;
	if (fstat(STDERR_FILENO, &st) != 0)
		return 0;
	return (unsigned long long)st.st_dev == dev &&
	    (unsigned long long)st.st_ino == ino;
}

/* Change the level, for instance after a configuration reload. */
void
log_set_level(enum log_level level)
{
	log_threshold = level;
}

/* A level more detailed by steps, capped at debug. */
enum log_level
log_level_raise(enum log_level level, int steps)
{
	int	raised = (int)level + steps;

	return raised > LOG_LEVEL_DEBUG ? LOG_LEVEL_DEBUG :
	    (enum log_level)raised;
}

/* Whether a line of this level would be written. */
int
log_enabled(enum log_level level)
{
	return level <= log_threshold;
}

/* The syslog priority of a level. */
static int
log_priority(enum log_level level)
{
	switch (level) {
	case LOG_LEVEL_ERROR:
		return LOG_ERR;
	case LOG_LEVEL_WARN:
		return LOG_WARNING;
	case LOG_LEVEL_INFO:
		return LOG_INFO;
	case LOG_LEVEL_DEBUG:
		return LOG_DEBUG;
	}
	return LOG_ERR;
}

/* Write one line, with strerror(err) appended when err is not 0. */
static void
log_vwrite(enum log_level level, int err, const char *fmt, va_list ap)
{
	char	line[2048];
	int	n;

	if (!log_enabled(level))
		return;
	n = vsnprintf(line, sizeof(line), fmt, ap);
	if (n < 0)
		return;
	if (err != 0 && (size_t)n < sizeof(line))
		snprintf(line + n, sizeof(line) - n, ": %s", strerror(err));

	switch (log_target) {
	case LOG_TO_SYSLOG:
		syslog(log_priority(level), "%s", line);
		break;
	case LOG_TO_JOURNAL:
		fprintf(stderr, "<%d>%s\n", log_priority(level), line);
		break;
	case LOG_TO_STDERR:
		fprintf(stderr, "mailtlsd: %s\n", line);
		break;
	}
}

#define LOG_FUNCTION(name, level, with_errno)				\
void									\
name(const char *fmt, ...)						\
{									\
	int	saved_errno = errno;					\
	va_list	ap;							\
									\
	va_start(ap, fmt);						\
	log_vwrite(level, with_errno ? saved_errno : 0, fmt, ap);	\
	va_end(ap);							\
	errno = saved_errno;						\
}

LOG_FUNCTION(log_error, LOG_LEVEL_ERROR, 1)
LOG_FUNCTION(log_errorx, LOG_LEVEL_ERROR, 0)
LOG_FUNCTION(log_warn, LOG_LEVEL_WARN, 1)
LOG_FUNCTION(log_warnx, LOG_LEVEL_WARN, 0)
LOG_FUNCTION(log_info, LOG_LEVEL_INFO, 0)
LOG_FUNCTION(log_debug, LOG_LEVEL_DEBUG, 0)

/* Log at a level chosen at run time, without strerror. */
void
log_msg(enum log_level level, const char *fmt, ...)
{
	int	saved_errno = errno;
	va_list	ap;

	va_start(ap, fmt);
	log_vwrite(level, 0, fmt, ap);
	va_end(ap);
	errno = saved_errno;
}

/*
 * A line the operator asked for (SIGUSR1): written with info priority
 * whatever log_level says.
 */
void
log_report(const char *fmt, ...)
{
	enum log_level	saved = log_threshold;
	va_list		ap;

	if (log_threshold < LOG_LEVEL_INFO)
		log_threshold = LOG_LEVEL_INFO;
	va_start(ap, fmt);
	log_vwrite(LOG_LEVEL_INFO, 0, fmt, ap);
	va_end(ap);
	log_threshold = saved;
}

/* Log an error with strerror(errno) and exit. */
void
fatal(const char *fmt, ...)
{
	int	saved_errno = errno;
	va_list	ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LEVEL_ERROR, saved_errno, fmt, ap);
	va_end(ap);
	exit(1);
}

/* Log an error and exit. */
void
fatalx(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LEVEL_ERROR, 0, fmt, ap);
	va_end(ap);
	exit(1);
}
