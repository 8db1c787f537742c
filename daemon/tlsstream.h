/*
 * tlsstream.h - one TLS connection as a stream of plaintext: two evbuffers
 * over a socket bufferevent that carries the records.  The same shape at
 * both ends of a session: toward the mail server (tls_connect(), mailtlsd
 * is the TLS client) and toward the mail client (tls_accept(), local_tls,
 * mailtlsd is the TLS server).
 *
 * The owner reads plaintext from tls_stream_input() and writes plaintext
 * to tls_stream_output(); tls_stream_decrypt() and tls_stream_encrypt()
 * move records between those buffers and the socket's, each bounded by the
 * caller, so back-pressure works as on a plain socket.
 *
 * Why not a libevent filter bufferevent: its callbacks run on libevent's
 * schedule, so the moment the handshake completes, records mbedTLS already
 * holds (which raise no socket event), close_notify versus a bare EOF, and
 * whether the socket's output has really drained before shutdown() would
 * each need a side channel back to the owner.  Driven explicitly, the
 * owner decides when to decrypt and encrypt, with the same bounds and the
 * same socket callbacks it uses for plaintext.
 */
#ifndef MAILTLSD_TLSSTREAM_H
#define MAILTLSD_TLSSTREAM_H

#include <stddef.h>

struct bufferevent;
struct evbuffer;
struct tls_conn;
struct tls_ctx;
struct tls_stream;

/* TLS toward a mail server over raw (a socket bufferevent); NULL: memory. */
struct tls_stream *tls_connect(struct tls_ctx *, struct bufferevent *raw);

/* TLS toward a mail client over raw (local_tls); NULL: memory. */
struct tls_stream *tls_accept(struct tls_ctx *, struct bufferevent *raw);

/* Free everything but the socket bufferevent; NULL is fine. */
void		 tls_stream_free(struct tls_stream *);

/*
 * Drive the handshake with what has arrived: 1 complete (toward a server:
 * the chain, name and pins verified), 0 wait for input, -1 failed.
 */
int		 tls_stream_handshake(struct tls_stream *);

/* The decrypted bytes from the peer; the plaintext for the peer. */
struct evbuffer	*tls_stream_input(struct tls_stream *);
struct evbuffer	*tls_stream_output(struct tls_stream *);

/*
 * Decrypt the records that arrived into the input buffer until it holds
 * max bytes: TLS_WANT, or (from then on, every call) TLS_CLOSED, TLS_EOF
 * or TLS_ERROR (see tls.h).
 */
int		 tls_stream_decrypt(struct tls_stream *, size_t max);

/* Encrypt the output buffer while the socket holds less than max; 0, -1. */
int		 tls_stream_encrypt(struct tls_stream *, size_t max);

/* The socket reached end of file. */
void		 tls_stream_set_eof(struct tls_stream *);

/* Encrypt all that is left, then queue close_notify (once). */
void		 tls_stream_close_notify(struct tls_stream *);

/* Why the last call failed; the negotiated version and suite. */
const char	*tls_stream_error(const struct tls_stream *);
const char	*tls_stream_version(const struct tls_stream *);
const char	*tls_stream_ciphersuite(const struct tls_stream *);

/* Whether the handshake resumed a session of the service (toward a server). */
int		 tls_stream_resumed(const struct tls_stream *);

/* Whether the handshake failed on bytes that were not TLS records. */
int		 tls_stream_saw_plaintext(const struct tls_stream *);

/* The connection itself, for mailtlsd -p's report on the certificates. */
struct tls_conn	*tls_stream_conn(struct tls_stream *);

#endif /* MAILTLSD_TLSSTREAM_H */
