/*
 * check_localcert.c - unit tests of localcert.c (the generated certificate
 * for local_tls: made, kept, made again when it no longer fits or cannot
 * be trusted, 0600, given to the configured user, renewed in time) and
 * of the server end of tls.c, with a full handshake in memory between
 * mailtlsd's own client end, trusting the generated certificate, and its
 * server end presenting it.
 */
#define _XOPEN_SOURCE 700

#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include <mbedtls/ecp.h>
#include <mbedtls/pk.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crt.h>

#include "config.h"
#include "localcert.h"
#include "log.h"
#include "tls.h"
#include "unit.h"

#define YEAR	(365L * 86400)

static char	top[64];	/* a fresh temporary directory per test */
static char	dir[128];	/* top/state: created by the code under test */

/* A fresh directory for each test; state_dir does not exist yet. */
static void
setup(void)
{
	ck_assert_int_eq(tls_init(), 0);
	log_set_level(LOG_LEVEL_ERROR);		/* no "generated" lines */
	snprintf(top, sizeof(top), "/tmp/check_localcert.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(top));
	snprintf(dir, sizeof(dir), "%s/state", top);
}

/* Remove what a test left: links, FIFOs and directories too. */
static void
teardown(void)
{
	unit_remove_tree(top);
}

/* dir/file into a static buffer. */
static const char *
in_dir(const char *file)
{
	static char	path[256];

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	return path;
}

/* The whole of a file (to free), its length in *len. */
static char *
slurp(const char *path, size_t *len)
{
	FILE	*f = fopen(path, "rb");
	char	*buf = malloc(8192);

	ck_assert_ptr_nonnull(f);
	ck_assert_ptr_nonnull(buf);
	*len = fread(buf, 1, 8192, f);
	fclose(f);
	return buf;
}

/* d/local.key in a static buffer. */
static const char *
key_in(const char *d)
{
	static char	path[256];

	snprintf(path, sizeof(path), "%s/" LOCALCERT_KEY_FILE, d);
	return path;
}

/* Whether two files hold the same bytes. */
static int
same_file(const char *a_path, const char *b_text, size_t b_len)
{
	size_t	len;
	char	*a = slurp(a_path, &len);
	int	same = len == b_len && memcmp(a, b_text, len) == 0;

	free(a);
	return same;
}

/* The names used by most tests: the defaults and one listen address. */
static void
test_names(struct localcert_names *names)
{
	localcert_names_init(names);
	ck_assert_int_eq(localcert_names_add(names, "192.0.2.7"), 0);
}

START_TEST(test_names_list)
{
	struct localcert_names	names;
	struct sockaddr_in	sin;
	struct sockaddr_in6	sin6;
	char			 name[32];
	int			 i;

	localcert_names_init(&names);
	ck_assert_int_eq(names.n, 3);
	ck_assert_int_eq(names.name[0].is_ip, 0);
	ck_assert_mem_eq(names.name[0].value, "localhost", 9);
	ck_assert_int_eq(names.name[1].is_ip, 1);
	ck_assert_uint_eq(names.name[1].len, 4);
	ck_assert_uint_eq(names.name[2].len, 16);
	/* Each name once, DNS names ignoring case. */
	ck_assert_int_eq(localcert_names_add(&names, "LocalHost"), 0);
	ck_assert_int_eq(localcert_names_add(&names, "0:0::1"), 0);
	ck_assert_int_eq(names.n, 3);
	ck_assert_int_eq(localcert_names_add(&names, "bad name"), -1);
	ck_assert_int_eq(localcert_names_add(&names, ""), -1);
	/* Listen addresses: wildcards add nothing. */
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_ANY);
	ck_assert_int_eq(localcert_names_add_addr(&names,
	    (struct sockaddr *)&sin), 0);
	memset(&sin6, 0, sizeof(sin6));
	sin6.sin6_family = AF_INET6;
	ck_assert_int_eq(localcert_names_add_addr(&names,
	    (struct sockaddr *)&sin6), 0);
	ck_assert_int_eq(names.n, 3);
	inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
	ck_assert_int_eq(localcert_names_add_addr(&names,
	    (struct sockaddr *)&sin), 0);
	ck_assert_int_eq(names.n, 3);
	inet_pton(AF_INET, "192.0.2.9", &sin.sin_addr);
	ck_assert_int_eq(localcert_names_add_addr(&names,
	    (struct sockaddr *)&sin), 0);
	ck_assert_int_eq(names.n, 4);
	/* Bounded. */
	for (i = 0; names.n < LOCALCERT_NAMES_MAX; i++) {
		snprintf(name, sizeof(name), "h%d.test", i);
		ck_assert_int_eq(localcert_names_add(&names, name), 0);
	}
	ck_assert_int_eq(localcert_names_add(&names, "one-more.test"), -1);
}
END_TEST

/* The tags and values of a certificate's subjectAltNames, as text. */
static void
san_text(const mbedtls_x509_crt *crt, char *buf, size_t len)
{
	const mbedtls_x509_sequence	*cur;
	char				 ip[64];
	size_t				 n = 0;

	buf[0] = '\0';
	for (cur = &crt->subject_alt_names; cur != NULL && cur->buf.p != NULL;
	    cur = cur->next) {
		if (cur->buf.tag == 0x82)
			n += (size_t)snprintf(buf + n, len - n, "DNS:%.*s ",
			    (int)cur->buf.len, (const char *)cur->buf.p);
		else if (cur->buf.tag == 0x87) {
			inet_ntop(cur->buf.len == 4 ? AF_INET : AF_INET6,
			    cur->buf.p, ip, sizeof(ip));
			n += (size_t)snprintf(buf + n, len - n, "IP:%s ", ip);
		} else
			n += (size_t)snprintf(buf + n, len - n, "?%x ",
			    (unsigned)cur->buf.tag);
	}
}

START_TEST(test_generate)
{
	struct localcert_names	 names;
	mbedtls_x509_crt	 crt;
	struct stat		 st;
	char			 err[256], sans[256];
	char			 fp[LOCALCERT_FINGERPRINT_LEN];
	struct tm		 tm;
	time_t			 now = time(NULL);
	int			 i;

	test_names(&names);
	ck_assert_msg(localcert_ensure(dir, &names, (uid_t)-1, (gid_t)-1, NULL,
	    err, sizeof(err)) == 0, "ensure: %s", err);
	/* The directory is made 0700, both files are 0600. */
	ck_assert_int_eq(stat(dir, &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0700);
	ck_assert_int_eq(stat(in_dir(LOCALCERT_KEY_FILE), &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0600);
	ck_assert_int_eq(stat(in_dir(LOCALCERT_CERT_FILE), &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0600);

	mbedtls_x509_crt_init(&crt);
	ck_assert_int_eq(mbedtls_x509_crt_parse_file(&crt,
	    in_dir(LOCALCERT_CERT_FILE)), 0);
	ck_assert_int_eq(crt.version, 3);
	san_text(&crt, sans, sizeof(sans));
	ck_assert_str_eq(sans, "DNS:localhost IP:127.0.0.1 IP:::1 "
	    "IP:192.0.2.7 ");
	ck_assert_int_eq(mbedtls_pk_get_type(&crt.pk), MBEDTLS_PK_ECKEY);
	ck_assert_uint_eq(mbedtls_pk_get_bitlen(&crt.pk), 256);
	/* From yesterday, for 820 days: Apple platforms refuse over 825. */
	now -= 86400;
	gmtime_r(&now, &tm);
	ck_assert_int_eq(crt.valid_from.year, tm.tm_year + 1900);
	ck_assert_int_eq(crt.valid_from.mon, tm.tm_mon + 1);
	ck_assert_int_eq(crt.valid_from.day, tm.tm_mday);
	now += 820 * 86400L;
	gmtime_r(&now, &tm);
	ck_assert_int_eq(crt.valid_to.year, tm.tm_year + 1900);
	ck_assert_int_eq(crt.valid_to.mon, tm.tm_mon + 1);
	ck_assert_int_eq(crt.valid_to.day, tm.tm_mday);
	/* Self-signed, positive serial of 16 bytes. */
	ck_assert_uint_eq(crt.issuer_raw.len, crt.subject_raw.len);
	ck_assert_mem_eq(crt.issuer_raw.p, crt.subject_raw.p,
	    crt.subject_raw.len);
	ck_assert_uint_eq(crt.serial.len, 16);
	ck_assert_uint_lt(crt.serial.p[0], 0x80);
	mbedtls_x509_crt_free(&crt);

	/* "AB:CD:...": 32 bytes in hex with colons. */
	ck_assert_int_eq(localcert_fingerprint(in_dir(LOCALCERT_CERT_FILE),
	    fp), 0);
	ck_assert_uint_eq(strlen(fp), 95);
	for (i = 2; i < 95; i += 3)
		ck_assert_int_eq(fp[i], ':');
	ck_assert_int_eq(localcert_fingerprint(in_dir("missing"), fp), -1);
}
END_TEST

START_TEST(test_reused)
{
	struct localcert_names	 names;
	char			 err[256], why[256];
	char			*crt, *key;
	size_t			 crt_len, key_len;

	test_names(&names);
	ck_assert_int_eq(localcert_check(dir, &names, time(NULL),
	    (uid_t)-1, why, sizeof(why)), 0);
	ck_assert_ptr_nonnull(strstr(why, "no usable"));
	ck_assert_int_eq(localcert_ensure(dir, &names, (uid_t)-1, (gid_t)-1,
	    NULL, err, sizeof(err)), 0);
	crt = slurp(in_dir(LOCALCERT_CERT_FILE), &crt_len);
	key = slurp(in_dir(LOCALCERT_KEY_FILE), &key_len);
	ck_assert_int_eq(localcert_check(dir, &names, time(NULL),
	    (uid_t)-1, why, sizeof(why)), 1);
	/* A second start keeps both files as they are. */
	ck_assert_int_eq(localcert_ensure(dir, &names, (uid_t)-1, (gid_t)-1,
	    NULL, err, sizeof(err)), 0);
	ck_assert(same_file(in_dir(LOCALCERT_CERT_FILE), crt, crt_len));
	ck_assert(same_file(in_dir(LOCALCERT_KEY_FILE), key, key_len));
	/* So does one with fewer names. */
	localcert_names_init(&names);
	ck_assert_int_eq(localcert_ensure(dir, &names, (uid_t)-1, (gid_t)-1,
	    NULL, err, sizeof(err)), 0);
	ck_assert(same_file(in_dir(LOCALCERT_CERT_FILE), crt, crt_len));
	free(crt);
	free(key);
}
END_TEST

START_TEST(test_new_listen_address)
{
	struct localcert_names	 names;
	char			 err[256], why[256];
	char			*crt;
	size_t			 crt_len;

	test_names(&names);
	ck_assert_int_eq(localcert_ensure(dir, &names, (uid_t)-1, (gid_t)-1,
	    NULL, err, sizeof(err)), 0);
	crt = slurp(in_dir(LOCALCERT_CERT_FILE), &crt_len);
	ck_assert_int_eq(localcert_names_add(&names, "2001:db8::25"), 0);
	ck_assert_int_eq(localcert_check(dir, &names, time(NULL),
	    (uid_t)-1, why, sizeof(why)), 0);
	ck_assert_str_eq(why, "it does not cover 2001:db8::25");
	ck_assert_int_eq(localcert_ensure(dir, &names, (uid_t)-1, (gid_t)-1,
	    NULL, err, sizeof(err)), 0);
	ck_assert(!same_file(in_dir(LOCALCERT_CERT_FILE), crt, crt_len));
	ck_assert_int_eq(localcert_check(dir, &names, time(NULL),
	    (uid_t)-1, why, sizeof(why)), 1);
	free(crt);
}
END_TEST

START_TEST(test_expired)
{
	struct localcert_names	names;
	char			err[256], why[256];
	time_t			now = time(NULL);

	test_names(&names);
	ck_assert_int_eq(mkdir(dir, 0700), 0);
	/* Made eleven years ago: expired a year ago. */
	ck_assert_int_eq(localcert_generate(dir, &names, now - 11 * YEAR,
	    (uid_t)-1, (gid_t)-1, err, sizeof(err)), 0);
	ck_assert_int_eq(localcert_check(dir, &names, now, (uid_t)-1, why,
	    sizeof(why)), 0);
	ck_assert_ptr_nonnull(strstr(why, "expires within"));
	/* Made 820 days less twenty days ago: renewed now. */
	ck_assert_int_eq(localcert_generate(dir, &names, now - 800 * 86400L,
	    (uid_t)-1, (gid_t)-1, err, sizeof(err)), 0);
	ck_assert_int_eq(localcert_check(dir, &names, now, (uid_t)-1, why,
	    sizeof(why)), 0);
	/* Made in the future (a clock that was wrong). */
	ck_assert_int_eq(localcert_generate(dir, &names, now + 7 * 86400,
	    (uid_t)-1, (gid_t)-1, err, sizeof(err)), 0);
	ck_assert_int_eq(localcert_check(dir, &names, now, (uid_t)-1, why,
	    sizeof(why)), 0);
	ck_assert_str_eq(why, "it is not valid yet");
	ck_assert_int_eq(localcert_ensure(dir, &names, (uid_t)-1, (gid_t)-1,
	    NULL, err, sizeof(err)), 0);
	ck_assert_int_eq(localcert_check(dir, &names, now, (uid_t)-1, why,
	    sizeof(why)), 1);
}
END_TEST

START_TEST(test_key_mismatch)
{
	struct localcert_names	 names;
	char			 err[256], why[256], other[128];
	char			*key;
	size_t			 key_len;
	FILE			*f;

	test_names(&names);
	/* A key from elsewhere in place of the right one. */
	snprintf(other, sizeof(other), "%s/other", top);
	ck_assert_int_eq(mkdir(other, 0700), 0);
	ck_assert_int_eq(localcert_generate(other, &names, time(NULL),
	    (uid_t)-1, (gid_t)-1, err, sizeof(err)), 0);
	key = slurp(key_in(other), &key_len);
	ck_assert_int_eq(localcert_ensure(dir, &names, (uid_t)-1, (gid_t)-1,
	    NULL, err, sizeof(err)), 0);
	ck_assert_ptr_nonnull(f = fopen(in_dir(LOCALCERT_KEY_FILE), "wb"));
	ck_assert_uint_eq(fwrite(key, 1, key_len, f), key_len);
	fclose(f);
	ck_assert_int_eq(localcert_check(dir, &names, time(NULL),
	    (uid_t)-1, why, sizeof(why)), 0);
	ck_assert_str_eq(why, "its key does not match it");
	ck_assert_int_eq(localcert_ensure(dir, &names, (uid_t)-1, (gid_t)-1,
	    NULL, err, sizeof(err)), 0);
	ck_assert_int_eq(localcert_check(dir, &names, time(NULL),
	    (uid_t)-1, why, sizeof(why)), 1);
	free(key);
	unlink(key_in(other));
	snprintf(err, sizeof(err), "%s/" LOCALCERT_CERT_FILE, other);
	unlink(err);
	rmdir(other);
}
END_TEST

START_TEST(test_state_dir_errors)
{
	struct localcert_names	names;
	char			err[256];
	FILE			*f;

	test_names(&names);
	/* A file where the directory should be. */
	ck_assert_ptr_nonnull(f = fopen(dir, "w"));
	fclose(f);
	ck_assert_int_eq(localcert_ensure(dir, &names, (uid_t)-1, (gid_t)-1,
	    NULL, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "is not a directory"));
	unlink(dir);
	/* A parent that does not exist. */
	snprintf(dir, sizeof(dir), "%s/no/such", top);
	ck_assert_int_eq(localcert_ensure(dir, &names, (uid_t)-1, (gid_t)-1,
	    NULL, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "cannot create state_dir"));
}
END_TEST

/* ---- Validity and renewal ----------------------------------------------- */

/* Write text into path, mode 0600. */
static void
write_file(const char *path, const void *text, size_t len)
{
	int	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, len), (ssize_t)len);
	close(fd);
}

/* t as an X.509 time string. */
static void
x509_time(time_t t, char buf[16])
{
	struct tm	tm;

	gmtime_r(&t, &tm);
	strftime(buf, 16, "%Y%m%d%H%M%S", &tm);
}

/* A key and a certificate valid from..to, as an older mailtlsd made. */
static void
write_old_cert(time_t from, time_t to)
{
	mbedtls_pk_context	key;
	mbedtls_x509write_cert	crt;
	unsigned char		pem[4096], serial[1] = { 1 };
	char			not_before[16], not_after[16];

	mbedtls_pk_init(&key);
	mbedtls_x509write_crt_init(&crt);
	ck_assert_int_eq(mbedtls_pk_setup(&key,
	    mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)), 0);
	ck_assert_int_eq(mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1,
	    mbedtls_pk_ec(key), tls_random, NULL), 0);
	ck_assert_int_eq(mbedtls_pk_write_key_pem(&key, pem, sizeof(pem)), 0);
	write_file(in_dir(LOCALCERT_KEY_FILE), pem, strlen((char *)pem));
	mbedtls_x509write_crt_set_version(&crt, MBEDTLS_X509_CRT_VERSION_3);
	mbedtls_x509write_crt_set_md_alg(&crt, MBEDTLS_MD_SHA256);
	mbedtls_x509write_crt_set_subject_key(&crt, &key);
	mbedtls_x509write_crt_set_issuer_key(&crt, &key);
	ck_assert_int_eq(mbedtls_x509write_crt_set_subject_name(&crt,
	    "CN=localhost"), 0);
	ck_assert_int_eq(mbedtls_x509write_crt_set_issuer_name(&crt,
	    "CN=localhost"), 0);
#if MBEDTLS_VERSION_NUMBER >= 0x03040000
	ck_assert_int_eq(mbedtls_x509write_crt_set_serial_raw(&crt, serial,
	    sizeof(serial)), 0);
#else
	{
		mbedtls_mpi	mpi;

		mbedtls_mpi_init(&mpi);
		ck_assert_int_eq(mbedtls_mpi_read_binary(&mpi, serial,
		    sizeof(serial)), 0);
		ck_assert_int_eq(mbedtls_x509write_crt_set_serial(&crt, &mpi),
		    0);
		mbedtls_mpi_free(&mpi);
	}
#endif
	x509_time(from, not_before);
	x509_time(to, not_after);
	ck_assert_int_eq(mbedtls_x509write_crt_set_validity(&crt, not_before,
	    not_after), 0);
	ck_assert_int_eq(mbedtls_x509write_crt_pem(&crt, pem, sizeof(pem),
	    tls_random, NULL), 0);
	write_file(in_dir(LOCALCERT_CERT_FILE), pem, strlen((char *)pem));
	mbedtls_x509write_crt_free(&crt);
	mbedtls_pk_free(&key);
}

START_TEST(test_ten_year_certificate_replaced)
{
	struct localcert_names	names;
	char			err[256], why[256];
	time_t			now = time(NULL);

	/* Apple Mail refuses it even when trusted: made again. */
	test_names(&names);
	ck_assert_int_eq(mkdir(dir, 0700), 0);
	write_old_cert(now - 86400, now - 86400 + 10 * YEAR);
	ck_assert_int_eq(localcert_check(dir, &names, now, (uid_t)-1, why,
	    sizeof(why)), 0);
	ck_assert_str_eq(why, "it is valid for more than 825 days, which "
	    "Apple platforms refuse");
	ck_assert_msg(localcert_ensure(dir, &names, (uid_t)-1, (gid_t)-1, NULL,
	    err, sizeof(err)) == 0, "ensure: %s", err);
	ck_assert_msg(localcert_check(dir, &names, now, (uid_t)-1, why,
	    sizeof(why)) == 1, "check: %s", why);
}
END_TEST

START_TEST(test_renew_computation)
{
	const time_t	t = 1800000000;

	ck_assert(localcert_renew_time(t) == t - 30 * 86400L);
	/* Due at its time and after, not before. */
	ck_assert(!localcert_renew_due(t + 1, t));
	ck_assert(localcert_renew_due(t, t));
	ck_assert(localcert_renew_due(t - 1, t));
	/* The daemon looks at least daily, and when the time comes. */
	ck_assert_int_eq(localcert_next_check(t + 400 * 86400L, t), 86400);
	ck_assert_int_eq(localcert_next_check(t + 86401, t), 86400);
	ck_assert_int_eq(localcert_next_check(t + 86400, t), 86400);
	ck_assert_int_eq(localcert_next_check(t + 100, t), 100);
	ck_assert_int_eq(localcert_next_check(t + 1, t), 1);
	/* Past (a renewal that failed): again a day later, never at once. */
	ck_assert_int_eq(localcert_next_check(t, t), 86400);
	ck_assert_int_eq(localcert_next_check(t - 5 * 86400L, t), 86400);
}
END_TEST

START_TEST(test_renew_at)
{
	struct localcert_names	names;
	char			err[256], why[256];
	time_t			now = time(NULL), renew_at = 0, want;

	test_names(&names);
	ck_assert_msg(localcert_ensure(dir, &names, (uid_t)-1, (gid_t)-1,
	    &renew_at, err, sizeof(err)) == 0, "ensure: %s", err);
	/* From yesterday for 820 days, less 30: 789 days from now. */
	want = now + 789 * 86400L;
	ck_assert_msg(renew_at >= want && renew_at <= want + 5, "renew_at "
	    "%lld, want %lld", (long long)renew_at, (long long)want);
	/* The start or reload the daily look makes then renews it. */
	ck_assert_int_eq(localcert_check(dir, &names, renew_at - 1, (uid_t)-1,
	    why, sizeof(why)), 1);
	ck_assert_int_eq(localcert_check(dir, &names, renew_at, (uid_t)-1, why,
	    sizeof(why)), 0);
	ck_assert_str_eq(why, "it expires within 30 days");
}
END_TEST

/* ---- Trusting state_dir ------------------------------------------------- */

/* top/other with a certificate of its own; its path. */
static const char *
make_other(const struct localcert_names *names)
{
	static char	other[128];
	char		err[256];

	snprintf(other, sizeof(other), "%s/other", top);
	ck_assert_int_eq(mkdir(other, 0700), 0);
	ck_assert_int_eq(localcert_generate(other, names, time(NULL),
	    (uid_t)-1, (gid_t)-1, err, sizeof(err)), 0);
	return other;
}

/* top/other/file in a static buffer. */
static const char *
in_other(const char *file)
{
	static char	path[256];

	snprintf(path, sizeof(path), "%s/other/%s", top, file);
	return path;
}

/* The check of dir by this process's user refuses it, saying want. */
static void
expect_refused(const struct localcert_names *names, const char *want)
{
	char	why[512];

	ck_assert_int_eq(localcert_check(dir, names, time(NULL), (uid_t)-1,
	    why, sizeof(why)), 0);
	ck_assert_msg(strstr(why, want) != NULL, "why: %s", why);
}

/* The check of dir by this process's user passes. */
static void
expect_usable(const struct localcert_names *names)
{
	char	why[512];

	ck_assert_msg(localcert_check(dir, names, time(NULL), (uid_t)-1, why,
	    sizeof(why)) == 1, "check: %s", why);
}

/* localcert_ensure() as this process's user succeeds. */
static void
ensure_ok(const struct localcert_names *names)
{
	char	err[512];

	ck_assert_msg(localcert_ensure(dir, names, (uid_t)-1, (gid_t)-1, NULL,
	    err, sizeof(err)) == 0, "ensure: %s", err);
}

/* localcert_ensure() as this process's user fails, saying want. */
static void
ensure_fails(const struct localcert_names *names, const char *want)
{
	char	err[512];

	ck_assert_int_eq(localcert_ensure(dir, names, (uid_t)-1, (gid_t)-1,
	    NULL, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, want) != NULL, "err: %s", err);
}

START_TEST(test_fifo_not_opened)
{
	struct localcert_names	names;

	/* Opening a FIFO waits for a writer, at start or in a reload. */
	test_names(&names);
	ck_assert_int_eq(mkdir(dir, 0700), 0);
	ck_assert_int_eq(mkfifo(in_dir(LOCALCERT_CERT_FILE), 0600), 0);
	expect_refused(&names, "/local.crt is not a regular file");
	ensure_ok(&names);
	expect_usable(&names);
	ck_assert_int_eq(unlink(in_dir(LOCALCERT_KEY_FILE)), 0);
	ck_assert_int_eq(mkfifo(in_dir(LOCALCERT_KEY_FILE), 0600), 0);
	expect_refused(&names, "/local.key is not a regular file");
	ensure_ok(&names);
	expect_usable(&names);
}
END_TEST

START_TEST(test_symlinks_not_followed)
{
	struct localcert_names	 names;
	struct stat		 st;
	char			*crt;
	size_t			 len;

	/* A valid pair elsewhere, linked in. */
	test_names(&names);
	make_other(&names);
	crt = slurp(in_other(LOCALCERT_CERT_FILE), &len);
	ck_assert_int_eq(mkdir(dir, 0700), 0);
	ck_assert_int_eq(symlink(in_other(LOCALCERT_CERT_FILE),
	    in_dir(LOCALCERT_CERT_FILE)), 0);
	ck_assert_int_eq(symlink(in_other(LOCALCERT_KEY_FILE),
	    in_dir(LOCALCERT_KEY_FILE)), 0);
	expect_refused(&names, "/local.crt is a symbolic link");
	ensure_ok(&names);
	/* Replaced by files of its own; the other pair is untouched. */
	ck_assert_int_eq(lstat(in_dir(LOCALCERT_CERT_FILE), &st), 0);
	ck_assert(S_ISREG(st.st_mode));
	ck_assert_int_eq(lstat(in_dir(LOCALCERT_KEY_FILE), &st), 0);
	ck_assert(S_ISREG(st.st_mode));
	ck_assert(!same_file(in_dir(LOCALCERT_CERT_FILE), crt, len));
	ck_assert(same_file(in_other(LOCALCERT_CERT_FILE), crt, len));
	expect_usable(&names);
	free(crt);
}
END_TEST

START_TEST(test_file_modes)
{
	struct localcert_names	names;
	struct stat		st;

	test_names(&names);
	ensure_ok(&names);
	/* A key others could read may have been copied: a new one. */
	ck_assert_int_eq(chmod(in_dir(LOCALCERT_KEY_FILE), 0640), 0);
	expect_refused(&names, "/local.key is readable by group or others");
	ensure_ok(&names);
	ck_assert_int_eq(stat(in_dir(LOCALCERT_KEY_FILE), &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0600);
	/* Files others could write are not used either. */
	ck_assert_int_eq(chmod(in_dir(LOCALCERT_CERT_FILE), 0602), 0);
	expect_refused(&names, "/local.crt is writable by group or others");
	ensure_ok(&names);
	ck_assert_int_eq(chmod(in_dir(LOCALCERT_KEY_FILE), 0620), 0);
	expect_refused(&names, "/local.key is writable by group or others");
	ensure_ok(&names);
	/* A certificate is public: others may read it. */
	ck_assert_int_eq(chmod(in_dir(LOCALCERT_CERT_FILE), 0644), 0);
	expect_usable(&names);
}
END_TEST

START_TEST(test_hard_link_refused)
{
	struct localcert_names	names;
	char			other[128];

	test_names(&names);
	ensure_ok(&names);
	snprintf(other, sizeof(other), "%s/other", top);
	ck_assert_int_eq(mkdir(other, 0700), 0);
	ck_assert_int_eq(link(in_dir(LOCALCERT_KEY_FILE),
	    in_other("key")), 0);
	expect_refused(&names, "/local.key has other hard links");
	ensure_ok(&names);
	expect_usable(&names);
}
END_TEST

START_TEST(test_large_file_refused)
{
	struct localcert_names	 names;
	char			*pad;
	int			 fd;

	/* A valid certificate, then 64 KiB of blank lines. */
	test_names(&names);
	ensure_ok(&names);
	ck_assert_ptr_nonnull(pad = malloc(LOCALCERT_FILE_MAX));
	memset(pad, '\n', LOCALCERT_FILE_MAX);
	fd = open(in_dir(LOCALCERT_CERT_FILE), O_WRONLY | O_APPEND);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, pad, LOCALCERT_FILE_MAX),
	    LOCALCERT_FILE_MAX);
	close(fd);
	free(pad);
	expect_refused(&names, "/local.crt is larger than 65536 bytes");
	ensure_ok(&names);
	expect_usable(&names);
}
END_TEST

START_TEST(test_state_dir_refused)
{
	struct localcert_names	names;
	char			other[128], want[256];

	test_names(&names);
	/* A symbolic link to a directory. */
	snprintf(other, sizeof(other), "%s/other", top);
	ck_assert_int_eq(mkdir(other, 0700), 0);
	ck_assert_int_eq(symlink(other, dir), 0);
	ensure_fails(&names, "is a symbolic link");
	ck_assert_int_eq(access(in_other(LOCALCERT_CERT_FILE), F_OK), -1);
	ck_assert_int_eq(unlink(dir), 0);
	/* Writable by group or by others: anyone there could plant a key. */
	ck_assert_int_eq(mkdir(dir, 0700), 0);
	snprintf(want, sizeof(want), "state_dir %s is writable by group or "
	    "others", dir);
	ck_assert_int_eq(chmod(dir, 0770), 0);
	ensure_fails(&names, want);
	ck_assert_int_eq(chmod(dir, 01703), 0);
	ensure_fails(&names, want);
	ck_assert_int_eq(access(in_dir(LOCALCERT_CERT_FILE), F_OK), -1);
	/* Others may look in. */
	ck_assert_int_eq(chmod(dir, 0755), 0);
	ensure_ok(&names);
}
END_TEST

/* ---- Owners (as root) ---------------------------------------------------- */

/* The user nobody. */
static const struct passwd *
nobody(void)
{
	static struct passwd	 copy;
	const struct passwd	*pw = getpwnam("nobody");

	ck_assert_ptr_nonnull(pw);
	copy = *pw;
	return &copy;
}

/* Owner and mode of path. */
static void
expect_owner(const char *path, uid_t uid, mode_t mode)
{
	struct stat	st;

	ck_assert_int_eq(lstat(path, &st), 0);
	ck_assert_msg(st.st_uid == uid && (st.st_mode & 07777) == mode,
	    "%s: uid %lu mode %o", path, (unsigned long)st.st_uid,
	    (unsigned)(st.st_mode & 07777));
}

START_TEST(test_other_owner_refused)
{
	struct localcert_names	 names;
	const struct passwd	*pw = nobody();

	/* Root runs it alone: a file of another user is not trusted. */
	test_names(&names);
	ensure_ok(&names);
	ck_assert_int_eq(chown(in_dir(LOCALCERT_KEY_FILE), pw->pw_uid,
	    pw->pw_gid), 0);
	expect_refused(&names, "/local.key is owned by uid ");
	ensure_ok(&names);
	expect_owner(in_dir(LOCALCERT_KEY_FILE), 0, 0600);
	ck_assert_int_eq(chown(dir, pw->pw_uid, pw->pw_gid), 0);
	ensure_fails(&names, "/state is owned by uid ");
}
END_TEST

START_TEST(test_user_takes_over)
{
	struct localcert_names	 names;
	const struct passwd	*pw = nobody();
	char			 err[256], why[256];
	char			*crt, *key;
	size_t			 crt_len, key_len;

	/* Made by a start as root without user = ... */
	test_names(&names);
	ensure_ok(&names);
	crt = slurp(in_dir(LOCALCERT_CERT_FILE), &crt_len);
	key = slurp(in_dir(LOCALCERT_KEY_FILE), &key_len);
	/* ... root's 0600 files are of no use to the user after the drop ... */
	ck_assert_int_eq(localcert_check(dir, &names, time(NULL), pw->pw_uid,
	    why, sizeof(why)), 0);
	ck_assert_msg(strstr(why, "/local.crt cannot be read by the user "
	    "mailtlsd runs as") != NULL, "why: %s", why);
	/* ... so a start with user = gives it all to the user, unchanged. */
	ck_assert_msg(localcert_ensure(dir, &names, pw->pw_uid, pw->pw_gid,
	    NULL, err, sizeof(err)) == 0, "ensure: %s", err);
	expect_owner(dir, pw->pw_uid, 0700);
	expect_owner(in_dir(LOCALCERT_CERT_FILE), pw->pw_uid, 0600);
	expect_owner(in_dir(LOCALCERT_KEY_FILE), pw->pw_uid, 0600);
	ck_assert(same_file(in_dir(LOCALCERT_CERT_FILE), crt, crt_len));
	ck_assert(same_file(in_dir(LOCALCERT_KEY_FILE), key, key_len));
	ck_assert_msg(localcert_check(dir, &names, time(NULL), pw->pw_uid,
	    why, sizeof(why)) == 1, "check: %s", why);
	free(crt);
	free(key);
}
END_TEST

START_TEST(test_shared_dir_not_given)
{
	struct localcert_names	 names;
	const struct passwd	*pw = nobody();
	char			 err[256], other[256];
	int			 fd;

	/* A root directory that holds other files is not the user's to have. */
	test_names(&names);
	ck_assert_int_eq(mkdir(dir, 0700), 0);
	snprintf(other, sizeof(other), "%s/somebody-elses", dir);
	ck_assert_int_ge(fd = open(other, O_WRONLY | O_CREAT, 0600), 0);
	close(fd);
	ck_assert_int_eq(localcert_ensure(dir, &names, pw->pw_uid, pw->pw_gid,
	    NULL, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "holds other files (somebody-elses): use a "
	    "directory of its own") != NULL, "err: %s", err);
	expect_owner(dir, 0, 0700);
	unlink(other);
}
END_TEST

START_TEST(test_user_gets_no_other_file)
{
	struct localcert_names	 names;
	const struct passwd	*pw = nobody();
	struct stat		 st;
	char			 err[256], other[128];

	/* Root files linked into state_dir (as the user could): not given. */
	test_names(&names);
	snprintf(other, sizeof(other), "%s/other", top);
	ck_assert_int_eq(mkdir(other, 0700), 0);
	write_file(in_other("a"), "root's\n", 7);
	write_file(in_other("b"), "root's\n", 7);
	ck_assert_int_eq(mkdir(dir, 0700), 0);
	ck_assert_int_eq(link(in_other("a"), in_dir(LOCALCERT_KEY_FILE)), 0);
	ck_assert_int_eq(symlink(in_other("b"), in_dir(LOCALCERT_CERT_FILE)),
	    0);
	ck_assert_msg(localcert_ensure(dir, &names, pw->pw_uid, pw->pw_gid,
	    NULL, err, sizeof(err)) == 0, "ensure: %s", err);
	expect_owner(in_other("a"), 0, 0600);
	expect_owner(in_other("b"), 0, 0600);
	ck_assert(same_file(in_other("a"), "root's\n", 7));
	/* The names now hold a new pair of the user's. */
	expect_owner(in_dir(LOCALCERT_KEY_FILE), pw->pw_uid, 0600);
	expect_owner(in_dir(LOCALCERT_CERT_FILE), pw->pw_uid, 0600);
	ck_assert_int_eq(stat(in_other("a"), &st), 0);
	ck_assert_uint_eq(st.st_nlink, 1);
}
END_TEST

/* Write a configuration file and load it. */
static struct config *
load_config_text(const char *text)
{
	struct config_errors	 errs = { 0 };
	struct config		*cfg;
	char			 path[128];
	FILE			*f;

	snprintf(path, sizeof(path), "%s/other", top);
	ck_assert_ptr_nonnull(f = fopen(path, "w"));
	fputs(text, f);
	fclose(f);
	cfg = config_load(path, &errs);
	ck_assert_msg(cfg != NULL, "config: %s", errs.count > 0 ?
	    errs.lines[0] : "?");
	config_errors_clear(&errs);
	unlink(path);
	return cfg;
}

START_TEST(test_prepare)
{
	struct config	*cfg;
	char		 text[1024], err[256], why[256];
	struct localcert_names names;
	time_t		 renew_at;

	snprintf(text, sizeof(text), "[global]\nstate_dir = %s\n"
	    "[a]\nlisten = 127.0.0.2:1143\nremote = mail.test:993\n"
	    "local_tls = starttls\n"
	    "[b]\nlisten = 127.0.0.3:1143\nremote = mail.test:993\n"
	    "local_tls = implicit\nlocal_cert = /x/c.pem\n"
	    "local_key = /x/c.key\n"
	    "[c]\nlisten = 127.0.0.4:1143\nremote = mail.test:993\n", dir);
	cfg = load_config_text(text);
	ck_assert_msg(localcert_prepare(cfg, &renew_at, err, sizeof(err)) == 0,
	    "prepare: %s", err);
	ck_assert(renew_at > time(NULL) + 700 * 86400L);
	ck_assert_str_eq(cfg->services[0].local_cert,
	    in_dir(LOCALCERT_CERT_FILE));
	ck_assert_str_eq(cfg->services[0].local_key,
	    in_dir(LOCALCERT_KEY_FILE));
	ck_assert_str_eq(cfg->services[1].local_cert, "/x/c.pem");
	ck_assert_str_eq(cfg->services[2].local_cert, "");
	/* It covers the listen address of [a] only. */
	localcert_names_init(&names);
	ck_assert_int_eq(localcert_names_add(&names, "127.0.0.2"), 0);
	ck_assert_int_eq(localcert_check(dir, &names, time(NULL),
	    (uid_t)-1, why, sizeof(why)), 1);
	ck_assert_int_eq(localcert_names_add(&names, "127.0.0.3"), 0);
	ck_assert_int_eq(localcert_check(dir, &names, time(NULL),
	    (uid_t)-1, why, sizeof(why)), 0);
	config_free(cfg);

	/* Without a service that needs it, nothing is made. */
	teardown();
	setup();
	snprintf(text, sizeof(text), "[global]\nstate_dir = %s\n"
	    "[c]\nlisten = 127.0.0.4:1143\nremote = mail.test:993\n", dir);
	cfg = load_config_text(text);
	ck_assert_int_eq(localcert_prepare(cfg, &renew_at, err, sizeof(err)),
	    0);
	ck_assert_int_eq(access(dir, F_OK), -1);
	ck_assert(renew_at == 0);
	config_free(cfg);
}
END_TEST

/* ---- The server end of tls.c, with the generated certificate ------------ */

/* Two connections over two socket bufferevents without sockets. */
struct pair {
	struct event_base	*base;
	struct bufferevent	*raw[2];	/* 0: client end, 1: server */
	struct tls_ctx		*ctx[2];
	struct tls_conn		*conn[2];
};

/* A bufferevent the test plays the network for. */
static struct bufferevent *
fake_socket(struct event_base *base)
{
	struct bufferevent	*bev = bufferevent_socket_new(base, -1, 0);

	ck_assert_ptr_nonnull(bev);
	evbuffer_unfreeze(bufferevent_get_input(bev), 0);
	evbuffer_unfreeze(bufferevent_get_output(bev), 1);
	return bev;
}

/* mailtlsd's client end trusting the generated certificate, and its server
 * end presenting it. */
static void
pair_setup(struct pair *p, const char *server_name)
{
	struct localcert_names	names;
	struct service_config	sc;
	char			err[256];

	test_names(&names);
	ck_assert_int_eq(localcert_ensure(dir, &names, (uid_t)-1, (gid_t)-1,
	    NULL, err, sizeof(err)), 0);
	memset(&sc, 0, sizeof(sc));
	sc.protocol = MAIL_PROTO_IMAP;
	sc.tls = TLS_MODE_IMPLICIT;
	sc.min_tls = TLS_VERSION_1_2;
	sc.verify = 1;
	snprintf(sc.server_name, sizeof(sc.server_name), "%s", server_name);
	snprintf(sc.ca_file, sizeof(sc.ca_file), "%s",
	    in_dir(LOCALCERT_CERT_FILE));
	snprintf(sc.local_cert, sizeof(sc.local_cert), "%s",
	    in_dir(LOCALCERT_CERT_FILE));
	snprintf(sc.local_key, sizeof(sc.local_key), "%s",
	    in_dir(LOCALCERT_KEY_FILE));
	p->base = event_base_new();
	p->raw[0] = fake_socket(p->base);
	p->raw[1] = fake_socket(p->base);
	p->ctx[0] = tls_ctx_new_uplink(&sc, err, sizeof(err));
	ck_assert_msg(p->ctx[0] != NULL, "client ctx: %s", err);
	p->ctx[1] = tls_ctx_new_local(&sc, localcert_pair(&sc), err,
	    sizeof(err));
	ck_assert_msg(p->ctx[1] != NULL, "server ctx: %s", err);
	p->conn[0] = tls_conn_new_uplink(p->ctx[0], p->raw[0]);
	p->conn[1] = tls_conn_new_local(p->ctx[1], p->raw[1]);
	ck_assert_ptr_nonnull(p->conn[0]);
	ck_assert_ptr_nonnull(p->conn[1]);
}

static void
pair_free(struct pair *p)
{
	int	i;

	for (i = 0; i < 2; i++) {
		tls_conn_free(p->conn[i]);
		tls_ctx_free(p->ctx[i]);
		bufferevent_free(p->raw[i]);
	}
	event_base_free(p->base);
}

/* Carry what each end wrote to the other. */
static void
pair_carry(struct pair *p)
{
	evbuffer_add_buffer(bufferevent_get_input(p->raw[1]),
	    bufferevent_get_output(p->raw[0]));
	evbuffer_add_buffer(bufferevent_get_input(p->raw[0]),
	    bufferevent_get_output(p->raw[1]));
}

/* Run both handshakes to their end: 1 when both succeeded. */
static int
pair_handshake(struct pair *p, int *client, int *server)
{
	int	i;

	*client = *server = 0;
	for (i = 0; i < 20 && (*client == 0 || *server == 0); i++) {
		if (*client == 0)
			*client = tls_conn_handshake_uplink(p->conn[0]);
		pair_carry(p);
		if (*server == 0)
			*server = tls_conn_handshake_local(p->conn[1]);
		pair_carry(p);
		if (*client < 0 || *server < 0)
			break;
	}
	return *client == 1 && *server == 1;
}

START_TEST(test_local_handshake)
{
	struct pair	p;
	char		buf[64];
	int		c, s, n;

	pair_setup(&p, "localhost");
	ck_assert_msg(pair_handshake(&p, &c, &s), "client %d (%s), server %d "
	    "(%s)", c, tls_conn_error(p.conn[0]), s, tls_conn_error(p.conn[1]));
	/* Data both ways. */
	ck_assert_int_eq(tls_conn_write(p.conn[0], "a1 NOOP\r\n", 9), 9);
	pair_carry(&p);
	n = tls_conn_read(p.conn[1], buf, sizeof(buf));
	ck_assert_int_eq(n, 9);
	ck_assert_mem_eq(buf, "a1 NOOP\r\n", 9);
	ck_assert_int_eq(tls_conn_write(p.conn[1], "a1 OK\r\n", 7), 7);
	pair_carry(&p);
	ck_assert_int_eq(tls_conn_read(p.conn[0], buf, sizeof(buf)), 7);
	/* close_notify from the client. */
	tls_conn_close_notify(p.conn[0]);
	pair_carry(&p);
	ck_assert_int_eq(tls_conn_read(p.conn[1], buf, sizeof(buf)),
	    TLS_CLOSED);
	pair_free(&p);
}
END_TEST

START_TEST(test_local_handshake_by_address)
{
	struct pair	p;
	int		c, s;

	/* A name the certificate does not carry fails the client's check. */
	pair_setup(&p, "mail.test");
	ck_assert(!pair_handshake(&p, &c, &s));
	ck_assert_int_eq(c, -1);
	ck_assert_ptr_nonnull(strstr(tls_conn_error(p.conn[0]),
	    "name mismatch"));
	pair_free(&p);
}
END_TEST

START_TEST(test_local_plaintext_client)
{
	struct pair	p;
	const char	line[] = "b LOGIN alice secret\r\n";

	pair_setup(&p, "localhost");
	/* Plaintext where the ClientHello is due: an injection. */
	evbuffer_add(bufferevent_get_input(p.raw[1]), line, strlen(line));
	ck_assert_int_eq(tls_conn_handshake_local(p.conn[1]), -1);
	ck_assert_ptr_nonnull(strstr(tls_conn_error(p.conn[1]),
	    "did not start TLS"));
	ck_assert(tls_conn_saw_plaintext(p.conn[1]));
	pair_free(&p);
}
END_TEST

START_TEST(test_local_client_leaves)
{
	struct pair	p;

	pair_setup(&p, "localhost");
	ck_assert_int_eq(tls_conn_handshake_local(p.conn[1]), 0);
	tls_conn_set_eof(p.conn[1]);
	ck_assert_int_eq(tls_conn_handshake_local(p.conn[1]), -1);
	ck_assert_str_eq(tls_conn_error(p.conn[1]),
	    "client closed the connection during the TLS handshake");
	pair_free(&p);
}
END_TEST

START_TEST(test_local_ctx_errors)
{
	struct service_config	 sc;
	struct localcert_names	 names;
	struct tls_ctx		*ctx;
	char			 err[256], other[128];

	test_names(&names);
	ck_assert_int_eq(localcert_ensure(dir, &names, (uid_t)-1, (gid_t)-1,
	    NULL, err, sizeof(err)), 0);
	snprintf(other, sizeof(other), "%s/other", top);
	ck_assert_int_eq(mkdir(other, 0700), 0);
	ck_assert_int_eq(localcert_generate(other, &names, time(NULL),
	    (uid_t)-1, (gid_t)-1, err, sizeof(err)), 0);
	memset(&sc, 0, sizeof(sc));
	snprintf(sc.local_cert, sizeof(sc.local_cert), "%s/missing.pem", top);
	snprintf(sc.local_key, sizeof(sc.local_key), "%s",
	    in_dir(LOCALCERT_KEY_FILE));
	ck_assert_ptr_null(tls_ctx_new_local(&sc, NULL, err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "local_cert"));
	/* The key of another certificate. */
	snprintf(sc.local_cert, sizeof(sc.local_cert), "%s",
	    in_dir(LOCALCERT_CERT_FILE));
	snprintf(sc.local_key, sizeof(sc.local_key), "%s",
	    key_in(other));
	ck_assert_ptr_null(tls_ctx_new_local(&sc, NULL, err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "is not the key of"));
	/* The same pair as client_cert and client_key toward a server. */
	memset(&sc, 0, sizeof(sc));
	snprintf(sc.name, sizeof(sc.name), "t");
	snprintf(sc.server_name, sizeof(sc.server_name), "mail.test");
	sc.protocol = MAIL_PROTO_IMAP;
	sc.tls = TLS_MODE_IMPLICIT;
	sc.min_tls = TLS_VERSION_1_2;
	snprintf(sc.client_cert, sizeof(sc.client_cert), "%s",
	    in_dir(LOCALCERT_CERT_FILE));
	snprintf(sc.client_key, sizeof(sc.client_key), "%s", key_in(other));
	ck_assert_ptr_null(tls_ctx_new_uplink(&sc, err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "client_key"));
	ck_assert_ptr_nonnull(strstr(err, "is not the key of client_cert"));
	snprintf(sc.client_key, sizeof(sc.client_key), "%s",
	    in_dir(LOCALCERT_KEY_FILE));
	ctx = tls_ctx_new_uplink(&sc, err, sizeof(err));
	ck_assert_msg(ctx != NULL, "%s", err);
	tls_ctx_free(ctx);
	unlink(key_in(other));
	snprintf(err, sizeof(err), "%s/" LOCALCERT_CERT_FILE, other);
	unlink(err);
	rmdir(other);
}
END_TEST

/*
 * localcert_ensure() holds the bytes it checked and logged: after the
 * files are replaced, the pair (and the context built from it) is still
 * the one ensured.  Only a service whose local_cert and local_key are
 * those files gets it.
 */
START_TEST(test_held_pair)
{
	struct service_config	 sc;
	struct localcert_names	 names;
	const struct tls_keypair *pair;
	struct tls_ctx		*ctx;
	char			 err[256], other[128], fp[2][96];
	char			*crt;
	size_t			 len;

	test_names(&names);
	ck_assert_int_eq(localcert_ensure(dir, &names, (uid_t)-1, (gid_t)-1,
	    NULL, err, sizeof(err)), 0);
	ck_assert_int_eq(localcert_fingerprint(in_dir(LOCALCERT_CERT_FILE),
	    fp[0]), 0);
	crt = slurp(in_dir(LOCALCERT_CERT_FILE), &len);
	memset(&sc, 0, sizeof(sc));
	snprintf(sc.local_cert, sizeof(sc.local_cert), "%s",
	    in_dir(LOCALCERT_CERT_FILE));
	snprintf(sc.local_key, sizeof(sc.local_key), "%s",
	    in_dir(LOCALCERT_KEY_FILE));
	pair = localcert_pair(&sc);
	ck_assert_ptr_nonnull(pair);
	ck_assert_uint_eq(pair->cert_len, len);
	ck_assert_int_eq(memcmp(pair->cert, crt, len), 0);
	ck_assert_int_eq(pair->cert[len], '\0');
	ck_assert_int_eq(pair->key[pair->key_len], '\0');

	/* Another pair in place of the files: the held one is unchanged. */
	snprintf(other, sizeof(other), "%s/other", top);
	ck_assert_int_eq(mkdir(other, 0700), 0);
	ck_assert_int_eq(localcert_generate(other, &names, time(NULL),
	    (uid_t)-1, (gid_t)-1, err, sizeof(err)), 0);
	snprintf(err, sizeof(err), "%s/" LOCALCERT_CERT_FILE, other);
	ck_assert_int_eq(rename(err, in_dir(LOCALCERT_CERT_FILE)), 0);
	ck_assert_int_eq(rename(key_in(other), in_dir(LOCALCERT_KEY_FILE)), 0);
	ck_assert_int_eq(localcert_fingerprint(in_dir(LOCALCERT_CERT_FILE),
	    fp[1]), 0);
	ck_assert_str_ne(fp[0], fp[1]);
	ck_assert_ptr_eq(localcert_pair(&sc), pair);
	ck_assert_int_eq(memcmp(pair->cert, crt, len), 0);
	ctx = tls_ctx_new_local(&sc, pair, err, sizeof(err));
	ck_assert_msg(ctx != NULL, "%s", err);
	tls_ctx_free(ctx);

	/* Not for a service with other files; not after release. */
	snprintf(sc.local_key, sizeof(sc.local_key), "%s/other.key", top);
	ck_assert_ptr_null(localcert_pair(&sc));
	snprintf(sc.local_key, sizeof(sc.local_key), "%s",
	    in_dir(LOCALCERT_KEY_FILE));
	localcert_release();
	ck_assert_ptr_null(localcert_pair(&sc));
	rmdir(other);
	free(crt);
}
END_TEST

/*
 * A FIFO as local_cert or client_key is refused at once, named in the
 * error, never opened in a way that waits for a writer.
 */
START_TEST(test_ctx_fifo_refused)
{
	struct service_config	 sc;
	struct localcert_names	 names;
	char			 err[256], fifo[128], want[192];

	test_names(&names);
	ck_assert_int_eq(localcert_ensure(dir, &names, (uid_t)-1, (gid_t)-1,
	    NULL, err, sizeof(err)), 0);
	snprintf(fifo, sizeof(fifo), "%s/fifo", top);
	ck_assert_int_eq(mkfifo(fifo, 0600), 0);
	alarm(10);
	memset(&sc, 0, sizeof(sc));
	snprintf(sc.local_cert, sizeof(sc.local_cert), "%s", fifo);
	snprintf(sc.local_key, sizeof(sc.local_key), "%s",
	    in_dir(LOCALCERT_KEY_FILE));
	ck_assert_ptr_null(tls_ctx_new_local(&sc, NULL, err, sizeof(err)));
	snprintf(want, sizeof(want), "local_cert %s: not a regular file",
	    fifo);
	ck_assert_str_eq(err, want);

	memset(&sc, 0, sizeof(sc));
	snprintf(sc.name, sizeof(sc.name), "t");
	snprintf(sc.server_name, sizeof(sc.server_name), "mail.test");
	sc.protocol = MAIL_PROTO_IMAP;
	sc.tls = TLS_MODE_IMPLICIT;
	sc.min_tls = TLS_VERSION_1_2;
	snprintf(sc.client_cert, sizeof(sc.client_cert), "%s",
	    in_dir(LOCALCERT_CERT_FILE));
	snprintf(sc.client_key, sizeof(sc.client_key), "%s", fifo);
	ck_assert_ptr_null(tls_ctx_new_uplink(&sc, err, sizeof(err)));
	snprintf(want, sizeof(want), "client_key %s: not a regular file",
	    fifo);
	ck_assert_str_eq(err, want);

	/* A CA file too, and a directory as a key. */
	sc.verify = 1;
	sc.client_cert[0] = sc.client_key[0] = '\0';
	snprintf(sc.ca_file, sizeof(sc.ca_file), "%s", fifo);
	ck_assert_ptr_null(tls_ctx_new_uplink(&sc, err, sizeof(err)));
	snprintf(want, sizeof(want), "ca_file %s: not a regular file", fifo);
	ck_assert_str_eq(err, want);
	memset(&sc, 0, sizeof(sc));
	snprintf(sc.local_cert, sizeof(sc.local_cert), "%s",
	    in_dir(LOCALCERT_CERT_FILE));
	snprintf(sc.local_key, sizeof(sc.local_key), "%s", top);
	ck_assert_ptr_null(tls_ctx_new_local(&sc, NULL, err, sizeof(err)));
	snprintf(want, sizeof(want), "local_key %s: not a regular file", top);
	ck_assert_str_eq(err, want);
	alarm(0);
}
END_TEST

Suite *
localcert_suite(void)
{
	Suite	*s = suite_create("localcert");
	TCase	*tc = tcase_create("files");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_names_list);
	tcase_add_test(tc, test_generate);
	tcase_add_test(tc, test_reused);
	tcase_add_test(tc, test_new_listen_address);
	tcase_add_test(tc, test_expired);
	tcase_add_test(tc, test_key_mismatch);
	tcase_add_test(tc, test_state_dir_errors);
	tcase_add_test(tc, test_prepare);
	suite_add_tcase(s, tc);

	tc = tcase_create("validity");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_ten_year_certificate_replaced);
	tcase_add_test(tc, test_renew_computation);
	tcase_add_test(tc, test_renew_at);
	suite_add_tcase(s, tc);

	tc = tcase_create("trust");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_fifo_not_opened);
	tcase_add_test(tc, test_symlinks_not_followed);
	tcase_add_test(tc, test_file_modes);
	tcase_add_test(tc, test_hard_link_refused);
	tcase_add_test(tc, test_large_file_refused);
	tcase_add_test(tc, test_state_dir_refused);
	suite_add_tcase(s, tc);

	/* Giving files to another user, or owning them as one, takes root. */
	tc = tcase_create("owners");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	if (geteuid() == 0 && getpwnam("nobody") != NULL) {
		tcase_add_test(tc, test_other_owner_refused);
		tcase_add_test(tc, test_user_takes_over);
		tcase_add_test(tc, test_shared_dir_not_given);
		tcase_add_test(tc, test_user_gets_no_other_file);
	} else
		fprintf(stderr, "check_localcert: not root or no user nobody: "
		    "the owner tests are skipped\n");
	suite_add_tcase(s, tc);

	tc = tcase_create("server_end");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_local_handshake);
	tcase_add_test(tc, test_local_handshake_by_address);
	tcase_add_test(tc, test_local_plaintext_client);
	tcase_add_test(tc, test_local_client_leaves);
	tcase_add_test(tc, test_local_ctx_errors);
	tcase_add_test(tc, test_held_pair);
	tcase_add_test(tc, test_ctx_fifo_refused);
	suite_add_tcase(s, tc);
	return s;
}
