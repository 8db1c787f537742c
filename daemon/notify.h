/*
 * notify.h - tell the service manager what the daemon is doing
 * (sd_notify(3) without libsystemd).
 *
 * notify_init() reads $NOTIFY_SOCKET once, at start-up and before the
 * privilege drop; without it every call is a no-op.  Messages are
 * best-effort: an error never reaches the caller.
 */
#ifndef MAILTLSD_NOTIFY_H
#define MAILTLSD_NOTIFY_H

/* Connect to $NOTIFY_SOCKET if it is set; 0, or -1 if it is unusable. */
int	notify_init(void);

/* Whether messages go anywhere (a service manager listens). */
int	notify_active(void);

/* Close the notification socket; further calls do nothing. */
void	notify_close(void);

/* Send one message of "NAME=value" lines, as printf would format it. */
void	notify_send(const char *, ...) __attribute__((format(printf, 1, 2)));

/* READY=1 with a STATUS= line. */
void	notify_ready(const char *status);

/* RELOADING=1 (with MONOTONIC_USEC=) and a STATUS= line. */
void	notify_reloading(const char *status);

/*
 * A note that takes the place of the status line while it is set (an
 * authorisation waiting for a person); NULL gives the line back to the
 * status of the last notify_ready() or notify_reloading().
 */
void	notify_status_note(const char *note);

/* STOPPING=1 with a STATUS= line. */
void	notify_stopping(const char *status);

#endif /* MAILTLSD_NOTIFY_H */
