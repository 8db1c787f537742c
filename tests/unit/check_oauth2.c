/*
 * check_oauth2.c - unit tests of oauth2*.c.
 *
 * The pure parts: PKCE against RFC 7636's example, the authorize URL and
 * its escaping, redirect URIs, the provider's answers read, and every
 * error translated into words that fit a client's line.
 *
 * The accounts, driven through oauth2_login() with the real token store
 * (in a temporary state_dir, with small Argon2id parameters) against the
 * fake provider of fake_provider.py over HTTPS: the device flow with
 * slow_down and a refusal, the browser flow with PKCE through a fake
 * browser (fake_browser.py) and a state that does not match, one shared
 * refresh for concurrent logins, rotated refresh tokens stored (and read
 * again after a restart), invalid_grant starting a new flow, the client
 * credentials grant sealing the first password, a second password during
 * a flow, a wrong password keeping the tokens, and nothing secret in a
 * debug log.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <event2/event.h>
#include <jansson.h>
#include <sodium.h>

#include "config.h"
#include "http.h"
#include "log.h"
#include "notify.h"
#include "oauth2.h"
#include "oauth2_impl.h"
#include "provider.h"
#include "unit.h"

static struct provider	 prov;
static struct event_base *base;
static struct http	*client;	/* the test's own questions */
static struct config	*cfg;
static struct oauth2	*o;
static char		 state_dir[64];

/* ---- fixtures ---------------------------------------------------- */

/* A free loopback port (a race no test here loses in practice). */
static unsigned
free_port(void)
{
	struct sockaddr_in	sin = { .sin_family = AF_INET };
	socklen_t		len = sizeof(sin);
	int			fd = socket(AF_INET, SOCK_STREAM, 0);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	close(fd);
	return ntohs(sin.sin_port);
}

/* A configuration with one generic section "t" of the given flow. */
static struct config *
make_config(enum oauth2_flow flow)
{
	struct config		*c = calloc(1, sizeof(*c));
	struct oauth2_config	*oc;
	char			 addr[64], err[128];

	ck_assert_ptr_nonnull(c);
	snprintf(c->path, sizeof(c->path), "test.conf");
	snprintf(c->state_dir, sizeof(c->state_dir), "%s", state_dir);
	c->oauth2 = calloc(1, sizeof(*c->oauth2));
	ck_assert_ptr_nonnull(c->oauth2);
	c->n_oauth2 = 1;
	oc = c->oauth2;
	snprintf(oc->name, sizeof(oc->name), "t");
	oc->provider = OAUTH2_PROVIDER_GENERIC;
	oc->flow = flow;
	snprintf(oc->client_id, sizeof(oc->client_id), "cid");
	snprintf(oc->token_url, sizeof(oc->token_url), "%s",
	    provider_url(&prov, "/token"));
	snprintf(oc->device_url, sizeof(oc->device_url), "%s",
	    provider_url(&prov, "/device"));
	snprintf(oc->authorize_url, sizeof(oc->authorize_url), "%s",
	    provider_url(&prov, "/authorize"));
	snprintf(oc->scope, sizeof(oc->scope), "s1 s2");
	snprintf(oc->ca_file, sizeof(oc->ca_file), "%s", prov.ca);
	if (flow == OAUTH2_FLOW_CLIENT_CREDENTIALS)
		snprintf(oc->client_secret, sizeof(oc->client_secret),
		    "cs-SECRET");
	oc->http_timeout = 10;
	oc->kdf_memory = 8 * 1024;
	oc->kdf_passes = 1;
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", free_port());
	ck_assert_int_eq(config_parse_listen(addr, &oc->redirect_listen, err,
	    sizeof(err)), 0);
	return c;
}

static void
free_config(struct config *c)
{
	if (c == NULL)
		return;
	free(c->oauth2);
	free(c);
}

/* A fresh oauth2 object on cfg. */
static void
start_oauth2(void)
{
	char	err[256];

	o = oauth2_new(base, cfg, err, sizeof(err));
	ck_assert_msg(o != NULL, "%s", err);
}

/* Start everything for flow. */
static void
start(enum oauth2_flow flow)
{
	char	err[256];

	ck_assert_int_eq(http_global_init(), 0);
	ck_assert_int_ge(sodium_init(), 0);
	snprintf(state_dir, sizeof(state_dir), "/tmp/check_oauth2.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(state_dir));
	provider_start(&prov);
	base = event_base_new();
	ck_assert_ptr_nonnull(base);
	client = http_new(base, err, sizeof(err));
	ck_assert_ptr_nonnull(client);
	cfg = make_config(flow);
	start_oauth2();
}

static void
start_device(void)
{
	start(OAUTH2_FLOW_DEVICE);
}

static void
start_browser(void)
{
	start(OAUTH2_FLOW_BROWSER);
}

static void
start_app(void)
{
	start(OAUTH2_FLOW_CLIENT_CREDENTIALS);
}

static void
stop(void)
{
	oauth2_free(o);
	o = NULL;
	http_free(client);
	free_config(cfg);
	cfg = NULL;
	event_base_free(base);
	provider_stop(&prov);
	unit_remove_tree(state_dir);
	http_global_cleanup();
}

/* ---- logins ------------------------------------------------------ */

/* The answer to one login. */
struct login {
	int			done;
	enum oauth2_result	result;
	char			token[256];
	char			text[512];
	char			log[1024];
};

static void
login_cb(enum oauth2_result result, const char *token,
    const char *client_text, const char *log_text, void *arg)
{
	struct login	*l = arg;

	ck_assert_int_eq(l->done, 0);
	l->done = 1;
	l->result = result;
	ck_assert((result == OAUTH2_TOKEN) == (token != NULL));
	snprintf(l->token, sizeof(l->token), "%s", token != NULL ? token : "");
	snprintf(l->text, sizeof(l->text), "%s", client_text);
	snprintf(l->log, sizeof(l->log), "%s", log_text);
	/* A line for a client: short enough for SMTP, no line break. */
	ck_assert_uint_lt(strlen(client_text), 500);
	ck_assert_ptr_null(strpbrk(client_text, "\r\n"));
}

/* Start a login; its answer comes to l. */
static struct oauth2_request *
login_start(struct login *l, const char *user, const char *pw, int refresh)
{
	struct oauth2_request	*req;

	memset(l, 0, sizeof(*l));
	req = oauth2_login(o, "t", user, pw, strlen(pw), refresh, login_cb, l);
	ck_assert_ptr_nonnull(req);
	/* Never answered from inside oauth2_login(). */
	ck_assert_int_eq(l->done, 0);
	return req;
}

/* Log in and wait for the answer. */
static void
login(struct login *l, const char *user, const char *pw, int refresh)
{
	login_start(l, user, pw, refresh);
	ck_assert_msg(provider_run(base, &l->done, 30), "no answer");
}

/* What foreach says of one account. */
struct seen {
	const char	*user;
	int		 found;
	int		 authorised;
	int		 flow_pending;
	time_t		 access_expires;
	char		 last_error[512];
};

static void
seen_cb(const struct oauth2_account_status *st, void *arg)
{
	struct seen	*s = arg;

	if (strcmp(st->user, s->user) != 0)
		return;
	s->found = 1;
	s->authorised = st->authorised;
	s->flow_pending = st->flow_pending;
	s->access_expires = st->access_expires;
	snprintf(s->last_error, sizeof(s->last_error), "%s",
	    st->last_error != NULL ? st->last_error : "");
}

static struct seen
account(const char *user)
{
	struct seen	s = { .user = user };

	oauth2_foreach_account(o, seen_cb, &s);
	return s;
}

/* Run the loop until the account is authorised (or fails the test). */
static int	waiting_authorised;
static const char *waiting_user;

static void
poll_authorised_cb(evutil_socket_t fd, short what, void *arg)
{
	struct event	*ev = arg;
	struct timeval	 tv = { 0, 100000 };

	(void)fd;
	(void)what;
	if (account(waiting_user).authorised && !account(waiting_user)
	    .flow_pending)
		waiting_authorised = 1;
	else
		evtimer_add(ev, &tv);
}

static void
wait_authorised(const char *user, int seconds)
{
	struct event	*ev;
	struct timeval	 now = { 0, 0 };

	waiting_authorised = 0;
	waiting_user = user;
	ev = evtimer_new(base, poll_authorised_cb, event_self_cbarg());
	evtimer_add(ev, &now);
	ck_assert_msg(provider_run(base, &waiting_authorised, seconds),
	    "%s was not authorised in %d s", user, seconds);
	event_free(ev);
}

/* What the fake provider saw. */
static json_t *
stats(void)
{
	const char *const	 none[] = { NULL };
	char			*body;
	json_t			*j;

	ck_assert_int_eq(provider_post(&prov, base, client, "/stats", none,
	    &body), 200);
	j = json_loads(body, 0, NULL);
	free(body);
	ck_assert_ptr_nonnull(j);
	return j;
}

static long
stat_int(const char *name)
{
	json_t	*j = stats();
	long	 v = (long)json_integer_value(json_object_get(j, name));

	json_decref(j);
	return v;
}

/* Authorise user with pw through the device flow. */
static void
authorise_device(const char *user, const char *pw)
{
	struct login	l;

	login(&l, user, pw, 0);
	ck_assert_int_eq(l.result, OAUTH2_AUTHORISE);
	wait_authorised(user, 20);
}

/* ---- pure parts -------------------------------------------------- */

/* RFC 7636 appendix B: the S256 challenge of the example verifier. */
START_TEST(test_pkce_rfc7636)
{
	char	out[64], v1[64], v2[64];

	ck_assert_int_eq(o2_pkce_challenge(
	    "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", out, sizeof(out)),
	    0);
	ck_assert_str_eq(out, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
	ck_assert_int_eq(o2_pkce_challenge("x", out, 43), -1);
	/* Verifiers: 43 unreserved characters, never twice the same. */
	ck_assert_int_eq(o2_random_b64(O2_VERIFIER_BYTES, v1, sizeof(v1)), 0);
	ck_assert_int_eq(o2_random_b64(O2_VERIFIER_BYTES, v2, sizeof(v2)), 0);
	ck_assert_uint_eq(strlen(v1), 43);
	ck_assert_uint_eq(strspn(v1, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmn"
	    "opqrstuvwxyz0123456789-_"), 43);
	ck_assert_str_ne(v1, v2);
}
END_TEST

/* An oauth2_config for the pure tests. */
static void
pure_config(struct oauth2_config *oc, enum oauth2_provider provider)
{
	char	err[64];

	memset(oc, 0, sizeof(*oc));
	snprintf(oc->name, sizeof(oc->name), "m365");
	oc->provider = provider;
	oc->flow = OAUTH2_FLOW_BROWSER;
	snprintf(oc->client_id, sizeof(oc->client_id),
	    "00000000-1111-2222-3333-444444444444");
	snprintf(oc->tenant, sizeof(oc->tenant),
	    "99999999-8888-7777-6666-555555555555");
	snprintf(oc->authorize_url, sizeof(oc->authorize_url),
	    "https://login.example/authorize");
	snprintf(oc->scope, sizeof(oc->scope),
	    "https://mail.example/ offline_access");
	ck_assert_int_eq(config_parse_listen("127.0.0.1:8400",
	    &oc->redirect_listen, err, sizeof(err)), 0);
}

/* Every parameter escaped; Google's offline access; the redirect URIs. */
START_TEST(test_authorize_url)
{
	struct oauth2_config	oc;
	char			url[O2_URL_MAX], redirect[128];

	pure_config(&oc, OAUTH2_PROVIDER_MICROSOFT);
	ck_assert_int_eq(o2_redirect_uri(&oc, redirect, sizeof(redirect)), 0);
	ck_assert_str_eq(redirect, "http://localhost:8400");
	ck_assert_int_eq(o2_authorize_url(&oc, "a+b@example.com", redirect,
	    "st", "ch", url, sizeof(url)), 0);
	ck_assert_str_eq(url, "https://login.example/authorize"
	    "?client_id=00000000-1111-2222-3333-444444444444"
	    "&response_type=code&redirect_uri=http%3A%2F%2Flocalhost%3A8400"
	    "&scope=https%3A%2F%2Fmail.example%2F%20offline_access"
	    "&state=st&code_challenge=ch&code_challenge_method=S256"
	    "&login_hint=a%2Bb%40example.com");
	ck_assert_int_eq(o2_link_url(&oc, "LINK", redirect, sizeof(redirect)),
	    0);
	ck_assert_str_eq(redirect, "http://localhost:8400/s/LINK");

	pure_config(&oc, OAUTH2_PROVIDER_GOOGLE);
	snprintf(oc.authorize_url, sizeof(oc.authorize_url),
	    "https://accounts.example/auth?hd=example.com");
	ck_assert_int_eq(o2_redirect_uri(&oc, redirect, sizeof(redirect)), 0);
	ck_assert_str_eq(redirect, "http://127.0.0.1:8400");
	ck_assert_int_eq(o2_authorize_url(&oc, "u", redirect, "st", "ch", url,
	    sizeof(url)), 0);
	ck_assert_ptr_nonnull(strstr(url, "/auth?hd=example.com&client_id="));
	ck_assert_ptr_nonnull(strstr(url, "&access_type=offline"
	    "&prompt=consent"));
	/* Too small a buffer fails, never cuts. */
	ck_assert_int_eq(o2_authorize_url(&oc, "u", redirect, "st", "ch", url,
	    60), -1);
}
END_TEST

/* Token answers: expires_in as a string, no refresh token, errors. */
START_TEST(test_parse_token)
{
	struct o2_answer	a;
	const char		*ok = "{\"access_token\":\"A\",\"expires_in\":"
				    "\"3599\",\"token_type\":\"Bearer\"}";
	const char		*ms = "{\"error\":\"invalid_grant\","
				    "\"error_description\":\"AADSTS70043: The "
				    "refresh token has expired\\r\\nTrace ID: "
				    "x\",\"error_codes\":[70043]}";

	ck_assert_int_eq(o2_parse_token(200, ok, strlen(ok), NULL, &a), 0);
	ck_assert(a.ok);
	ck_assert_str_eq(a.access_token, "A");
	ck_assert_ptr_null(a.refresh_token);
	ck_assert_int_eq(a.expires_in, 3599);
	o2_answer_clear(&a);
	ck_assert_int_eq(o2_parse_token(400, ms, strlen(ms), NULL, &a), 0);
	ck_assert(!a.ok);
	ck_assert_str_eq(a.error, "invalid_grant");
	ck_assert_int_eq(a.aadsts, 70043);
	ck_assert_ptr_null(strpbrk(a.description, "\r\n"));
	/* A token with an error status is not a token. */
	ck_assert_int_eq(o2_parse_token(400, ok, strlen(ok), NULL, &a), 0);
	ck_assert(!a.ok);
	ck_assert_int_eq(o2_parse_token(200, "<html>", 6, NULL, &a), 0);
	ck_assert(!a.ok);
	ck_assert_ptr_nonnull(strstr(a.failure, "not a JSON object"));
	ck_assert_int_eq(o2_parse_token(0, "", 0, "timed out after 30 s", &a),
	    0);
	ck_assert_str_eq(a.failure, "timed out after 30 s");
}
END_TEST

/* Device answers: Microsoft's and Google's names, bounds, refusals. */
START_TEST(test_parse_device)
{
	struct o2_device	d;
	struct o2_answer	e;
	const char		*ms = "{\"device_code\":\"D\",\"user_code\":"
				    "\"ABCD-EFGH\",\"verification_uri\":"
				    "\"https://microsoft.com/devicelogin\","
				    "\"expires_in\":900,\"interval\":5}";
	const char		*google = "{\"device_code\":\"D\","
				    "\"user_code\":\"X\",\"verification_url\":"
				    "\"https://www.google.com/device\","
				    "\"expires_in\":99999,\"interval\":0}";
	const char		*bad = "{\"device_code\":\"D\",\"user_code\":"
				    "\"A B\",\"verification_uri\":"
				    "\"https://x\"}";

	ck_assert(o2_parse_device(200, ms, strlen(ms), &d, &e));
	ck_assert_str_eq(d.user_code, "ABCD-EFGH");
	ck_assert_str_eq(d.verification, "https://microsoft.com/devicelogin");
	ck_assert_uint_eq(d.interval, 5);
	ck_assert_uint_eq(d.expires_in, 900);
	o2_device_clear(&d);
	ck_assert(o2_parse_device(200, google, strlen(google), &d, &e));
	ck_assert_str_eq(d.verification, "https://www.google.com/device");
	ck_assert_uint_eq(d.interval, 1);
	ck_assert_uint_eq(d.expires_in, O2_DEVICE_WAIT_MAX);
	o2_device_clear(&d);
	ck_assert(!o2_parse_device(200, bad, strlen(bad), &d, &e));
	ck_assert_ptr_nonnull(strstr(e.failure, "not a plain"));
	ck_assert(!o2_parse_device(400, "{\"error\":\"invalid_client\"}", 26,
	    &d, &e));
	ck_assert_str_eq(e.error, "invalid_client");
}
END_TEST

/* One AADSTS code: its verdict, and words that fit and name the code. */
static void
expect_aadsts(long code, enum o2_verdict verdict, const char *words)
{
	struct oauth2_config	oc;
	struct o2_answer	a;
	char			text[O2_TEXT_MAX], log[O2_LOG_MAX];
	char			tag[32];

	pure_config(&oc, OAUTH2_PROVIDER_MICROSOFT);
	memset(&a, 0, sizeof(a));
	a.status = 400;
	a.aadsts = code;
	snprintf(a.error, sizeof(a.error), "invalid_grant");
	snprintf(a.description, sizeof(a.description), "AADSTS%ld: x", code);
	ck_assert_int_eq(o2_explain(&oc, O2_STEP_REFRESH, "refreshing", &a,
	    text, sizeof(text), log, sizeof(log)), verdict);
	snprintf(tag, sizeof(tag), "(AADSTS%ld)", code);
	ck_assert_msg(strncmp(text, "mailtlsd: ", 10) == 0, "%s", text);
	ck_assert_msg(strstr(text, tag) != NULL, "%s", text);
	ck_assert_msg(strstr(text, words) != NULL, "%s", text);
	/* Not cut: the text ends as written. */
	ck_assert_uint_lt(strlen(text), sizeof(text) - 1);
	ck_assert_msg(strstr(log, "HTTP 400, invalid_grant: AADSTS") != NULL,
	    "%s", log);
}

START_TEST(test_aadsts)
{
	expect_aadsts(50076, O2_REAUTHORISE, "multi-factor authentication");
	expect_aadsts(54005, O2_REAUTHORISE, "already used");
	expect_aadsts(65001, O2_REFUSED, "https://login.microsoftonline.com/"
	    "99999999-8888-7777-6666-555555555555/adminconsent?client_id="
	    "00000000-1111-2222-3333-444444444444");
	expect_aadsts(70043, O2_REAUTHORISE, "authorise again");
	expect_aadsts(700082, O2_REAUTHORISE, "90 days");
	expect_aadsts(700016, O2_REFUSED, "check client_id and tenant");
	expect_aadsts(7000215, O2_REFUSED, "Value, not its ID");
	expect_aadsts(7000218, O2_REFUSED, "Allow public client flows");
	expect_aadsts(50011, O2_REFUSED, "http://localhost");
}
END_TEST

/* o2_explain() into words (O2_TEXT_MAX), the log text dropped. */
static enum o2_verdict
explain(const struct oauth2_config *oc, enum o2_step step,
    const struct o2_answer *a, char *words)
{
	char	log[O2_LOG_MAX];

	return o2_explain(oc, step, "x", a, words, O2_TEXT_MAX, log,
	    sizeof(log));
}

/* The standard codes, Google's invalid_grant, network and 5xx. */
START_TEST(test_explain_codes)
{
	struct oauth2_config	oc;
	struct o2_answer	a;
	char			words[O2_TEXT_MAX];

	pure_config(&oc, OAUTH2_PROVIDER_GOOGLE);
	memset(&a, 0, sizeof(a));
	a.status = 400;
	snprintf(a.error, sizeof(a.error), "invalid_grant");
	ck_assert_int_eq(explain(&oc, O2_STEP_REFRESH, &a, words),
	    O2_REAUTHORISE);
	ck_assert_ptr_nonnull(strstr(words, "7 days"));
	ck_assert_ptr_nonnull(strstr(words, "Testing"));
	ck_assert_ptr_nonnull(strstr(words, "Publish app"));
	/* The same error for a code: the code, not the grant. */
	ck_assert_int_eq(explain(&oc, O2_STEP_CODE, &a, words),
	    O2_REAUTHORISE);
	ck_assert_ptr_nonnull(strstr(words, "expired or was used already"));
	ck_assert_ptr_null(strstr(words, "7 days"));
	/* Microsoft's device flow says authorization_declined. */
	snprintf(a.error, sizeof(a.error), "authorization_declined");
	ck_assert_int_eq(explain(&oc, O2_STEP_DEVICE_POLL, &a, words),
	    O2_REAUTHORISE);
	ck_assert_ptr_nonnull(strstr(words, "declined"));
	snprintf(a.error, sizeof(a.error), "invalid_grant");
	snprintf(a.error, sizeof(a.error), "invalid_client");
	ck_assert_int_eq(explain(&oc, O2_STEP_REFRESH, &a, words),
	    O2_REFUSED);
	ck_assert_ptr_nonnull(strstr(words, "check client_id"));
	snprintf(a.error, sizeof(a.error), "authorization_pending");
	ck_assert_int_eq(explain(&oc, O2_STEP_REFRESH, &a, words),
	    O2_PENDING);
	snprintf(a.error, sizeof(a.error), "slow_down");
	ck_assert_int_eq(explain(&oc, O2_STEP_REFRESH, &a, words),
	    O2_SLOW_DOWN);
	snprintf(a.error, sizeof(a.error), "access_denied");
	ck_assert_int_eq(explain(&oc, O2_STEP_REFRESH, &a, words),
	    O2_REAUTHORISE);
	ck_assert_ptr_nonnull(strstr(words, "declined"));
	a.status = 503;
	ck_assert_int_eq(explain(&oc, O2_STEP_REFRESH, &a, words),
	    O2_TEMPORARY);
	memset(&a, 0, sizeof(a));
	snprintf(a.failure, sizeof(a.failure), "could not resolve host x");
	ck_assert_int_eq(explain(&oc, O2_STEP_REFRESH, &a, words),
	    O2_TEMPORARY);
	ck_assert_str_eq(words, "mailtlsd: cannot reach the provider (could "
	    "not resolve host x); try again later");
}
END_TEST

/* The mail servers' refusals that point at OAuth2. */
START_TEST(test_server_errors)
{
	const char	*t;

	t = oauth2_explain_server_error("535 5.7.139 Authentication "
	    "unsuccessful, SmtpClientAuthentication is disabled for the "
	    "Tenant.");
	ck_assert_ptr_nonnull(t);
	ck_assert_ptr_nonnull(strstr(t, "Set-CASMailbox"));
	ck_assert_ptr_nonnull(strstr(t, "-SmtpClientAuthenticationDisabled "
	    "$false"));
	t = oauth2_explain_server_error("535 5.7.139 Authentication "
	    "unsuccessful, user is locked by your organization's security "
	    "defaults policy.");
	ck_assert_ptr_nonnull(strstr(t, "security defaults"));
	t = oauth2_explain_server_error("550 5.7.30 Basic authentication is "
	    "not supported for Client Submission.");
	ck_assert_ptr_nonnull(strstr(t, "oauth2 = NAME"));
	t = oauth2_explain_server_error("534-5.7.9 Application-specific "
	    "password required.");
	ck_assert_ptr_nonnull(strstr(t, "provider = google"));
	/* Gmail's IMAP and POP3 refusals carry no SMTP codes. */
	t = oauth2_explain_server_error("NO [ALERT] Application-specific "
	    "password required: https://support.google.com/accounts/answer/"
	    "185833 (Failure)");
	ck_assert_ptr_nonnull(t);
	ck_assert_ptr_nonnull(strstr(t, "app password"));
	t = oauth2_explain_server_error("-ERR [AUTH] Application-specific "
	    "password required: https://support.google.com/accounts/answer/"
	    "185833");
	ck_assert_ptr_nonnull(t);
	ck_assert_ptr_nonnull(strstr(t, "provider = google"));
	ck_assert_ptr_null(oauth2_explain_server_error("NO "
	    "[AUTHENTICATIONFAILED] Invalid credentials (Failure)"));
	ck_assert_ptr_null(oauth2_explain_server_error("535 5.7.8 "
	    "Username and Password not accepted."));
	ck_assert_ptr_null(oauth2_explain_server_error(NULL));
}
END_TEST

/* ---- device flow ------------------------------------------------- */

/* Instructions, tokens sealed in the background, then a token. */
START_TEST(test_device_flow)
{
	struct login	l;

	login(&l, "a@example.com", "pw1", 0);
	ck_assert_int_eq(l.result, OAUTH2_AUTHORISE);
	ck_assert_str_eq(l.text, "mailtlsd: to authorise a@example.com visit "
	    "https://example.test/device and enter UC-0001, then log in "
	    "again");
	ck_assert(account("a@example.com").flow_pending);
	wait_authorised("a@example.com", 20);
	login(&l, "a@example.com", "pw1", 0);
	ck_assert_int_eq(l.result, OAUTH2_TOKEN);
	ck_assert_str_eq(l.token, "at-SECRET-1");
	/* A wrong password fails that login; the tokens stay. */
	login(&l, "a@example.com", "other", 0);
	ck_assert_int_eq(l.result, OAUTH2_WRONG_PASSWORD);
	ck_assert_ptr_nonnull(strstr(l.text, "wrong password for "
	    "a@example.com"));
	login(&l, "a@example.com", "pw1", 0);
	ck_assert_int_eq(l.result, OAUTH2_TOKEN);
	ck_assert_str_eq(l.token, "at-SECRET-1");
	/* After a restart the file opens again. */
	oauth2_free(o);
	start_oauth2();
	login(&l, "a@example.com", "pw1", 0);
	ck_assert_int_eq(l.result, OAUTH2_TOKEN);
	ck_assert_str_eq(l.token, "at-SECRET-1");
}
END_TEST

/* Pending, slow_down (+5 s for every later poll), then tokens. */
START_TEST(test_device_slow_down)
{
	json_t	*j, *polls;
	double	 t[4];
	size_t	 i;

	provider_control(&prov, base, client, "{\"device_script\":"
	    "[\"authorization_pending\",\"slow_down\",\"authorization_"
	    "pending\"]}");
	authorise_device("a@example.com", "pw1");
	j = stats();
	polls = json_object_get(j, "device_polls");
	ck_assert_uint_eq(json_array_size(polls), 4);
	for (i = 0; i < 4; i++)
		t[i] = json_real_value(json_array_get(polls, i));
	json_decref(j);
	ck_assert_msg(t[1] - t[0] > 0.8 && t[1] - t[0] < 3, "%f", t[1] - t[0]);
	ck_assert_msg(t[2] - t[1] > 5.8, "slow_down ignored: %f", t[2] - t[1]);
	ck_assert_msg(t[3] - t[2] > 5.8, "slow_down forgotten: %f",
	    t[3] - t[2]);
}
END_TEST

/* A declined authorisation: the next login hears why, the one after
 * gets a new code. */
START_TEST(test_device_denied)
{
	struct login	l;
	struct seen	s;
	int		i;

	provider_control(&prov, base, client,
	    "{\"device_script\":[\"access_denied\"]}");
	login(&l, "a@example.com", "pw1", 0);
	ck_assert_int_eq(l.result, OAUTH2_AUTHORISE);
	ck_assert_ptr_nonnull(strstr(l.text, "UC-0001"));
	for (i = 0; i < 100 && account("a@example.com").flow_pending; i++)
		event_base_loop(base, EVLOOP_ONCE);
	s = account("a@example.com");
	ck_assert(!s.flow_pending);
	ck_assert_ptr_nonnull(strstr(s.last_error, "declined"));
	login(&l, "a@example.com", "pw1", 0);
	ck_assert_int_eq(l.result, OAUTH2_REFUSED);
	ck_assert_ptr_nonnull(strstr(l.text, "declined"));
	login(&l, "a@example.com", "pw1", 0);
	ck_assert_int_eq(l.result, OAUTH2_AUTHORISE);
	ck_assert_ptr_nonnull(strstr(l.text, "UC-0002"));
}
END_TEST

/* A login with another password never gets the flow's instructions. */
START_TEST(test_other_password_waits)
{
	struct login	l;

	provider_control(&prov, base, client, "{\"device_script\":["
	    "\"authorization_pending\",\"authorization_pending\","
	    "\"authorization_pending\",\"authorization_pending\"]}");
	login(&l, "a@example.com", "pw1", 0);
	ck_assert_int_eq(l.result, OAUTH2_AUTHORISE);
	login(&l, "a@example.com", "intruder", 0);
	ck_assert_int_eq(l.result, OAUTH2_AUTHORISE);
	ck_assert_ptr_nonnull(strstr(l.text, "another password"));
	ck_assert_ptr_null(strstr(l.text, "UC-0001"));
	login(&l, "a@example.com", "pw1", 0);
	ck_assert_int_eq(l.result, OAUTH2_AUTHORISE);
	ck_assert_ptr_nonnull(strstr(l.text, "UC-0001"));
	/* The flow seals the first password. */
	wait_authorised("a@example.com", 30);
	login(&l, "a@example.com", "intruder", 0);
	ck_assert_int_eq(l.result, OAUTH2_WRONG_PASSWORD);
	login(&l, "a@example.com", "pw1", 0);
	ck_assert_int_eq(l.result, OAUTH2_TOKEN);
	ck_assert_int_eq(stat_int("device_codes_issued"), 1);
}
END_TEST

/* ---- refresh ----------------------------------------------------- */

/* Concurrent logins share one refresh; rotated tokens are stored. */
START_TEST(test_refresh_shared_rotated)
{
	struct login	l1, l2, l3;
	json_t		*j, *seen;

	authorise_device("a@example.com", "pw1");
	provider_control(&prov, base, client, "{\"refresh_delay\":1.0}");
	login_start(&l1, "a@example.com", "pw1", 1);
	login_start(&l2, "a@example.com", "pw1", 1);
	login_start(&l3, "a@example.com", "pw1", 1);
	ck_assert(provider_run(base, &l1.done, 20));
	ck_assert(provider_run(base, &l2.done, 20));
	ck_assert(provider_run(base, &l3.done, 20));
	ck_assert_int_eq(l1.result, OAUTH2_TOKEN);
	ck_assert_str_eq(l1.token, "at-SECRET-2");
	ck_assert_str_eq(l2.token, "at-SECRET-2");
	ck_assert_str_eq(l3.token, "at-SECRET-2");
	ck_assert_int_eq(stat_int("refreshes"), 1);
	/* The next refresh presents the rotated token, also after a restart
	 * (the fake provider refuses a used one). */
	oauth2_free(o);
	start_oauth2();
	login(&l1, "a@example.com", "pw1", 1);
	ck_assert_int_eq(l1.result, OAUTH2_TOKEN);
	ck_assert_str_eq(l1.token, "at-SECRET-3");
	j = stats();
	seen = json_object_get(j, "refresh_tokens_seen");
	ck_assert_uint_eq(json_array_size(seen), 2);
	ck_assert_str_eq(json_string_value(json_array_get(seen, 0)),
	    "rt-SECRET-1");
	ck_assert_str_eq(json_string_value(json_array_get(seen, 1)),
	    "rt-SECRET-2");
	json_decref(j);
}
END_TEST

/* A token that expires within a minute is refreshed before use. */
START_TEST(test_refresh_near_expiry)
{
	struct login	l;

	provider_control(&prov, base, client, "{\"expires_in\":30}");
	authorise_device("a@example.com", "pw1");
	login(&l, "a@example.com", "pw1", 0);
	ck_assert_int_eq(l.result, OAUTH2_TOKEN);
	ck_assert_str_eq(l.token, "at-SECRET-2");
	ck_assert_int_eq(stat_int("refreshes"), 1);
	provider_control(&prov, base, client, "{\"expires_in\":3600}");
	login(&l, "a@example.com", "pw1", 0);
	ck_assert_str_eq(l.token, "at-SECRET-3");
	login(&l, "a@example.com", "pw1", 0);
	ck_assert_str_eq(l.token, "at-SECRET-3");
	ck_assert_int_eq(stat_int("refreshes"), 2);
}
END_TEST

/* invalid_grant on refresh: a new flow, whose tokens then serve. */
START_TEST(test_invalid_grant_new_flow)
{
	struct login	l;

	authorise_device("a@example.com", "pw1");
	provider_control(&prov, base, client, "{\"refresh_error\":{\"status\":"
	    "400,\"body\":{\"error\":\"invalid_grant\",\"error_description\":"
	    "\"AADSTS700082: expired\",\"error_codes\":[700082]}}}");
	login(&l, "a@example.com", "pw1", 1);
	ck_assert_int_eq(l.result, OAUTH2_AUTHORISE);
	ck_assert_ptr_nonnull(strstr(l.text, "enter UC-0002"));
	ck_assert_ptr_nonnull(strstr(account("a@example.com").last_error,
	    "90 days"));
	wait_authorised("a@example.com", 20);
	login(&l, "a@example.com", "pw1", 0);
	ck_assert_int_eq(l.result, OAUTH2_TOKEN);
	ck_assert_str_eq(l.token, "at-SECRET-2");
}
END_TEST

/* A provider that cannot be reached: a temporary failure in words. */
START_TEST(test_refresh_unreachable)
{
	struct login	l;

	authorise_device("a@example.com", "pw1");
	provider_control(&prov, base, client, "{\"refresh_error\":{\"status\":"
	    "503,\"body\":{}}}");
	login(&l, "a@example.com", "pw1", 1);
	ck_assert_int_eq(l.result, OAUTH2_TEMPORARY);
	ck_assert_str_eq(l.text, "mailtlsd: the provider answered HTTP 503; "
	    "try again later");
	/* The grant is intact: the next refresh works. */
	login(&l, "a@example.com", "pw1", 1);
	ck_assert_int_eq(l.result, OAUTH2_TOKEN);
}
END_TEST

/* ---- client credentials ------------------------------------------ */

/* The first login seals its password; the token is reused while fresh. */
START_TEST(test_client_credentials)
{
	struct login	l;

	provider_control(&prov, base, client,
	    "{\"client_secret\":\"cs-SECRET\"}");
	login(&l, "box@example.com", "pw1", 0);
	ck_assert_int_eq(l.result, OAUTH2_TOKEN);
	ck_assert_str_eq(l.token, "at-SECRET-1");
	login(&l, "box@example.com", "pw2", 0);
	ck_assert_int_eq(l.result, OAUTH2_WRONG_PASSWORD);
	login(&l, "box@example.com", "pw1", 0);
	ck_assert_int_eq(l.result, OAUTH2_TOKEN);
	ck_assert_str_eq(l.token, "at-SECRET-1");
	ck_assert_int_eq(stat_int("client_credentials"), 1);
	/* A rejected token: a new one. */
	login(&l, "box@example.com", "pw1", 1);
	ck_assert_str_eq(l.token, "at-SECRET-2");
	ck_assert(account("box@example.com").authorised);
}
END_TEST

/* A wrong secret: refused in words, and nothing sealed. */
START_TEST(test_client_credentials_refused)
{
	struct login	l;

	provider_control(&prov, base, client,
	    "{\"client_secret\":\"something else\"}");
	login(&l, "box@example.com", "pw1", 0);
	ck_assert_int_eq(l.result, OAUTH2_REFUSED);
	ck_assert_ptr_nonnull(strstr(l.text, "invalid_client"));
	provider_control(&prov, base, client,
	    "{\"client_secret\":\"cs-SECRET\"}");
	/* Not sealed by the failed login: another password seals it now. */
	login(&l, "box@example.com", "pw2", 0);
	ck_assert_int_eq(l.result, OAUTH2_TOKEN);
}
END_TEST

/* Two first logins at once: one seals, the other's password is wrong. */
START_TEST(test_client_credentials_race)
{
	struct login	l1, l2;

	provider_control(&prov, base, client,
	    "{\"client_secret\":\"cs-SECRET\"}");
	login_start(&l1, "box@example.com", "pw1", 0);
	login_start(&l2, "box@example.com", "pw2", 0);
	ck_assert(provider_run(base, &l1.done, 20));
	ck_assert(provider_run(base, &l2.done, 20));
	ck_assert_int_eq(l1.result, OAUTH2_TOKEN);
	ck_assert_int_eq(l2.result, OAUTH2_WRONG_PASSWORD);
	ck_assert_int_eq(stat_int("client_credentials"), 1);
}
END_TEST

/* ---- browser flow ------------------------------------------------ */

/* Run fake_browser.py on url while the loop runs; its output. */
struct browser {
	int	done;
	char	out[4096];
	size_t	len;
};

static void
browser_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct browser	*b = arg;
	ssize_t		 n;

	(void)what;
	n = read(fd, b->out + b->len, sizeof(b->out) - 1 - b->len);
	if (n > 0) {
		b->len += (size_t)n;
		b->out[b->len] = '\0';
	} else
		b->done = 1;
}

static void
browse(const char *url, struct browser *b)
{
	struct event	*ev;
	pid_t		 pid;
	int		 p[2];

	memset(b, 0, sizeof(*b));
	ck_assert_int_eq(pipe(p), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(p[1], STDOUT_FILENO);
		close(p[0]);
		close(p[1]);
		execl("/usr/bin/python3", "/usr/bin/python3",
		    "tests/unit/fake_browser.py", url, prov.ca, (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	ev = event_new(base, p[0], EV_READ | EV_PERSIST, browser_read_cb, b);
	event_add(ev, NULL);
	ck_assert_msg(provider_run(base, &b->done, 30), "browser hangs");
	event_free(ev);
	close(p[0]);
	waitpid(pid, NULL, 0);
}

/* The link in a browser client text. */
static void
link_of(const char *text, char *url, size_t len)
{
	const char	*at = strstr(text, "http://127.0.0.1:");

	ck_assert_ptr_nonnull(at);
	snprintf(url, len, "%.*s", (int)strcspn(at, " "), at);
}

/* Link, provider, redirect back with the code, PKCE checked, token. */
START_TEST(test_browser_flow)
{
	struct login	l;
	struct browser	b;
	char		url[256], want[160];

	login(&l, "b@example.com", "pw1", 0);
	ck_assert_int_eq(l.result, OAUTH2_AUTHORISE);
	snprintf(want, sizeof(want), "mailtlsd: to authorise b@example.com "
	    "open http://%s/s/", cfg->oauth2[0].redirect_listen.text);
	ck_assert_msg(strncmp(l.text, want, strlen(want)) == 0, "%s", l.text);
	ck_assert_ptr_nonnull(strstr(l.text, "then log in again"));
	link_of(l.text, url, sizeof(url));
	browse(url, &b);
	ck_assert_msg(strncmp(b.out, "200\n", 4) == 0, "%s", b.out);
	ck_assert_ptr_nonnull(strstr(b.out, "mailtlsd: authorised"));
	ck_assert(account("b@example.com").authorised);
	login(&l, "b@example.com", "pw1", 0);
	ck_assert_int_eq(l.result, OAUTH2_TOKEN);
	ck_assert_str_eq(l.token, "at-SECRET-1");
	/* The link served once. */
	browse(url, &b);
	ck_assert_msg(strncmp(b.out, "404\n", 4) == 0, "%s", b.out);
}
END_TEST

/* A redirect with another state is refused; the flow goes on. */
START_TEST(test_browser_state_mismatch)
{
	struct login	l;
	struct browser	b;
	char		url[256];
	json_t		*j, *codes;

	login(&l, "b@example.com", "pw1", 0);
	ck_assert_int_eq(l.result, OAUTH2_AUTHORISE);
	snprintf(url, sizeof(url), "http://%s/?code=stolen&state=guess",
	    cfg->oauth2[0].redirect_listen.text);
	browse(url, &b);
	ck_assert_msg(strncmp(b.out, "400\n", 4) == 0, "%s", b.out);
	ck_assert_ptr_nonnull(strstr(b.out, "unknown or has expired"));
	snprintf(url, sizeof(url), "http://%s/s/nosuchlink",
	    cfg->oauth2[0].redirect_listen.text);
	browse(url, &b);
	ck_assert_msg(strncmp(b.out, "404\n", 4) == 0, "%s", b.out);
	ck_assert(account("b@example.com").flow_pending);
	ck_assert_int_eq(stat_int("refreshes"), 0);
	/* The real link still works; the authorize URL carried it all. */
	link_of(l.text, url, sizeof(url));
	browse(url, &b);
	ck_assert_msg(strncmp(b.out, "200\n", 4) == 0, "%s", b.out);
	j = stats();
	codes = json_object_get(json_object_get(j, "codes"),
	    "code-SECRET-0");
	ck_assert_ptr_null(codes);	/* redeemed */
	json_decref(j);
	login(&l, "b@example.com", "pw1", 0);
	ck_assert_int_eq(l.result, OAUTH2_TOKEN);
}
END_TEST

/* ---- systemd's status line --------------------------------------- */

static void
notify_readable_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	*(int *)arg = 1;
}

/* The next datagram on fd, the loop running meanwhile (10 s at most). */
static void
notify_recv(int fd, char *buf, size_t len)
{
	struct event	*ev;
	int		 readable = 0;
	ssize_t		 n;

	ev = event_new(base, fd, EV_READ, notify_readable_cb, &readable);
	event_add(ev, NULL);
	ck_assert_msg(provider_run(base, &readable, 10), "no notification");
	event_free(ev);
	n = recv(fd, buf, len - 1, MSG_DONTWAIT);
	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
}

/* While a flow waits, STATUS= shows its instructions; then the status. */
START_TEST(test_status_line)
{
	struct sockaddr_un	sun = { .sun_family = AF_UNIX };
	struct login		l;
	char			msg[1024];
	int			fd;

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/notify", state_dir);
	fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	setenv("NOTIFY_SOCKET", sun.sun_path, 1);
	ck_assert_int_eq(notify_init(), 0);
	notify_ready("serving 1 service(s) on 1 address(es)");
	notify_recv(fd, msg, sizeof(msg));
	ck_assert_str_eq(msg, "READY=1\nSTATUS=serving 1 service(s) on 1 "
	    "address(es)");

	login(&l, "a@example.com", "pw1", 0);
	ck_assert_int_eq(l.result, OAUTH2_AUTHORISE);
	notify_recv(fd, msg, sizeof(msg));
	ck_assert_str_eq(msg, "STATUS=mailtlsd: to authorise a@example.com "
	    "visit https://example.test/device and enter UC-0001, then log in "
	    "again");
	/* A reload's READY=1 keeps showing what a person must do. */
	notify_ready("serving 2 service(s) on 2 address(es)");
	notify_recv(fd, msg, sizeof(msg));
	ck_assert_ptr_nonnull(strstr(msg, "STATUS=mailtlsd: to authorise"));
	wait_authorised("a@example.com", 20);
	notify_recv(fd, msg, sizeof(msg));
	ck_assert_str_eq(msg, "STATUS=serving 2 service(s) on 2 address(es)");
	notify_close();
	close(fd);
}
END_TEST

/* ---- configuration: reload and client secrets -------------------- */

/* A reload keeps the waiting flow; a removed section ends its accounts. */
START_TEST(test_reload)
{
	struct config	*next, *none;
	struct login	 l;
	char		 err[256];

	login(&l, "a@example.com", "pw1", 0);
	ck_assert_ptr_nonnull(strstr(l.text, "UC-0001"));
	next = make_config(OAUTH2_FLOW_DEVICE);
	ck_assert_int_eq(oauth2_reload(o, next, err, sizeof(err)), 0);
	free_config(cfg);
	cfg = next;
	login(&l, "a@example.com", "pw1", 0);
	ck_assert_int_eq(l.result, OAUTH2_AUTHORISE);
	ck_assert_ptr_nonnull(strstr(l.text, "UC-0001"));
	wait_authorised("a@example.com", 20);

	none = make_config(OAUTH2_FLOW_DEVICE);
	none->n_oauth2 = 0;
	ck_assert_int_eq(oauth2_reload(o, none, err, sizeof(err)), 0);
	free_config(cfg);
	cfg = none;
	ck_assert(!account("a@example.com").found);
	login(&l, "a@example.com", "pw1", 0);
	ck_assert_int_eq(l.result, OAUTH2_TEMPORARY);
	ck_assert_str_eq(l.text, "mailtlsd: [oauth2:t] is not configured any "
	    "more; try again later");
}
END_TEST

/* Write text to state_dir/name; its path. */
static const char *
write_secret(const char *name, const char *text)
{
	static char	path[128];
	FILE		*f;

	snprintf(path, sizeof(path), "%s/%s", state_dir, name);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
	ck_assert_int_eq(chmod(path, 0600), 0);
	return path;
}

/* A configuration whose secret is in a file; NULL and err if refused. */
static struct oauth2 *
new_with_secret_file(const char *path, struct config **c, char *err,
    size_t errlen)
{
	*c = make_config(OAUTH2_FLOW_CLIENT_CREDENTIALS);
	(*c)->oauth2[0].client_secret[0] = '\0';
	snprintf((*c)->oauth2[0].client_secret_file,
	    sizeof((*c)->oauth2[0].client_secret_file), "%s", path);
	return oauth2_new(base, *c, err, errlen);
}

/* client_secret_file: one line, trimmed; empty, two lines, missing. */
START_TEST(test_secret_file)
{
	struct config	*c;
	struct oauth2	*other;
	struct login	 l;
	const char	*path;
	char		 err[512];

	provider_control(&prov, base, client,
	    "{\"client_secret\":\"cs-SECRET\"}");
	oauth2_free(o);
	free_config(cfg);
	o = new_with_secret_file(write_secret("good", "  cs-SECRET \n"), &cfg,
	    err, sizeof(err));
	ck_assert_msg(o != NULL, "%s", err);
	login(&l, "box@example.com", "pw1", 0);
	ck_assert_int_eq(l.result, OAUTH2_TOKEN);

	other = new_with_secret_file(write_secret("empty", " \n"), &c, err,
	    sizeof(err));
	ck_assert_ptr_null(other);
	ck_assert_ptr_nonnull(strstr(err, "is empty"));
	free_config(c);
	other = new_with_secret_file(write_secret("two", "a\nb\n"), &c, err,
	    sizeof(err));
	ck_assert_ptr_null(other);
	ck_assert_ptr_nonnull(strstr(err, "more than one line"));
	free_config(c);
	/* Group may read it (root:mailtlsd 0640), every user may not. */
	path = write_secret("open", "x\n");
	ck_assert_int_eq(chmod(path, 0640), 0);
	other = new_with_secret_file(path, &c, err, sizeof(err));
	ck_assert_msg(other != NULL, "%s", err);
	oauth2_free(other);
	free_config(c);
	ck_assert_int_eq(chmod(path, 0644), 0);
	other = new_with_secret_file(path, &c, err, sizeof(err));
	ck_assert_ptr_null(other);
	ck_assert_msg(strstr(err, "can be read by every user (mode 0644)") !=
	    NULL, "%s", err);
	free_config(c);
	other = new_with_secret_file("/nonexistent/secret", &c, err,
	    sizeof(err));
	ck_assert_ptr_null(other);
	ck_assert_msg(strstr(err, "[oauth2:t] client_secret_file "
	    "/nonexistent/secret: ") != NULL, "%s", err);
	/* A reload that cannot read the secret keeps the running one. */
	ck_assert_int_eq(oauth2_reload(o, c, err, sizeof(err)), -1);
	free_config(c);
	login(&l, "box@example.com", "pw1", 1);
	ck_assert_int_eq(l.result, OAUTH2_TOKEN);
}
END_TEST

/* ---- the log ----------------------------------------------------- */

/* Flows, refreshes and failures at debug level: no secret in the log. */
START_TEST(test_no_secret_in_log)
{
	char		 path[128], buf[65536];
	struct login	 l;
	size_t		 n;
	int		 fd, saved;
	FILE		*log;

	snprintf(path, sizeof(path), "%s/log", state_dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	saved = dup(STDERR_FILENO);
	dup2(fd, STDERR_FILENO);
	close(fd);
	log_init(LOG_TO_STDERR, LOG_LEVEL_DEBUG);

	authorise_device("a@example.com", "pw-SECRET-1");
	login(&l, "a@example.com", "pw-SECRET-1", 1);
	login(&l, "a@example.com", "pw-SECRET-2", 0);
	provider_control(&prov, base, client, "{\"refresh_error\":{\"status\":"
	    "400,\"body\":{\"error\":\"invalid_grant\"}}}");
	login(&l, "a@example.com", "pw-SECRET-1", 1);
	ck_assert_int_eq(l.result, OAUTH2_AUTHORISE);

	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	log = fopen(path, "r");
	ck_assert_ptr_nonnull(log);
	n = fread(buf, 1, sizeof(buf) - 1, log);
	buf[n] = '\0';
	fclose(log);
	ck_assert_msg(strstr(buf, "UC-0001") != NULL, "no log at all? %s",
	    buf);
	ck_assert_msg(strstr(buf, "SECRET") == NULL, "a secret in the log: %s",
	    buf);
	/* The user code is for people; the device code is a secret. */
	ck_assert_msg(strstr(buf, "dc-") == NULL, "a device code: %s", buf);
}
END_TEST

Suite *
oauth2_suite(void)
{
	Suite	*s = suite_create("oauth2");
	TCase	*pure = tcase_create("pure");
	TCase	*device = tcase_create("device");
	TCase	*refresh = tcase_create("refresh");
	TCase	*app = tcase_create("client_credentials");
	TCase	*browser = tcase_create("browser");

	tcase_add_test(pure, test_pkce_rfc7636);
	tcase_add_test(pure, test_authorize_url);
	tcase_add_test(pure, test_parse_token);
	tcase_add_test(pure, test_parse_device);
	tcase_add_test(pure, test_aadsts);
	tcase_add_test(pure, test_explain_codes);
	tcase_add_test(pure, test_server_errors);
	suite_add_tcase(s, pure);

	tcase_add_checked_fixture(device, start_device, stop);
	tcase_set_timeout(device, 60);
	tcase_add_test(device, test_device_flow);
	tcase_add_test(device, test_device_slow_down);
	tcase_add_test(device, test_device_denied);
	tcase_add_test(device, test_other_password_waits);
	tcase_add_test(device, test_no_secret_in_log);
	tcase_add_test(device, test_reload);
	tcase_add_test(device, test_status_line);
	suite_add_tcase(s, device);

	tcase_add_checked_fixture(refresh, start_device, stop);
	tcase_set_timeout(refresh, 60);
	tcase_add_test(refresh, test_refresh_shared_rotated);
	tcase_add_test(refresh, test_refresh_near_expiry);
	tcase_add_test(refresh, test_invalid_grant_new_flow);
	tcase_add_test(refresh, test_refresh_unreachable);
	suite_add_tcase(s, refresh);

	tcase_add_checked_fixture(app, start_app, stop);
	tcase_set_timeout(app, 60);
	tcase_add_test(app, test_client_credentials);
	tcase_add_test(app, test_client_credentials_refused);
	tcase_add_test(app, test_client_credentials_race);
	tcase_add_test(app, test_secret_file);
	suite_add_tcase(s, app);

	tcase_add_checked_fixture(browser, start_browser, stop);
	tcase_set_timeout(browser, 60);
	tcase_add_test(browser, test_browser_flow);
	tcase_add_test(browser, test_browser_state_mismatch);
	suite_add_tcase(s, browser);
	return s;
}
