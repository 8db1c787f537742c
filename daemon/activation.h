/*
 * activation.h - listening sockets passed by systemd (socket activation,
 * sd_listen_fds(3) without libsystemd).
 *
 * activation_init() takes the sockets once, at start-up; listener_new()
 * then asks for the one bound to each configured address before binding
 * it itself, and activation_close_unused() closes, with a warning, any
 * socket no listen address asked for.
 */
#ifndef MAILTLSD_ACTIVATION_H
#define MAILTLSD_ACTIVATION_H

struct listen_addr;

/*
 * Take the sockets of $LISTEN_FDS when $LISTEN_PID is this process, and
 * unset the LISTEN_* variables; the number of usable sockets taken.
 */
int	activation_init(void);

/* The passed socket bound to addr, now the caller's; -1 if none. */
int	activation_take(const struct listen_addr *);

/* Close, with a warning, every passed socket no address took. */
void	activation_close_unused(void);

#endif /* MAILTLSD_ACTIVATION_H */
