/*
 * oauth2_text.c - the provider's answers read (JSON through jansson) and
 * its errors put into words that say what to do, for the log and for the
 * mail client's line; and the mail servers' own login errors that point
 * at OAuth2 (oauth2_explain_server_error()).
 *
 * Pure code: no event loop, no I/O.  Nothing secret is ever copied into
 * a text: an answer's tokens stay in struct o2_answer, which wipes them.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "oauth2_impl.h"

#define O2_EXPIRES_IN_MAX	(366L * 86400)	/* longer is not believed */
#define O2_DEVICE_WAIT_MIN	60
#define O2_DEVICE_WAIT_DEFAULT	900

/* Wipe and free a string that may hold a secret. */
static void
o2_str_wipe(char *s)
{
	if (s == NULL)
		return;
	sodium_memzero(s, strlen(s));
	free(s);
}

/* Copy a provider's text for the log: printable ASCII, bounded. */
static void
o2_printable(char *out, size_t outlen, const char *in)
{
	size_t	n = 0;

	for (; in != NULL && *in != '\0' && n + 1 < outlen; in++) {
		if (*in == '\r' || *in == '\n')
			out[n++] = ' ';
		else
			out[n++] = (*in >= 0x20 && *in < 0x7f) ? *in : '?';
	}
	out[n] = '\0';
}

/* A JSON number, or a string of digits, as a long; def when neither. */
static long
o2_json_long(json_t *v, long def)
{
	const char	*s;
	char		*end;
	long		 n;

	if (json_is_integer(v))
		return (long)json_integer_value(v);
	if (!json_is_string(v))
		return def;
	s = json_string_value(v);
	errno = 0;
	n = strtol(s, &end, 10);
	return errno == 0 && end != s && *end == '\0' ? n : def;
}

/* A non-empty string member, or NULL. */
static const char *
o2_json_str(json_t *root, const char *name)
{
	json_t	*v = json_object_get(root, name);

	if (!json_is_string(v) || json_string_length(v) == 0)
		return NULL;
	return json_string_value(v);
}

/* Microsoft's AADSTS code: error_codes[0], or "AADSTSnnn" in the text. */
static long
o2_aadsts(json_t *root, const char *description)
{
	json_t		*codes = json_object_get(root, "error_codes");
	const char	*at;

	if (json_is_array(codes) && json_is_integer(json_array_get(codes, 0)))
		return (long)json_integer_value(json_array_get(codes, 0));
	if (description != NULL &&
	    (at = strstr(description, "AADSTS")) != NULL &&
	    isdigit((unsigned char)at[6]))
		return strtol(at + 6, NULL, 10);
	return 0;
}

/* The error members of an answer that carries no token. */
static void
o2_parse_error(json_t *root, struct o2_answer *a)
{
	const char	*error = o2_json_str(root, "error");
	const char	*desc = o2_json_str(root, "error_description");

	o2_printable(a->error, sizeof(a->error), error);
	o2_printable(a->description, sizeof(a->description), desc);
	a->aadsts = o2_aadsts(root, desc);
}

/* Copy a string that may be a secret; -1 when out of memory. */
static int
o2_take(char **dst, const char *src)
{
	if (src == NULL)
		return 0;
	return (*dst = strdup(src)) != NULL ? 0 : -1;
}

/*
 * Read a token endpoint's answer (failure: the request itself failed, as
 * http.h said).  0, or -1 when out of memory; a->ok says whether an
 * access token came.
 */
int
o2_parse_token(int status, const char *body, size_t len, const char *failure,
    struct o2_answer *a)
{
	json_t		*root;
	json_error_t	 jerr;
	const char	*access;

	memset(a, 0, sizeof(*a));
	a->status = status;
	if (failure != NULL) {
		o2_printable(a->failure, sizeof(a->failure), failure);
		return 0;
	}
	if ((root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr)) ==
	    NULL || !json_is_object(root)) {
		snprintf(a->failure, sizeof(a->failure), "the answer (HTTP %d) "
		    "is not a JSON object", status);
		json_decref(root);
		return 0;
	}
	access = o2_json_str(root, "access_token");
	if (status == 200 && access != NULL) {
		a->expires_in = o2_json_long(json_object_get(root,
		    "expires_in"), O2_DEFAULT_EXPIRES_IN);
		if (a->expires_in <= 0 || a->expires_in > O2_EXPIRES_IN_MAX)
			a->expires_in = O2_DEFAULT_EXPIRES_IN;
		if (o2_take(&a->access_token, access) != 0 ||
		    o2_take(&a->refresh_token, o2_json_str(root,
		    "refresh_token")) != 0 ||
		    o2_take(&a->scope, o2_json_str(root, "scope")) != 0) {
			json_decref(root);
			o2_answer_clear(a);
			return -1;
		}
		a->ok = 1;
	} else
		o2_parse_error(root, a);
	json_decref(root);
	return 0;
}

/* Wipe the tokens of an answer. */
void
o2_answer_clear(struct o2_answer *a)
{
	o2_str_wipe(a->access_token);
	o2_str_wipe(a->refresh_token);
	o2_str_wipe(a->scope);
	a->access_token = a->refresh_token = a->scope = NULL;
	a->ok = 0;
}

/* A text a person reads or types: printable, no space, not empty. */
static int
o2_plain_word(const char *s, size_t max)
{
	size_t	n;

	for (n = 0; s[n] != '\0'; n++)
		if (s[n] <= 0x20 || s[n] >= 0x7f || n >= max)
			return 0;
	return n > 0;
}

/*
 * Read a device authorisation answer (RFC 8628 3.2; Google's variant
 * says verification_url).  1 with dev filled, 0 with err saying why.
 */
int
o2_parse_device(int status, const char *body, size_t len,
    struct o2_device *dev, struct o2_answer *err)
{
	json_t		*root;
	json_error_t	 jerr;
	const char	*code, *user_code, *uri;
	long		 n;

	memset(dev, 0, sizeof(*dev));
	memset(err, 0, sizeof(*err));
	err->status = status;
	if ((root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr)) ==
	    NULL || !json_is_object(root)) {
		snprintf(err->failure, sizeof(err->failure), "the answer (HTTP "
		    "%d) is not a JSON object", status);
		json_decref(root);
		return 0;
	}
	code = o2_json_str(root, "device_code");
	user_code = o2_json_str(root, "user_code");
	if ((uri = o2_json_str(root, "verification_uri")) == NULL)
		uri = o2_json_str(root, "verification_url");
	if (status != 200 || code == NULL || user_code == NULL || uri == NULL) {
		o2_parse_error(root, err);
		if (status == 200)
			snprintf(err->failure, sizeof(err->failure), "the "
			    "answer lacks device_code, user_code or "
			    "verification_uri");
		json_decref(root);
		return 0;
	}
	if (!o2_plain_word(user_code, sizeof(dev->user_code) - 1) ||
	    !o2_plain_word(uri, O2_VERIFICATION_MAX) ||
	    strncmp(uri, "https://", 8) != 0) {
		snprintf(err->failure, sizeof(err->failure), "the answer's "
		    "user_code or verification_uri is not a plain https URL "
		    "and code");
		json_decref(root);
		return 0;
	}
	if ((dev->device_code = strdup(code)) == NULL) {
		snprintf(err->failure, sizeof(err->failure), "out of memory");
		json_decref(root);
		return 0;
	}
	snprintf(dev->user_code, sizeof(dev->user_code), "%s", user_code);
	snprintf(dev->verification, sizeof(dev->verification), "%s", uri);
	n = o2_json_long(json_object_get(root, "interval"), O2_DEVICE_INTERVAL);
	dev->interval = n < 1 ? 1 : n > O2_DEVICE_INTERVAL_MAX ?
	    O2_DEVICE_INTERVAL_MAX : (unsigned)n;
	n = o2_json_long(json_object_get(root, "expires_in"),
	    O2_DEVICE_WAIT_DEFAULT);
	dev->expires_in = n < O2_DEVICE_WAIT_MIN ? O2_DEVICE_WAIT_MIN :
	    n > O2_DEVICE_WAIT_MAX ? O2_DEVICE_WAIT_MAX : (unsigned)n;
	json_decref(root);
	return 1;
}

/* Wipe a device answer's secret. */
void
o2_device_clear(struct o2_device *dev)
{
	o2_str_wipe(dev->device_code);
	dev->device_code = NULL;
}

/* text with {tenant} and {client_id} replaced, into out. */
static void
o2_expand(char *out, size_t outlen, const char *text, const char *tenant,
    const char *client_id)
{
	size_t		 n = 0;
	const char	*with;
	int		 w;

	out[0] = '\0';
	while (*text != '\0' && n + 1 < outlen) {
		if (strncmp(text, "{tenant}", 8) == 0) {
			with = tenant;
			text += 8;
		} else if (strncmp(text, "{client_id}", 11) == 0) {
			with = client_id;
			text += 11;
		} else {
			out[n++] = *text++;
			out[n] = '\0';
			continue;
		}
		w = snprintf(out + n, outlen - n, "%s", with);
		n += (size_t)w < outlen - n ? (size_t)w : outlen - n - 1;
	}
}

/*
 * Microsoft's AADSTS codes that a mail daemon's user meets, with what to
 * do; {tenant} and {client_id} stand for the section's.
 */
static const struct o2_aadsts_text {
	long		 code;
	enum o2_verdict	 verdict;
	const char	*text;
} o2_aadsts_texts[] = {
	{ 50076, O2_REAUTHORISE, "Microsoft requires multi-factor "
	  "authentication (AADSTS50076): authorise again and complete it in "
	  "the browser" },
	{ 50079, O2_REAUTHORISE, "Microsoft requires the user to register "
	  "for multi-factor authentication (AADSTS50079): authorise again and "
	  "complete it in the browser" },
	{ 50133, O2_REAUTHORISE, "the grant ended with a password change "
	  "(AADSTS50133): authorise again" },
	{ 50173, O2_REAUTHORISE, "the grant was revoked or ended with a "
	  "password change (AADSTS50173): authorise again" },
	{ 54005, O2_REAUTHORISE, "the authorisation code was already used "
	  "(AADSTS54005): log in again to start a new authorisation" },
	{ 65001, O2_REFUSED, "the app has no consent for these permissions "
	  "(AADSTS65001): an administrator must grant it (Entra admin centre, "
	  "App registrations, API permissions, Grant admin consent) or open "
	  "https://login.microsoftonline.com/{tenant}/adminconsent"
	  "?client_id={client_id}" },
	{ 65004, O2_REAUTHORISE, "the user declined consent (AADSTS65004): "
	  "log in again to start a new authorisation" },
	{ 70000, O2_REAUTHORISE, "Microsoft refused the grant (AADSTS70000): "
	  "authorise again" },
	{ 70008, O2_REAUTHORISE, "the grant expired (AADSTS70008): authorise "
	  "again" },
	{ 70011, O2_REFUSED, "Microsoft refused the scope (AADSTS70011): "
	  "check scope in [oauth2:NAME]" },
	{ 70043, O2_REAUTHORISE, "the refresh token expired under the "
	  "tenant's sign-in frequency policy (AADSTS70043): authorise again" },
	{ 700082, O2_REAUTHORISE, "the refresh token expired after 90 days "
	  "without use (AADSTS700082): authorise again" },
	{ 700016, O2_REFUSED, "Microsoft does not know the app {client_id} "
	  "in tenant {tenant} (AADSTS700016): check client_id and tenant" },
	{ 90002, O2_REFUSED, "Microsoft does not know the tenant {tenant} "
	  "(AADSTS90002): check tenant" },
	{ 500011, O2_REFUSED, "Exchange Online is not part of tenant {tenant} "
	  "(AADSTS500011): check tenant and scope" },
	{ 7000215, O2_REFUSED, "the client secret is wrong (AADSTS7000215): "
	  "put the secret's Value, not its ID, in client_secret_file" },
	{ 7000222, O2_REFUSED, "the client secret has expired "
	  "(AADSTS7000222): create a new one under Certificates & secrets" },
	{ 7000218, O2_REFUSED, "the app registration must allow public client "
	  "flows (AADSTS7000218): Authentication, Allow public client flows: "
	  "Yes" },
	{ 700025, O2_REFUSED, "the app is a public client and takes no secret "
	  "(AADSTS700025): remove client_secret" },
	{ 50011, O2_REFUSED, "the redirect URI is not registered "
	  "(AADSTS50011): add http://localhost under Authentication, Mobile "
	  "and desktop applications" },
	{ 53003, O2_REFUSED, "a Conditional Access policy blocks the sign-in "
	  "(AADSTS53003): ask the tenant's administrator" },
	{ 0, O2_REFUSED, NULL }
};

/* Write the words for a known AADSTS code; its verdict, or -1. */
static int
o2_explain_aadsts(const struct oauth2_config *cfg, long code, char *words,
    size_t len)
{
	const struct o2_aadsts_text	*t;
	const char			*tenant;

	for (t = o2_aadsts_texts; t->text != NULL; t++) {
		if (t->code != code)
			continue;
		tenant = cfg->tenant[0] != '\0' ? cfg->tenant : "common";
		o2_expand(words, len, t->text, tenant, cfg->client_id);
		return (int)t->verdict;
	}
	return -1;
}

/* Words for the standard error codes (RFC 6749 5.2, RFC 8628 3.5). */
static enum o2_verdict
o2_explain_code(const struct oauth2_config *cfg, enum o2_step step,
    const struct o2_answer *a, char *words, size_t len)
{
	int	google = cfg->provider == OAUTH2_PROVIDER_GOOGLE;
	int	ms = cfg->provider == OAUTH2_PROVIDER_MICROSOFT;

	if (strcmp(a->error, "invalid_grant") == 0 && (step == O2_STEP_CODE ||
	    step == O2_STEP_DEVICE_POLL)) {
		snprintf(words, len, "the provider refused the authorisation "
		    "(invalid_grant): its code expired or was used already; "
		    "log in again to start a new one");
		return O2_REAUTHORISE;
	}
	if (strcmp(a->error, "invalid_grant") == 0) {
		if (google)
			snprintf(words, len, "Google refused the grant "
			    "(invalid_grant): it was revoked, or it expired as "
			    "it does after 7 days for apps whose consent "
			    "screen is in Testing status (publish the app: "
			    "OAuth consent screen, Publish app); authorise "
			    "again");
		else
			snprintf(words, len, "the provider refused the grant "
			    "(invalid_grant): it was revoked or expired; "
			    "authorise again");
		return O2_REAUTHORISE;
	}
	if (strcmp(a->error, "invalid_client") == 0) {
		snprintf(words, len, "the provider refused the app's "
		    "credentials (invalid_client): check client_id and the "
		    "client secret%s", google ? " (a deleted OAuth client "
		    "gives this too)" : "");
		return O2_REFUSED;
	}
	if (strcmp(a->error, "unauthorized_client") == 0) {
		snprintf(words, len, "the app may not use this grant "
		    "(unauthorized_client)%s", ms && cfg->flow ==
		    OAUTH2_FLOW_DEVICE ? ": allow public client flows in its "
		    "registration (Authentication)" : ": check the app's "
		    "registration and flow");
		return O2_REFUSED;
	}
	if (strcmp(a->error, "invalid_scope") == 0) {
		snprintf(words, len, "the provider refused the scope "
		    "(invalid_scope): check scope in [oauth2:%s]", cfg->name);
		return O2_REFUSED;
	}
	if (strcmp(a->error, "access_denied") == 0 ||
	    strcmp(a->error, "authorization_declined") == 0) {
		snprintf(words, len, "the authorisation was declined (%s): log "
		    "in again to start a new one", a->error);
		return O2_REAUTHORISE;
	}
	if (strcmp(a->error, "bad_verification_code") == 0) {
		snprintf(words, len, "the provider does not know the device "
		    "code (bad_verification_code): log in again for a new one");
		return O2_REAUTHORISE;
	}
	if (strcmp(a->error, "expired_token") == 0) {
		snprintf(words, len, "the code expired before the "
		    "authorisation completed: log in again for a new one");
		return O2_REAUTHORISE;
	}
	if (strcmp(a->error, "temporarily_unavailable") == 0 ||
	    strcmp(a->error, "server_error") == 0) {
		snprintf(words, len, "the provider is unavailable (%s); try "
		    "again later", a->error);
		return O2_TEMPORARY;
	}
	if (a->error[0] == '\0') {
		snprintf(words, len, "the provider's answer (HTTP %d) holds "
		    "neither a token nor an error; try again later", a->status);
		return O2_TEMPORARY;
	}
	snprintf(words, len, "the provider refused the request (%s)",
	    a->error);
	return O2_REFUSED;
}

/*
 * What an answer without a token means, in words: client gets "mailtlsd:
 * " and what to do, log also the provider's own error and description.
 * what names the step ("refreshing the token of user@example.com").
 */
enum o2_verdict
o2_explain(const struct oauth2_config *cfg, enum o2_step step,
    const char *what, const struct o2_answer *a, char *client,
    size_t clientlen, char *log, size_t loglen)
{
	char		words[O2_TEXT_MAX];
	enum o2_verdict	verdict;
	int		v;

	if (a->failure[0] != '\0') {
		o2_format(words, sizeof(words), "cannot reach the provider "
		    "(%s); try again later", a->failure);
		verdict = O2_TEMPORARY;
	} else if (strcmp(a->error, "authorization_pending") == 0) {
		snprintf(words, sizeof(words), "the authorisation is not "
		    "complete yet");
		verdict = O2_PENDING;
	} else if (strcmp(a->error, "slow_down") == 0) {
		snprintf(words, sizeof(words), "the provider asks to poll less "
		    "often");
		verdict = O2_SLOW_DOWN;
	} else if (a->status >= 500 || a->status == 429) {
		snprintf(words, sizeof(words), "the provider answered HTTP %d; "
		    "try again later", a->status);
		verdict = O2_TEMPORARY;
	} else if (a->aadsts != 0 && (v = o2_explain_aadsts(cfg, a->aadsts,
	    words, sizeof(words))) >= 0)
		verdict = (enum o2_verdict)v;
	else
		verdict = o2_explain_code(cfg, step, a, words, sizeof(words));
	snprintf(client, clientlen, "mailtlsd: %s", words);
	if (a->status == 0)
		snprintf(log, loglen, "[oauth2:%s] %s: %s", cfg->name, what,
		    words);
	else
		snprintf(log, loglen, "[oauth2:%s] %s: %s (HTTP %d%s%s%s%s)",
		    cfg->name, what, words, a->status,
		    a->error[0] != '\0' ? ", " : "", a->error,
		    a->description[0] != '\0' ? ": " : "", a->description);
	return verdict;
}

/* A user name mailtlsd takes: 1..255 bytes, no controls or spaces. */
int
o2_user_ok(const char *user)
{
	size_t	n;

	for (n = 0; user[n] != '\0'; n++)
		if ((unsigned char)user[n] <= 0x20 || user[n] == 0x7f ||
		    n >= O2_USER_MAX)
			return 0;
	return n > 0;
}

/*
 * A server's refusal of a login (an SMTP reply, an IMAP or POP3 error
 * line) that says what to change, or NULL.
 */
const char *
oauth2_explain_server_error(const char *server_text)
{
	if (server_text == NULL)
		return NULL;
	if (strstr(server_text, "5.7.139") != NULL) {
		if (strstr(server_text, "SmtpClientAuthentication is disabled")
		    != NULL)
			return "mailtlsd: Microsoft 365 has SMTP AUTH disabled "
			    "for this tenant or mailbox (5.7.139): an Exchange "
			    "administrator must enable it, e.g. Set-CASMailbox "
			    "-Identity user@example.com "
			    "-SmtpClientAuthenticationDisabled $false";
		if (strstr(server_text, "security defaults") != NULL)
			return "mailtlsd: the tenant's security defaults block "
			    "SMTP AUTH (5.7.139): an administrator must turn "
			    "them off or allow it with a Conditional Access "
			    "policy";
		return "mailtlsd: Microsoft 365 refused the login (5.7.139): "
		    "SMTP AUTH may be disabled for the mailbox "
		    "(Set-CASMailbox -SmtpClientAuthenticationDisabled $false) "
		    "or blocked by the tenant's security defaults or "
		    "Conditional Access";
	}
	if (strstr(server_text, "5.7.30") != NULL)
		return "mailtlsd: Microsoft 365 no longer takes passwords for "
		    "SMTP (5.7.30): give the service oauth2 = NAME with an "
		    "[oauth2:NAME] section (provider = microsoft)";
	/* Gmail's SMTP says 534 5.7.9; its IMAP and POP3 only the words. */
	if (strstr(server_text, "Application-specific password") != NULL)
		return "mailtlsd: Gmail wants OAuth2 or an app password for "
		    "this account: give the service oauth2 = NAME with an "
		    "[oauth2:NAME] section (provider = google), or log in with "
		    "an app password";
	return NULL;
}
