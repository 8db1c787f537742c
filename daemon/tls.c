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
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
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
#include "safefile.h"
#include "tls.h"

/*
 * ---- mbedTLS 2.28 and 3.6: every API difference is in this section -------
 *
 * 3.x needs psa_crypto_init() (TLS 1.3 runs on PSA), takes an RNG to parse
 * keys, made the record fields private, sets versions, groups and
 * signature algorithms by their IANA numbers and renamed a few errors.
 * TLS 1.3 itself is there when the build defines MBEDTLS_SSL_PROTO_TLS1_3
 * (the default from 3.6 on; config.c refuses min_tls = 1.3 otherwise).
 */
#if MBEDTLS_VERSION_NUMBER >= 0x04000000
#error "mailtlsd is written for mbedTLS 2.28 and 3.6"
#elif MBEDTLS_VERSION_NUMBER >= 0x03000000
#define TLS_MBEDTLS3		1
#if defined(MBEDTLS_PSA_CRYPTO_C)
#include <psa/crypto.h>
#endif
#if defined(MBEDTLS_SSL_PROTO_TLS1_3)
#define TLS_HAVE_TLS13		1
#endif
/* The peer's alert is only in a record field, private since 3.0. */
#define TLS_SSL_FIELD(ssl, f)	((ssl)->MBEDTLS_PRIVATE(f))
#define TLS_ERR_VERSION		MBEDTLS_ERR_SSL_BAD_PROTOCOL_VERSION
#define TLS_ERR_SUITE		MBEDTLS_ERR_SSL_HANDSHAKE_FAILURE
#define TLS_ERR_SUITE2		MBEDTLS_ERR_SSL_ILLEGAL_PARAMETER
#define TLS_ERR_CERT		MBEDTLS_ERR_SSL_BAD_CERTIFICATE
#define tls_sha256(in, len, out) mbedtls_sha256((in), (len), (out), 0)
#define tls_parse_key(pk, buf, len) mbedtls_pk_parse_key((pk), (buf), (len), \
	    NULL, 0, mbedtls_ctr_drbg_random, &tls_drbg)
#else
#define TLS_SSL_FIELD(ssl, f)	((ssl)->f)
#define TLS_ERR_VERSION		MBEDTLS_ERR_SSL_BAD_HS_PROTOCOL_VERSION
#define TLS_ERR_SUITE		MBEDTLS_ERR_SSL_NO_CIPHER_CHOSEN
#define TLS_ERR_SUITE2		MBEDTLS_ERR_SSL_BAD_HS_SERVER_HELLO
#define TLS_ERR_CERT		MBEDTLS_ERR_SSL_BAD_HS_CERTIFICATE
#define tls_sha256(in, len, out) mbedtls_sha256_ret((in), (len), (out), 0)
#define tls_parse_key(pk, buf, len) mbedtls_pk_parse_key((pk), (buf), (len), \
	    NULL, 0)
#endif

/* TLS 1.3 only: a NewSessionTicket arrived (handled by tls_conn_read). */
#if defined(TLS_HAVE_TLS13) && defined(MBEDTLS_SSL_SESSION_TICKETS)
#define TLS_ERR_NEW_TICKET	MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET
#else
#define TLS_ERR_NEW_TICKET	(-0x7fff)	/* never returned */
#endif

/* Not named by 2.28's headers. */
#define TLS_ALERT_CERT_REQUIRED	116

static mbedtls_ctr_drbg_context	tls_drbg;

/* Start what the library needs besides our random generator. */
static int
tls_compat_init(void)
{
#if defined(TLS_MBEDTLS3) && defined(MBEDTLS_PSA_CRYPTO_C)
	return psa_crypto_init() == PSA_SUCCESS ? 0 : -1;
#else
	return 0;
#endif
}

static void
tls_compat_cleanup(void)
{
#if defined(TLS_MBEDTLS3) && defined(MBEDTLS_PSA_CRYPTO_C)
	mbedtls_psa_crypto_free();
#endif
}

/* After fork(): the library's own generator (PSA) reseeds too. */
static int
tls_compat_reseed(void)
{
#if defined(TLS_MBEDTLS3) && defined(MBEDTLS_PSA_CRYPTO_C) && \
    MBEDTLS_VERSION_NUMBER >= 0x03060600 && \
    !defined(MBEDTLS_PSA_CRYPTO_EXTERNAL_RNG)
	static const char	label[] = "mailtlsd-fork";

	return psa_random_reseed((const uint8_t *)label,
	    sizeof(label) - 1) == PSA_SUCCESS ? 0 : -1;
#else
	/* Before 3.6.6 PSA cannot be reseeded; the parent of a fork never
	 * draws from it again (it only waits and exits). */
	return 0;
#endif
}

/* Versions, key exchange groups and signature algorithms. */
static void
tls_compat_conf(mbedtls_ssl_config *conf, enum tls_version min_tls)
{
#if defined(TLS_MBEDTLS3)
	static const uint16_t	groups[] = {
		MBEDTLS_SSL_IANA_TLS_GROUP_X25519,
		MBEDTLS_SSL_IANA_TLS_GROUP_SECP256R1,
		MBEDTLS_SSL_IANA_TLS_GROUP_SECP384R1,
		MBEDTLS_SSL_IANA_TLS_GROUP_NONE
	};
	/*
	 * SHA-2 only.  TLS 1.3 signs with RSA-PSS (PKCS#1 v1.5 is for
	 * certificates there); PKCS#1 v1.5 comes first for the TLS 1.2
	 * servers that follow the client's order, as 3.6.6 wrongly refuses
	 * RSA-PSS in TLS 1.2 (scripts/mbedtls3-patches/tls12-rsa-pss.patch).
	 */
	static const uint16_t	sig_algs[] = {
		MBEDTLS_TLS1_3_SIG_ECDSA_SECP256R1_SHA256,
		MBEDTLS_TLS1_3_SIG_ECDSA_SECP384R1_SHA384,
		MBEDTLS_TLS1_3_SIG_ECDSA_SECP521R1_SHA512,
		MBEDTLS_TLS1_3_SIG_RSA_PKCS1_SHA256,
		MBEDTLS_TLS1_3_SIG_RSA_PKCS1_SHA384,
		MBEDTLS_TLS1_3_SIG_RSA_PKCS1_SHA512,
		MBEDTLS_TLS1_3_SIG_RSA_PSS_RSAE_SHA256,
		MBEDTLS_TLS1_3_SIG_RSA_PSS_RSAE_SHA384,
		MBEDTLS_TLS1_3_SIG_RSA_PSS_RSAE_SHA512,
		MBEDTLS_TLS1_3_SIG_NONE
	};

	mbedtls_ssl_conf_min_tls_version(conf, min_tls == TLS_VERSION_1_3 ?
	    MBEDTLS_SSL_VERSION_TLS1_3 : MBEDTLS_SSL_VERSION_TLS1_2);
#if defined(TLS_HAVE_TLS13)
	mbedtls_ssl_conf_max_tls_version(conf, MBEDTLS_SSL_VERSION_TLS1_3);
	/* Resumption keeps forward secrecy: PSK with (EC)DHE, never pure PSK. */
	mbedtls_ssl_conf_tls13_key_exchange_modes(conf,
	    MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_EPHEMERAL_ALL);
#if defined(MBEDTLS_SSL_TLS1_3_SIGNAL_NEW_SESSION_TICKETS_ENABLED)
	/* 3.6.1 and later ignore TLS 1.3 tickets unless asked to. */
	mbedtls_ssl_conf_tls13_enable_signal_new_session_tickets(conf,
	    MBEDTLS_SSL_TLS1_3_SIGNAL_NEW_SESSION_TICKETS_ENABLED);
#endif
#else
	mbedtls_ssl_conf_max_tls_version(conf, MBEDTLS_SSL_VERSION_TLS1_2);
#endif
	mbedtls_ssl_conf_groups(conf, groups);
	mbedtls_ssl_conf_sig_algs(conf, sig_algs);
#else
	static const mbedtls_ecp_group_id	curves[] = {
		MBEDTLS_ECP_DP_CURVE25519,
		MBEDTLS_ECP_DP_SECP256R1,
		MBEDTLS_ECP_DP_SECP384R1,
		MBEDTLS_ECP_DP_NONE
	};
	static const int			sig_hashes[] = {
		MBEDTLS_MD_SHA256,
		MBEDTLS_MD_SHA384,
		MBEDTLS_MD_SHA512,
		MBEDTLS_MD_NONE
	};

	(void)min_tls;		/* 1.3 is refused by config.c */
	/* Debian 12's 2.28 would otherwise offer TLS 1.0 and 1.1. */
	mbedtls_ssl_conf_min_version(conf, MBEDTLS_SSL_MAJOR_VERSION_3,
	    MBEDTLS_SSL_MINOR_VERSION_3);
	mbedtls_ssl_conf_max_version(conf, MBEDTLS_SSL_MAJOR_VERSION_3,
	    MBEDTLS_SSL_MINOR_VERSION_3);
	mbedtls_ssl_conf_curves(conf, curves);
	mbedtls_ssl_conf_sig_hashes(conf, sig_hashes);
#endif
#if defined(MBEDTLS_SSL_SESSION_TICKETS)
	mbedtls_ssl_conf_session_tickets(conf,
	    MBEDTLS_SSL_SESSION_TICKETS_ENABLED);
#endif
}

/* Whether the connection negotiated TLS 1.3. */
static int
tls_compat_is_tls13(const mbedtls_ssl_context *ssl)
{
#if defined(TLS_HAVE_TLS13)
	return mbedtls_ssl_get_version_number(ssl) ==
	    MBEDTLS_SSL_VERSION_TLS1_3;
#else
	(void)ssl;
	return 0;
#endif
}

/* The alert the peer sent (after MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE). */
static int
tls_compat_last_alert(const mbedtls_ssl_context *ssl)
{
	const unsigned char	*msg = TLS_SSL_FIELD(ssl, in_msg);

	return msg != NULL ? msg[1] : -1;
}

/* ---- End of the mbedTLS 2.28 / 3.6 differences --------------------------- */

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
	int			have_client_cert;
	enum tls_version	min_tls;
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
	int			 offered_session;
	int			 verify_called;
	int			 verified;	/* handshake done and checked */
	int			 verify_failed;	/* chain, name or pins refused */
	time_t			 chain_expires;	/* first end in the chain */
	char			 error[TLS_ERROR_MAX];
};

static mbedtls_entropy_context	tls_entropy;
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

/*
 * Forward secrecy and AEAD only, the fastest first.  TLS 1.3 suites are all
 * AEAD, and its key exchange is always (EC)DHE here.
 */
static const int tls_ciphersuites[] = {
#if defined(TLS_HAVE_TLS13)
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
	    sizeof(personal) - 1) != 0 || tls_compat_init() != 0) {
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
	tls_compat_cleanup();
	mbedtls_ctr_drbg_free(&tls_drbg);
	mbedtls_entropy_free(&tls_entropy);
	tls_ready = 0;
}

/* Reseed after fork() so parent and child never share a random stream. */
int
tls_reseed(void)
{
	static const char	label[] = "mailtlsd-fork";

	if (mbedtls_ctr_drbg_reseed(&tls_drbg, (const unsigned char *)label,
	    sizeof(label) - 1) != 0)
		return -1;
	return tls_compat_reseed();
}

/* The version string of the linked library. */
const char *
tls_library_version(void)
{
	static char	version[32];

	mbedtls_version_get_string(version);
	return version;
}

/*
 * The newest release of each mbedTLS branch that mailtlsd knows of, and
 * whether the branch still gets fixes.  Last updated 2026-11: 2.28.10
 * (2025-03) was the last 2.28 release, the branch ended with 2024; 3.6.7
 * (2026-07-07) is the newest 3.6 LTS release (Debian 13 ships 3.6.6).
 * Add a release here when upstream publishes one:
 * https://github.com/Mbed-TLS/mbedtls/releases
 */
static const struct tls_branch {
	unsigned	 major, minor, last_patch;
	const char	*ended;		/* NULL while maintained */
} tls_branches[] = {
	{ 2, 28, 10, "2024" },
	{ 3, 6, 7, NULL },
};

/* Compare the linked (or a given) mbedTLS version with the table above. */
int
tls_library_outdated(unsigned long number, char *buf, size_t len)
{
	const struct tls_branch	*b, *newest;
	unsigned		 major, minor, patch;
	size_t			 i, n;

	if (number == 0)
		number = mbedtls_version_get_number();
	major = (number >> 24) & 0xff;
	minor = (number >> 16) & 0xff;
	patch = (number >> 8) & 0xff;
	n = sizeof(tls_branches) / sizeof(tls_branches[0]);
	newest = &tls_branches[n - 1];
	for (i = 0; i < n; i++) {
		b = &tls_branches[i];
		if (b->major != major || b->minor != minor)
			continue;
		if (patch < b->last_patch && b->ended != NULL)
			snprintf(buf, len, "mbedTLS %u.%u.%u is older than "
			    "%u.%u.%u, the last release of its branch, which "
			    "reached its end of life in %s: it lacks known "
			    "security fixes; build with mbedTLS %u.%u",
			    major, minor, patch, major, minor, b->last_patch,
			    b->ended, newest->major, newest->minor);
		else if (patch < b->last_patch)
			snprintf(buf, len, "mbedTLS %u.%u.%u is older than "
			    "%u.%u.%u, the last release of its branch that "
			    "mailtlsd knows of: it may lack security fixes "
			    "(unless the distribution backported them)",
			    major, minor, patch, major, minor, b->last_patch);
		else if (b->ended != NULL)
			snprintf(buf, len, "mbedTLS %u.%u.%u: its branch "
			    "reached its end of life in %s and gets no more "
			    "security fixes; build with mbedTLS %u.%u",
			    major, minor, patch, b->ended, newest->major,
			    newest->minor);
		else
			return 0;
		return 1;
	}
	if (major > newest->major || (major == newest->major &&
	    minor > newest->minor))
		return 0;	/* newer than this table */
	snprintf(buf, len, "mbedTLS %u.%u.%u is from a branch that is no "
	    "longer maintained; build with mbedTLS %u.%u", major, minor,
	    patch, newest->major, newest->minor);
	return 1;
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
	return tls_sha256(der + sizeof(der) - len, (size_t)len, out) == 0 ?
	    0 : -1;
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
	time_t		 until;

	(void)depth;
	(void)flags;
	conn->verify_called = 1;
	/* The chain ends with its first certificate to expire. */
	until = tls_x509_time(&crt->valid_to);
	if (until != (time_t)-1 && (conn->chain_expires == 0 ||
	    until < conn->chain_expires))
		conn->chain_expires = until;
	if (conn->ctx->n_pins > 0 && tls_pin_matches(conn->ctx, crt))
		conn->pin_matched = 1;
	return 0;
}

/*
 * Parse the certificates of a file read whole (a NUL after len), PEM or
 * DER, into chain: as mbedtls_x509_crt_parse(), < 0 for an error, else
 * the number of certificates that failed to parse.
 */
static int
tls_parse_crts(mbedtls_x509_crt *chain, const unsigned char *buf, size_t len)
{
	/* The PEM parser wants the NUL counted, as the file reader does. */
	return mbedtls_x509_crt_parse(chain, buf, len + 1);
}

/*
 * Add the certificates of every regular file in the directory open on
 * dirfd (a hashed directory such as /etc/ssl/certs), each read through
 * one descriptor; files that cannot be read or parsed are skipped, as
 * mbedtls_x509_crt_parse_path() does.  0, or -1 with err.
 */
static int
tls_load_ca_dir(struct tls_ctx *ctx, int dirfd, const char *path, char *err,
    size_t errlen)
{
	struct dirent	*e;
	struct stat	 st;
	unsigned char	*buf;
	size_t		 len;
	char		 why[128];
	DIR		*d;
	int		 fd;

	if ((d = fdopendir(dirfd)) == NULL) {
		snprintf(err, errlen, "ca_file %s: %s", path, strerror(errno));
		close(dirfd);
		return -1;
	}
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if ((fd = safefile_open(dirfd, e->d_name, 0, &st, why,
		    sizeof(why))) < 0)
			continue;
		if (safefile_read_fd(fd, SAFEFILE_CA_MAX, &buf, &len, why,
		    sizeof(why)) == 0) {
			(void)tls_parse_crts(&ctx->ca_chain, buf, len);
			safefile_free(buf, len);
		}
		close(fd);
	}
	closedir(d);
	return 0;
}

/*
 * Load the trust anchors from a bundle file, or from the files of a
 * directory; each file read once, through the descriptor it was checked
 * on.
 */
static int
tls_load_ca(struct tls_ctx *ctx, const char *path, char *err, size_t errlen)
{
	unsigned char	*buf;
	size_t		 len;
	char		 why[128];
	int		 fd, ret;

	if ((fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		if (tls_load_ca_dir(ctx, fd, path, err, errlen) != 0)
			return -1;
		ret = 0;
	} else {
		if (safefile_read(path, SAFEFILE_CA_MAX, &buf, &len, why,
		    sizeof(why)) != 0) {
			snprintf(err, errlen, "ca_file %s: %s", path, why);
			return -1;
		}
		ret = tls_parse_crts(&ctx->ca_chain, buf, len);
		safefile_free(buf, len);
	}
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

/* Whether key is the private half of the certificate's public key. */
static int
tls_key_pair_ok(mbedtls_x509_crt *crt, mbedtls_pk_context *key)
{
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
	return mbedtls_pk_check_pair(&crt->pk, key, mbedtls_ctr_drbg_random,
	    &tls_drbg) == 0;
#else
	return mbedtls_pk_check_pair(&crt->pk, key) == 0;
#endif
}

/*
 * Parse the certificate (with any intermediates after it) and private key
 * this side presents from pair, or from the files cert_path and key_path
 * (each read once, through the descriptor it was checked on; the key's
 * bytes are zeroed once parsed).  A key that does not belong to the
 * certificate is a configuration error now rather than a failed handshake
 * later.  cert_opt and key_opt name the settings in the error.
 */
static int
tls_load_own_cert(struct tls_ctx *ctx, const char *cert_opt,
    const char *cert_path, const char *key_opt, const char *key_path,
    const struct tls_keypair *pair, char *err, size_t errlen)
{
	unsigned char	*cert_buf = NULL, *key_buf = NULL;
	size_t		 cert_len = 0, key_len = 0;
	char		 reason[200];
	int		 ret, status = -1;

	if (pair == NULL && safefile_read(cert_path, SAFEFILE_KEY_MAX,
	    &cert_buf, &cert_len, reason, sizeof(reason)) != 0) {
		snprintf(err, errlen, "%s %s: %s", cert_opt, cert_path, reason);
		goto out;
	}
	ret = tls_parse_crts(&ctx->own_cert, pair != NULL ? pair->cert :
	    cert_buf, pair != NULL ? pair->cert_len : cert_len);
	if (ret != 0) {
		tls_strerror(ret < 0 ? ret : MBEDTLS_ERR_X509_INVALID_FORMAT,
		    reason, sizeof(reason));
		snprintf(err, errlen, "%s %s: %s", cert_opt, cert_path, reason);
		goto out;
	}
	if (pair == NULL && safefile_read(key_path, SAFEFILE_KEY_MAX,
	    &key_buf, &key_len, reason, sizeof(reason)) != 0) {
		snprintf(err, errlen, "%s %s: %s", key_opt, key_path, reason);
		goto out;
	}
	/* As for certificates, the PEM parser wants the NUL counted. */
	ret = tls_parse_key(&ctx->own_key, pair != NULL ? pair->key : key_buf,
	    (pair != NULL ? pair->key_len : key_len) + 1);
	if (ret != 0) {
		tls_strerror(ret, reason, sizeof(reason));
		snprintf(err, errlen, "%s %s: %s", key_opt, key_path, reason);
		goto out;
	}
	if (!tls_key_pair_ok(&ctx->own_cert, &ctx->own_key)) {
		snprintf(err, errlen, "%s %s is not the key of %s %s", key_opt,
		    key_path, cert_opt, cert_path);
		goto out;
	}
	if ((ret = mbedtls_ssl_conf_own_cert(&ctx->conf, &ctx->own_cert,
	    &ctx->own_key)) != 0) {
		tls_strerror(ret, reason, sizeof(reason));
		snprintf(err, errlen, "%s %s: %s", cert_opt, cert_path, reason);
		goto out;
	}
	status = 0;
out:
	safefile_free(cert_buf, cert_len);
	safefile_free(key_buf, key_len);
	return status;
}

/* Load the certificate and key presented to servers that ask for one. */
static int
tls_load_client_cert(struct tls_ctx *ctx, const struct service_config *sc,
    char *err, size_t errlen)
{
	if (tls_load_own_cert(ctx, "client_cert", sc->client_cert,
	    "client_key", sc->client_key, NULL, err, errlen) != 0)
		return -1;
	ctx->have_client_cert = 1;
	return 0;
}

/*
 * A new context for one end (MBEDTLS_SSL_IS_CLIENT or _SERVER) with every
 * mbedTLS part initialised, the defaults, the random generator, the
 * protocol floor and the cipher suites set, renegotiation off; NULL.
 */
static struct tls_ctx *
tls_ctx_alloc(int endpoint, enum tls_version min_tls, char *err,
    size_t errlen)
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
	ctx->min_tls = min_tls;
	if (mbedtls_ssl_config_defaults(&ctx->conf, endpoint,
	    MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT) != 0) {
		snprintf(err, errlen, "cannot set TLS defaults");
		tls_ctx_free(ctx);
		return NULL;
	}
	mbedtls_ssl_conf_rng(&ctx->conf, mbedtls_ctr_drbg_random, &tls_drbg);
	tls_compat_conf(&ctx->conf, min_tls);
	mbedtls_ssl_conf_ciphersuites(&ctx->conf, tls_ciphersuites);
#if defined(MBEDTLS_SSL_RENEGOTIATION)
	mbedtls_ssl_conf_renegotiation(&ctx->conf,
	    MBEDTLS_SSL_RENEGOTIATION_DISABLED);
#endif
	return ctx;
}

/* Build the shared TLS settings of one service. */
struct tls_ctx *
tls_ctx_new_uplink(const struct service_config *sc, char *err, size_t errlen)
{
	struct tls_ctx	*ctx;

	if ((ctx = tls_ctx_alloc(MBEDTLS_SSL_IS_CLIENT, sc->min_tls, err,
	    errlen)) == NULL)
		return NULL;
	snprintf(ctx->server_name, sizeof(ctx->server_name), "%s",
	    sc->server_name);
	memcpy(ctx->pins, sc->pins, sizeof(ctx->pins));
	ctx->n_pins = sc->n_pins;
	ctx->verify = sc->verify;
	mbedtls_ssl_conf_cert_profile(&ctx->conf, &tls_cert_profile);
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

/* A new connection with ctx's settings over raw, its BIO set; NULL. */
static struct tls_conn *
tls_conn_alloc(struct tls_ctx *ctx, struct bufferevent *raw)
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

/* A new connection to the service's server over raw. */
struct tls_conn *
tls_conn_new_uplink(struct tls_ctx *ctx, struct bufferevent *raw)
{
	struct tls_conn	*conn;

	if ((conn = tls_conn_alloc(ctx, raw)) == NULL)
		return NULL;
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
		conn->offered_session = mbedtls_ssl_set_session(&conn->ssl,
		    &ctx->resume) == 0;
	/* A copy that failed half way must not be offered: start clean. */
	if (ctx->have_resume && !conn->offered_session &&
	    (mbedtls_ssl_session_reset(&conn->ssl) != 0 ||
	    mbedtls_ssl_set_hostname(&conn->ssl, ctx->server_name) != 0))
		goto err;
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

/* The name of a TLS alert, for the log. */
static const char *
tls_alert_name(int alert)
{
	switch (alert) {
	case MBEDTLS_SSL_ALERT_MSG_HANDSHAKE_FAILURE:
		return "handshake_failure";
	case MBEDTLS_SSL_ALERT_MSG_BAD_CERT:
		return "bad_certificate";
	case MBEDTLS_SSL_ALERT_MSG_UNSUPPORTED_CERT:
		return "unsupported_certificate";
	case MBEDTLS_SSL_ALERT_MSG_CERT_REVOKED:
		return "certificate_revoked";
	case MBEDTLS_SSL_ALERT_MSG_CERT_EXPIRED:
		return "certificate_expired";
	case MBEDTLS_SSL_ALERT_MSG_CERT_UNKNOWN:
		return "certificate_unknown";
	case MBEDTLS_SSL_ALERT_MSG_UNKNOWN_CA:
		return "unknown_ca";
	case MBEDTLS_SSL_ALERT_MSG_ACCESS_DENIED:
		return "access_denied";
	case MBEDTLS_SSL_ALERT_MSG_DECRYPT_ERROR:
		return "decrypt_error";
	case MBEDTLS_SSL_ALERT_MSG_PROTOCOL_VERSION:
		return "protocol_version";
	case MBEDTLS_SSL_ALERT_MSG_INSUFFICIENT_SECURITY:
		return "insufficient_security";
	case MBEDTLS_SSL_ALERT_MSG_INTERNAL_ERROR:
		return "internal_error";
	case MBEDTLS_SSL_ALERT_MSG_UNRECOGNIZED_NAME:
		return "unrecognized_name";
	case TLS_ALERT_CERT_REQUIRED:
		return "certificate_required";
	}
	return NULL;
}

/* Whether a server's alert is about the client's certificate. */
static int
tls_alert_is_client_cert(int alert)
{
	switch (alert) {
	case MBEDTLS_SSL_ALERT_MSG_BAD_CERT:
	case MBEDTLS_SSL_ALERT_MSG_UNSUPPORTED_CERT:
	case MBEDTLS_SSL_ALERT_MSG_CERT_REVOKED:
	case MBEDTLS_SSL_ALERT_MSG_CERT_EXPIRED:
	case MBEDTLS_SSL_ALERT_MSG_CERT_UNKNOWN:
	case MBEDTLS_SSL_ALERT_MSG_UNKNOWN_CA:
	case MBEDTLS_SSL_ALERT_MSG_ACCESS_DENIED:
	case MBEDTLS_SSL_ALERT_MSG_DECRYPT_ERROR:
	case TLS_ALERT_CERT_REQUIRED:
		return 1;
	}
	return 0;
}

/* The lowest TLS version the service accepts, "1.2" or "1.3". */
static const char *
tls_min_name(const struct tls_conn *conn)
{
	return conn->ctx->min_tls == TLS_VERSION_1_3 ? "1.3" : "1.2";
}

/*
 * Explain a fatal alert from the server.  With TLS 1.3 the server judges
 * the client certificate after the client has finished its handshake, so
 * that alert comes with the first read instead.
 */
static void
tls_explain_alert(struct tls_conn *conn, const char *when)
{
	int		 alert = tls_compat_last_alert(&conn->ssl);
	const char	*name = tls_alert_name(alert);
	char		 what[48];

	if (name != NULL)
		snprintf(what, sizeof(what), "alert %s", name);
	else
		snprintf(what, sizeof(what), "alert %d", alert);
	if (alert == TLS_ALERT_CERT_REQUIRED ||
	    (tls_alert_is_client_cert(alert) && !conn->ctx->have_client_cert))
		snprintf(conn->error, sizeof(conn->error), "server requires a "
		    "client certificate (%s): set client_cert and client_key",
		    what);
	else if (tls_alert_is_client_cert(alert))
		snprintf(conn->error, sizeof(conn->error), "server rejected "
		    "the client certificate (%s)", what);
	else if (alert == MBEDTLS_SSL_ALERT_MSG_PROTOCOL_VERSION)
		snprintf(conn->error, sizeof(conn->error), "server does not "
		    "support TLS %s or newer (%s)", tls_min_name(conn), what);
	else if ((alert == MBEDTLS_SSL_ALERT_MSG_HANDSHAKE_FAILURE ||
	    alert == MBEDTLS_SSL_ALERT_MSG_INSUFFICIENT_SECURITY) &&
	    conn->verify_called)
		/* It saw our handshake through to its own certificate. */
		snprintf(conn->error, sizeof(conn->error), "server ended the "
		    "TLS handshake after sending its certificate (alert "
		    "handshake failure): it may require a client certificate "
		    "(client_cert, client_key) or refuse the one sent");
	else if (alert == MBEDTLS_SSL_ALERT_MSG_HANDSHAKE_FAILURE ||
	    alert == MBEDTLS_SSL_ALERT_MSG_INSUFFICIENT_SECURITY)
		snprintf(conn->error, sizeof(conn->error), "server offers no "
		    "acceptable TLS version (%s or newer) or cipher suite "
		    "(ECDHE with AES-GCM or ChaCha20-Poly1305): alert "
		    "handshake failure", tls_min_name(conn));
	else
		snprintf(conn->error, sizeof(conn->error), "server refused the "
		    "TLS %s (%s)", when, what);
}

/* Explain a failed handshake in plain words. */
static void
tls_explain_handshake(struct tls_conn *conn, int ret)
{
	char	reason[200];

	switch (ret) {
	case MBEDTLS_ERR_X509_CERT_VERIFY_FAILED:
	case TLS_ERR_CERT:
		conn->verify_failed = 1;
		tls_explain_verify(conn, mbedtls_ssl_get_verify_result(
		    &conn->ssl));
		return;
	case MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE:
		tls_explain_alert(conn, "handshake");
		return;
	case TLS_ERR_VERSION:
		snprintf(conn->error, sizeof(conn->error),
		    "server does not support TLS %s or newer",
		    tls_min_name(conn));
		return;
	case TLS_ERR_SUITE:
	case TLS_ERR_SUITE2:
		snprintf(conn->error, sizeof(conn->error), "server chose no "
		    "acceptable cipher suite or key exchange");
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
	crt = mbedtls_ssl_get_peer_cert(&conn->ssl);
	/*
	 * With verify = no the callback did not run.  Only the server's own
	 * key is proven by the handshake: the certificates after it are bytes
	 * the server chose to send, so a pin may match that key alone.
	 */
	if (!conn->ctx->verify) {
		if (crt != NULL && crt->version != 0 &&
		    tls_pin_matches(conn->ctx, crt))
			return 0;
		snprintf(conn->error, sizeof(conn->error), "the server's key "
		    "matches no pin_sha256 (with verify = no only the "
		    "server's own key can match)");
		return -1;
	}
	/*
	 * A resumed session does not come here: its chain was verified, pins
	 * included, when the session was made.  After a full handshake the
	 * callback saw the verified chain, and only that chain counts: not
	 * the extra certificates the server sent beside it, nor, when no
	 * chain was recorded, anything the server sent.
	 *
	 * That last case fails closed and is not reached today: with
	 * MBEDTLS_SSL_VERIFY_REQUIRED, mbedTLS (2.28 and 3.6, TLS 1.2 and
	 * 1.3) calls the callback for every certificate of every chain it
	 * verifies, and a full handshake without a server certificate (a
	 * PSK, which mailtlsd never configures) is the only way around it.
	 * No unit test can reach it through the public interface for the
	 * same reason.
	 */
	if (!conn->verify_called)
		snprintf(conn->error, sizeof(conn->error), "no verified "
		    "certificate chain to check pin_sha256 against");
	else
		snprintf(conn->error, sizeof(conn->error), "no key in the "
		    "server's certificate chain matches pin_sha256");
	return -1;
}

/*
 * Whether the handshake resumed a session: with verification on, a full
 * handshake always runs the verify callback and a resumed one never does,
 * in TLS 1.2 (session ID or ticket) as in TLS 1.3 (ticket, PSK with ECDHE:
 * the server sends no certificate).  Session IDs cannot tell: with
 * tickets the client picks a new ID.
 */
static int
tls_was_resumed(const struct tls_conn *conn)
{
	return conn->ctx->verify && conn->offered_session &&
	    !conn->verify_called;
}

/*
 * Keep this verified session for the next connection of the service.  A
 * TLS 1.2 session is there when the handshake ends; a TLS 1.3 one only
 * with a ticket, which comes after the handshake (tls_conn_read).
 */
static void
tls_save_session(struct tls_conn *conn)
{
	struct tls_ctx	*ctx = conn->ctx;

	mbedtls_ssl_session_free(&ctx->resume);
	mbedtls_ssl_session_init(&ctx->resume);
	ctx->have_resume = mbedtls_ssl_get_session(&conn->ssl,
	    &ctx->resume) == 0;
}

/*
 * Take the handshake as far as the buffered input allows: 0 when it is
 * done, MBEDTLS_ERR_SSL_WANT_READ while it waits for the peer, or the
 * error (MBEDTLS_ERR_SSL_CONN_EOF when the socket ended first).
 */
static int
tls_handshake_step(struct tls_conn *conn)
{
	int	ret;

	ret = mbedtls_ssl_handshake(&conn->ssl);
	if (ret == MBEDTLS_ERR_SSL_WANT_READ ||
	    ret == MBEDTLS_ERR_SSL_WANT_WRITE)
		return conn->raw_eof ? MBEDTLS_ERR_SSL_CONN_EOF :
		    MBEDTLS_ERR_SSL_WANT_READ;
	return ret;
}

/* Drive the handshake as far as the buffered input allows. */
int
tls_conn_handshake_uplink(struct tls_conn *conn)
{
	int	ret;

	if ((ret = tls_handshake_step(conn)) == MBEDTLS_ERR_SSL_WANT_READ)
		return 0;
	if (ret != 0) {
		tls_explain_handshake(conn, ret);
		return -1;
	}
	/* A resumed session passed chain, name and pins when it was made. */
	conn->resumed = tls_was_resumed(conn);
	if (!conn->resumed && tls_check_pins(conn) != 0) {
		conn->verify_failed = 1;
		return -1;
	}
	conn->verified = 1;
	if (!tls_compat_is_tls13(&conn->ssl))
		tls_save_session(conn);
	return 1;
}

/* Whether the handshake resumed an earlier session. */
int
tls_conn_resumed(const struct tls_conn *conn)
{
	return conn->resumed;
}

/* Whether the handshake failed on the chain, the name or the pins. */
int
tls_conn_verify_failed(const struct tls_conn *conn)
{
	return conn->verify_failed;
}

/* When the verified chain's first certificate expires; 0: unknown. */
time_t
tls_conn_chain_expires(const struct tls_conn *conn)
{
	return conn->verified && !conn->resumed ? conn->chain_expires : 0;
}

/*
 * A TLS 1.3 ticket arrived: keep the session, whose server was verified
 * (chain, name, pins) before any ticket could be read.
 */
static void
tls_new_ticket(struct tls_conn *conn)
{
	if (conn->verified)
		tls_save_session(conn);
}

/* Decrypt application data. */
int
tls_conn_read(struct tls_conn *conn, void *buf, size_t len)
{
	int	ret, held = 0;

	for (;;) {
		ret = mbedtls_ssl_read(&conn->ssl, buf, len);
		if (ret == TLS_ERR_NEW_TICKET) {
			tls_new_ticket(conn);
			held = 0;
			continue;
		}
		/*
		 * A TLS 1.3 ticket was read but is processed by the next call,
		 * which needs no more input; records after it may be buffered
		 * already, and no socket event would announce them.
		 */
		if (ret == MBEDTLS_ERR_SSL_WANT_READ && held++ == 0 &&
		    mbedtls_ssl_check_pending(&conn->ssl))
			continue;
		break;
	}
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
	case MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE:
		tls_explain_alert(conn, "session");
		return TLS_ERROR;
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

	/* A write first finishes processing a ticket that a read left. */
	while ((ret = mbedtls_ssl_write(&conn->ssl, buf, len)) ==
	    TLS_ERR_NEW_TICKET)
		tls_new_ticket(conn);
	if (ret >= 0)
		return ret;
	if (ret == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE)
		tls_explain_alert(conn, "session");
	else
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

/* Build the settings toward the service's mail clients. */
struct tls_ctx *
tls_ctx_new_local(const struct service_config *sc,
    const struct tls_keypair *pair, char *err, size_t errlen)
{
	struct tls_ctx	*ctx;

	/* TLS 1.2 or newer: min_tls is about the server. */
	if ((ctx = tls_ctx_alloc(MBEDTLS_SSL_IS_SERVER, TLS_VERSION_1_2, err,
	    errlen)) == NULL)
		return NULL;
	mbedtls_ssl_conf_authmode(&ctx->conf, MBEDTLS_SSL_VERIFY_NONE);
	if (tls_load_own_cert(ctx, "local_cert", sc->local_cert, "local_key",
	    sc->local_key, pair, err, errlen) != 0)
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
	return tls_conn_alloc(ctx, raw);
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

	if ((ret = tls_handshake_step(conn)) == MBEDTLS_ERR_SSL_WANT_READ)
		return 0;
	if (ret != 0) {
		tls_explain_local(conn, ret);
		return -1;
	}
	conn->verified = 1;
	return 1;
}

/*
 * ---- For mailtlsd -p (probe.c) --------------------------------------------
 * The probe makes its connection with the session's code above; these add
 * what it reports.  Its context verifies with authmode OPTIONAL, so that a
 * handshake whose chain fails still completes and the chain can be shown;
 * the probe then applies the session's verdict with
 * tls_conn_verify_result() (the same words as the session's log, through
 * tls_explain_verify()) and sends that server nothing more.  Pins are
 * required by tls_conn_handshake_uplink() as always.  A probe context is used for
 * one connection only: it never offers a session it saved.
 */
#include <mbedtls/base64.h>

/* The service's settings, but a failed verification does not abort. */
struct tls_ctx *
tls_ctx_new_probe(const struct service_config *sc, char *err, size_t errlen)
{
	struct tls_ctx	*ctx;

	if ((ctx = tls_ctx_new_uplink(sc, err, errlen)) == NULL)
		return NULL;
	if (ctx->verify)
		mbedtls_ssl_conf_authmode(&ctx->conf,
		    MBEDTLS_SSL_VERIFY_OPTIONAL);
	return ctx;
}

/* The chain the server sent, its own certificate first; NULL before the
 * handshake is over. */
const struct mbedtls_x509_crt *
tls_conn_peer_chain(const struct tls_conn *conn)
{
	return mbedtls_ssl_get_peer_cert(&conn->ssl);
}

/* The verification's outcome in the session's words, without touching
 * the connection's own error text. */
int
tls_conn_verify_result(struct tls_conn *conn, char *buf, size_t len)
{
	char		saved[TLS_ERROR_MAX];
	uint32_t	flags;

	if (!conn->ctx->verify) {
		snprintf(buf, len, "not checked (verify = no)");
		return -1;
	}
	if ((flags = mbedtls_ssl_get_verify_result(&conn->ssl)) == 0) {
		snprintf(buf, len, "verified");
		return 0;
	}
	memcpy(saved, conn->error, sizeof(saved));
	tls_explain_verify(conn, flags);
	snprintf(buf, len, "%s", conn->error);
	memcpy(conn->error, saved, sizeof(saved));
	return 1;
}

/* Base64 SHA-256 of the certificate's SubjectPublicKeyInfo. */
int
tls_cert_pin(const struct mbedtls_x509_crt *crt, char *buf, size_t len)
{
	uint8_t	digest[32];
	size_t	olen;

	if (tls_spki_sha256(crt, digest) != 0 ||
	    mbedtls_base64_encode((unsigned char *)buf, len, &olen, digest,
	    sizeof(digest)) != 0)
		return -1;
	return 0;
}
/* ---- End of the additions for mailtlsd -p --------------------------------- */

/* ---- Certificates, for localcert.c and probe.c --------------------------- */

/* An X.509 time as a moment; (time_t)-1 when it is none. */
time_t
tls_x509_time(const mbedtls_x509_time *x)
{
	struct tm	tm;

	memset(&tm, 0, sizeof(tm));
	tm.tm_year = x->year - 1900;
	tm.tm_mon = x->mon - 1;
	tm.tm_mday = x->day;
	tm.tm_hour = x->hour;
	tm.tm_min = x->min;
	tm.tm_sec = x->sec;
	return timegm(&tm);
}
