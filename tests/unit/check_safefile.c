/*
 * check_safefile.c - unit tests of safefile.c (a whole regular file read
 * through one descriptor): regular files of every size up to the bound,
 * FIFOs and directories refused without blocking, symbolic links followed
 * or refused on request, and the error texts.
 */
#define _XOPEN_SOURCE 700

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "safefile.h"
#include "unit.h"

static char	top[64];	/* a fresh temporary directory per test */

/* A fresh directory for each test. */
static void
setup(void)
{
	snprintf(top, sizeof(top), "/tmp/check_safefile.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(top));
}

/* Remove what a test left. */
static void
teardown(void)
{
	unit_remove_tree(top);
}

/* top/name in a static buffer. */
static const char *
in_top(const char *name)
{
	static char	path[256];

	snprintf(path, sizeof(path), "%s/%s", top, name);
	return path;
}

/* Write len bytes of a repeating pattern to top/name; its path. */
static const char *
make_file(const char *name, size_t len)
{
	const char	*path = in_top(name);
	FILE		*f = fopen(path, "wb");
	size_t		 i;

	ck_assert_ptr_nonnull(f);
	for (i = 0; i < len; i++)
		ck_assert_int_ne(putc('a' + (int)(i % 26), f), EOF);
	ck_assert_int_eq(fclose(f), 0);
	return path;
}

/* Read path (bound max) and check it holds len bytes of the pattern. */
static void
expect_read(const char *path, size_t max, size_t len)
{
	unsigned char	*buf;
	size_t		 got, i;
	char		 why[128] = "";

	ck_assert_msg(safefile_read(path, max, &buf, &got, why,
	    sizeof(why)) == 0, "%s: %s", path, why);
	ck_assert_uint_eq(got, len);
	for (i = 0; i < len; i++)
		ck_assert_int_eq(buf[i], 'a' + (int)(i % 26));
	ck_assert_int_eq(buf[len], '\0');
	safefile_free(buf, got);
}

/* Read path expecting a failure whose reason is want. */
static void
expect_refused(const char *path, size_t max, const char *want)
{
	unsigned char	*buf = (unsigned char *)"";
	size_t		 len = 1;
	char		 why[128] = "";

	ck_assert_int_eq(safefile_read(path, max, &buf, &len, why,
	    sizeof(why)), -1);
	ck_assert_ptr_null(buf);
	ck_assert_uint_eq(len, 0);
	ck_assert_str_eq(why, want);
}

/* Regular files: empty, small, larger than the first allocation, at max. */
START_TEST(test_regular_file)
{
	expect_read(make_file("empty", 0), 100, 0);
	expect_read(make_file("small", 10), 100, 10);
	expect_read(make_file("one", 1), 1, 1);
	expect_read(make_file("big", 100000), 100000, 100000);
	expect_read(make_file("bigger", 300000), SAFEFILE_CA_MAX, 300000);
}
END_TEST

/* A file over the bound is refused, by its size or by what is read. */
START_TEST(test_too_large)
{
	expect_refused(make_file("big", 101), 100, "larger than 100 bytes");
	expect_refused(make_file("huge", SAFEFILE_KEY_MAX + 1),
	    SAFEFILE_KEY_MAX, "larger than 1048576 bytes");
}
END_TEST

/*
 * A file that says it is small (as /proc files do) but holds more than
 * max is refused by what is read.
 */
START_TEST(test_grows_past_max)
{
	unsigned char	*buf;
	size_t		 len;
	char		 why[128] = "";
	struct stat	 st;
	int		 fd;

	ck_assert_int_eq(stat("/proc/self/maps", &st), 0);
	ck_assert_int_eq(st.st_size, 0);
	fd = open("/proc/self/maps", O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(safefile_read_fd(fd, 16, &buf, &len, why,
	    sizeof(why)), -1);
	ck_assert_str_eq(why, "larger than 16 bytes");
	close(fd);
	ck_assert_int_eq(safefile_read("/proc/self/maps", SAFEFILE_KEY_MAX,
	    &buf, &len, why, sizeof(why)), 0);
	ck_assert_uint_gt(len, 16);
	ck_assert_uint_eq(strlen((char *)buf), len);
	safefile_free(buf, len);
}
END_TEST

/* A FIFO without a writer is refused at once, not waited on. */
START_TEST(test_fifo_refused)
{
	const char	*path = in_top("fifo");

	ck_assert_int_eq(mkfifo(path, 0600), 0);
	alarm(5);	/* a blocking open would hang: fail instead */
	expect_refused(path, 100, "not a regular file");
	alarm(0);
}
END_TEST

/* A directory, and a device, are refused. */
START_TEST(test_directory_refused)
{
	expect_refused(top, 100, "not a regular file");
	expect_refused("/dev/null", 100, "not a regular file");
}
END_TEST

/* A missing file says so. */
START_TEST(test_missing_file)
{
	expect_refused(in_top("missing"), 100,
	    "cannot open: No such file or directory");
}
END_TEST

/* A symbolic link is followed, unless SAFEFILE_NOFOLLOW; errno tells. */
START_TEST(test_symlink)
{
	struct stat	 st;
	char		 why[128] = "";
	int		 dirfd, fd;

	make_file("target", 10);
	ck_assert_int_eq(symlink("target", in_top("link")), 0);
	expect_read(in_top("link"), 100, 10);
	dirfd = open(top, O_RDONLY | O_DIRECTORY);
	ck_assert_int_ge(dirfd, 0);
	fd = safefile_open(dirfd, "link", SAFEFILE_NOFOLLOW, &st, why,
	    sizeof(why));
	ck_assert_int_eq(fd, -1);
	ck_assert_int_eq(errno, ELOOP);
	ck_assert_str_eq(why, "is a symbolic link");
	fd = safefile_open(dirfd, "target", SAFEFILE_NOFOLLOW, &st, why,
	    sizeof(why));
	ck_assert_int_ge(fd, 0);
	ck_assert(S_ISREG(st.st_mode));
	ck_assert_int_eq(st.st_size, 10);
	ck_assert_int_ne(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
	close(fd);
	close(dirfd);
}
END_TEST

/* The suite. */
Suite *
safefile_suite(void)
{
	Suite	*s = suite_create("safefile");
	TCase	*tc = tcase_create("read");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_regular_file);
	tcase_add_test(tc, test_too_large);
	tcase_add_test(tc, test_grows_past_max);
	tcase_add_test(tc, test_fifo_refused);
	tcase_add_test(tc, test_directory_refused);
	tcase_add_test(tc, test_missing_file);
	tcase_add_test(tc, test_symlink);
	suite_add_tcase(s, tc);
	return s;
}
