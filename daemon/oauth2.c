/*
 * oauth2.c - access tokens for services with oauth2 = NAME: the accounts
 * of each [oauth2:NAME] section, the logins that need a token, refreshes
 * and client credentials grants, reloads and status.
 *
 * A login first opens the account in the token store (its password
 * unlocks the file, tokenstore.h).  Then:
 *   - a wrong password fails that login only; the file stays as it is;
 *   - a valid access token (more than O2_EXPIRY_MARGIN seconds left) is
 *     the answer;
 *   - an expired one is renewed: one refresh (or client credentials
 *     grant) per account at a time, shared by every login that waits for
 *     it; the new tokens, and always a rotated refresh token, are sealed
 *     again before the answer;
 *   - no tokens (or a grant the provider no longer honours) start the
 *     section's flow (oauth2_flow.c) and the login gets its instructions;
 *   - client credentials: the first login for a user name seals its
 *     password, later logins must present the same one.
 * Every answer reaches the caller from the event loop, never from inside
 * oauth2_login().
 *
 * The token store is made at the first login, after the daemon dropped
 * its privileges (and after -d forked), so that its directory and files
 * belong to the daemon's user and its worker thread runs in the daemon.
 * Client secrets are read at start and at each reload.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <event2/event.h>
#include <sodium.h>

#include "config.h"
#include "http.h"
#include "log.h"
#include "oauth2_impl.h"
#include "safefile.h"
#include "tokenstore.h"

#define O2_KDF_MEMORY_DEFAULT	(64 * 1024)	/* KiB, for the store */
#define O2_KDF_PASSES_DEFAULT	3
#define O2_SECRET_FILE_MAX	4096

static void	o2_request_open(struct oauth2_request *);
static void	o2_renew_free(struct o2_renew *);

/* ---- small helpers ------------------------------------------------------ */

/* A copy of len bytes in guarded memory, NUL terminated; NULL: no memory. */
char *
o2_secret_dup(const char *s, size_t len)
{
	char	*p;

	if ((p = sodium_malloc(len + 1)) == NULL)
		return NULL;
	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

/* Wipe and free what o2_secret_dup() made (sodium_free() wipes). */
void
o2_secret_free(char *p, size_t len)
{
	(void)len;
	if (p != NULL)
		sodium_free(p);
}

/* Whether two passwords are the same, in time independent of content. */
int
o2_password_matches(const char *a, size_t alen, const char *b, size_t blen)
{
	return alen == blen && sodium_memcmp(a, b, alen) == 0;
}

/*
 * Format a client or log text, cut at len: user names and provider texts
 * may be long, the lines they go to are bounded.  Whether it fit.
 */
int
o2_format(char *buf, size_t len, const char *fmt, ...)
{
	va_list	ap;
	int	n;

	va_start(ap, fmt);
	n = vsnprintf(buf, len, fmt, ap);
	va_end(ap);
	return n >= 0 && (size_t)n < len;
}

/* A flow's name for messages. */
const char *
o2_flow_name(enum oauth2_flow flow)
{
	switch (flow) {
	case OAUTH2_FLOW_DEVICE:
		return "device";
	case OAUTH2_FLOW_BROWSER:
		return "browser";
	case OAUTH2_FLOW_CLIENT_CREDENTIALS:
		return "client_credentials";
	case OAUTH2_FLOW_NONE:
		break;
	}
	return "none";
}

/* The token store, made at first use. */
struct tokenstore *
o2_store(struct oauth2 *o, char *why, size_t whylen)
{
	struct o2_section	*sec;
	char			 err[512];

	if (o->store != NULL)
		return o->store;
	snprintf(o->store_dir, sizeof(o->store_dir), "%s/oauth2",
	    o->cfg->state_dir);
	o->store = tokenstore_new(o->base, o->store_dir, O2_KDF_MEMORY_DEFAULT,
	    O2_KDF_PASSES_DEFAULT, why, whylen);
	if (o->store == NULL)
		return NULL;
	TAILQ_FOREACH(sec, &o->sections, entry)
		if (tokenstore_set_kdf(o->store, sec->cfg->name,
		    sec->cfg->kdf_memory, sec->cfg->kdf_passes, err,
		    sizeof(err)) != 0)
			log_warnx("[oauth2:%s] %s", sec->cfg->name, err);
	return o->store;
}

/* ---- answering a login -------------------------------------------------- */

/* Free a login's request. */
static void
o2_request_free(struct oauth2_request *req)
{
	if (req->job != NULL)
		tokenstore_cancel(req->job);
	if (req->acct != NULL)
		TAILQ_REMOVE(&req->acct->requests, req, entry);
	if (req->answer_ev != NULL)
		event_free(req->answer_ev);
	o2_secret_free(req->password, req->pwlen);
	if (req->token != NULL) {
		sodium_memzero(req->token, strlen(req->token));
		free(req->token);
	}
	free(req);
}

/* The answer's time has come: call back, then forget the login. */
static void
o2_answer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct oauth2_request	*req = arg;

	(void)fd;
	(void)what;
	req->cb(req->result, req->token, req->client_text, req->log_text,
	    req->arg);
	o2_request_free(req);
}

/* dst = "why; rest" when it fits, else left as it is (rest not in dst). */
static void
o2_prefix_why(char *dst, size_t size, const char *why, const char *rest)
{
	size_t	wl = strlen(why), rl = strlen(rest);

	if (wl + 2 + rl >= size)
		return;
	memcpy(dst, why, wl);
	memcpy(dst + wl, "; ", 2);
	memcpy(dst + wl + 2, rest, rl + 1);
}

/*
 * Answer a login (from the loop, soon).  The account lets go of it; the
 * caller settles the account (o2_account_release()) when done with it.
 */
void
o2_answer_request(struct oauth2_request *req, enum oauth2_result result,
    const char *token, const char *client_text, const char *log_text)
{
	if (req->state == O2_REQ_ANSWERED)
		return;
	if (req->job != NULL) {
		tokenstore_cancel(req->job);
		req->job = NULL;
	}
	req->state = O2_REQ_ANSWERED;
	req->result = result;
	if (token != NULL && (req->token = strdup(token)) == NULL) {
		req->result = OAUTH2_TEMPORARY;
		client_text = "mailtlsd: out of memory; try again later";
		log_text = "out of memory for an access token";
	}
	snprintf(req->client_text, sizeof(req->client_text), "%s",
	    client_text != NULL ? client_text : "");
	/*
	 * Instructions after a dead grant say first why ("... multi-factor
	 * authentication (AADSTS50076) ..."), when both fit on one line.
	 */
	if (result == OAUTH2_AUTHORISE && req->why_again[0] != '\0' &&
	    client_text != NULL && strncmp(client_text, "mailtlsd: ", 10) == 0)
		o2_prefix_why(req->client_text, sizeof(req->client_text),
		    req->why_again, client_text + 10);
	snprintf(req->log_text, sizeof(req->log_text), "%s",
	    log_text != NULL ? log_text : req->client_text);
	if (req->acct != NULL) {
		TAILQ_REMOVE(&req->acct->requests, req, entry);
		req->acct = NULL;
	}
	event_active(req->answer_ev, 0, 0);
}

/* Answer with the account's access token. */
static void
o2_answer_token(struct oauth2_request *req)
{
	struct o2_account	*acct = req->acct;
	char			 log[O2_LOG_MAX];

	snprintf(log, sizeof(log), "[oauth2:%s] access token for %s, valid "
	    "for %lld s", acct->sec->cfg->name, acct->user,
	    acct->tokens.access_expires != 0 ?
	    (long long)(acct->tokens.access_expires - time(NULL)) : -1LL);
	o2_answer_request(req, OAUTH2_TOKEN, acct->tokens.access_token, "",
	    log);
}

/* ---- accounts ------------------------------------------------------------ */

/* Free an account and what it runs, without answering anyone. */
static void
o2_account_free(struct o2_account *acct)
{
	struct oauth2_request	*req;

	while ((req = TAILQ_FIRST(&acct->requests)) != NULL) {
		TAILQ_REMOVE(&acct->requests, req, entry);
		req->acct = NULL;
		if (req->job != NULL)
			tokenstore_cancel(req->job);
		req->job = NULL;
	}
	if (acct->flow != NULL)
		o2_flow_free(acct->flow);
	if (acct->renew != NULL)
		o2_renew_free(acct->renew);
	if (acct->resave != NULL)
		tokenstore_cancel(acct->resave);	/* still written */
	token_set_clear(&acct->tokens);
	TAILQ_REMOVE(&acct->sec->accounts, acct, entry);
	acct->sec->o->n_accounts--;
	free(acct);
}

/* The account of user in sec; made when create is set.  NULL: none. */
static struct o2_account *
o2_account_get(struct o2_section *sec, const char *user, int create)
{
	struct o2_account	*acct;

	TAILQ_FOREACH(acct, &sec->accounts, entry)
		if (strcmp(acct->user, user) == 0)
			return acct;
	if (!create || sec->o->n_accounts >= O2_ACCOUNTS_MAX ||
	    (acct = calloc(1, sizeof(*acct))) == NULL)
		return NULL;
	acct->sec = sec;
	snprintf(acct->user, sizeof(acct->user), "%s", user);
	TAILQ_INIT(&acct->requests);
	TAILQ_INSERT_TAIL(&sec->accounts, acct, entry);
	sec->o->n_accounts++;
	return acct;
}

/* Whether the account's flow has its tokens, or is about to. */
static int
o2_flow_finishing(const struct o2_account *acct)
{
	return acct->flow != NULL && (acct->flow->state == O2_FLOW_EXCHANGING ||
	    acct->flow->state == O2_FLOW_SAVING);
}

/*
 * Something the account waited for ended: logins waiting for a seal open
 * the account again once nothing writes it any more, and an account that
 * holds nothing worth keeping is freed.
 */
void
o2_account_release(struct o2_account *acct)
{
	struct oauth2_request	*req, *next;
	int			 writing;

	writing = acct->renew != NULL || o2_flow_finishing(acct);
	for (req = TAILQ_FIRST(&acct->requests); req != NULL && !writing;
	    req = next) {
		next = TAILQ_NEXT(req, entry);
		if (req->state == O2_REQ_REOPEN)
			o2_request_open(req);
	}
	if (!acct->sec->o->cli &&
	    TAILQ_EMPTY(&acct->requests) && acct->renew == NULL &&
	    acct->flow == NULL && acct->resave == NULL && !acct->have_tokens &&
	    !acct->error_untold)
		o2_account_free(acct);
}

/*
 * Take the tokens of an answer: replace (a flow) or renew (a refresh
 * keeps its refresh token unless a rotated one came).
 */
void
o2_account_take_tokens(struct o2_account *acct, const struct o2_answer *a,
    int replace)
{
	struct token_set	 next, from;
	time_t			 now = time(NULL);

	from.access_token = a->access_token;
	from.refresh_token = a->refresh_token != NULL ? a->refresh_token :
	    replace || !acct->have_tokens ? "" : acct->tokens.refresh_token;
	from.scope = a->scope != NULL ? a->scope :
	    replace || !acct->have_tokens ? "" : acct->tokens.scope;
	from.access_expires = now + a->expires_in;
	from.updated = now;
	memset(&next, 0, sizeof(next));
	if (token_set_copy(&next, &from) != 0) {
		log_errorx("[oauth2:%s] out of memory for the tokens of %s",
		    acct->sec->cfg->name, acct->user);
		return;
	}
	token_set_clear(&acct->tokens);
	acct->tokens = next;
	acct->have_tokens = 1;
	acct->dirty = 1;
	acct->last_refresh = now;
	acct->last_error[0] = '\0';
	acct->error_untold = 0;
}

/* A new set from the store replaces the one in memory if newer. */
static void
o2_account_learn(struct o2_account *acct, const struct token_set *set)
{
	struct token_set	next;

	if (acct->have_tokens && set->updated <= acct->tokens.updated)
		return;
	memset(&next, 0, sizeof(next));
	if (token_set_copy(&next, set) != 0)
		return;
	token_set_clear(&acct->tokens);
	acct->tokens = next;
	acct->have_tokens = 1;
	acct->dirty = 0;
}

/* A second try at writing tokens a failed save left in memory. */
static void
o2_resave_cb(enum tokenstore_result result, const struct token_set *set,
    const char *reason, void *arg)
{
	struct o2_account	*acct = arg;

	(void)set;
	acct->resave = NULL;
	if (result == TOKENSTORE_OK) {
		acct->dirty = 0;
		log_info("[oauth2:%s] the tokens of %s are stored now",
		    acct->sec->cfg->name, acct->user);
	} else
		log_errorx("[oauth2:%s] still cannot store the tokens of %s: "
		    "%s", acct->sec->cfg->name, acct->user,
		    reason != NULL ? reason : "wrong password");
	o2_account_release(acct);
}

/* ---- renewal: refresh or client credentials ------------------------------ */

/* Free a renewal (its save, if any, is still written). */
static void
o2_renew_free(struct o2_renew *rn)
{
	if (rn->http != NULL)
		http_cancel(rn->http);
	if (rn->save != NULL)
		tokenstore_cancel(rn->save);
	o2_secret_free(rn->password, rn->pwlen);
	if (rn->acct->renew == rn)
		rn->acct->renew = NULL;
	free(rn);
}

/* The renewal is over: answer every login that waited for it. */
static void
o2_renew_end(struct o2_renew *rn, enum oauth2_result result,
    const char *client, const char *log)
{
	struct o2_account	*acct = rn->acct;
	struct oauth2_request	*req, *next;

	if (rn->cli_done != NULL)
		rn->cli_done(rn, result == OAUTH2_TOKEN, result ==
		    OAUTH2_TOKEN ? log : client);
	acct->renew = NULL;
	for (req = TAILQ_FIRST(&acct->requests); req != NULL; req = next) {
		next = TAILQ_NEXT(req, entry);
		if (req->state != O2_REQ_RENEW)
			continue;
		if (result == OAUTH2_TOKEN)
			o2_answer_token(req);
		else
			o2_answer_request(req, result, NULL, client, log);
	}
	o2_renew_free(rn);
	o2_account_release(acct);
}

/* The renewed tokens were sealed (or not). */
static void
o2_renew_saved_cb(enum tokenstore_result result, const struct token_set *set,
    const char *reason, void *arg)
{
	struct o2_renew		*rn = arg;
	struct o2_account	*acct = rn->acct;
	const char		*name = acct->sec->cfg->name;
	char			 client[O2_TEXT_MAX], log[O2_LOG_MAX];

	(void)set;
	rn->save = NULL;
	if (result == TOKENSTORE_OK) {
		acct->dirty = 0;
		if (rn->seal)
			log_info("[oauth2:%s] %s is sealed with the password "
			    "of its first login (client credentials)", name,
			    acct->user);
		snprintf(log, sizeof(log), "[oauth2:%s] new access token for "
		    "%s", name, acct->user);
		o2_renew_end(rn, OAUTH2_TOKEN, NULL, log);
		return;
	}
	if (rn->seal) {
		/* Nothing is sealed: nobody may use the token. */
		log_errorx("[oauth2:%s] cannot seal %s: %s", name, acct->user,
		    reason != NULL ? reason : "the file appeared meanwhile");
		token_set_clear(&acct->tokens);
		acct->have_tokens = 0;
		acct->dirty = 0;
		snprintf(client, sizeof(client), "mailtlsd: cannot store the "
		    "tokens of %s (see mailtlsd's log); try again later",
		    acct->user);
		o2_renew_end(rn, OAUTH2_TEMPORARY, client, client + 10);
		return;
	}
	/* Kept in memory and written again at the next login. */
	log_errorx("[oauth2:%s] cannot store the new tokens of %s: %s; the "
	    "old refresh token may no longer work, the new ones are kept in "
	    "memory until a later login stores them", name, acct->user,
	    reason != NULL ? reason : "the file is sealed with another "
	    "password now");
	snprintf(log, sizeof(log), "[oauth2:%s] new access token for %s "
	    "(not stored)", name, acct->user);
	o2_renew_end(rn, OAUTH2_TOKEN, NULL, log);
}

/* The grant is gone: every waiting login asks for a new authorisation. */
static void
o2_renew_reauthorise(struct o2_renew *rn)
{
	struct o2_account	*acct = rn->acct;
	struct oauth2_request	*req, *next;

	/* The refresh token is dead: never tried again. */
	if (acct->have_tokens) {
		sodium_memzero(acct->tokens.refresh_token,
		    strlen(acct->tokens.refresh_token));
		acct->tokens.refresh_token[0] = '\0';
		sodium_memzero(acct->tokens.access_token,
		    strlen(acct->tokens.access_token));
		acct->tokens.access_token[0] = '\0';
		acct->tokens.updated = time(NULL);
	}
	acct->renew = NULL;
	for (req = TAILQ_FIRST(&acct->requests); req != NULL; req = next) {
		next = TAILQ_NEXT(req, entry);
		if (req->state != O2_REQ_RENEW)
			continue;
		snprintf(req->why_again, sizeof(req->why_again), "%s",
		    acct->last_error);
		o2_need_authorisation(req);
	}
	o2_renew_free(rn);
	o2_account_release(acct);
}

/* The token endpoint answered a refresh or a client credentials grant. */
static void
o2_renew_http_cb(int status, const char *body, size_t len, const char *error,
    void *arg)
{
	struct o2_renew		*rn = arg;
	struct o2_account	*acct = rn->acct;
	const struct oauth2_config *cfg = acct->sec->cfg;
	struct o2_answer	 a;
	char			 what[O2_USER_MAX + 64];
	char			 client[O2_TEXT_MAX], log[O2_LOG_MAX];
	int			 rotated;
	enum o2_verdict		 verdict;

	rn->http = NULL;
	if (o2_parse_token(status, body, len, error, &a) != 0) {
		o2_renew_end(rn, OAUTH2_TEMPORARY, "mailtlsd: out of memory; "
		    "try again later", "out of memory for an answer");
		return;
	}
	if (a.ok) {
		rotated = a.refresh_token != NULL && (!acct->have_tokens ||
		    strcmp(a.refresh_token, acct->tokens.refresh_token) != 0);
		o2_account_take_tokens(acct, &a, 0);
		o2_answer_clear(&a);
		log_info("[oauth2:%s] new access token for %s, valid for %ld "
		    "s%s", cfg->name, acct->user,
		    (long)(acct->tokens.access_expires - time(NULL)),
		    rotated && !rn->app ? "; new refresh token" : "");
		rn->save = tokenstore_save(acct->sec->o->store, cfg->name,
		    acct->user, rn->password, rn->pwlen, &acct->tokens,
		    o2_renew_saved_cb, rn);
		if (rn->save == NULL)
			o2_renew_saved_cb(TOKENSTORE_ERROR, NULL,
			    "out of memory", rn);
		return;
	}
	snprintf(what, sizeof(what), "%s for %s", rn->app ? "the client "
	    "credentials grant" : "refreshing the access token", acct->user);
	verdict = o2_explain(cfg, rn->app ? O2_STEP_APP : O2_STEP_REFRESH,
	    what, &a, client, sizeof(client), log, sizeof(log));
	log_warnx("%s", log);
	snprintf(acct->last_error, sizeof(acct->last_error), "%s", client);
	if (verdict == O2_REAUTHORISE && !rn->app && rn->cli_done == NULL) {
		o2_renew_reauthorise(rn);
		return;
	}
	o2_renew_end(rn, verdict == O2_TEMPORARY ? OAUTH2_TEMPORARY :
	    OAUTH2_REFUSED, client, log);
}

/*
 * Renew the account's access token: a refresh, or (app) the client
 * credentials grant; seal: the account is absent and this seals it with
 * password.  NULL when out of memory.
 */
struct o2_renew *
o2_renew_start(struct o2_account *acct, int app, int seal,
    const char *password, size_t pwlen)
{
	const struct oauth2_config	*cfg = acct->sec->cfg;
	const char			*secret = acct->sec->secret;
	struct o2_renew			*rn;
	const char			*fields[12];
	int				 n = 0;

	if ((rn = calloc(1, sizeof(*rn))) == NULL)
		return NULL;
	rn->acct = acct;
	rn->app = app;
	rn->seal = seal;
	rn->pwlen = pwlen;
	if ((rn->password = o2_secret_dup(password, pwlen)) == NULL) {
		free(rn);
		return NULL;
	}
	fields[n++] = "grant_type";
	fields[n++] = app ? "client_credentials" : "refresh_token";
	fields[n++] = "client_id";
	fields[n++] = cfg->client_id;
	if (!app) {
		fields[n++] = "refresh_token";
		fields[n++] = acct->tokens.refresh_token;
	}
	fields[n++] = "scope";
	fields[n++] = cfg->scope;
	if (secret[0] != '\0') {
		fields[n++] = "client_secret";
		fields[n++] = secret;
	}
	fields[n] = NULL;
	acct->renew = rn;
	rn->http = http_post_form(acct->sec->o->http, cfg->token_url, fields,
	    cfg->ca_file, cfg->http_timeout, o2_renew_http_cb, rn);
	if (rn->http == NULL) {
		o2_renew_free(rn);
		return NULL;
	}
	return rn;
}

/* Wait for the account's renewal, starting one if none runs. */
static void
o2_join_renew(struct oauth2_request *req, int seal)
{
	struct o2_account	*acct = req->acct;
	int			 app;

	app = acct->sec->cfg->flow == OAUTH2_FLOW_CLIENT_CREDENTIALS;
	if (acct->renew == NULL && o2_renew_start(acct, app, seal,
	    req->password, req->pwlen) == NULL) {
		o2_answer_request(req, OAUTH2_TEMPORARY, NULL, "mailtlsd: out "
		    "of memory; try again later", NULL);
		return;
	}
	req->state = O2_REQ_RENEW;
}

/* ---- logins ---------------------------------------------------------- */

/*
 * The account needs a person: start the section's flow, or answer with
 * the instructions of the one that waits.
 */
void
o2_need_authorisation(struct oauth2_request *req)
{
	struct o2_account	*acct = req->acct;
	struct o2_flow		*f = acct->flow;
	char			 client[O2_TEXT_MAX], log[O2_LOG_MAX];
	char			 why[512];
	struct tm		 tm;

	if (acct->error_untold) {
		/* The last flow ended badly: this login hears why. */
		acct->error_untold = 0;
		o2_answer_request(req, OAUTH2_REFUSED, NULL, acct->last_error,
		    NULL);
		return;
	}
	if (f != NULL && !o2_password_matches(f->password, f->pwlen,
	    req->password, req->pwlen)) {
		gmtime_r(&f->deadline, &tm);
		o2_format(client, sizeof(client), "mailtlsd: an authorisation "
		    "of %s started by a login with another password is "
		    "waiting; log in with that password once it is complete, "
		    "or after it expires (%02d:%02d UTC)", acct->user,
		    tm.tm_hour, tm.tm_min);
		snprintf(log, sizeof(log), "[oauth2:%s] a login for %s with "
		    "another password than the one that started the waiting "
		    "authorisation: not given its instructions",
		    acct->sec->cfg->name, acct->user);
		log_warnx("%s", log);
		o2_answer_request(req, OAUTH2_AUTHORISE, NULL, client, log);
		return;
	}
	if (f == NULL) {
		if (acct->sec->o->n_flows >= O2_FLOWS_MAX) {
			snprintf(log, sizeof(log), "[oauth2:%s] %d "
			    "authorisations wait already; %s must wait",
			    acct->sec->cfg->name, O2_FLOWS_MAX, acct->user);
			o2_answer_request(req, OAUTH2_TEMPORARY, NULL,
			    "mailtlsd: too many authorisations wait; try again "
			    "later", log);
			return;
		}
		f = o2_flow_start(acct, req->password, req->pwlen, why,
		    sizeof(why));
		if (f == NULL) {
			snprintf(log, sizeof(log), "[oauth2:%s] cannot start "
			    "the %s flow for %s: %s", acct->sec->cfg->name,
			    o2_flow_name(acct->sec->cfg->flow), acct->user,
			    why);
			log_errorx("%s", log);
			snprintf(client, sizeof(client), "mailtlsd: cannot "
			    "start the authorisation of %s (see mailtlsd's "
			    "log); try again later", acct->user);
			o2_answer_request(req, OAUTH2_TEMPORARY, NULL, client,
			    log);
			return;
		}
	}
	if (f->state == O2_FLOW_STARTING) {
		req->state = O2_REQ_FLOW_START;
		return;
	}
	snprintf(log, sizeof(log), "[oauth2:%s] %s is not authorised yet (%s "
	    "flow waiting)", acct->sec->cfg->name, acct->user,
	    o2_flow_name(f->kind));
	o2_answer_request(req, OAUTH2_AUTHORISE, NULL, f->text, log);
}

/* The account has no file (yet, or any more). */
static void
o2_on_absent(struct oauth2_request *req)
{
	struct o2_account	*acct = req->acct;

	if (acct->renew != NULL || o2_flow_finishing(acct)) {
		/* Being sealed right now: look again when that is done. */
		req->state = O2_REQ_REOPEN;
		return;
	}
	if (acct->have_tokens) {
		/* Removed on disk to start over: memory forgets them too. */
		token_set_clear(&acct->tokens);
		acct->have_tokens = 0;
		acct->dirty = 0;
	}
	if (acct->sec->cfg->flow == OAUTH2_FLOW_CLIENT_CREDENTIALS)
		o2_join_renew(req, 1);
	else
		o2_need_authorisation(req);
}

/* Whether the account's access token serves for another while. */
static int
o2_token_fresh(const struct o2_account *acct)
{
	const struct token_set	*t = &acct->tokens;

	if (!acct->have_tokens || t->access_token[0] == '\0')
		return 0;
	/* Unknown expiry: good until a server refuses it (refresh = 1). */
	return t->access_expires == 0 ||
	    t->access_expires > time(NULL) + O2_EXPIRY_MARGIN;
}

/* The password opened the account: a token, a renewal or a flow. */
static void
o2_on_unlocked(struct oauth2_request *req, const struct token_set *set)
{
	struct o2_account	*acct = req->acct;
	struct o2_section	*sec = acct->sec;

	o2_account_learn(acct, set);
	if (acct->dirty && acct->resave == NULL && acct->renew == NULL &&
	    acct->flow == NULL) {
		acct->resave = tokenstore_save(sec->o->store, sec->cfg->name,
		    acct->user, req->password, req->pwlen, &acct->tokens,
		    o2_resave_cb, acct);
	}
	if (o2_flow_finishing(acct)) {
		/* Its tokens are on their way: open again once sealed. */
		req->state = O2_REQ_REOPEN;
		return;
	}
	if (acct->flow != NULL) {
		o2_need_authorisation(req);
		return;
	}
	if (o2_token_fresh(acct) && !req->refresh) {
		o2_answer_token(req);
		return;
	}
	if (acct->renew != NULL ||
	    sec->cfg->flow == OAUTH2_FLOW_CLIENT_CREDENTIALS ||
	    acct->tokens.refresh_token[0] != '\0') {
		o2_join_renew(req, 0);
		return;
	}
	o2_need_authorisation(req);
}

/* The token store answered the login's open. */
static void
o2_open_cb(enum tokenstore_result result, const struct token_set *set,
    const char *reason, void *arg)
{
	struct oauth2_request	*req = arg;
	struct o2_account	*acct = req->acct;
	const char		*name = acct->sec->cfg->name;
	char			 client[O2_TEXT_MAX], log[O2_LOG_MAX];

	req->job = NULL;
	switch (result) {
	case TOKENSTORE_OK:
		o2_on_unlocked(req, set);
		break;
	case TOKENSTORE_ABSENT:
		o2_on_absent(req);
		break;
	case TOKENSTORE_WRONG:
		snprintf(client, sizeof(client), "mailtlsd: wrong password for "
		    "%s (its tokens are kept, sealed with the password of the "
		    "login that authorised it)", acct->user);
		snprintf(log, sizeof(log), "[oauth2:%s] wrong password for %s "
		    "(%s)", name, acct->user, reason != NULL ? reason :
		    "the tokens are kept");
		o2_answer_request(req, OAUTH2_WRONG_PASSWORD, NULL, client,
		    log);
		break;
	case TOKENSTORE_ERROR:
		snprintf(log, sizeof(log), "[oauth2:%s] cannot open the tokens "
		    "of %s: %s", name, acct->user, reason != NULL ? reason :
		    "unknown error");
		log_errorx("%s", log);
		snprintf(client, sizeof(client), "mailtlsd: cannot open the "
		    "tokens of %s (see mailtlsd's log); try again later",
		    acct->user);
		o2_answer_request(req, OAUTH2_TEMPORARY, NULL, client, log);
		break;
	}
	o2_account_release(acct);
}

/* Ask the token store to open the account with the login's password. */
static void
o2_request_open(struct oauth2_request *req)
{
	struct o2_account	*acct = req->acct;
	struct tokenstore	*store;
	char			 why[512], log[O2_LOG_MAX];

	req->state = O2_REQ_OPENING;
	if ((store = o2_store(acct->sec->o, why, sizeof(why))) == NULL) {
		snprintf(log, sizeof(log), "[oauth2:%s] cannot use the token "
		    "directory: %s", acct->sec->cfg->name, why);
		log_errorx("%s", log);
		o2_answer_request(req, OAUTH2_TEMPORARY, NULL, "mailtlsd: "
		    "cannot use its token directory (see mailtlsd's log); try "
		    "again later", log);
		return;
	}
	req->job = tokenstore_open(store, acct->sec->cfg->name, acct->user,
	    req->password, req->pwlen, o2_open_cb, req);
	if (req->job == NULL)
		o2_answer_request(req, OAUTH2_TEMPORARY, NULL, "mailtlsd: out "
		    "of memory; try again later", NULL);
}

/* The section named, or NULL. */
static struct o2_section *
o2_section_find(struct oauth2 *o, const char *name)
{
	struct o2_section	*sec;

	TAILQ_FOREACH(sec, &o->sections, entry)
		if (strcmp(sec->cfg->name, name) == 0)
			return sec;
	return NULL;
}

/* The account of user in section, made if need be (mailtlsd -a). */
struct o2_account *
o2_account_lookup(struct oauth2 *o, const char *section, const char *user)
{
	struct o2_section	*sec;

	if ((sec = o2_section_find(o, section)) == NULL)
		return NULL;
	return o2_account_get(sec, user, 1);
}

/* A login to a service with oauth2 = section. */
struct oauth2_request *
oauth2_login(struct oauth2 *o, const char *section, const char *user,
    const char *password, size_t pwlen, int refresh, oauth2_login_cb *cb,
    void *arg)
{
	struct oauth2_request	*req;
	struct o2_section	*sec;
	char			 text[O2_TEXT_MAX];

	if ((req = calloc(1, sizeof(*req))) == NULL)
		return NULL;
	req->o = o;
	req->cb = cb;
	req->arg = arg;
	req->refresh = refresh;
	req->pwlen = pwlen;
	if ((req->answer_ev = event_new(o->base, -1, 0, o2_answer_cb, req)) ==
	    NULL || (req->password = o2_secret_dup(password, pwlen)) == NULL) {
		o2_request_free(req);
		return NULL;
	}
	if ((sec = o2_section_find(o, section)) == NULL) {
		snprintf(text, sizeof(text), "mailtlsd: [oauth2:%s] is not "
		    "configured any more; try again later", section);
		o2_answer_request(req, OAUTH2_TEMPORARY, NULL, text, NULL);
		return req;
	}
	if (!o2_user_ok(user) || pwlen == 0 ||
	    pwlen > TOKENSTORE_PASSWORD_MAX) {
		o2_answer_request(req, OAUTH2_REFUSED, NULL, "mailtlsd: the "
		    "user name must be 1 to 255 bytes without spaces or "
		    "control characters, the password 1 to 4096 bytes", NULL);
		return req;
	}
	if ((req->acct = o2_account_get(sec, user, 1)) == NULL) {
		o2_answer_request(req, OAUTH2_TEMPORARY, NULL, "mailtlsd: too "
		    "many accounts in memory; try again later", NULL);
		return req;
	}
	TAILQ_INSERT_TAIL(&req->acct->requests, req, entry);
	o2_request_open(req);
	return req;
}

/* The session went away. */
void
oauth2_cancel(struct oauth2_request *req)
{
	struct o2_account	*acct;

	if (req == NULL)
		return;
	acct = req->acct;
	o2_request_free(req);
	if (acct != NULL)
		o2_account_release(acct);
}

/* ---- sections, start, reload, free ------------------------------------ */

/* Read the section's client secret: the file (trimmed) or the inline one. */
static int
o2_read_secret(const struct oauth2_config *cfg, char **secret, size_t *size,
    char *err, size_t errlen)
{
	unsigned char	*buf = NULL;
	size_t		 len = 0, start = 0, end, i;
	char		 why[256];
	const char	*text = cfg->client_secret;
	struct stat	 st;

	if (cfg->client_secret_file[0] != '\0') {
		/* The daemon's user reads it at a reload: others never. */
		if (stat(cfg->client_secret_file, &st) == 0 &&
		    (st.st_mode & S_IRWXO) != 0) {
			snprintf(err, errlen, "[oauth2:%s] client_secret_file "
			    "%s can be read by every user (mode %04o): chmod "
			    "o= it (0600 owned by the user mailtlsd runs as, "
			    "or 0640 with that user's group)", cfg->name,
			    cfg->client_secret_file,
			    (unsigned)(st.st_mode & 07777));
			return -1;
		}
		if (safefile_read(cfg->client_secret_file, O2_SECRET_FILE_MAX,
		    &buf, &len, why, sizeof(why)) != 0) {
			snprintf(err, errlen, "[oauth2:%s] client_secret_file "
			    "%s: %s", cfg->name, cfg->client_secret_file, why);
			return -1;
		}
		text = (const char *)buf;
	} else
		len = strlen(text);
	while (start < len && (text[start] == ' ' || text[start] == '\t' ||
	    text[start] == '\r' || text[start] == '\n'))
		start++;
	for (end = len; end > start && (text[end - 1] == ' ' ||
	    text[end - 1] == '\t' || text[end - 1] == '\r' ||
	    text[end - 1] == '\n'); end--)
		;
	for (i = start; i < end; i++) {
		if ((unsigned char)text[i] < 0x20 || text[i] == 0x7f) {
			snprintf(err, errlen, "[oauth2:%s] client_secret_file "
			    "%s: more than one line, or control characters",
			    cfg->name, cfg->client_secret_file);
			safefile_free(buf, len);
			return -1;
		}
	}
	if (buf != NULL && end == start) {
		snprintf(err, errlen, "[oauth2:%s] client_secret_file %s is "
		    "empty", cfg->name, cfg->client_secret_file);
		safefile_free(buf, len);
		return -1;
	}
	*secret = o2_secret_dup(text + start, end - start);
	*size = end - start + 1;
	if (buf != NULL)
		safefile_free(buf, len);
	if (*secret == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

/* A section object for cfg. */
static struct o2_section *
o2_section_new(struct oauth2 *o, const struct oauth2_config *cfg)
{
	struct o2_section	*sec;

	if ((sec = calloc(1, sizeof(*sec))) == NULL)
		return NULL;
	sec->o = o;
	sec->cfg = cfg;
	TAILQ_INIT(&sec->accounts);
	return sec;
}

/* Free a section; answer its waiting logins first when answer is set. */
static void
o2_section_free(struct o2_section *sec, int answer)
{
	struct o2_account	*acct;
	struct oauth2_request	*req;
	char			 text[O2_TEXT_MAX];

	snprintf(text, sizeof(text), "mailtlsd: [oauth2:%s] was removed from "
	    "the configuration; try again later", sec->cfg->name);
	while ((acct = TAILQ_FIRST(&sec->accounts)) != NULL) {
		while (answer && (req = TAILQ_FIRST(&acct->requests)) != NULL)
			o2_answer_request(req, OAUTH2_TEMPORARY, NULL, text,
			    NULL);
		o2_account_free(acct);
	}
	o2_secret_free(sec->secret, sec->secret_size);
	free(sec);
}

/* Secrets read for a configuration, before it is taken. */
struct o2_secrets {
	char	*value[CONFIG_MAX_OAUTH2];
	size_t	 size[CONFIG_MAX_OAUTH2];
};

/* Read every section's secret; -1 with err (nothing kept). */
static int
o2_secrets_read(const struct config *cfg, struct o2_secrets *s, char *err,
    size_t errlen)
{
	int	i;

	memset(s, 0, sizeof(*s));
	for (i = 0; i < cfg->n_oauth2 && i < CONFIG_MAX_OAUTH2; i++) {
		if (o2_read_secret(&cfg->oauth2[i], &s->value[i], &s->size[i],
		    err, errlen) != 0) {
			while (i-- > 0)
				o2_secret_free(s->value[i], s->size[i]);
			return -1;
		}
	}
	return 0;
}

/* Take the sections of cfg: keep those that stay, add, remove. */
static int
o2_take_config(struct oauth2 *o, const struct config *cfg,
    struct o2_secrets *s, char *err, size_t errlen)
{
	struct o2_section	*sec, *next;
	const struct oauth2_config *oc;
	char			 why[512];
	int			 i, found;

	for (sec = TAILQ_FIRST(&o->sections); sec != NULL; sec = next) {
		next = TAILQ_NEXT(sec, entry);
		found = 0;
		for (i = 0; i < cfg->n_oauth2; i++)
			found |= strcmp(cfg->oauth2[i].name,
			    sec->cfg->name) == 0;
		if (!found) {
			log_info("[oauth2:%s] removed: its accounts and "
			    "authorisations end", sec->cfg->name);
			TAILQ_REMOVE(&o->sections, sec, entry);
			o2_section_free(sec, 1);
		}
	}
	for (i = 0; i < cfg->n_oauth2; i++) {
		oc = &cfg->oauth2[i];
		if ((sec = o2_section_find(o, oc->name)) == NULL) {
			if ((sec = o2_section_new(o, oc)) == NULL) {
				snprintf(err, errlen, "out of memory");
				return -1;
			}
			TAILQ_INSERT_TAIL(&o->sections, sec, entry);
		}
		sec->cfg = oc;
		o2_secret_free(sec->secret, sec->secret_size);
		sec->secret = s->value[i];
		sec->secret_size = s->size[i];
		s->value[i] = NULL;
		if (o->store != NULL && tokenstore_set_kdf(o->store, oc->name,
		    oc->kdf_memory, oc->kdf_passes, why, sizeof(why)) != 0)
			log_warnx("[oauth2:%s] %s", oc->name, why);
	}
	o->cfg = cfg;
	return 0;
}

/* Every account of the daemon, for cfg. */
struct oauth2 *
oauth2_new(struct event_base *base, const struct config *cfg, char *err,
    size_t errlen)
{
	struct oauth2		*o;
	struct o2_secrets	 s;
	int			 rc, i;

	if (sodium_init() < 0) {
		snprintf(err, errlen, "cannot initialise libsodium");
		return NULL;
	}
	if ((o = calloc(1, sizeof(*o))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	o->base = base;
	o->cfg = cfg;
	TAILQ_INIT(&o->sections);
	TAILQ_INIT(&o->flows);
	TAILQ_INIT(&o->redirects);
	if ((o->http = http_new(base, err, errlen)) == NULL) {
		free(o);
		return NULL;
	}
	if (o2_secrets_read(cfg, &s, err, errlen) != 0) {
		oauth2_free(o);
		return NULL;
	}
	rc = o2_take_config(o, cfg, &s, err, errlen);
	for (i = 0; i < CONFIG_MAX_OAUTH2; i++)
		o2_secret_free(s.value[i], s.size[i]);	/* those not taken */
	if (rc != 0) {
		oauth2_free(o);
		return NULL;
	}
	return o;
}

/* Drop every account (the token directory changes). */
static void
o2_drop_store(struct oauth2 *o)
{
	struct o2_section	*sec;
	struct o2_account	*acct;
	struct oauth2_request	*req;

	TAILQ_FOREACH(sec, &o->sections, entry) {
		while ((acct = TAILQ_FIRST(&sec->accounts)) != NULL) {
			while ((req = TAILQ_FIRST(&acct->requests)) != NULL)
				o2_answer_request(req, OAUTH2_TEMPORARY, NULL,
				    "mailtlsd: its token directory changed; "
				    "try again", NULL);
			o2_account_free(acct);
		}
	}
	tokenstore_free(o->store);
	o->store = NULL;
}

/* A new configuration (SIGHUP). */
int
oauth2_reload(struct oauth2 *o, const struct config *cfg, char *err,
    size_t errlen)
{
	struct o2_secrets	s;
	int			rc, i;

	if (o2_secrets_read(cfg, &s, err, errlen) != 0)
		return -1;
	if (o->store != NULL && strcmp(o->cfg->state_dir, cfg->state_dir) !=
	    0) {
		log_info("state_dir is now %s: OAuth2 accounts are opened "
		    "there from now on", cfg->state_dir);
		o2_drop_store(o);
	}
	rc = o2_take_config(o, cfg, &s, err, errlen);
	for (i = 0; i < CONFIG_MAX_OAUTH2; i++)
		o2_secret_free(s.value[i], s.size[i]);	/* those not taken */
	o2_flow_status(o);
	return rc;
}

/* End everything; no callback is called. */
void
oauth2_free(struct oauth2 *o)
{
	struct o2_section	*sec;

	if (o == NULL)
		return;
	while ((sec = TAILQ_FIRST(&o->sections)) != NULL) {
		TAILQ_REMOVE(&o->sections, sec, entry);
		o2_section_free(sec, 0);
	}
	o2_redirects_close_all(o);
	tokenstore_free(o->store);
	http_free(o->http);
	free(o);
}

/* Call fn for each account in memory. */
void
oauth2_foreach_account(const struct oauth2 *o,
    void (*fn)(const struct oauth2_account_status *, void *), void *arg)
{
	struct oauth2_account_status	 st;
	const struct o2_section		*sec;
	const struct o2_account		*acct;

	TAILQ_FOREACH(sec, &o->sections, entry) {
		TAILQ_FOREACH(acct, &sec->accounts, entry) {
			memset(&st, 0, sizeof(st));
			st.section = sec->cfg->name;
			st.user = acct->user;
			st.authorised = acct->have_tokens &&
			    (acct->tokens.refresh_token[0] != '\0' ||
			    (sec->cfg->flow == OAUTH2_FLOW_CLIENT_CREDENTIALS &&
			    acct->tokens.access_token[0] != '\0'));
			st.flow_pending = acct->flow != NULL &&
			    acct->flow->state == O2_FLOW_WAITING;
			/* A dead grant's access token is wiped too. */
			st.access_expires = acct->have_tokens &&
			    acct->tokens.access_token[0] != '\0' ?
			    acct->tokens.access_expires : 0;
			st.last_refresh = acct->last_refresh;
			st.last_error = acct->last_error[0] != '\0' ?
			    acct->last_error : NULL;
			fn(&st, arg);
		}
	}
}
