/*
 * proto_local.h - the plaintext opening mailtlsd speaks itself toward a
 * mail client when local_tls = starttls: a greeting that offers
 * STARTTLS/STLS, the few commands allowed before it, and the go-ahead.
 *
 * Pure: client bytes in, the daemon's answers out, no sockets; nothing the
 * client says here ever reaches the mail server.
 */
#ifndef MAILTLSD_PROTO_LOCAL_H
#define MAILTLSD_PROTO_LOCAL_H

#include "config.h"

struct evbuffer;
struct proto_local;

#define PROTO_LOCAL_LINE_MAX	1024	/* bytes per command line */
#define PROTO_LOCAL_LINE_MAX_TEXT "1024"
#define PROTO_LOCAL_COMMANDS	32	/* commands before STARTTLS */

/* What the opening wants next. */
enum proto_local_verdict {
	PROTO_LOCAL_MORE,	/* feed more client bytes */
	PROTO_LOCAL_UPGRADE,	/* go-ahead written: the TLS handshake next */
	PROTO_LOCAL_QUIT,	/* the client said goodbye: flush and close */
	PROTO_LOCAL_FAIL	/* closing line written: proto_local_reason() */
};

/* A new opening for a service (its protocol and names); NULL: no memory. */
struct proto_local *proto_local_new(const struct service_config *);
void		 proto_local_free(struct proto_local *);

/* Append the greeting that offers STARTTLS/STLS; 0 or -1. */
int		 proto_local_greeting(struct proto_local *,
		    struct evbuffer *to_client);

/*
 * Take the complete command lines of from_client, appending the answers to
 * to_client, until one of them ends the opening.  After
 * PROTO_LOCAL_UPGRADE the bytes that follow the STARTTLS line stay in
 * from_client: the caller must refuse any (an injection).  A partial line
 * stays too (PROTO_LOCAL_MORE).
 */
enum proto_local_verdict proto_local_input(struct proto_local *,
		    struct evbuffer *from_client, struct evbuffer *to_client);

/* Why the opening failed or ended, in plain words for the log. */
const char	*proto_local_reason(const struct proto_local *);

/* The state name, for debug lines. */
const char	*proto_local_state(const struct proto_local *);

#endif /* MAILTLSD_PROTO_LOCAL_H */
