/*
 * config.h - the parsed configuration of mailtlsd.
 *
 * config_load() reads one INI file into a struct config.  Every default is
 * set in one place (config.c), every error is reported as "FILE:LINE: message"
 * and nothing is printed: the caller decides where errors go.
 */
#ifndef MAILTLSD_CONFIG_H
#define MAILTLSD_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "log.h"		/* enum log_level */

#define CONFIG_DEFAULT_PATH		"/etc/mailtlsd/mailtlsd.conf"
#define CONFIG_DEFAULT_CA_FILE		"/etc/ssl/certs/ca-certificates.crt"
#define CONFIG_DEFAULT_STATE_DIR	"/var/lib/mailtlsd"
#define CONFIG_DEFAULT_MAX_SESSIONS	1024
#define CONFIG_DEFAULT_CONNECT_TIMEOUT	10	/* seconds */
#define CONFIG_DEFAULT_HANDSHAKE_TIMEOUT 30	/* seconds */
#define CONFIG_DEFAULT_IDLE_TIMEOUT	1860	/* 31 min: IMAP IDLE is 29 */
#define CONFIG_DEFAULT_LOGIN_TIMEOUT	120	/* connect to login, seconds */
/*
 * Concurrent sessions from one client address: far more than the few
 * connections a client opens per account, an eighth of max_sessions.
 */
#define CONFIG_DEFAULT_MAX_PER_CLIENT	128
#define CONFIG_DEFAULT_SHUTDOWN_TIMEOUT	30	/* seconds */
#define CONFIG_DEFAULT_POOL_MAX_AGE	120	/* under Dovecot's 180 s */
#define CONFIG_DEFAULT_EHLO_NAME	"localhost"
/* Under systemd, RuntimeDirectory=mailtlsd makes the directory. */
#define CONFIG_DEFAULT_CONTROL_SOCKET	"/run/mailtlsd/control"
#define CONFIG_SOCKET_PATH_MAX	108	/* sun_path, with its NUL */

#define CONFIG_MAX_LISTEN	16	/* listen lines per service */
#define CONFIG_MAX_PINS		16	/* pin_sha256 lines per service */
#define CONFIG_MAX_TIMEOUT	86400	/* any timeout, seconds */
#define CONFIG_NAME_MAX		64	/* service name length */
#define CONFIG_HOST_MAX		256	/* host name length + NUL */
#define CONFIG_PATH_MAX		1024	/* file path length + NUL */

enum mail_protocol {
	MAIL_PROTO_NONE = 0,	/* not set: derived from the remote port */
	MAIL_PROTO_IMAP,
	MAIL_PROTO_POP3,
	MAIL_PROTO_SMTP
};

enum tls_mode {
	TLS_MODE_NONE = 0,	/* not set: derived from the remote port */
	TLS_MODE_IMPLICIT,
	TLS_MODE_STARTTLS
};

enum local_tls_mode {
	LOCAL_TLS_NONE = 0,
	LOCAL_TLS_STARTTLS,
	LOCAL_TLS_IMPLICIT
};

/* OAuth2 ([oauth2:NAME] sections, see oauth2.h). */
enum oauth2_provider {
	OAUTH2_PROVIDER_NONE = 0,
	OAUTH2_PROVIDER_MICROSOFT,	/* Microsoft 365, Outlook.com */
	OAUTH2_PROVIDER_GOOGLE,		/* Gmail, Google Workspace */
	OAUTH2_PROVIDER_GENERIC		/* every URL and the scope given */
};

enum oauth2_flow {
	OAUTH2_FLOW_NONE = 0,
	OAUTH2_FLOW_DEVICE,		/* RFC 8628 device authorisation */
	OAUTH2_FLOW_BROWSER,		/* code + PKCE, loopback redirect */
	OAUTH2_FLOW_CLIENT_CREDENTIALS	/* the app's own grant, no user */
};

enum tls_version {
	TLS_VERSION_1_2 = 12,
	TLS_VERSION_1_3 = 13
};

/* One address to listen on, as written ("127.0.0.1:143", "[::1]:143"). */
struct listen_addr {
	struct sockaddr_storage	addr;
	socklen_t		addrlen;
	char			text[80];	/* normalised "ADDR:PORT" */
	int			is_loopback;
	int			line;		/* where it was configured */
};

#define CONFIG_URL_MAX		1024	/* an endpoint URL + NUL */
#define CONFIG_SCOPE_MAX	1024	/* space-separated scopes + NUL */
#define CONFIG_SECRET_MAX	512	/* a client secret + NUL */
#define CONFIG_MAX_OAUTH2	32	/* [oauth2:NAME] sections */

/*
 * One [oauth2:NAME] section: an app registration at a provider.  After
 * load every URL is filled in (provider defaults, tenant applied), and
 * scope holds what the services that name the section need together.
 */
struct oauth2_config {
	char			name[CONFIG_NAME_MAX];	/* NAME of the header */
	int			line;
	enum oauth2_provider	provider;
	enum oauth2_flow	flow;
	char			client_id[CONFIG_HOST_MAX];
	char			tenant[CONFIG_HOST_MAX];	/* microsoft */
	char			client_secret[CONFIG_SECRET_MAX]; /* "" none */
	char			client_secret_file[CONFIG_PATH_MAX];
	char			authorize_url[CONFIG_URL_MAX];
	char			token_url[CONFIG_URL_MAX];
	char			device_url[CONFIG_URL_MAX];
	char			scope[CONFIG_SCOPE_MAX];
	struct listen_addr	redirect_listen;	/* browser flow */
	char			ca_file[CONFIG_PATH_MAX];	/* HTTPS trust */
	unsigned		http_timeout;		/* seconds */
	unsigned		kdf_memory;		/* Argon2id, KiB */
	unsigned		kdf_passes;		/* Argon2id opslimit */
};

/* Everything one [service] section says, with defaults filled in. */
struct service_config {
	char			name[CONFIG_NAME_MAX];
	int			line;		/* line of the [name] header */

	struct listen_addr	listen[CONFIG_MAX_LISTEN];
	int			n_listen;

	char			remote_host[CONFIG_HOST_MAX];
	uint16_t		remote_port;
	enum mail_protocol	protocol;	/* never NONE after load */
	enum tls_mode		tls;		/* never NONE after load */
	char			server_name[CONFIG_HOST_MAX];

	char			ca_file[CONFIG_PATH_MAX];
	int			verify;		/* 1 = yes (default) */
	uint8_t			pins[CONFIG_MAX_PINS][32]; /* SPKI SHA-256 */
	int			n_pins;
	enum tls_version	min_tls;
	char			client_cert[CONFIG_PATH_MAX];	/* "" = none */
	char			client_key[CONFIG_PATH_MAX];	/* "" = none */
	char			ehlo_name[CONFIG_HOST_MAX];

	unsigned		connect_timeout;	/* seconds */
	unsigned		handshake_timeout;	/* seconds */
	unsigned		idle_timeout;		/* seconds */
	unsigned		login_timeout;		/* seconds, 0 = none */
	unsigned		shutdown_timeout;	/* seconds */
	unsigned		pool_size;
	unsigned		pool_max_age;		/* seconds */

	enum local_tls_mode	local_tls;
	char			local_cert[CONFIG_PATH_MAX];
	char			local_key[CONFIG_PATH_MAX];

	int			allow_remote_clients;	/* 0 = no (default) */

	/* [oauth2:NAME] this service logs in with; "" = pass logins on. */
	char			oauth2[CONFIG_NAME_MAX];
};

/* The whole file. */
/* The errors (or warnings) one load found, each "FILE:LINE: message". */
struct config_errors {
	char	**lines;
	int	count;
	int	cap;
};

struct config {
	char			path[CONFIG_PATH_MAX];
	char			user[64];		/* "" = do not drop */
	char			pid_file[CONFIG_PATH_MAX]; /* "" = none */
	char			state_dir[CONFIG_PATH_MAX];
	enum log_level		log_level;
	unsigned		max_sessions;
	unsigned		max_sessions_per_client; /* 0 = no limit */
	/* mailtlsd -s; "" = none.  Set in the file, or the default. */
	char			control_socket[CONFIG_SOCKET_PATH_MAX];
	int			control_socket_set;
	/* The metrics endpoint; addrlen 0 = none. */
	struct listen_addr	metrics_listen;

	struct service_config	*services;
	int			n_services;

	struct oauth2_config	*oauth2;	/* [oauth2:NAME] sections */
	int			n_oauth2;

	/* Settings that are valid but have no effect as combined. */
	struct config_errors	warnings;
};

/*
 * Read and validate the file at path.  Returns a new config, or NULL when the
 * file has errors; every error found is appended to errs (which may already
 * hold some).  The parser never stops at the first error.
 */
struct config	*config_load(const char *path, struct config_errors *errs);

/* Free a config; config_free(NULL) does nothing. */
void		 config_free(struct config *);

/* Find a service by name, or NULL. */
const struct service_config *config_find_service(const struct config *,
		    const char *name);

/* Find an [oauth2:NAME] section by NAME, or NULL. */
const struct oauth2_config *config_find_oauth2(const struct config *,
		    const char *name);

/* Append one formatted error. */
void		 config_errors_add(struct config_errors *, const char *fmt, ...)
		    __attribute__((format(printf, 2, 3)));

/* Free the error lines (not the struct itself); safe on an empty list. */
void		 config_errors_clear(struct config_errors *);

/*
 * Parse "ADDR:PORT" / "[V6]:PORT" (numeric addresses only) into out.
 * Returns 0, or -1 with a reason in err.
 */
int		 config_parse_listen(const char *text, struct listen_addr *out,
		    char *err, size_t errlen);

/* Default protocol / TLS mode for a remote port, NONE when there is none. */
enum mail_protocol config_default_protocol(uint16_t port);
enum tls_mode	 config_default_tls(uint16_t port);

/* Names for logs and messages. */
const char	*config_protocol_name(enum mail_protocol);
const char	*config_tls_mode_name(enum tls_mode);

#endif /* MAILTLSD_CONFIG_H */
