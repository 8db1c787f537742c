/*
 * swapfile.c - a preloadable shim that replaces a file with a symbolic link
 * right after the daemon opens it, for the tests of a swap between the
 * check of a file and its use (tests/integration/test_local_tls.py):
 *
 *   LD_PRELOAD=build/tests/swapfile.so \
 *   SWAPFILE0="N PATH TARGET" [SWAPFILE1=...] mailtlsd ...
 *
 * Right after the Nth successful open of PATH (counting from 1; open,
 * openat and their 64 variants, by PATH itself or by its last component
 * relative to a descriptor of its directory), the file at PATH is renamed
 * to PATH.orig and a symbolic link to TARGET takes its place, before the
 * caller can look at what it opened.  Each swap writes one line to stderr
 * (the daemon's log):
 *
 *   swapfile: PATH now links to TARGET (after open 1)
 *
 * Up to SWAP_MAX paths.  The daemon is single-threaded; the shim is not
 * meant for more.  Never sanitized: the tests skip it for ASan builds.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#define SWAP_MAX	4

typedef int	(*openat_fn)(int, const char *, int, ...);

struct swap {
	int		 nth;		/* swap after this open */
	int		 opens;		/* successful opens seen */
	char		 path[1024];
	char		 dir[1024];	/* path without its last component */
	const char	*base;		/* its last component, in path */
	char		 target[1024];
};

static struct swap	swaps[SWAP_MAX];
static int		n_swaps = -1;	/* -1: environment not read yet */

/* Read SWAPFILE0.. from the environment, once. */
static void
swap_init(void)
{
	char	 name[16], *slash;
	const char *v;
	int	 i;

	if (n_swaps >= 0)
		return;
	n_swaps = 0;
	for (i = 0; i < SWAP_MAX; i++) {
		struct swap	*s = &swaps[n_swaps];

		snprintf(name, sizeof(name), "SWAPFILE%d", i);
		if ((v = getenv(name)) == NULL)
			continue;
		if (sscanf(v, "%d %1023s %1023s", &s->nth, s->path,
		    s->target) != 3 || (slash = strrchr(s->path, '/')) ==
		    NULL) {
			fprintf(stderr, "swapfile: cannot use %s=%s\n", name,
			    v);
			continue;
		}
		memcpy(s->dir, s->path, (size_t)(slash - s->path));
		s->dir[slash - s->path] = '\0';
		if (s->dir[0] == '\0')
			strcpy(s->dir, "/");
		s->base = slash + 1;
		n_swaps++;
	}
}

/* Whether dirfd/name (or name alone) is s's path. */
static int
swap_matches(const struct swap *s, int dirfd, const char *name)
{
	struct stat	a, b;

	if (strcmp(name, s->path) == 0)
		return 1;
	if (strcmp(name, s->base) != 0)
		return 0;
	if (dirfd == AT_FDCWD)
		return stat(".", &a) == 0 && stat(s->dir, &b) == 0 &&
		    a.st_dev == b.st_dev && a.st_ino == b.st_ino;
	return fstat(dirfd, &a) == 0 && stat(s->dir, &b) == 0 &&
	    a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* After a successful open of dirfd/name: swap what is due. */
static void
swap_after_open(int dirfd, const char *name)
{
	char	orig[1100], tmp[1100];
	int	i, saved = errno;

	swap_init();
	for (i = 0; i < n_swaps; i++) {
		struct swap	*s = &swaps[i];

		if (!swap_matches(s, dirfd, name) || ++s->opens != s->nth)
			continue;
		snprintf(orig, sizeof(orig), "%s.orig", s->path);
		snprintf(tmp, sizeof(tmp), "%s.swap", s->path);
		unlink(tmp);
		if (symlink(s->target, tmp) != 0 || rename(s->path, orig) != 0 ||
		    rename(tmp, s->path) != 0)
			fprintf(stderr, "swapfile: cannot swap %s: %s\n",
			    s->path, strerror(errno));
		else
			fprintf(stderr, "swapfile: %s now links to %s (after "
			    "open %d)\n", s->path, s->target, s->opens);
	}
	errno = saved;
}

/* The real openat, or openat64. */
static int
real_openat(const char *sym, int dirfd, const char *name, int flags,
    mode_t mode)
{
	openat_fn	fn = (openat_fn)dlsym(RTLD_NEXT, sym);

	if (fn == NULL) {
		errno = ENOSYS;
		return -1;
	}
	return fn(dirfd, name, flags, mode);
}

/* The mode argument, when flags say there is one. */
#define SWAP_MODE(flags, mode) do {					\
	va_list	ap;							\
									\
	mode = 0;							\
	if ((flags) & (O_CREAT | O_TMPFILE)) {				\
		va_start(ap, flags);					\
		mode = (mode_t)va_arg(ap, int);				\
		va_end(ap);						\
	}								\
} while (0)

/* Interposed. */
int
openat(int dirfd, const char *name, int flags, ...)
{
	mode_t	mode;
	int	fd;

	SWAP_MODE(flags, mode);
	if ((fd = real_openat("openat", dirfd, name, flags, mode)) >= 0)
		swap_after_open(dirfd, name);
	return fd;
}

/* Interposed. */
int
openat64(int dirfd, const char *name, int flags, ...)
{
	mode_t	mode;
	int	fd;

	SWAP_MODE(flags, mode);
	if ((fd = real_openat("openat64", dirfd, name, flags, mode)) >= 0)
		swap_after_open(dirfd, name);
	return fd;
}

/* Interposed. */
int
open(const char *name, int flags, ...)
{
	mode_t	mode;
	int	fd;

	SWAP_MODE(flags, mode);
	if ((fd = real_openat("openat", AT_FDCWD, name, flags, mode)) >= 0)
		swap_after_open(AT_FDCWD, name);
	return fd;
}

/* Interposed. */
int
open64(const char *name, int flags, ...)
{
	mode_t	mode;
	int	fd;

	SWAP_MODE(flags, mode);
	if ((fd = real_openat("openat64", AT_FDCWD, name, flags, mode)) >= 0)
		swap_after_open(AT_FDCWD, name);
	return fd;
}
