/*
 * ssl_mem.c - where the heap memory of one idle TLS session goes, measured
 * with mallinfo2() around the calls a session of mailtlsd makes.
 *
 *   ssl_mem CA_FILE SERVER_CHAIN SERVER_KEY
 *
 * A client context set up like mailtlsd's (TLS 1.3 where the library has
 * it, else 1.2; ECDHE with AEAD, verification against CA_FILE, host name
 * mail.test, TLS 1.3 tickets read) does a full handshake
 * with an mbedTLS server in the same process over memory pipes; the server
 * is then freed, so what is left is what the client side holds while the
 * session idles.  Two socket bufferevents (the client's and the server's
 * sockets in mailtlsd) are measured apart.  A second client then resumes
 * the session with a ticket.  One line per figure, "name bytes":
 *   record_buffers           the input and output record buffers
 *   after_setup              after mbedtls_ssl_setup() (buffers, handshake)
 *   after_full_handshake     what an idle session holds after a full one
 *   after_resumed_handshake  the same after a resumed handshake
 *   bufferevents_2           two socket bufferevents with empty buffers
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/version.h>
#include <mbedtls/ssl.h>
#if MBEDTLS_VERSION_NUMBER < 0x03000000
#include <mbedtls/ssl_internal.h>	/* MBEDTLS_SSL_IN_BUFFER_LEN */
#endif
#include <mbedtls/ssl_ticket.h>
#include <mbedtls/x509_crt.h>

#define PIPE_LEN	(64 * 1024)

struct pipe {
	unsigned char	buf[PIPE_LEN];
	size_t		len;
};

struct link {
	struct pipe	*in;
	struct pipe	*out;
};

static mbedtls_entropy_context	entropy;
static mbedtls_ctr_drbg_context	drbg;
static int			verified;	/* certificates checked */

static const int suites[] = {
#if MBEDTLS_VERSION_NUMBER >= 0x03000000 && defined(MBEDTLS_SSL_PROTO_TLS1_3)
	MBEDTLS_TLS1_3_AES_128_GCM_SHA256,
	MBEDTLS_TLS1_3_AES_256_GCM_SHA384,
	MBEDTLS_TLS1_3_CHACHA20_POLY1305_SHA256,
#endif
	MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	0
};

/* Counts certificates verified: none in a resumed handshake. */
static int
count_verify(void *arg, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
	(void)arg;
	(void)crt;
	(void)depth;
	(void)flags;
	verified++;
	return 0;
}

/* Bytes the allocator has handed out and not got back. */
static long
heap_in_use(void)
{
	struct mallinfo2	mi = mallinfo2();

	return (long)(mi.uordblks + mi.hblkhd);
}

static int
pipe_send(void *arg, const unsigned char *buf, size_t len)
{
	struct pipe	*p = ((struct link *)arg)->out;

	if (len > PIPE_LEN - p->len)
		len = PIPE_LEN - p->len;
	if (len == 0)
		return MBEDTLS_ERR_SSL_WANT_WRITE;
	memcpy(p->buf + p->len, buf, len);
	p->len += len;
	return (int)len;
}

static int
pipe_recv(void *arg, unsigned char *buf, size_t len)
{
	struct pipe	*p = ((struct link *)arg)->in;

	if (p->len == 0)
		return MBEDTLS_ERR_SSL_WANT_READ;
	if (len > p->len)
		len = p->len;
	memcpy(buf, p->buf, len);
	memmove(p->buf, p->buf + len, p->len - len);
	p->len -= len;
	return (int)len;
}

/* One handshake step; 1 when done, 0 to go on, -1 on failure. */
static int
step(mbedtls_ssl_context *ssl, const char *who)
{
	int	ret = mbedtls_ssl_handshake(ssl);

	if (ret == 0)
		return 1;
	if (ret == MBEDTLS_ERR_SSL_WANT_READ ||
	    ret == MBEDTLS_ERR_SSL_WANT_WRITE)
		return 0;
	fprintf(stderr, "ssl_mem: %s handshake failed: -0x%04x\n", who,
	    (unsigned)-ret);
	return -1;
}

static void
report(const char *name, long bytes)
{
	printf("%s %ld\n", name, bytes);
}

/* Two bufferevents over socket pairs, as a session has. */
static int
measure_bufferevents(void)
{
	struct event_base	*base;
	struct bufferevent	*bev[2];
	int			 fds[2][2], i;
	long			 before;

	if ((base = event_base_new()) == NULL)
		return -1;
	for (i = 0; i < 2; i++)
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds[i]) != 0)
			return -1;
	before = heap_in_use();
	for (i = 0; i < 2; i++) {
		bev[i] = bufferevent_socket_new(base, fds[i][0], 0);
		if (bev[i] == NULL)
			return -1;
		bufferevent_enable(bev[i], EV_READ);
	}
	report("bufferevents_2", heap_in_use() - before);
	for (i = 0; i < 2; i++) {
		bufferevent_free(bev[i]);
		close(fds[i][0]);
		close(fds[i][1]);
	}
	event_base_free(base);
	return 0;
}

/*
 * Read what the server sent after the handshake (TLS 1.3 tickets), as
 * mailtlsd does with its first read; 0 or -1.
 */
static int
read_tickets(mbedtls_ssl_context *cli)
{
	unsigned char	buf[64];
	int		ret, i;

	for (i = 0; i < 16; i++) {
		ret = mbedtls_ssl_read(cli, buf, sizeof(buf));
		if (ret == MBEDTLS_ERR_SSL_WANT_READ)
			return 0;
#if defined(MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET)
		if (ret == MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET) {
			continue;
		}
#endif
		fprintf(stderr, "ssl_mem: client read after the handshake: "
		    "-0x%04x\n", (unsigned)-ret);
		return -1;
	}
	return 0;
}

/*
 * One client session: set it up (its heap use then in *setup), handshake
 * with a fresh server, free the server (the client's heap use then in
 * *idle).  With resume, offer that session first.
 */
static int
client_session(mbedtls_ssl_config *cconf, mbedtls_ssl_config *sconf,
    mbedtls_ssl_context *cli, const mbedtls_ssl_session *resume, long *setup,
    long *idle)
{
	static struct pipe	 c2s, s2c;
	struct link		 cl = { &s2c, &c2s }, sl = { &c2s, &s2c };
	mbedtls_ssl_context	 srv;
	unsigned char		 buf[64];
	long			 m0;
	int			 cdone = 0, sdone = 0, rounds = 0, rc = -1;

	c2s.len = s2c.len = 0;
	mbedtls_ssl_init(&srv);
	m0 = heap_in_use();
	mbedtls_ssl_init(cli);
	if (mbedtls_ssl_setup(cli, cconf) != 0 ||
	    mbedtls_ssl_set_hostname(cli, "mail.test") != 0 ||
	    (resume != NULL && mbedtls_ssl_set_session(cli, resume) != 0))
		goto out;
	mbedtls_ssl_set_bio(cli, &cl, pipe_send, pipe_recv, NULL);
	*setup = heap_in_use() - m0;
	/* The server's allocations come and go before *idle is taken. */
	if (mbedtls_ssl_setup(&srv, sconf) != 0)
		goto out;
	mbedtls_ssl_set_bio(&srv, &sl, pipe_send, pipe_recv, NULL);
	while (!(cdone && sdone) && rounds++ < 1000) {
		if (!cdone && (cdone = step(cli, "client")) < 0)
			goto out;
		if (!sdone && (sdone = step(&srv, "server")) < 0)
			goto out;
	}
	if (!(cdone && sdone))
		goto out;
	/* An mbedTLS 3.6 server sends its TLS 1.3 tickets on its next call. */
	(void)mbedtls_ssl_read(&srv, buf, sizeof(buf));
	if (read_tickets(cli) != 0)
		goto out;
	mbedtls_ssl_free(&srv);
	mbedtls_ssl_init(&srv);
	*idle = heap_in_use() - m0;
	rc = 0;
out:
	mbedtls_ssl_free(&srv);
	return rc;
}

int
main(int argc, char *argv[])
{
	mbedtls_ssl_config		cconf, sconf;
	mbedtls_ssl_context		cli[3];
	mbedtls_ssl_session		saved;
	mbedtls_ssl_ticket_context	tickets;
	mbedtls_x509_crt		ca, chain;
	mbedtls_pk_context		key;
	long				setup, idle;
	int				i, rc = 1;

	if (argc != 4) {
		fprintf(stderr, "usage: ssl_mem CA_FILE SERVER_CHAIN "
		    "SERVER_KEY\n");
		return 2;
	}
	mbedtls_entropy_init(&entropy);
	mbedtls_ctr_drbg_init(&drbg);
	mbedtls_ssl_config_init(&cconf);
	mbedtls_ssl_config_init(&sconf);
	mbedtls_ssl_ticket_init(&tickets);
	mbedtls_ssl_session_init(&saved);
	mbedtls_x509_crt_init(&ca);
	mbedtls_x509_crt_init(&chain);
	mbedtls_pk_init(&key);
	for (i = 0; i < 3; i++)
		mbedtls_ssl_init(&cli[i]);
	if (mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy,
	    NULL, 0) != 0 ||
	    mbedtls_x509_crt_parse_file(&ca, argv[1]) != 0 ||
	    mbedtls_x509_crt_parse_file(&chain, argv[2]) != 0 ||
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
	    mbedtls_pk_parse_keyfile(&key, argv[3], NULL,
	    mbedtls_ctr_drbg_random, &drbg) != 0 ||
#else
	    mbedtls_pk_parse_keyfile(&key, argv[3], NULL) != 0 ||
#endif
	    mbedtls_ssl_config_defaults(&cconf, MBEDTLS_SSL_IS_CLIENT,
	    MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT) != 0 ||
	    mbedtls_ssl_config_defaults(&sconf, MBEDTLS_SSL_IS_SERVER,
	    MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT) != 0 ||
	    mbedtls_ssl_ticket_setup(&tickets, mbedtls_ctr_drbg_random, &drbg,
	    MBEDTLS_CIPHER_AES_256_GCM, 3600) != 0) {
		fprintf(stderr, "ssl_mem: cannot load the PKI or set up\n");
		goto out;
	}
	mbedtls_ssl_conf_rng(&cconf, mbedtls_ctr_drbg_random, &drbg);
	mbedtls_ssl_conf_rng(&sconf, mbedtls_ctr_drbg_random, &drbg);
	mbedtls_ssl_conf_ciphersuites(&cconf, suites);
	mbedtls_ssl_conf_ciphersuites(&sconf, suites);
	mbedtls_ssl_conf_ca_chain(&cconf, &ca, NULL);
	mbedtls_ssl_conf_authmode(&cconf, MBEDTLS_SSL_VERIFY_REQUIRED);
	mbedtls_ssl_conf_verify(&cconf, count_verify, NULL);
	mbedtls_ssl_conf_session_tickets_cb(&sconf, mbedtls_ssl_ticket_write,
	    mbedtls_ssl_ticket_parse, &tickets);
	mbedtls_ssl_conf_session_tickets(&cconf,
	    MBEDTLS_SSL_SESSION_TICKETS_ENABLED);
#if MBEDTLS_VERSION_NUMBER >= 0x03000000 && defined(MBEDTLS_SSL_PROTO_TLS1_3)
	mbedtls_ssl_conf_tls13_key_exchange_modes(&cconf,
	    MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_EPHEMERAL_ALL);
#endif
#if defined(MBEDTLS_SSL_TLS1_3_SIGNAL_NEW_SESSION_TICKETS_ENABLED)
	mbedtls_ssl_conf_tls13_enable_signal_new_session_tickets(&cconf,
	    MBEDTLS_SSL_TLS1_3_SIGNAL_NEW_SESSION_TICKETS_ENABLED);
#endif
	if (mbedtls_ssl_conf_own_cert(&sconf, &chain, &key) != 0)
		goto out;

	printf("sizeof_mbedtls_ssl_context %zu\n", sizeof(cli[0]));
#ifdef MBEDTLS_SSL_IN_BUFFER_LEN
	printf("record_buffers %d\n",
	    (int)(MBEDTLS_SSL_IN_BUFFER_LEN + MBEDTLS_SSL_OUT_BUFFER_LEN));
#else
	printf("record_buffers %d\n",
	    (int)(MBEDTLS_SSL_IN_CONTENT_LEN + MBEDTLS_SSL_OUT_CONTENT_LEN));
#endif
	/* The first session pays one-time costs (cached curve tables). */
	for (i = 0; i < 2; i++)
		if (client_session(&cconf, &sconf, &cli[i], NULL, &setup,
		    &idle) != 0)
			goto out;
	report("after_setup", setup);
	report("after_full_handshake", idle);
	printf("suite %s\n", mbedtls_ssl_get_ciphersuite(&cli[1]));
	printf("version %s\n", mbedtls_ssl_get_version(&cli[1]));
	verified = 0;
	if (mbedtls_ssl_get_session(&cli[1], &saved) != 0 ||
	    client_session(&cconf, &sconf, &cli[2], &saved, &setup,
	    &idle) != 0)
		goto out;
	report("after_resumed_handshake", idle);
	printf("resumed %d\n", verified == 0);
	if (measure_bufferevents() != 0)
		goto out;
	rc = 0;
out:
	for (i = 0; i < 3; i++)
		mbedtls_ssl_free(&cli[i]);
	mbedtls_ssl_session_free(&saved);
	mbedtls_ssl_ticket_free(&tickets);
	mbedtls_ssl_config_free(&cconf);
	mbedtls_ssl_config_free(&sconf);
	mbedtls_x509_crt_free(&ca);
	mbedtls_x509_crt_free(&chain);
	mbedtls_pk_free(&key);
	mbedtls_ctr_drbg_free(&drbg);
	mbedtls_entropy_free(&entropy);
	return rc;
}
