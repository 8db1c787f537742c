/*
 * safefile.h - read a whole regular file through one descriptor.
 *
 * Every file mailtlsd reads as root that someone else could have written
 * (the configuration, certificates, keys, CA bundles) is opened once,
 * O_RDONLY | O_NONBLOCK | O_CLOEXEC, checked with fstat() to be a regular
 * file, bounded in size and read through that same descriptor: a FIFO
 * never hangs the start, a device is never read, and what is parsed is
 * what was checked.  A leaf: it includes nothing of the project.
 *
 * Reasons are short words for the caller to put after its own prefix
 * ("local_key /x/y: " + "not a regular file").
 */
#ifndef MAILTLSD_SAFEFILE_H
#define MAILTLSD_SAFEFILE_H

#include <stddef.h>
#include <sys/stat.h>

#define SAFEFILE_NOFOLLOW	0x01	/* refuse a symbolic link (ELOOP) */

/* Largest file of each kind. */
#define SAFEFILE_KEY_MAX	(1024 * 1024)		/* a key or certificate */
#define SAFEFILE_CA_MAX		(16 * 1024 * 1024)	/* a CA bundle */
#define SAFEFILE_CONFIG_MAX	(1024 * 1024)		/* the configuration */

/*
 * Open name (relative to dirfd; AT_FDCWD for a plain path) for reading,
 * never waiting for a FIFO's writer, and fstat() it into *st: the
 * descriptor, or -1 with the reason in why (errno kept from open(2) when
 * that failed).  Anything but a regular file is refused.
 */
int	safefile_open(int dirfd, const char *name, int flags, struct stat *st,
	    char *why, size_t whylen);

/*
 * Read what is left of the regular file open on fd, at most max bytes,
 * into a new buffer with a NUL after the data (*len does not count it):
 * 0, or -1 with why.  Free the buffer with safefile_free().
 */
int	safefile_read_fd(int fd, size_t max, unsigned char **buf, size_t *len,
	    char *why, size_t whylen);

/* safefile_open() and safefile_read_fd() on path; 0, or -1 with why. */
int	safefile_read(const char *path, size_t max, unsigned char **buf,
	    size_t *len, char *why, size_t whylen);

/* Zero (it may hold a key) and free a buffer of len bytes (as read). */
void	safefile_free(unsigned char *buf, size_t len);

/* Write all of data to fd (through EINTR and short writes); 0 or -1. */
int	safefile_write_all(int fd, const unsigned char *data, size_t len);

#endif /* MAILTLSD_SAFEFILE_H */
