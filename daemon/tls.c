/*
 * tls.c - mbedTLS client connections carried by socket bufferevents.
 *
 * The BIO callbacks move TLS records between mbedTLS and the raw
 * bufferevent's evbuffers: reading returns WANT_READ when the input buffer
 * is empty, writing appends to the output buffer (whose size the session
 * bounds).  Verification is strict: chain and host name always, a
 * certificate profile without SHA-1 or small RSA keys, TLS 1.2 or newer,
 * ECDHE with AEAD ciphers only, no renegotiation, and the pins on top.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>
#include <mbedtls/ssl.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crt.h>

#include "config.h"
#include "tls.h"

#define TLS_ERROR_MAX	384


#define SPKI_DER_MAX	2048	/* a 16384-bit RSA key fits */

struct tls_ctx {
	mbedtls_ssl_config	conf;
	mbedtls_ssl_session	resume;		/* last verified session */
	int			have_resume;
	mbedtls_x509_crt	ca_chain;
	mbedtls_x509_crt	own_cert;
	mbedtls_pk_context	own_key;
	char			server_name[CONFIG_HOST_MAX];
	uint8_t			pins[CONFIG_MAX_PINS][32];
	int			n_pins;
	int			verify;
};

struct tls_conn {
	mbedtls_ssl_context	 ssl;
	struct tls_ctx		*ctx;
	struct bufferevent	*raw;
	int			 raw_eof;
	int			 pin_matched;
	int			 close_notify_sent;
	int			 saw_plaintext;
	int			 resumed;
	int			 verify_called;
	char			 error[TLS_ERROR_MAX];
};

static mbedtls_entropy_context	tls_entropy;
static mbedtls_ctr_drbg_context	tls_drbg;
static int			tls_ready;

/* Strong signature hashes only: no MD5, no SHA-1, no SHA-224. */
static const mbedtls_x509_crt_profile tls_cert_profile = {
	MBEDTLS_X509_ID_FLAG(MBEDTLS_MD_SHA256) |
	    MBEDTLS_X509_ID_FLAG(MBEDTLS_MD_SHA384) |
	    MBEDTLS_X509_ID_FLAG(MBEDTLS_MD_SHA512),
	MBEDTLS_X509_ID_FLAG(MBEDTLS_PK_RSA) |
	    MBEDTLS_X509_ID_FLAG(MBEDTLS_PK_ECDSA) |
	    MBEDTLS_X509_ID_FLAG(MBEDTLS_PK_ECKEY),
	MBEDTLS_X509_ID_FLAG(MBEDTLS_ECP_DP_SECP256R1) |
	    MBEDTLS_X509_ID_FLAG(MBEDTLS_ECP_DP_SECP384R1) |
	    MBEDTLS_X509_ID_FLAG(MBEDTLS_ECP_DP_SECP521R1),
	2048,
};

/* Forward secrecy and AEAD only, the fastest first. */
static const int tls_ciphersuites[] = {
	MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	0
};

static const mbedtls_ecp_group_id tls_curves[] = {
	MBEDTLS_ECP_DP_CURVE25519,
	MBEDTLS_ECP_DP_SECP256R1,
	MBEDTLS_ECP_DP_SECP384R1,
	MBEDTLS_ECP_DP_NONE
};

static const int tls_sig_hashes[] = {
	MBEDTLS_MD_SHA256,
	MBEDTLS_MD_SHA384,
	MBEDTLS_MD_SHA512,
	MBEDTLS_MD_NONE
};

/* Seed the one random generator of the process. */
int
tls_init(void)
{
	static const char	personal[] = "mailtlsd";

	if (tls_ready)
		return 0;
	mbedtls_entropy_init(&tls_entropy);
	mbedtls_ctr_drbg_init(&tls_drbg);
	if (mbedtls_ctr_drbg_seed(&tls_drbg, mbedtls_entropy_func,
	    &tls_entropy, (const unsigned char *)personal,
	    sizeof(personal) - 1) != 0) {
		tls_cleanup();
		return -1;
	}
	tls_ready = 1;
	return 0;
}

/* Free the random generator. */
void
tls_cleanup(void)
{
	mbedtls_ctr_drbg_free(&tls_drbg);
	mbedtls_entropy_free(&tls_entropy);
	tls_ready = 0;
}

/* Reseed after fork() so parent and child never share a random stream. */
int
tls_reseed(void)
{
	static const char	label[] = "mailtlsd-fork";

	return mbedtls_ctr_drbg_reseed(&tls_drbg, (const unsigned char *)label,
	    sizeof(label) - 1) == 0 ? 0 : -1;
}

/* The version string of the linked library. */
const char *
tls_library_version(void)
{
	static char	version[32];

	mbedtls_version_get_string(version);
	return version;
}

/* Format an mbedTLS error code as words. */
static void
tls_strerror(int ret, char *buf, size_t len)
{
	char	text[160];

	mbedtls_strerror(ret, text, sizeof(text));
	snprintf(buf, len, "%s (-0x%04x)", text, (unsigned)-ret);
}

/* SHA-256 over the DER SubjectPublicKeyInfo of a certificate. */
static int
tls_spki_sha256(const mbedtls_x509_crt *crt, uint8_t out[32])
{
	unsigned char	der[SPKI_DER_MAX];
	int		len;

	/* mbedtls_pk_write_pubkey_der writes at the end of the buffer. */
	len = mbedtls_pk_write_pubkey_der((mbedtls_pk_context *)&crt->pk,
	    der, sizeof(der));
	if (len <= 0)
		return -1;
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
	return mbedtls_sha256(der + sizeof(der) - len, len, out, 0) == 0 ?
	    0 : -1;
#else
	return mbedtls_sha256_ret(der + sizeof(der) - len, len, out, 0) == 0 ?
	    0 : -1;
#endif
}

/* Whether the key of crt matches one of the configured pins. */
static int
tls_pin_matches(const struct tls_ctx *ctx, const mbedtls_x509_crt *crt)
{
	uint8_t	digest[32];
	int	i;

	if (tls_spki_sha256(crt, digest) != 0)
		return 0;
	for (i = 0; i < ctx->n_pins; i++)
		if (memcmp(digest, ctx->pins[i], 32) == 0)
			return 1;
	return 0;
}

/* Called for each certificate of the verified chain, root included. */
static int
tls_verify_cb(void *arg, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
	struct tls_conn	*conn = arg;

	(void)depth;
	(void)flags;
	conn->verify_called = 1;
	if (conn->ctx->n_pins > 0 && tls_pin_matches(conn->ctx, crt))
		conn->pin_matched = 1;
	return 0;
}

/* Load the trust anchors from a bundle file or a hashed directory. */
static int
tls_load_ca(struct tls_ctx *ctx, const char *path, char *err, size_t errlen)
{
	struct stat	st;
	int		ret;

	if (stat(path, &st) != 0) {
		snprintf(err, errlen, "ca_file %s: %s", path, strerror(errno));
		return -1;
	}
	if (S_ISDIR(st.st_mode))
		ret = mbedtls_x509_crt_parse_path(&ctx->ca_chain, path);
	else
		ret = mbedtls_x509_crt_parse_file(&ctx->ca_chain, path);
	if (ret < 0) {
		char	reason[200];

		tls_strerror(ret, reason, sizeof(reason));
		snprintf(err, errlen, "ca_file %s: %s", path, reason);
		return -1;
	}
	/* ret > 0 counts certificates that failed to parse: keep the rest. */
	if (ctx->ca_chain.version == 0) {
		snprintf(err, errlen, "ca_file %s: no usable certificate", path);
		return -1;
	}
	return 0;
}

/* Load the certificate and key presented to servers that ask for one. */
static int
tls_load_client_cert(struct tls_ctx *ctx, const struct service_config *sc,
    char *err, size_t errlen)
{
	char	reason[200];
	int	ret;

	ret = mbedtls_x509_crt_parse_file(&ctx->own_cert, sc->client_cert);
	if (ret != 0) {
		tls_strerror(ret < 0 ? ret : MBEDTLS_ERR_X509_INVALID_FORMAT,
		    reason, sizeof(reason));
		snprintf(err, errlen, "client_cert %s: %s", sc->client_cert,
		    reason);
		return -1;
	}
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
	ret = mbedtls_pk_parse_keyfile(&ctx->own_key, sc->client_key, NULL,
	    mbedtls_ctr_drbg_random, &tls_drbg);
#else
	ret = mbedtls_pk_parse_keyfile(&ctx->own_key, sc->client_key, NULL);
#endif
	if (ret != 0) {
		tls_strerror(ret, reason, sizeof(reason));
		snprintf(err, errlen, "client_key %s: %s", sc->client_key,
		    reason);
		return -1;
	}
	ret = mbedtls_ssl_conf_own_cert(&ctx->conf, &ctx->own_cert,
	    &ctx->own_key);
	if (ret != 0) {
		tls_strerror(ret, reason, sizeof(reason));
		snprintf(err, errlen, "client_cert %s: %s", sc->client_cert,
		    reason);
		return -1;
	}
	return 0;
}

/* Apply the protocol floor and the algorithm choices. */
static void
tls_conf_algorithms(struct tls_ctx *ctx, const struct service_config *sc)
{
	mbedtls_ssl_config	*conf = &ctx->conf;

#if MBEDTLS_VERSION_NUMBER >= 0x03000000
	mbedtls_ssl_conf_min_tls_version(conf,
	    sc->min_tls == TLS_VERSION_1_3 ? MBEDTLS_SSL_VERSION_TLS1_3 :
	    MBEDTLS_SSL_VERSION_TLS1_2);
	mbedtls_ssl_conf_groups(conf, (const uint16_t[]){
	    MBEDTLS_SSL_IANA_TLS_GROUP_X25519,
	    MBEDTLS_SSL_IANA_TLS_GROUP_SECP256R1,
	    MBEDTLS_SSL_IANA_TLS_GROUP_SECP384R1,
	    MBEDTLS_SSL_IANA_TLS_GROUP_NONE });
#else
	(void)sc;
	/* Debian 12's 2.28 would otherwise offer TLS 1.0 and 1.1. */
	mbedtls_ssl_conf_min_version(conf, MBEDTLS_SSL_MAJOR_VERSION_3,
	    MBEDTLS_SSL_MINOR_VERSION_3);
	mbedtls_ssl_conf_max_version(conf, MBEDTLS_SSL_MAJOR_VERSION_3,
	    MBEDTLS_SSL_MINOR_VERSION_3);
	mbedtls_ssl_conf_curves(conf, tls_curves);
	mbedtls_ssl_conf_sig_hashes(conf, tls_sig_hashes);
#endif
	mbedtls_ssl_conf_ciphersuites(conf, tls_ciphersuites);
	mbedtls_ssl_conf_cert_profile(conf, &tls_cert_profile);
#if defined(MBEDTLS_SSL_RENEGOTIATION)
	mbedtls_ssl_conf_renegotiation(conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
#endif
}

/* Build the shared TLS settings of one service. */
struct tls_ctx *
tls_ctx_new(const struct service_config *sc, char *err, size_t errlen)
{
	struct tls_ctx	*ctx;

	if ((ctx = calloc(1, sizeof(*ctx))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	mbedtls_ssl_config_init(&ctx->conf);
	mbedtls_ssl_session_init(&ctx->resume);
	mbedtls_x509_crt_init(&ctx->ca_chain);
	mbedtls_x509_crt_init(&ctx->own_cert);
	mbedtls_pk_init(&ctx->own_key);
	snprintf(ctx->server_name, sizeof(ctx->server_name), "%s",
	    sc->server_name);
	memcpy(ctx->pins, sc->pins, sizeof(ctx->pins));
	ctx->n_pins = sc->n_pins;
	ctx->verify = sc->verify;

	if (mbedtls_ssl_config_defaults(&ctx->conf, MBEDTLS_SSL_IS_CLIENT,
	    MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT) != 0) {
		snprintf(err, errlen, "cannot set TLS defaults");
		goto err;
	}
	mbedtls_ssl_conf_rng(&ctx->conf, mbedtls_ctr_drbg_random, &tls_drbg);
	tls_conf_algorithms(ctx, sc);
	if (sc->verify) {
		if (tls_load_ca(ctx, sc->ca_file, err, errlen) != 0)
			goto err;
		mbedtls_ssl_conf_ca_chain(&ctx->conf, &ctx->ca_chain, NULL);
		mbedtls_ssl_conf_authmode(&ctx->conf,
		    MBEDTLS_SSL_VERIFY_REQUIRED);
	} else
		mbedtls_ssl_conf_authmode(&ctx->conf, MBEDTLS_SSL_VERIFY_NONE);
	if (sc->client_cert[0] != '\0' &&
	    tls_load_client_cert(ctx, sc, err, errlen) != 0)
		goto err;
	return ctx;
err:
	tls_ctx_free(ctx);
	return NULL;
}

/* Free a service's TLS settings; NULL is fine. */
void
tls_ctx_free(struct tls_ctx *ctx)
{
	if (ctx == NULL)
		return;
	mbedtls_ssl_config_free(&ctx->conf);
	mbedtls_ssl_session_free(&ctx->resume);
	mbedtls_x509_crt_free(&ctx->ca_chain);
	mbedtls_x509_crt_free(&ctx->own_cert);
	mbedtls_pk_free(&ctx->own_key);
	free(ctx);
}

/* BIO: append a record to the socket's output buffer. */
static int
tls_bio_send(void *arg, const unsigned char *buf, size_t len)
{
	struct tls_conn	*conn = arg;

	if (evbuffer_add(bufferevent_get_output(conn->raw), buf, len) != 0)
		return MBEDTLS_ERR_SSL_ALLOC_FAILED;
	return (int)len;
}

/* BIO: take record bytes from the socket's input buffer. */
static int
tls_bio_recv(void *arg, unsigned char *buf, size_t len)
{
	struct tls_conn	*conn = arg;
	int		 n;

	n = evbuffer_remove(bufferevent_get_input(conn->raw), buf, len);
	if (n > 0)
		return n;
	return conn->raw_eof ? 0 : MBEDTLS_ERR_SSL_WANT_READ;
}

/* A new connection to the service's server over raw. */
struct tls_conn *
tls_conn_new(struct tls_ctx *ctx, struct bufferevent *raw)
{
	struct tls_conn	*conn;

	if ((conn = calloc(1, sizeof(*conn))) == NULL)
		return NULL;
	conn->ctx = ctx;
	conn->raw = raw;
	mbedtls_ssl_init(&conn->ssl);
	if (mbedtls_ssl_setup(&conn->ssl, &ctx->conf) != 0)
		goto err;
	/* Always set: it enables SNI and, above all, the name check. */
	if (mbedtls_ssl_set_hostname(&conn->ssl, ctx->server_name) != 0)
		goto err;
	mbedtls_ssl_set_verify(&conn->ssl, tls_verify_cb, conn);
	/*
	 * Offer the last session this context verified: same server_name, CA,
	 * pins and settings by construction.  A server that declines gets a
	 * full, fully verified handshake.
	 */
	if (ctx->have_resume)
		(void)mbedtls_ssl_set_session(&conn->ssl, &ctx->resume);
	mbedtls_ssl_set_bio(&conn->ssl, conn, tls_bio_send, tls_bio_recv,
	    NULL);
	return conn;
err:
	tls_conn_free(conn);
	return NULL;
}

/* Free a connection (not its bufferevent); NULL is fine. */
void
tls_conn_free(struct tls_conn *conn)
{
	if (conn == NULL)
		return;
	mbedtls_ssl_free(&conn->ssl);
	free(conn);
}

/* The raw socket reached end of file. */
void
tls_conn_set_eof(struct tls_conn *conn)
{
	conn->raw_eof = 1;
}

/* Explain failed verification flags, the most useful reason first. */
static void
tls_explain_verify(struct tls_conn *conn, uint32_t flags)
{
	char	details[256];

	if (flags & MBEDTLS_X509_BADCERT_CN_MISMATCH)
		snprintf(conn->error, sizeof(conn->error),
		    "certificate name mismatch, expected %s",
		    conn->ctx->server_name);
	else if (flags & MBEDTLS_X509_BADCERT_EXPIRED)
		snprintf(conn->error, sizeof(conn->error),
		    "certificate expired");
	else if (flags & MBEDTLS_X509_BADCERT_FUTURE)
		snprintf(conn->error, sizeof(conn->error),
		    "certificate not yet valid");
	else if (flags & MBEDTLS_X509_BADCERT_NOT_TRUSTED)
		snprintf(conn->error, sizeof(conn->error),
		    "certificate not trusted (self-signed or unknown CA)");
	else if (flags & (MBEDTLS_X509_BADCERT_BAD_MD |
	    MBEDTLS_X509_BADCERT_BAD_KEY | MBEDTLS_X509_BADCERT_BAD_PK))
		snprintf(conn->error, sizeof(conn->error),
		    "certificate uses a weak signature hash or key");
	else {
		mbedtls_x509_crt_verify_info(details, sizeof(details), "",
		    flags);
		details[strcspn(details, "\n")] = '\0';
		snprintf(conn->error, sizeof(conn->error),
		    "certificate verification failed: %s", details);
	}
}

/* The alert the peer sent, as far as this mbedTLS version tells. */
static int
tls_last_alert(const struct tls_conn *conn)
{
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
	return conn->ssl.MBEDTLS_PRIVATE(in_msg) != NULL ?
	    conn->ssl.MBEDTLS_PRIVATE(in_msg)[1] : -1;
#else
	return conn->ssl.in_msg != NULL ? conn->ssl.in_msg[1] : -1;
#endif
}

/* Explain a failed handshake in plain words. */
static void
tls_explain_handshake(struct tls_conn *conn, int ret)
{
	char	reason[200];
	int	alert;

	switch (ret) {
	case MBEDTLS_ERR_X509_CERT_VERIFY_FAILED:
		tls_explain_verify(conn, mbedtls_ssl_get_verify_result(
		    &conn->ssl));
		return;
	case MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE:
		alert = tls_last_alert(conn);
		if (alert == MBEDTLS_SSL_ALERT_MSG_PROTOCOL_VERSION)
			snprintf(conn->error, sizeof(conn->error), "server "
			    "does not support TLS 1.2 or newer (alert "
			    "protocol_version)");
		else if (alert == MBEDTLS_SSL_ALERT_MSG_HANDSHAKE_FAILURE ||
		    alert == MBEDTLS_SSL_ALERT_MSG_INSUFFICIENT_SECURITY)
			snprintf(conn->error, sizeof(conn->error), "server "
			    "offers no acceptable TLS version (1.2 or newer) "
			    "or cipher suite (ECDHE with AES-GCM or "
			    "ChaCha20-Poly1305): alert handshake failure");
		else
			snprintf(conn->error, sizeof(conn->error), "server "
			    "refused the TLS handshake (alert %d)", alert);
		return;
	case MBEDTLS_ERR_SSL_BAD_HS_PROTOCOL_VERSION:
		snprintf(conn->error, sizeof(conn->error),
		    "server does not support TLS 1.2 or newer");
		return;
	case MBEDTLS_ERR_SSL_NO_CIPHER_CHOSEN:
	case MBEDTLS_ERR_SSL_BAD_HS_SERVER_HELLO:
		snprintf(conn->error, sizeof(conn->error),
		    "server chose no acceptable cipher suite");
		return;
	case MBEDTLS_ERR_SSL_INVALID_RECORD:
	case MBEDTLS_ERR_SSL_UNEXPECTED_MESSAGE:
		conn->saw_plaintext = 1;
		snprintf(conn->error, sizeof(conn->error), "server did not "
		    "answer with TLS (plaintext on a TLS port?)");
		return;
	case MBEDTLS_ERR_SSL_CONN_EOF:
		snprintf(conn->error, sizeof(conn->error),
		    "server closed the connection during the TLS handshake");
		return;
	}
	tls_strerror(ret, reason, sizeof(reason));
	snprintf(conn->error, sizeof(conn->error), "TLS handshake failed: %s",
	    reason);
}

/* Check the pins against the chain once the handshake is done. */
static int
tls_check_pins(struct tls_conn *conn)
{
	const mbedtls_x509_crt	*crt;

	if (conn->ctx->n_pins == 0 || conn->pin_matched)
		return 0;
	/* With verify = no the callback did not run: look at what was sent. */
	for (crt = mbedtls_ssl_get_peer_cert(&conn->ssl); crt != NULL;
	    crt = crt->next)
		if (crt->version != 0 && tls_pin_matches(conn->ctx, crt))
			return 0;
	snprintf(conn->error, sizeof(conn->error),
	    "no key in the server's certificate chain matches pin_sha256");
	return -1;
}

/*
 * Whether the handshake resumed a session: with verification on, a full
 * handshake always runs the verify callback and a resumed one never does.
 * (Session IDs cannot tell: with tickets the client picks a new ID.)
 */
static int
tls_was_resumed(const struct tls_conn *conn)
{
	return conn->ctx->verify && conn->ctx->have_resume &&
	    !conn->verify_called;
}

/* Keep this verified session for the next connection of the service. */
static void
tls_save_session(struct tls_conn *conn)
{
	struct tls_ctx	*ctx = conn->ctx;

	mbedtls_ssl_session_free(&ctx->resume);
	mbedtls_ssl_session_init(&ctx->resume);
	ctx->have_resume = mbedtls_ssl_get_session(&conn->ssl,
	    &ctx->resume) == 0;
}

/* Drive the handshake as far as the buffered input allows. */
int
tls_conn_handshake(struct tls_conn *conn)
{
	int	ret;

	ret = mbedtls_ssl_handshake(&conn->ssl);
	if (ret == MBEDTLS_ERR_SSL_WANT_READ ||
	    ret == MBEDTLS_ERR_SSL_WANT_WRITE) {
		if (conn->raw_eof) {
			tls_explain_handshake(conn, MBEDTLS_ERR_SSL_CONN_EOF);
			return -1;
		}
		return 0;
	}
	if (ret != 0) {
		tls_explain_handshake(conn, ret);
		return -1;
	}
	/* A resumed session passed chain, name and pins when it was made. */
	conn->resumed = tls_was_resumed(conn);
	if (!conn->resumed && tls_check_pins(conn) != 0)
		return -1;
	tls_save_session(conn);
	return 1;
}

/* Whether the handshake resumed an earlier session. */
int
tls_conn_resumed(const struct tls_conn *conn)
{
	return conn->resumed;
}

/* Decrypt application data. */
int
tls_conn_read(struct tls_conn *conn, void *buf, size_t len)
{
	int	ret;

	ret = mbedtls_ssl_read(&conn->ssl, buf, len);
	if (ret > 0)
		return ret;
	switch (ret) {
	case MBEDTLS_ERR_SSL_WANT_READ:
	case MBEDTLS_ERR_SSL_WANT_WRITE:
		return conn->raw_eof ? TLS_EOF : TLS_WANT;
	case MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY:
		return TLS_CLOSED;
	case 0:
	case MBEDTLS_ERR_SSL_CONN_EOF:
		return TLS_EOF;
	}
	tls_strerror(ret, conn->error, sizeof(conn->error));
	return TLS_ERROR;
}

/* Whether mbedTLS holds data that no socket event will announce. */
int
tls_conn_pending(const struct tls_conn *conn)
{
	return mbedtls_ssl_check_pending(&conn->ssl) ||
	    mbedtls_ssl_get_bytes_avail(&conn->ssl) > 0;
}

/* Encrypt application data into the output buffer. */
int
tls_conn_write(struct tls_conn *conn, const void *buf, size_t len)
{
	int	ret;

	ret = mbedtls_ssl_write(&conn->ssl, buf, len);
	if (ret >= 0)
		return ret;
	tls_strerror(ret, conn->error, sizeof(conn->error));
	return TLS_ERROR;
}

/* Queue close_notify once; the caller flushes the socket. */
void
tls_conn_close_notify(struct tls_conn *conn)
{
	if (conn->close_notify_sent)
		return;
	conn->close_notify_sent = 1;
	(void)mbedtls_ssl_close_notify(&conn->ssl);
}

/* The reason of the last failure. */
const char *
tls_conn_error(const struct tls_conn *conn)
{
	return conn->error[0] != '\0' ? conn->error : "unknown TLS error";
}

/* Whether the handshake failed on bytes that were not TLS. */
int
tls_conn_saw_plaintext(const struct tls_conn *conn)
{
	return conn->saw_plaintext;
}

/* The negotiated protocol version. */
const char *
tls_conn_version(const struct tls_conn *conn)
{
	return mbedtls_ssl_get_version(&conn->ssl);
}

/* The negotiated cipher suite. */
const char *
tls_conn_ciphersuite(const struct tls_conn *conn)
{
	return mbedtls_ssl_get_ciphersuite(&conn->ssl);
}
