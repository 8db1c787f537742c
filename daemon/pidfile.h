/*
 * pidfile.h - the pid_file written with -d.
 *
 * The file is written by root, before the privilege drop, often in a
 * directory the unprivileged user can write to: it is never opened through
 * a symbolic link, must be a regular file of its own (one link) owned by
 * the user mailtlsd starts as, and stays locked while the daemon runs, so a
 * second mailtlsd given the same file refuses to start.
 */
#ifndef MAILTLSD_PIDFILE_H
#define MAILTLSD_PIDFILE_H

#include <stddef.h>

/* Write our pid to path and keep it locked; 0, or -1 with err set. */
int	pidfile_write(const char *path, char *err, size_t errlen);

/* Remove the file written, if it is still ours and we still may. */
void	pidfile_remove(void);

#endif /* MAILTLSD_PIDFILE_H */
