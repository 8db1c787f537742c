/*
 * proto_impl.h - what proto.c shares with proto_imap.c, proto_pop3.c and
 * proto_smtp.c: the per-protocol operations, the dialogue and filter
 * objects, and small helpers for lines, capability tokens and the FIFO of
 * expected responses.  Not for use outside the proto_*.c files.
 */
#ifndef MAILTLSD_PROTO_IMPL_H
#define MAILTLSD_PROTO_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "proto.h"

struct evbuffer;

#define PROTO_REASON_MAX	256	/* a dialogue or filter reason */
#define PROTO_TEXT_MAX		100	/* server text quoted in a reason */
#define PROTO_PAYLOAD_MAX	(1ULL << 31)	/* literal or BDAT chunk */
#define PROTO_USER_MAX		1024	/* OAuth2: a login's user name */
#define PROTO_USER_MAX_TEXT	"1024"
#define PROTO_PASSWORD_MAX	1024	/* and its password */
#define PROTO_TOKEN_MAX		8192	/* an access token */
#define PROTO_REFUSAL_MAX	400	/* text of a login refusal */
/* The longest PLAIN message: authzid, authcid and password. */
#define PROTO_PLAIN_MAX		(2 * PROTO_USER_MAX + PROTO_PASSWORD_MAX + 2)

/* What a server's capability list offers for an OAuth2 login. */
#define PROTO_MECH_XOAUTH2	0x01
#define PROTO_MECH_OAUTHBEARER	0x02
#define PROTO_MECH_SASL_IR	0x04	/* IMAP SASL-IR (RFC 4959) */

/* The states of a STARTTLS dialogue, shared by the three protocols. */
enum proto_dialogue_state {
	DLG_GREETING = 0,	/* waiting for the server's greeting */
	DLG_EHLO_SENT,		/* SMTP: EHLO sent, reading its reply */
	DLG_STARTTLS_SENT,	/* IMAP, SMTP: STARTTLS sent */
	DLG_STLS_SENT,		/* POP3: STLS sent */
	DLG_UPGRADED,		/* go-ahead seen: TLS starts */
	DLG_FAILED		/* aborted: see reason */
};

/* One plaintext STARTTLS dialogue. */
struct proto_dialogue {
	const struct proto_ops		*ops;
	enum proto_dialogue_state	 state;
	int				 lines;		/* lines seen */
	int				 reply_code;	/* SMTP: open reply */
	int				 reply_lines;	/* SMTP: its lines */
	int				 starttls;	/* SMTP: offered */
	char				 ehlo_name[CONFIG_HOST_MAX];
	char				 reason[PROTO_REASON_MAX];
};

/* Where an OAuth2 login taken from the client is. */
enum proto_oauth2_phase {
	OA_IDLE = 0,		/* no login under way: commands pass */
	OA_WANTED,		/* credentials taken: waiting for a token */
	OA_CAPS_WAIT,		/* token given: the mechanisms are due */
	OA_CAPS_SENT,		/* the filter's own capability request is out */
	OA_AUTH_SENT,		/* AUTH without initial response: "+" is due */
	OA_RESPONSE_SENT,	/* the response is out: the result is due */
	OA_ERROR_ANSWERED,	/* error challenge answered: failure due */
	OA_REJECTED,		/* the server refused the token */
	OA_REFUSING		/* POP3, SMTP: the refusal waits for its turn */
};

/*
 * The login of a filter that logs in with OAuth2 (proto_oauth2.c): what
 * the client gave, what the server offers, the exchange under way.  The
 * password and the token are wiped when the login ends and when the
 * filter is freed.
 */
struct proto_oauth2 {
	enum proto_oauth2_phase	 phase;
	char			 user[PROTO_USER_MAX + 1];
	size_t			 user_len;
	char			 password[PROTO_PASSWORD_MAX + 1];
	size_t			 password_len;
	char			*token;		/* until the AUTH is sent */
	size_t			 token_len;
	char			*response;	/* base64, until it is sent */
	size_t			 response_len;
	int			 bearer;	/* OAUTHBEARER, not XOAUTH2 */
	int			 mechs_known;	/* a capability list was seen */
	unsigned		 mechs;		/* PROTO_MECH_* it offered */
	struct evbuffer		*to_server;	/* the session's, kept */
	char			 status[64];	/* of an error challenge */
	char			 error[PROTO_REASON_MAX];
	char			 refusal[PROTO_REFUSAL_MAX + 80]; /* the line */
};

/* One pre-login filter; the protocol keeps its own state behind impl. */
struct proto_filter {
	const struct proto_ops	*ops;
	void			*impl;
	struct proto_oauth2	*oauth2;	/* NULL: logins pass */
	int			 done;
	int			 drop_greeting;	/* local STARTTLS greeted */
	int			 mail_taken;	/* SMTP: 354 without AUTH */
	unsigned		 refused;	/* client STARTTLS refused */
	proto_refusal_fn	*on_refusal;	/* told of refused logins */
	void			*refusal_arg;
	char			 refusal[PROTO_REASON_MAX]; /* its text */
	char			 reason[PROTO_REASON_MAX];
};

/* What one protocol does; proto.c dispatches through these. */
struct proto_ops {
	const char	*name;
	enum proto_verdict (*dialogue_line)(struct proto_dialogue *,
			    const char *, size_t, struct evbuffer *);
	int		(*write_greeting)(struct evbuffer *,
			    const struct service_config *);
	void		*(*filter_new)(void);
	void		(*filter_free)(void *);
	void		(*filter_expect_greeting)(struct proto_filter *);
	int		(*filter_server)(struct proto_filter *,
			    struct evbuffer *, struct evbuffer *);
	/* Take client bytes while their meaning is known: 1 to go on, 0
	 * to wait for more (or for the server), -1 when the filter failed. */
	int		(*client_step)(struct proto_filter *,
			    struct evbuffer *, struct evbuffer *,
			    struct evbuffer *);

	/* OAuth2.  Whether a capability answer the client asked for is
	 * still due from the server. */
	int		(*oauth2_caps_due)(struct proto_filter *);
	/* Ask the server's capabilities: 1 when asked, 0 when the
	 * protocol cannot (SMTP), -1 (no memory). */
	int		(*oauth2_ask_caps)(struct proto_filter *,
			    struct evbuffer *);
	/* Write the AUTH command for mech with the base64 response b64
	 * as its initial response where that can be: 1 when it was, 0
	 * when the response waits for "+", -1 (no memory). */
	int		(*oauth2_auth)(struct proto_filter *, struct evbuffer *,
			    const char *mech, const char *b64, size_t len);
	/* End the login with the protocol's failure line (text is safe). */
	int		(*oauth2_refuse)(struct proto_filter *, int temporary,
			    int alert, const char *text, struct evbuffer *);
};

extern const struct proto_ops	proto_imap_ops;
extern const struct proto_ops	proto_pop3_ops;
extern const struct proto_ops	proto_smtp_ops;

/* Responses expected from the server, oldest first (POP3, SMTP). */
struct proto_fifo {
	uint8_t		entry[PROTO_PIPELINE_MAX];
	int		head;
	int		count;
};

/* Dialogue helpers. */
enum proto_verdict proto_dialogue_fail(struct proto_dialogue *,
		    const char *what, const char *text, size_t len);
enum proto_verdict proto_dialogue_send(struct proto_dialogue *,
		    struct evbuffer *, enum proto_dialogue_state,
		    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Filter helpers. */
int		 proto_filter_fail(struct proto_filter *, const char *reason);
int		 proto_client_command(struct proto_filter *, const char *line,
		    size_t len);
int		 proto_line_find(struct evbuffer *, const char **line,
		    size_t *len, size_t *eol);
int		 proto_filter_line(struct proto_filter *, int server,
		    struct evbuffer *, const char **line, size_t *len,
		    size_t *eol);
int		 proto_sasl_line(struct proto_filter *, struct evbuffer *from,
		    struct evbuffer *to);
int		 proto_move(struct evbuffer *from, struct evbuffer *to,
		    size_t len);
int		 proto_move_payload(struct evbuffer *from, struct evbuffer *to,
		    uint64_t *left);

/* Words, tokens and numbers. */
int		 proto_word_is(const char *p, size_t len, const char *word);
size_t		 proto_word_len(const char *p, size_t len);
size_t		 proto_next_word(const char **p, size_t *len,
		    const char **word);
size_t		 proto_skip_word(const char *p, size_t len, const char *word);
int		 proto_token_hidden(const char *p, size_t len);
int		 proto_tokens_have(const char *p, size_t len, const char *word);
int		 proto_write_tokens(struct evbuffer *, const char *p,
		    size_t len);
int		 proto_parse_number(const char *p, size_t len, uint64_t max,
		    uint64_t *out);
void		 proto_safe_text(char *dst, size_t dstlen, const char *src,
		    size_t len);
void		 proto_text_append(char *dst, size_t dstlen,
		    const char *text, size_t len);
void		 proto_one_line(char *dst, size_t dstlen, const char *text);

/*
 * A refusal of a login that passes through (proto_filter_on_refusal()):
 * its text comes a line at a time (first: the refusal's first line), then
 * the report, which returns the words to add as one safe line in words
 * (PROTO_REFUSAL_MAX + 1 bytes), or NULL; with wordslen 0 it only
 * reports.
 */
void		 proto_refusal_add(struct proto_filter *, int first,
		    const char *text, size_t len);
const char	*proto_refusal_report(struct proto_filter *, char *words,
		    size_t wordslen);

/*
 * OAuth2 logins (proto_oauth2.c), for the protocol files: taking the
 * client's credentials, following the exchange with the server.
 */
enum proto_cred {
	PROTO_CRED_OK = 0,
	PROTO_CRED_BAD_BASE64,	/* not strict base64 */
	PROTO_CRED_MALFORMED,	/* not a PLAIN message */
	PROTO_CRED_AUTHZID,	/* PLAIN for another user than authcid */
	PROTO_CRED_TOO_LONG,	/* user or password over its bound */
	PROTO_CRED_BAD_USER	/* empty, or with control bytes */
};
void		 proto_oauth2_free(struct proto_filter *);
int		 proto_oauth2_busy(const struct proto_filter *);
int		 proto_oauth2_awaits_server(const struct proto_filter *);
enum proto_cred	 proto_oauth2_user(struct proto_filter *, const char *,
		    size_t);
enum proto_cred	 proto_oauth2_password(struct proto_filter *, const char *,
		    size_t);
enum proto_cred	 proto_oauth2_user_b64(struct proto_filter *, const char *,
		    size_t);
enum proto_cred	 proto_oauth2_password_b64(struct proto_filter *,
		    const char *, size_t);
enum proto_cred	 proto_oauth2_plain(struct proto_filter *, const char *b64,
		    size_t);
int		 proto_oauth2_user_ok(const struct proto_filter *);
void		 proto_oauth2_wanted(struct proto_filter *);
void		 proto_oauth2_forget(struct proto_filter *);
void		 proto_oauth2_caps(struct proto_filter *, unsigned mechs);
unsigned	 proto_oauth2_mech(const char *p, size_t len);
unsigned	 proto_oauth2_mechs(const char *p, size_t len);
int		 proto_oauth2_proceed(struct proto_filter *);
int		 proto_oauth2_caps_answered(struct proto_filter *);
int		 proto_oauth2_challenge(struct proto_filter *, const char *b64,
		    size_t len);
void		 proto_oauth2_error_text(struct proto_filter *,
		    const char *text, size_t len);
void		 proto_oauth2_rejected(struct proto_filter *);
void		 proto_oauth2_succeeded(struct proto_filter *);
int		 proto_base64_decode(const char *in, size_t len,
		    unsigned char *out, size_t outmax, size_t *outlen);
int		 proto_base64_encode(const unsigned char *in, size_t len,
		    char **out, size_t *outlen);
void		 proto_wipe(void *, size_t);

/* The FIFO of expected responses, and the filters built on it. */
typedef int	proto_settle_fn(struct proto_filter *, struct evbuffer *);
typedef int	proto_line_fn(struct proto_filter *, struct evbuffer *,
		    struct evbuffer *, const char *, size_t, size_t);
int		 proto_fifo_push(struct proto_fifo *, int type);
int		 proto_fifo_head(const struct proto_fifo *);
void		 proto_fifo_pop(struct proto_fifo *);
int		 proto_fifo_holds(const struct proto_fifo *, int type);
int		 proto_fifo_command(struct proto_filter *,
		    const struct proto_fifo *, struct evbuffer *,
		    const char **line, size_t *len, size_t *eol);
int		 proto_fifo_server(struct proto_filter *, struct evbuffer *in,
		    struct evbuffer *out, proto_settle_fn *,
		    proto_line_fn *);
int		 proto_fifo_refuse(struct proto_filter *, struct evbuffer *,
		    size_t n);
/*
 * The daemon's own answer for a FIFO entry of type: written to to_client
 * (or, with to_client NULL, only told): 1 when the daemon answers such an
 * entry, 0 when the server does, -1 (no memory).
 */
typedef int	proto_local_fn(struct proto_filter *, int type,
		    struct evbuffer *to_client);
int		 proto_fifo_local(struct proto_filter *, int type,
		    int oauth2_type, int local_first,
		    const char *const *answers, size_t n_answers,
		    struct evbuffer *to_client);
int		 proto_fifo_settle(struct proto_filter *, struct proto_fifo *,
		    proto_local_fn *, int authed, struct evbuffer *to_client);

#endif /* MAILTLSD_PROTO_IMPL_H */
