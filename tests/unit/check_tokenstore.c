/*
 * check_tokenstore.c - unit tests of tokenstore.c (OAuth2 tokens sealed
 * with a key derived from the password): save and open through the
 * worker thread and the event loop, wrong passwords and altered or moved
 * files that are never overwritten, the trust rules for files and
 * directories, the cache (counted derivations and reads, a file changed
 * on disk), cancel, free with queued jobs, a full queue, file names, and
 * the Argon2id parameters a file records.
 *
 * Every test runs the event loop until the callbacks it waits for have
 * come, bounded by a timer; tokenstore_hold() queues jobs where a test
 * needs them queued.  Argon2id runs with 8 MiB so the tests stay fast.
 */
#define _XOPEN_SOURCE 700

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include <event2/event.h>

#include "tokenstore.h"
#include "unit.h"

#define KDF_KIB		8192		/* 8 MiB */
#define KDF_PASSES	1
#define WAIT_SECS	60
#define SECTION		"ms"
#define PASSWORD	"correct horse"
#define HDR_LEN		64

static char			 top[64];	/* a fresh directory per test */
static char			 dir[128];	/* top/oauth2 */
static struct event_base	*base;

/* What one callback brought. */
struct result {
	int			calls;
	enum tokenstore_result	r;
	int			has_set;
	struct token_set	set;
	char			reason[512];
};

static void
setup(void)
{
	snprintf(top, sizeof(top), "/tmp/check_tokenstore.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(top));
	snprintf(dir, sizeof(dir), "%s/oauth2", top);
	ck_assert_ptr_nonnull(base = event_base_new());
}

static void
teardown(void)
{
	event_base_free(base);
	unit_remove_tree(top);
}

/* Record a callback's result. */
static void
record_cb(enum tokenstore_result r, const struct token_set *set,
    const char *reason, void *arg)
{
	struct result	*res = arg;

	res->calls++;
	res->r = r;
	if (res->has_set)
		token_set_clear(&res->set);
	res->has_set = set != NULL;
	if (set != NULL)
		ck_assert_int_eq(token_set_copy(&res->set, set), 0);
	snprintf(res->reason, sizeof(res->reason), "%s",
	    reason != NULL ? reason : "");
	if (r == TOKENSTORE_OK)
		ck_assert_ptr_null(reason);
	else
		ck_assert_ptr_nonnull(reason);
}

static void
result_clear(struct result *res)
{
	if (res->has_set)
		token_set_clear(&res->set);
	memset(res, 0, sizeof(*res));
}

/* The guard timer went off. */
static void
timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	*(int *)arg = 1;
}

/* Run the event loop until *count reaches n (bounded by WAIT_SECS). */
static void
run_until(const int *count, int n)
{
	struct timeval	 tv = { WAIT_SECS, 0 };
	struct event	*guard;
	int		 expired = 0;

	ck_assert_ptr_nonnull(guard = evtimer_new(base, timeout_cb, &expired));
	evtimer_add(guard, &tv);
	while (*count < n && !expired)
		ck_assert_int_ge(event_base_loop(base, EVLOOP_ONCE), 0);
	event_free(guard);
	ck_assert_msg(!expired, "no callback within %d s", WAIT_SECS);
}

/* Let the loop deliver whatever is ready, without waiting. */
static void
run_ready(void)
{
	int	i;

	for (i = 0; i < 3; i++)
		event_base_loop(base, EVLOOP_NONBLOCK);
}

static struct tokenstore *
store_new(void)
{
	struct tokenstore	*ts;
	char			 err[512];

	ts = tokenstore_new(base, dir, KDF_KIB, KDF_PASSES, err, sizeof(err));
	ck_assert_msg(ts != NULL, "tokenstore_new: %s", err);
	return ts;
}

/* Sample tokens, told apart by n. */
static struct token_set
tokens(int n)
{
	static char		access[8][64], refresh[8][64];
	struct token_set	set;

	snprintf(access[n % 8], sizeof(access[0]), "access-%d", n);
	snprintf(refresh[n % 8], sizeof(refresh[0]), "refresh-%d", n);
	set.access_token = access[n % 8];
	set.refresh_token = refresh[n % 8];
	set.scope = "https://outlook.office.com/IMAP.AccessAsUser.All";
	set.access_expires = 1700000000 + n;
	set.updated = 1600000000 + n;
	return set;
}

/* Save and wait: the result. */
static enum tokenstore_result
save_sec(struct tokenstore *ts, const char *section, const char *user,
    const char *pw, int n, struct result *res)
{
	struct token_set	set = tokens(n);

	result_clear(res);
	ck_assert_ptr_nonnull(tokenstore_save(ts, section, user, pw,
	    strlen(pw), &set, record_cb, res));
	ck_assert_int_eq(res->calls, 0);	/* never from inside */
	run_until(&res->calls, 1);
	return res->r;
}

static enum tokenstore_result
save(struct tokenstore *ts, const char *user, const char *pw, int n,
    struct result *res)
{
	return save_sec(ts, SECTION, user, pw, n, res);
}

/* Open and wait: the result. */
static enum tokenstore_result
open_sec(struct tokenstore *ts, const char *section, const char *user,
    const char *pw, struct result *res)
{
	result_clear(res);
	ck_assert_ptr_nonnull(tokenstore_open(ts, section, user, pw,
	    strlen(pw), record_cb, res));
	ck_assert_int_eq(res->calls, 0);
	run_until(&res->calls, 1);
	return res->r;
}

static enum tokenstore_result
open_acc(struct tokenstore *ts, const char *user, const char *pw,
    struct result *res)
{
	return open_sec(ts, SECTION, user, pw, res);
}

/* Whether res holds the tokens tokens(n). */
static void
assert_tokens(const struct result *res, int n)
{
	struct token_set	want = tokens(n);

	ck_assert_int_eq(res->r, TOKENSTORE_OK);
	ck_assert(res->has_set);
	ck_assert_str_eq(res->set.access_token, want.access_token);
	ck_assert_str_eq(res->set.refresh_token, want.refresh_token);
	ck_assert_str_eq(res->set.scope, want.scope);
	ck_assert_int_eq(res->set.access_expires, want.access_expires);
	ck_assert_int_eq(res->set.updated, want.updated);
}

/* dir/SECTION/name in a static buffer. */
static const char *
file_of(const char *name)
{
	static char	path[1024];

	snprintf(path, sizeof(path), "%s/%s/%s", dir, SECTION, name);
	return path;
}

/* The whole of a file (to free), its length in *len. */
static unsigned char *
slurp(const char *path, size_t *len)
{
	FILE		*f = fopen(path, "rb");
	unsigned char	*buf = malloc(TOKENSTORE_FILE_MAX + 1);

	ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
	ck_assert_ptr_nonnull(buf);
	*len = fread(buf, 1, TOKENSTORE_FILE_MAX + 1, f);
	fclose(f);
	return buf;
}

/* Write len bytes to path, mode 0600. */
static void
spit(const char *path, const unsigned char *buf, size_t len)
{
	int	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, buf, len), (ssize_t)len);
	ck_assert_int_eq(close(fd), 0);
}

/* Whether the file at path has exactly the bytes buf. */
static void
assert_bytes(const char *path, const unsigned char *buf, size_t len)
{
	size_t		 now_len;
	unsigned char	*now = slurp(path, &now_len);

	ck_assert_uint_eq(now_len, len);
	ck_assert(memcmp(now, buf, len) == 0);
	free(now);
}

static struct tokenstore_stats
stats(const struct tokenstore *ts)
{
	struct tokenstore_stats	st;

	tokenstore_get_stats(ts, &st);
	return st;
}

static mode_t
mode_of(const char *path)
{
	struct stat	st;

	ck_assert_int_eq(lstat(path, &st), 0);
	return st.st_mode & 07777;
}

/* Whether the n bytes at buf hold the string str. */
static int
contains(const unsigned char *buf, size_t n, const char *str)
{
	size_t	len = strlen(str), i;

	for (i = 0; i + len <= n; i++)
		if (memcmp(buf + i, str, len) == 0)
			return 1;
	return 0;
}

/* ---- Save and open -------------------------------------------------------- */

START_TEST(test_save_then_open)
{
	struct tokenstore	*ts = store_new(), *cold;
	struct result		 res = { 0 };
	size_t			 len;
	unsigned char		*buf;

	ck_assert_int_eq(open_acc(ts, "alice@example.com", PASSWORD, &res),
	    TOKENSTORE_ABSENT);
	ck_assert_int_eq(save(ts, "alice@example.com", PASSWORD, 1, &res),
	    TOKENSTORE_OK);
	ck_assert(!res.has_set);
	ck_assert_uint_eq(mode_of(dir), 0700);
	ck_assert_uint_eq(mode_of(file_of("")), 0700);
	ck_assert_uint_eq(mode_of(file_of("alice@example.com")), 0600);
	/* Sealed: no token in the clear. */
	buf = slurp(file_of("alice@example.com"), &len);
	ck_assert(memcmp(buf, "MTLSDTOK\001\002", 10) == 0);
	ck_assert(!contains(buf, len, "access-1"));
	ck_assert(!contains(buf, len, "refresh-1"));
	ck_assert(!contains(buf, len, "outlook"));
	free(buf);
	tokenstore_free(ts);

	/* A cold cache: one derivation, one read. */
	cold = store_new();
	ck_assert_int_eq(open_acc(cold, "alice@example.com", PASSWORD, &res),
	    TOKENSTORE_OK);
	assert_tokens(&res, 1);
	ck_assert_uint_eq(stats(cold).kdf_runs, 1);
	ck_assert_uint_eq(stats(cold).file_reads, 1);
	ck_assert_uint_eq(stats(cold).cache_hits, 0);
	result_clear(&res);
	tokenstore_free(cold);
}
END_TEST

START_TEST(test_updated_filled_in)
{
	struct tokenstore	*ts = store_new();
	struct result		 res = { 0 };
	struct token_set	 set = tokens(1);
	time_t			 before = time(NULL);

	set.updated = 0;
	ck_assert_ptr_nonnull(tokenstore_save(ts, SECTION, "u", PASSWORD,
	    strlen(PASSWORD), &set, record_cb, &res));
	run_until(&res.calls, 1);
	ck_assert_int_eq(res.r, TOKENSTORE_OK);
	tokenstore_free(ts);
	ts = store_new();
	ck_assert_int_eq(open_acc(ts, "u", PASSWORD, &res), TOKENSTORE_OK);
	ck_assert_int_ge(res.set.updated, before);
	ck_assert_int_le(res.set.updated, time(NULL));
	result_clear(&res);
	tokenstore_free(ts);
}
END_TEST

/* ---- Wrong passwords and altered files ------------------------------------ */

START_TEST(test_wrong_password)
{
	struct tokenstore	*ts = store_new(), *cold;
	struct result		 res = { 0 };
	unsigned char		*before;
	size_t			 len;
	const char		*path = file_of("bob");

	ck_assert_int_eq(save(ts, "bob", PASSWORD, 1, &res), TOKENSTORE_OK);
	before = slurp(path, &len);

	/* With the account cached: still a derivation, still WRONG. */
	ck_assert_int_eq(open_acc(ts, "bob", "guess", &res), TOKENSTORE_WRONG);
	ck_assert_ptr_null(strstr(res.reason, "guess"));
	ck_assert_uint_eq(stats(ts).kdf_runs, 2);
	ck_assert_int_eq(save(ts, "bob", "guess", 2, &res), TOKENSTORE_WRONG);
	assert_bytes(path, before, len);
	/* The right one still opens it, from the cache. */
	ck_assert_int_eq(open_acc(ts, "bob", PASSWORD, &res), TOKENSTORE_OK);
	assert_tokens(&res, 1);
	ck_assert_uint_eq(stats(ts).cache_hits, 1);

	/* With a cold cache: the same, and the file untouched. */
	cold = store_new();
	ck_assert_int_eq(open_acc(cold, "bob", "guess", &res),
	    TOKENSTORE_WRONG);
	ck_assert_int_eq(save(cold, "bob", "guess", 3, &res),
	    TOKENSTORE_WRONG);
	ck_assert_int_eq(save(cold, "bob", PASSWORD "x", 3, &res),
	    TOKENSTORE_WRONG);
	assert_bytes(path, before, len);
	ck_assert_uint_eq(stats(cold).file_writes, 0);
	free(before);
	result_clear(&res);
	tokenstore_free(cold);
	tokenstore_free(ts);
}
END_TEST

START_TEST(test_copied_file)
{
	struct tokenstore	*ts = store_new();
	struct result		 res = { 0 };
	unsigned char		*buf;
	size_t			 len;
	char			 other[512];

	ck_assert_int_eq(save(ts, "alice", PASSWORD, 1, &res), TOKENSTORE_OK);
	ck_assert_int_eq(save_sec(ts, "google", "x", PASSWORD, 9, &res),
	    TOKENSTORE_OK);
	buf = slurp(file_of("alice"), &len);
	/* To another user of the section, and to another section. */
	spit(file_of("mallory"), buf, len);
	snprintf(other, sizeof(other), "%s/google/alice", dir);
	spit(other, buf, len);
	ck_assert_int_eq(open_acc(ts, "mallory", PASSWORD, &res),
	    TOKENSTORE_WRONG);
	ck_assert_int_eq(open_sec(ts, "google", "alice", PASSWORD, &res),
	    TOKENSTORE_WRONG);
	/* And a save does not take them over. */
	ck_assert_int_eq(save(ts, "mallory", PASSWORD, 2, &res),
	    TOKENSTORE_WRONG);
	assert_bytes(file_of("mallory"), buf, len);
	ck_assert_int_eq(open_acc(ts, "alice", PASSWORD, &res), TOKENSTORE_OK);
	free(buf);
	result_clear(&res);
	tokenstore_free(ts);
}
END_TEST

/* XOR byte at of the account's file, try it, then put it back. */
static void
assert_altered(struct tokenstore *ts, size_t at, unsigned char bits,
    enum tokenstore_result want, const char *why)
{
	struct result	 res = { 0 };
	const char	*path = file_of("carol");
	unsigned char	*orig, *bad;
	size_t		 len;

	orig = slurp(path, &len);
	ck_assert_uint_lt(at, len);
	ck_assert_ptr_nonnull(bad = malloc(len));
	memcpy(bad, orig, len);
	bad[at] ^= bits;
	spit(path, bad, len);
	ck_assert_int_eq(open_acc(ts, "carol", PASSWORD, &res), want);
	if (why != NULL)
		ck_assert_msg(strstr(res.reason, why) != NULL, "%s", res.reason);
	/* Never overwritten, even with the right password. */
	ck_assert_int_eq(save(ts, "carol", PASSWORD, 5, &res), want);
	assert_bytes(path, bad, len);
	spit(path, orig, len);
	ck_assert_int_eq(open_acc(ts, "carol", PASSWORD, &res), TOKENSTORE_OK);
	assert_tokens(&res, 1);
	result_clear(&res);
	free(orig);
	free(bad);
}

START_TEST(test_altered_file)
{
	struct tokenstore	*ts = store_new();
	struct result		 res = { 0 };
	unsigned char		*buf;
	size_t			 len;

	ck_assert_int_eq(save(ts, "carol", PASSWORD, 1, &res), TOKENSTORE_OK);
	/* Authenticated parts: a wrong key or tag, as a wrong password. */
	assert_altered(ts, HDR_LEN + 3, 0x01, TOKENSTORE_WRONG, "altered");
	assert_altered(ts, HDR_LEN + 40, 0x80, TOKENSTORE_WRONG, NULL);
	assert_altered(ts, 24, 0x01, TOKENSTORE_WRONG, NULL);	/* salt */
	assert_altered(ts, 45, 0x01, TOKENSTORE_WRONG, NULL);	/* nonce */
	assert_altered(ts, 15, 0x02, TOKENSTORE_WRONG, NULL);	/* 1 -> 3 */
	assert_altered(ts, 21, 0x01, TOKENSTORE_WRONG, NULL);	/* memory */
	/* The frame: not a token file of this version, or out of bounds. */
	assert_altered(ts, 0, 0x01, TOKENSTORE_ERROR,
	    "not a mailtlsd token file");
	assert_altered(ts, 8, 0x01, TOKENSTORE_ERROR, "format");
	assert_altered(ts, 9, 0x01, TOKENSTORE_ERROR, "key derivation");
	assert_altered(ts, 10, 0x01, TOKENSTORE_ERROR, "key derivation");
	assert_altered(ts, 15, 0x01, TOKENSTORE_ERROR, "out of bounds");
	assert_altered(ts, 13, 0x01, TOKENSTORE_ERROR, "out of bounds");
	assert_altered(ts, 17, 0x01, TOKENSTORE_ERROR, "out of bounds");

	/* Cut short. */
	buf = slurp(file_of("carol"), &len);
	spit(file_of("carol"), buf, 70);
	ck_assert_int_eq(open_acc(ts, "carol", PASSWORD, &res),
	    TOKENSTORE_ERROR);
	ck_assert_int_eq(save(ts, "carol", PASSWORD, 2, &res),
	    TOKENSTORE_ERROR);
	assert_bytes(file_of("carol"), buf, 70);
	free(buf);
	result_clear(&res);
	tokenstore_free(ts);
}
END_TEST

/* ---- Trust ---------------------------------------------------------------- */

/* Open the account and expect ERROR with why in the reason. */
static void
assert_refused(struct tokenstore *ts, const char *user, const char *why)
{
	struct result	res = { 0 };

	ck_assert_int_eq(open_acc(ts, user, PASSWORD, &res), TOKENSTORE_ERROR);
	ck_assert_msg(strstr(res.reason, why) != NULL, "%s", res.reason);
	ck_assert_int_eq(save(ts, user, PASSWORD, 7, &res), TOKENSTORE_ERROR);
	ck_assert_msg(strstr(res.reason, why) != NULL, "%s", res.reason);
	result_clear(&res);
}

START_TEST(test_untrusted_file)
{
	struct tokenstore	*ts = store_new();
	struct result		 res = { 0 };
	struct passwd		*nobody;
	char			 link_path[1024];

	/* Each cached first: the cache must not bypass the checks. */
	ck_assert_int_eq(save(ts, "dave", PASSWORD, 1, &res), TOKENSTORE_OK);
	ck_assert_int_eq(chmod(file_of("dave"), 0644), 0);
	assert_refused(ts, "dave", "mode 0644");
	ck_assert_int_eq(chmod(file_of("dave"), 0640), 0);
	assert_refused(ts, "dave", "mode 0640");
	ck_assert_int_eq(chmod(file_of("dave"), 0600), 0);
	ck_assert_int_eq(open_acc(ts, "dave", PASSWORD, &res), TOKENSTORE_OK);

	/* A symbolic link to a good file of the right account. */
	ck_assert_int_eq(save(ts, "erin", PASSWORD, 2, &res), TOKENSTORE_OK);
	snprintf(link_path, sizeof(link_path), "%s", file_of("erin"));
	ck_assert_int_eq(rename(link_path, file_of("erin-real")), 0);
	ck_assert_int_eq(symlink("erin-real", link_path), 0);
	assert_refused(ts, "erin", "symbolic link");

	/* A hard link. */
	ck_assert_int_eq(save(ts, "frank", PASSWORD, 3, &res), TOKENSTORE_OK);
	snprintf(link_path, sizeof(link_path), "%s/frank-link", top);
	ck_assert_int_eq(link(file_of("frank"), link_path), 0);
	assert_refused(ts, "frank", "hard links");
	ck_assert_int_eq(unlink(link_path), 0);

	/* A directory in its place. */
	ck_assert_int_eq(mkdir(file_of("gina"), 0700), 0);
	assert_refused(ts, "gina", "not a regular file");

	/* Another owner (only root can make one). */
	if (geteuid() == 0 && (nobody = getpwnam("nobody")) != NULL) {
		ck_assert_int_eq(save(ts, "hank", PASSWORD, 4, &res),
		    TOKENSTORE_OK);
		ck_assert_int_eq(chown(file_of("hank"), nobody->pw_uid,
		    (gid_t)-1), 0);
		assert_refused(ts, "hank", "owned by uid");
	}
	result_clear(&res);
	tokenstore_free(ts);
}
END_TEST

START_TEST(test_untrusted_dir)
{
	struct tokenstore	*ts;
	struct result		 res = { 0 };
	struct passwd		*nobody;
	char			 err[512], real[256], sec[512], sec_link[512];

	/* The top directory. */
	snprintf(real, sizeof(real), "%s/real", top);
	ck_assert_int_eq(mkdir(real, 0700), 0);
	ck_assert_int_eq(symlink("real", dir), 0);
	ck_assert_ptr_null(tokenstore_new(base, dir, KDF_KIB, KDF_PASSES, err,
	    sizeof(err)));
	ck_assert_msg(strstr(err, "symbolic link") != NULL, "%s", err);
	ck_assert_int_eq(unlink(dir), 0);
	ck_assert_int_eq(mkdir(dir, 0770), 0);
	ck_assert_int_eq(chmod(dir, 0770), 0);
	ck_assert_ptr_null(tokenstore_new(base, dir, KDF_KIB, KDF_PASSES, err,
	    sizeof(err)));
	ck_assert_msg(strstr(err, "writable by group or others") != NULL,
	    "%s", err);
	ck_assert_int_eq(chmod(dir, 0702), 0);
	ck_assert_ptr_null(tokenstore_new(base, dir, KDF_KIB, KDF_PASSES, err,
	    sizeof(err)));
	if (geteuid() == 0 && (nobody = getpwnam("nobody")) != NULL) {
		ck_assert_int_eq(chmod(dir, 0700), 0);
		ck_assert_int_eq(chown(dir, nobody->pw_uid, (gid_t)-1), 0);
		ck_assert_ptr_null(tokenstore_new(base, dir, KDF_KIB,
		    KDF_PASSES, err, sizeof(err)));
		ck_assert_msg(strstr(err, "owned by uid") != NULL, "%s", err);
		ck_assert_int_eq(chown(dir, 0, (gid_t)-1), 0);
	}
	ck_assert_int_eq(chmod(dir, 0700), 0);

	/* A section's directory. */
	ts = store_new();
	ck_assert_int_eq(save(ts, "ivy", PASSWORD, 1, &res), TOKENSTORE_OK);
	ck_assert_int_eq(chmod(file_of(""), 0770), 0);
	assert_refused(ts, "ivy", "writable by group or others");
	ck_assert_int_eq(chmod(file_of(""), 0700), 0);
	ck_assert_int_eq(open_acc(ts, "ivy", PASSWORD, &res), TOKENSTORE_OK);
	/* The top directory, once the store holds it open. */
	ck_assert_int_eq(chmod(dir, 0720), 0);
	assert_refused(ts, "ivy", "writable by group or others");
	ck_assert_int_eq(chmod(dir, 0700), 0);
	ck_assert_int_eq(open_acc(ts, "ivy", PASSWORD, &res), TOKENSTORE_OK);
	snprintf(sec, sizeof(sec), "%s/moved", dir);
	snprintf(sec_link, sizeof(sec_link), "%s/%s", dir, SECTION);
	ck_assert_int_eq(rename(sec_link, sec), 0);
	ck_assert_int_eq(symlink("moved", sec_link), 0);
	assert_refused(ts, "ivy", "symbolic link");
	result_clear(&res);
	tokenstore_free(ts);
}
END_TEST

/* ---- The cache ------------------------------------------------------------ */

START_TEST(test_cache_hit)
{
	struct tokenstore	*ts = store_new();
	struct result		 res = { 0 };

	ck_assert_int_eq(save(ts, "jay", PASSWORD, 1, &res), TOKENSTORE_OK);
	ck_assert_uint_eq(stats(ts).kdf_runs, 1);
	ck_assert_uint_eq(stats(ts).file_writes, 1);
	/* Opened from memory: no derivation, no read. */
	ck_assert_int_eq(open_acc(ts, "jay", PASSWORD, &res), TOKENSTORE_OK);
	assert_tokens(&res, 1);
	ck_assert_uint_eq(stats(ts).kdf_runs, 1);
	ck_assert_uint_eq(stats(ts).file_reads, 0);
	ck_assert_uint_eq(stats(ts).cache_hits, 1);
	/* A save with the cached key: no derivation, a new nonce. */
	ck_assert_int_eq(save(ts, "jay", PASSWORD, 2, &res), TOKENSTORE_OK);
	ck_assert_uint_eq(stats(ts).kdf_runs, 1);
	ck_assert_int_eq(open_acc(ts, "jay", PASSWORD, &res), TOKENSTORE_OK);
	assert_tokens(&res, 2);
	ck_assert_uint_eq(stats(ts).cache_hits, 2);
	/* Another password costs a derivation, cached account or not. */
	ck_assert_int_eq(open_acc(ts, "jay", "other", &res), TOKENSTORE_WRONG);
	ck_assert_uint_eq(stats(ts).kdf_runs, 2);
	ck_assert_int_eq(open_acc(ts, "jay", PASSWORD, &res), TOKENSTORE_OK);
	ck_assert_uint_eq(stats(ts).cache_hits, 3);
	ck_assert_uint_eq(stats(ts).kdf_runs, 2);
	result_clear(&res);
	tokenstore_free(ts);
}
END_TEST

START_TEST(test_save_keeps_salt_new_nonce)
{
	struct tokenstore	*ts = store_new(), *cold;
	struct result		 res = { 0 };
	unsigned char		*a, *b, *c;
	size_t			 la, lb, lc;

	ck_assert_int_eq(save(ts, "kim", PASSWORD, 1, &res), TOKENSTORE_OK);
	a = slurp(file_of("kim"), &la);
	ck_assert_int_eq(save(ts, "kim", PASSWORD, 1, &res), TOKENSTORE_OK);
	b = slurp(file_of("kim"), &lb);
	ck_assert(memcmp(a + 24, b + 24, 16) == 0);		/* salt */
	ck_assert(memcmp(a + 40, b + 40, 24) != 0);		/* nonce */
	/* A store that has not unlocked it: one derivation to prove the
	 * password, the same salt kept. */
	cold = store_new();
	ck_assert_int_eq(save(cold, "kim", PASSWORD, 3, &res), TOKENSTORE_OK);
	ck_assert_uint_eq(stats(cold).kdf_runs, 1);
	c = slurp(file_of("kim"), &lc);
	ck_assert(memcmp(a + 24, c + 24, 16) == 0);
	ck_assert(memcmp(b + 40, c + 40, 24) != 0);
	free(a);
	free(b);
	free(c);
	result_clear(&res);
	tokenstore_free(cold);
	tokenstore_free(ts);
}
END_TEST

START_TEST(test_changed_on_disk)
{
	struct tokenstore	*ts = store_new(), *other;
	struct result		 res = { 0 };
	struct tokenstore_stats	 st;

	ck_assert_int_eq(save(ts, "lee", PASSWORD, 1, &res), TOKENSTORE_OK);
	/* Another writer (mailtlsd -a) with the same password. */
	other = store_new();
	ck_assert_int_eq(save(other, "lee", PASSWORD, 2, &res),
	    TOKENSTORE_OK);
	st = stats(ts);
	ck_assert_int_eq(open_acc(ts, "lee", PASSWORD, &res), TOKENSTORE_OK);
	assert_tokens(&res, 2);
	/* Read again, with the cached key (same salt). */
	ck_assert_uint_eq(stats(ts).file_reads, st.file_reads + 1);
	ck_assert_uint_eq(stats(ts).kdf_runs, st.kdf_runs);
	ck_assert_uint_eq(stats(ts).cache_hits, st.cache_hits);
	/* Then from memory again. */
	ck_assert_int_eq(open_acc(ts, "lee", PASSWORD, &res), TOKENSTORE_OK);
	ck_assert_uint_eq(stats(ts).cache_hits, st.cache_hits + 1);

	/* Removed and made anew (a new salt): a derivation. */
	ck_assert_int_eq(unlink(file_of("lee")), 0);
	tokenstore_free(other);
	other = store_new();
	ck_assert_int_eq(save(other, "lee", PASSWORD, 3, &res),
	    TOKENSTORE_OK);
	st = stats(ts);
	ck_assert_int_eq(open_acc(ts, "lee", PASSWORD, &res), TOKENSTORE_OK);
	assert_tokens(&res, 3);
	ck_assert_uint_eq(stats(ts).kdf_runs, st.kdf_runs + 1);

	/* Sealed anew with another password: the old one no longer opens. */
	ck_assert_int_eq(unlink(file_of("lee")), 0);
	ck_assert_int_eq(save(other, "lee", "new password", 4, &res),
	    TOKENSTORE_OK);
	ck_assert_int_eq(open_acc(ts, "lee", PASSWORD, &res),
	    TOKENSTORE_WRONG);
	ck_assert_int_eq(open_acc(ts, "lee", "new password", &res),
	    TOKENSTORE_OK);
	assert_tokens(&res, 4);

	/* Removed: absent, and forgotten. */
	ck_assert_int_eq(unlink(file_of("lee")), 0);
	ck_assert_int_eq(open_acc(ts, "lee", "new password", &res),
	    TOKENSTORE_ABSENT);
	result_clear(&res);
	tokenstore_free(other);
	tokenstore_free(ts);
}
END_TEST

START_TEST(test_open_waits_for_save)
{
	struct tokenstore	*ts = store_new();
	struct result		 s = { 0 }, o = { 0 };
	struct token_set	 set = tokens(2);

	ck_assert_int_eq(save(ts, "max", PASSWORD, 1, &s), TOKENSTORE_OK);
	/* A save queued: an open must not answer the old tokens. */
	tokenstore_hold(ts, 1);
	ck_assert_ptr_nonnull(tokenstore_save(ts, SECTION, "max", PASSWORD,
	    strlen(PASSWORD), &set, record_cb, &s));
	ck_assert_ptr_nonnull(tokenstore_open(ts, SECTION, "max", PASSWORD,
	    strlen(PASSWORD), record_cb, &o));
	run_ready();
	ck_assert_int_eq(s.calls, 1);	/* still the first save's */
	ck_assert_int_eq(o.calls, 0);
	tokenstore_hold(ts, 0);
	run_until(&o.calls, 1);
	ck_assert_int_eq(s.calls, 2);
	ck_assert_int_eq(s.r, TOKENSTORE_OK);
	assert_tokens(&o, 2);
	/* Answered with the key the save used: no derivation. */
	ck_assert_uint_eq(stats(ts).kdf_runs, 1);
	result_clear(&s);
	result_clear(&o);
	tokenstore_free(ts);
}
END_TEST

/* Collect what tokenstore_foreach() reports. */
static void
foreach_cb(const struct tokenstore_account *a, void *arg)
{
	char	*out = arg;
	size_t	 used = strlen(out);

	snprintf(out + used, 512 - used, "%s/%s:%lld:%lld ", a->section,
	    a->user, (long long)a->updated, (long long)a->access_expires);
}

START_TEST(test_foreach)
{
	struct tokenstore	*ts = store_new();
	struct result		 res = { 0 };
	char			 out[512] = "";

	ck_assert_int_eq(save(ts, "ned", PASSWORD, 1, &res), TOKENSTORE_OK);
	ck_assert_int_eq(save_sec(ts, "g", "oli", PASSWORD, 2, &res),
	    TOKENSTORE_OK);
	ck_assert_int_eq(open_acc(ts, "nobody-here", PASSWORD, &res),
	    TOKENSTORE_ABSENT);
	ck_assert_int_eq(open_acc(ts, "ned", "wrong", &res), TOKENSTORE_WRONG);
	tokenstore_foreach(ts, foreach_cb, out);
	ck_assert_str_eq(out, "g/oli:1600000002:1700000002 "
	    "ms/ned:1600000001:1700000001 ");
	result_clear(&res);
	tokenstore_free(ts);
}
END_TEST

/* ---- Jobs ----------------------------------------------------------------- */

START_TEST(test_cancel)
{
	struct tokenstore	*ts = store_new();
	struct tokenstore_job	*job;
	struct result		 a = { 0 }, b = { 0 }, c = { 0 };
	struct token_set	 set = tokens(1);

	/* A cancelled open: its callback never comes. */
	tokenstore_hold(ts, 1);
	ck_assert_ptr_nonnull(job = tokenstore_open(ts, SECTION, "pat",
	    PASSWORD, strlen(PASSWORD), record_cb, &a));
	tokenstore_cancel(job);
	/* A cancelled save: still written. */
	ck_assert_ptr_nonnull(job = tokenstore_save(ts, SECTION, "pat",
	    PASSWORD, strlen(PASSWORD), &set, record_cb, &b));
	tokenstore_cancel(job);
	ck_assert_ptr_nonnull(tokenstore_open(ts, SECTION, "pat", PASSWORD,
	    strlen(PASSWORD), record_cb, &c));
	tokenstore_hold(ts, 0);
	run_until(&c.calls, 1);
	assert_tokens(&c, 1);
	run_ready();
	ck_assert_int_eq(a.calls, 0);
	ck_assert_int_eq(b.calls, 0);
	/* A cache hit cancelled before its delivery. */
	ck_assert_ptr_nonnull(job = tokenstore_open(ts, SECTION, "pat",
	    PASSWORD, strlen(PASSWORD), record_cb, &a));
	tokenstore_cancel(job);
	run_ready();
	ck_assert_int_eq(a.calls, 0);
	ck_assert_uint_eq(stats(ts).cache_hits, 1);
	result_clear(&c);
	tokenstore_free(ts);
}
END_TEST

START_TEST(test_free_with_queued)
{
	struct tokenstore	*ts = store_new();
	struct result		 a = { 0 }, b = { 0 }, c = { 0 }, d = { 0 };
	struct token_set	 s1 = tokens(1), s2 = tokens(2);

	ck_assert_int_eq(save(ts, "quinn", PASSWORD, 3, &d), TOKENSTORE_OK);
	tokenstore_hold(ts, 1);
	/* A cache hit waiting for delivery. */
	ck_assert_ptr_nonnull(tokenstore_open(ts, SECTION, "quinn", PASSWORD,
	    strlen(PASSWORD), record_cb, &d));
	ck_assert_ptr_nonnull(tokenstore_save(ts, SECTION, "rae", PASSWORD,
	    strlen(PASSWORD), &s1, record_cb, &a));
	ck_assert_ptr_nonnull(tokenstore_open(ts, SECTION, "quinn", "wrong",
	    strlen("wrong"), record_cb, &b));
	ck_assert_ptr_nonnull(tokenstore_save(ts, SECTION, "quinn", PASSWORD,
	    strlen(PASSWORD), &s2, record_cb, &c));
	tokenstore_free(ts);
	run_ready();
	ck_assert_int_eq(a.calls + b.calls + c.calls, 0);
	ck_assert_int_eq(d.calls, 1);	/* the first save's only */

	/* Both saves were written. */
	ts = store_new();
	ck_assert_int_eq(open_acc(ts, "rae", PASSWORD, &a), TOKENSTORE_OK);
	assert_tokens(&a, 1);
	ck_assert_int_eq(open_acc(ts, "quinn", PASSWORD, &c), TOKENSTORE_OK);
	assert_tokens(&c, 2);
	result_clear(&a);
	result_clear(&c);
	tokenstore_free(ts);
}
END_TEST

static struct tokenstore	*freed_in_cb;

/* Free the store from inside its own callback. */
static void
free_cb(enum tokenstore_result r, const struct token_set *set,
    const char *reason, void *arg)
{
	record_cb(r, set, reason, arg);
	tokenstore_free(freed_in_cb);
}

START_TEST(test_free_in_callback)
{
	struct result	a = { 0 }, b = { 0 };

	freed_in_cb = store_new();
	tokenstore_hold(freed_in_cb, 1);
	ck_assert_ptr_nonnull(tokenstore_open(freed_in_cb, SECTION, "sam",
	    PASSWORD, strlen(PASSWORD), free_cb, &a));
	ck_assert_ptr_nonnull(tokenstore_open(freed_in_cb, SECTION, "tom",
	    PASSWORD, strlen(PASSWORD), record_cb, &b));
	tokenstore_hold(freed_in_cb, 0);
	run_until(&a.calls, 1);
	run_ready();
	ck_assert_int_eq(a.r, TOKENSTORE_ABSENT);
	ck_assert_int_eq(b.calls, 0);
}
END_TEST

START_TEST(test_busy)
{
	struct tokenstore	*ts = store_new();
	struct result		*res, busy = { 0 };
	char			 user[32];
	int			 i, done = 0;

	ck_assert_ptr_nonnull(res = calloc(TOKENSTORE_QUEUE_MAX,
	    sizeof(*res)));
	tokenstore_hold(ts, 1);
	for (i = 0; i < TOKENSTORE_QUEUE_MAX; i++) {
		snprintf(user, sizeof(user), "user%d", i);
		ck_assert_ptr_nonnull(tokenstore_open(ts, SECTION, user,
		    PASSWORD, strlen(PASSWORD), record_cb, &res[i]));
	}
	ck_assert_ptr_nonnull(tokenstore_open(ts, SECTION, "one-more",
	    PASSWORD, strlen(PASSWORD), record_cb, &busy));
	/* Answered at once, while the worker holds. */
	run_until(&busy.calls, 1);
	ck_assert_int_eq(busy.r, TOKENSTORE_ERROR);
	ck_assert_msg(strstr(busy.reason, "busy") != NULL, "%s", busy.reason);
	tokenstore_hold(ts, 0);
	while (done < TOKENSTORE_QUEUE_MAX) {
		run_until(&res[done].calls, 1);
		ck_assert_int_eq(res[done].r, TOKENSTORE_ABSENT);
		done++;
	}
	free(res);
	tokenstore_free(ts);
}
END_TEST

START_TEST(test_bad_requests)
{
	struct tokenstore	*ts = store_new();
	struct result		 res = { 0 };
	char			*long_pw;

	ck_assert_int_eq(open_acc(ts, "uma", "", &res), TOKENSTORE_ERROR);
	ck_assert_msg(strstr(res.reason, "empty password") != NULL, "%s",
	    res.reason);
	ck_assert_int_eq(save(ts, "uma", "", 1, &res), TOKENSTORE_ERROR);
	ck_assert_int_eq(open_acc(ts, "", PASSWORD, &res), TOKENSTORE_ERROR);
	ck_assert_ptr_nonnull(long_pw = malloc(TOKENSTORE_PASSWORD_MAX + 2));
	memset(long_pw, 'p', TOKENSTORE_PASSWORD_MAX + 1);
	long_pw[TOKENSTORE_PASSWORD_MAX + 1] = '\0';
	ck_assert_int_eq(save(ts, "uma", long_pw, 1, &res), TOKENSTORE_ERROR);
	ck_assert_msg(strstr(res.reason, "longer than") != NULL, "%s",
	    res.reason);
	long_pw[TOKENSTORE_PASSWORD_MAX] = '\0';
	ck_assert_int_eq(save(ts, "uma", long_pw, 1, &res), TOKENSTORE_OK);
	ck_assert_int_eq(open_acc(ts, "uma", long_pw, &res), TOKENSTORE_OK);
	free(long_pw);
	result_clear(&res);
	tokenstore_free(ts);
}
END_TEST

/* ---- Names ---------------------------------------------------------------- */

/* tokenstore_file_name(name) is want (NULL: refused). */
static void
assert_name(const char *name, const char *want)
{
	char	buf[TOKENSTORE_NAME_MAX + 1];
	int	r = tokenstore_file_name(buf, sizeof(buf), name);

	if (want == NULL)
		ck_assert_msg(r == -1, "%s accepted as %s", name, buf);
	else {
		ck_assert_msg(r == 0, "%s refused", name);
		ck_assert_str_eq(buf, want);
	}
}

START_TEST(test_file_names)
{
	char	name[TOKENSTORE_NAME_MAX + 2], want[TOKENSTORE_NAME_MAX + 1];
	char	small[8];

	assert_name("alice@example.com", "alice@example.com");
	assert_name("A.b_c+d-e@x.y", "A.b_c+d-e@x.y");
	assert_name("../x", "%2E.%2Fx");
	assert_name("..", "%2E.");
	assert_name(".", "%2E");
	assert_name(".hidden", "%2Ehidden");
	assert_name("a/b", "a%2Fb");
	assert_name("a b%c", "a%20b%25c");
	assert_name("\xc3\xa9\x01", "%C3%A9%01");
	assert_name("", NULL);
	/* Bounded: 255 bytes of encoding at most. */
	memset(name, 'a', TOKENSTORE_NAME_MAX);
	name[TOKENSTORE_NAME_MAX] = '\0';
	assert_name(name, name);
	name[TOKENSTORE_NAME_MAX] = 'a';
	name[TOKENSTORE_NAME_MAX + 1] = '\0';
	assert_name(name, NULL);
	memset(name, '/', 85);
	name[85] = '\0';
	memset(want, 0, sizeof(want));
	for (int i = 0; i < 85; i++)
		memcpy(want + 3 * i, "%2F", 3);
	assert_name(name, want);
	name[85] = '/';
	name[86] = '\0';
	assert_name(name, NULL);
	ck_assert_int_eq(tokenstore_file_name(small, sizeof(small), "abcdefgh"),
	    -1);
	ck_assert_int_eq(tokenstore_file_name(small, sizeof(small), "abcdefg"),
	    0);
}
END_TEST

START_TEST(test_names_on_disk)
{
	struct tokenstore	*ts = store_new();
	struct result		 res = { 0 };
	struct stat		 st;
	char			 path[512], user[TOKENSTORE_NAME_MAX + 2];

	ck_assert_int_eq(save(ts, "../x", PASSWORD, 1, &res), TOKENSTORE_OK);
	ck_assert_int_eq(save(ts, ".hidden", PASSWORD, 2, &res),
	    TOKENSTORE_OK);
	ck_assert_int_eq(save_sec(ts, "..", "a/../../b", PASSWORD, 3, &res),
	    TOKENSTORE_OK);
	ck_assert_int_eq(stat(file_of("%2E.%2Fx"), &st), 0);
	ck_assert_int_eq(stat(file_of("%2Ehidden"), &st), 0);
	snprintf(path, sizeof(path), "%s/%%2E./a%%2F..%%2F..%%2Fb", dir);
	ck_assert_int_eq(stat(path, &st), 0);
	/* Nothing outside its section's directory. */
	snprintf(path, sizeof(path), "%s/x", dir);
	ck_assert_int_eq(stat(path, &st), -1);
	snprintf(path, sizeof(path), "%s/b", top);
	ck_assert_int_eq(stat(path, &st), -1);
	ck_assert_int_eq(open_acc(ts, "../x", PASSWORD, &res), TOKENSTORE_OK);
	assert_tokens(&res, 1);

	/* The longest name fits; one byte more is refused. */
	memset(user, 'u', TOKENSTORE_NAME_MAX);
	user[TOKENSTORE_NAME_MAX] = '\0';
	ck_assert_int_eq(save(ts, user, PASSWORD, 4, &res), TOKENSTORE_OK);
	tokenstore_free(ts);
	ts = store_new();
	ck_assert_int_eq(open_acc(ts, user, PASSWORD, &res), TOKENSTORE_OK);
	assert_tokens(&res, 4);
	user[TOKENSTORE_NAME_MAX] = 'u';
	user[TOKENSTORE_NAME_MAX + 1] = '\0';
	ck_assert_int_eq(save(ts, user, PASSWORD, 5, &res), TOKENSTORE_ERROR);
	ck_assert_msg(strstr(res.reason, "longer than") != NULL, "%s",
	    res.reason);
	ck_assert_int_eq(open_acc(ts, user, PASSWORD, &res), TOKENSTORE_ERROR);
	result_clear(&res);
	tokenstore_free(ts);
}
END_TEST

/* ---- Key derivation parameters -------------------------------------------- */

/* The passes and memory (KiB) a file records. */
static void
header_params(const char *path, unsigned long *passes, unsigned long *kib)
{
	size_t		 len, i;
	unsigned char	*buf = slurp(path, &len);
	unsigned long long mem = 0;

	ck_assert_uint_ge(len, HDR_LEN);
	*passes = ((unsigned long)buf[12] << 24) | ((unsigned long)buf[13] <<
	    16) | ((unsigned long)buf[14] << 8) | buf[15];
	for (i = 16; i < 24; i++)
		mem = (mem << 8) | buf[i];
	*kib = (unsigned long)(mem / 1024);
	free(buf);
}

START_TEST(test_kdf_params)
{
	struct tokenstore	*ts;
	struct result		 res = { 0 };
	char			 err[256];
	unsigned long		 passes, kib;

	/* Out of bounds. */
	ck_assert_ptr_null(tokenstore_new(base, dir, 4, 1, err, sizeof(err)));
	ck_assert_msg(strstr(err, "memory") != NULL, "%s", err);
	ck_assert_ptr_null(tokenstore_new(base, dir, KDF_KIB, 0, err,
	    sizeof(err)));
	ck_assert_msg(strstr(err, "passes") != NULL, "%s", err);
	ck_assert_ptr_null(tokenstore_new(base, dir, KDF_KIB,
	    TOKENSTORE_KDF_PASSES_MAX + 1, err, sizeof(err)));
	ck_assert_ptr_null(tokenstore_new(base, dir,
	    TOKENSTORE_KDF_MEMORY_MAX + 1, 1, err, sizeof(err)));

	ts = tokenstore_new(base, dir, KDF_KIB, 2, err, sizeof(err));
	ck_assert_ptr_nonnull(ts);
	ck_assert_int_eq(tokenstore_set_kdf(ts, "fast", KDF_KIB + 1024, 1, err,
	    sizeof(err)), 0);
	ck_assert_int_eq(tokenstore_set_kdf(ts, "fast", 4, 1, err,
	    sizeof(err)), -1);
	/* The store's default, and a section's own. */
	ck_assert_int_eq(save(ts, "vic", PASSWORD, 1, &res), TOKENSTORE_OK);
	header_params(file_of("vic"), &passes, &kib);
	ck_assert_uint_eq(passes, 2);
	ck_assert_uint_eq(kib, KDF_KIB);
	ck_assert_int_eq(save_sec(ts, "fast", "vic", PASSWORD, 1, &res),
	    TOKENSTORE_OK);
	snprintf(err, sizeof(err), "%s/fast/vic", dir);
	header_params(err, &passes, &kib);
	ck_assert_uint_eq(passes, 1);
	ck_assert_uint_eq(kib, KDF_KIB + 1024);
	/* An existing file keeps its own; a cold store opens it with them. */
	ck_assert_int_eq(tokenstore_set_kdf(ts, SECTION, KDF_KIB, 3, err,
	    sizeof(err)), 0);
	ck_assert_int_eq(save(ts, "vic", PASSWORD, 2, &res), TOKENSTORE_OK);
	header_params(file_of("vic"), &passes, &kib);
	ck_assert_uint_eq(passes, 2);
	ck_assert_int_eq(save(ts, "wes", PASSWORD, 2, &res), TOKENSTORE_OK);
	header_params(file_of("wes"), &passes, &kib);
	ck_assert_uint_eq(passes, 3);
	tokenstore_free(ts);
	ts = store_new();
	ck_assert_int_eq(open_acc(ts, "vic", PASSWORD, &res), TOKENSTORE_OK);
	assert_tokens(&res, 2);
	result_clear(&res);
	tokenstore_free(ts);
}
END_TEST

START_TEST(test_token_set_copy)
{
	struct token_set	src = { 0 }, dst;

	src.access_token = "a";
	src.access_expires = 5;
	ck_assert_int_eq(token_set_copy(&dst, &src), 0);
	ck_assert_str_eq(dst.access_token, "a");
	ck_assert_str_eq(dst.refresh_token, "");
	ck_assert_str_eq(dst.scope, "");
	ck_assert_int_eq(dst.access_expires, 5);
	token_set_clear(&dst);
	ck_assert_ptr_null(dst.access_token);
	tokenstore_free(NULL);
	tokenstore_cancel(NULL);
}
END_TEST

Suite *
tokenstore_suite(void)
{
	Suite	*s = suite_create("tokenstore");
	TCase	*tc = tcase_create("store");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_save_then_open);
	tcase_add_test(tc, test_updated_filled_in);
	tcase_add_test(tc, test_wrong_password);
	tcase_add_test(tc, test_copied_file);
	tcase_add_test(tc, test_altered_file);
	tcase_add_test(tc, test_untrusted_file);
	tcase_add_test(tc, test_untrusted_dir);
	tcase_add_test(tc, test_cache_hit);
	tcase_add_test(tc, test_save_keeps_salt_new_nonce);
	tcase_add_test(tc, test_changed_on_disk);
	tcase_add_test(tc, test_open_waits_for_save);
	tcase_add_test(tc, test_foreach);
	tcase_add_test(tc, test_cancel);
	tcase_add_test(tc, test_free_with_queued);
	tcase_add_test(tc, test_free_in_callback);
	tcase_add_test(tc, test_busy);
	tcase_add_test(tc, test_bad_requests);
	tcase_add_test(tc, test_file_names);
	tcase_add_test(tc, test_names_on_disk);
	tcase_add_test(tc, test_kdf_params);
	tcase_add_test(tc, test_token_set_copy);
	suite_add_tcase(s, tc);
	return s;
}
