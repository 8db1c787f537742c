/*
 * tls.h - mbedTLS over libevent bufferevents, client side.
 *
 * A tls_ctx is built once per service and configuration load: the parsed CA
 * chain, the client certificate, the pins and one mbedtls_ssl_config.  A
 * tls_conn is one TLS connection whose records travel through the input and
 * output evbuffers of a plain socket bufferevent; it never touches the
 * socket itself, so nothing here blocks.
 */
#ifndef MAILTLSD_TLS_H
#define MAILTLSD_TLS_H

#include <stddef.h>

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

/* Build a service's TLS settings; NULL with a reason in err. */
struct tls_ctx	*tls_ctx_new(const struct service_config *, char *err,
		    size_t errlen);
void		 tls_ctx_free(struct tls_ctx *);

/* A new client connection over raw, or NULL (out of memory). */
struct tls_conn	*tls_conn_new(struct tls_ctx *, struct bufferevent *raw);
void		 tls_conn_free(struct tls_conn *);

/* The socket reached end of file: reads no longer wait for more. */
void		 tls_conn_set_eof(struct tls_conn *);

/*
 * Drive the handshake with what has arrived: 1 when it is complete and the
 * server verified (chain, name and pins), 0 to wait for input, -1 on
 * failure with the reason in tls_conn_error().
 */
int		 tls_conn_handshake(struct tls_conn *);

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

/* The negotiated version and suite, for the log. */
const char	*tls_conn_version(const struct tls_conn *);
const char	*tls_conn_ciphersuite(const struct tls_conn *);

#endif /* MAILTLSD_TLS_H */
