/*
 * tls.h - mbedTLS over libevent bufferevents, for both ends of a session,
 * named by role: the uplink (toward the mail server, where mailtlsd is the
 * TLS client) and local (toward the mail client with local_tls, where
 * mailtlsd is the TLS server).
 *
 * A tls_ctx is built once per service and configuration load: the parsed CA
 * chain, the client_cert, the pins and one mbedtls_ssl_config.  A tls_conn
 * is one TLS connection whose records travel through the input and output
 * evbuffers of a plain socket bufferevent; it never touches the socket
 * itself, so nothing here blocks.  Sessions use it through tlsstream.h.
 */
#ifndef MAILTLSD_TLS_H
#define MAILTLSD_TLS_H

#include <stddef.h>
#include <time.h>

struct bufferevent;
struct service_config;
struct tls_ctx;
struct tls_conn;

/* Results of tls_conn_read(), besides a positive byte count. */
#define TLS_WANT	0	/* nothing decrypted yet: wait for more input */
#define TLS_ERROR	(-1)	/* fatal: see tls_conn_error() */
#define TLS_CLOSED	(-2)	/* the peer sent close_notify */
#define TLS_EOF		(-3)	/* the socket closed without close_notify */

/* Seed the process-wide random generator.  0 or -1. */
int		 tls_init(void);
void		 tls_cleanup(void);

/* Mix fresh entropy in, in a child after fork(). */
int		 tls_reseed(void);

/* The mbedTLS version this process runs with, "2.28.3". */
const char	*tls_library_version(void);

/*
 * Whether mbedTLS version number (as MBEDTLS_VERSION_NUMBER, 0x021C0300 for
 * 2.28.3; 0 for the library this process runs with) is older than the last
 * release of its branch that mailtlsd knows of, or from a branch past its
 * end of life: 1 with a warning in buf, else 0.
 */
int		 tls_library_outdated(unsigned long number, char *buf,
		    size_t len);

/* Build a service's TLS settings; NULL with a reason in err. */
struct tls_ctx	*tls_ctx_new_uplink(const struct service_config *, char *err,
		    size_t errlen);
void		 tls_ctx_free(struct tls_ctx *);

/* A new connection toward a mail server over raw, or NULL (memory). */
struct tls_conn	*tls_conn_new_uplink(struct tls_ctx *, struct bufferevent *raw);
void		 tls_conn_free(struct tls_conn *);

/* The socket reached end of file: reads no longer wait for more. */
void		 tls_conn_set_eof(struct tls_conn *);

/*
 * Drive the handshake with what has arrived: 1 when it is complete and the
 * server verified (chain, name and pins), 0 to wait for input, -1 on
 * failure with the reason in tls_conn_error().
 */
int		 tls_conn_handshake_uplink(struct tls_conn *);

/* Decrypt up to len bytes: a count > 0 or one of TLS_WANT/ERROR/CLOSED/EOF. */
int		 tls_conn_read(struct tls_conn *, void *buf, size_t len);

/* Whether decrypted or buffered record data waits without a socket event. */
int		 tls_conn_pending(const struct tls_conn *);

/* Encrypt len bytes into the output buffer: bytes taken or TLS_ERROR. */
int		 tls_conn_write(struct tls_conn *, const void *buf, size_t len);

/* Queue close_notify (once). */
void		 tls_conn_close_notify(struct tls_conn *);

/* Why the last call failed, in plain words. */
const char	*tls_conn_error(const struct tls_conn *);

/* Whether the handshake resumed an earlier session of the service. */
int		 tls_conn_resumed(const struct tls_conn *);

/* Whether the handshake failed on bytes that were not TLS records. */
int		 tls_conn_saw_plaintext(const struct tls_conn *);

/* Whether the handshake failed verifying the chain, the name or pins. */
int		 tls_conn_verify_failed(const struct tls_conn *);

/*
 * After a verified full handshake, when the first certificate of the
 * verified chain expires; 0 when unknown (resumed, verify = no).
 */
time_t		 tls_conn_chain_expires(const struct tls_conn *);

/* The negotiated version and suite, for the log. */
const char	*tls_conn_version(const struct tls_conn *);
const char	*tls_conn_ciphersuite(const struct tls_conn *);

/*
 * ---- TLS toward mail clients (local_tls) ---------------------------------
 * The same layer as the server end: a tls_ctx per service and load, a
 * tls_conn over the client's socket bufferevent; tls_conn_read, _write,
 * _pending, _close_notify, _set_eof, _error, _version, _ciphersuite and
 * _free work for both ends.
 */

/*
 * A certificate (with any intermediates after it) and its key, PEM or DER,
 * as read from their files; each with a NUL after len bytes.
 */
struct tls_keypair {
	const unsigned char	*cert;
	size_t			 cert_len;
	const unsigned char	*key;
	size_t			 key_len;
};

/*
 * The settings mailtlsd uses as a TLS server toward clients: pair when not
 * NULL (the files already read, named local_cert/local_key in errors),
 * else the service's local_cert/local_key, TLS 1.2 or newer, the same
 * ECDHE/AEAD suites, no renegotiation, no client certificates.  NULL with
 * a reason in err.
 */
struct tls_ctx	*tls_ctx_new_local(const struct service_config *,
		    const struct tls_keypair *pair, char *err, size_t errlen);

/* A new server-end connection over raw (a client's socket), or NULL. */
struct tls_conn	*tls_conn_new_local(struct tls_ctx *, struct bufferevent *raw);

/* Drive a server-end handshake: 1 done, 0 wait for input, -1 failed. */
int		 tls_conn_handshake_local(struct tls_conn *);

/* The process's random generator, as an mbedTLS f_rng (p_rng unused). */
int		 tls_random(void *p_rng, unsigned char *buf, size_t len);

/*
 * ---- For mailtlsd -p (probe.c) ------------------------------------------
 */
struct mbedtls_x509_crt;

/*
 * The service's settings (tls_ctx_new_uplink) for one probe connection, except
 * that a chain or name that fails verification does not end the
 * handshake: the probe shows the chain, then judges it with
 * tls_conn_verify_result().  Pins are still required by
 * tls_conn_handshake_uplink().  NULL with a reason in err.
 */
struct tls_ctx	*tls_ctx_new_probe(const struct service_config *, char *err,
		    size_t errlen);

/* The certificates the server sent, its own first; NULL until the
 * handshake is over. */
const struct mbedtls_x509_crt *tls_conn_peer_chain(const struct tls_conn *);

/*
 * Whether the chain and name verified: 0 ("verified"), 1 with the reason in
 * the session's words ("certificate name mismatch, expected HOST"), or -1
 * when verify = no; the text in buf.
 */
int		 tls_conn_verify_result(struct tls_conn *, char *buf,
		    size_t len);

/* A certificate's pin_sha256 (base64 SHA-256 of its SubjectPublicKeyInfo)
 * into buf (45 bytes or more); 0 or -1. */
int		 tls_cert_pin(const struct mbedtls_x509_crt *, char *buf,
		    size_t len);

/*
 * ---- Certificates (localcert.c, probe.c) --------------------------------
 */
struct mbedtls_x509_time;

/* An X.509 time as a moment; (time_t)-1 when it is none. */
time_t		 tls_x509_time(const struct mbedtls_x509_time *);

#endif /* MAILTLSD_TLS_H */
