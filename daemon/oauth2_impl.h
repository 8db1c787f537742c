/*
 * oauth2_impl.h - what oauth2.c shares with oauth2_flow.c (device and
 * browser flows, the redirect listener), oauth2_text.c (the provider's
 * answers and errors in words) and oauth2_cli.c (mailtlsd -a).  Not for
 * use outside the oauth2*.c files and their unit tests.
 *
 * The objects:
 *   struct oauth2         the sections, the token store, the HTTPS client
 *   struct o2_section     one [oauth2:NAME] and its accounts
 *   struct o2_account     one user of a section: its tokens once a login
 *                         unlocked them, the renewal or flow under way,
 *                         the logins waiting for either
 *   struct o2_renew       one refresh (or client credentials grant) for
 *                         every login of the account that needs it
 *   struct o2_flow        one authorisation waiting for a person
 *   struct oauth2_request one login
 */
#ifndef MAILTLSD_OAUTH2_IMPL_H
#define MAILTLSD_OAUTH2_IMPL_H

#include <stddef.h>
#include <sys/queue.h>
#include <time.h>

#include "config.h"
#include "oauth2.h"
#include "tokenstore.h"

struct event;
struct evhttp;
struct evhttp_request;
struct http;
struct http_request;

/* An access token this close to its expiry is renewed first. */
#define O2_EXPIRY_MARGIN	60		/* seconds */
#define O2_DEFAULT_EXPIRES_IN	3600		/* when the answer omits it */
#define O2_BROWSER_WAIT		900		/* a browser flow waits, s */
#define O2_DEVICE_WAIT_MAX	1800		/* a device code's life, s */
#define O2_DEVICE_INTERVAL	5		/* RFC 8628's default, s */
#define O2_DEVICE_INTERVAL_MAX	60
#define O2_SLOW_DOWN_STEP	5		/* RFC 8628 3.5: +5 s */
#define O2_ACCOUNTS_MAX		4096		/* accounts in memory */
#define O2_FLOWS_MAX		16		/* authorisations waiting */
#define O2_USER_MAX		255		/* bytes of a user name */
#define O2_TEXT_MAX		OAUTH2_TEXT_MAX	/* a client line */
#define O2_LOG_MAX		1024		/* a log text */
#define O2_VERIFIER_BYTES	32		/* PKCE: 43 characters */
#define O2_STATE_BYTES		16		/* state, link: 22 characters */
#define O2_B64_MAX		64		/* one of those, encoded */
#define O2_URL_MAX		4096		/* the authorize URL */
#define O2_VERIFICATION_MAX	256		/* a device flow's URL */

struct oauth2_request;

/* One [oauth2:NAME] section of the configuration in force. */
struct o2_section {
	TAILQ_ENTRY(o2_section)		 entry;
	struct oauth2			*o;
	const struct oauth2_config	*cfg;
	char				*secret;	/* sodium_malloc, "" */
	size_t				 secret_size;
	TAILQ_HEAD(, o2_account)	 accounts;
};

/* One user of a section. */
struct o2_account {
	TAILQ_ENTRY(o2_account)		 entry;
	struct o2_section		*sec;
	char				 user[O2_USER_MAX + 1];
	/* The newest tokens a login unlocked or the provider issued. */
	struct token_set		 tokens;
	int				 have_tokens;
	int				 dirty;		/* not on disk yet */
	struct tokenstore_job		*resave;	/* saving them again */
	time_t				 last_refresh;
	char				 last_error[O2_TEXT_MAX];
	int				 error_untold;	/* for the next login */
	struct o2_renew			*renew;
	struct o2_flow			*flow;
	TAILQ_HEAD(, oauth2_request)	 requests;
};

/* Where a login stands. */
enum o2_req_state {
	O2_REQ_OPENING,		/* the token store unlocks the account */
	O2_REQ_RENEW,		/* waits for the account's renewal */
	O2_REQ_FLOW_START,	/* waits for the flow's instructions */
	O2_REQ_REOPEN,		/* waits for a seal, then opens again */
	O2_REQ_ANSWERED		/* its callback is due */
};

struct oauth2_request {
	TAILQ_ENTRY(oauth2_request)	 entry;	/* in its account */
	struct oauth2			*o;
	struct o2_account		*acct;	/* NULL once answered */
	enum o2_req_state		 state;
	char				*password;	/* sodium_malloc */
	size_t				 pwlen;
	int				 refresh;
	struct tokenstore_job		*job;
	struct event			*answer_ev;
	enum oauth2_result		 result;
	char				*token;		/* TOKEN: a copy */
	char				 client_text[O2_TEXT_MAX];
	char				 log_text[O2_LOG_MAX];
	/* Why this login must authorise again (a dead grant), told first. */
	char				 why_again[O2_TEXT_MAX];
	oauth2_login_cb			*cb;
	void				*arg;
};

/* A refresh, or a client credentials grant, for one account. */
struct o2_renew {
	struct o2_account	*acct;
	int			 app;		/* client credentials */
	int			 seal;		/* first login: seal it */
	char			*password;	/* of the login that began */
	size_t			 pwlen;
	struct http_request	*http;
	struct tokenstore_job	*save;
	void			(*cli_done)(struct o2_renew *, int ok,
				    const char *text);	/* mailtlsd -a */
	void			*cli;
};

enum o2_flow_state {
	O2_FLOW_STARTING,	/* device: asking for a code */
	O2_FLOW_WAITING,	/* for a person */
	O2_FLOW_EXCHANGING,	/* browser: the code for tokens */
	O2_FLOW_SAVING		/* the tokens are being sealed */
};

/* The loopback listener of browser flows on one address. */
struct o2_redirect {
	TAILQ_ENTRY(o2_redirect)	 entry;
	struct oauth2			*o;
	struct listen_addr		 addr;
	struct evhttp			*http;
	struct event			*grace;	/* closes it when unused */
	int				 users;	/* browser flows */
};

/* One authorisation that waits for a person. */
struct o2_flow {
	TAILQ_ENTRY(o2_flow)	 entry;		/* in oauth2's list */
	struct o2_account	*acct;
	enum oauth2_flow	 kind;
	enum o2_flow_state	 state;
	char			*password;	/* sodium_malloc */
	size_t			 pwlen;
	char			 text[O2_TEXT_MAX];	/* the instructions */
	char			 go_to[512];	/* the URL a person opens */
	time_t			 started;
	time_t			 deadline;
	struct event		*timer;
	struct http_request	*http;
	struct tokenstore_job	*save;
	/* device */
	char			*device_code;		/* secret */
	char			 user_code[64];
	unsigned		 interval;
	/* browser */
	char			 verifier[O2_B64_MAX];	/* secret */
	char			 state_param[O2_B64_MAX];
	char			 link[O2_B64_MAX];
	char			 redirect_uri[128];
	char			*authorize_url;
	struct o2_redirect	*redirect;
	struct evhttp_request	*browser;	/* waits for the result */
	/* mailtlsd -a */
	void			(*cli_text)(struct o2_flow *);
	void			(*cli_done)(struct o2_flow *, int ok,
				    const char *text);
	void			*cli;
};

struct oauth2 {
	struct event_base		*base;
	const struct config		*cfg;
	struct http			*http;
	struct tokenstore		*store;
	char				 store_dir[CONFIG_PATH_MAX + 8];
	TAILQ_HEAD(, o2_section)	 sections;
	TAILQ_HEAD(, o2_flow)		 flows;
	TAILQ_HEAD(, o2_redirect)	 redirects;
	int				 n_accounts;
	int				 n_flows;
	int				 cli;	/* mailtlsd -a */
};

/* What a token endpoint answered. */
struct o2_answer {
	int	 ok;			/* an access token came */
	char	*access_token;
	char	*refresh_token;		/* NULL: none (keep the old one) */
	char	*scope;			/* NULL: none */
	long	 expires_in;
	char	 error[64];		/* the OAuth2 error code */
	char	 description[256];	/* printable, for the log */
	long	 aadsts;		/* Microsoft's code, 0: none */
	int	 status;		/* HTTP */
	char	 failure[512];		/* no answer at all: why */
};

/* What an error means for the account. */
enum o2_verdict {
	O2_TEMPORARY,		/* try again later */
	O2_REFUSED,		/* for good, until someone acts */
	O2_REAUTHORISE,		/* the grant is gone: a new flow */
	O2_PENDING,		/* device: nobody entered the code yet */
	O2_SLOW_DOWN		/* device: poll less often */
};

/* The step an answer belongs to: the same error means different things. */
enum o2_step {
	O2_STEP_REFRESH,	/* refresh_token grant */
	O2_STEP_APP,		/* client_credentials grant */
	O2_STEP_DEVICE_START,	/* device authorisation request */
	O2_STEP_DEVICE_POLL,	/* device_code grant */
	O2_STEP_CODE		/* the browser's redirect, authorization_code */
};

/* A device authorisation answer. */
struct o2_device {
	char		*device_code;	/* secret, to free with wipe */
	char		 user_code[64];
	char		 verification[512];
	unsigned	 interval;
	unsigned	 expires_in;
};

/* oauth2.c */
struct tokenstore *o2_store(struct oauth2 *, char *why, size_t whylen);
struct o2_account *o2_account_lookup(struct oauth2 *, const char *section,
	    const char *user);
void	o2_answer_request(struct oauth2_request *, enum oauth2_result,
	    const char *token, const char *client_text, const char *log_text);
void	o2_account_release(struct o2_account *);
void	o2_account_take_tokens(struct o2_account *, const struct o2_answer *,
	    int replace);
int	o2_format(char *, size_t, const char *, ...)
	    __attribute__((format(printf, 3, 4)));
char	*o2_secret_dup(const char *, size_t);
void	o2_secret_free(char *, size_t);
int	o2_password_matches(const char *, size_t, const char *, size_t);
const char *o2_flow_name(enum oauth2_flow);
void	o2_need_authorisation(struct oauth2_request *);
struct o2_renew *o2_renew_start(struct o2_account *, int app, int seal,
	    const char *password, size_t pwlen);

/* oauth2_flow.c */
struct o2_flow *o2_flow_start(struct o2_account *, const char *password,
	    size_t pwlen, char *why, size_t whylen);
void	o2_flow_free(struct o2_flow *);
void	o2_flow_end(struct o2_flow *, int ok, const char *text);
void	o2_flow_status(struct oauth2 *);
void	o2_redirects_close_all(struct oauth2 *);
int	o2_pkce_challenge(const char *verifier, char *out, size_t outlen);
int	o2_random_b64(size_t bytes, char *out, size_t outlen);
int	o2_redirect_uri(const struct oauth2_config *, char *out,
	    size_t outlen);
int	o2_authorize_url(const struct oauth2_config *, const char *user,
	    const char *redirect_uri, const char *state,
	    const char *challenge, char *out, size_t outlen);
int	o2_link_url(const struct oauth2_config *, const char *link,
	    char *out, size_t outlen);

/* oauth2_text.c */
int	o2_parse_token(int status, const char *body, size_t len,
	    const char *failure, struct o2_answer *);
void	o2_answer_clear(struct o2_answer *);
int	o2_parse_device(int status, const char *body, size_t len,
	    struct o2_device *, struct o2_answer *err);
void	o2_device_clear(struct o2_device *);
enum o2_verdict o2_explain(const struct oauth2_config *, enum o2_step,
	    const char *what, const struct o2_answer *, char *client,
	    size_t clientlen, char *log, size_t loglen);
int	o2_user_ok(const char *user);

#endif /* MAILTLSD_OAUTH2_IMPL_H */
