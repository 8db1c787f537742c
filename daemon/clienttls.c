/*
 * clienttls.c - TLS toward the mail client: a server-end tls_conn over the
 * client's socket bufferevent, seen by the session as two plaintext
 * evbuffers.
 *
 * Why not a libevent filter bufferevent: its callbacks run on libevent's
 * schedule, so the moment the handshake completes, records mbedTLS already
 * holds (which raise no socket event), close_notify versus a bare EOF, and
 * whether the socket's output has really drained before shutdown() would
 * each need a side channel back to the session.  Driven explicitly, the
 * session decides when to decrypt and encrypt, with the same bounds and
 * the same read/write callbacks it uses for a plain client.
 */
#include <stdlib.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "clienttls.h"
#include "tls.h"

#define CLIENTTLS_CHUNK	(16 * 1024)	/* one TLS record */

struct clienttls {
	struct tls_conn		*tls;
	struct bufferevent	*raw;
	struct evbuffer		*in;		/* decrypted from the client */
	struct evbuffer		*out;		/* to encrypt for the client */
	int			 eof;		/* the socket reached its end */
	int			 ended;		/* TLS_CLOSED, _EOF, _ERROR */
};

/* TLS as the server end over raw. */
struct clienttls *
clienttls_new(struct tls_ctx *ctx, struct bufferevent *raw)
{
	struct clienttls	*ct;

	if ((ct = calloc(1, sizeof(*ct))) == NULL)
		return NULL;
	ct->raw = raw;
	if ((ct->in = evbuffer_new()) == NULL ||
	    (ct->out = evbuffer_new()) == NULL ||
	    (ct->tls = tls_conn_new_local(ctx, raw)) == NULL) {
		clienttls_free(ct);
		return NULL;
	}
	return ct;
}

/* Free everything but the socket bufferevent; NULL is fine. */
void
clienttls_free(struct clienttls *ct)
{
	if (ct == NULL)
		return;
	tls_conn_free(ct->tls);
	if (ct->in != NULL)
		evbuffer_free(ct->in);
	if (ct->out != NULL)
		evbuffer_free(ct->out);
	free(ct);
}

/* Drive the handshake with what has arrived. */
int
clienttls_handshake(struct clienttls *ct)
{
	return tls_conn_handshake_local(ct->tls);
}

/* The client's decrypted bytes. */
struct evbuffer *
clienttls_input(struct clienttls *ct)
{
	return ct->in;
}

/* The plaintext waiting to be encrypted for the client. */
struct evbuffer *
clienttls_output(struct clienttls *ct)
{
	return ct->out;
}

/* Decrypt arrived records until the input holds max bytes. */
int
clienttls_decrypt(struct clienttls *ct, size_t max)
{
	struct evbuffer_iovec	vec;
	int			n;

	while (ct->ended == 0 && evbuffer_get_length(ct->in) < max) {
		/* Reserve no memory unless a record may be there to read. */
		if (!tls_conn_pending(ct->tls) &&
		    evbuffer_get_length(bufferevent_get_input(ct->raw)) == 0)
			n = ct->eof ? TLS_EOF : TLS_WANT;
		else {
			if (evbuffer_reserve_space(ct->in, CLIENTTLS_CHUNK,
			    &vec, 1) < 1)
				return TLS_ERROR;
			if (vec.iov_len > CLIENTTLS_CHUNK)
				vec.iov_len = CLIENTTLS_CHUNK;
			n = tls_conn_read(ct->tls, vec.iov_base, vec.iov_len);
			if (n > 0)
				vec.iov_len = (size_t)n;
			evbuffer_commit_space(ct->in, &vec, n > 0 ? 1 : 0);
		}
		if (n == TLS_WANT)
			return TLS_WANT;
		if (n < 0)
			ct->ended = n;
	}
	return ct->ended != 0 ? ct->ended : TLS_WANT;
}

/* Encrypt the output while the socket holds less than max. */
int
clienttls_encrypt(struct clienttls *ct, size_t max)
{
	struct evbuffer		*raw_out = bufferevent_get_output(ct->raw);
	struct evbuffer_iovec	 vec;
	size_t			 len;
	int			 n;

	while (evbuffer_get_length(ct->out) > 0 &&
	    evbuffer_get_length(raw_out) < max) {
		if (evbuffer_peek(ct->out, -1, NULL, &vec, 1) < 1)
			break;
		len = vec.iov_len < CLIENTTLS_CHUNK ? vec.iov_len :
		    CLIENTTLS_CHUNK;
		if ((n = tls_conn_write(ct->tls, vec.iov_base, len)) < 0)
			return -1;
		evbuffer_drain(ct->out, (size_t)n);
	}
	return 0;
}

/* The socket reached end of file. */
void
clienttls_set_eof(struct clienttls *ct)
{
	ct->eof = 1;
	tls_conn_set_eof(ct->tls);
}

/* Encrypt what is left, then close_notify. */
void
clienttls_close_notify(struct clienttls *ct)
{
	(void)clienttls_encrypt(ct, (size_t)-1);
	evbuffer_drain(ct->out, evbuffer_get_length(ct->out));
	tls_conn_close_notify(ct->tls);
}

/* Why the last call failed. */
const char *
clienttls_error(const struct clienttls *ct)
{
	return tls_conn_error(ct->tls);
}

/* The negotiated protocol version. */
const char *
clienttls_version(const struct clienttls *ct)
{
	return tls_conn_version(ct->tls);
}

/* The negotiated cipher suite. */
const char *
clienttls_ciphersuite(const struct clienttls *ct)
{
	return tls_conn_ciphersuite(ct->tls);
}
