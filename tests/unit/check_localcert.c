/*
 * check_localcert.c - unit tests of localcert.c (the generated certificate
 * for local_tls: made, kept, made again when it no longer fits, 0600) and
 * of the server end of tls.c, with a full handshake in memory between
 * mailtlsd's own client end, trusting the generated certificate, and its
 * server end presenting it.
 */
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

#include <mbedtls/pk.h>
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

/* Remove what a test left. */
static void
teardown(void)
{
	char	path[256];

	snprintf(path, sizeof(path), "%s/" LOCALCERT_CERT_FILE, dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/" LOCALCERT_KEY_FILE, dir);
	unlink(path);
	rmdir(dir);
	snprintf(path, sizeof(path), "%s/other", top);
	unlink(path);
	rmdir(top);
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
	ck_assert_msg(localcert_ensure(dir, &names, (uid_t)-1, (gid_t)-1, err,
	    sizeof(err)) == 0, "ensure: %s", err);
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
	/* From yesterday, for ten years. */
	now -= 86400;
	gmtime_r(&now, &tm);
	ck_assert_int_eq(crt.valid_from.year, tm.tm_year + 1900);
	ck_assert_int_eq(crt.valid_from.mon, tm.tm_mon + 1);
	ck_assert_int_eq(crt.valid_from.day, tm.tm_mday);
	ck_assert_int_eq(crt.valid_to.year, tm.tm_year + 1900 + 10);
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
	ck_assert_int_eq(localcert_check(dir, &names, time(NULL), why,
	    sizeof(why)), 0);
	ck_assert_ptr_nonnull(strstr(why, "no usable"));
	ck_assert_int_eq(localcert_ensure(dir, &names, (uid_t)-1, (gid_t)-1,
	    err, sizeof(err)), 0);
	crt = slurp(in_dir(LOCALCERT_CERT_FILE), &crt_len);
	key = slurp(in_dir(LOCALCERT_KEY_FILE), &key_len);
	ck_assert_int_eq(localcert_check(dir, &names, time(NULL), why,
	    sizeof(why)), 1);
	/* A second start keeps both files as they are. */
	ck_assert_int_eq(localcert_ensure(dir, &names, (uid_t)-1, (gid_t)-1,
	    err, sizeof(err)), 0);
	ck_assert(same_file(in_dir(LOCALCERT_CERT_FILE), crt, crt_len));
	ck_assert(same_file(in_dir(LOCALCERT_KEY_FILE), key, key_len));
	/* So does one with fewer names. */
	localcert_names_init(&names);
	ck_assert_int_eq(localcert_ensure(dir, &names, (uid_t)-1, (gid_t)-1,
	    err, sizeof(err)), 0);
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
	    err, sizeof(err)), 0);
	crt = slurp(in_dir(LOCALCERT_CERT_FILE), &crt_len);
	ck_assert_int_eq(localcert_names_add(&names, "2001:db8::25"), 0);
	ck_assert_int_eq(localcert_check(dir, &names, time(NULL), why,
	    sizeof(why)), 0);
	ck_assert_str_eq(why, "it does not cover 2001:db8::25");
	ck_assert_int_eq(localcert_ensure(dir, &names, (uid_t)-1, (gid_t)-1,
	    err, sizeof(err)), 0);
	ck_assert(!same_file(in_dir(LOCALCERT_CERT_FILE), crt, crt_len));
	ck_assert_int_eq(localcert_check(dir, &names, time(NULL), why,
	    sizeof(why)), 1);
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
	ck_assert_int_eq(localcert_check(dir, &names, now, why, sizeof(why)),
	    0);
	ck_assert_ptr_nonnull(strstr(why, "expires within"));
	/* Made ten years less twenty days ago: renewed now. */
	ck_assert_int_eq(localcert_generate(dir, &names, now - 10 * YEAR +
	    20 * 86400, (uid_t)-1, (gid_t)-1, err, sizeof(err)), 0);
	ck_assert_int_eq(localcert_check(dir, &names, now, why, sizeof(why)),
	    0);
	/* Made in the future (a clock that was wrong). */
	ck_assert_int_eq(localcert_generate(dir, &names, now + 7 * 86400,
	    (uid_t)-1, (gid_t)-1, err, sizeof(err)), 0);
	ck_assert_int_eq(localcert_check(dir, &names, now, why, sizeof(why)),
	    0);
	ck_assert_str_eq(why, "it is not valid yet");
	ck_assert_int_eq(localcert_ensure(dir, &names, (uid_t)-1, (gid_t)-1,
	    err, sizeof(err)), 0);
	ck_assert_int_eq(localcert_check(dir, &names, now, why, sizeof(why)),
	    1);
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
	    err, sizeof(err)), 0);
	ck_assert_ptr_nonnull(f = fopen(in_dir(LOCALCERT_KEY_FILE), "wb"));
	ck_assert_uint_eq(fwrite(key, 1, key_len, f), key_len);
	fclose(f);
	ck_assert_int_eq(localcert_check(dir, &names, time(NULL), why,
	    sizeof(why)), 0);
	ck_assert_str_eq(why, "its key does not match it");
	ck_assert_int_eq(localcert_ensure(dir, &names, (uid_t)-1, (gid_t)-1,
	    err, sizeof(err)), 0);
	ck_assert_int_eq(localcert_check(dir, &names, time(NULL), why,
	    sizeof(why)), 1);
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
	    err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "is not a directory"));
	unlink(dir);
	/* A parent that does not exist. */
	snprintf(dir, sizeof(dir), "%s/no/such", top);
	ck_assert_int_eq(localcert_ensure(dir, &names, (uid_t)-1, (gid_t)-1,
	    err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "cannot create state_dir"));
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

	snprintf(text, sizeof(text), "[global]\nstate_dir = %s\n"
	    "[a]\nlisten = 127.0.0.2:1143\nremote = mail.test:993\n"
	    "local_tls = starttls\n"
	    "[b]\nlisten = 127.0.0.3:1143\nremote = mail.test:993\n"
	    "local_tls = implicit\nlocal_cert = /x/c.pem\n"
	    "local_key = /x/c.key\n"
	    "[c]\nlisten = 127.0.0.4:1143\nremote = mail.test:993\n", dir);
	cfg = load_config_text(text);
	ck_assert_msg(localcert_prepare(cfg, err, sizeof(err)) == 0,
	    "prepare: %s", err);
	ck_assert_str_eq(cfg->services[0].local_cert,
	    in_dir(LOCALCERT_CERT_FILE));
	ck_assert_str_eq(cfg->services[0].local_key,
	    in_dir(LOCALCERT_KEY_FILE));
	ck_assert_str_eq(cfg->services[1].local_cert, "/x/c.pem");
	ck_assert_str_eq(cfg->services[2].local_cert, "");
	/* It covers the listen address of [a] only. */
	localcert_names_init(&names);
	ck_assert_int_eq(localcert_names_add(&names, "127.0.0.2"), 0);
	ck_assert_int_eq(localcert_check(dir, &names, time(NULL), why,
	    sizeof(why)), 1);
	ck_assert_int_eq(localcert_names_add(&names, "127.0.0.3"), 0);
	ck_assert_int_eq(localcert_check(dir, &names, time(NULL), why,
	    sizeof(why)), 0);
	config_free(cfg);

	/* Without a service that needs it, nothing is made. */
	teardown();
	setup();
	snprintf(text, sizeof(text), "[global]\nstate_dir = %s\n"
	    "[c]\nlisten = 127.0.0.4:1143\nremote = mail.test:993\n", dir);
	cfg = load_config_text(text);
	ck_assert_int_eq(localcert_prepare(cfg, err, sizeof(err)), 0);
	ck_assert_int_eq(access(dir, F_OK), -1);
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
	    err, sizeof(err)), 0);
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
	p->ctx[0] = tls_ctx_new(&sc, err, sizeof(err));
	ck_assert_msg(p->ctx[0] != NULL, "client ctx: %s", err);
	p->ctx[1] = tls_ctx_new_local(&sc, err, sizeof(err));
	ck_assert_msg(p->ctx[1] != NULL, "server ctx: %s", err);
	p->conn[0] = tls_conn_new(p->ctx[0], p->raw[0]);
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
			*client = tls_conn_handshake(p->conn[0]);
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
	    err, sizeof(err)), 0);
	snprintf(other, sizeof(other), "%s/other", top);
	ck_assert_int_eq(mkdir(other, 0700), 0);
	ck_assert_int_eq(localcert_generate(other, &names, time(NULL),
	    (uid_t)-1, (gid_t)-1, err, sizeof(err)), 0);
	memset(&sc, 0, sizeof(sc));
	snprintf(sc.local_cert, sizeof(sc.local_cert), "%s/missing.pem", top);
	snprintf(sc.local_key, sizeof(sc.local_key), "%s",
	    in_dir(LOCALCERT_KEY_FILE));
	ck_assert_ptr_null(tls_ctx_new_local(&sc, err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "local_cert"));
	/* The key of another certificate. */
	snprintf(sc.local_cert, sizeof(sc.local_cert), "%s",
	    in_dir(LOCALCERT_CERT_FILE));
	snprintf(sc.local_key, sizeof(sc.local_key), "%s",
	    key_in(other));
	ck_assert_ptr_null(tls_ctx_new_local(&sc, err, sizeof(err)));
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
	ck_assert_ptr_null(tls_ctx_new(&sc, err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "client_key"));
	ck_assert_ptr_nonnull(strstr(err, "is not the key of client_cert"));
	snprintf(sc.client_key, sizeof(sc.client_key), "%s",
	    in_dir(LOCALCERT_KEY_FILE));
	ctx = tls_ctx_new(&sc, err, sizeof(err));
	ck_assert_msg(ctx != NULL, "%s", err);
	tls_ctx_free(ctx);
	unlink(key_in(other));
	snprintf(err, sizeof(err), "%s/" LOCALCERT_CERT_FILE, other);
	unlink(err);
	rmdir(other);
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

	tc = tcase_create("server_end");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_local_handshake);
	tcase_add_test(tc, test_local_handshake_by_address);
	tcase_add_test(tc, test_local_plaintext_client);
	tcase_add_test(tc, test_local_client_leaves);
	tcase_add_test(tc, test_local_ctx_errors);
	suite_add_tcase(s, tc);
	return s;
}
