/*
 * pidfile.c - the pid_file written with -d: see pidfile.h for the rules.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "config.h"
#include "log.h"
#include "pidfile.h"

static int	pidfile_fd = -1;
static char	pidfile_path[CONFIG_PATH_MAX];

/* Whether the open file is one we may overwrite; err set if not. */
static int
pidfile_usable(int fd, const char *path, char *err, size_t errlen)
{
	struct stat	st;

	if (fstat(fd, &st) != 0) {
		snprintf(err, errlen, "pid_file %s: %s", path, strerror(errno));
		return 0;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "pid_file %s is not a regular file", path);
		return 0;
	}
	if (st.st_nlink != 1) {
		snprintf(err, errlen, "pid_file %s has other hard links: "
		    "remove it", path);
		return 0;
	}
	if (st.st_uid != geteuid()) {
		snprintf(err, errlen, "pid_file %s belongs to uid %ld, not to "
		    "uid %ld that mailtlsd starts as: remove it", path,
		    (long)st.st_uid, (long)geteuid());
		return 0;
	}
	return 1;
}

/* Say which process holds the lock, as far as the file tells. */
static void
pidfile_held(int fd, const char *path, char *err, size_t errlen)
{
	char	text[32];
	ssize_t	n;

	n = pread(fd, text, sizeof(text) - 1, 0);
	text[n > 0 ? n : 0] = '\0';
	text[strcspn(text, "\n")] = '\0';
	snprintf(err, errlen, "pid_file %s is locked by another mailtlsd "
	    "(pid %s)", path, text[0] != '\0' ? text : "unknown");
}

/* Replace the file's content with our pid; 0 or -1. */
static int
pidfile_fill(int fd)
{
	char	text[32];
	int	n;

	n = snprintf(text, sizeof(text), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) != 0)
		return -1;
	return pwrite(fd, text, (size_t)n, 0) == n ? 0 : -1;
}

int
pidfile_write(const char *path, char *err, size_t errlen)
{
	int	fd;

	if (path[0] == '\0')
		return 0;
	/* O_NONBLOCK: a FIFO put there must not hang the start. */
	fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK |
	    O_CLOEXEC, 0644);
	if (fd < 0) {
		snprintf(err, errlen, "pid_file %s: %s", path, errno == ELOOP ?
		    "is a symbolic link" : strerror(errno));
		return -1;
	}
	if (!pidfile_usable(fd, path, err, errlen))
		goto fail;
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		if (errno == EWOULDBLOCK)
			pidfile_held(fd, path, err, errlen);
		else
			snprintf(err, errlen, "pid_file %s: cannot lock: %s",
			    path, strerror(errno));
		goto fail;
	}
	if (pidfile_fill(fd) != 0) {
		snprintf(err, errlen, "pid_file %s: %s", path, strerror(errno));
		goto fail;
	}
	pidfile_fd = fd;
	snprintf(pidfile_path, sizeof(pidfile_path), "%s", path);
	return 0;
fail:
	close(fd);
	return -1;
}

void
pidfile_remove(void)
{
	struct stat	held, now;

	if (pidfile_fd < 0)
		return;
	/* Only the very file we wrote: it may have been replaced since. */
	if (fstat(pidfile_fd, &held) == 0 && lstat(pidfile_path, &now) == 0 &&
	    held.st_dev == now.st_dev && held.st_ino == now.st_ino &&
	    unlink(pidfile_path) != 0)
		log_debug("cannot remove pid_file %s: %s", pidfile_path,
		    strerror(errno));
	close(pidfile_fd);
	pidfile_fd = -1;
}
