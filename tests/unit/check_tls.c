/*
 * check_tls.c - unit tests of the TLS glue: service contexts and what a
 * connection puts on the wire, driven through a socket bufferevent's
 * buffers without a socket.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include <mbedtls/ssl.h>

#include "config.h"
#include "localcert.h"
#include "tls.h"
#include "unit.h"

/* A service configuration with verification off (no CA needed). */
static void
make_service(struct service_config *sc)
{
	memset(sc, 0, sizeof(*sc));
	snprintf(sc->name, sizeof(sc->name), "t");
	snprintf(sc->remote_host, sizeof(sc->remote_host), "127.0.0.1");
	sc->remote_port = 993;
	snprintf(sc->server_name, sizeof(sc->server_name), "mail.test");
	sc->protocol = MAIL_PROTO_IMAP;
	sc->tls = TLS_MODE_IMPLICIT;
	sc->min_tls = TLS_VERSION_1_2;
	sc->verify = 0;
}

/* Write text to a new temporary file; its path in path. */
static void
write_temp(char *path, size_t len, const char *text)
{
	int	fd;

	snprintf(path, len, "/tmp/mailtlsd-check-XXXXXX");
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (int)strlen(text));
	close(fd);
}

/* The fixture of the wire tests. */
struct wire {
	struct event_base	*base;
	struct bufferevent	*raw;
	struct tls_ctx		*ctx;
	struct tls_conn		*conn;
};

/* A connection whose buffers the test can fill and read. */
static void
wire_setup_min(struct wire *w, enum tls_version min_tls)
{
	struct service_config	sc;
	char			err[256];

	ck_assert_int_eq(tls_init(), 0);
	make_service(&sc);
	sc.min_tls = min_tls;
	w->base = event_base_new();
	ck_assert_ptr_nonnull(w->base);
	w->raw = bufferevent_socket_new(w->base, -1, 0);
	ck_assert_ptr_nonnull(w->raw);
	/* Without a socket, let the test play the network. */
	evbuffer_unfreeze(bufferevent_get_input(w->raw), 0);
	evbuffer_unfreeze(bufferevent_get_output(w->raw), 1);
	w->ctx = tls_ctx_new_uplink(&sc, err, sizeof(err));
	ck_assert_msg(w->ctx != NULL, "tls_ctx_new_uplink: %s", err);
	w->conn = tls_conn_new_uplink(w->ctx, w->raw);
	ck_assert_ptr_nonnull(w->conn);
}

static void
wire_setup(struct wire *w)
{
	wire_setup_min(w, TLS_VERSION_1_2);
}

static void
wire_teardown(struct wire *w)
{
	tls_conn_free(w->conn);
	tls_ctx_free(w->ctx);
	bufferevent_free(w->raw);
	event_base_free(w->base);
	tls_cleanup();
}

/* Copy out what the connection wrote. */
static size_t
wire_output(struct wire *w, unsigned char *buf, size_t len)
{
	struct evbuffer	*out = bufferevent_get_output(w->raw);
	int		 n;

	n = evbuffer_remove(out, buf, len);
	ck_assert_int_gt(n, 0);
	return (size_t)n;
}

START_TEST(test_missing_ca_file)
{
	struct service_config	 sc;
	struct tls_ctx		*ctx;
	char			 err[256];

	ck_assert_int_eq(tls_init(), 0);
	make_service(&sc);
	sc.verify = 1;
	snprintf(sc.ca_file, sizeof(sc.ca_file), "/nonexistent/ca.pem");
	ctx = tls_ctx_new_uplink(&sc, err, sizeof(err));
	ck_assert_ptr_null(ctx);
	ck_assert_ptr_nonnull(strstr(err, "ca_file /nonexistent/ca.pem"));
	ck_assert_ptr_nonnull(strstr(err, "No such file"));
	tls_cleanup();
}
END_TEST

START_TEST(test_ca_file_without_certificates)
{
	struct service_config	 sc;
	struct tls_ctx		*ctx;
	char			 err[256];

	ck_assert_int_eq(tls_init(), 0);
	make_service(&sc);
	sc.verify = 1;
	write_temp(sc.ca_file, sizeof(sc.ca_file), "not a certificate\n");
	ctx = tls_ctx_new_uplink(&sc, err, sizeof(err));
	ck_assert_ptr_null(ctx);
	ck_assert_ptr_nonnull(strstr(err, "ca_file"));
	unlink(sc.ca_file);
	tls_cleanup();
}
END_TEST

START_TEST(test_system_ca_bundle_loads)
{
	struct service_config	 sc;
	struct tls_ctx		*ctx;
	char			 err[256] = "";

	if (access(CONFIG_DEFAULT_CA_FILE, R_OK) != 0)
		return;		/* no ca-certificates on this machine */
	ck_assert_int_eq(tls_init(), 0);
	make_service(&sc);
	sc.verify = 1;
	snprintf(sc.ca_file, sizeof(sc.ca_file), "%s", CONFIG_DEFAULT_CA_FILE);
	ctx = tls_ctx_new_uplink(&sc, err, sizeof(err));
	ck_assert_msg(ctx != NULL, "%s", err);
	tls_ctx_free(ctx);
	tls_cleanup();
}
END_TEST

START_TEST(test_bad_client_cert)
{
	struct service_config	 sc;
	struct tls_ctx		*ctx;
	char			 err[256];

	ck_assert_int_eq(tls_init(), 0);
	make_service(&sc);
	write_temp(sc.client_cert, sizeof(sc.client_cert), "garbage\n");
	write_temp(sc.client_key, sizeof(sc.client_key), "garbage\n");
	ctx = tls_ctx_new_uplink(&sc, err, sizeof(err));
	ck_assert_ptr_null(ctx);
	ck_assert_ptr_nonnull(strstr(err, "client_cert"));
	unlink(sc.client_cert);
	unlink(sc.client_key);
	tls_cleanup();
}
END_TEST

/* Whether needle occurs in the first len bytes of hay. */
static int
contains(const unsigned char *hay, size_t len, const char *needle)
{
	size_t	n = strlen(needle), i;

	for (i = 0; i + n <= len; i++)
		if (memcmp(hay + i, needle, n) == 0)
			return 1;
	return 0;
}

/* Whether a cipher suite id is one mailtlsd means to offer. */
static int
suite_allowed(unsigned id)
{
	static const unsigned	allowed[] = {
		0xc02b, 0xc02c, 0xc02f, 0xc030,	/* ECDHE AES-GCM */
		0xcca8, 0xcca9,			/* ECDHE ChaCha20-Poly1305 */
		0x00ff,				/* renegotiation SCSV */
#if defined(MBEDTLS_SSL_PROTO_TLS1_3)
		0x1301, 0x1302, 0x1303,		/* TLS 1.3 AEAD suites */
#endif
	};
	size_t			i;

	for (i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
		if (allowed[i] == id)
			return 1;
	return 0;
}

/* What the tests check in a ClientHello. */
struct hello {
	int		 n_suites;
	int		 n_tls13_suites;	/* 0x13xx */
	int		 has_versions;		/* supported_versions sent */
	unsigned	 versions[8];		/* its list */
	int		 n_versions;
};

static unsigned
get16(const unsigned char *p)
{
	return ((unsigned)p[0] << 8) | p[1];
}

/* Start the handshake and parse the ClientHello the connection sent. */
static void
client_hello(struct wire *w, struct hello *h)
{
	unsigned char	 buf[4096];
	size_t		 len, pos, end, suites_len, i;

	memset(h, 0, sizeof(*h));
	ck_assert_int_eq(tls_conn_handshake_uplink(w->conn), 0);
	len = wire_output(w, buf, sizeof(buf));
	/*
	 * Record: handshake; message: ClientHello.  Its legacy_version is
	 * TLS 1.2 (0x0303) with TLS 1.3 too, which supported_versions adds.
	 */
	ck_assert_uint_gt(len, 5 + 4 + 2 + 32 + 1);
	ck_assert_uint_eq(buf[0], 22);
	ck_assert_uint_eq(buf[5], 1);
	ck_assert_uint_eq(buf[9], 3);
	ck_assert_uint_eq(buf[10], 3);
	/* SNI carries server_name. */
	ck_assert(contains(buf, len, "mail.test"));
	/* Every offered suite is ECDHE with an AEAD cipher (or TLS 1.3). */
	pos = 5 + 4 + 2 + 32;
	pos += 1 + buf[pos];				/* session id */
	suites_len = get16(buf + pos);
	pos += 2;
	ck_assert_uint_gt(suites_len, 0);
	ck_assert_uint_le(pos + suites_len, len);
	for (i = 0; i < suites_len; i += 2) {
		unsigned id = get16(buf + pos + i);

		ck_assert_msg(suite_allowed(id), "suite 0x%04x offered", id);
		if (id != 0x00ff)
			h->n_suites++;
		if ((id >> 8) == 0x13)
			h->n_tls13_suites++;
	}
	pos += suites_len;
	pos += 1 + buf[pos];				/* compression */
	ck_assert_uint_le(pos + 2, len);
	end = pos + 2 + get16(buf + pos);
	ck_assert_uint_le(end, len);
	for (pos += 2; pos + 4 <= end; pos += 4 + get16(buf + pos + 2)) {
		unsigned	type = get16(buf + pos);
		size_t		elen = get16(buf + pos + 2), j;

		if (type != 43)				/* supported_versions */
			continue;
		h->has_versions = 1;
		ck_assert_uint_ge(elen, 1);
		ck_assert_uint_eq(buf[pos + 4], elen - 1);
		for (j = 0; j + 1 < elen - 1 && h->n_versions < 8; j += 2)
			h->versions[h->n_versions++] = get16(buf + pos + 5 + j);
	}
}

START_TEST(test_client_hello)
{
	struct wire	w;
	struct hello	h;

	wire_setup(&w);
	client_hello(&w, &h);
	ck_assert_int_gt(h.n_suites, 0);
#if defined(MBEDTLS_SSL_PROTO_TLS1_3)
	/* TLS 1.3 first, TLS 1.2 as well: min_tls = 1.2 is the default. */
	ck_assert_int_eq(h.n_tls13_suites, 3);
	ck_assert_int_gt(h.n_suites, h.n_tls13_suites);
	ck_assert(h.has_versions);
	ck_assert_int_eq(h.n_versions, 2);
	ck_assert_uint_eq(h.versions[0], 0x0304);
	ck_assert_uint_eq(h.versions[1], 0x0303);
#else
	/* mbedTLS 2.28: TLS 1.2 only. */
	ck_assert_int_eq(h.n_tls13_suites, 0);
	ck_assert(!h.has_versions);
#endif
	wire_teardown(&w);
}
END_TEST

#if defined(MBEDTLS_SSL_PROTO_TLS1_3)
START_TEST(test_client_hello_min_tls13)
{
	struct wire	w;
	struct hello	h;

	/* min_tls = 1.3: only TLS 1.3 and its suites are offered. */
	wire_setup_min(&w, TLS_VERSION_1_3);
	client_hello(&w, &h);
	ck_assert(h.has_versions);
	ck_assert_int_eq(h.n_versions, 1);
	ck_assert_uint_eq(h.versions[0], 0x0304);
	ck_assert_int_eq(h.n_tls13_suites, 3);
	ck_assert_int_eq(h.n_suites, 3);
	wire_teardown(&w);
}
END_TEST

START_TEST(test_protocol_version_alert_min_tls13)
{
	/* A TLS 1.2-only server refuses a TLS 1.3-only ClientHello. */
	static const unsigned char alert[] = { 21, 3, 3, 0, 2, 2, 70 };
	struct wire	 w;

	wire_setup_min(&w, TLS_VERSION_1_3);
	ck_assert_int_eq(tls_conn_handshake_uplink(w.conn), 0);
	evbuffer_add(bufferevent_get_input(w.raw), alert, sizeof(alert));
	ck_assert_int_eq(tls_conn_handshake_uplink(w.conn), -1);
	ck_assert_ptr_nonnull(strstr(tls_conn_error(w.conn),
	    "does not support TLS 1.3 or newer"));
	wire_teardown(&w);
}
END_TEST
#endif

/* Read a whole small file into a new NUL-terminated string. */
static char *
read_text(const char *path)
{
	FILE	*f = fopen(path, "r");
	char	*buf = calloc(1, 8192);
	size_t	 n;

	ck_assert_ptr_nonnull(f);
	ck_assert_ptr_nonnull(buf);
	n = fread(buf, 1, 8191, f);
	ck_assert_int_gt((int)n, 0);
	fclose(f);
	return buf;
}

/*
 * A local_cert chain must fit in the one record mbedTLS sends it in: the
 * generated certificate does, the same certificate repeated until the
 * chain is larger than MBEDTLS_SSL_OUT_CONTENT_LEN does not, and the
 * error says so.
 */
START_TEST(test_chain_size)
{
	struct localcert_names	 names;
	struct service_config	 sc;
	struct tls_ctx		*ctx;
	char			 dir[] = "/tmp/mailtlsd-check-XXXXXX";
	char			 cert[512], key[512], big[512], err[512];
	char			*pem;
	FILE			*f;
	int			 i, copies;

	ck_assert_int_eq(tls_init(), 0);
	ck_assert_ptr_nonnull(mkdtemp(dir));
	localcert_names_init(&names);
	ck_assert_int_eq(localcert_names_add(&names, "localhost"), 0);
	ck_assert_msg(localcert_generate(dir, &names, time(NULL), (uid_t)-1,
	    (gid_t)-1, err, sizeof(err)) == 0, "generate: %s", err);
	snprintf(cert, sizeof(cert), "%s/%s", dir, LOCALCERT_CERT_FILE);
	snprintf(key, sizeof(key), "%s/%s", dir, LOCALCERT_KEY_FILE);
	snprintf(big, sizeof(big), "%s/big.crt", dir);

	make_service(&sc);
	snprintf(sc.local_cert, sizeof(sc.local_cert), "%s", cert);
	snprintf(sc.local_key, sizeof(sc.local_key), "%s", key);
	ctx = tls_ctx_new_local(&sc, NULL, err, sizeof(err));
	ck_assert_msg(ctx != NULL, "one certificate: %s", err);
	tls_ctx_free(ctx);

	/* An ECDSA certificate takes less than 1 KiB: this is too many. */
	pem = read_text(cert);
	copies = MBEDTLS_SSL_OUT_CONTENT_LEN / 300 + 2;
	ck_assert_ptr_nonnull(f = fopen(big, "w"));
	for (i = 0; i < copies; i++)
		fputs(pem, f);
	fclose(f);
	free(pem);
	snprintf(sc.local_cert, sizeof(sc.local_cert), "%s", big);
	ctx = tls_ctx_new_local(&sc, NULL, err, sizeof(err));
	ck_assert_ptr_null(ctx);
	ck_assert_msg(strstr(err, "local_cert ") == err &&
	    strstr(err, "the certificate chain takes") != NULL &&
	    strstr(err, "bytes of the one record") != NULL, "%s", err);

	/* The same check for client_cert. */
	snprintf(sc.client_cert, sizeof(sc.client_cert), "%s", big);
	snprintf(sc.client_key, sizeof(sc.client_key), "%s", key);
	ctx = tls_ctx_new_uplink(&sc, err, sizeof(err));
	ck_assert_ptr_null(ctx);
	ck_assert_msg(strstr(err, "client_cert ") == err &&
	    strstr(err, "the certificate chain takes") != NULL, "%s", err);

	unlink(cert);
	unlink(key);
	unlink(big);
	rmdir(dir);
	tls_cleanup();
}
END_TEST

/* mailtlsd -V's lines name the library's version and the AES-GCM code. */
START_TEST(test_library_describe)
{
	char	buf[512], want[64];

	tls_library_describe(buf, sizeof(buf));
	snprintf(want, sizeof(want), "TLS library: mbedTLS %s, ",
	    tls_library_version());
	ck_assert_msg(strstr(buf, want) == buf, "%s", buf);
	ck_assert_ptr_nonnull(strstr(buf, "\nAES-GCM: mbedTLS"));
	ck_assert_int_eq(buf[strlen(buf) - 1], '\n');
}
END_TEST

/* The table of known mbedTLS releases behind the start-up warning. */
START_TEST(test_library_outdated)
{
	char	buf[300];

	/* Debian 12: older than the 2.28 branch's last release, and EOL. */
	ck_assert_int_eq(tls_library_outdated(0x021C0300, buf,
	    sizeof(buf)), 1);
	ck_assert_ptr_nonnull(strstr(buf, "mbedTLS 2.28.3 is older than "
	    "2.28.10"));
	ck_assert_ptr_nonnull(strstr(buf, "end of life"));
	/* The last 2.28 is still past its end of life. */
	ck_assert_int_eq(tls_library_outdated(0x021C0A00, buf,
	    sizeof(buf)), 1);
	ck_assert_ptr_nonnull(strstr(buf, "end of life"));
	/* 3.6: older than the newest known release warns, others do not. */
	ck_assert_int_eq(tls_library_outdated(0x03060000, buf,
	    sizeof(buf)), 1);
	ck_assert_ptr_nonnull(strstr(buf, "mbedTLS 3.6.0 is older than 3.6."));
	ck_assert_int_eq(tls_library_outdated(0x03060700, buf,
	    sizeof(buf)), 0);
	ck_assert_int_eq(tls_library_outdated(0x03066300, buf,
	    sizeof(buf)), 0);
	/* A branch between the two: unmaintained. */
	ck_assert_int_eq(tls_library_outdated(0x03050200, buf,
	    sizeof(buf)), 1);
	ck_assert_ptr_nonnull(strstr(buf, "no longer maintained"));
	/* The library this process runs with gives an answer either way. */
	(void)tls_library_outdated(0, buf, sizeof(buf));
}
END_TEST

START_TEST(test_plaintext_server)
{
	struct wire	 w;

	wire_setup(&w);
	ck_assert_int_eq(tls_conn_handshake_uplink(w.conn), 0);
	evbuffer_add_printf(bufferevent_get_input(w.raw),
	    "* OK IMAP4rev1 ready\r\n");
	ck_assert_int_eq(tls_conn_handshake_uplink(w.conn), -1);
	ck_assert_ptr_nonnull(strstr(tls_conn_error(w.conn),
	    "did not answer with TLS"));
	wire_teardown(&w);
}
END_TEST

START_TEST(test_server_closes_during_handshake)
{
	struct wire	 w;

	wire_setup(&w);
	ck_assert_int_eq(tls_conn_handshake_uplink(w.conn), 0);
	ck_assert_int_eq(tls_conn_handshake_uplink(w.conn), 0);
	tls_conn_set_eof(w.conn);
	ck_assert_int_eq(tls_conn_handshake_uplink(w.conn), -1);
	ck_assert_ptr_nonnull(strstr(tls_conn_error(w.conn),
	    "closed the connection"));
	wire_teardown(&w);
}
END_TEST

START_TEST(test_protocol_version_alert)
{
	/* A fatal protocol_version alert, as a TLS 1.0-only server sends. */
	static const unsigned char alert[] = { 21, 3, 1, 0, 2, 2, 70 };
	struct wire	 w;

	wire_setup(&w);
	ck_assert_int_eq(tls_conn_handshake_uplink(w.conn), 0);
	evbuffer_add(bufferevent_get_input(w.raw), alert, sizeof(alert));
	ck_assert_int_eq(tls_conn_handshake_uplink(w.conn), -1);
	ck_assert_ptr_nonnull(strstr(tls_conn_error(w.conn),
	    "TLS 1.2 or newer"));
	wire_teardown(&w);
}
END_TEST

START_TEST(test_handshake_failure_alert)
{
	static const unsigned char alert[] = { 21, 3, 3, 0, 2, 2, 40 };
	struct wire	 w;

	wire_setup(&w);
	ck_assert_int_eq(tls_conn_handshake_uplink(w.conn), 0);
	evbuffer_add(bufferevent_get_input(w.raw), alert, sizeof(alert));
	ck_assert_int_eq(tls_conn_handshake_uplink(w.conn), -1);
	ck_assert_ptr_nonnull(strstr(tls_conn_error(w.conn), "cipher suite"));
	wire_teardown(&w);
}
END_TEST

Suite *
tls_suite(void)
{
	Suite	*s = suite_create("tls");
	TCase	*tc = tcase_create("tls");

	tcase_add_test(tc, test_missing_ca_file);
	tcase_add_test(tc, test_ca_file_without_certificates);
	tcase_add_test(tc, test_system_ca_bundle_loads);
	tcase_add_test(tc, test_bad_client_cert);
	tcase_add_test(tc, test_client_hello);
	tcase_add_test(tc, test_plaintext_server);
	tcase_add_test(tc, test_server_closes_during_handshake);
	tcase_add_test(tc, test_protocol_version_alert);
	tcase_add_test(tc, test_handshake_failure_alert);
#if defined(MBEDTLS_SSL_PROTO_TLS1_3)
	tcase_add_test(tc, test_client_hello_min_tls13);
	tcase_add_test(tc, test_protocol_version_alert_min_tls13);
#endif
	tcase_add_test(tc, test_library_outdated);
	tcase_add_test(tc, test_chain_size);
	tcase_add_test(tc, test_library_describe);
	suite_add_tcase(s, tc);
	return s;
}
