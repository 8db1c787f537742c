/*
 * oauth2_flow.c - the authorisations that wait for a person: the device
 * flow (RFC 8628) and the browser flow (authorisation code with PKCE,
 * RFC 7636, and a loopback redirect, RFC 8252), one per account at a time.
 *
 * A flow remembers the password of the login that started it (in
 * sodium_malloc'd memory, wiped at the end) and seals the tokens with it
 * when the person has authorised; a later login with that password then
 * succeeds.  Logins with another password never see the flow's
 * instructions (oauth2.c): otherwise a local user could start an
 * authorisation for someone else's mailbox and have its owner complete
 * it, and the tokens would be sealed with the other user's password.
 *
 * The browser flow's client text is a short link to mailtlsd's own
 * redirect listener (http://localhost:8400/s/LINK), which answers with a
 * redirect to the provider's long authorize URL: the browser must reach
 * that listener anyway to complete the flow (on this host or through an
 * SSH tunnel), the line then fits SMTP's 512 octets and systemd's status
 * line, and the long URL still goes to the log.  The listener is open
 * only while a browser flow waits (and a few seconds after, so that the
 * last page reaches the browser).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <sodium.h>

#include "http.h"
#include "log.h"
#include "notify.h"
#include "oauth2_impl.h"

#define O2_LISTEN_GRACE		3	/* s the listener outlives its flows */
#define O2_PAGE_MAX		2048

static void	o2_flow_timer_cb(evutil_socket_t, short, void *);
static void	o2_redirect_release(struct o2_redirect *);

/* ---- PKCE, state and URLs ------------------------------------------- */

/* The S256 challenge of a PKCE verifier (RFC 7636 4.2). */
int
o2_pkce_challenge(const char *verifier, char *out, size_t outlen)
{
	unsigned char	digest[crypto_hash_sha256_BYTES];

	if (outlen < sodium_base64_ENCODED_LEN(sizeof(digest),
	    sodium_base64_VARIANT_URLSAFE_NO_PADDING))
		return -1;
	crypto_hash_sha256(digest, (const unsigned char *)verifier,
	    strlen(verifier));
	sodium_bin2base64(out, outlen, digest, sizeof(digest),
	    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	return 0;
}

/* bytes random bytes, base64url without padding (URL-safe as is). */
int
o2_random_b64(size_t bytes, char *out, size_t outlen)
{
	unsigned char	buf[O2_VERIFIER_BYTES];

	if (bytes > sizeof(buf) || outlen < sodium_base64_ENCODED_LEN(bytes,
	    sodium_base64_VARIANT_URLSAFE_NO_PADDING))
		return -1;
	randombytes_buf(buf, bytes);
	sodium_bin2base64(out, outlen, buf, bytes,
	    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_memzero(buf, sizeof(buf));
	return 0;
}

/* The port of a listen address. */
static unsigned
o2_listen_port(const struct listen_addr *la)
{
	const struct sockaddr_in6	*sin6;
	const struct sockaddr_in	*sin;

	if (la->addr.ss_family == AF_INET6) {
		sin6 = (const struct sockaddr_in6 *)&la->addr;
		return ntohs(sin6->sin6_port);
	}
	sin = (const struct sockaddr_in *)&la->addr;
	return ntohs(sin->sin_port);
}

/*
 * "http://HOST:PORT" where the browser reaches redirect_listen.
 * Microsoft registers loopback redirect URIs as http://localhost and
 * ignores their port for desktop apps (Mobile and desktop applications
 * platform; 127.0.0.1 can only be entered through the manifest); Google's
 * desktop clients take http://127.0.0.1:PORT and [::1] without any
 * registration, as RFC 8252 7.3 recommends.
 */
static int
o2_base_url(const struct oauth2_config *cfg, char *out, size_t outlen)
{
	int	n;

	if (cfg->provider == OAUTH2_PROVIDER_MICROSOFT)
		n = snprintf(out, outlen, "http://localhost:%u",
		    o2_listen_port(&cfg->redirect_listen));
	else
		n = snprintf(out, outlen, "http://%s",
		    cfg->redirect_listen.text);
	return n > 0 && (size_t)n < outlen ? 0 : -1;
}

/* The redirect_uri of the browser flow. */
int
o2_redirect_uri(const struct oauth2_config *cfg, char *out, size_t outlen)
{
	return o2_base_url(cfg, out, outlen);
}

/* The short link the client text carries. */
int
o2_link_url(const struct oauth2_config *cfg, const char *link, char *out,
    size_t outlen)
{
	char	base[128];
	int	n;

	if (o2_base_url(cfg, base, sizeof(base)) != 0)
		return -1;
	n = snprintf(out, outlen, "%s/s/%s", base, link);
	return n > 0 && (size_t)n < outlen ? 0 : -1;
}

/* Append "&name=escaped(value)" (or "?" first) to out. */
static int
o2_url_param(char *out, size_t outlen, const char *name, const char *value)
{
	size_t	len = strlen(out);
	int	n;

	n = snprintf(out + len, outlen - len, "%c%s=",
	    strchr(out, '?') != NULL ? '&' : '?', name);
	if (n < 0 || (size_t)n >= outlen - len)
		return -1;
	len += (size_t)n;
	return http_escape(value, out + len, outlen - len) < 0 ? -1 : 0;
}

/*
 * The provider's authorize URL for one browser flow.  Google issues a
 * refresh token only with access_type=offline, and again on a later
 * authorisation only with prompt=consent.
 */
int
o2_authorize_url(const struct oauth2_config *cfg, const char *user,
    const char *redirect_uri, const char *state, const char *challenge,
    char *out, size_t outlen)
{
	int	n, bad = 0;

	n = snprintf(out, outlen, "%s", cfg->authorize_url);
	if (n < 0 || (size_t)n >= outlen)
		return -1;
	bad |= o2_url_param(out, outlen, "client_id", cfg->client_id);
	bad |= o2_url_param(out, outlen, "response_type", "code");
	bad |= o2_url_param(out, outlen, "redirect_uri", redirect_uri);
	bad |= o2_url_param(out, outlen, "scope", cfg->scope);
	bad |= o2_url_param(out, outlen, "state", state);
	bad |= o2_url_param(out, outlen, "code_challenge", challenge);
	bad |= o2_url_param(out, outlen, "code_challenge_method", "S256");
	bad |= o2_url_param(out, outlen, "login_hint", user);
	if (cfg->provider == OAUTH2_PROVIDER_GOOGLE) {
		bad |= o2_url_param(out, outlen, "access_type", "offline");
		bad |= o2_url_param(out, outlen, "prompt", "consent");
	}
	return bad ? -1 : 0;
}

/* ---- the flow's life -------------------------------------------------- */

/* Tell the service manager about the newest authorisation that waits. */
void
o2_flow_status(struct oauth2 *o)
{
	struct o2_flow	*f, *newest = NULL;
	int		 waiting = 0;
	char		 note[O2_TEXT_MAX + 64];

	if (o->cli)
		return;
	TAILQ_FOREACH(f, &o->flows, entry) {
		if (f->state == O2_FLOW_WAITING) {
			waiting++;
			newest = f;
		}
	}
	if (newest == NULL) {
		notify_status_note(NULL);
		return;
	}
	if (waiting == 1)
		snprintf(note, sizeof(note), "%s", newest->text);
	else
		snprintf(note, sizeof(note), "%d authorisations wait; newest: "
		    "%s", waiting, newest->text);
	notify_status_note(note);
}

/* The instructions are known: say them where a person may look. */
static void
o2_flow_announce(struct o2_flow *f)
{
	struct o2_section	*sec = f->acct->sec;

	/* The text without its "mailtlsd: ": the log says who speaks. */
	log_info("[oauth2:%s] %s", sec->cfg->name, f->text + 10);
	if (f->authorize_url != NULL)
		log_info("[oauth2:%s] authorisation of %s: the link leads to "
		    "%s", sec->cfg->name, f->acct->user, f->authorize_url);
	o2_flow_status(sec->o);
	if (f->cli_text != NULL)
		f->cli_text(f);
}

/* Escape text for HTML. */
static void
o2_html_escape(const char *in, char *out, size_t outlen)
{
	size_t		 n = 0, w;
	const char	*rep;
	char		 one[2] = { 0, 0 };

	for (; *in != '\0'; in++) {
		switch (*in) {
		case '<': rep = "&lt;"; break;
		case '>': rep = "&gt;"; break;
		case '&': rep = "&amp;"; break;
		case '"': rep = "&quot;"; break;
		default: one[0] = *in; rep = one; break;
		}
		w = strlen(rep);
		if (n + w >= outlen)
			break;
		memcpy(out + n, rep, w);
		n += w;
	}
	out[n] = '\0';
}

/* Answer the browser with a small page. */
static void
o2_page(struct evhttp_request *req, int status, const char *reason,
    const char *message)
{
	struct evbuffer		*body = evbuffer_new();
	struct evkeyvalq	*headers;
	char			 escaped[O2_PAGE_MAX];

	headers = evhttp_request_get_output_headers(req);
	o2_html_escape(message, escaped, sizeof(escaped));
	evhttp_add_header(headers, "Content-Type", "text/html; charset=utf-8");
	evhttp_add_header(headers, "Cache-Control", "no-store");
	evhttp_add_header(headers, "Referrer-Policy", "no-referrer");
	evhttp_add_header(headers, "X-Content-Type-Options", "nosniff");
	if (body != NULL)
		evbuffer_add_printf(body, "<!DOCTYPE html>\n<html><head>"
		    "<meta charset=\"utf-8\"><title>mailtlsd</title></head>"
		    "<body><p>%s</p></body></html>\n", escaped);
	evhttp_send_reply(req, status, reason, body);
	if (body != NULL)
		evbuffer_free(body);
}

/* Free a flow: cancel what runs, wipe its secrets (no callbacks). */
void
o2_flow_free(struct o2_flow *f)
{
	struct oauth2	*o = f->acct->sec->o;

	if (f->http != NULL)
		http_cancel(f->http);
	if (f->save != NULL)
		tokenstore_cancel(f->save);	/* still written */
	if (f->timer != NULL)
		event_free(f->timer);
	if (f->browser != NULL)
		o2_page(f->browser, 503, "Service Unavailable", "mailtlsd: "
		    "this authorisation ended before it completed; log in "
		    "again from your mail client to start a new one.");
	if (f->redirect != NULL)
		o2_redirect_release(f->redirect);
	o2_secret_free(f->password, f->pwlen);
	o2_secret_free(f->device_code, f->device_code != NULL ?
	    strlen(f->device_code) + 1 : 0);
	sodium_memzero(f->verifier, sizeof(f->verifier));
	free(f->authorize_url);
	TAILQ_REMOVE(&o->flows, f, entry);
	o->n_flows--;
	f->acct->flow = NULL;
	free(f);
	o2_flow_status(o);
}

/*
 * The flow is over: ok, or text says why not (recorded for the account's
 * next login when a person may have been waiting on it).
 */
void
o2_flow_end(struct o2_flow *f, int ok, const char *text)
{
	struct o2_account	*acct = f->acct;

	if (!ok && text != NULL) {
		snprintf(acct->last_error, sizeof(acct->last_error), "%s",
		    text);
		acct->error_untold = f->state != O2_FLOW_STARTING &&
		    f->cli_done == NULL;
	}
	if (f->cli_done != NULL)
		f->cli_done(f, ok, text);
	o2_flow_free(f);
	o2_account_release(acct);
}

/* Answer the logins that wait for the flow's instructions. */
static void
o2_flow_answer_waiting(struct o2_flow *f, enum oauth2_result result,
    const char *client, const char *log)
{
	struct oauth2_request	*r, *next;

	for (r = TAILQ_FIRST(&f->acct->requests); r != NULL; r = next) {
		next = TAILQ_NEXT(r, entry);
		if (r->state == O2_REQ_FLOW_START)
			o2_answer_request(r, result, NULL, client, log);
	}
}

/* The tokens were sealed (or not). */
static void
o2_flow_saved_cb(enum tokenstore_result result, const struct token_set *set,
    const char *reason, void *arg)
{
	struct o2_flow		*f = arg;
	struct o2_account	*acct = f->acct;
	const char		*name = acct->sec->cfg->name;
	char			 text[O2_TEXT_MAX];

	(void)set;
	f->save = NULL;
	if (result == TOKENSTORE_OK) {
		acct->dirty = 0;
		log_info("[oauth2:%s] %s is authorised; the tokens are sealed "
		    "with the password of the login that asked", name,
		    acct->user);
		if (f->browser != NULL) {
			o2_page(f->browser, 200, "OK", "mailtlsd: authorised, "
			    "you may close this window and log in again from "
			    "your mail client.");
			f->browser = NULL;
		}
		o2_flow_end(f, 1, NULL);
		return;
	}
	log_errorx("[oauth2:%s] %s authorised the app, but its tokens cannot "
	    "be stored: %s", name, acct->user, reason != NULL ? reason :
	    "unknown error");
	snprintf(text, sizeof(text), "mailtlsd: the authorisation of %s "
	    "succeeded but its tokens could not be stored (see mailtlsd's "
	    "log); log in again to start over", acct->user);
	/* Without a file they belong to nobody: not kept in memory either. */
	token_set_clear(&acct->tokens);
	acct->have_tokens = 0;
	acct->dirty = 0;
	if (f->browser != NULL) {
		o2_page(f->browser, 500, "Internal Server Error", text);
		f->browser = NULL;
	}
	o2_flow_end(f, 0, text);
}

/* The provider issued tokens: seal them with the flow's password. */
static void
o2_flow_got_tokens(struct o2_flow *f, const struct o2_answer *a)
{
	struct o2_account	*acct = f->acct;

	o2_account_take_tokens(acct, a, 1);
	f->state = O2_FLOW_SAVING;
	f->save = tokenstore_save(acct->sec->o->store, acct->sec->cfg->name,
	    acct->user, f->password, f->pwlen, &acct->tokens,
	    o2_flow_saved_cb, f);
	if (f->save == NULL)
		o2_flow_saved_cb(TOKENSTORE_ERROR, NULL, "out of memory", f);
}

/* An answer ended the flow without tokens. */
static void
o2_flow_failed(struct o2_flow *f, const char *what, const struct o2_answer *a)
{
	char	client[O2_TEXT_MAX], log[O2_LOG_MAX];

	o2_explain(f->acct->sec->cfg, f->kind == OAUTH2_FLOW_DEVICE ?
	    O2_STEP_DEVICE_POLL : O2_STEP_CODE, what, a, client,
	    sizeof(client), log, sizeof(log));
	log_warnx("%s", log);
	if (f->browser != NULL) {
		o2_page(f->browser, 400, "Bad Request", client);
		f->browser = NULL;
	}
	o2_flow_end(f, 0, client);
}

/* Run the flow's timer in secs seconds. */
static void
o2_flow_arm(struct o2_flow *f, time_t secs)
{
	struct timeval	tv = { secs > 0 ? secs : 0, 0 };

	evtimer_add(f->timer, &tv);
}

/* ---- device flow ------------------------------------------------------ */

/* The next poll, or the end at the deadline. */
static void
o2_device_schedule(struct o2_flow *f)
{
	time_t	now = time(NULL);

	if (now + (time_t)f->interval >= f->deadline)
		o2_flow_arm(f, f->deadline - now);
	else
		o2_flow_arm(f, f->interval);
}

/* The answer to one poll of the token endpoint. */
static void
o2_device_poll_cb(int status, const char *body, size_t len,
    const char *error, void *arg)
{
	struct o2_flow	*f = arg;
	struct o2_answer a;
	char		 what[O2_USER_MAX + 64];
	char		 client[O2_TEXT_MAX], log[O2_LOG_MAX];

	f->http = NULL;
	if (o2_parse_token(status, body, len, error, &a) != 0) {
		o2_device_schedule(f);	/* out of memory: try again */
		return;
	}
	if (a.ok) {
		o2_flow_got_tokens(f, &a);
		o2_answer_clear(&a);
		return;
	}
	snprintf(what, sizeof(what), "the device authorisation of %s",
	    f->acct->user);
	switch (o2_explain(f->acct->sec->cfg, O2_STEP_DEVICE_POLL, what, &a,
	    client, sizeof(client), log, sizeof(log))) {
	case O2_SLOW_DOWN:
		if (f->interval < 2 * O2_DEVICE_INTERVAL_MAX)
			f->interval += O2_SLOW_DOWN_STEP;
		log_debug("%s (now every %u s)", log, f->interval);
		/* FALLTHROUGH */
	case O2_PENDING:
		o2_device_schedule(f);
		break;
	case O2_TEMPORARY:
		log_debug("%s; polling on", log);
		o2_device_schedule(f);
		break;
	case O2_REFUSED:
	case O2_REAUTHORISE:
		o2_flow_failed(f, what, &a);
		break;
	}
}

/* Time to poll (or the code expired). */
static void
o2_device_poll(struct o2_flow *f)
{
	const struct oauth2_config	*cfg = f->acct->sec->cfg;
	const char			*fields[] = {
		"grant_type", "urn:ietf:params:oauth:grant-type:device_code",
		"client_id", cfg->client_id,
		"device_code", f->device_code,
		f->acct->sec->secret[0] != '\0' ? "client_secret" : NULL,
		f->acct->sec->secret,
		NULL
	};
	char				 text[O2_TEXT_MAX];

	if (time(NULL) >= f->deadline) {
		o2_format(text, sizeof(text), "mailtlsd: the code %s for %s "
		    "expired before the authorisation completed; log in "
		    "again for a new one", f->user_code, f->acct->user);
		log_warnx("[oauth2:%s] %s", cfg->name, text + 10);
		o2_flow_end(f, 0, text);
		return;
	}
	f->http = http_post_form(f->acct->sec->o->http, cfg->token_url,
	    fields, cfg->ca_file, cfg->http_timeout, o2_device_poll_cb, f);
	if (f->http == NULL)
		o2_device_schedule(f);
}

/* The device authorisation answered: the code to show, or an error. */
static void
o2_device_started_cb(int status, const char *body, size_t len,
    const char *error, void *arg)
{
	struct o2_flow		*f = arg;
	struct o2_device	 dev;
	struct o2_answer	 err;
	char			 client[O2_TEXT_MAX], log[O2_LOG_MAX];
	char			 what[O2_USER_MAX + 64];

	f->http = NULL;
	if (error != NULL || !o2_parse_device(status, body, len, &dev, &err)) {
		if (error != NULL) {
			memset(&err, 0, sizeof(err));
			snprintf(err.failure, sizeof(err.failure), "%s", error);
		}
		snprintf(what, sizeof(what), "asking for a device code for %s",
		    f->acct->user);
		o2_explain(f->acct->sec->cfg, O2_STEP_DEVICE_START, what, &err,
		    client, sizeof(client), log, sizeof(log));
		log_warnx("%s", log);
		o2_flow_answer_waiting(f, err.failure[0] != '\0' ||
		    err.status >= 500 ? OAUTH2_TEMPORARY : OAUTH2_REFUSED,
		    client, log);
		o2_flow_end(f, 0, client);
		return;
	}
	f->device_code = o2_secret_dup(dev.device_code,
	    strlen(dev.device_code));
	o2_device_clear(&dev);
	if (f->device_code == NULL) {
		o2_flow_answer_waiting(f, OAUTH2_TEMPORARY, "mailtlsd: out of "
		    "memory", "out of memory for a device code");
		o2_flow_end(f, 0, NULL);
		return;
	}
	snprintf(f->user_code, sizeof(f->user_code), "%s", dev.user_code);
	f->interval = dev.interval;
	f->deadline = time(NULL) + (time_t)dev.expires_in;
	snprintf(f->go_to, sizeof(f->go_to), "%s", dev.verification);
	/* Without the user name if need be: never a cut URL or code. */
	if (!o2_format(f->text, sizeof(f->text), "mailtlsd: to authorise %s "
	    "visit %s and enter %s, then log in again", f->acct->user,
	    dev.verification, dev.user_code))
		o2_format(f->text, sizeof(f->text), "mailtlsd: to authorise "
		    "this account visit %s and enter %s, then log in again",
		    dev.verification, dev.user_code);
	f->state = O2_FLOW_WAITING;
	o2_flow_announce(f);
	snprintf(log, sizeof(log), "[oauth2:%s] waiting for %s to be "
	    "authorised (device code)", f->acct->sec->cfg->name,
	    f->acct->user);
	o2_flow_answer_waiting(f, OAUTH2_AUTHORISE, f->text, log);
	o2_device_schedule(f);
}

/* Ask the provider for a device code. */
static int
o2_device_begin(struct o2_flow *f, char *why, size_t whylen)
{
	const struct oauth2_config	*cfg = f->acct->sec->cfg;
	const char			*fields[] = {
		"client_id", cfg->client_id,
		"scope", cfg->scope,
		f->acct->sec->secret[0] != '\0' ? "client_secret" : NULL,
		f->acct->sec->secret,
		NULL
	};

	f->state = O2_FLOW_STARTING;
	f->http = http_post_form(f->acct->sec->o->http, cfg->device_url,
	    fields, cfg->ca_file, cfg->http_timeout, o2_device_started_cb, f);
	if (f->http == NULL) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	return 0;
}

/* ---- browser flow: the redirect listener ------------------------------ */

/* The waiting browser flow with this state (or link), or NULL. */
static struct o2_flow *
o2_redirect_find(struct o2_redirect *r, const char *value, int by_link)
{
	struct o2_flow	*f, *found = NULL;
	const char	*mine;
	size_t		 len = strlen(value);

	TAILQ_FOREACH(f, &r->o->flows, entry) {
		if (f->redirect != r || f->kind != OAUTH2_FLOW_BROWSER)
			continue;
		mine = by_link ? f->link : f->state_param;
		/* Constant time: the values are capabilities. */
		if (strlen(mine) == len && len > 0 &&
		    sodium_memcmp(mine, value, len) == 0)
			found = f;
	}
	return found;
}

/* Wipe and free a parsed query (it may hold a code). */
static void
o2_query_clear(struct evkeyvalq *q)
{
	struct evkeyval	*kv;

	TAILQ_FOREACH(kv, q, next)
		if (kv->value != NULL)
			sodium_memzero(kv->value, strlen(kv->value));
	evhttp_clear_headers(q);
}

static void	o2_browser_exchange(struct o2_flow *, const char *code);

/* The provider sent the browser back: ?code=...&state=... or ?error=. */
static void
o2_redirect_back(struct o2_redirect *r, struct evhttp_request *req,
    const char *query)
{
	struct evkeyvalq	 q;
	struct o2_flow		*f;
	struct o2_answer	 a;
	const char		*state, *code, *error;
	char			 what[O2_USER_MAX + 64];

	TAILQ_INIT(&q);
	if (query == NULL || evhttp_parse_query_str(query, &q) != 0 ||
	    (state = evhttp_find_header(&q, "state")) == NULL ||
	    (f = o2_redirect_find(r, state, 0)) == NULL) {
		o2_page(req, 400, "Bad Request", "mailtlsd: this authorisation "
		    "is unknown or has expired; log in again from your mail "
		    "client to start a new one.");
		o2_query_clear(&q);
		return;
	}
	if (f->state != O2_FLOW_WAITING) {
		o2_page(req, 409, "Conflict", "mailtlsd: this authorisation "
		    "is already being completed.");
		o2_query_clear(&q);
		return;
	}
	f->browser = req;
	code = evhttp_find_header(&q, "code");
	error = evhttp_find_header(&q, "error");
	if (code == NULL || code[0] == '\0' || error != NULL) {
		memset(&a, 0, sizeof(a));
		snprintf(a.error, sizeof(a.error), "%s", error != NULL ?
		    error : "invalid_request");
		snprintf(what, sizeof(what), "the browser authorisation of %s",
		    f->acct->user);
		o2_flow_failed(f, what, &a);
	} else
		o2_browser_exchange(f, code);
	o2_query_clear(&q);
}

/* A request to the listener: a link, the redirect back, or nonsense. */
static void
o2_redirect_cb(struct evhttp_request *req, void *arg)
{
	struct o2_redirect		*r = arg;
	const struct evhttp_uri		*uri;
	const char			*path;
	struct o2_flow			*f;

	uri = evhttp_request_get_evhttp_uri(req);
	if (uri == NULL || (path = evhttp_uri_get_path(uri)) == NULL) {
		o2_page(req, 400, "Bad Request", "mailtlsd: bad request.");
		return;
	}
	if (strncmp(path, "/s/", 3) == 0) {
		if ((f = o2_redirect_find(r, path + 3, 1)) == NULL ||
		    f->state != O2_FLOW_WAITING) {
			o2_page(req, 404, "Not Found", "mailtlsd: this "
			    "authorisation link is unknown or has expired; log "
			    "in again from your mail client for a new one.");
			return;
		}
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Location", f->authorize_url);
		o2_page(req, 302, "Found", "mailtlsd: on to the provider.");
		return;
	}
	if (strcmp(path, "/") == 0) {
		o2_redirect_back(r, req, evhttp_uri_get_query(uri));
		return;
	}
	o2_page(req, 404, "Not Found", "mailtlsd: not found.");
}

/* Bind the listener's socket; -1 with why. */
static int
o2_redirect_bind(const struct listen_addr *la, char *why, size_t whylen)
{
	int	fd, one = 1;

	fd = socket(la->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (fd < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    bind(fd, (const struct sockaddr *)&la->addr, la->addrlen) != 0 ||
	    listen(fd, 16) != 0) {
		snprintf(why, whylen, "cannot listen on %s for the "
		    "authorisation's redirect: %s", la->text, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* Close a listener that no flow uses any more (after its grace). */
static void
o2_redirect_close(struct o2_redirect *r)
{
	TAILQ_REMOVE(&r->o->redirects, r, entry);
	if (r->grace != NULL)
		event_free(r->grace);
	evhttp_free(r->http);
	log_debug("closed the authorisation listener on %s", r->addr.text);
	free(r);
}

static void
o2_redirect_grace_cb(evutil_socket_t fd, short what, void *arg)
{
	struct o2_redirect	*r = arg;

	(void)fd;
	(void)what;
	if (r->users == 0)
		o2_redirect_close(r);
}

/* The listener on la, opened if need be; NULL with why. */
static struct o2_redirect *
o2_redirect_get(struct oauth2 *o, const struct listen_addr *la, char *why,
    size_t whylen)
{
	struct o2_redirect	*r;
	int			 fd;

	TAILQ_FOREACH(r, &o->redirects, entry) {
		if (strcmp(r->addr.text, la->text) == 0) {
			r->users++;
			return r;
		}
	}
	if (!la->is_loopback) {
		snprintf(why, whylen, "redirect_listen %s is not loopback",
		    la->text);
		return NULL;
	}
	if ((r = calloc(1, sizeof(*r))) == NULL) {
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	r->o = o;
	r->addr = *la;
	if ((fd = o2_redirect_bind(la, why, whylen)) < 0) {
		free(r);
		return NULL;
	}
	if ((r->http = evhttp_new(o->base)) == NULL ||
	    (r->grace = evtimer_new(o->base, o2_redirect_grace_cb, r)) ==
	    NULL || evhttp_accept_socket_with_handle(r->http, fd) == NULL) {
		snprintf(why, whylen, "out of memory");
		if (r->http != NULL)
			evhttp_free(r->http);
		if (r->grace != NULL)
			event_free(r->grace);
		close(fd);
		free(r);
		return NULL;
	}
	evhttp_set_allowed_methods(r->http, EVHTTP_REQ_GET);
	evhttp_set_timeout(r->http, 30);
	evhttp_set_max_headers_size(r->http, 16384);
	evhttp_set_max_body_size(r->http, 1024);
	evhttp_set_gencb(r->http, o2_redirect_cb, r);
	r->users = 1;
	TAILQ_INSERT_TAIL(&o->redirects, r, entry);
	log_debug("listening on %s for authorisation redirects", la->text);
	return r;
}

/* A flow no longer uses the listener: close it soon if none does. */
static void
o2_redirect_release(struct o2_redirect *r)
{
	struct timeval	grace = { O2_LISTEN_GRACE, 0 };

	if (--r->users == 0)
		evtimer_add(r->grace, &grace);
}

/* Close every listener at once (oauth2_free). */
void
o2_redirects_close_all(struct oauth2 *o)
{
	while (!TAILQ_EMPTY(&o->redirects))
		o2_redirect_close(TAILQ_FIRST(&o->redirects));
}

/* ---- browser flow: the code --------------------------------------------- */

/* The token endpoint answered the code exchange. */
static void
o2_browser_exchanged_cb(int status, const char *body, size_t len,
    const char *error, void *arg)
{
	struct o2_flow		*f = arg;
	struct o2_answer	 a;
	char			 what[O2_USER_MAX + 64];

	f->http = NULL;
	if (o2_parse_token(status, body, len, error, &a) != 0) {
		memset(&a, 0, sizeof(a));
		snprintf(a.failure, sizeof(a.failure), "out of memory");
	}
	if (a.ok) {
		o2_flow_got_tokens(f, &a);
		o2_answer_clear(&a);
		return;
	}
	snprintf(what, sizeof(what), "exchanging the authorisation code of %s",
	    f->acct->user);
	o2_flow_failed(f, what, &a);
}

/* Trade the code for tokens (the browser waits for the result). */
static void
o2_browser_exchange(struct o2_flow *f, const char *code)
{
	const struct oauth2_config	*cfg = f->acct->sec->cfg;
	const char			*fields[] = {
		"grant_type", "authorization_code",
		"code", code,
		"redirect_uri", f->redirect_uri,
		"client_id", cfg->client_id,
		"code_verifier", f->verifier,
		f->acct->sec->secret[0] != '\0' ? "client_secret" : NULL,
		f->acct->sec->secret,
		NULL
	};
	struct o2_answer		 a;

	f->state = O2_FLOW_EXCHANGING;
	f->http = http_post_form(f->acct->sec->o->http, cfg->token_url,
	    fields, cfg->ca_file, cfg->http_timeout, o2_browser_exchanged_cb,
	    f);
	if (f->http == NULL) {
		memset(&a, 0, sizeof(a));
		snprintf(a.failure, sizeof(a.failure), "out of memory");
		o2_flow_failed(f, "exchanging an authorisation code", &a);
	}
}

/* Make the verifier, state, link and URLs; open the listener. */
static int
o2_browser_begin(struct o2_flow *f, char *why, size_t whylen)
{
	const struct oauth2_config	*cfg = f->acct->sec->cfg;
	char				 challenge[O2_B64_MAX];
	char				 link_url[256];

	if ((f->authorize_url = malloc(O2_URL_MAX)) == NULL) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	if (o2_random_b64(O2_VERIFIER_BYTES, f->verifier,
	    sizeof(f->verifier)) != 0 ||
	    o2_random_b64(O2_STATE_BYTES, f->state_param,
	    sizeof(f->state_param)) != 0 ||
	    o2_random_b64(O2_STATE_BYTES, f->link, sizeof(f->link)) != 0 ||
	    o2_pkce_challenge(f->verifier, challenge, sizeof(challenge)) != 0 ||
	    o2_redirect_uri(cfg, f->redirect_uri, sizeof(f->redirect_uri)) !=
	    0 || o2_link_url(cfg, f->link, link_url, sizeof(link_url)) != 0 ||
	    o2_authorize_url(cfg, f->acct->user, f->redirect_uri,
	    f->state_param, challenge, f->authorize_url, O2_URL_MAX) != 0) {
		snprintf(why, whylen, "the authorize URL is too long");
		return -1;
	}
	if ((f->redirect = o2_redirect_get(f->acct->sec->o,
	    &cfg->redirect_listen, why, whylen)) == NULL)
		return -1;
	snprintf(f->go_to, sizeof(f->go_to), "%s", link_url);
	if (!o2_format(f->text, sizeof(f->text), "mailtlsd: to authorise %s "
	    "open %s in a browser on this host (or through ssh -L %u:%s), "
	    "then log in again", f->acct->user, link_url,
	    o2_listen_port(&cfg->redirect_listen), cfg->redirect_listen.text))
		o2_format(f->text, sizeof(f->text), "mailtlsd: to authorise "
		    "this account open %s in a browser on this host (or "
		    "through ssh -L %u:%s), then log in again", link_url,
		    o2_listen_port(&cfg->redirect_listen),
		    cfg->redirect_listen.text);
	f->state = O2_FLOW_WAITING;
	f->deadline = time(NULL) + O2_BROWSER_WAIT;
	o2_flow_arm(f, O2_BROWSER_WAIT);
	o2_flow_announce(f);
	return 0;
}

/* ---- start and timer ---------------------------------------------------- */

/* The flow's timer: a device poll, or a browser flow's end. */
static void
o2_flow_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct o2_flow	*f = arg;
	char		 text[O2_TEXT_MAX];

	(void)fd;
	(void)what;
	if (f->kind == OAUTH2_FLOW_DEVICE) {
		o2_device_poll(f);
		return;
	}
	if (f->state != O2_FLOW_WAITING) {
		o2_flow_arm(f, 5);	/* the exchange ends it */
		return;
	}
	snprintf(text, sizeof(text), "mailtlsd: the authorisation of %s was "
	    "not completed within %d minutes; log in again for a new link",
	    f->acct->user, O2_BROWSER_WAIT / 60);
	log_warnx("[oauth2:%s] %s", f->acct->sec->cfg->name, text + 10);
	o2_flow_end(f, 0, text);
}

/*
 * Start the section's flow for acct, sealing with password at the end.
 * Device: the instructions come with the provider's answer (STARTING);
 * browser: at once (WAITING).  NULL with why.
 */
struct o2_flow *
o2_flow_start(struct o2_account *acct, const char *password, size_t pwlen,
    char *why, size_t whylen)
{
	struct oauth2	*o = acct->sec->o;
	struct o2_flow	*f;
	int		 rc;

	if (acct->sec->cfg->flow != OAUTH2_FLOW_DEVICE &&
	    acct->sec->cfg->flow != OAUTH2_FLOW_BROWSER) {
		snprintf(why, whylen, "flow = %s needs no person",
		    o2_flow_name(acct->sec->cfg->flow));
		return NULL;
	}
	if ((f = calloc(1, sizeof(*f))) == NULL ||
	    (f->password = o2_secret_dup(password, pwlen)) == NULL ||
	    (f->timer = evtimer_new(o->base, o2_flow_timer_cb, f)) == NULL) {
		snprintf(why, whylen, "out of memory");
		if (f != NULL) {
			o2_secret_free(f->password, pwlen);
			free(f);
		}
		return NULL;
	}
	f->pwlen = pwlen;
	f->acct = acct;
	f->kind = acct->sec->cfg->flow;
	f->started = time(NULL);
	f->state = O2_FLOW_STARTING;
	TAILQ_INSERT_TAIL(&o->flows, f, entry);
	o->n_flows++;
	acct->flow = f;
	rc = f->kind == OAUTH2_FLOW_BROWSER ? o2_browser_begin(f, why, whylen) :
	    o2_device_begin(f, why, whylen);
	if (rc != 0) {
		o2_flow_free(f);
		return NULL;
	}
	return f;
}
