
/*
 * ---- TLS toward mail clients (local_tls) ----------------------------------
 * mailtlsd as a TLS server: its own certificate, the same floor and suites
 * as toward servers, no client certificates, no session cache.  Apart from
 * their constructors and handshake, these connections use the functions
 * above.
 */

/* The process's random generator, for mbedTLS calls that take one. */
int
tls_random(void *p_rng, unsigned char *buf, size_t len)
{
	(void)p_rng;
	return mbedtls_ctr_drbg_random(&tls_drbg, buf, len);
}

/* Whether key is the private half of the certificate's public key. */
static int
tls_local_pair_ok(mbedtls_x509_crt *crt, mbedtls_pk_context *key)
{
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
	return mbedtls_pk_check_pair(&crt->pk, key, mbedtls_ctr_drbg_random,
	    &tls_drbg) == 0;
#else
	return mbedtls_pk_check_pair(&crt->pk, key) == 0;
#endif
}

/* Load local_cert (with any intermediates after it) and local_key. */
static int
tls_load_local_cert(struct tls_ctx *ctx, const struct service_config *sc,
    char *err, size_t errlen)
{
	char	reason[200];
	int	ret;

	ret = mbedtls_x509_crt_parse_file(&ctx->own_cert, sc->local_cert);
	if (ret != 0) {
		tls_strerror(ret < 0 ? ret : MBEDTLS_ERR_X509_INVALID_FORMAT,
		    reason, sizeof(reason));
		snprintf(err, errlen, "local_cert %s: %s", sc->local_cert,
		    reason);
		return -1;
	}
	if ((ret = tls_parse_keyfile(&ctx->own_key, sc->local_key)) != 0) {
		tls_strerror(ret, reason, sizeof(reason));
		snprintf(err, errlen, "local_key %s: %s", sc->local_key,
		    reason);
		return -1;
	}
	if (!tls_local_pair_ok(&ctx->own_cert, &ctx->own_key)) {
		snprintf(err, errlen, "local_key %s is not the key of "
		    "local_cert %s", sc->local_key, sc->local_cert);
		return -1;
	}
	if ((ret = mbedtls_ssl_conf_own_cert(&ctx->conf, &ctx->own_cert,
	    &ctx->own_key)) != 0) {
		tls_strerror(ret, reason, sizeof(reason));
		snprintf(err, errlen, "local_cert %s: %s", sc->local_cert,
		    reason);
		return -1;
	}
	return 0;
}

/* Build the settings toward the service's mail clients. */
struct tls_ctx *
tls_ctx_new_local(const struct service_config *sc, char *err, size_t errlen)
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
	ctx->min_tls = TLS_VERSION_1_2;	/* min_tls is about the server */
	if (mbedtls_ssl_config_defaults(&ctx->conf, MBEDTLS_SSL_IS_SERVER,
	    MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT) != 0) {
		snprintf(err, errlen, "cannot set TLS defaults");
		goto err;
	}
	mbedtls_ssl_conf_rng(&ctx->conf, mbedtls_ctr_drbg_random, &tls_drbg);
	tls_compat_conf(&ctx->conf, TLS_VERSION_1_2);
	mbedtls_ssl_conf_ciphersuites(&ctx->conf, tls_ciphersuites);
#if defined(MBEDTLS_SSL_RENEGOTIATION)
	mbedtls_ssl_conf_renegotiation(&ctx->conf,
	    MBEDTLS_SSL_RENEGOTIATION_DISABLED);
#endif
	mbedtls_ssl_conf_authmode(&ctx->conf, MBEDTLS_SSL_VERIFY_NONE);
	if (tls_load_local_cert(ctx, sc, err, errlen) != 0)
		goto err;
	return ctx;
err:
	tls_ctx_free(ctx);
	return NULL;
}

/* A new connection with a mail client over raw. */
struct tls_conn *
tls_conn_new_local(struct tls_ctx *ctx, struct bufferevent *raw)
{
	struct tls_conn	*conn;

	if ((conn = calloc(1, sizeof(*conn))) == NULL)
		return NULL;
	conn->ctx = ctx;
	conn->raw = raw;
	mbedtls_ssl_init(&conn->ssl);
	if (mbedtls_ssl_setup(&conn->ssl, &ctx->conf) != 0) {
		tls_conn_free(conn);
		return NULL;
	}
	mbedtls_ssl_set_bio(&conn->ssl, conn, tls_bio_send, tls_bio_recv,
	    NULL);
	return conn;
}

/* Explain a failed handshake with a client in plain words. */
static void
tls_explain_local(struct tls_conn *conn, int ret)
{
	const char	*name;
	char		 reason[200];
	int		 alert;

	switch (ret) {
	case MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE:
		alert = tls_compat_last_alert(&conn->ssl);
		name = tls_alert_name(alert);
		if (alert == MBEDTLS_SSL_ALERT_MSG_BAD_CERT ||
		    alert == MBEDTLS_SSL_ALERT_MSG_UNKNOWN_CA ||
		    alert == MBEDTLS_SSL_ALERT_MSG_CERT_UNKNOWN)
			snprintf(conn->error, sizeof(conn->error), "client "
			    "does not trust mailtlsd's certificate (alert %s): "
			    "make it trust local_cert, or the generated one "
			    "in state_dir", name);
		else if (name != NULL)
			snprintf(conn->error, sizeof(conn->error), "client "
			    "refused the TLS handshake (alert %s)", name);
		else
			snprintf(conn->error, sizeof(conn->error), "client "
			    "refused the TLS handshake (alert %d)", alert);
		return;
	case TLS_ERR_VERSION:
	case TLS_ERR_SUITE:
		snprintf(conn->error, sizeof(conn->error), "client offers no "
		    "acceptable TLS version (1.2 or newer) or cipher suite "
		    "(ECDHE with AES-GCM or ChaCha20-Poly1305)");
		return;
#if defined(MBEDTLS_ERR_SSL_BAD_HS_CLIENT_HELLO)
	case MBEDTLS_ERR_SSL_BAD_HS_CLIENT_HELLO:
#endif
#if defined(MBEDTLS_ERR_SSL_DECODE_ERROR)
	case MBEDTLS_ERR_SSL_DECODE_ERROR:
#endif
	case MBEDTLS_ERR_SSL_INVALID_RECORD:
	case MBEDTLS_ERR_SSL_UNEXPECTED_MESSAGE:
		conn->saw_plaintext = 1;
		snprintf(conn->error, sizeof(conn->error), "client did not "
		    "start TLS (no ClientHello: plaintext on a TLS port?)");
		return;
	case MBEDTLS_ERR_SSL_INVALID_MAC:
		/* A TLS 1.3 client's alert, sent before its keys were up. */
		snprintf(conn->error, sizeof(conn->error), "client ended the "
		    "handshake with a record mailtlsd cannot read: with TLS "
		    "1.3 usually an alert that it does not trust mailtlsd's "
		    "certificate");
		return;
	case MBEDTLS_ERR_SSL_CONN_EOF:
		snprintf(conn->error, sizeof(conn->error),
		    "client closed the connection during the TLS handshake");
		return;
	}
	tls_strerror(ret, reason, sizeof(reason));
	snprintf(conn->error, sizeof(conn->error), "%s", reason);
}

/* Drive the handshake with a client as far as its input allows. */
int
tls_conn_handshake_local(struct tls_conn *conn)
{
	int	ret;

	ret = mbedtls_ssl_handshake(&conn->ssl);
	if (ret == MBEDTLS_ERR_SSL_WANT_READ ||
	    ret == MBEDTLS_ERR_SSL_WANT_WRITE) {
		if (!conn->raw_eof)
			return 0;
		ret = MBEDTLS_ERR_SSL_CONN_EOF;
	}
	if (ret != 0) {
		tls_explain_local(conn, ret);
		return -1;
	}
	conn->verified = 1;
	return 1;
}
