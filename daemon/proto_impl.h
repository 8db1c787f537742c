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

/* One pre-login filter; the protocol keeps its own state behind impl. */
struct proto_filter {
	const struct proto_ops	*ops;
	void			*impl;
	int			 done;
	int			 drop_greeting;	/* local STARTTLS greeted */
	int			 mail_taken;	/* SMTP: 354 without AUTH */
	unsigned		 refused;	/* client STARTTLS refused */
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
size_t		 proto_skip_word(const char *p, size_t len, const char *word);
int		 proto_token_hidden(const char *p, size_t len);
int		 proto_tokens_have(const char *p, size_t len, const char *word);
int		 proto_write_tokens(struct evbuffer *, const char *p,
		    size_t len);
int		 proto_parse_number(const char *p, size_t len, uint64_t max,
		    uint64_t *out);
void		 proto_safe_text(char *dst, size_t dstlen, const char *src,
		    size_t len);

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
int		 proto_fifo_settle(struct proto_filter *, struct proto_fifo *,
		    int local, const char *answer, int authed,
		    struct evbuffer *to_client);

#endif /* MAILTLSD_PROTO_IMPL_H */
