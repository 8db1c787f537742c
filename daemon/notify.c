/*
 * notify.c - readiness, reload and shutdown notifications to the service
 * manager: the sd_notify(3) protocol without libsystemd.
 *
 * Each message is one datagram of "NAME=value" lines sent to the unix
 * socket named by $NOTIFY_SOCKET (a path, or "@name" in the abstract
 * namespace).  The socket is connected once at start-up, so the messages
 * still arrive after the daemon has dropped its privileges.  Sending never
 * blocks and a failure is only logged at debug level: the daemon runs the
 * same whether or not anyone listens.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "log.h"
#include "notify.h"

#define NOTIFY_MESSAGE_MAX	512

static int	notify_fd = -1;
/* The daemon's own status, and the note shown instead while set. */
static char	notify_status[NOTIFY_MESSAGE_MAX];
static char	notify_note[NOTIFY_MESSAGE_MAX];

/* What STATUS= says now: the note, or else status (kept for later). */
static const char *
notify_status_line(const char *status)
{
	if (status != NULL)
		snprintf(notify_status, sizeof(notify_status), "%s", status);
	return notify_note[0] != '\0' ? notify_note : notify_status;
}

/* Fill sun from $NOTIFY_SOCKET's value; its length, or 0 if unusable. */
static socklen_t
notify_address(const char *path, struct sockaddr_un *sun)
{
	size_t	len = strlen(path);

	if ((path[0] != '/' && path[0] != '@') || len < 2 ||
	    len >= sizeof(sun->sun_path))
		return 0;
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	memcpy(sun->sun_path, path, len);
	if (path[0] == '@')
		sun->sun_path[0] = '\0';	/* abstract: no trailing NUL */
	else
		len++;
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
}

/* Connect to $NOTIFY_SOCKET when the service manager set it. */
int
notify_init(void)
{
	const char		*path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un	 sun;
	socklen_t		 len;

	if (path == NULL || path[0] == '\0' || notify_fd >= 0)
		return 0;
	if ((len = notify_address(path, &sun)) == 0) {
		log_warnx("NOTIFY_SOCKET=%s is not a unix socket address; "
		    "not notifying the service manager", path);
		return -1;
	}
	notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
	    0);
	if (notify_fd < 0) {
		log_warn("cannot notify the service manager: socket");
		return -1;
	}
	if (connect(notify_fd, (struct sockaddr *)&sun, len) != 0) {
		log_warn("cannot notify the service manager at %s", path);
		notify_close();
		return -1;
	}
	log_debug("notifying the service manager at %s", path);
	return 0;
}

/* Whether a service manager listens. */
int
notify_active(void)
{
	return notify_fd >= 0;
}

/* Stop notifying. */
void
notify_close(void)
{
	if (notify_fd >= 0)
		close(notify_fd);
	notify_fd = -1;
}

/* Send one formatted message, best-effort. */
void
notify_send(const char *fmt, ...)
{
	char	msg[NOTIFY_MESSAGE_MAX];
	va_list	ap;
	int	n;

	if (notify_fd < 0)
		return;
	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(msg)) {
		log_debug("notify: message too long, not sent");
		return;
	}
	if (send(notify_fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		log_debug("notify: cannot send to the service manager: %s",
		    strerror(errno));
}

/* Tell the service manager the daemon serves. */
void
notify_ready(const char *status)
{
	notify_send("READY=1\nSTATUS=%s", notify_status_line(status));
}

/* Tell the service manager a reload started. */
void
notify_reloading(const char *status)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	notify_send("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=%s",
	    (unsigned long long)ts.tv_sec * 1000000ULL +
	    (unsigned long long)ts.tv_nsec / 1000ULL, status);
}

/* Show note instead of the status line, or the status again (NULL). */
void
notify_status_note(const char *note)
{
	snprintf(notify_note, sizeof(notify_note), "%s", note != NULL ? note :
	    "");
	notify_send("STATUS=%s", notify_status_line(NULL));
}

/* Tell the service manager the daemon is shutting down. */
void
notify_stopping(const char *status)
{
	notify_send("STOPPING=1\nSTATUS=%s", status);
}
