/*
 * safefile.c - read a whole regular file through one descriptor: see
 * safefile.h for the rules.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include <mbedtls/platform_util.h>

#include "safefile.h"

#define SAFEFILE_OPEN	(O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)
#define SAFEFILE_CHUNK	4096	/* least first allocation (/proc says 0) */

/* Open and check name; the descriptor, or -1 with why. */
int
safefile_open(int dirfd, const char *name, int flags, struct stat *st,
    char *why, size_t whylen)
{
	int	fd, error;

	fd = openat(dirfd, name, SAFEFILE_OPEN |
	    ((flags & SAFEFILE_NOFOLLOW) != 0 ? O_NOFOLLOW : 0));
	if (fd < 0) {
		error = errno;
		if (error == ELOOP && (flags & SAFEFILE_NOFOLLOW) != 0)
			snprintf(why, whylen, "is a symbolic link");
		else
			snprintf(why, whylen, "cannot open: %s",
			    strerror(error));
		errno = error;
		return -1;
	}
	if (fstat(fd, st) != 0) {
		error = errno;
		snprintf(why, whylen, "cannot open: %s", strerror(error));
		close(fd);
		errno = error;
		return -1;
	}
	if (!S_ISREG(st->st_mode)) {
		snprintf(why, whylen, "not a regular file");
		close(fd);
		errno = EINVAL;
		return -1;
	}
	return fd;
}

/* Zero the used bytes of a buffer and free it. */
static void
safefile_wipe(unsigned char *buf, size_t used)
{
	mbedtls_platform_zeroize(buf, used);
	free(buf);
}

/* Read the rest of fd, at most max bytes; 0, or -1 with why. */
int
safefile_read_fd(int fd, size_t max, unsigned char **buf, size_t *len,
    char *why, size_t whylen)
{
	struct stat	 st;
	unsigned char	*p, *q;
	size_t		 cap, n = 0;
	ssize_t		 r;

	*buf = NULL;
	*len = 0;
	if (fstat(fd, &st) != 0) {
		snprintf(why, whylen, "cannot read: %s", strerror(errno));
		return -1;
	}
	if (st.st_size < 0 || (unsigned long long)st.st_size > max) {
		snprintf(why, whylen, "larger than %zu bytes", max);
		return -1;
	}
	/* Room for the data and one byte more, to see that it grew. */
	cap = (size_t)st.st_size + 1;
	if (cap < SAFEFILE_CHUNK)
		cap = SAFEFILE_CHUNK;
	if (cap > max + 1)
		cap = max + 1;
	if ((p = malloc(cap + 1)) == NULL) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	for (;;) {
		if (n == cap) {
			if (cap == max + 1)
				break;		/* one byte over max */
			cap = cap > max / 2 ? max + 1 : cap * 2;
			if ((q = malloc(cap + 1)) == NULL) {
				snprintf(why, whylen, "out of memory");
				safefile_wipe(p, n);
				return -1;
			}
			memcpy(q, p, n);
			safefile_wipe(p, n);
			p = q;
		}
		if ((r = read(fd, p + n, cap - n)) == 0)
			break;
		if (r < 0) {
			if (errno == EINTR)
				continue;
			snprintf(why, whylen, "cannot read: %s",
			    strerror(errno));
			safefile_wipe(p, n);
			return -1;
		}
		n += (size_t)r;
	}
	if (n > max) {
		snprintf(why, whylen, "larger than %zu bytes", max);
		safefile_wipe(p, n);
		return -1;
	}
	p[n] = '\0';
	*buf = p;
	*len = n;
	return 0;
}

/* Open, check and read path. */
int
safefile_read(const char *path, size_t max, unsigned char **buf,
    size_t *len, char *why, size_t whylen)
{
	struct stat	st;
	int		fd, ret;

	*buf = NULL;
	*len = 0;
	if ((fd = safefile_open(AT_FDCWD, path, 0, &st, why, whylen)) < 0)
		return -1;
	ret = safefile_read_fd(fd, max, buf, len, why, whylen);
	close(fd);
	return ret;
}

/* Zero and free a buffer of safefile_read_fd(), its NUL too. */
void
safefile_free(unsigned char *buf, size_t len)
{
	if (buf != NULL)
		safefile_wipe(buf, len + 1);
}

/* Write all of data to fd; 0, or -1 with errno. */
int
safefile_write_all(int fd, const unsigned char *data, size_t len)
{
	ssize_t	n;

	while (len > 0) {
		if ((n = write(fd, data, len)) < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		data += n;
		len -= (size_t)n;
	}
	return 0;
}
