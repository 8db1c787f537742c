/*
 * failalloc.c - a preloadable shim that makes the daemon's allocations fail
 * on request, for the fault-injection tests (tests/integration/
 * test_faults.py).  Debian 12's mbedTLS has no
 * mbedtls_platform_set_calloc_free, so the shim interposes the C library's
 * allocator for the whole process: mbedTLS, libevent and the daemon alike.
 *
 *   LD_PRELOAD=build/tests/failalloc.so FAILALLOC_CONTROL=FILE mailtlsd ...
 *
 * Nothing fails until SIGRTMIN+2 arms the shim; SIGRTMIN+3 disarms it
 * (real-time signals: the daemon handles SIGUSR1 itself).  Each
 * signal writes one line to stderr (the daemon's log, where the tests wait
 * for it) with the counts since the last arming and the number of live
 * blocks, which a test compares before and after a storm to find leaks:
 *
 *   failalloc: armed (live 1234)
 *   failalloc: disarmed: 560 calls, 11 failed (live 1234)
 *
 * While armed, call n (counting from 1 at arming) fails when n >= after
 * and (n - after) % every == 0, at most limit times per arming, and only
 * for sizes within [min, max].  Defaults: after 1, every 1, no limit, any
 * size: everything fails.  free() never fails.  Options:
 *
 *   within=F,G	only allocations made while one of these (exported)
 *		functions is among the 16 innermost callers fail, or
 *		count as calls
 *   spare=F,G	allocations made directly by these functions never fail:
 *		for library bugs no caller can handle (libevent 2.1's
 *		bufferevent_socket_new and bufferevent_setwatermark ignore a
 *		failure of evbuffer_add_cb: a bufferevent that never writes,
 *		or a NULL dereference)
 *   trace=1	each failure writes its call number, size and backtrace
 *
 * They come from the environment at start-up (FAILALLOC_AFTER, _EVERY,
 * _LIMIT, _MIN, _MAX, _WITHIN, _SPARE, _TRACE) and, at each arming, from
 * the file named by FAILALLOC_CONTROL if it exists: words "key=value";
 * the keys missing keep their value.
 *
 * The daemon is single-threaded; the counters are not meant for more.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef void	*(*malloc_fn)(size_t);
typedef void	*(*calloc_fn)(size_t, size_t);
typedef void	*(*realloc_fn)(void *, size_t);
typedef void	 (*free_fn)(void *);
typedef int	 (*posix_memalign_fn)(void **, size_t, size_t);
typedef void	*(*memalign_fn)(size_t, size_t);

static malloc_fn		 real_malloc;
static calloc_fn		 real_calloc;
static realloc_fn		 real_realloc;
static free_fn			 real_free;
static posix_memalign_fn	 real_posix_memalign;
static memalign_fn		 real_memalign;
static memalign_fn		 real_aligned_alloc;

/* dlsym() may allocate before the real functions are known. */
static _Alignas(max_align_t) char	 boot_heap[16384];
static size_t				 boot_used;
static int				 resolving;

static volatile sig_atomic_t	 armed;
static unsigned long		 calls;		/* since arming */
static unsigned long		 failed;	/* since arming */
static long			 live;		/* blocks allocated, not freed */
static unsigned long		 opt_after = 1, opt_every = 1;
static unsigned long		 opt_limit = (unsigned long)-1;
static size_t			 opt_min, opt_max = (size_t)-1;
static int			 opt_trace;	/* backtrace each failure */
static int			 tracing;	/* in backtrace(): no failures */
static char			 control_path[512];
static char			 opt_spare[256];	/* "name,name" */
static char			 opt_within[256];	/* "name,name" */

/* An unsigned environment variable, or dflt. */
static unsigned long
env_ulong(const char *name, unsigned long dflt)
{
	const char	*s = getenv(name);
	char		*end;
	unsigned long	 v;

	if (s == NULL || *s == '\0')
		return dflt;
	v = strtoul(s, &end, 10);
	return *end == '\0' ? v : dflt;
}

/* Append the decimal v to buf at *len (async-signal-safe). */
static void
put_ulong(char *buf, size_t *len, unsigned long v)
{
	char	tmp[24];
	int	n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	while (n > 0)
		buf[(*len)++] = tmp[--n];
}

/* Append the string s to buf at *len (async-signal-safe). */
static void
put_str(char *buf, size_t *len, const char *s)
{
	while (*s != '\0')
		buf[(*len)++] = *s++;
}

/* Set the option named by word (up to '=') from its value. */
static void
set_option(const char *word, size_t len, unsigned long v)
{
	if (len == 5 && memcmp(word, "after", 5) == 0)
		opt_after = v != 0 ? v : 1;
	else if (len == 5 && memcmp(word, "every", 5) == 0)
		opt_every = v != 0 ? v : 1;
	else if (len == 5 && memcmp(word, "limit", 5) == 0)
		opt_limit = v;
	else if (len == 3 && memcmp(word, "min", 3) == 0)
		opt_min = v;
	else if (len == 3 && memcmp(word, "max", 3) == 0)
		opt_max = v;
	else if (len == 5 && memcmp(word, "trace", 5) == 0)
		opt_trace = v != 0;
}

/* Set a list of names (dst, 256 bytes) from the text at word. */
static void
set_names(char *dst, const char *word)
{
	size_t	n = 0;

	while (word[n] != '\0' && word[n] != ' ' && word[n] != '\n' &&
	    n < sizeof(opt_spare) - 1) {
		dst[n] = word[n];
		n++;
	}
	dst[n] = '\0';
}

/* Read "key=N ..." from the control file (async-signal-safe). */
static void
read_control(void)
{
	char		 buf[512];
	const char	*word;
	ssize_t		 n;
	size_t		 i, len;
	unsigned long	 v;
	int		 fd;

	if (control_path[0] == '\0' ||
	    (fd = open(control_path, O_RDONLY | O_CLOEXEC)) < 0)
		return;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	for (i = 0; buf[i] != '\0';) {
		while (buf[i] == ' ' || buf[i] == '\n' || buf[i] == '\t')
			i++;
		word = buf + i;
		for (len = 0; buf[i] != '\0' && buf[i] != '=' &&
		    buf[i] != ' ' && buf[i] != '\n'; i++)
			len++;
		if (buf[i] != '=') {
			if (buf[i] != '\0')
				i++;
			continue;
		}
		if ((len == 5 && memcmp(word, "spare", 5) == 0) ||
		    (len == 6 && memcmp(word, "within", 6) == 0)) {
			set_names(len == 5 ? opt_spare : opt_within,
			    buf + i + 1);
			while (buf[i] != '\0' && buf[i] != ' ' && buf[i] != '\n')
				i++;
			continue;
		}
		for (i++, v = 0; buf[i] >= '0' && buf[i] <= '9'; i++)
			v = v * 10 + (unsigned long)(buf[i] - '0');
		set_option(word, len, v);
	}
}

/* SIGRTMIN+2 arms, SIGRTMIN+3 disarms; both report on stderr. */
static void
failalloc_signal_cb(int sig)
{
	char	line[160];
	size_t	len = 0;
	int	saved = errno;
	long	l = live;

	put_str(line, &len, "failalloc: ");
	if (sig == SIGRTMIN + 2) {
		read_control();
		calls = failed = 0;
		armed = 1;
		put_str(line, &len, "armed");
	} else {
		armed = 0;
		put_str(line, &len, "disarmed: ");
		put_ulong(line, &len, calls);
		put_str(line, &len, " calls, ");
		put_ulong(line, &len, failed);
		put_str(line, &len, " failed");
	}
	put_str(line, &len, " (live ");
	if (l < 0) {
		put_str(line, &len, "-");
		l = -l;
	}
	put_ulong(line, &len, (unsigned long)l);
	put_str(line, &len, ")\n");
	(void)!write(STDERR_FILENO, line, len);
	errno = saved;
}

/* Find the real allocator. */
static void
failalloc_resolve(void)
{
	if (real_free != NULL || resolving)
		return;
	resolving = 1;
	real_malloc = (malloc_fn)dlsym(RTLD_NEXT, "malloc");
	real_calloc = (calloc_fn)dlsym(RTLD_NEXT, "calloc");
	real_realloc = (realloc_fn)dlsym(RTLD_NEXT, "realloc");
	real_posix_memalign = (posix_memalign_fn)dlsym(RTLD_NEXT,
	    "posix_memalign");
	real_memalign = (memalign_fn)dlsym(RTLD_NEXT, "memalign");
	real_aligned_alloc = (memalign_fn)dlsym(RTLD_NEXT, "aligned_alloc");
	real_free = (free_fn)dlsym(RTLD_NEXT, "free");
	resolving = 0;
}

/* Read the options and install the signal handlers, before main(). */
__attribute__((constructor)) static void
failalloc_init(void)
{
	struct sigaction	 sa;
	const char		*path;
	void			*frame;

	failalloc_resolve();
	if ((path = getenv("FAILALLOC_CONTROL")) != NULL &&
	    strlen(path) < sizeof(control_path))
		memcpy(control_path, path, strlen(path) + 1);
	opt_after = env_ulong("FAILALLOC_AFTER", 1);
	opt_every = env_ulong("FAILALLOC_EVERY", 1);
	opt_limit = env_ulong("FAILALLOC_LIMIT", (unsigned long)-1);
	opt_min = env_ulong("FAILALLOC_MIN", 0);
	opt_max = env_ulong("FAILALLOC_MAX", (unsigned long)-1);
	opt_trace = env_ulong("FAILALLOC_TRACE", 0) != 0;
	if ((path = getenv("FAILALLOC_SPARE")) != NULL)
		set_names(opt_spare, path);
	if ((path = getenv("FAILALLOC_WITHIN")) != NULL)
		set_names(opt_within, path);
	backtrace(&frame, 1);		/* loads libgcc now, not in malloc */
	if (opt_after == 0)
		opt_after = 1;
	if (opt_every == 0)
		opt_every = 1;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = failalloc_signal_cb;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGRTMIN + 2);
	sigaddset(&sa.sa_mask, SIGRTMIN + 3);
	sigaction(SIGRTMIN + 2, &sa, NULL);
	sigaction(SIGRTMIN + 3, &sa, NULL);
}

/* Say which allocation fails, and from where. */
static void
failalloc_trace(unsigned long n, size_t size)
{
	void	*frames[24];
	char	 line[96];
	size_t	 len = 0;
	int	 depth;

	put_str(line, &len, "failalloc: failing call ");
	put_ulong(line, &len, n);
	put_str(line, &len, " of ");
	put_ulong(line, &len, size);
	put_str(line, &len, " bytes at\n");
	(void)!write(STDERR_FILENO, line, len);
	tracing = 1;
	depth = backtrace(frames, 24);
	backtrace_symbols_fd(frames + 2, depth - 2, STDERR_FILENO);
	tracing = 0;
}

/* Whether the (exported) function containing pc is in names. */
static int
in_names(const char *names, const void *pc)
{
	Dl_info		 info;
	const char	*p = names;
	size_t		 len;

	if (dladdr(pc, &info) == 0 || info.dli_sname == NULL)
		return 0;
	len = strlen(info.dli_sname);
	while (*p != '\0') {
		if (strncmp(p, info.dli_sname, len) == 0 &&
		    (p[len] == ',' || p[len] == '\0'))
			return 1;
		while (*p != '\0' && *p != ',')
			p++;
		if (*p == ',')
			p++;
	}
	return 0;
}

/* Whether the function containing pc is spared. */
static int
is_spared(const void *pc)
{
	return opt_spare[0] != '\0' && in_names(opt_spare, pc);
}

/* Whether one of names is among the innermost 16 callers (cheaper). */
static int
on_stack(const char *names)
{
	void	*frames[16];
	int	 depth, i, found = 0;

	tracing = 1;		/* backtrace() may allocate */
	depth = backtrace(frames, 16);
	for (i = 0; i < depth && !found; i++)
		found = in_names(names, frames[i]);
	tracing = 0;
	return found;
}

/* Whether this allocation of size bytes, called from pc, must fail. */
static int
failalloc_now(size_t size, const void *pc)
{
	unsigned long	n;

	if (!armed || tracing)
		return 0;
	if (opt_within[0] != '\0' && !on_stack(opt_within))
		return 0;
	n = ++calls;
	if (n < opt_after || (n - opt_after) % opt_every != 0)
		return 0;
	if (size < opt_min || size > opt_max || failed >= opt_limit ||
	    is_spared(pc))
		return 0;
	failed++;
	if (opt_trace)
		failalloc_trace(n, size);
	return 1;
}

/* Memory for dlsym() while the real allocator is unknown. */
static void *
boot_alloc(size_t size)
{
	void	*p;

	size = (size + 15) & ~(size_t)15;
	if (size > sizeof(boot_heap) - boot_used)
		return NULL;
	p = boot_heap + boot_used;
	boot_used += size;
	return p;
}

/* Whether p was handed out by boot_alloc(). */
static int
is_boot(const void *p)
{
	return (const char *)p >= boot_heap &&
	    (const char *)p < boot_heap + sizeof(boot_heap);
}

/* malloc(3), failing on request. */
void *
malloc(size_t size)
{
	void	*p;

	if (real_malloc == NULL) {
		failalloc_resolve();
		if (real_malloc == NULL)
			return boot_alloc(size);
	}
	if (failalloc_now(size, __builtin_return_address(0))) {
		errno = ENOMEM;
		return NULL;
	}
	if ((p = real_malloc(size)) != NULL)
		live++;
	return p;
}

/* calloc(3), failing on request. */
void *
calloc(size_t nmemb, size_t size)
{
	void	*p;

	if (real_calloc == NULL) {
		failalloc_resolve();
		if (real_calloc == NULL) {
			if (size != 0 && nmemb > (size_t)-1 / size)
				return NULL;
			return boot_alloc(nmemb * size);  /* static: zeroed */
		}
	}
	if (failalloc_now(size != 0 && nmemb <= (size_t)-1 / size ?
	    nmemb * size : (size_t)-1, __builtin_return_address(0))) {
		errno = ENOMEM;
		return NULL;
	}
	if ((p = real_calloc(nmemb, size)) != NULL)
		live++;
	return p;
}

/* realloc(), for an allocation made from pc. */
static void *
do_realloc(void *old, size_t size, const void *pc)
{
	void	*p;
	size_t	 len;

	if (is_boot(old)) {
		/* Never happens in practice; copy out of the boot heap. */
		len = (size_t)(boot_heap + sizeof(boot_heap) - (char *)old);
		if ((p = malloc(size)) != NULL)
			memcpy(p, old, size < len ? size : len);
		return p;
	}
	if (real_realloc == NULL)
		failalloc_resolve();
	if (old != NULL && size == 0) {
		real_realloc(old, 0);	/* glibc: frees, returns NULL */
		live--;
		return NULL;
	}
	if (failalloc_now(size, pc)) {
		errno = ENOMEM;
		return NULL;
	}
	if ((p = real_realloc(old, size)) != NULL && old == NULL)
		live++;
	return p;
}

/* realloc(3), failing on request. */
void *
realloc(void *old, size_t size)
{
	return do_realloc(old, size, __builtin_return_address(0));
}

/* reallocarray(3), failing on request. */
void *
reallocarray(void *old, size_t nmemb, size_t size)
{
	if (size != 0 && nmemb > (size_t)-1 / size) {
		errno = ENOMEM;
		return NULL;
	}
	return do_realloc(old, nmemb * size, __builtin_return_address(0));
}

/* free(3), counting the live blocks. */
void
free(void *p)
{
	if (p == NULL || is_boot(p))
		return;
	if (real_free == NULL)
		failalloc_resolve();
	live--;
	real_free(p);
}

/* posix_memalign(3), failing on request. */
int
posix_memalign(void **out, size_t align, size_t size)
{
	int	ret;

	if (real_posix_memalign == NULL)
		failalloc_resolve();
	if (failalloc_now(size, __builtin_return_address(0)))
		return ENOMEM;
	if ((ret = real_posix_memalign(out, align, size)) == 0)
		live++;
	return ret;
}

/* memalign(3), failing on request. */
void *
memalign(size_t align, size_t size)
{
	void	*p;

	if (real_memalign == NULL)
		failalloc_resolve();
	if (failalloc_now(size, __builtin_return_address(0))) {
		errno = ENOMEM;
		return NULL;
	}
	if ((p = real_memalign(align, size)) != NULL)
		live++;
	return p;
}

/* aligned_alloc(3), failing on request. */
void *
aligned_alloc(size_t align, size_t size)
{
	void	*p;

	if (real_aligned_alloc == NULL)
		failalloc_resolve();
	if (failalloc_now(size, __builtin_return_address(0))) {
		errno = ENOMEM;
		return NULL;
	}
	if ((p = real_aligned_alloc(align, size)) != NULL)
		live++;
	return p;
}
