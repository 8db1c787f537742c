/*
 * tlsstream.c - a tls_conn over a socket bufferevent, seen by its owner as
 * two plaintext evbuffers; the one shape of TLS at both ends of a session
 * (see tlsstream.h).
 */
#include <stdlib.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "readahead.h"
#include "tls.h"
#include "tlsstream.h"

#define TLS_STREAM_CHUNK	(16 * 1024)	/* one TLS record */
#define TLS_STREAM_RECORD_MAX	(TLS_STREAM_CHUNK + 256 + 5)	/* sealed */
#define TLS_STREAM_READAHEAD	(64 * 1024)	/* records read at once */

struct tls_stream {
	struct tls_conn		*tls;
	struct bufferevent	*raw;
	struct evbuffer		*in;		/* decrypted from the peer */
	struct evbuffer		*out;		/* to encrypt for the peer */
	int			 accepted;	/* mailtlsd is the TLS server */
	int			 eof;		/* the socket reached its end */
	int			 ended;		/* TLS_CLOSED, _EOF, _ERROR */
};

/* A stream with its buffers, without its connection yet. */
static struct tls_stream *
tls_stream_new(struct bufferevent *raw)
{
	struct tls_stream	*ts;

	if ((ts = calloc(1, sizeof(*ts))) == NULL)
		return NULL;
	ts->raw = raw;
	if ((ts->in = evbuffer_new()) == NULL ||
	    (ts->out = evbuffer_new()) == NULL) {
		tls_stream_free(ts);
		return NULL;
	}
	return ts;
}

/* TLS toward a mail server over raw. */
struct tls_stream *
tls_connect(struct tls_ctx *ctx, struct bufferevent *raw)
{
	struct tls_stream	*ts;

	if ((ts = tls_stream_new(raw)) == NULL)
		return NULL;
	if ((ts->tls = tls_conn_new_uplink(ctx, raw)) == NULL) {
		tls_stream_free(ts);
		return NULL;
	}
	return ts;
}

/* TLS toward a mail client over raw. */
struct tls_stream *
tls_accept(struct tls_ctx *ctx, struct bufferevent *raw)
{
	struct tls_stream	*ts;

	if ((ts = tls_stream_new(raw)) == NULL)
		return NULL;
	ts->accepted = 1;
	if ((ts->tls = tls_conn_new_local(ctx, raw)) == NULL) {
		tls_stream_free(ts);
		return NULL;
	}
	return ts;
}

/* Free everything but the socket bufferevent; NULL is fine. */
void
tls_stream_free(struct tls_stream *ts)
{
	if (ts == NULL)
		return;
	tls_conn_free(ts->tls);
	if (ts->in != NULL)
		evbuffer_free(ts->in);
	if (ts->out != NULL)
		evbuffer_free(ts->out);
	free(ts);
}

/* Drive the handshake with what has arrived. */
int
tls_stream_handshake(struct tls_stream *ts)
{
	return ts->accepted ? tls_conn_handshake_local(ts->tls) :
	    tls_conn_handshake_uplink(ts->tls);
}

/* The peer's decrypted bytes. */
struct evbuffer *
tls_stream_input(struct tls_stream *ts)
{
	return ts->in;
}

/* The plaintext waiting to be encrypted for the peer. */
struct evbuffer *
tls_stream_output(struct tls_stream *ts)
{
	return ts->out;
}

/* Decrypt arrived records until the input holds max bytes. */
int
tls_stream_decrypt(struct tls_stream *ts, size_t max)
{
	struct evbuffer_iovec	vec;
	int			n;

	while (ts->ended == 0 && evbuffer_get_length(ts->in) < max) {
		/*
		 * Less than a whole record at hand: take what else the socket
		 * holds now, several records in one read rather than 4 KiB a
		 * read event (readahead.h).
		 */
		if (evbuffer_get_length(bufferevent_get_input(ts->raw)) <
		    TLS_STREAM_RECORD_MAX)
			(void)readahead_fill(ts->raw, TLS_STREAM_READAHEAD);
		/* Reserve no memory unless a record may be there to read. */
		if (!tls_conn_pending(ts->tls) &&
		    evbuffer_get_length(bufferevent_get_input(ts->raw)) == 0)
			n = ts->eof ? TLS_EOF : TLS_WANT;
		else {
			if (evbuffer_reserve_space(ts->in, TLS_STREAM_CHUNK,
			    &vec, 1) < 1)
				return TLS_ERROR;
			if (vec.iov_len > TLS_STREAM_CHUNK)
				vec.iov_len = TLS_STREAM_CHUNK;
			n = tls_conn_read(ts->tls, vec.iov_base, vec.iov_len);
			if (n > 0)
				vec.iov_len = (size_t)n;
			evbuffer_commit_space(ts->in, &vec, n > 0 ? 1 : 0);
		}
		if (n == TLS_WANT)
			return TLS_WANT;
		if (n < 0)
			ts->ended = n;
	}
	return ts->ended != 0 ? ts->ended : TLS_WANT;
}

/* Encrypt the output while the socket holds less than max. */
int
tls_stream_encrypt(struct tls_stream *ts, size_t max)
{
	struct evbuffer		*raw_out = bufferevent_get_output(ts->raw);
	struct evbuffer_iovec	 vec;
	size_t			 len;
	int			 n;

	while (evbuffer_get_length(ts->out) > 0 &&
	    evbuffer_get_length(raw_out) < max) {
		if (evbuffer_peek(ts->out, -1, NULL, &vec, 1) < 1)
			break;
		len = vec.iov_len < TLS_STREAM_CHUNK ? vec.iov_len :
		    TLS_STREAM_CHUNK;
		if ((n = tls_conn_write(ts->tls, vec.iov_base, len)) < 0)
			return -1;
		evbuffer_drain(ts->out, (size_t)n);
	}
	return 0;
}

/* The socket reached end of file. */
void
tls_stream_set_eof(struct tls_stream *ts)
{
	ts->eof = 1;
	tls_conn_set_eof(ts->tls);
}

/* Encrypt what is left, then close_notify. */
void
tls_stream_close_notify(struct tls_stream *ts)
{
	(void)tls_stream_encrypt(ts, (size_t)-1);
	evbuffer_drain(ts->out, evbuffer_get_length(ts->out));
	tls_conn_close_notify(ts->tls);
}

/* Why the last call failed. */
const char *
tls_stream_error(const struct tls_stream *ts)
{
	return tls_conn_error(ts->tls);
}

/* The negotiated protocol version. */
const char *
tls_stream_version(const struct tls_stream *ts)
{
	return tls_conn_version(ts->tls);
}

/* The negotiated cipher suite. */
const char *
tls_stream_ciphersuite(const struct tls_stream *ts)
{
	return tls_conn_ciphersuite(ts->tls);
}

/* Whether the handshake resumed an earlier session. */
int
tls_stream_resumed(const struct tls_stream *ts)
{
	return tls_conn_resumed(ts->tls);
}

/* Whether the handshake failed on bytes that were not TLS records. */
int
tls_stream_saw_plaintext(const struct tls_stream *ts)
{
	return tls_conn_saw_plaintext(ts->tls);
}

/* The connection, for the probe's report. */
struct tls_conn *
tls_stream_conn(struct tls_stream *ts)
{
	return ts->tls;
}
