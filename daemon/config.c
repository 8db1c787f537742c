/*
 * config.c - read, default and validate the mailtlsd configuration file.
 *
 * The file is INI style: "[name]" section headers, "key = value" lines, and
 * "#" or ";" comments (a whole line, or the rest of a line after whitespace).
 * Loading is two passes: every line is parsed into a per-section record that
 * remembers where each key was set; then each service takes the [global]
 * defaults, derives what the remote port implies and is validated.  Every
 * error is collected as "FILE:LINE: message"; nothing is printed.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/base64.h>
#include <mbedtls/ssl.h>
#include <mbedtls/version.h>

#include "addr.h"
#include "config.h"
#include "safefile.h"

#define LINE_LEN_MAX		4096	/* longest line accepted */
#define ERRORS_MAX		100	/* errors reported per load */
#define MAX_SESSIONS_MAX	1000000
#define POOL_SIZE_MAX		64
#define ERR_LEN			1024	/* one message from a value parser */
#define KEYS_MAX		64	/* room in keyline[] for keys[] */
#define OAUTH2_KEYS_MAX		24	/* room in oa_keyline[] */
#define KDF_MEMORY_MIN		8	/* MiB */
#define KDF_MEMORY_MAX		1024	/* MiB */
#define KDF_PASSES_MAX		10
#define HTTP_TIMEOUT_DEFAULT	30	/* seconds */
#define KDF_MEMORY_DEFAULT	64	/* MiB */
#define KDF_PASSES_DEFAULT	3
#define REDIRECT_DEFAULT	"127.0.0.1:8400"

enum key_scope {
	SCOPE_SERVICE,		/* only in a service section */
	SCOPE_BOTH,		/* in a service, or as a default in [global] */
	SCOPE_GLOBAL		/* only in [global] */
};

enum section_kind {
	SECTION_GLOBAL,
	SECTION_SERVICE,
	SECTION_OAUTH2,		/* [oauth2:NAME] */
	SECTION_UNKNOWN		/* after a header that could not be read */
};

/* One "key = value" line being parsed. */
struct kv {
	const char	*key;
	const char	*val;
	int		 line;
	char		 err[ERR_LEN];	/* why the value is bad */
};

/* One section as written, before defaults are resolved. */
struct section {
	enum section_kind	kind;
	int			line;
	int			keyline[KEYS_MAX]; /* first line of each key */
	struct service_config	svc;
	/* SECTION_OAUTH2 only. */
	int			oa_keyline[OAUTH2_KEYS_MAX];
	struct oauth2_config	oa;
	int			oa_used;	/* a service names it */
};

/* The state of one config_load(). */
struct parser {
	const char		*path;
	struct config_errors	*errs;
	int			 nerr;
	struct config		*cfg;

	struct section		 global;
	int			 have_global;
	struct section		 discard;
	struct section		**services;
	int			 n_services;
	int			 cap_services;
	struct section		**oauth2;	/* [oauth2:NAME] sections */
	int			 n_oauth2;
	int			 saw_service;	/* any non-global header */
	int			 global_pair_reported;	/* client_cert/key */
	int			 global_local_reported;	/* local_cert/key */
	struct section		*cur;		/* NULL before any header */
};

struct key_def;

/* Store the value of kv in field (of the key k); 0, or -1 with kv->err. */
typedef int	key_set_fn(const struct key_def *k, struct kv *kv, void *field);

/*
 * One configuration key: the field its value goes to, in struct
 * service_config (or struct config for SCOPE_GLOBAL), and the setter that
 * reads the value.  A SCOPE_BOTH field set in [global] is copied into each
 * service that does not set it.
 */
struct key_def {
	const char		*name;
	enum key_scope		 scope;
	key_set_fn		*set;
	size_t			 off;		/* the field ... */
	size_t			 size;		/* ... and its size */
	unsigned		 min, max;	/* set_number */
	const struct choice	*choices;	/* set_choice */
	int			 repeatable;
};

/* A word a key accepts and the value it stands for. */
struct choice {
	const char	*word;
	int		 value;
};

static const struct choice protocol_choices[] = {
	{ "imap", MAIL_PROTO_IMAP },
	{ "pop3", MAIL_PROTO_POP3 },
	{ "smtp", MAIL_PROTO_SMTP },
	{ NULL, 0 }
};

static const struct choice tls_choices[] = {
	{ "implicit", TLS_MODE_IMPLICIT },
	{ "starttls", TLS_MODE_STARTTLS },
	{ NULL, 0 }
};

static const struct choice local_tls_choices[] = {
	{ "none", LOCAL_TLS_NONE },
	{ "starttls", LOCAL_TLS_STARTTLS },
	{ "implicit", LOCAL_TLS_IMPLICIT },
	{ NULL, 0 }
};

static const struct choice min_tls_choices[] = {
	{ "1.2", TLS_VERSION_1_2 },
	{ "1.3", TLS_VERSION_1_3 },
	{ NULL, 0 }
};

static const struct choice log_level_choices[] = {
	{ "error", LOG_LEVEL_ERROR },
	{ "warn", LOG_LEVEL_WARN },
	{ "info", LOG_LEVEL_INFO },
	{ "debug", LOG_LEVEL_DEBUG },
	{ NULL, 0 }
};

static const struct choice provider_choices[] = {
	{ "microsoft", OAUTH2_PROVIDER_MICROSOFT },
	{ "google", OAUTH2_PROVIDER_GOOGLE },
	{ "generic", OAUTH2_PROVIDER_GENERIC },
	{ NULL, 0 }
};

static const struct choice flow_choices[] = {
	{ "device", OAUTH2_FLOW_DEVICE },
	{ "browser", OAUTH2_FLOW_BROWSER },
	{ "client_credentials", OAUTH2_FLOW_CLIENT_CREDENTIALS },
	{ NULL, 0 }
};

static const struct choice bool_choices[] = {
	{ "yes", 1 },
	{ "no", 0 },
	{ NULL, 0 }
};

/* Ports with a default protocol and TLS mode. */
static const struct port_default {
	uint16_t		port;
	enum mail_protocol	protocol;
	enum tls_mode		tls;
} port_defaults[] = {
	{ 993, MAIL_PROTO_IMAP, TLS_MODE_IMPLICIT },
	{ 143, MAIL_PROTO_IMAP, TLS_MODE_STARTTLS },
	{ 995, MAIL_PROTO_POP3, TLS_MODE_IMPLICIT },
	{ 110, MAIL_PROTO_POP3, TLS_MODE_STARTTLS },
	{ 465, MAIL_PROTO_SMTP, TLS_MODE_IMPLICIT },
	{ 587, MAIL_PROTO_SMTP, TLS_MODE_STARTTLS },
	{ 25, MAIL_PROTO_SMTP, TLS_MODE_STARTTLS },
	{ 26, MAIL_PROTO_SMTP, TLS_MODE_STARTTLS },
	{ 0, MAIL_PROTO_NONE, TLS_MODE_NONE }
};

static char	*vformat(const char *, va_list)
		    __attribute__((format(printf, 1, 0)));
static void	parser_note(struct parser *, struct config_errors *, int,
		    const char *, va_list) __attribute__((format(printf, 4, 0)));
static void	parser_error(struct parser *, int, const char *, ...)
		    __attribute__((format(printf, 3, 4)));
static int	kv_error(struct kv *, const char *, ...)
		    __attribute__((format(printf, 2, 3)));

/*
 * ---- Not supported yet ----------------------------------------------------
 * Settings the configuration language already has but the daemon does not
 * implement yet.  Each is refused with a message saying "not supported yet";
 * delete its test here when the feature lands.
 */

/* Why an accepted value of key cannot be used yet, or NULL. */
static const char *
not_supported_yet(const struct key_def *k, const struct service_config *svc)
{
	if (strcmp(k->name, "min_tls") == 0) {
#if !defined(MBEDTLS_SSL_PROTO_TLS1_3)
		/* A limit of the build rather than a feature to come. */
		if (svc->min_tls == TLS_VERSION_1_3)
			return "min_tls = 1.3 needs mbedTLS 3 with TLS 1.3; "
			    "this build has mbedTLS " MBEDTLS_VERSION_STRING;
#else
		(void)svc;
#endif
	}
	return NULL;
}

/* ---- End of "not supported yet" ------------------------------------------ */

/* Default protocol for a remote port, MAIL_PROTO_NONE when there is none. */
enum mail_protocol
config_default_protocol(uint16_t port)
{
	const struct port_default	*pd;

	for (pd = port_defaults; pd->port != 0; pd++)
		if (pd->port == port)
			return pd->protocol;
	return MAIL_PROTO_NONE;
}

/* Default TLS mode for a remote port, TLS_MODE_NONE when there is none. */
enum tls_mode
config_default_tls(uint16_t port)
{
	const struct port_default	*pd;

	for (pd = port_defaults; pd->port != 0; pd++)
		if (pd->port == port)
			return pd->tls;
	return TLS_MODE_NONE;
}

/* The name of a protocol, for logs and messages. */
const char *
config_protocol_name(enum mail_protocol proto)
{
	switch (proto) {
	case MAIL_PROTO_IMAP:
		return "imap";
	case MAIL_PROTO_POP3:
		return "pop3";
	case MAIL_PROTO_SMTP:
		return "smtp";
	default:
		return "none";
	}
}

/* The name of a TLS mode, for logs and messages. */
const char *
config_tls_mode_name(enum tls_mode mode)
{
	switch (mode) {
	case TLS_MODE_IMPLICIT:
		return "implicit";
	case TLS_MODE_STARTTLS:
		return "starttls";
	default:
		return "none";
	}
}

/* ---- Error lists --------------------------------------------------------- */

/* Format into a new string, or NULL when out of memory. */
static char *
vformat(const char *fmt, va_list ap)
{
	va_list	 ap2;
	char	*s;
	int	 n;

	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0 || (s = malloc((size_t)n + 1)) == NULL)
		return NULL;
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	return s;
}

/* Replace control characters, so a message is safe on a terminal or log. */
static void
sanitize(char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = '?';
}

/* Append one formatted error. */
void
config_errors_add(struct config_errors *errs, const char *fmt, ...)
{
	va_list	  ap;
	char	 *line, **lines;
	int	  cap;

	if (errs == NULL)
		return;
	va_start(ap, fmt);
	line = vformat(fmt, ap);
	va_end(ap);
	if (line == NULL)
		return;
	sanitize(line);
	if (errs->count == errs->cap) {
		cap = errs->cap == 0 ? 8 : errs->cap * 2;
		lines = realloc(errs->lines, (size_t)cap * sizeof(*lines));
		if (lines == NULL) {
			free(line);
			return;
		}
		errs->lines = lines;
		errs->cap = cap;
	}
	errs->lines[errs->count++] = line;
}

/* Free the error lines (not the struct itself); safe on an empty list. */
void
config_errors_clear(struct config_errors *errs)
{
	int	i;

	if (errs == NULL)
		return;
	for (i = 0; i < errs->count; i++)
		free(errs->lines[i]);
	free(errs->lines);
	errs->lines = NULL;
	errs->count = 0;
	errs->cap = 0;
}

/* Add a message at line of the file being loaded (0: the whole file). */
static void
parser_note(struct parser *p, struct config_errors *to, int line,
    const char *fmt, va_list ap)
{
	char	*msg;

	if ((msg = vformat(fmt, ap)) == NULL)
		return;
	if (line > 0)
		config_errors_add(to, "%s:%d: %s", p->path, line, msg);
	else
		config_errors_add(to, "%s: %s", p->path, msg);
	free(msg);
}

/* Record an error at line of the file being loaded (0: the whole file). */
static void
parser_error(struct parser *p, int line, const char *fmt, ...)
{
	va_list	ap;

	if (++p->nerr > ERRORS_MAX) {
		if (p->nerr == ERRORS_MAX + 1)
			config_errors_add(p->errs, "%s: too many errors, "
			    "stopped reporting after %d", p->path, ERRORS_MAX);
		return;
	}
	va_start(ap, fmt);
	parser_note(p, p->errs, line, fmt, ap);
	va_end(ap);
}

/* Record a setting that has no effect, at line of the file being loaded. */
static void
parser_warning(struct parser *p, int line, const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	parser_note(p, &p->cfg->warnings, line, fmt, ap);
	va_end(ap);
}

/* Set the reason a value is bad; returns -1. */
static int
kv_error(struct kv *kv, const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(kv->err, sizeof(kv->err), fmt, ap);
	va_end(ap);
	return -1;
}

/* ---- Value syntax -------------------------------------------------------- */

/*
 * Parse "ADDR:PORT" / "[V6]:PORT" (numeric addresses only) into out.
 * Returns 0, or -1 with a reason in err.
 */
int
config_parse_listen(const char *text, struct listen_addr *out, char *err,
    size_t errlen)
{
	memset(out, 0, sizeof(*out));
	if (addr_parse_numeric(text, &out->addr, &out->addrlen, err,
	    errlen) == -1)
		return -1;
	addr_format((struct sockaddr *)&out->addr, out->text,
	    sizeof(out->text));
	out->is_loopback = addr_is_loopback((struct sockaddr *)&out->addr);
	return 0;
}

/* ---- Setters, one per kind of value -------------------------------------- */

/* Parse one of a table of words into *out. */
static int
parse_choice(struct kv *kv, const struct choice *choices, int *out)
{
	const struct choice	*c;
	size_t			 n;

	for (c = choices; c->word != NULL; c++) {
		if (strcmp(kv->val, c->word) == 0) {
			*out = c->value;
			return 0;
		}
	}
	n = (size_t)snprintf(kv->err, sizeof(kv->err), "invalid %s '%s' "
	    "(expected", kv->key, kv->val);
	for (c = choices; c->word != NULL && n < sizeof(kv->err); c++)
		n += (size_t)snprintf(kv->err + n, sizeof(kv->err) - n, "%s%s",
		    c == choices ? " " : c[1].word == NULL ? " or " : ", ",
		    c->word);
	if (n < sizeof(kv->err))
		snprintf(kv->err + n, sizeof(kv->err) - n, ")");
	return -1;
}

/* A word of k->choices, into an int or enum field. */
static int
set_choice(const struct key_def *k, struct kv *kv, void *field)
{
	int	v = 0;

	if (parse_choice(kv, k->choices, &v) == -1)
		return -1;
	memcpy(field, &v, sizeof(v));
	return 0;
}

/* yes or no, into an int field. */
static int
set_bool(const struct key_def *k, struct kv *kv, void *field)
{
	int	v = 0;

	(void)k;
	if (parse_choice(kv, bool_choices, &v) == -1)
		return -1;
	memcpy(field, &v, sizeof(v));
	return 0;
}

/* A number in [k->min, k->max], into an unsigned field. */
static int
set_number(const struct key_def *k, struct kv *kv, void *field)
{
	unsigned	v = 0;

	if (addr_parse_uint(kv->val, k->min, k->max, &v) == -1)
		return kv_error(kv, "invalid %s '%s' (expected a number from "
		    "%u to %u)", kv->key, kv->val, k->min, k->max);
	memcpy(field, &v, sizeof(v));
	return 0;
}

/* An absolute path, into a char array field. */
static int
set_path(const struct key_def *k, struct kv *kv, void *field)
{
	if (kv->val[0] != '/')
		return kv_error(kv, "invalid %s '%s' (expected an absolute "
		    "path)", kv->key, kv->val);
	if (strlen(kv->val) >= k->size)
		return kv_error(kv, "%s is too long (at most %zu characters)",
		    kv->key, k->size - 1);
	memcpy(field, kv->val, strlen(kv->val) + 1);
	return 0;
}

/* A host name or address, into a char array field. */
static int
set_host(const struct key_def *k, struct kv *kv, void *field)
{
	if (strlen(kv->val) >= k->size || !addr_is_host(kv->val))
		return kv_error(kv, "invalid %s '%s' (expected a host name)",
		    kv->key, kv->val);
	memcpy(field, kv->val, strlen(kv->val) + 1);
	return 0;
}

/* One ADDR:PORT into a struct listen_addr (listen, redirect_listen, ...). */
static int
set_address(const struct key_def *k, struct kv *kv, void *field)
{
	struct listen_addr	*la = field;
	char			 err[256];

	(void)k;
	if (config_parse_listen(kv->val, la, err, sizeof(err)) == -1)
		return kv_error(kv, "invalid %s '%s': %s", kv->key, kv->val,
		    err);
	la->line = kv->line;
	return 0;
}

/* listen = ADDR:PORT (repeatable), into the service. */
static int
set_listen(const struct key_def *k, struct kv *kv, void *field)
{
	struct service_config	*svc = field;

	if (svc->n_listen == CONFIG_MAX_LISTEN)
		return kv_error(kv, "too many listen lines (at most %d)",
		    CONFIG_MAX_LISTEN);
	if (set_address(k, kv, &svc->listen[svc->n_listen]) == -1)
		return -1;
	svc->n_listen++;
	return 0;
}

/* remote = HOST:PORT, into the service. */
static int
set_remote(const struct key_def *k, struct kv *kv, void *field)
{
	struct service_config	*svc = field;
	char			 err[256];

	(void)k;
	if (addr_parse_host_port(kv->val, svc->remote_host,
	    sizeof(svc->remote_host), &svc->remote_port, err,
	    sizeof(err)) == -1)
		return kv_error(kv, "invalid remote '%s': %s", kv->val, err);
	return 0;
}

/* pin_sha256 = BASE64 (repeatable), into the service. */
static int
set_pin(const struct key_def *k, struct kv *kv, void *field)
{
	struct service_config	*svc = field;
	unsigned char		 buf[64];
	size_t			 len = 0;
	int			 ret;

	(void)k;
	if (svc->n_pins == CONFIG_MAX_PINS)
		return kv_error(kv, "too many pin_sha256 lines (at most %d)",
		    CONFIG_MAX_PINS);
	ret = mbedtls_base64_decode(buf, sizeof(buf), &len,
	    (const unsigned char *)kv->val, strlen(kv->val));
	if (ret != 0 && ret != MBEDTLS_ERR_BASE64_BUFFER_TOO_SMALL)
		return kv_error(kv, "invalid pin_sha256 '%s' (not base64)",
		    kv->val);
	if (ret != 0 || len != 32)
		return kv_error(kv, "invalid pin_sha256 '%s' (decodes to %zu "
		    "bytes, a SHA-256 is 32)", kv->val, len);
	memcpy(svc->pins[svc->n_pins++], buf, 32);
	return 0;
}

/* user = NAME, into a char array field. */
static int
set_user(const struct key_def *k, struct kv *kv, void *field)
{
	size_t	len = strlen(kv->val);

	if (len >= k->size || kv->val[0] == '-' ||
	    strspn(kv->val, "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != len)
		return kv_error(kv, "invalid user '%s' (expected a user name)",
		    kv->val);
	memcpy(field, kv->val, len + 1);
	return 0;
}

/* control_socket = PATH | none, into struct config. */
static int
set_control_socket(const struct key_def *k, struct kv *kv, void *field)
{
	struct config	*cfg = field;

	(void)k;
	cfg->control_socket_set = 1;
	if (strcmp(kv->val, "none") == 0) {
		cfg->control_socket[0] = '\0';
		return 0;
	}
	if (kv->val[0] != '/')
		return kv_error(kv, "invalid control_socket '%s' (expected an "
		    "absolute path or none)", kv->val);
	if (strlen(kv->val) >= sizeof(cfg->control_socket))
		return kv_error(kv, "control_socket is too long for a socket "
		    "(at most %zu characters)", sizeof(cfg->control_socket) - 1);
	memcpy(cfg->control_socket, kv->val, strlen(kv->val) + 1);
	return 0;
}

/* metrics_listen = ADDR:PORT | none, into struct config. */
static int
set_metrics_listen(const struct key_def *k, struct kv *kv, void *field)
{
	struct listen_addr	*la = field;

	if (strcmp(kv->val, "none") == 0) {
		memset(la, 0, sizeof(*la));
		return 0;
	}
	return set_address(k, kv, field);
}

/* Whether s is printable ASCII; spaces only where allowed. */
static int
printable(const char *s, int spaces)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7e)
			if (!(spaces && *s == ' '))
				return 0;
	return 1;
}

/* A word of printable ASCII (an id, a secret), into a char array field. */
static int
set_word(const struct key_def *k, struct kv *kv, void *field)
{
	if (strlen(kv->val) >= k->size)
		return kv_error(kv, "%s is too long (at most %zu characters)",
		    kv->key, k->size - 1);
	if (!printable(kv->val, 0))
		return kv_error(kv, "invalid %s (expected printable ASCII "
		    "without spaces)", kv->key);
	memcpy(field, kv->val, strlen(kv->val) + 1);
	return 0;
}

/* Space-separated words (scope), into a char array field. */
static int
set_words(const struct key_def *k, struct kv *kv, void *field)
{
	if (strlen(kv->val) >= k->size)
		return kv_error(kv, "%s is too long (at most %zu characters)",
		    kv->key, k->size - 1);
	if (!printable(kv->val, 1))
		return kv_error(kv, "invalid %s (expected printable ASCII)",
		    kv->key);
	memcpy(field, kv->val, strlen(kv->val) + 1);
	return 0;
}

/* An https:// URL, into a char array field: tokens never travel in clear. */
static int
set_url(const struct key_def *k, struct kv *kv, void *field)
{
	if (strncmp(kv->val, "https://", 8) != 0 || kv->val[8] == '\0' ||
	    kv->val[8] == '/')
		return kv_error(kv, "invalid %s '%s' (expected an https:// "
		    "URL)", kv->key, kv->val);
	return set_word(k, kv, field);
}

/* A size in MiB, stored in KiB (kdf_memory). */
static int
set_mib_as_kib(const struct key_def *k, struct kv *kv, void *field)
{
	unsigned	v = 0;

	if (set_number(k, kv, &v) == -1)
		return -1;
	v *= 1024;
	memcpy(field, &v, sizeof(v));
	return 0;
}

/* ---- The key table ------------------------------------------------------- */

/*
 * Adding a key is one line here (and its entry in mailtlsd.conf(5)); its
 * default, when not zero, goes in service_defaults() or global_defaults().
 */
#define SVC_FIELD(f)	.off = offsetof(struct service_config, f), \
			.size = sizeof(((struct service_config *)0)->f)
#define GLOBAL_FIELD(f)	.off = offsetof(struct config, f), \
			.size = sizeof(((struct config *)0)->f)
/* The whole service, for a SCOPE_SERVICE setter that fills several fields. */
#define SVC_ALL		.off = 0, .size = sizeof(struct service_config)
#define RANGE(lo, hi)	.min = (lo), .max = (hi)
#define SECONDS		RANGE(1, CONFIG_MAX_TIMEOUT)
#define CHOICES(c)	.choices = (c)
#define REPEATABLE	.repeatable = 1

static const struct key_def keys[] = {
	{ "listen", SCOPE_SERVICE, set_listen, SVC_ALL, REPEATABLE },
	{ "remote", SCOPE_SERVICE, set_remote, SVC_ALL },
	{ "protocol", SCOPE_SERVICE, set_choice, SVC_FIELD(protocol),
	    CHOICES(protocol_choices) },
	{ "tls", SCOPE_SERVICE, set_choice, SVC_FIELD(tls),
	    CHOICES(tls_choices) },
	{ "server_name", SCOPE_SERVICE, set_host, SVC_FIELD(server_name) },
	{ "pin_sha256", SCOPE_SERVICE, set_pin, SVC_ALL, REPEATABLE },
	{ "ca_file", SCOPE_BOTH, set_path, SVC_FIELD(ca_file) },
	{ "verify", SCOPE_BOTH, set_bool, SVC_FIELD(verify) },
	{ "min_tls", SCOPE_BOTH, set_choice, SVC_FIELD(min_tls),
	    CHOICES(min_tls_choices) },
	{ "client_cert", SCOPE_BOTH, set_path, SVC_FIELD(client_cert) },
	{ "client_key", SCOPE_BOTH, set_path, SVC_FIELD(client_key) },
	{ "ehlo_name", SCOPE_BOTH, set_host, SVC_FIELD(ehlo_name) },
	{ "connect_timeout", SCOPE_BOTH, set_number,
	    SVC_FIELD(connect_timeout), SECONDS },
	{ "handshake_timeout", SCOPE_BOTH, set_number,
	    SVC_FIELD(handshake_timeout), SECONDS },
	{ "idle_timeout", SCOPE_BOTH, set_number, SVC_FIELD(idle_timeout),
	    SECONDS },
	{ "login_timeout", SCOPE_BOTH, set_number, SVC_FIELD(login_timeout),
	    RANGE(0, CONFIG_MAX_TIMEOUT) },		/* 0: no deadline */
	{ "shutdown_timeout", SCOPE_BOTH, set_number,
	    SVC_FIELD(shutdown_timeout), SECONDS },
	{ "pool_size", SCOPE_BOTH, set_number, SVC_FIELD(pool_size),
	    RANGE(0, POOL_SIZE_MAX) },
	{ "pool_max_age", SCOPE_BOTH, set_number, SVC_FIELD(pool_max_age),
	    SECONDS },
	{ "local_tls", SCOPE_BOTH, set_choice, SVC_FIELD(local_tls),
	    CHOICES(local_tls_choices) },
	{ "local_cert", SCOPE_BOTH, set_path, SVC_FIELD(local_cert) },
	{ "local_key", SCOPE_BOTH, set_path, SVC_FIELD(local_key) },
	{ "allow_remote_clients", SCOPE_BOTH, set_bool,
	    SVC_FIELD(allow_remote_clients) },
	{ "oauth2", SCOPE_SERVICE, set_word, SVC_FIELD(oauth2) },
	{ "user", SCOPE_GLOBAL, set_user, GLOBAL_FIELD(user) },
	{ "pid_file", SCOPE_GLOBAL, set_path, GLOBAL_FIELD(pid_file) },
	{ "state_dir", SCOPE_GLOBAL, set_path, GLOBAL_FIELD(state_dir) },
	{ "log_level", SCOPE_GLOBAL, set_choice, GLOBAL_FIELD(log_level),
	    CHOICES(log_level_choices) },
	{ "max_sessions", SCOPE_GLOBAL, set_number, GLOBAL_FIELD(max_sessions),
	    RANGE(1, MAX_SESSIONS_MAX) },
	{ "max_sessions_per_client", SCOPE_GLOBAL, set_number,
	    GLOBAL_FIELD(max_sessions_per_client), RANGE(0, MAX_SESSIONS_MAX) },
	{ "control_socket", SCOPE_GLOBAL, set_control_socket, .off = 0,
	    .size = sizeof(struct config) },
	{ "metrics_listen", SCOPE_GLOBAL, set_metrics_listen,
	    GLOBAL_FIELD(metrics_listen) },
	{ .name = NULL }
};

_Static_assert(sizeof(keys) / sizeof(keys[0]) <= KEYS_MAX,
    "raise KEYS_MAX");

/* The keys of an [oauth2:NAME] section (scope is not used). */
#define OA_FIELD(f)	.off = offsetof(struct oauth2_config, f), \
			.size = sizeof(((struct oauth2_config *)0)->f)

static const struct key_def oauth2_keys[] = {
	{ "provider", SCOPE_SERVICE, set_choice, OA_FIELD(provider),
	    CHOICES(provider_choices) },
	{ "client_id", SCOPE_SERVICE, set_word, OA_FIELD(client_id) },
	{ "tenant", SCOPE_SERVICE, set_host, OA_FIELD(tenant) },
	{ "flow", SCOPE_SERVICE, set_choice, OA_FIELD(flow),
	    CHOICES(flow_choices) },
	{ "client_secret", SCOPE_SERVICE, set_word, OA_FIELD(client_secret) },
	{ "client_secret_file", SCOPE_SERVICE, set_path,
	    OA_FIELD(client_secret_file) },
	{ "authorize_url", SCOPE_SERVICE, set_url, OA_FIELD(authorize_url) },
	{ "token_url", SCOPE_SERVICE, set_url, OA_FIELD(token_url) },
	{ "device_url", SCOPE_SERVICE, set_url, OA_FIELD(device_url) },
	{ "scope", SCOPE_SERVICE, set_words, OA_FIELD(scope) },
	{ "redirect_listen", SCOPE_SERVICE, set_address,
	    OA_FIELD(redirect_listen) },
	{ "ca_file", SCOPE_SERVICE, set_path, OA_FIELD(ca_file) },
	{ "http_timeout", SCOPE_SERVICE, set_number, OA_FIELD(http_timeout),
	    SECONDS },
	{ "kdf_memory", SCOPE_SERVICE, set_mib_as_kib, OA_FIELD(kdf_memory),
	    RANGE(KDF_MEMORY_MIN, KDF_MEMORY_MAX) },
	{ "kdf_passes", SCOPE_SERVICE, set_number, OA_FIELD(kdf_passes),
	    RANGE(1, KDF_PASSES_MAX) },
	{ .name = NULL }
};

_Static_assert(sizeof(oauth2_keys) / sizeof(oauth2_keys[0]) <=
    OAUTH2_KEYS_MAX, "raise OAUTH2_KEYS_MAX");
/* set_choice and set_bool store an int. */
_Static_assert(sizeof(enum mail_protocol) == sizeof(int) &&
    sizeof(enum tls_mode) == sizeof(int) &&
    sizeof(enum tls_version) == sizeof(int) &&
    sizeof(enum local_tls_mode) == sizeof(int) &&
    sizeof(enum log_level) == sizeof(int) &&
    sizeof(enum oauth2_provider) == sizeof(int) &&
    sizeof(enum oauth2_flow) == sizeof(int), "an enum is not an int");

/* Find a key by name in a table, or NULL. */
static const struct key_def *
find_key_in(const struct key_def *table, const char *name)
{
	const struct key_def	*k;

	for (k = table; k->name != NULL; k++)
		if (strcmp(k->name, name) == 0)
			return k;
	return NULL;
}

static const struct key_def *
find_key(const char *name)
{
	return find_key_in(keys, name);
}

/* The first line where an [oauth2:NAME] section sets name, or 0. */
static int
oa_line_of(const struct section *sec, const char *name)
{
	const struct key_def	*k = find_key_in(oauth2_keys, name);

	assert(k != NULL);
	return sec->oa_keyline[k - oauth2_keys];
}

/* The place of a key in keys[] and keyline[]; name must be in the table. */
static int
key_index(const char *name)
{
	const struct key_def	*k = find_key(name);

	assert(k != NULL);
	return (int)(k - keys);
}

/* The first line where sec sets the key name, or 0. */
static int
line_of(const struct section *sec, const char *name)
{
	return sec->keyline[key_index(name)];
}

/* ---- Defaults ------------------------------------------------------------ */

/* Set every per-service default (the one place they are set). */
static void
service_defaults(struct service_config *svc)
{
	memset(svc, 0, sizeof(*svc));
	snprintf(svc->ca_file, sizeof(svc->ca_file), "%s",
	    CONFIG_DEFAULT_CA_FILE);
	svc->verify = 1;
	svc->min_tls = TLS_VERSION_1_2;
	snprintf(svc->ehlo_name, sizeof(svc->ehlo_name), "%s",
	    CONFIG_DEFAULT_EHLO_NAME);
	svc->connect_timeout = CONFIG_DEFAULT_CONNECT_TIMEOUT;
	svc->handshake_timeout = CONFIG_DEFAULT_HANDSHAKE_TIMEOUT;
	svc->idle_timeout = CONFIG_DEFAULT_IDLE_TIMEOUT;
	svc->login_timeout = CONFIG_DEFAULT_LOGIN_TIMEOUT;
	svc->shutdown_timeout = CONFIG_DEFAULT_SHUTDOWN_TIMEOUT;
	svc->pool_size = 0;
	svc->pool_max_age = CONFIG_DEFAULT_POOL_MAX_AGE;
	svc->local_tls = LOCAL_TLS_NONE;
	svc->allow_remote_clients = 0;
}

/* Set every global default. */
static void
global_defaults(struct config *cfg)
{
	cfg->user[0] = '\0';
	cfg->pid_file[0] = '\0';
	snprintf(cfg->state_dir, sizeof(cfg->state_dir), "%s",
	    CONFIG_DEFAULT_STATE_DIR);
	cfg->log_level = LOG_LEVEL_INFO;
	cfg->max_sessions = CONFIG_DEFAULT_MAX_SESSIONS;
	cfg->max_sessions_per_client = CONFIG_DEFAULT_MAX_PER_CLIENT;
	snprintf(cfg->control_socket, sizeof(cfg->control_socket), "%s",
	    CONFIG_DEFAULT_CONTROL_SOCKET);
}

/* Start a section record of the given kind. */
static void
section_init(struct section *sec, enum section_kind kind, const char *name,
    int line)
{
	memset(sec, 0, sizeof(*sec));
	sec->kind = kind;
	sec->line = line;
	service_defaults(&sec->svc);
	snprintf(sec->svc.name, sizeof(sec->svc.name), "%s", name);
	sec->svc.line = line;
}

/* ---- Lines --------------------------------------------------------------- */

/* Trim leading and trailing blanks in place. */
static char *
trim(char *s)
{
	char	*end;

	while (*s == ' ' || *s == '\t')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	*end = '\0';
	return s;
}

/* Cut a "#" or ";" comment that starts the line or follows a blank. */
static void
strip_comment(char *s)
{
	size_t	i;

	for (i = 0; s[i] != '\0'; i++) {
		if ((s[i] == '#' || s[i] == ';') &&
		    (i == 0 || s[i - 1] == ' ' || s[i - 1] == '\t')) {
			s[i] = '\0';
			return;
		}
	}
}

/* Whether a service name is 1..63 of [A-Za-z0-9._-]. */
static int
valid_service_name(const char *name)
{
	size_t	len = strlen(name);

	return len > 0 && len < CONFIG_NAME_MAX &&
	    strspn(name, "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == len;
}

/* Find a service section by name, or NULL. */
static struct section *
find_section(struct parser *p, const char *name)
{
	int	i;

	for (i = 0; i < p->n_services; i++)
		if (strcmp(p->services[i]->svc.name, name) == 0)
			return p->services[i];
	return NULL;
}

/* Start a new service section; NULL when out of memory. */
static struct section *
add_section(struct parser *p, const char *name, int line)
{
	struct section	**v, *sec;
	int		  cap;

	if (p->n_services == p->cap_services) {
		cap = p->cap_services == 0 ? 8 : p->cap_services * 2;
		v = realloc(p->services, (size_t)cap * sizeof(*v));
		if (v == NULL)
			return NULL;
		p->services = v;
		p->cap_services = cap;
	}
	if ((sec = malloc(sizeof(*sec))) == NULL)
		return NULL;
	section_init(sec, SECTION_SERVICE, name, line);
	p->services[p->n_services++] = sec;
	p->saw_service = 1;
	return sec;
}

/* Set the defaults of an [oauth2:NAME] section. */
static void
oauth2_defaults(struct oauth2_config *oa, const char *name, int line)
{
	char	err[64];

	memset(oa, 0, sizeof(*oa));
	snprintf(oa->name, sizeof(oa->name), "%s", name);
	oa->line = line;
	oa->http_timeout = HTTP_TIMEOUT_DEFAULT;
	oa->kdf_memory = KDF_MEMORY_DEFAULT * 1024;
	oa->kdf_passes = KDF_PASSES_DEFAULT;
	if (config_parse_listen(REDIRECT_DEFAULT, &oa->redirect_listen, err,
	    sizeof(err)) == -1)
		abort();	/* the constant is valid */
}

/* Parse what follows a bad header into a section that is then dropped. */
static void
discard_section(struct parser *p, enum section_kind kind, int line)
{
	section_init(&p->discard, kind, "", line);
	if (kind == SECTION_OAUTH2)
		oauth2_defaults(&p->discard.oa, "", line);
	else if (kind != SECTION_GLOBAL)
		p->saw_service = 1;
	p->cur = &p->discard;
}

/* Handle the [global] header. */
static void
open_global(struct parser *p, int line)
{
	if (p->have_global) {
		parser_error(p, line, "duplicate [global] section (first on "
		    "line %d)", p->global.line);
		discard_section(p, SECTION_GLOBAL, line);
		return;
	}
	p->have_global = 1;
	p->global.line = line;
	p->global.svc.line = line;
	p->cur = &p->global;
}

/* Handle a [service] header. */
static void
open_service(struct parser *p, const char *name, int line)
{
	struct section	*sec;

	if (!valid_service_name(name)) {
		parser_error(p, line, "invalid service name '%s' (1 to %d of "
		    "A-Z a-z 0-9 . _ -)", name, CONFIG_NAME_MAX - 1);
		discard_section(p, SECTION_SERVICE, line);
	} else if (strcmp(name, "all") == 0) {
		parser_error(p, line, "service name 'all' is reserved "
		    "(mailtlsd -p all probes every service)");
		discard_section(p, SECTION_SERVICE, line);
	} else if ((sec = find_section(p, name)) != NULL) {
		parser_error(p, line, "duplicate service '%s' (first defined "
		    "on line %d)", name, sec->line);
		discard_section(p, SECTION_SERVICE, line);
	} else if ((sec = add_section(p, name, line)) == NULL) {
		parser_error(p, line, "out of memory");
		discard_section(p, SECTION_SERVICE, line);
	} else
		p->cur = sec;
}

/* Find an [oauth2:NAME] section record by NAME, or NULL. */
static struct section *
find_oauth2_section(const struct parser *p, const char *name)
{
	int	i;

	for (i = 0; i < p->n_oauth2; i++)
		if (strcmp(p->oauth2[i]->oa.name, name) == 0)
			return p->oauth2[i];
	return NULL;
}

/* Handle an [oauth2:NAME] header. */
static void
open_oauth2(struct parser *p, const char *name, int line)
{
	struct section	*sec, **v;

	if (!valid_service_name(name)) {
		parser_error(p, line, "invalid oauth2 section name '%s' (1 to "
		    "%d of A-Z a-z 0-9 . _ -)", name, CONFIG_NAME_MAX - 1);
	} else if ((sec = find_oauth2_section(p, name)) != NULL) {
		parser_error(p, line, "duplicate [oauth2:%s] (first defined "
		    "on line %d)", name, sec->line);
	} else if (p->n_oauth2 == CONFIG_MAX_OAUTH2) {
		parser_error(p, line, "too many [oauth2:NAME] sections (at "
		    "most %d)", CONFIG_MAX_OAUTH2);
	} else if ((v = realloc(p->oauth2, (size_t)(p->n_oauth2 + 1) *
	    sizeof(*v))) == NULL || (p->oauth2 = v,
	    (sec = malloc(sizeof(*sec))) == NULL)) {
		parser_error(p, line, "out of memory");
	} else {
		section_init(sec, SECTION_OAUTH2, "", line);
		oauth2_defaults(&sec->oa, name, line);
		p->oauth2[p->n_oauth2++] = sec;
		p->cur = sec;
		return;
	}
	discard_section(p, SECTION_OAUTH2, line);
}

/* Parse a "[name]" line. */
static void
parse_header(struct parser *p, char *s, int line)
{
	char	*end, *name;

	if ((end = strchr(s, ']')) == NULL) {
		parser_error(p, line, "unterminated section header (missing "
		    "']')");
		discard_section(p, SECTION_UNKNOWN, line);
		return;
	}
	if (*trim(end + 1) != '\0') {
		parser_error(p, line, "unexpected text after ']'");
		discard_section(p, SECTION_UNKNOWN, line);
		return;
	}
	*end = '\0';
	name = trim(s + 1);
	if (strcmp(name, "global") == 0)
		open_global(p, line);
	else if (strncmp(name, "oauth2:", 7) == 0)
		open_oauth2(p, trim(name + 7), line);
	else
		open_service(p, name, line);
}

/* Whether a key may appear in the current section; reports if not. */
static int
key_allowed(struct parser *p, const struct key_def *k, int line)
{
	if (p->cur->kind == SECTION_GLOBAL && k->scope == SCOPE_SERVICE) {
		parser_error(p, line, "%s is only allowed in a service section",
		    k->name);
		return 0;
	}
	if (p->cur->kind == SECTION_SERVICE && k->scope == SCOPE_GLOBAL) {
		parser_error(p, line, "%s is only allowed in [global]",
		    k->name);
		return 0;
	}
	return 1;
}

/* Parse one "key = value" in an [oauth2:NAME] section. */
static void
parse_oauth2_key(struct parser *p, const char *key, const char *val,
    int line)
{
	const struct key_def	*k;
	struct kv		 kv;
	int			 i;

	if ((k = find_key_in(oauth2_keys, key)) == NULL) {
		parser_error(p, line, "unknown key '%s' in an [oauth2:NAME] "
		    "section", key);
		return;
	}
	i = (int)(k - oauth2_keys);
	if (p->cur->oa_keyline[i] != 0) {
		parser_error(p, line, "duplicate key '%s' (first set on line "
		    "%d)", key, p->cur->oa_keyline[i]);
		return;
	}
	p->cur->oa_keyline[i] = line;
	if (*val == '\0') {
		parser_error(p, line, "missing value for '%s'", key);
		return;
	}
	memset(&kv, 0, sizeof(kv));
	kv.key = k->name;
	kv.val = val;
	kv.line = line;
	if (k->set(k, &kv, (char *)&p->cur->oa + k->off) == -1)
		parser_error(p, line, "%s", kv.err);
}

/* Parse one "key = value" in the current section. */
static void
parse_key(struct parser *p, const char *key, const char *val, int line)
{
	const struct key_def	*k;
	struct kv		 kv;
	const char		*why;
	char			*base;
	int			 i;

	if (p->cur == NULL) {
		parser_error(p, line, "key '%s' before any section (put it "
		    "under [global] or a [service] header)", key);
		return;
	}
	if (p->cur->kind == SECTION_OAUTH2) {
		parse_oauth2_key(p, key, val, line);
		return;
	}
	if ((k = find_key(key)) == NULL) {
		parser_error(p, line, "unknown key '%s'%s", key,
		    find_key_in(oauth2_keys, key) != NULL ? " (it belongs in "
		    "an [oauth2:NAME] section)" : "");
		return;
	}
	if (!key_allowed(p, k, line))
		return;
	i = (int)(k - keys);
	if (p->cur->keyline[i] != 0 && !k->repeatable) {
		parser_error(p, line, "duplicate key '%s' (first set on line "
		    "%d)", key, p->cur->keyline[i]);
		return;
	}
	if (p->cur->keyline[i] == 0)
		p->cur->keyline[i] = line;
	if (*val == '\0') {
		parser_error(p, line, "missing value for '%s'", key);
		return;
	}
	memset(&kv, 0, sizeof(kv));
	kv.key = k->name;
	kv.val = val;
	kv.line = line;
	base = k->scope == SCOPE_GLOBAL ? (char *)p->cfg :
	    (char *)&p->cur->svc;
	if (k->set(k, &kv, base + k->off) == -1)
		parser_error(p, line, "%s", kv.err);
	else if ((why = not_supported_yet(k, &p->cur->svc)) != NULL)
		parser_error(p, line, "%s", why);
}

/* Parse one line of the file (already without its line ending). */
static void
parse_line(struct parser *p, char *s, int line)
{
	char	*eq;

	strip_comment(s);
	s = trim(s);
	if (*s == '\0')
		return;
	if (*s == '[') {
		parse_header(p, s, line);
		return;
	}
	if ((eq = strchr(s, '=')) == NULL) {
		parser_error(p, line, "expected 'key = value' or '[section]'");
		return;
	}
	*eq = '\0';
	s = trim(s);
	if (*s == '\0') {
		parser_error(p, line, "missing key before '='");
		return;
	}
	parse_key(p, s, trim(eq + 1), line);
}

/*
 * Read one line into buf (size bytes), dropping the line ending.  Returns 0
 * at end of file, else 1; *toolong and *nul flag a line that cannot be used.
 */
static int
read_line(FILE *f, char *buf, size_t size, int *toolong, int *nul)
{
	size_t	n = 0;
	int	c, got = 0;

	*toolong = *nul = 0;
	while ((c = getc(f)) != EOF) {
		got = 1;
		if (c == '\n')
			break;
		if (c == '\0')
			*nul = 1;
		if (n + 1 < size)
			buf[n++] = (char)c;
		else
			*toolong = 1;
	}
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	buf[n] = '\0';
	if (n > LINE_LEN_MAX)
		*toolong = 1;
	return got;
}

/* Parse every line of an open file; -1 when it could not be read. */
static int
parse_file(struct parser *p, FILE *f)
{
	char	 buf[LINE_LEN_MAX + 2], *s;
	int	 line = 0, toolong, nul;

	while (read_line(f, buf, sizeof(buf), &toolong, &nul)) {
		line++;
		s = buf;
		if (line == 1 && strncmp(s, "\xef\xbb\xbf", 3) == 0)
			s += 3;		/* a UTF-8 byte order mark */
		if (nul)
			parser_error(p, line, "NUL byte in line (not a text "
			    "file?)");
		else if (toolong)
			parser_error(p, line, "line too long (more than %d "
			    "characters)", LINE_LEN_MAX);
		else
			parse_line(p, s, line);
	}
	if (ferror(f)) {
		parser_error(p, 0, "read error: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* ---- Resolving and validating services ----------------------------------- */

/* Fill what a service does not set from [global]. */
static void
inherit_globals(struct parser *p, struct section *sec)
{
	const struct key_def	*k;
	int			 i;

	for (k = keys; k->name != NULL; k++) {
		i = (int)(k - keys);
		if (k->scope != SCOPE_BOTH || sec->keyline[i] != 0 ||
		    p->global.keyline[i] == 0)
			continue;
		memcpy((char *)&sec->svc + k->off,
		    (const char *)&p->global.svc + k->off, k->size);
	}
}

/* The line a key's value came from: the section's own, or [global]. */
static int
key_line(const struct parser *p, const struct section *sec, const char *name)
{
	return line_of(sec, name) != 0 ? line_of(sec, name) :
	    line_of(&p->global, name);
}

/*
 * A certificate and its key go together (client_cert/client_key,
 * local_cert/local_key); a [global] half is reported once.
 */
static void
check_pair(struct parser *p, const struct section *sec, const char *cert_name,
    const char *cert_val, const char *key_name, const char *key_val,
    int *global_reported)
{
	int		 cert = cert_val[0] != '\0';
	int		 key = key_val[0] != '\0';
	const char	*set;

	if (cert == key)
		return;
	set = cert ? cert_name : key_name;
	if (line_of(sec, set) == 0) {
		if (*global_reported)
			return;
		*global_reported = 1;
	}
	parser_error(p, key_line(p, sec, set), "%s is set but %s is not (set "
	    "both or neither)", cert ? cert_name : key_name,
	    cert ? key_name : cert_name);
}

/* client_cert/client_key and local_cert/local_key go in pairs. */
static void
check_pairs(struct parser *p, const struct section *sec)
{
	const struct service_config	*svc = &sec->svc;

	check_pair(p, sec, "client_cert", svc->client_cert, "client_key",
	    svc->client_key, &p->global_pair_reported);
	check_pair(p, sec, "local_cert", svc->local_cert, "local_key",
	    svc->local_key, &p->global_local_reported);
}

/* Derive protocol, TLS mode and server_name from remote; check them. */
static void
resolve_remote(struct parser *p, struct section *sec)
{
	struct service_config	*svc = &sec->svc;
	int			 line = line_of(sec, "remote");

	if (line == 0) {
		parser_error(p, sec->line, "service '%s': missing remote",
		    svc->name);
		return;
	}
	if (svc->remote_port == 0)
		return;		/* a bad remote line, already reported */
	if (svc->protocol == MAIL_PROTO_NONE &&
	    (svc->protocol = config_default_protocol(svc->remote_port)) ==
	    MAIL_PROTO_NONE)
		parser_error(p, line, "remote port %u has no default protocol; "
		    "set protocol = imap, pop3 or smtp",
		    (unsigned)svc->remote_port);
	if (svc->tls == TLS_MODE_NONE) {
		svc->tls = config_default_tls(svc->remote_port);
		if (svc->tls == TLS_MODE_NONE)
			parser_error(p, line, "remote port %u has no default "
			    "TLS mode; set tls = implicit or starttls",
			    (unsigned)svc->remote_port);
	}
	if (svc->server_name[0] != '\0')
		return;
	if (svc->verify && addr_is_numeric(svc->remote_host))
		parser_error(p, line, "remote is an IP address; set "
		    "server_name to the name on the server's certificate");
	snprintf(svc->server_name, sizeof(svc->server_name), "%s",
	    svc->remote_host);
}

/* Check a service's listen addresses. */
static void
check_listen(struct parser *p, const struct section *sec)
{
	const struct service_config	*svc = &sec->svc;
	int				 i;

	if (line_of(sec, "listen") == 0)
		parser_error(p, sec->line, "service '%s': missing listen",
		    svc->name);
	if (svc->allow_remote_clients)
		return;
	for (i = 0; i < svc->n_listen; i++)
		if (!svc->listen[i].is_loopback)
			parser_error(p, svc->listen[i].line, "listen address "
			    "%s is not loopback; set allow_remote_clients = "
			    "yes to allow it (clients send passwords in the "
			    "clear to mailtlsd)", svc->listen[i].text);
}

/* Report a listen address that an earlier listen line already uses. */
static void
check_listen_unique(struct parser *p, int si, int li)
{
	const struct listen_addr	*la, *other;
	int				 i, j, n;

	la = &p->services[si]->svc.listen[li];
	for (i = 0; i <= si; i++) {
		n = i < si ? p->services[i]->svc.n_listen : li;
		for (j = 0; j < n; j++) {
			other = &p->services[i]->svc.listen[j];
			if (strcmp(la->text, other->text) != 0)
				continue;
			parser_error(p, la->line, "listen address %s is "
			    "already used on line %d", la->text, other->line);
			return;
		}
	}
}

/* Keys set in a service that its other settings leave without effect. */
static void
check_unused(struct parser *p, const struct section *sec)
{
	const struct service_config	*svc = &sec->svc;

	if (svc->local_tls == LOCAL_TLS_NONE && line_of(sec, "local_cert"))
		parser_warning(p, line_of(sec, "local_cert"), "local_cert "
		    "has no effect: local_tls is none");
	if (svc->pool_size == 0 && line_of(sec, "pool_max_age"))
		parser_warning(p, line_of(sec, "pool_max_age"), "pool_max_age "
		    "has no effect: pool_size is 0");
	if (!svc->verify && line_of(sec, "ca_file"))
		parser_warning(p, line_of(sec, "ca_file"), "ca_file has no "
		    "effect: verify is no");
}

/* Pools that fill max_sessions leave no room for any other client. */
static void
check_pool_total(struct parser *p)
{
	unsigned long	total = 0;
	int		i;

	for (i = 0; i < p->n_services; i++)
		total += p->services[i]->svc.pool_size;
	if (total > 0 && total >= p->cfg->max_sessions)
		parser_warning(p, line_of(&p->global, "max_sessions"), "the "
		    "pools hold %lu connections, max_sessions is %u: clients "
		    "that find no pooled connection will be refused", total,
		    p->cfg->max_sessions);
}

/* A per-client limit at or over max_sessions never refuses anyone. */
static void
check_per_client(struct parser *p)
{
	unsigned	per_client = p->cfg->max_sessions_per_client;
	int		line = line_of(&p->global, "max_sessions_per_client");

	if (line != 0 && per_client > 0 && per_client >= p->cfg->max_sessions)
		parser_warning(p, line, "max_sessions_per_client has no "
		    "effect: it is not below max_sessions (%u)",
		    p->cfg->max_sessions);
}

/*
 * The metrics endpoint shows no secret but tells who uses which server:
 * loopback unless [global] allow_remote_clients, and never on an address
 * a service listens on.
 */
static void
check_metrics(struct parser *p)
{
	const struct listen_addr	*m = &p->cfg->metrics_listen;
	int				 i, j;

	if (m->addrlen == 0)
		return;
	if (!m->is_loopback && !p->global.svc.allow_remote_clients)
		parser_error(p, m->line, "metrics_listen %s is not loopback; "
		    "set allow_remote_clients = yes in [global] to allow it",
		    m->text);
	for (i = 0; i < p->n_services; i++)
		for (j = 0; j < p->services[i]->svc.n_listen; j++)
			if (strcmp(p->services[i]->svc.listen[j].text,
			    m->text) == 0)
				parser_error(p, m->line, "metrics_listen %s is "
				    "already a listen address on line %d",
				    m->text,
				    p->services[i]->svc.listen[j].line);
}

/* ---- [oauth2:NAME] sections --------------------------------------------- */

/* A provider's endpoints; "{tenant}" stands for the tenant. */
static const struct provider_urls {
	enum oauth2_provider	 provider;
	const char		*authorize, *token, *device;
} provider_urls[] = {
	{ OAUTH2_PROVIDER_MICROSOFT,
	  "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize",
	  "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token",
	  "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/devicecode" },
	{ OAUTH2_PROVIDER_GOOGLE,
	  "https://accounts.google.com/o/oauth2/v2/auth",
	  "https://oauth2.googleapis.com/token",
	  "https://oauth2.googleapis.com/device/code" },
	{ OAUTH2_PROVIDER_NONE, NULL, NULL, NULL }
};

/* What a mail protocol needs of Microsoft (delegated permissions). */
#define MS_SCOPE_IMAP	"https://outlook.office.com/IMAP.AccessAsUser.All"
#define MS_SCOPE_POP3	"https://outlook.office.com/POP.AccessAsUser.All"
#define MS_SCOPE_SMTP	"https://outlook.office.com/SMTP.Send"
#define MS_SCOPE_APP	"https://outlook.office365.com/.default"
#define GOOGLE_SCOPE	"https://mail.google.com/"

/* Fill one URL from the provider's pattern unless the section set it. */
static void
oauth2_default_url(char *url, size_t size, const char *pattern,
    const char *tenant)
{
	const char	*at;

	if (url[0] != '\0' || pattern == NULL)
		return;
	if ((at = strstr(pattern, "{tenant}")) == NULL)
		snprintf(url, size, "%s", pattern);
	else
		snprintf(url, size, "%.*s%s%s", (int)(at - pattern), pattern,
		    tenant, at + strlen("{tenant}"));
}

/* Provider defaults: tenant, flow and endpoints. */
static void
oauth2_apply_provider(struct parser *p, struct section *sec)
{
	struct oauth2_config		*oa = &sec->oa;
	const struct provider_urls	*pu;

	if (oa->provider != OAUTH2_PROVIDER_MICROSOFT &&
	    oa_line_of(sec, "tenant") != 0)
		parser_error(p, oa_line_of(sec, "tenant"), "tenant is only for "
		    "provider = microsoft");
	if (oa->provider == OAUTH2_PROVIDER_MICROSOFT && oa->tenant[0] == '\0')
		snprintf(oa->tenant, sizeof(oa->tenant), "common");
	if (oa->flow == OAUTH2_FLOW_NONE) {
		if (oa->provider == OAUTH2_PROVIDER_MICROSOFT)
			oa->flow = OAUTH2_FLOW_DEVICE;
		else if (oa->provider == OAUTH2_PROVIDER_GOOGLE)
			oa->flow = OAUTH2_FLOW_BROWSER;
		else
			parser_error(p, sec->line, "[oauth2:%s]: missing flow "
			    "(device, browser or client_credentials)",
			    oa->name);
	}
	for (pu = provider_urls; pu->provider != OAUTH2_PROVIDER_NONE; pu++) {
		if (pu->provider != oa->provider)
			continue;
		oauth2_default_url(oa->authorize_url,
		    sizeof(oa->authorize_url), pu->authorize, oa->tenant);
		oauth2_default_url(oa->token_url, sizeof(oa->token_url),
		    pu->token, oa->tenant);
		oauth2_default_url(oa->device_url, sizeof(oa->device_url),
		    pu->device, oa->tenant);
	}
}

/* The endpoints a flow uses must be known (generic sets them all). */
static void
oauth2_check_urls(struct parser *p, const struct section *sec)
{
	const struct oauth2_config	*oa = &sec->oa;

	if (oa->token_url[0] == '\0')
		parser_error(p, sec->line, "[oauth2:%s]: missing token_url",
		    oa->name);
	if (oa->flow == OAUTH2_FLOW_DEVICE && oa->device_url[0] == '\0')
		parser_error(p, sec->line, "[oauth2:%s]: flow = device needs "
		    "device_url", oa->name);
	if (oa->flow == OAUTH2_FLOW_BROWSER && oa->authorize_url[0] == '\0')
		parser_error(p, sec->line, "[oauth2:%s]: flow = browser needs "
		    "authorize_url", oa->name);
}

/* Combinations of provider and flow that cannot work. */
static void
oauth2_check_flow(struct parser *p, const struct section *sec)
{
	const struct oauth2_config	*oa = &sec->oa;
	int				 line = oa_line_of(sec, "flow");

	if (line == 0)
		line = sec->line;
	if (oa->provider == OAUTH2_PROVIDER_GOOGLE &&
	    oa->flow == OAUTH2_FLOW_DEVICE)
		parser_error(p, line, "flow = device does not work with "
		    "provider = google: Google's device flow refuses the "
		    "https://mail.google.com/ scope that IMAP, POP3 and SMTP "
		    "need; use flow = browser");
	if (oa->provider == OAUTH2_PROVIDER_GOOGLE &&
	    oa->flow == OAUTH2_FLOW_CLIENT_CREDENTIALS)
		parser_error(p, line, "flow = client_credentials does not work "
		    "with provider = google (Google has no such grant for "
		    "Gmail); use flow = browser");
	if (oa->provider == OAUTH2_PROVIDER_MICROSOFT &&
	    oa->flow == OAUTH2_FLOW_CLIENT_CREDENTIALS &&
	    (strcmp(oa->tenant, "common") == 0 ||
	    strcmp(oa->tenant, "organizations") == 0 ||
	    strcmp(oa->tenant, "consumers") == 0))
		parser_error(p, oa_line_of(sec, "tenant") ? oa_line_of(sec,
		    "tenant") : line, "flow = client_credentials needs the "
		    "tenant's ID or domain (tenant = contoso.onmicrosoft.com), "
		    "not '%s'", oa->tenant);
	if (oa->flow != OAUTH2_FLOW_BROWSER &&
	    oa_line_of(sec, "redirect_listen") != 0)
		parser_warning(p, oa_line_of(sec, "redirect_listen"),
		    "redirect_listen has no effect: flow is not browser");
	if (!oa->redirect_listen.is_loopback)
		parser_error(p, oa->redirect_listen.line, "redirect_listen "
		    "%s is not loopback: the redirect carries an authorisation "
		    "code (RFC 8252)", oa->redirect_listen.text);
}

/*
 * Google and the client credentials grant need the app's secret.  Written
 * inline, it must be in a file only its owner can read.
 */
static void
oauth2_check_secret(struct parser *p, const struct section *sec)
{
	const struct oauth2_config	*oa = &sec->oa;
	int				 inline_line;
	struct stat			 st;

	inline_line = oa_line_of(sec, "client_secret");
	if (inline_line != 0 && oa_line_of(sec, "client_secret_file") != 0)
		parser_error(p, inline_line, "set client_secret or "
		    "client_secret_file, not both");
	if (oa->client_secret[0] == '\0' && oa->client_secret_file[0] ==
	    '\0' && (oa->provider == OAUTH2_PROVIDER_GOOGLE ||
	    oa->flow == OAUTH2_FLOW_CLIENT_CREDENTIALS))
		parser_error(p, sec->line, "[oauth2:%s]: %s needs the app's "
		    "secret: set client_secret_file", oa->name,
		    oa->provider == OAUTH2_PROVIDER_GOOGLE ? "provider = "
		    "google" : "flow = client_credentials");
	if (inline_line != 0 && stat(p->path, &st) == 0 &&
	    (st.st_mode & (S_IRGRP | S_IROTH)) != 0)
		parser_error(p, inline_line, "client_secret is written in a "
		    "file that other users can read (mode %04o): move it to "
		    "client_secret_file (mode 0600) or chmod 600 %s",
		    (unsigned)(st.st_mode & 07777), p->path);
}

/* Add one scope to a space-separated list unless it is there. */
static void
scope_add(char *scope, size_t size, const char *one)
{
	size_t	n = strlen(one);
	char	*at;

	for (at = strstr(scope, one); at != NULL; at = strstr(at + 1, one))
		if ((at == scope || at[-1] == ' ') &&
		    (at[n] == ' ' || at[n] == '\0'))
			return;
	snprintf(scope + strlen(scope), size - strlen(scope), "%s%s",
	    scope[0] != '\0' ? " " : "", one);
}

/* The scope default: what the services naming the section need. */
static void
oauth2_default_scope(struct parser *p, struct section *sec)
{
	struct oauth2_config	*oa = &sec->oa;
	static const char	*const ms[] = {
		[MAIL_PROTO_IMAP] = MS_SCOPE_IMAP,
		[MAIL_PROTO_POP3] = MS_SCOPE_POP3,
		[MAIL_PROTO_SMTP] = MS_SCOPE_SMTP
	};
	int			 i;
	enum mail_protocol	 proto;

	if (oa->scope[0] != '\0')
		return;
	switch (oa->provider) {
	case OAUTH2_PROVIDER_GOOGLE:
		snprintf(oa->scope, sizeof(oa->scope), "%s", GOOGLE_SCOPE);
		return;
	case OAUTH2_PROVIDER_MICROSOFT:
		if (oa->flow == OAUTH2_FLOW_CLIENT_CREDENTIALS) {
			snprintf(oa->scope, sizeof(oa->scope), "%s",
			    MS_SCOPE_APP);
			return;
		}
		for (i = 0; i < p->n_services; i++) {
			proto = p->services[i]->svc.protocol;
			if (strcmp(p->services[i]->svc.oauth2, oa->name) == 0 &&
			    proto > MAIL_PROTO_NONE && proto <= MAIL_PROTO_SMTP)
				scope_add(oa->scope, sizeof(oa->scope),
				    ms[proto]);
		}
		/* A refresh token, so that no one has to authorise again. */
		scope_add(oa->scope, sizeof(oa->scope), "offline_access");
		return;
	default:
		parser_error(p, sec->line, "[oauth2:%s]: provider = generic "
		    "needs scope", oa->name);
	}
}

/* Check one [oauth2:NAME] section and fill in what it derives. */
static void
resolve_oauth2(struct parser *p, struct section *sec)
{
	struct oauth2_config	*oa = &sec->oa;

	if (oa->provider == OAUTH2_PROVIDER_NONE) {
		parser_error(p, sec->line, "[oauth2:%s]: missing provider "
		    "(microsoft, google or generic)", oa->name);
		return;
	}
	if (oa->client_id[0] == '\0')
		parser_error(p, sec->line, "[oauth2:%s]: missing client_id",
		    oa->name);
	if (oa->ca_file[0] == '\0')
		snprintf(oa->ca_file, sizeof(oa->ca_file), "%s",
		    p->global.svc.ca_file);
	oauth2_apply_provider(p, sec);
	oauth2_check_urls(p, sec);
	oauth2_check_flow(p, sec);
	oauth2_check_secret(p, sec);
	oauth2_default_scope(p, sec);
	if (!sec->oa_used)
		parser_warning(p, sec->line, "[oauth2:%s] has no effect: no "
		    "service sets oauth2 = %s", oa->name, oa->name);
}

/* Each service's oauth2 = NAME must name a section. */
static void
link_oauth2(struct parser *p, const struct section *svc_sec)
{
	struct section	*sec;

	if (svc_sec->svc.oauth2[0] == '\0')
		return;
	if ((sec = find_oauth2_section(p, svc_sec->svc.oauth2)) == NULL) {
		parser_error(p, line_of(svc_sec, "oauth2"), "oauth2 = %s: no "
		    "[oauth2:%s] section", svc_sec->svc.oauth2,
		    svc_sec->svc.oauth2);
		return;
	}
	sec->oa_used = 1;
}

/* Resolve and validate every service; then the file as a whole. */
static void
resolve_all(struct parser *p)
{
	int	i, j;

	for (i = 0; i < p->n_services; i++) {
		inherit_globals(p, p->services[i]);
		check_pairs(p, p->services[i]);
		resolve_remote(p, p->services[i]);
		check_listen(p, p->services[i]);
		check_unused(p, p->services[i]);
		for (j = 0; j < p->services[i]->svc.n_listen; j++)
			check_listen_unique(p, i, j);
		link_oauth2(p, p->services[i]);
	}
	for (i = 0; i < p->n_oauth2; i++)
		resolve_oauth2(p, p->oauth2[i]);
	if (!p->saw_service)
		parser_error(p, 0, "no service defined (add a [name] section "
		    "with listen and remote)");
	check_pool_total(p);
	check_per_client(p);
	check_metrics(p);
}

/* Move the resolved services into the config. */
static int
collect_services(struct parser *p)
{
	int	i;

	p->cfg->services = calloc((size_t)p->n_services,
	    sizeof(*p->cfg->services));
	if (p->cfg->services == NULL)
		return -1;
	for (i = 0; i < p->n_services; i++)
		p->cfg->services[i] = p->services[i]->svc;
	p->cfg->n_services = p->n_services;
	if (p->n_oauth2 == 0)
		return 0;
	p->cfg->oauth2 = calloc((size_t)p->n_oauth2, sizeof(*p->cfg->oauth2));
	if (p->cfg->oauth2 == NULL)
		return -1;
	for (i = 0; i < p->n_oauth2; i++)
		p->cfg->oauth2[i] = p->oauth2[i]->oa;
	p->cfg->n_oauth2 = p->n_oauth2;
	return 0;
}

/* Free what a parser holds (not the config). */
static void
parser_free(struct parser *p)
{
	int	i;

	for (i = 0; i < p->n_services; i++)
		free(p->services[i]);
	free(p->services);
	for (i = 0; i < p->n_oauth2; i++) {
		/* The secret is wiped wherever it was copied. */
		explicit_bzero(p->oauth2[i]->oa.client_secret,
		    sizeof(p->oauth2[i]->oa.client_secret));
		free(p->oauth2[i]);
	}
	free(p->oauth2);
}

/* Read and validate the file at path; NULL when it has errors. */
struct config *
config_load(const char *path, struct config_errors *errs)
{
	struct parser	*p;
	struct config	*cfg = NULL;
	FILE		*f = NULL;
	unsigned char	*text = NULL;
	size_t		 len = 0;
	char		 why[128];

	if ((p = calloc(1, sizeof(*p))) == NULL) {
		config_errors_add(errs, "%s: out of memory", path);
		return NULL;
	}
	p->path = path;
	p->errs = errs;
	section_init(&p->global, SECTION_GLOBAL, "global", 0);
	if ((p->cfg = calloc(1, sizeof(*p->cfg))) == NULL) {
		parser_error(p, 0, "out of memory");
		goto out;
	}
	global_defaults(p->cfg);
	if (strlen(path) >= sizeof(p->cfg->path)) {
		parser_error(p, 0, "path too long");
		goto out;
	}
	snprintf(p->cfg->path, sizeof(p->cfg->path), "%s", path);
	/* Read once, through one descriptor: never a FIFO, bounded. */
	if (safefile_read(path, SAFEFILE_CONFIG_MAX, &text, &len, why,
	    sizeof(why)) != 0) {
		parser_error(p, 0, "%s", why);
		goto out;
	}
	if ((f = fmemopen(text, len, "r")) == NULL) {
		parser_error(p, 0, "cannot read: %s", strerror(errno));
		goto out;
	}
	if (parse_file(p, f) == -1)
		goto out;
	resolve_all(p);
	if (p->nerr == 0 && collect_services(p) == -1)
		parser_error(p, 0, "out of memory");
	if (p->nerr == 0) {
		cfg = p->cfg;
		p->cfg = NULL;
	}
out:
	if (f != NULL)
		fclose(f);
	safefile_free(text, len);
	config_free(p->cfg);
	parser_free(p);
	free(p);
	return cfg;
}

/* Free a config; config_free(NULL) does nothing. */
void
config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	config_errors_clear(&cfg->warnings);
	free(cfg->services);
	if (cfg->oauth2 != NULL)
		explicit_bzero(cfg->oauth2, (size_t)cfg->n_oauth2 *
		    sizeof(*cfg->oauth2));
	free(cfg->oauth2);
	free(cfg);
}

/* Find a service by name, or NULL. */
const struct service_config *
config_find_service(const struct config *cfg, const char *name)
{
	int	i;

	if (cfg == NULL || name == NULL)
		return NULL;
	for (i = 0; i < cfg->n_services; i++)
		if (strcmp(cfg->services[i].name, name) == 0)
			return &cfg->services[i];
	return NULL;
}

/* Find an [oauth2:NAME] section by NAME, or NULL. */
const struct oauth2_config *
config_find_oauth2(const struct config *cfg, const char *name)
{
	int	i;

	if (cfg == NULL || name == NULL)
		return NULL;
	for (i = 0; i < cfg->n_oauth2; i++)
		if (strcmp(cfg->oauth2[i].name, name) == 0)
			return &cfg->oauth2[i];
	return NULL;
}
