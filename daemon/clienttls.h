/*
 * clienttls.h - TLS toward the mail client (local_tls), as two plaintext
 * evbuffers over the client's socket bufferevent.
 *
 * The session keeps working on plaintext: it reads the client's decrypted
 * bytes from clienttls_input() and writes what the client must receive to
 * clienttls_output(); clienttls_decrypt() and clienttls_encrypt() move
 * records between those buffers and the socket's, each bounded by the
 * caller, so back-pressure works as on a plain socket.
 */
#ifndef MAILTLSD_CLIENTTLS_H
#define MAILTLSD_CLIENTTLS_H

#include <stddef.h>

struct bufferevent;
struct evbuffer;
struct clienttls;
struct tls_ctx;

/* TLS as the server end over raw (a socket bufferevent); NULL: no memory. */
struct clienttls *clienttls_new(struct tls_ctx *, struct bufferevent *raw);
void		 clienttls_free(struct clienttls *);

/* Drive the handshake: 1 complete, 0 wait for input, -1 failed. */
int		 clienttls_handshake(struct clienttls *);

/* The decrypted bytes from the client; the plaintext for the client. */
struct evbuffer	*clienttls_input(struct clienttls *);
struct evbuffer	*clienttls_output(struct clienttls *);

/*
 * Decrypt the records that arrived into the input buffer until it holds
 * max bytes: TLS_WANT, or (from then on, every call) TLS_CLOSED, TLS_EOF
 * or TLS_ERROR (see tls.h).
 */
int		 clienttls_decrypt(struct clienttls *, size_t max);

/* Encrypt the output buffer while the socket holds less than max; 0, -1. */
int		 clienttls_encrypt(struct clienttls *, size_t max);

/* The socket reached end of file. */
void		 clienttls_set_eof(struct clienttls *);

/* Encrypt all that is left, then queue close_notify (once). */
void		 clienttls_close_notify(struct clienttls *);

/* Why the last call failed; the negotiated version and suite. */
const char	*clienttls_error(const struct clienttls *);
const char	*clienttls_version(const struct clienttls *);
const char	*clienttls_ciphersuite(const struct clienttls *);

#endif /* MAILTLSD_CLIENTTLS_H */
