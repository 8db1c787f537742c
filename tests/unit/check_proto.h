/*
 * check_proto.h - what the protocol unit tests share: check_proto.c has
 * the common cases and runs these tables, check_proto_imap.c,
 * check_proto_pop3.c and check_proto_smtp.c hold each protocol's.
 */
#ifndef MAILTLSD_CHECK_PROTO_H
#define MAILTLSD_CHECK_PROTO_H

#include <event2/buffer.h>

#include "proto.h"


/*
 * Dialogues: server lines in, the verdict after the last one, the start of
 * the reason, everything sent to the server, the final state.
 */
struct dialogue_case {
	enum mail_protocol	 protocol;
	const char		*lines[10];
	enum proto_verdict	 verdict;
	const char		*reason;
	const char		*sent;
	const char		*state;
};

/*
 * proto_greeting_complete(): what a pooled connection may hold while it
 * waits (the server's whole greeting and nothing more).
 */
struct greeting_case {
	enum mail_protocol	 protocol;
	const char		*text;
	int			 want;
};

/*
 * Filter transcripts: what client (C) and server (S) send, in order, and
 * what each side must receive in the end.  Run by check_transcript_oauth2()
 * the filter logs in itself (proto_filter_use_oauth2()), and steps can
 * also be what the session does or checks at that point:
 *   T token    proto_filter_login_token() must return 0;
 *   t token    ... must return -1 and change nothing;
 *   R text     proto_filter_login_refuse() (r: temporary, A: alert);
 *   L state    proto_filter_login() is "NONE", "WANTED", "SENT" or
 *              "REJECTED";
 *   U user, P password, E error: the credentials, the login's error.
 */
struct step {
	char		 dir;
	const char	*data;
};

#define TRANSCRIPT_STEPS	24

struct transcript {
	const char		*name;
	enum mail_protocol	 protocol;
	int			 greeting;	/* implicit TLS */
	struct step		 steps[TRANSCRIPT_STEPS];
	const char		*to_client;
	const char		*to_server;
	int			 done;
	const char		*fail;		/* start of the reason */
};

/*
 * A transcript with refusals of logins that pass through: refused is each
 * server text the refusal callback (proto_filter_on_refusal()) was told,
 * followed by "\n".  The callback of every transcript run adds these
 * words for the texts that oauth2_explain_server_error() explains (SMTP
 * 5.7.139, 5.7.30, Gmail's application-specific password).  A filter
 * that logs in with OAuth2 must never call it.
 */
struct refusal_transcript {
	struct transcript	 t;
	const char		*refused;
};

#define UNIT_WORDS_OAUTH2	"mailtlsd: use oauth2 = NAME"
#define UNIT_WORDS_APP_PW	"mailtlsd: use an app password"


#define IMAP_REFUSAL(tag) tag " BAD STARTTLS is not available: " \
			    "mailtlsd already uses TLS to the server\r\n"
#define POP3_REFUSAL	"-ERR STLS not available: mailtlsd already uses " \
			"TLS to the server\r\n"
#define SMTP_REFUSAL	"454 4.7.0 STARTTLS not available: mailtlsd " \
			"already uses TLS to the server\r\n"

/* The whole content of buf as a NUL-terminated string (to free). */
char	*unit_drain_string(struct evbuffer *);
/* A service of the given protocol, as the configuration would give it. */
const struct service_config *unit_service(enum mail_protocol);

/* Run one dialogue table entry. */
void	 check_dialogue_case(const struct dialogue_case *);
/* Check one greeting_case (number i in its table). */
void	 check_greeting_case(const struct greeting_case *, int);
/* One transcript: whole, cut at every byte, and a byte at a time. */
void	 check_transcript(const struct transcript *);
/* The same with a filter that logs in with OAuth2. */
void	 check_transcript_oauth2(const struct transcript *);
/* A transcript with refusals, run as check_transcript() does. */
void	 check_refusal_transcript(const struct refusal_transcript *);

#endif /* MAILTLSD_CHECK_PROTO_H */
