/*
 * mailtlsd_config.h - the mbedTLS 3.6 configuration of the library that
 * mailtlsd builds and links statically (scripts/mbedtls3 installs it as
 * that library's mbedtls/mbedtls_config.h, so the library and mailtlsd
 * see the same settings).  It replaces the whole of mbedTLS's default
 * configuration: what is not defined here is off.
 *
 * What mailtlsd needs, and nothing else:
 *  - TLS 1.3 and 1.2, as a client (toward mail servers) and as a server
 *    (local_tls toward mail clients); session tickets (1.2 and 1.3) for
 *    resumption; TLS 1.3 resumption only with (EC)DHE;
 *  - ECDHE key exchange over X25519, P-256 and P-384; the signatures that
 *    servers and CAs use: ECDSA over P-256, P-384 and P-521, RSA PKCS#1
 *    v1.5 and PSS, with SHA-256, SHA-384 and SHA-512;
 *  - AES-GCM and ChaCha20-Poly1305, nothing else, for records;
 *  - X.509: parsing, verification, the info texts of the log and of
 *    mailtlsd -p, writing the self-signed local_tls certificate
 *    (localcert.c: an ECDSA P-256 key, PEM);
 *  - base64 (pin_sha256 in config.c and tls.c), SHA-256 (pins), the error
 *    texts (mbedtls_strerror), the version functions, the random generator
 *    (entropy + CTR_DRBG), and the self-tests that make check runs
 *    (tests/mbedtls_selftest.c).
 *
 * SHA-1 stays, for parsing only: 24 roots of Debian's CA bundle are signed
 * with SHA-1, and mbedTLS refuses to parse a certificate whose signature
 * algorithm it does not know.  mailtlsd's certificate profile (tls.c) never
 * accepts a SHA-1 signature in a chain it verifies.
 *
 * Off, among others: TLS 1.2's RSA, DHE, PSK and static ECDH key exchanges,
 * CBC and every other cipher and mode, encrypt-then-MAC (CBC only),
 * renegotiation, max_fragment_length (OpenSSL servers echo it and mbedTLS
 * 3.6.6 then aborts a TLS 1.3 handshake), ALPN, DTLS, the session cache and
 * cookies of servers, the network and timing modules (libevent does that),
 * debug output, PSA key storage, encrypted private keys (mailtlsd reads
 * unencrypted keys only).
 *
 * Records: mailtlsd receives records of up to 16 KiB (servers send them,
 * and neither max_fragment_length nor record_size_limit is negotiated by
 * OpenSSL-based servers), but sends records of at most 4 KiB, which saves
 * 12 KiB per connection.  mbedTLS cannot split a handshake message over
 * several records, so a client_cert or local_cert chain must fit in one
 * 4 KiB record: mailtlsd checks that at start and with -t (tls.c).
 *
 * AES: the AES-NI and PCLMUL code of aesni.c is compiled with -maes
 * -mpclmul -mssse3 (aes.c with -maes -mpclmul) on x86-64 only, by
 * scripts/mbedtls3; it runs only after CPUID has shown that the processor
 * has those instructions, and the portable code remains for the others.
 */
#ifndef MAILTLSD_MBEDTLS_CONFIG_H
#define MAILTLSD_MBEDTLS_CONFIG_H

/* mailtlsd's own mark: mailtlsd -V says the library was built with this. */
#define MAILTLSD_MBEDTLS_CONFIG			1

/* ---- system --------------------------------------------------------- */
#define MBEDTLS_HAVE_ASM
#define MBEDTLS_HAVE_TIME
#define MBEDTLS_HAVE_TIME_DATE
#define MBEDTLS_PLATFORM_C
#define MBEDTLS_FS_IO		/* the tests and the bench read files */
#define MBEDTLS_SELF_TEST
#define MBEDTLS_ERROR_C
#define MBEDTLS_VERSION_C

/* ---- random numbers ------------------------------------------------- */
#define MBEDTLS_ENTROPY_C
#define MBEDTLS_CTR_DRBG_C
#define MBEDTLS_HMAC_DRBG_C	/* deterministic ECDSA */

/* ---- symmetric ciphers: AES-GCM and ChaCha20-Poly1305 --------------- */
#define MBEDTLS_CIPHER_C
#define MBEDTLS_AES_C
#define MBEDTLS_AESNI_C		/* x86-64, chosen at run time by CPUID */
#define MBEDTLS_AESCE_C		/* the same for ARMv8 */
#define MBEDTLS_GCM_C
#define MBEDTLS_CHACHA20_C
#define MBEDTLS_POLY1305_C
#define MBEDTLS_CHACHAPOLY_C

/* ---- hashes --------------------------------------------------------- */
#define MBEDTLS_MD_C
#define MBEDTLS_SHA1_C		/* parsing SHA-1-signed roots only: above */
#define MBEDTLS_SHA256_C
#define MBEDTLS_SHA384_C
#define MBEDTLS_SHA512_C
#define MBEDTLS_HKDF_C		/* TLS 1.3 key schedule */

/* ---- public keys ---------------------------------------------------- */
#define MBEDTLS_BIGNUM_C
#define MBEDTLS_RSA_C
#define MBEDTLS_PKCS1_V15
#define MBEDTLS_PKCS1_V21
#define MBEDTLS_ECP_C
#define MBEDTLS_ECP_NIST_OPTIM
#define MBEDTLS_ECP_DP_SECP256R1_ENABLED
#define MBEDTLS_ECP_DP_SECP384R1_ENABLED
#define MBEDTLS_ECP_DP_SECP521R1_ENABLED	/* ECDSA P-521 certificates */
#define MBEDTLS_ECP_DP_CURVE25519_ENABLED
#define MBEDTLS_ECDH_C
#define MBEDTLS_ECDSA_C
#define MBEDTLS_ECDSA_DETERMINISTIC
#define MBEDTLS_PK_C
#define MBEDTLS_PK_PARSE_C
#define MBEDTLS_PK_WRITE_C	/* pins (SPKI), the generated key */

/* ---- encodings ------------------------------------------------------ */
#define MBEDTLS_ASN1_PARSE_C
#define MBEDTLS_ASN1_WRITE_C
#define MBEDTLS_OID_C
#define MBEDTLS_BASE64_C
#define MBEDTLS_PEM_PARSE_C
#define MBEDTLS_PEM_WRITE_C

/* ---- X.509 ---------------------------------------------------------- */
#define MBEDTLS_X509_USE_C
#define MBEDTLS_X509_CRT_PARSE_C
#define MBEDTLS_X509_RSASSA_PSS_SUPPORT
#define MBEDTLS_X509_CREATE_C
#define MBEDTLS_X509_CRT_WRITE_C

/* ---- PSA crypto: TLS 1.3 runs on it ---------------------------------- */
#define MBEDTLS_PSA_CRYPTO_C
#define MBEDTLS_PSA_KEY_STORE_DYNAMIC

/* ---- TLS ------------------------------------------------------------ */
#define MBEDTLS_SSL_TLS_C
#define MBEDTLS_SSL_CLI_C
#define MBEDTLS_SSL_SRV_C
#define MBEDTLS_SSL_PROTO_TLS1_2
#define MBEDTLS_SSL_PROTO_TLS1_3
#define MBEDTLS_SSL_TLS1_3_COMPATIBILITY_MODE
#define MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_EPHEMERAL_ENABLED
#define MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_PSK_EPHEMERAL_ENABLED
#define MBEDTLS_KEY_EXCHANGE_ECDHE_ECDSA_ENABLED
#define MBEDTLS_KEY_EXCHANGE_ECDHE_RSA_ENABLED
#define MBEDTLS_SSL_SESSION_TICKETS
#define MBEDTLS_SSL_TICKET_C	/* the bench's TLS server (bench/ssl_mem.c) */
#define MBEDTLS_SSL_SERVER_NAME_INDICATION
#define MBEDTLS_SSL_EXTENDED_MASTER_SECRET
#define MBEDTLS_SSL_KEEP_PEER_CERTIFICATE	/* pins, mailtlsd -p */
#define MBEDTLS_SSL_ALL_ALERT_MESSAGES

/* The suites tls.c offers; the library compiles in no other. */
#define MBEDTLS_SSL_CIPHERSUITES \
	MBEDTLS_TLS1_3_AES_128_GCM_SHA256, \
	MBEDTLS_TLS1_3_AES_256_GCM_SHA384, \
	MBEDTLS_TLS1_3_CHACHA20_POLY1305_SHA256, \
	MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, \
	MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, \
	MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, \
	MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, \
	MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, \
	MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256

/* Receive 16 KiB records, send 4 KiB ones: see the top of this file. */
#define MBEDTLS_SSL_IN_CONTENT_LEN		16384
#define MBEDTLS_SSL_OUT_CONTENT_LEN		4096

#endif /* MAILTLSD_MBEDTLS_CONFIG_H */
