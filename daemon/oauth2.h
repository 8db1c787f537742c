/*
 * oauth2.h - access tokens for services with "oauth2 = NAME".
 *
 * The mail client logs in with the mailbox's user name and a password of
 * its user's choosing.  mailtlsd never sends that password anywhere: it
 * unlocks (or, on the first login, seals) the account's tokens in
 * state_dir/oauth2/ (tokenstore.h) and the session logs in to the server
 * with the access token (proto.h: XOAUTH2 or OAUTHBEARER).
 *
 * Everything here runs in the daemon's event loop and never blocks it: the
 * key derivation and file writes run on a worker thread (tokenstore.c),
 * HTTPS requests to the provider through http.h.  When an account has no
 * usable token, the login starts the section's flow (device code, browser
 * with PKCE, or client credentials) and is answered with the instructions;
 * the flow completes in the background and a later login with the same
 * password succeeds.
 */
#ifndef MAILTLSD_OAUTH2_H
#define MAILTLSD_OAUTH2_H

#include <stddef.h>
#include <time.h>

struct config;
struct event_base;
struct oauth2;
struct oauth2_request;

/* The longest text for a client or -s, NUL included (SMTP's 512). */
#define OAUTH2_TEXT_MAX		400

/* How a login ended. */
enum oauth2_result {
	OAUTH2_TOKEN,		/* token holds a usable access token */
	OAUTH2_WRONG_PASSWORD,	/* tokens exist; this password is not theirs */
	OAUTH2_AUTHORISE,	/* a person must act: text says what to do */
	OAUTH2_REFUSED,		/* the provider refused for good (revoked
				 * grant, unknown app): text says what to do;
				 * a new flow starts on the next login */
	OAUTH2_TEMPORARY	/* provider unreachable, timeout, no memory */
};

/*
 * The answer to oauth2_login().  token is the access token (OAUTH2_TOKEN
 * only, else NULL), valid during the call.  client_text is one line for
 * the mail client (no secrets; instructions with the URL and code when
 * OAUTH2_AUTHORISE), log_text the reason for the log.  Called once, never
 * from inside oauth2_login() itself.
 */
typedef void	oauth2_login_cb(enum oauth2_result, const char *token,
		    const char *client_text, const char *log_text, void *arg);

/* All accounts of the running daemon; NULL on failure with err set. */
struct oauth2	*oauth2_new(struct event_base *, const struct config *,
		    char *err, size_t errlen);

/*
 * Take a new configuration (SIGHUP): sections that stay keep their
 * accounts, unlocked keys and running flows; removed ones end theirs.
 * The config must outlive the oauth2 object or the next reload.
 */
int		 oauth2_reload(struct oauth2 *, const struct config *,
		    char *err, size_t errlen);

/* End every flow, cancel every request (their callbacks are not called). */
void		 oauth2_free(struct oauth2 *);

/*
 * A client logged in to a service with oauth2 = section.  refresh = 1
 * asks for a new access token even if the stored one has not expired: the
 * server has just rejected it (one refresh and one retry per login).  The
 * password bytes are copied (and wiped when no longer needed).  NULL when
 * out of memory (cb is not called).
 */
struct oauth2_request *oauth2_login(struct oauth2 *, const char *section,
		    const char *user, const char *password, size_t pwlen,
		    int refresh, oauth2_login_cb *, void *arg);

/* The session went away: cb will not be called.  NULL is fine. */
void		 oauth2_cancel(struct oauth2_request *);

/*
 * mailtlsd -a SECTION USER: authorise one account interactively in a
 * terminal (asks for the password twice without echo, prints the
 * instructions, waits for the flow, stores the tokens).  Runs its own
 * event loop; the exit status for main().
 */
int		 oauth2_authorise_cli(const struct config *, const char *section,
		    const char *user);

/*
 * A mail server's refusal of a login (an SMTP reply such as "535 5.7.139
 * ...", "550 5.7.30 ...", "534-5.7.9 Application-specific password
 * required", or an IMAP or POP3 error line) in words that say what to
 * change, as one "mailtlsd: ..." line for the client and the log; NULL
 * when mailtlsd has nothing to add.  Also for services without oauth2.
 */
const char	*oauth2_explain_server_error(const char *server_text);

/* What `mailtlsd -s` and the metrics show of one account (no secrets). */
struct oauth2_account_status {
	const char	*section;
	const char	*user;
	int		 authorised;	/* holds a refresh token or app grant */
	int		 flow_pending;	/* waiting for a person */
	time_t		 access_expires;	/* 0: no access token, or locked */
	time_t		 last_refresh;		/* 0: none since start */
	const char	*last_error;		/* NULL: none */
};

/* Call fn for each account known since start. */
void		 oauth2_foreach_account(const struct oauth2 *,
		    void (*fn)(const struct oauth2_account_status *, void *),
		    void *arg);

#endif /* MAILTLSD_OAUTH2_H */
