/*
 * check_config.c - unit tests of config.c: the INI grammar, every default,
 * every error (with its FILE:LINE) and the listen/remote parsers.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mbedtls/ssl.h>
#include <mbedtls/version.h>

#include "addr.h"
#include "config.h"
#include "unit.h"

/* A minimal valid service: lines 1 to 3. */
#define SVC	"[s]\n" \
		"listen = 127.0.0.1:1143\n" \
		"remote = mail.example.com:993\n"

/* SHA-256 of nothing, base64 and raw. */
#define PIN_B64	"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
static const uint8_t pin_raw[32] = {
	0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14,
	0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
	0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c,
	0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55
};

static char			conf_path[64];
static struct config_errors	errs;

/* Write len bytes to a new temporary file named in conf_path. */
static void
write_conf_len(const char *text, size_t len)
{
	int	fd;

	snprintf(conf_path, sizeof(conf_path), "/tmp/check_config.XXXXXX");
	fd = mkstemp(conf_path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, len), (ssize_t)len);
	close(fd);
}

/* Load text as a config file; errors go to errs. */
static struct config *
load_len(const char *text, size_t len)
{
	struct config	*cfg;

	write_conf_len(text, len);
	cfg = config_load(conf_path, &errs);
	unlink(conf_path);
	return cfg;
}

/* Load a NUL-terminated text as a config file. */
static struct config *
load(const char *text)
{
	return load_len(text, strlen(text));
}

/* Format into one of four static buffers, used in turn. */
static const char *
fmt(const char *format, ...) __attribute__((format(printf, 1, 2)));
static const char *
fmt(const char *format, ...)
{
	static char	buf[4][16384];
	static int	next;
	char		*b = buf[next++ % 4];
	va_list		ap;

	va_start(ap, format);
	vsnprintf(b, sizeof(buf[0]), format, ap);
	va_end(ap);
	return b;
}

/* Every error collected so far, one per line, for failure messages. */
static const char *
dump_errors(void)
{
	static char	buf[16384];
	size_t		n = 0;
	int		i;

	buf[0] = '\0';
	for (i = 0; i < errs.count && n < sizeof(buf); i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\n  %s",
		    errs.lines[i]);
	return errs.count == 0 ? " (none)" : buf;
}

/* Whether an error "conf_path:LINE: ...PHRASE..." was collected. */
static int
has_error(int line, const char *phrase)
{
	char	prefix[128];
	int	i;

	if (line > 0)
		snprintf(prefix, sizeof(prefix), "%s:%d: ", conf_path, line);
	else
		snprintf(prefix, sizeof(prefix), "%s: ", conf_path);
	for (i = 0; i < errs.count; i++)
		if (strncmp(errs.lines[i], prefix, strlen(prefix)) == 0 &&
		    strstr(errs.lines[i] + strlen(prefix), phrase) != NULL)
			return 1;
	return 0;
}

#define ASSERT_ERROR(line, phrase)					\
	ck_assert_msg(has_error((line), (phrase)),			\
	    "no error at line %d with '%s'; errors:%s", (line), (phrase), \
	    dump_errors())

/* Load text that must load cleanly. */
#define LOAD_OK(cfg, text) do {						\
	(cfg) = load(text);						\
	ck_assert_msg((cfg) != NULL && errs.count == 0,			\
	    "config did not load; errors:%s", dump_errors());		\
} while (0)

/* Load text that must fail with exactly one error at line with phrase. */
#define EXPECT_ONE_ERROR(text, line, phrase) do {			\
	struct config *cfg_ = load(text);				\
	ck_assert_ptr_null(cfg_);					\
	ck_assert_msg(errs.count == 1, "expected 1 error, got %d:%s",	\
	    errs.count, dump_errors());					\
	ASSERT_ERROR((line), (phrase));					\
	config_errors_clear(&errs);					\
} while (0)

/* Reset the collected errors before each test. */
static void
setup(void)
{
	memset(&errs, 0, sizeof(errs));
}

/* Free the collected errors after each test. */
static void
teardown(void)
{
	config_errors_clear(&errs);
}

/* ---- Defaults ------------------------------------------------------------ */

START_TEST(test_minimal_defaults)
{
	struct config			*cfg;
	const struct service_config	*s;

	LOAD_OK(cfg, SVC);
	ck_assert_str_eq(cfg->path, conf_path);
	ck_assert_str_eq(cfg->user, "");
	ck_assert_str_eq(cfg->pid_file, "");
	ck_assert_str_eq(cfg->state_dir, CONFIG_DEFAULT_STATE_DIR);
	ck_assert_int_eq(cfg->log_level, LOG_LEVEL_INFO);
	ck_assert_uint_eq(cfg->max_sessions, CONFIG_DEFAULT_MAX_SESSIONS);
	ck_assert_int_eq(cfg->n_services, 1);
	s = &cfg->services[0];
	ck_assert_str_eq(s->name, "s");
	ck_assert_int_eq(s->line, 1);
	ck_assert_int_eq(s->n_listen, 1);
	ck_assert_str_eq(s->listen[0].text, "127.0.0.1:1143");
	ck_assert_int_eq(s->listen[0].line, 2);
	ck_assert_str_eq(s->remote_host, "mail.example.com");
	ck_assert_uint_eq(s->remote_port, 993);
	ck_assert_int_eq(s->protocol, MAIL_PROTO_IMAP);
	ck_assert_int_eq(s->tls, TLS_MODE_IMPLICIT);
	ck_assert_str_eq(s->server_name, "mail.example.com");
	ck_assert_str_eq(s->ca_file, CONFIG_DEFAULT_CA_FILE);
	ck_assert_int_eq(s->verify, 1);
	ck_assert_int_eq(s->n_pins, 0);
	ck_assert_int_eq(s->min_tls, TLS_VERSION_1_2);
	ck_assert_str_eq(s->client_cert, "");
	ck_assert_str_eq(s->client_key, "");
	ck_assert_str_eq(s->ehlo_name, CONFIG_DEFAULT_EHLO_NAME);
	ck_assert_uint_eq(s->connect_timeout, CONFIG_DEFAULT_CONNECT_TIMEOUT);
	ck_assert_uint_eq(s->handshake_timeout,
	    CONFIG_DEFAULT_HANDSHAKE_TIMEOUT);
	ck_assert_uint_eq(s->idle_timeout, CONFIG_DEFAULT_IDLE_TIMEOUT);
	ck_assert_uint_eq(s->shutdown_timeout,
	    CONFIG_DEFAULT_SHUTDOWN_TIMEOUT);
	ck_assert_uint_eq(s->pool_size, 0);
	ck_assert_uint_eq(s->pool_max_age, CONFIG_DEFAULT_POOL_MAX_AGE);
	ck_assert_int_eq(s->local_tls, LOCAL_TLS_NONE);
	ck_assert_str_eq(s->local_cert, "");
	ck_assert_str_eq(s->local_key, "");
	ck_assert_int_eq(s->allow_remote_clients, 0);
	ck_assert_ptr_eq(config_find_service(cfg, "s"), s);
	ck_assert_ptr_null(config_find_service(cfg, "t"));
	ck_assert_ptr_null(config_find_service(cfg, "S"));
	config_free(cfg);
}
END_TEST

/* The implicit-TLS ports, with the protocol each implies. */
static const struct {
	uint16_t		port;
	enum mail_protocol	proto;
} implicit_ports[] = {
	{ 993, MAIL_PROTO_IMAP },
	{ 995, MAIL_PROTO_POP3 },
	{ 465, MAIL_PROTO_SMTP },
};

START_TEST(test_port_defaults_implicit)
{
	struct config	*cfg;

	LOAD_OK(cfg, fmt("[s]\nlisten = 127.0.0.1:1143\n"
	    "remote = mail.example.com:%u\n",
	    (unsigned)implicit_ports[_i].port));
	ck_assert_int_eq(cfg->services[0].protocol, implicit_ports[_i].proto);
	ck_assert_int_eq(cfg->services[0].tls, TLS_MODE_IMPLICIT);
	config_free(cfg);
}
END_TEST

START_TEST(test_default_functions)
{
	ck_assert_int_eq(config_default_protocol(993), MAIL_PROTO_IMAP);
	ck_assert_int_eq(config_default_protocol(143), MAIL_PROTO_IMAP);
	ck_assert_int_eq(config_default_protocol(995), MAIL_PROTO_POP3);
	ck_assert_int_eq(config_default_protocol(110), MAIL_PROTO_POP3);
	ck_assert_int_eq(config_default_protocol(465), MAIL_PROTO_SMTP);
	ck_assert_int_eq(config_default_protocol(587), MAIL_PROTO_SMTP);
	ck_assert_int_eq(config_default_protocol(25), MAIL_PROTO_SMTP);
	ck_assert_int_eq(config_default_protocol(26), MAIL_PROTO_SMTP);
	ck_assert_int_eq(config_default_protocol(0), MAIL_PROTO_NONE);
	ck_assert_int_eq(config_default_protocol(10993), MAIL_PROTO_NONE);
	ck_assert_int_eq(config_default_tls(993), TLS_MODE_IMPLICIT);
	ck_assert_int_eq(config_default_tls(995), TLS_MODE_IMPLICIT);
	ck_assert_int_eq(config_default_tls(465), TLS_MODE_IMPLICIT);
	ck_assert_int_eq(config_default_tls(143), TLS_MODE_STARTTLS);
	ck_assert_int_eq(config_default_tls(110), TLS_MODE_STARTTLS);
	ck_assert_int_eq(config_default_tls(587), TLS_MODE_STARTTLS);
	ck_assert_int_eq(config_default_tls(25), TLS_MODE_STARTTLS);
	ck_assert_int_eq(config_default_tls(26), TLS_MODE_STARTTLS);
	ck_assert_int_eq(config_default_tls(0), TLS_MODE_NONE);
	ck_assert_int_eq(config_default_tls(2525), TLS_MODE_NONE);
	ck_assert_str_eq(config_protocol_name(MAIL_PROTO_IMAP), "imap");
	ck_assert_str_eq(config_protocol_name(MAIL_PROTO_POP3), "pop3");
	ck_assert_str_eq(config_protocol_name(MAIL_PROTO_SMTP), "smtp");
	ck_assert_str_eq(config_protocol_name(MAIL_PROTO_NONE), "none");
	ck_assert_str_eq(config_tls_mode_name(TLS_MODE_IMPLICIT), "implicit");
	ck_assert_str_eq(config_tls_mode_name(TLS_MODE_STARTTLS), "starttls");
	ck_assert_str_eq(config_tls_mode_name(TLS_MODE_NONE), "none");
}
END_TEST

START_TEST(test_explicit_protocol_and_tls)
{
	struct config	*cfg;

	LOAD_OK(cfg, "[s]\nlisten = 127.0.0.1:1143\n"
	    "remote = mail.example.com:10993\nprotocol = imap\n"
	    "tls = implicit\n");
	ck_assert_int_eq(cfg->services[0].protocol, MAIL_PROTO_IMAP);
	ck_assert_int_eq(cfg->services[0].tls, TLS_MODE_IMPLICIT);
	config_free(cfg);

	/* Explicit values win over the port's defaults. */
	LOAD_OK(cfg, SVC "protocol = pop3\n");
	ck_assert_int_eq(cfg->services[0].protocol, MAIL_PROTO_POP3);
	config_free(cfg);
	LOAD_OK(cfg, "[s]\nlisten = 127.0.0.1:1143\n"
	    "remote = mail.example.com:143\ntls = implicit\n");
	ck_assert_int_eq(cfg->services[0].protocol, MAIL_PROTO_IMAP);
	ck_assert_int_eq(cfg->services[0].tls, TLS_MODE_IMPLICIT);
	config_free(cfg);
}
END_TEST

START_TEST(test_every_service_key)
{
	struct config			*cfg;
	const struct service_config	*s;

	LOAD_OK(cfg, SVC
	    "protocol = smtp\n"
	    "tls = implicit\n"
	    "server_name = imap.example.net\n"
	    "ca_file = /etc/mailtlsd/ca.pem\n"
	    "verify = no\n"
	    "pin_sha256 = " PIN_B64 "\n"
	    "min_tls = 1.2\n"
	    "client_cert = /etc/mailtlsd/client.pem\n"
	    "client_key = /etc/mailtlsd/client.key\n"
	    "connect_timeout = 1\n"
	    "handshake_timeout = 86400\n"
	    "idle_timeout = 3600\n"
	    "shutdown_timeout = 5\n"
	    "pool_size = 0\n"
	    "local_tls = none\n"
	    "allow_remote_clients = yes\n"
	    "listen = 0.0.0.0:1144\n");
	s = &cfg->services[0];
	ck_assert_int_eq(s->protocol, MAIL_PROTO_SMTP);
	ck_assert_int_eq(s->tls, TLS_MODE_IMPLICIT);
	ck_assert_str_eq(s->server_name, "imap.example.net");
	ck_assert_str_eq(s->ca_file, "/etc/mailtlsd/ca.pem");
	ck_assert_int_eq(s->verify, 0);
	ck_assert_int_eq(s->n_pins, 1);
	ck_assert_mem_eq(s->pins[0], pin_raw, 32);
	ck_assert_int_eq(s->min_tls, TLS_VERSION_1_2);
	ck_assert_str_eq(s->client_cert, "/etc/mailtlsd/client.pem");
	ck_assert_str_eq(s->client_key, "/etc/mailtlsd/client.key");
	ck_assert_uint_eq(s->connect_timeout, 1);
	ck_assert_uint_eq(s->handshake_timeout, 86400);
	ck_assert_uint_eq(s->idle_timeout, 3600);
	ck_assert_uint_eq(s->shutdown_timeout, 5);
	ck_assert_int_eq(s->allow_remote_clients, 1);
	ck_assert_int_eq(s->n_listen, 2);
	ck_assert_str_eq(s->listen[1].text, "0.0.0.0:1144");
	ck_assert_int_eq(s->listen[1].is_loopback, 0);
	ck_assert_int_eq(s->listen[1].line, 20);
	config_free(cfg);
}
END_TEST

START_TEST(test_global_keys)
{
	struct config	*cfg;

	LOAD_OK(cfg, "[global]\nuser = mailtlsd\n"
	    "pid_file = /run/mailtlsd.pid\nlog_level = debug\n"
	    "max_sessions = 1000000\n" SVC);
	ck_assert_str_eq(cfg->user, "mailtlsd");
	ck_assert_str_eq(cfg->pid_file, "/run/mailtlsd.pid");
	ck_assert_int_eq(cfg->log_level, LOG_LEVEL_DEBUG);
	ck_assert_uint_eq(cfg->max_sessions, 1000000);
	ck_assert_int_eq(cfg->services[0].line, 6);
	config_free(cfg);

	LOAD_OK(cfg, "[global]\nlog_level = error\nmax_sessions = 1\n" SVC);
	ck_assert_int_eq(cfg->log_level, LOG_LEVEL_ERROR);
	ck_assert_uint_eq(cfg->max_sessions, 1);
	config_free(cfg);
	LOAD_OK(cfg, "[global]\nlog_level = warn\n" SVC);
	ck_assert_int_eq(cfg->log_level, LOG_LEVEL_WARN);
	config_free(cfg);
	LOAD_OK(cfg, "[global]\nlog_level = info\n" SVC);
	ck_assert_int_eq(cfg->log_level, LOG_LEVEL_INFO);
	config_free(cfg);
}
END_TEST

START_TEST(test_monitoring_keys)
{
	struct config	*cfg;

	LOAD_OK(cfg, SVC);
	ck_assert_str_eq(cfg->control_socket, CONFIG_DEFAULT_CONTROL_SOCKET);
	ck_assert_int_eq(cfg->control_socket_set, 0);
	ck_assert_uint_eq(cfg->metrics_listen.addrlen, 0);
	config_free(cfg);

	LOAD_OK(cfg, "[global]\ncontrol_socket = /tmp/m/ctl\n"
	    "metrics_listen = [::1]:9101\n" SVC);
	ck_assert_str_eq(cfg->control_socket, "/tmp/m/ctl");
	ck_assert_int_eq(cfg->control_socket_set, 1);
	ck_assert_str_eq(cfg->metrics_listen.text, "[::1]:9101");
	ck_assert_int_eq(cfg->metrics_listen.line, 3);
	config_free(cfg);

	LOAD_OK(cfg, "[global]\ncontrol_socket = none\nmetrics_listen = none\n"
	    SVC);
	ck_assert_str_eq(cfg->control_socket, "");
	ck_assert_int_eq(cfg->control_socket_set, 1);
	ck_assert_uint_eq(cfg->metrics_listen.addrlen, 0);
	config_free(cfg);

	/* Another address only with allow_remote_clients in [global]. */
	LOAD_OK(cfg, "[global]\nallow_remote_clients = yes\n"
	    "metrics_listen = 0.0.0.0:9101\n" SVC);
	ck_assert_str_eq(cfg->metrics_listen.text, "0.0.0.0:9101");
	config_free(cfg);
	EXPECT_ONE_ERROR("[global]\nmetrics_listen = 0.0.0.0:9101\n"
	    "[s]\nallow_remote_clients = yes\nlisten = 127.0.0.1:1143\n"
	    "remote = mail.example.com:993\n", 2, "is not loopback");
	EXPECT_ONE_ERROR(SVC "control_socket = /x\n", 4,
	    "control_socket is only allowed in [global]");
}
END_TEST

/* ---- Global defaults ----------------------------------------------------- */

/* Per-service keys set in [global]: lines 2 to 9 (or after SVC). */
#define GLOBAL_DEFAULTS	"[global]\n"				\
			"ca_file = /g/ca.pem\n"				\
			"verify = no\n"					\
			"connect_timeout = 5\n"				\
			"handshake_timeout = 6\n"			\
			"idle_timeout = 7\n"				\
			"shutdown_timeout = 8\n"			\
			"client_cert = /g/c.pem\n"			\
			"client_key = /g/c.key\n"			\
			"allow_remote_clients = yes\n"

/* Check a service took every value of GLOBAL_DEFAULTS. */
static void
assert_global_defaults(const struct service_config *s)
{
	ck_assert_str_eq(s->ca_file, "/g/ca.pem");
	ck_assert_int_eq(s->verify, 0);
	ck_assert_uint_eq(s->connect_timeout, 5);
	ck_assert_uint_eq(s->handshake_timeout, 6);
	ck_assert_uint_eq(s->idle_timeout, 7);
	ck_assert_uint_eq(s->shutdown_timeout, 8);
	ck_assert_str_eq(s->client_cert, "/g/c.pem");
	ck_assert_str_eq(s->client_key, "/g/c.key");
	ck_assert_int_eq(s->allow_remote_clients, 1);
}

START_TEST(test_global_defaults_before)
{
	struct config	*cfg;

	LOAD_OK(cfg, GLOBAL_DEFAULTS SVC "listen = 192.0.2.1:1143\n");
	assert_global_defaults(&cfg->services[0]);
	config_free(cfg);
}
END_TEST

START_TEST(test_global_defaults_after)
{
	struct config	*cfg;

	LOAD_OK(cfg, SVC "listen = 192.0.2.1:1143\n" GLOBAL_DEFAULTS);
	assert_global_defaults(&cfg->services[0]);
	config_free(cfg);
}
END_TEST

START_TEST(test_global_defaults_overridden)
{
	struct config			*cfg;
	const struct service_config	*s, *t;

	LOAD_OK(cfg, GLOBAL_DEFAULTS SVC
	    "verify = yes\nconnect_timeout = 50\nca_file = /s/ca.pem\n"
	    "client_key = /s/c.key\n"
	    "[t]\nlisten = 127.0.0.1:1144\nremote = pop.example.com:995\n");
	s = config_find_service(cfg, "s");
	t = config_find_service(cfg, "t");
	ck_assert_ptr_nonnull(s);
	ck_assert_ptr_nonnull(t);
	ck_assert_int_eq(s->verify, 1);
	ck_assert_uint_eq(s->connect_timeout, 50);
	ck_assert_str_eq(s->ca_file, "/s/ca.pem");
	ck_assert_str_eq(s->client_cert, "/g/c.pem");
	ck_assert_str_eq(s->client_key, "/s/c.key");
	ck_assert_uint_eq(s->handshake_timeout, 6);
	assert_global_defaults(t);
	ck_assert_int_eq(t->protocol, MAIL_PROTO_POP3);
	config_free(cfg);
}
END_TEST

START_TEST(test_global_allow_remote_clients)
{
	struct config	*cfg;

	LOAD_OK(cfg, SVC "listen = [::]:1143\n"
	    "[global]\nallow_remote_clients = yes\n");
	ck_assert_int_eq(cfg->services[0].allow_remote_clients, 1);
	config_free(cfg);
	EXPECT_ONE_ERROR("[global]\nallow_remote_clients = yes\n" SVC
	    "listen = [::]:1143\nallow_remote_clients = no\n", 6,
	    "is not loopback");
}
END_TEST

START_TEST(test_global_client_pair)
{
	struct config	*cfg;

	/* A half pair in [global] is reported once, on the global line. */
	EXPECT_ONE_ERROR("[global]\nclient_cert = /g/c.pem\n" SVC
	    "[t]\nlisten = 127.0.0.1:1144\nremote = mail.example.com:993\n",
	    2, "client_cert is set but client_key is not");
	/* A service may complete the pair. */
	LOAD_OK(cfg, "[global]\nclient_cert = /g/c.pem\n" SVC
	    "client_key = /s/c.key\n");
	config_free(cfg);
	/* Only a key in the service, nothing global. */
	EXPECT_ONE_ERROR(SVC "client_key = /s/c.key\n", 4,
	    "client_key is set but client_cert is not");
	EXPECT_ONE_ERROR(SVC "client_cert = /s/c.pem\n", 4,
	    "client_cert is set but client_key is not");
}
END_TEST

/* ---- Listen -------------------------------------------------------------- */

START_TEST(test_parse_listen_good)
{
	struct listen_addr		la;
	const struct sockaddr_in	*sin = (void *)&la.addr;
	const struct sockaddr_in6	*sin6 = (void *)&la.addr;
	char				err[256];

	ck_assert_int_eq(config_parse_listen("127.0.0.1:1143", &la, err,
	    sizeof(err)), 0);
	ck_assert_int_eq(sin->sin_family, AF_INET);
	ck_assert_uint_eq(ntohs(sin->sin_port), 1143);
	ck_assert_uint_eq(ntohl(sin->sin_addr.s_addr), 0x7f000001);
	ck_assert_int_eq(la.addrlen, sizeof(struct sockaddr_in));
	ck_assert_str_eq(la.text, "127.0.0.1:1143");
	ck_assert_int_eq(la.is_loopback, 1);

	ck_assert_int_eq(config_parse_listen("[::1]:143", &la, err,
	    sizeof(err)), 0);
	ck_assert_int_eq(sin6->sin6_family, AF_INET6);
	ck_assert_uint_eq(ntohs(sin6->sin6_port), 143);
	ck_assert_int_eq(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr), 1);
	ck_assert_int_eq(la.addrlen, sizeof(struct sockaddr_in6));
	ck_assert_str_eq(la.text, "[::1]:143");
	ck_assert_int_eq(la.is_loopback, 1);

	ck_assert_int_eq(config_parse_listen("[0:0:0:0:0:0:0:1]:65535", &la,
	    err, sizeof(err)), 0);
	ck_assert_str_eq(la.text, "[::1]:65535");
	ck_assert_int_eq(config_parse_listen("[::ffff:127.0.0.1]:1", &la, err,
	    sizeof(err)), 0);
	ck_assert_int_eq(la.is_loopback, 1);
	ck_assert_int_eq(config_parse_listen("[::ffff:10.0.0.1]:1", &la, err,
	    sizeof(err)), 0);
	ck_assert_int_eq(la.is_loopback, 0);
	ck_assert_int_eq(config_parse_listen("127.255.1.2:01143", &la, err,
	    sizeof(err)), 0);
	ck_assert_str_eq(la.text, "127.255.1.2:1143");
	ck_assert_int_eq(la.is_loopback, 1);
	ck_assert_int_eq(config_parse_listen("0.0.0.0:25", &la, err,
	    sizeof(err)), 0);
	ck_assert_int_eq(la.is_loopback, 0);
	ck_assert_int_eq(config_parse_listen("128.0.0.1:25", &la, err,
	    sizeof(err)), 0);
	ck_assert_int_eq(la.is_loopback, 0);
	ck_assert_int_eq(config_parse_listen("[::]:25", &la, err,
	    sizeof(err)), 0);
	ck_assert_int_eq(la.is_loopback, 0);
	ck_assert_int_eq(config_parse_listen("[2001:db8::2]:25", &la, err,
	    sizeof(err)), 0);
	ck_assert_str_eq(la.text, "[2001:db8::2]:25");
	ck_assert_int_eq(la.is_loopback, 0);
}
END_TEST

/* Listen values that are refused, and a phrase of each reason. */
static const struct {
	const char	*text;
	const char	*phrase;
} bad_listen[] = {
	{ "127.0.0.1", "missing ':PORT'" },
	{ "127.0.0.1:", "missing port" },
	{ ":143", "missing address" },
	{ "127.0.0.1:0", "1 to 65535" },
	{ "127.0.0.1:65536", "1 to 65535" },
	{ "127.0.0.1:99999999999999999999", "1 to 65535" },
	{ "127.0.0.1:14a", "1 to 65535" },
	{ "127.0.0.1:+143", "1 to 65535" },
	{ "127.0.0.1:-1", "1 to 65535" },
	{ "127.0.0.1: 143", "1 to 65535" },
	{ "localhost:143", "not a numeric IPv4 address" },
	{ "1.2.3:143", "not a numeric IPv4 address" },
	{ "127.0.0.1.5:143", "not a numeric IPv4 address" },
	{ "256.0.0.1:143", "not a numeric IPv4 address" },
	{ "::1:143", "brackets" },
	{ "[::1:143", "missing ']'" },
	{ "[::1]143", "expected ':PORT' after ']'" },
	{ "[::1]", "expected ':PORT' after ']'" },
	{ "[]:143", "missing address" },
	{ "[127.0.0.1]:143", "not a numeric IPv6 address" },
	{ "[fe80::1%lo]:143", "not a numeric IPv6 address" },
	{ "[::1", "missing ']'" },
	{ "garbage", "missing ':PORT'" },
	{ "", "missing ':PORT'" },
	{ "[0000:0000:0000:0000:0000:0000:0000:0000:0000:0001]:1",
	    "too long" },
};

START_TEST(test_parse_listen_bad)
{
	struct listen_addr	la;
	char			err[256] = "";

	ck_assert_msg(config_parse_listen(bad_listen[_i].text, &la, err,
	    sizeof(err)) == -1, "'%s' accepted", bad_listen[_i].text);
	ck_assert_msg(strstr(err, bad_listen[_i].phrase) != NULL,
	    "'%s': error '%s' lacks '%s'", bad_listen[_i].text, err,
	    bad_listen[_i].phrase);
}
END_TEST

START_TEST(test_listen_ipv6_in_file)
{
	struct config	*cfg;

	LOAD_OK(cfg, "[s]\nlisten = [::1]:1143\nlisten = 127.0.0.1:1143\n"
	    "remote = mail.example.com:993\n");
	ck_assert_int_eq(cfg->services[0].n_listen, 2);
	ck_assert_int_eq(cfg->services[0].listen[0].addr.ss_family, AF_INET6);
	ck_assert_str_eq(cfg->services[0].listen[0].text, "[::1]:1143");
	ck_assert_int_eq(cfg->services[0].listen[1].line, 3);
	config_free(cfg);
}
END_TEST

START_TEST(test_listen_errors_in_file)
{
	EXPECT_ONE_ERROR(SVC "listen = localhost:1144\n", 4,
	    "invalid listen 'localhost:1144'");
	EXPECT_ONE_ERROR(SVC "listen = 127.0.0.1:0\n", 4,
	    "invalid listen '127.0.0.1:0'");
	EXPECT_ONE_ERROR(SVC "listen = 0.0.0.0:1144\n", 4,
	    "listen address 0.0.0.0:1144 is not loopback; set "
	    "allow_remote_clients = yes to allow it (clients send passwords "
	    "in the clear to mailtlsd)");
	EXPECT_ONE_ERROR(SVC "listen = [2001:db8::1]:1144\n", 4,
	    "listen address [2001:db8::1]:1144 is not loopback");
	EXPECT_ONE_ERROR(SVC "listen = 127.0.0.1:1143\n", 4,
	    "listen address 127.0.0.1:1143 is already used on line 2");
	EXPECT_ONE_ERROR(SVC "[t]\nlisten = 127.0.0.1:1143\n"
	    "remote = mail.example.com:993\n", 5,
	    "listen address 127.0.0.1:1143 is already used on line 2");
	EXPECT_ONE_ERROR("[s]\nlisten = [::1]:1143\n"
	    "remote = mail.example.com:993\n"
	    "[t]\nremote = mail.example.com:993\n"
	    "listen = [0:0::1]:1143\n", 6,
	    "listen address [::1]:1143 is already used on line 2");
	/* The same port on different addresses is fine. */
	config_free(load(SVC "listen = 127.0.0.2:1143\n"
	    "listen = [::1]:1143\n"));
	ck_assert_int_eq(errs.count, 0);
}
END_TEST

START_TEST(test_listen_too_many)
{
	char	text[4096];
	size_t	n;
	int	i;

	n = (size_t)snprintf(text, sizeof(text), "%s", SVC);
	for (i = 0; i < CONFIG_MAX_LISTEN; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n,
		    "listen = 127.0.1.%d:1143\n", i);
	/* SVC has one already: the last of these is one too many. */
	EXPECT_ONE_ERROR(text, 3 + CONFIG_MAX_LISTEN, "too many listen lines");
}
END_TEST

/* ---- Remote -------------------------------------------------------------- */

/* Remote values that parse, with the host and port they give. */
static const struct {
	const char	*text;
	const char	*host;
	uint16_t	 port;
} good_remote[] = {
	{ "mail.example.com:993", "mail.example.com", 993 },
	{ "MAIL.Example.COM:465", "MAIL.Example.COM", 465 },
	{ "localhost:1", "localhost", 1 },
	{ "mx_1.example-mail.com:65535", "mx_1.example-mail.com", 65535 },
	{ "a.b.c.d.example.c0m:25", "a.b.c.d.example.c0m", 25 },
	{ "192.0.2.1:995", "192.0.2.1", 995 },
	{ "[2001:db8::1]:993", "2001:db8::1", 993 },
	{ "[::1]:10993", "::1", 10993 },
	{ "[::ffff:192.0.2.1]:993", "::ffff:192.0.2.1", 993 },
};

START_TEST(test_parse_remote_good)
{
	char		host[CONFIG_HOST_MAX], err[256];
	uint16_t	port = 0;

	ck_assert_msg(addr_parse_host_port(good_remote[_i].text, host,
	    sizeof(host), &port, err, sizeof(err)) == 0, "'%s': %s",
	    good_remote[_i].text, err);
	ck_assert_str_eq(host, good_remote[_i].host);
	ck_assert_uint_eq(port, good_remote[_i].port);
}
END_TEST

/* Remote values that are refused, and a phrase of each reason. */
static const struct {
	const char	*text;
	const char	*phrase;
} bad_remote[] = {
	{ "mail.example.com", "missing ':PORT'" },
	{ "mail.example.com:", "missing port" },
	{ "mail.example.com:0", "1 to 65535" },
	{ "mail.example.com:65536", "1 to 65535" },
	{ "mail.example.com:imaps", "1 to 65535" },
	{ ":993", "missing address" },
	{ "mail..example.com:993", "not a valid host name" },
	{ ".example.com:993", "not a valid host name" },
	{ "example.com.:993", "not a valid host name" },
	{ "-bad.example.com:993", "not a valid host name" },
	{ "bad-.example.com:993", "not a valid host name" },
	{ "exa mple.com:993", "not a valid host name" },
	{ "exa*mple.com:993", "not a valid host name" },
	{ "1.2.3:993", "not a valid host name" },
	{ "999.1.1.1:993", "not a valid host name" },
	{ "[1.2.3.4]:993", "not an IPv6 address" },
	{ "[mail.example.com]:993", "not an IPv6 address" },
	{ "2001:db8::1:993", "brackets" },
	{ "[2001:db8::1:993", "missing ']'" },
	{ "[2001:db8::1]993", "expected ':PORT' after ']'" },
	{ "[]:993", "missing address" },
	{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    ".com:993", "not a valid host name" },
};

START_TEST(test_parse_remote_bad)
{
	char		host[CONFIG_HOST_MAX], err[256] = "";
	uint16_t	port = 0;

	ck_assert_msg(addr_parse_host_port(bad_remote[_i].text, host,
	    sizeof(host), &port, err, sizeof(err)) == -1, "'%s' accepted",
	    bad_remote[_i].text);
	ck_assert_msg(strstr(err, bad_remote[_i].phrase) != NULL,
	    "'%s': error '%s' lacks '%s'", bad_remote[_i].text, err,
	    bad_remote[_i].phrase);
}
END_TEST

START_TEST(test_parse_remote_lengths)
{
	char		long_host[400], text[420], host[CONFIG_HOST_MAX];
	char		small[8], err[256];
	uint16_t	port;
	size_t		i;

	/* 63-character labels are fine; a 300-character name is not. */
	for (i = 0; i < 300; i++)
		long_host[i] = (i % 64 == 63) ? '.' : 'a';
	long_host[300] = '\0';
	snprintf(text, sizeof(text), "%s:993", long_host);
	ck_assert_int_eq(addr_parse_host_port(text, host, sizeof(host), &port,
	    err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "too long"));
	snprintf(text, sizeof(text), "%.250s:993", long_host);
	ck_assert_int_eq(addr_parse_host_port(text, host, sizeof(host), &port,
	    err, sizeof(err)), 0);
	/* A buffer too small for the host. */
	ck_assert_int_eq(addr_parse_host_port("mail.example.com:993", small,
	    sizeof(small), &port, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "too long"));
	ck_assert_int_eq(addr_parse_host_port("a.com:993", small,
	    sizeof(small), &port, err, sizeof(err)), 0);
	ck_assert_str_eq(small, "a.com");
}
END_TEST

START_TEST(test_remote_in_file)
{
	struct config	*cfg;

	EXPECT_ONE_ERROR("[s]\nlisten = 127.0.0.1:1143\n"
	    "remote = mail.example.com\n", 3,
	    "invalid remote 'mail.example.com': missing ':PORT'");
	EXPECT_ONE_ERROR("[s]\nlisten = 127.0.0.1:1143\n"
	    "remote = mail.example.com:10993\ntls = implicit\n", 3,
	    "remote port 10993 has no default protocol; set protocol");
	EXPECT_ONE_ERROR("[s]\nlisten = 127.0.0.1:1143\n"
	    "remote = mail.example.com:10993\nprotocol = imap\n", 3,
	    "remote port 10993 has no default TLS mode; set tls");
	(void)load("[s]\nlisten = 127.0.0.1:1143\n"
	    "remote = mail.example.com:10993\n");
	ck_assert_int_eq(errs.count, 2);
	ASSERT_ERROR(3, "no default protocol");
	ASSERT_ERROR(3, "no default TLS mode");
	config_errors_clear(&errs);

	/* An IP address needs a server_name while verifying. */
	EXPECT_ONE_ERROR("[s]\nlisten = 127.0.0.1:1143\n"
	    "remote = 192.0.2.1:993\n", 3, "remote is an IP address; set "
	    "server_name to the name on the server's certificate");
	EXPECT_ONE_ERROR("[s]\nlisten = 127.0.0.1:1143\n"
	    "remote = [2001:db8::1]:993\n", 3, "remote is an IP address");
	LOAD_OK(cfg, "[s]\nlisten = 127.0.0.1:1143\n"
	    "remote = [2001:db8::1]:993\nserver_name = mail.example.com\n");
	ck_assert_str_eq(cfg->services[0].remote_host, "2001:db8::1");
	ck_assert_str_eq(cfg->services[0].server_name, "mail.example.com");
	config_free(cfg);
	LOAD_OK(cfg, "[s]\nlisten = 127.0.0.1:1143\n"
	    "remote = 192.0.2.1:993\nverify = no\n");
	ck_assert_str_eq(cfg->services[0].server_name, "192.0.2.1");
	config_free(cfg);
	LOAD_OK(cfg, "[global]\nverify = no\n[s]\nlisten = 127.0.0.1:1143\n"
	    "remote = 192.0.2.1:993\n");
	config_free(cfg);
}
END_TEST

/* ---- Pins ---------------------------------------------------------------- */

START_TEST(test_pins)
{
	struct config	*cfg;
	char		 text[4096];
	size_t		 n;
	int		 i;

	LOAD_OK(cfg, SVC "pin_sha256 = " PIN_B64 "\n"
	    "pin_sha256 = AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n");
	ck_assert_int_eq(cfg->services[0].n_pins, 2);
	ck_assert_mem_eq(cfg->services[0].pins[0], pin_raw, 32);
	for (i = 0; i < 32; i++)
		ck_assert_uint_eq(cfg->services[0].pins[1][i], 0);
	config_free(cfg);

	EXPECT_ONE_ERROR(SVC "pin_sha256 = not*base64!\n", 4,
	    "invalid pin_sha256 'not*base64!' (not base64)");
	EXPECT_ONE_ERROR(SVC "pin_sha256 = 47DEQpj8HBSa+/TImW+5JCeuQeRk\n",
	    4, "decodes to 21 bytes");
	EXPECT_ONE_ERROR(SVC "pin_sha256 = AAAAAAAAAAAAAAAAAAAAAA==\n", 4,
	    "decodes to 16 bytes, a SHA-256 is 32");
	EXPECT_ONE_ERROR(SVC "pin_sha256 = " PIN_B64 PIN_B64 PIN_B64 "\n", 4,
	    "(not base64)");
	EXPECT_ONE_ERROR(SVC "pin_sha256 = AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n", 4, "a SHA-256 is 32");
	EXPECT_ONE_ERROR("[global]\npin_sha256 = " PIN_B64 "\n" SVC, 2,
	    "pin_sha256 is only allowed in a service section");

	n = (size_t)snprintf(text, sizeof(text), "%s", SVC);
	for (i = 0; i <= CONFIG_MAX_PINS; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n,
		    "pin_sha256 = %s\n", PIN_B64);
	EXPECT_ONE_ERROR(text, 4 + CONFIG_MAX_PINS, "too many pin_sha256");
}
END_TEST

/* ---- Errors -------------------------------------------------------------- */

START_TEST(test_cannot_open)
{
	struct config	*cfg;

	snprintf(conf_path, sizeof(conf_path), "/nonexistent/mailtlsd.conf");
	cfg = config_load(conf_path, &errs);
	ck_assert_ptr_null(cfg);
	ck_assert_int_eq(errs.count, 1);
	ck_assert_str_eq(errs.lines[0], "/nonexistent/mailtlsd.conf: cannot "
	    "open: No such file or directory");
}
END_TEST

/* A directory, or a FIFO (not waited on), is not a configuration file. */
START_TEST(test_not_regular)
{
	char	fifo[64] = "/tmp/check_config.XXXXXX";

	snprintf(conf_path, sizeof(conf_path), "/tmp");
	ck_assert_ptr_null(config_load(conf_path, &errs));
	ck_assert_int_eq(errs.count, 1);
	ck_assert_str_eq(errs.lines[0], "/tmp: not a regular file");
	config_errors_clear(&errs);

	ck_assert_ptr_nonnull(mkdtemp(fifo));
	snprintf(conf_path, sizeof(conf_path), "%s/fifo", fifo);
	ck_assert_int_eq(mkfifo(conf_path, 0600), 0);
	alarm(10);
	ck_assert_ptr_null(config_load(conf_path, &errs));
	alarm(0);
	unlink(conf_path);
	rmdir(fifo);
	ck_assert_int_eq(errs.count, 1);
	ASSERT_ERROR(0, "not a regular file");
}
END_TEST

START_TEST(test_no_service)
{
	EXPECT_ONE_ERROR("", 0, "no service defined");
	EXPECT_ONE_ERROR("# nothing\n\n", 0, "no service defined");
	EXPECT_ONE_ERROR("[global]\nuser = mailtlsd\n", 0,
	    "no service defined");
	/* A service section that was refused is not "no service". */
	EXPECT_ONE_ERROR("[bad/name]\n", 1, "invalid service name");
}
END_TEST

START_TEST(test_missing_keys)
{
	EXPECT_ONE_ERROR("[global]\n\n[s]\nremote = mail.example.com:993\n",
	    3, "service 's': missing listen");
	EXPECT_ONE_ERROR("[s]\nlisten = 127.0.0.1:1143\n", 1,
	    "service 's': missing remote");
	(void)load("\n[s]\n");
	ck_assert_int_eq(errs.count, 2);
	ASSERT_ERROR(2, "missing listen");
	ASSERT_ERROR(2, "missing remote");
	config_errors_clear(&errs);
	/* A bad value is one error, not a second "missing" one. */
	EXPECT_ONE_ERROR("[s]\nlisten = nowhere\n"
	    "remote = mail.example.com:993\n", 2, "invalid listen");
	EXPECT_ONE_ERROR("[s]\nlisten = 127.0.0.1:1143\nremote =\n", 3,
	    "missing value for 'remote'");
}
END_TEST

START_TEST(test_sections)
{
	struct config	*cfg;
	char		 name[CONFIG_NAME_MAX + 1];

	EXPECT_ONE_ERROR(SVC "[t\nuser = x\n", 4,
	    "unterminated section header");
	EXPECT_ONE_ERROR(SVC "[t] x\n", 4, "unexpected text after ']'");
	EXPECT_ONE_ERROR(SVC "[a b]\n", 4, "invalid service name 'a b'");
	EXPECT_ONE_ERROR(SVC "[]\n", 4, "invalid service name ''");
	EXPECT_ONE_ERROR(SVC "[a/b]\n", 4, "invalid service name");
	EXPECT_ONE_ERROR(SVC "[all]\n", 4, "service name 'all' is reserved");
	EXPECT_ONE_ERROR(SVC "[s]\nlisten = 127.0.0.1:1143\n", 4,
	    "duplicate service 's' (first defined on line 1)");
	EXPECT_ONE_ERROR("[global]\n" SVC "[global]\nuser = x\n", 5,
	    "duplicate [global] section (first on line 1)");
	EXPECT_ONE_ERROR("user = x\n" SVC, 1, "key 'user' before any section");
	EXPECT_ONE_ERROR("listen = 127.0.0.1:1144\n" SVC, 1, "before any "
	    "section");

	memset(name, 'n', CONFIG_NAME_MAX);
	name[CONFIG_NAME_MAX] = '\0';
	EXPECT_ONE_ERROR(fmt(SVC "[%s]\n", name), 4, "invalid service name");
	name[CONFIG_NAME_MAX - 1] = '\0';
	LOAD_OK(cfg, fmt("[ %s ]\nlisten = 127.0.0.1:1143\n"
	    "remote = mail.example.com:993\n[Mail_2.x-y]\n"
	    "listen = 127.0.0.1:1144\nremote = mail.example.com:993\n",
	    name));
	ck_assert_int_eq(cfg->n_services, 2);
	ck_assert_str_eq(cfg->services[0].name, name);
	ck_assert_str_eq(cfg->services[1].name, "Mail_2.x-y");
	ck_assert_int_eq(cfg->services[1].line, 4);
	config_free(cfg);
}
END_TEST

START_TEST(test_key_errors)
{
	EXPECT_ONE_ERROR(SVC "foo = bar\n", 4, "unknown key 'foo'");
	EXPECT_ONE_ERROR(SVC "Remote = x\n", 4, "unknown key 'Remote'");
	EXPECT_ONE_ERROR(SVC "verify yes\n", 4, "expected 'key = value'");
	EXPECT_ONE_ERROR(SVC "= yes\n", 4, "missing key before '='");
	EXPECT_ONE_ERROR(SVC "verify =\n", 4, "missing value for 'verify'");
	EXPECT_ONE_ERROR(SVC "verify = # just a comment\n", 4,
	    "missing value for 'verify'");
	EXPECT_ONE_ERROR(SVC "remote = other.example.com:993\n", 4,
	    "duplicate key 'remote' (first set on line 3)");
	EXPECT_ONE_ERROR(SVC "verify = yes\nverify = no\n", 5,
	    "duplicate key 'verify' (first set on line 4)");
	EXPECT_ONE_ERROR("[global]\nverify = yes\nverify = no\n" SVC, 3,
	    "duplicate key 'verify' (first set on line 2)");
}
END_TEST

/* Keys allowed only in a service section. */
static const char *const service_only[] = {
	"listen", "remote", "protocol", "tls", "server_name", "pin_sha256",
};

START_TEST(test_service_only_in_global)
{
	EXPECT_ONE_ERROR(fmt("[global]\n%s = x\n" SVC, service_only[_i]), 2,
	    fmt("%s is only allowed in a service section", service_only[_i]));
}
END_TEST

/* Keys allowed only in [global]. */
static const char *const global_only[] = {
	"user", "pid_file", "state_dir", "log_level", "max_sessions",
};

START_TEST(test_global_only_in_service)
{
	EXPECT_ONE_ERROR(fmt(SVC "%s = x\n", global_only[_i]), 4,
	    fmt("%s is only allowed in [global]", global_only[_i]));
}
END_TEST

/* Bad values in a service section, and a phrase of each message. */
static const struct {
	const char	*line;
	const char	*phrase;
} bad_values[] = {
	{ "protocol = imap4",
	    "invalid protocol 'imap4' (expected imap, pop3 or smtp)" },
	{ "protocol = IMAP", "expected imap, pop3 or smtp" },
	{ "tls = ssl", "invalid tls 'ssl' (expected implicit or starttls)" },
	{ "verify = true", "invalid verify 'true' (expected yes or no)" },
	{ "verify = Yes", "expected yes or no" },
	{ "allow_remote_clients = 1", "expected yes or no" },
	{ "min_tls = 1.1", "invalid min_tls '1.1' (expected 1.2 or 1.3)" },
	{ "connect_timeout = 0", "invalid connect_timeout '0' (expected a "
	    "number from 1 to 86400)" },
	{ "handshake_timeout = 86401", "from 1 to 86400" },
	{ "idle_timeout = abc", "from 1 to 86400" },
	{ "shutdown_timeout = -1", "from 1 to 86400" },
	{ "connect_timeout = 1.5", "from 1 to 86400" },
	{ "connect_timeout = 99999999999999999999999", "from 1 to 86400" },
	{ "connect_timeout = 10s", "from 1 to 86400" },
	{ "pool_size = 65", "invalid pool_size '65' (expected a number from "
	    "0 to 64)" },
	{ "pool_size = x", "from 0 to 64" },
	{ "pool_max_age = 0", "from 1 to 86400" },
	{ "login_timeout = 86401", "invalid login_timeout '86401' (expected "
	    "a number from 0 to 86400)" },
	{ "ca_file = certs/ca.pem", "invalid ca_file 'certs/ca.pem' "
	    "(expected an absolute path)" },
	{ "client_cert = c.pem", "expected an absolute path" },
	{ "client_key = c.key", "expected an absolute path" },
	{ "server_name = bad..name", "invalid server_name 'bad..name' "
	    "(expected a host name)" },
	{ "server_name = a b", "expected a host name" },
	{ "local_tls = yes", "expected none, starttls or implicit" },
	{ "local_cert = x.pem", "expected an absolute path" },
	{ "ehlo_name = -x", "expected a host name" },
};

START_TEST(test_bad_values)
{
	EXPECT_ONE_ERROR(fmt(SVC "%s\n", bad_values[_i].line), 4,
	    bad_values[_i].phrase);
}
END_TEST

/* Bad values in [global], and a phrase of each message. */
static const struct {
	const char	*line;
	const char	*phrase;
} bad_global_values[] = {
	{ "log_level = verbose", "invalid log_level 'verbose' (expected "
	    "error, warn, info or debug)" },
	{ "max_sessions = 0", "expected a number from 1 to 1000000" },
	{ "max_sessions = 1000001", "from 1 to 1000000" },
	{ "user = -root", "invalid user '-root'" },
	{ "user = a b", "invalid user" },
	{ "user = aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaa", "invalid user" },
	{ "pid_file = run/x.pid", "expected an absolute path" },
	{ "verify = maybe", "expected yes or no" },
	{ "idle_timeout = 0", "from 1 to 86400" },
	{ "max_sessions_per_client = 1000001", "invalid "
	    "max_sessions_per_client '1000001' (expected a number from 0 to "
	    "1000000)" },
	{ "state_dir = var/lib", "invalid state_dir 'var/lib' (expected an "
	    "absolute path)" },
	{ "control_socket = run/ctl", "invalid control_socket 'run/ctl' "
	    "(expected an absolute path or none)" },
	{ "control_socket = /xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	    "control_socket is too long for a socket (at most 107 characters)" },
	{ "metrics_listen = localhost:9101", "invalid metrics_listen "
	    "'localhost:9101'" },
	{ "metrics_listen = 192.0.2.1:9101", "metrics_listen 192.0.2.1:9101 is "
	    "not loopback; set allow_remote_clients = yes in [global]" },
	{ "metrics_listen = 127.0.0.1:1143", "metrics_listen 127.0.0.1:1143 is "
	    "already a listen address on line 4" },
};

START_TEST(test_bad_global_values)
{
	EXPECT_ONE_ERROR(fmt("[global]\n%s\n" SVC, bad_global_values[_i].line),
	    2, bad_global_values[_i].phrase);
}
END_TEST

START_TEST(test_path_too_long)
{
	char	path[CONFIG_PATH_MAX + 1];

	memset(path, 'p', sizeof(path));
	path[0] = '/';
	path[CONFIG_PATH_MAX] = '\0';
	EXPECT_ONE_ERROR(fmt(SVC "ca_file = %s\n", path), 4,
	    "ca_file is too long (at most 1023 characters)");
	path[CONFIG_PATH_MAX - 1] = '\0';
	config_free(load(fmt(SVC "ca_file = %s\n", path)));
	ck_assert_msg(errs.count == 0, "errors:%s", dump_errors());
}
END_TEST

START_TEST(test_multiple_errors)
{
	struct config	*cfg;

	cfg = load("[global]\n"				/* 1 */
	    "log_level = loud\n"			/* 2 */
	    "listen = 127.0.0.1:1\n"			/* 3 */
	    "[a]\n"					/* 4 */
	    "listen = 127.0.0.1:1143\n"			/* 5 */
	    "remote = mail.example.com:993\n"		/* 6 */
	    "verify = perhaps\n"			/* 7 */
	    "bogus = 1\n"				/* 8 */
	    "[b]\n"					/* 9 */
	    "listen = 127.0.0.1:1143\n"			/* 10 */
	    "remote = mail.example.com\n"		/* 11 */
	    "[c]\n"					/* 12 */
	    "user = root\n"				/* 13 */
	    "just some words\n");			/* 14 */
	ck_assert_ptr_null(cfg);
	ASSERT_ERROR(2, "invalid log_level 'loud'");
	ASSERT_ERROR(3, "listen is only allowed in a service section");
	ASSERT_ERROR(7, "expected yes or no");
	ASSERT_ERROR(8, "unknown key 'bogus'");
	ASSERT_ERROR(10, "already used on line 5");
	ASSERT_ERROR(11, "missing ':PORT'");
	ASSERT_ERROR(13, "user is only allowed in [global]");
	ASSERT_ERROR(14, "expected 'key = value'");
	ASSERT_ERROR(12, "service 'c': missing listen");
	ASSERT_ERROR(12, "service 'c': missing remote");
	ck_assert_msg(errs.count == 10, "got %d errors:%s", errs.count,
	    dump_errors());
}
END_TEST

START_TEST(test_too_many_errors)
{
	char	text[8192];
	size_t	n;
	int	i;

	n = (size_t)snprintf(text, sizeof(text), "%s", SVC);
	for (i = 0; i < 150; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n, "junk\n");
	ck_assert_ptr_null(load(text));
	ck_assert_int_eq(errs.count, 101);
	ASSERT_ERROR(4, "expected 'key = value'");
	ASSERT_ERROR(103, "expected 'key = value'");
	ASSERT_ERROR(0, "too many errors");
}
END_TEST

START_TEST(test_errors_appended)
{
	config_errors_add(&errs, "earlier %d", 1);
	ck_assert_ptr_null(load("[s]\n"));
	ck_assert_int_eq(errs.count, 3);
	ck_assert_str_eq(errs.lines[0], "earlier 1");
	/* A NULL error list is allowed. */
	snprintf(conf_path, sizeof(conf_path), "/nonexistent");
	ck_assert_ptr_null(config_load(conf_path, NULL));
	config_errors_add(NULL, "ignored");
	config_errors_clear(NULL);
}
END_TEST

START_TEST(test_errors_sanitized)
{
	config_errors_add(&errs, "a\tb%cc\x7f", 0x1b);
	ck_assert_str_eq(errs.lines[0], "a?b?c?");
	config_errors_clear(&errs);
	EXPECT_ONE_ERROR(SVC "k\x01y = v\n", 4, "unknown key 'k?y'");
	config_errors_clear(&errs);
	ck_assert_int_eq(errs.count, 0);
	config_free(NULL);
}
END_TEST

/* ---- TLS toward the mail client ----------------------------------------- */

START_TEST(test_local_tls_keys)
{
	struct config			*cfg;
	const struct service_config	*s;

	LOAD_OK(cfg, "[global]\nstate_dir = /var/lib/x\n" SVC
	    "local_tls = starttls\n"
	    "local_cert = /etc/mailtlsd/local.pem\n"
	    "local_key = /etc/mailtlsd/local.key\n"
	    "[t]\nlisten = 127.0.0.1:1144\nremote = mail.example.com:993\n"
	    "local_tls = implicit\n"
	    "[u]\nlisten = 127.0.0.1:1145\nremote = mail.example.com:993\n");
	ck_assert_str_eq(cfg->state_dir, "/var/lib/x");
	s = &cfg->services[0];
	ck_assert_int_eq(s->local_tls, LOCAL_TLS_STARTTLS);
	ck_assert_str_eq(s->local_cert, "/etc/mailtlsd/local.pem");
	ck_assert_str_eq(s->local_key, "/etc/mailtlsd/local.key");
	s = &cfg->services[1];
	ck_assert_int_eq(s->local_tls, LOCAL_TLS_IMPLICIT);
	ck_assert_str_eq(s->local_cert, "");
	ck_assert_str_eq(s->local_key, "");
	ck_assert_int_eq(cfg->services[2].local_tls, LOCAL_TLS_NONE);
	config_free(cfg);

	/* From [global], overridden by a service. */
	LOAD_OK(cfg, "[global]\nlocal_tls = implicit\n"
	    "local_cert = /g/l.pem\nlocal_key = /g/l.key\n" SVC
	    "[t]\nlisten = 127.0.0.1:1144\nremote = mail.example.com:993\n"
	    "local_tls = none\n");
	ck_assert_int_eq(cfg->services[0].local_tls, LOCAL_TLS_IMPLICIT);
	ck_assert_str_eq(cfg->services[0].local_cert, "/g/l.pem");
	ck_assert_str_eq(cfg->services[0].local_key, "/g/l.key");
	ck_assert_int_eq(cfg->services[1].local_tls, LOCAL_TLS_NONE);
	config_free(cfg);
}
END_TEST

/* Settings that others leave without effect load, with a warning. */
START_TEST(test_unused_settings_warn)
{
	struct config	*cfg;

	cfg = load(SVC "local_cert = /s/c.pem\nlocal_key = /s/c.key\n"
	    "pool_max_age = 60\nverify = no\nca_file = /s/ca.pem\n");
	ck_assert_msg(cfg != NULL, "%s", dump_errors());
	ck_assert_int_eq(cfg->warnings.count, 3);
	ck_assert_ptr_nonnull(strstr(cfg->warnings.lines[0],
	    ":4: local_cert has no effect: local_tls is none"));
	ck_assert_ptr_nonnull(strstr(cfg->warnings.lines[1],
	    ":6: pool_max_age has no effect: pool_size is 0"));
	ck_assert_ptr_nonnull(strstr(cfg->warnings.lines[2],
	    ":8: ca_file has no effect: verify is no"));
	config_free(cfg);

	/* The same from [global]: a default, not a mistake. */
	cfg = load("[global]\npool_max_age = 60\nverify = no\n"
	    "ca_file = /s/ca.pem\n" SVC);
	ck_assert_msg(cfg != NULL, "%s", dump_errors());
	ck_assert_int_eq(cfg->warnings.count, 0);
	config_free(cfg);

	/* Pools that take every session leave other clients no room. */
	cfg = load("[global]\nmax_sessions = 2\n" SVC "pool_size = 2\n"
	    "[t]\nlisten = 127.0.0.1:1144\nremote = mail.example.com:993\n");
	ck_assert_msg(cfg != NULL, "%s", dump_errors());
	ck_assert_int_eq(cfg->warnings.count, 1);
	ck_assert_ptr_nonnull(strstr(cfg->warnings.lines[0], ":2: the pools "
	    "hold 2 connections, max_sessions is 2"));
	config_free(cfg);
	cfg = load("[global]\nmax_sessions = 3\n" SVC "pool_size = 2\n");
	ck_assert_int_eq(cfg->warnings.count, 0);
	config_free(cfg);
}
END_TEST

START_TEST(test_local_pair)
{
	struct config	*cfg;

	EXPECT_ONE_ERROR(SVC "local_cert = /s/l.pem\n", 4,
	    "local_cert is set but local_key is not");
	EXPECT_ONE_ERROR(SVC "local_key = /s/l.key\n", 4,
	    "local_key is set but local_cert is not");
	/* A half pair in [global] is reported once, on the global line. */
	EXPECT_ONE_ERROR("[global]\nlocal_key = /g/l.key\n" SVC
	    "[t]\nlisten = 127.0.0.1:1144\nremote = mail.example.com:993\n",
	    2, "local_key is set but local_cert is not");
	LOAD_OK(cfg, "[global]\nlocal_key = /g/l.key\n" SVC
	    "local_cert = /s/l.pem\n");
	config_free(cfg);
	/* The two pairs are independent. */
	EXPECT_ONE_ERROR(SVC "client_cert = /s/c.pem\nclient_key = /s/c.key\n"
	    "local_cert = /s/l.pem\n", 6,
	    "local_cert is set but local_key is not");
}
END_TEST

START_TEST(test_local_bad_values)
{
	EXPECT_ONE_ERROR(SVC "local_tls = yes\n", 4,
	    "expected none, starttls or implicit");
	EXPECT_ONE_ERROR(SVC "local_cert = l.pem\n", 4,
	    "expected an absolute path");
	EXPECT_ONE_ERROR("[global]\nstate_dir = var/lib\n" SVC, 2,
	    "expected an absolute path");
	EXPECT_ONE_ERROR(SVC "state_dir = /var/lib/x\n", 4, "state_dir");
}
END_TEST

/* Remote ports whose default is STARTTLS. */
static const uint16_t starttls_ports[] = { 143, 110, 587, 25, 26 };

START_TEST(test_starttls_ports)
{
	struct config	*cfg;

	/* The plain ports default to STARTTLS and to their protocol. */
	LOAD_OK(cfg, fmt("[s]\nlisten = 127.0.0.1:1143\n"
	    "remote = mail.example.com:%u\n", (unsigned)starttls_ports[_i]));
	ck_assert_int_eq(cfg->services[0].tls, TLS_MODE_STARTTLS);
	ck_assert_int_eq(cfg->services[0].protocol,
	    config_default_protocol(starttls_ports[_i]));
	config_free(cfg);
	LOAD_OK(cfg, fmt("[s]\nlisten = 127.0.0.1:1143\n"
	    "remote = mail.example.com:%u\ntls = implicit\n",
	    (unsigned)starttls_ports[_i]));
	ck_assert_int_eq(cfg->services[0].tls, TLS_MODE_IMPLICIT);
	config_free(cfg);
}
END_TEST

START_TEST(test_starttls_keys)
{
	struct config	*cfg;

	LOAD_OK(cfg, SVC "tls = starttls\nehlo_name = client.example.com\n");
	ck_assert_int_eq(cfg->services[0].tls, TLS_MODE_STARTTLS);
	ck_assert_str_eq(cfg->services[0].ehlo_name, "client.example.com");
	config_free(cfg);
}
END_TEST

START_TEST(test_min_tls_13)
{
#if defined(MBEDTLS_SSL_PROTO_TLS1_3)
	struct config	*cfg;

	LOAD_OK(cfg, SVC "min_tls = 1.3\n");
	ck_assert_int_eq(cfg->services[0].min_tls, TLS_VERSION_1_3);
	config_free(cfg);
#else
	EXPECT_ONE_ERROR(SVC "min_tls = 1.3\n", 4, "min_tls = 1.3 needs "
	    "mbedTLS 3 with TLS 1.3; this build has mbedTLS "
	    MBEDTLS_VERSION_STRING);
#endif
}
END_TEST

/* ---- Lexical details ----------------------------------------------------- */

START_TEST(test_comments)
{
	struct config	*cfg;

	cfg = load("# a comment\n"
	    "; another\n"
	    "   # indented\n"
	    "\t; indented with a tab\n"
	    "[global]   # header comment\n"
	    "pid_file = /run/a#b;c.pid   ; kept: no blank before # or ;\n"
	    "log_level = debug# no blank before '#': part of the value\n"
	    "[s]\t; service\n"
	    "listen   = 127.0.0.1:143   # ADDR:PORT\n"
	    "  remote=mail.runbox.com:993\t# trailing, after a tab\n"
	    "   \t  \n"
	    "\n");
	ck_assert_ptr_null(cfg);
	ASSERT_ERROR(7, "invalid log_level 'debug# no blank before");
	ck_assert_int_eq(errs.count, 1);
	config_errors_clear(&errs);

	LOAD_OK(cfg, "[global]   # header comment\n"
	    "pid_file = /run/a#b;c.pid   ; a comment\n"
	    "[s]\t; service\n"
	    "listen   = 127.0.0.1:143   # ADDR:PORT\n"
	    "  remote=mail.runbox.com:993\t# trailing, after a tab\n");
	ck_assert_str_eq(cfg->pid_file, "/run/a#b;c.pid");
	ck_assert_str_eq(cfg->services[0].listen[0].text, "127.0.0.1:143");
	ck_assert_str_eq(cfg->services[0].remote_host, "mail.runbox.com");
	config_free(cfg);
}
END_TEST

START_TEST(test_crlf)
{
	struct config	*cfg;

	LOAD_OK(cfg, "\xef\xbb\xbf# written on Windows\r\n"
	    "[global]\r\n"
	    "pid_file = /run/x.pid\r\n"
	    "\r\n"
	    "[s]  # comment\r\n"
	    "listen = 127.0.0.1:1143\r\n"
	    "remote = mail.example.com:993\r\n"
	    "server_name = imap.example.com\r\n"
	    "verify = yes");
	ck_assert_str_eq(cfg->pid_file, "/run/x.pid");
	ck_assert_str_eq(cfg->services[0].server_name, "imap.example.com");
	ck_assert_int_eq(cfg->services[0].line, 5);
	ck_assert_int_eq(cfg->services[0].verify, 1);
	config_free(cfg);
	EXPECT_ONE_ERROR("[s]\r\nlisten = 127.0.0.1:1143\r\n"
	    "remote = mail.example.com:993\r\nfoo = 1\r\n", 4,
	    "unknown key 'foo'");
}
END_TEST

START_TEST(test_long_line)
{
	static char	text[3 * 8192];
	struct config	*cfg;
	size_t		n;

	n = (size_t)snprintf(text, sizeof(text), "%sca_file = /", SVC);
	memset(text + n, 'a', 5000);
	n += 5000;
	n += (size_t)snprintf(text + n, sizeof(text) - n, "\nfoo = 1\n");
	cfg = load(text);
	ck_assert_ptr_null(cfg);
	ck_assert_int_eq(errs.count, 2);
	ASSERT_ERROR(4, "line too long (more than 4096 characters)");
	ASSERT_ERROR(5, "unknown key 'foo'");
	config_errors_clear(&errs);

	/* 4096 characters is still a line; a CR after it does not count. */
	n = (size_t)snprintf(text, sizeof(text), "%sfoo = ", SVC);
	memset(text + n, 'b', 4096 - 6);
	n += 4096 - 6;
	n += (size_t)snprintf(text + n, sizeof(text) - n, "\r\n");
	EXPECT_ONE_ERROR(text, 4, "unknown key 'foo'");
	text[n - 2] = 'b';
	EXPECT_ONE_ERROR(text, 4, "line too long");
}
END_TEST

START_TEST(test_nul_byte)
{
	static const char	text[] = SVC "verify = y\0es\nfoo = 1\n";

	ck_assert_ptr_null(load_len(text, sizeof(text) - 1));
	ck_assert_int_eq(errs.count, 2);
	ASSERT_ERROR(4, "NUL byte");
	ASSERT_ERROR(5, "unknown key 'foo'");
}
END_TEST

START_TEST(test_sample_config)
{
	struct config	*cfg;

	snprintf(conf_path, sizeof(conf_path), "conf/mailtlsd.conf");
	cfg = config_load(conf_path, &errs);
	ck_assert_msg(cfg != NULL && errs.count == 0,
	    "conf/mailtlsd.conf (run from the top of the tree) did not load;"
	    " errors:%s", dump_errors());
	ck_assert_int_ge(cfg->n_services, 1);
	config_free(cfg);
}
END_TEST

/* Add a test case of the given tests to s. */
static TCase *
add_tcase(Suite *s, const char *name)
{
	TCase	*tc = tcase_create(name);

	tcase_add_checked_fixture(tc, setup, teardown);
	suite_add_tcase(s, tc);
	return tc;
}

#define NELEM(a)	((int)(sizeof(a) / sizeof((a)[0])))

/* The config suite. */
/* ---- [oauth2:NAME] ------------------------------------------------------- */

#define OA_IMAP	"[imap]\nlisten = 127.0.0.1:1993\n" \
		"remote = outlook.office365.com:993\noauth2 = m\n"
#define OA_SMTP	"[smtp]\nlisten = 127.0.0.1:1587\n" \
		"remote = smtp.office365.com:587\noauth2 = m\n"
#define OA_POP3	"[pop]\nlisten = 127.0.0.1:1995\n" \
		"remote = outlook.office365.com:995\noauth2 = m\n"

START_TEST(test_oauth2_microsoft_defaults)
{
	struct config			*cfg;
	const struct oauth2_config	*oa;

	LOAD_OK(cfg, "[oauth2:m]\nprovider = microsoft\nclient_id = abc\n"
	    OA_IMAP OA_SMTP);
	ck_assert_int_eq(cfg->n_oauth2, 1);
	oa = config_find_oauth2(cfg, "m");
	ck_assert_ptr_nonnull(oa);
	ck_assert_ptr_null(config_find_oauth2(cfg, "x"));
	ck_assert_int_eq(oa->flow, OAUTH2_FLOW_DEVICE);
	ck_assert_str_eq(oa->tenant, "common");
	ck_assert_str_eq(oa->token_url,
	    "https://login.microsoftonline.com/common/oauth2/v2.0/token");
	ck_assert_str_eq(oa->device_url,
	    "https://login.microsoftonline.com/common/oauth2/v2.0/devicecode");
	/* The union of what the two services need, and a refresh token. */
	ck_assert_str_eq(oa->scope,
	    "https://outlook.office.com/IMAP.AccessAsUser.All "
	    "https://outlook.office.com/SMTP.Send offline_access");
	ck_assert_str_eq(oa->ca_file, CONFIG_DEFAULT_CA_FILE);
	ck_assert_str_eq(oa->redirect_listen.text, "127.0.0.1:8400");
	ck_assert_uint_eq(oa->http_timeout, 30);
	ck_assert_uint_eq(oa->kdf_memory, 64 * 1024);
	ck_assert_uint_eq(oa->kdf_passes, 3);
	ck_assert_str_eq(cfg->services[0].oauth2, "m");
	config_free(cfg);
}
END_TEST

START_TEST(test_oauth2_keys)
{
	struct config			*cfg;
	const struct oauth2_config	*oa;

	LOAD_OK(cfg, "[global]\nca_file = /etc/x.pem\n"
	    "[oauth2:m]\nprovider = microsoft\nclient_id = abc\n"
	    "tenant = contoso.onmicrosoft.com\nflow = client_credentials\n"
	    "client_secret_file = /etc/mailtlsd/m.secret\n"
	    "http_timeout = 5\nkdf_memory = 8\nkdf_passes = 1\n"
	    "token_url = https://127.0.0.1:9999/token\n"
	    OA_IMAP OA_POP3);
	oa = config_find_oauth2(cfg, "m");
	ck_assert_str_eq(oa->tenant, "contoso.onmicrosoft.com");
	ck_assert_str_eq(oa->token_url, "https://127.0.0.1:9999/token");
	ck_assert_str_eq(oa->authorize_url, "https://login.microsoftonline"
	    ".com/contoso.onmicrosoft.com/oauth2/v2.0/authorize");
	ck_assert_str_eq(oa->scope, "https://outlook.office365.com/.default");
	ck_assert_str_eq(oa->client_secret_file, "/etc/mailtlsd/m.secret");
	ck_assert_str_eq(oa->ca_file, "/etc/x.pem");
	ck_assert_uint_eq(oa->http_timeout, 5);
	ck_assert_uint_eq(oa->kdf_memory, 8 * 1024);
	ck_assert_uint_eq(oa->kdf_passes, 1);
	config_free(cfg);

	LOAD_OK(cfg, "[oauth2:g]\nprovider = google\nclient_id = abc\n"
	    "client_secret = s3cret\nredirect_listen = [::1]:8080\n"
	    "[imap]\nlisten = 127.0.0.1:1993\nremote = imap.gmail.com:993\n"
	    "oauth2 = g\n");
	oa = config_find_oauth2(cfg, "g");
	ck_assert_int_eq(oa->flow, OAUTH2_FLOW_BROWSER);
	ck_assert_str_eq(oa->scope, "https://mail.google.com/");
	ck_assert_str_eq(oa->client_secret, "s3cret");
	ck_assert_str_eq(oa->token_url, "https://oauth2.googleapis.com/token");
	ck_assert_str_eq(oa->redirect_listen.text, "[::1]:8080");
	config_free(cfg);

	LOAD_OK(cfg, "[oauth2:x]\nprovider = generic\nclient_id = abc\n"
	    "flow = device\nscope = mail offline_access\n"
	    "device_url = https://idp/device\ntoken_url = https://idp/token\n"
	    "[imap]\nlisten = 127.0.0.1:1993\nremote = imap.example.com:993\n"
	    "oauth2 = x\n");
	oa = config_find_oauth2(cfg, "x");
	ck_assert_str_eq(oa->scope, "mail offline_access");
	ck_assert_str_eq(oa->authorize_url, "");
	config_free(cfg);
}
END_TEST

/* A section and the line each case's error is on. */
static const struct {
	const char	*text;
	int		 line;
	const char	*phrase;
} oauth2_bad[] = {
	{ "[oauth2:g]\nprovider = google\nclient_id = a\nflow = device\n"
	  "client_secret = s\n", 4, "Google's device flow refuses" },
	{ "[oauth2:g]\nprovider = google\nclient_id = a\n", 1,
	  "needs the app's secret" },
	{ "[oauth2:g]\nprovider = microsoft\nclient_id = a\n"
	  "flow = client_credentials\ntenant = x.example\n", 1,
	  "needs the app's secret" },
	{ "[oauth2:g]\nprovider = microsoft\nclient_id = a\n"
	  "flow = client_credentials\nclient_secret = s\n", 4,
	  "tenant's ID or domain" },
	{ "[oauth2:g]\nprovider = microsoft\n", 1, "missing client_id" },
	{ "[oauth2:g]\nclient_id = a\n", 1, "missing provider" },
	{ "[oauth2:g]\nprovider = yahoo\nclient_id = a\n", 2,
	  "invalid provider 'yahoo'" },
	{ "[oauth2:g]\nprovider = microsoft\nclient_id = a\nflow = magic\n",
	  4, "invalid flow 'magic'" },
	{ "[oauth2:g]\nprovider = microsoft\nclient_id = a\n"
	  "token_url = http://idp/token\n", 4, "expected an https:// URL" },
	{ "[oauth2:g]\nprovider = microsoft\nclient_id = a\n"
	  "flow = browser\nredirect_listen = 192.0.2.1:8400\n", 5,
	  "is not loopback" },
	{ "[oauth2:g]\nprovider = microsoft\nclient_id = a\n"
	  "kdf_memory = 4\n", 4, "expected a number from 8 to 1024" },
	{ "[oauth2:g]\nprovider = microsoft\nclient_id = a\n"
	  "listen = 127.0.0.1:1\n", 4, "unknown key 'listen' in an" },
	{ "[oauth2:g]\nprovider = generic\nclient_id = a\nflow = device\n"
	  "scope = s\ntoken_url = https://idp/t\n", 1, "needs device_url" },
	{ "[oauth2:g]\nprovider = generic\nclient_id = a\nflow = browser\n"
	  "device_url = https://idp/d\ntoken_url = https://idp/t\n", 1,
	  "needs scope" },
	{ "[oauth2:g]\nprovider = google\nclient_id = a\ntenant = t\n"
	  "client_secret = s\n", 4, "tenant is only for" },
	{ "[oauth2:g]\nprovider = microsoft\nclient_id = a\n"
	  "client_secret = s\nclient_secret_file = /s\n", 4, "not both" },
	{ "[oauth2:g]\nprovider = microsoft\nclient_id = a\n[oauth2:g]\n",
	  4, "duplicate [oauth2:g]" },
	{ "[oauth2:a/b]\n", 1, "invalid oauth2 section name" },
};

START_TEST(test_oauth2_bad)
{
	char	text[2048];

	snprintf(text, sizeof(text), "%s[imap]\nlisten = 127.0.0.1:1993\n"
	    "remote = imap.example.com:993\noauth2 = g\n", oauth2_bad[_i].text);
	ck_assert_ptr_null(load(text));
	ASSERT_ERROR(oauth2_bad[_i].line, oauth2_bad[_i].phrase);
}
END_TEST

START_TEST(test_oauth2_links)
{
	struct config	*cfg;

	/* A service naming no section. */
	EXPECT_ONE_ERROR("[imap]\nlisten = 127.0.0.1:1993\n"
	    "remote = imap.example.com:993\noauth2 = nope\n", 4,
	    "no [oauth2:nope] section");
	/* A section no service names: a warning. */
	cfg = load("[oauth2:m]\nprovider = microsoft\nclient_id = a\n"
	    "[imap]\nlisten = 127.0.0.1:1993\nremote = imap.example.com:993\n");
	ck_assert_ptr_nonnull(cfg);
	ck_assert_int_eq(cfg->warnings.count, 1);
	ck_assert_ptr_nonnull(strstr(cfg->warnings.lines[0], "no service "
	    "sets oauth2 = m"));
	config_free(cfg);
	/* oauth2 sections alone are no service. */
	ck_assert_ptr_null(load("[oauth2:m]\nprovider = microsoft\n"
	    "client_id = a\n"));
	ASSERT_ERROR(0, "no service defined");
}
END_TEST

/* An inline client_secret must be in a file only its owner reads. */
START_TEST(test_oauth2_inline_secret_mode)
{
	static const char text[] = "[oauth2:g]\nprovider = google\n"
	    "client_id = a\nclient_secret = s\n[imap]\n"
	    "listen = 127.0.0.1:1993\nremote = imap.gmail.com:993\n"
	    "oauth2 = g\n";
	struct config	*cfg;

	write_conf_len(text, strlen(text));
	ck_assert_int_eq(chmod(conf_path, 0644), 0);
	cfg = config_load(conf_path, &errs);
	ck_assert_ptr_null(cfg);
	ASSERT_ERROR(4, "other users can read (mode 0644)");
	config_errors_clear(&errs);
	ck_assert_int_eq(chmod(conf_path, 0600), 0);
	cfg = config_load(conf_path, &errs);
	unlink(conf_path);
	ck_assert_msg(cfg != NULL, "errors:%s", dump_errors());
	config_free(cfg);
}
END_TEST

Suite *
config_suite(void)
{
	Suite	*s = suite_create("config");
	TCase	*tc;

	tc = add_tcase(s, "defaults");
	tcase_add_test(tc, test_minimal_defaults);
	tcase_add_loop_test(tc, test_port_defaults_implicit, 0,
	    NELEM(implicit_ports));
	tcase_add_test(tc, test_default_functions);
	tcase_add_test(tc, test_explicit_protocol_and_tls);
	tcase_add_test(tc, test_every_service_key);
	tcase_add_test(tc, test_global_keys);
	tcase_add_test(tc, test_monitoring_keys);

	tc = add_tcase(s, "global");
	tcase_add_test(tc, test_global_defaults_before);
	tcase_add_test(tc, test_global_defaults_after);
	tcase_add_test(tc, test_global_defaults_overridden);
	tcase_add_test(tc, test_global_allow_remote_clients);
	tcase_add_test(tc, test_global_client_pair);

	tc = add_tcase(s, "listen");
	tcase_add_test(tc, test_parse_listen_good);
	tcase_add_loop_test(tc, test_parse_listen_bad, 0, NELEM(bad_listen));
	tcase_add_test(tc, test_listen_ipv6_in_file);
	tcase_add_test(tc, test_listen_errors_in_file);
	tcase_add_test(tc, test_listen_too_many);

	tc = add_tcase(s, "remote");
	tcase_add_loop_test(tc, test_parse_remote_good, 0, NELEM(good_remote));
	tcase_add_loop_test(tc, test_parse_remote_bad, 0, NELEM(bad_remote));
	tcase_add_test(tc, test_parse_remote_lengths);
	tcase_add_test(tc, test_remote_in_file);
	tcase_add_test(tc, test_pins);

	tc = add_tcase(s, "errors");
	tcase_add_test(tc, test_cannot_open);
	tcase_add_test(tc, test_not_regular);
	tcase_add_test(tc, test_no_service);
	tcase_add_test(tc, test_missing_keys);
	tcase_add_test(tc, test_sections);
	tcase_add_test(tc, test_key_errors);
	tcase_add_loop_test(tc, test_service_only_in_global, 0,
	    NELEM(service_only));
	tcase_add_loop_test(tc, test_global_only_in_service, 0,
	    NELEM(global_only));
	tcase_add_loop_test(tc, test_bad_values, 0, NELEM(bad_values));
	tcase_add_loop_test(tc, test_bad_global_values, 0,
	    NELEM(bad_global_values));
	tcase_add_test(tc, test_path_too_long);
	tcase_add_test(tc, test_multiple_errors);
	tcase_add_test(tc, test_too_many_errors);
	tcase_add_test(tc, test_errors_appended);
	tcase_add_test(tc, test_errors_sanitized);

	tc = add_tcase(s, "local_tls");
	tcase_add_test(tc, test_local_tls_keys);
	tcase_add_test(tc, test_local_pair);
	tcase_add_test(tc, test_unused_settings_warn);
	tcase_add_test(tc, test_local_bad_values);

	tc = add_tcase(s, "tls_keys");
	tcase_add_loop_test(tc, test_starttls_ports, 0,
	    NELEM(starttls_ports));
	tcase_add_test(tc, test_starttls_keys);
	tcase_add_test(tc, test_min_tls_13);

	tc = add_tcase(s, "lexical");
	tcase_add_test(tc, test_comments);
	tcase_add_test(tc, test_crlf);
	tcase_add_test(tc, test_long_line);
	tcase_add_test(tc, test_nul_byte);
	tcase_add_test(tc, test_sample_config);

	tc = add_tcase(s, "oauth2");
	tcase_add_test(tc, test_oauth2_microsoft_defaults);
	tcase_add_test(tc, test_oauth2_keys);
	tcase_add_loop_test(tc, test_oauth2_bad, 0, NELEM(oauth2_bad));
	tcase_add_test(tc, test_oauth2_links);
	tcase_add_test(tc, test_oauth2_inline_secret_mode);
	return s;
}
