/*
 * proto.h - what mailtlsd says and understands of IMAP, POP3 and SMTP.
 *
 * Three pieces, each pure (bytes in, bytes out, no sockets) so that they can
 * be tested by feeding input at every split point:
 *
 *  - refusal lines for clients ("* BYE [UNAVAILABLE]", "-ERR [SYS/TEMP]",
 *    "421 4.7.0");
 *  - the plaintext STARTTLS dialogue with the server (tls = starttls): read
 *    the greeting, ask for STARTTLS/STLS, recognise the go-ahead; anything
 *    unexpected fails closed;
 *  - after TLS, the greeting mailtlsd writes for the client, and the filter
 *    that sits between client and server until the client has logged in:
 *    it hides STARTTLS, STLS and LOGINDISABLED from capability lists,
 *    answers a client's own STARTTLS/STLS itself, honours IMAP literals,
 *    SMTP DATA/BDAT and SASL exchanges so that no payload is parsed as a
 *    command or response, reports a server's refusal of the client's
 *    login with room for mailtlsd's words, and steps aside after
 *    successful authentication.
 */
#ifndef MAILTLSD_PROTO_H
#define MAILTLSD_PROTO_H

#include <stddef.h>

#include "config.h"

struct evbuffer;
struct proto_dialogue;
struct proto_filter;

/* Bytes per line before login: RFC 4954 asks for 12288 for SASL. */
#define PROTO_LINE_MAX		16384
#define PROTO_LINE_MAX_TEXT	"16384"
#define PROTO_DIALOGUE_LINES	64	/* lines in the STARTTLS dialogue */
#define PROTO_PIPELINE_MAX	64	/* outstanding commands before login */
/*
 * Before login the filter takes no client bytes while this much waits for
 * the client in to_client: each command the daemon answers itself (a
 * refused STARTTLS) adds a line there, so a client that sends without
 * reading would otherwise grow it without end.
 */
#define PROTO_CLIENT_BACKLOG	(64 * 1024)

/*
 * Append the protocol's one-line "service unavailable" answer carrying text:
 * IMAP "* BYE [UNAVAILABLE]", POP3 "-ERR [SYS/TEMP]", SMTP "421 4.7.0".
 */
int	proto_write_unavailable(struct evbuffer *, enum mail_protocol,
	    const char *text);

/*
 * Append the protocol's line for a client that took too long, carrying
 * text: IMAP "* BYE", POP3 "-ERR", SMTP "421 4.4.2" (RFC 3463: a timeout).
 */
int	proto_write_login_timeout(struct evbuffer *, enum mail_protocol,
	    const char *text);

/* The same line into buf, for callers without an evbuffer; -1 if too long. */
int	proto_format_unavailable(char *buf, size_t len, enum mail_protocol,
	    const char *text);

/* What the dialogue wants next. */
enum proto_verdict {
	PROTO_MORE,	/* feed the next server line */
	PROTO_UPGRADE,	/* the server said go ahead: start TLS now */
	PROTO_FAIL	/* abort the session: proto_dialogue_reason() */
};

/* A new plaintext STARTTLS dialogue for a service; NULL (no memory). */
struct proto_dialogue *proto_dialogue_new(const struct service_config *);
void		 proto_dialogue_free(struct proto_dialogue *);

/*
 * Feed one complete server line (len bytes, CRLF or LF stripped).  What
 * must be sent to the server is appended to to_server.  After
 * PROTO_UPGRADE or PROTO_FAIL the dialogue takes no more lines.
 */
enum proto_verdict proto_dialogue_line(struct proto_dialogue *,
		    const char *line, size_t len, struct evbuffer *to_server);

/* Why the dialogue failed, in plain words for the log. */
const char	*proto_dialogue_reason(const struct proto_dialogue *);

/* The state name, for debug lines. */
const char	*proto_dialogue_state(const struct proto_dialogue *);

/*
 * Take the first complete line of in (CRLF or LF) into line, which holds
 * PROTO_LINE_MAX + 1 bytes, without its line end: 1 with *len set, 0 while
 * the line is incomplete, -1 when it is longer than PROTO_LINE_MAX.  How
 * the STARTTLS dialogue reads the server (session.c, probe.c).
 */
int		 proto_take_line(struct evbuffer *in, char *line, size_t *len);

/*
 * Append the greeting mailtlsd writes to the client once TLS to the server
 * is verified (STARTTLS mode only; in implicit mode the server's own
 * greeting is relayed): IMAP "* OK ...", POP3 "+OK ..." (no APOP
 * timestamp), SMTP "220 <server_name> ESMTP ...".
 */
int		 proto_write_greeting(struct evbuffer *,
		    const struct service_config *);

/*
 * Whether buf holds exactly the server's complete greeting (implicit TLS):
 * 1 when it does, 0 while it is incomplete, -1 when more than the greeting
 * arrived.  A pooled connection waits with the greeting and nothing else.
 */
int		 proto_greeting_complete(enum mail_protocol,
		    struct evbuffer *buf);

/* A new pre-login filter for a protocol; NULL (no memory). */
struct proto_filter *proto_filter_new(enum mail_protocol);
void		 proto_filter_free(struct proto_filter *);

/*
 * The server's own greeting comes first (implicit TLS, where the filter
 * sees it): call right after proto_filter_new(), before any bytes.
 */
void		 proto_filter_expect_greeting(struct proto_filter *);

/*
 * The server's own greeting comes first but the client was greeted already
 * (local_tls = starttls): a positive greeting (IMAP "* OK", POP3 "+OK",
 * SMTP 220) is dropped, any other (BYE, PREAUTH, -ERR, 554) goes to the
 * filter as a server response.  Instead of proto_filter_expect_greeting().
 */
void		 proto_filter_drop_greeting(struct proto_filter *);

/*
 * Move server bytes (decrypted) from from_server to to_client, rewriting
 * capability lists.  Only complete lines (or literal/payload bytes) are
 * consumed; a partial line stays in from_server.  0, or -1 when the server
 * broke the protocol (for example a line over PROTO_LINE_MAX):
 * proto_filter_reason().
 */
int		 proto_filter_server(struct proto_filter *,
		    struct evbuffer *from_server, struct evbuffer *to_client);

/*
 * Move client bytes from from_client to to_server; answers the client
 * itself (STARTTLS/STLS and, for IMAP, COMPRESS refusals) by appending to
 * to_client, in the right order relative to the server's responses.  0 or
 * -1 as above; a command line that is an HTTP request line or header (a
 * cross-protocol request from a web browser) fails the filter.  While
 * to_client holds PROTO_CLIENT_BACKLOG bytes or more, nothing is taken:
 * call again once the client has read.
 *
 * Where the protocol makes the meaning of the client's next bytes depend
 * on the server's answer (a synchronizing IMAP literal; the next line
 * after AUTHENTICATE/AUTH, which is SASL data after a challenge and a
 * command after the final reply; the bytes after SMTP DATA), those bytes
 * stay in from_client until the answer has passed proto_filter_server():
 * call proto_filter_client() again after proto_filter_server() while
 * from_client is not empty.  A client that waits for the answer, as the
 * protocols require, never has bytes held.
 */
int		 proto_filter_client(struct proto_filter *,
		    struct evbuffer *from_client, struct evbuffer *to_server,
		    struct evbuffer *to_client);

/*
 * OAuth2 (a service with oauth2 = NAME).  Call right after
 * proto_filter_new(): the filter then takes the client's login itself
 * instead of passing it on -- IMAP LOGIN (atoms, quoted strings, literals
 * including {n+}, answering "+" itself) and AUTHENTICATE PLAIN (SASL-IR or
 * continuation); POP3 USER/PASS and AUTH PLAIN; SMTP AUTH PLAIN and AUTH
 * LOGIN -- and waits for proto_filter_login_token().  Other mechanisms are
 * refused with the protocol's line (IMAP "NO [CANNOT]", POP3 "-ERR", SMTP
 * "504 5.5.4"), so that the client falls back to these; so are APOP, an
 * authorization identity other than the user in PLAIN, an SMTP AUTH before
 * EHLO ("503 5.5.1"), and a user name or password over 1024 bytes.
 * Toward the client, capability lists offer the plain mechanisms (IMAP
 * AUTH=PLAIN, POP3 USER and SASL PLAIN, SMTP AUTH PLAIN LOGIN) and no
 * other; the filter remembers which of XOAUTH2 and OAUTHBEARER (and IMAP
 * SASL-IR) the server offers.  0, or -1 (no memory: the filter failed,
 * proto_filter_reason(), and takes no more bytes).
 */
int		 proto_filter_use_oauth2(struct proto_filter *);

enum proto_login {
	PROTO_LOGIN_NONE = 0,	/* no login under way */
	PROTO_LOGIN_WANTED,	/* user and password taken: want a token */
	PROTO_LOGIN_SENT,	/* token sent: waiting for the server */
	PROTO_LOGIN_REJECTED	/* the server refused the token:
				 * proto_filter_login_error() */
};

/*
 * Where the login is: look after each proto_filter_client() (WANTED) and
 * proto_filter_server() (REJECTED, or done).  From WANTED until the login
 * ends the filter takes no client bytes; the commands a client pipelined
 * after its login wait in from_client, in order: after success they go to
 * the server as the plain relay starts, after a refusal the filter takes
 * them (call proto_filter_client() again).
 */
enum proto_login proto_filter_login(const struct proto_filter *);

/*
 * WANTED, SENT or REJECTED: the user name and password the client gave,
 * NUL terminated (a password may also hold NUL: pwlen), owned by the
 * filter, wiped once the login ends; "" otherwise.
 */
void		 proto_filter_login_credentials(const struct proto_filter *,
		    const char **user, const char **password, size_t *pwlen);

/*
 * Log in to the server with an access token (from PROTO_LOGIN_WANTED, or
 * once more after PROTO_LOGIN_REJECTED): appends to to_server the SASL
 * exchange -- XOAUTH2, or OAUTHBEARER (RFC 7628) when the server offers
 * only that, with an initial response where the server takes one (IMAP
 * with SASL-IR, SMTP always, POP3 when the command fits in 255 octets);
 * first the filter's own capability request (IMAP CAPABILITY under a tag
 * of its own, POP3 CAPA, whose answers the client never sees) when the
 * server's mechanisms are not known yet and the client asked for none.
 * A server's error challenge is answered as the mechanism requires.
 * Success reaches the client as the server's success line (IMAP: the
 * tagged OK to the client's own tag) and the filter is done; failure
 * becomes PROTO_LOGIN_REJECTED and nothing reaches the client yet.
 *
 * The filter keeps to_server until the login ends: the rest of the
 * exchange (the command after the capability answer, the response after
 * "+", the answer to an error challenge) is appended to it from inside
 * proto_filter_server().  Pass the buffer toward the server that
 * proto_filter_client() gets, which lives as long as the filter, and send
 * what it holds after proto_filter_server() too.
 *
 * 0, or -1: the token is empty, longer than 8192 bytes or holds bytes
 * outside visible ASCII, no login waits for a token, or no memory;
 * nothing changed unless the filter failed (proto_filter_reason()), and
 * the login can be refused.
 */
int		 proto_filter_login_token(struct proto_filter *,
		    const char *token, struct evbuffer *to_server);

/*
 * End the login under way (WANTED or REJECTED) without success: appends
 * the protocol's failure line carrying text to to_client (IMAP "TAG NO
 * [ALERT] text" when alert, else "TAG NO [UNAVAILABLE] text" when
 * temporary, else "TAG NO [AUTHENTICATIONFAILED] text"; POP3 "-ERR
 * [SYS/TEMP] text" when temporary and not alert, else "-ERR [AUTH]
 * text"; SMTP "454
 * 4.7.0 text" when temporary, else "535 5.7.8 text"; POP3 and SMTP lines
 * wait for the answers still due to commands before the login), wipes
 * the credentials and takes the client's next command.  text becomes one
 * line of at most 400 bytes of printable ASCII.  0, or -1 (no login to
 * refuse, or no memory: the filter failed).
 */
int		 proto_filter_login_refuse(struct proto_filter *, int temporary,
		    int alert, const char *text, struct evbuffer *to_client);

/*
 * PROTO_LOGIN_REJECTED: what the server said, in words for the log and to
 * pick a translation: its failure line without the IMAP tag, codes kept
 * ("NO [AUTHENTICATIONFAILED] Invalid credentials", "535 5.7.139
 * Authentication unsuccessful, ..."), then the error challenge's status
 * when there was one ("(status 401)", "(status invalid_token)"); ""
 * otherwise.
 */
const char	*proto_filter_login_error(const struct proto_filter *);

/*
 * A login that passes through (a service without oauth2 = NAME) was
 * refused by the server.  server_text is the refusal in one line for the
 * log, codes kept, every control or non-ASCII byte '?', at most 255 bytes:
 * an SMTP reply's first line whole, then the texts of its other lines
 * ("534-5.7.9 Application-specific password required. ..."); an IMAP
 * tagged NO without its tag ("NO [ALERT] ..."); a POP3 "-ERR ..." line.
 * Returns what mailtlsd adds for the user ("mailtlsd: ..."), or NULL for
 * nothing.  Called once per refusal, from inside proto_filter_server();
 * it must not use the filter.
 */
typedef const char *proto_refusal_fn(const char *server_text, void *arg);

/*
 * Report the refusals of logins that pass through to fn (NULL: to
 * nobody).  A refusal is: SMTP, the final reply to AUTH, after any 334
 * challenges, when its code is 4xx or 5xx but 421 (closing) and 500-504
 * (syntax, sequence, an unknown mechanism: not a verdict on the login);
 * IMAP, the tagged NO to LOGIN or AUTHENTICATE; POP3, the -ERR to PASS or
 * APOP, or ending AUTH.  What fn adds (one line of at most 400 bytes of
 * printable ASCII) reaches the client with the refusal: in SMTP as one
 * more line of the same reply, with its reply code and the enhanced
 * status code of its last line ("534 5.7.9 mailtlsd: ..."); in IMAP as an
 * untagged "* NO [ALERT] mailtlsd: ..." just before the tagged NO, unless
 * that is an [ALERT] itself; in POP3 not at all, since its one -ERR line
 * has no room for it.  Logins the filter takes itself
 * (proto_filter_use_oauth2()) are never reported here.
 */
void		 proto_filter_on_refusal(struct proto_filter *,
		    proto_refusal_fn *fn, void *arg);

/* Whether the client has logged in: from now on the relay is a plain copy. */
int		 proto_filter_done(const struct proto_filter *);

/*
 * Whether the login deadline is over: the client logged in, or (SMTP) the
 * server answered 354 to DATA, taking a message from a client that sends
 * without AUTH.
 */
int		 proto_filter_past_login(const struct proto_filter *);

/* How many STARTTLS/STLS commands of the client the filter refused. */
unsigned	 proto_filter_refused(const struct proto_filter *);

/* Why the filter failed. */
const char	*proto_filter_reason(const struct proto_filter *);

/* Whether the filter failed (and takes no more bytes). */
int		 proto_filter_failed(const struct proto_filter *);

/*
 * Whether a client line (len bytes, without its line end) is an HTTP
 * request line ("POST / HTTP/1.1") or a common HTTP request header
 * ("Host: ..."): what a web page makes a browser send to a mail port.
 */
int		 proto_http_line(const char *line, size_t len);

#endif /* MAILTLSD_PROTO_H */
