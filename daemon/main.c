/*
 * main.c - mailtlsd's command line, start-up, privilege drop and
 * daemonizing.
 *
 * Start-up order: read the configuration; take the sockets systemd passed
 * and connect to its notification socket; bind every listen address and
 * load every certificate and key; detach (-d) and write pid_file; drop to
 * the configured user; only then report "ready" (and READY=1).
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <malloc.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include <event2/event.h>
#include <jansson.h>

#include "activation.h"
#include "config.h"
#include "control.h"
#include "http.h"
#include "localcert.h"
#include "log.h"
#include "notify.h"
#include "oauth2.h"
#include "pidfile.h"
#include "probe.h"
#include "runtime.h"
#include "service.h"
#include "tls.h"

#ifndef MAILTLSD_VERSION
#define MAILTLSD_VERSION "unknown"
#endif

/* What the command line asked for. */
struct options {
	const char	*config_path;
	const char	*probe;
	const char	*authorise;	/* -a SECTION */
	const char	*authorise_user;
	int		 detach;
	int		 foreground;
	int		 test_only;
	int		 status;	/* -s */
	int		 json;		/* -j */
	int		 verbose;
};

/* Print usage to f. */
static void
usage(FILE *f)
{
	fprintf(f, "usage: mailtlsd [-c FILE] [-f] [-d] [-t] [-p NAME] [-s [-j]] "
	    "[-v] [-V] [-h]\n"
	    "       mailtlsd [-c FILE] [-v] -a SECTION USER\n"
	    "  -c FILE  configuration file (default %s)\n"
	    "  -f       stay in the foreground, log to stderr (default)\n"
	    "  -d       detach and log to syslog; writes pid_file if set\n"
	    "  -t       check the configuration and exit\n"
	    "  -p NAME  probe a service (or all) and exit\n"
	    "  -s       print the running daemon's status (-j: as JSON)\n"
	    "  -a SECTION USER\n"
	    "           authorise USER with [oauth2:SECTION] in this terminal\n"
	    "  -v       more logging (repeatable)\n"
	    "  -V       print the version and exit\n"
	    "  -h       print this help and exit\n", CONFIG_DEFAULT_PATH);
}

/*
 * A relative -c path made absolute: -d changes to "/", and every reload
 * reads the file again.  Left as given if the directory is unknown.
 */
static const char *
absolute_path(const char *path)
{
	static char	abs[CONFIG_PATH_MAX];
	char		cwd[CONFIG_PATH_MAX];
	int		n;

	if (path[0] == '/' || getcwd(cwd, sizeof(cwd)) == NULL)
		return path;
	n = snprintf(abs, sizeof(abs), "%s/%s", cwd, path);
	return n > 0 && (size_t)n < sizeof(abs) ? abs : path;
}

/* Parse argv into opts; exits on -h, -V and errors. */
static void
parse_options(int argc, char **argv, struct options *opts)
{
	int	ch;

	memset(opts, 0, sizeof(*opts));
	opts->config_path = CONFIG_DEFAULT_PATH;
	while ((ch = getopt(argc, argv, "a:c:fdtp:sjvVh")) != -1) {
		switch (ch) {
		case 'a':
			opts->authorise = optarg;
			break;
		case 'c':
			opts->config_path = absolute_path(optarg);
			break;
		case 'f':
			opts->foreground = 1;
			break;
		case 'd':
			opts->detach = 1;
			break;
		case 't':
			opts->test_only = 1;
			break;
		case 'p':
			opts->probe = optarg;
			break;
		case 's':
			opts->status = 1;
			break;
		case 'j':
			opts->json = 1;
			break;
		case 'v':
			opts->verbose++;
			break;
		case 'V': {
			char	library[512];

			tls_library_describe(library, sizeof(library));
			printf("mailtlsd %s (mbedTLS %s)\n%s", MAILTLSD_VERSION,
			    tls_library_version(), library);
			exit(0);
		}
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (opts->authorise != NULL && optind == argc - 1)
		opts->authorise_user = argv[optind++];
	if (optind != argc || (opts->detach && opts->foreground) ||
	    (opts->probe != NULL && (opts->detach || opts->test_only)) ||
	    (opts->json && !opts->status) || (opts->status &&
	    (opts->detach || opts->foreground || opts->test_only ||
	    opts->probe != NULL)) ||
	    (opts->authorise != NULL && (opts->authorise_user == NULL ||
	    opts->probe != NULL || opts->detach || opts->foreground ||
	    opts->test_only || opts->status))) {
		usage(stderr);
		exit(2);
	}
}

/* Load the configuration, printing every error; NULL when invalid. */
static struct config *
load_config(const char *path)
{
	struct config_errors	 errs = { 0 };
	struct config		*cfg;
	int			 i;

	cfg = config_load(path, &errs);
	for (i = 0; i < errs.count; i++)
		fprintf(stderr, "%s\n", errs.lines[i]);
	config_errors_clear(&errs);
	for (i = 0; cfg != NULL && i < cfg->warnings.count; i++)
		log_warnx("%s", cfg->warnings.lines[i]);
	return cfg;
}

/* -t: the user to drop to must exist. */
static int
check_user(const struct config *cfg)
{
	if (cfg->user[0] == '\0' || getpwnam(cfg->user) != NULL)
		return 0;
	fprintf(stderr, "%s: user %s: no such user\n", cfg->path, cfg->user);
	return -1;
}

/* -t: every [oauth2:NAME] section can start (its client secret reads). */
static int
check_oauth2(const struct config *cfg)
{
	struct event_base	*base;
	struct oauth2		*o;
	char			 err[512];

	if (cfg->n_oauth2 == 0)
		return 0;
	if ((base = event_base_new()) == NULL) {
		log_errorx("out of memory");
		return -1;
	}
	o = oauth2_new(base, cfg, err, sizeof(err));
	if (o == NULL)
		log_errorx("%s: %s", cfg->path, err);
	oauth2_free(o);
	event_base_free(base);
	return o != NULL ? 0 : -1;
}

/* -t: also load every CA bundle, certificate and key. */
static int
check_services(const struct config *cfg)
{
	struct service_config	 sc;
	struct service		*svc;
	char			 err[512];
	int			 i, failed = 0;

	for (i = 0; i < cfg->n_services; i++) {
		sc = cfg->services[i];
		/* The generated local certificate is made (or checked) at
		 * start, in state_dir: -t writes nothing. */
		if (sc.local_tls != LOCAL_TLS_NONE && sc.local_cert[0] == '\0')
			sc.local_tls = LOCAL_TLS_NONE;
		if ((svc = service_new(&sc, err, sizeof(err))) == NULL) {
			fprintf(stderr, "%s:%d: [%s] %s\n", cfg->path, sc.line,
			    sc.name, err);
			failed = 1;
		}
		service_unref(svc);
	}
	return failed ? -1 : 0;
}

/* Drop root for user, after every socket is bound and key read. */
static int
drop_privileges(const char *user)
{
	struct passwd	*pw;

	if (user[0] == '\0')
		return 0;
	if ((pw = getpwnam(user)) == NULL) {
		log_errorx("user %s: no such user", user);
		return -1;
	}
	if (geteuid() != 0) {
		if (geteuid() == pw->pw_uid)
			return 0;
		log_errorx("user = %s needs mailtlsd to start as root", user);
		return -1;
	}
	if (initgroups(pw->pw_name, pw->pw_gid) != 0 ||
	    setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0) {
		log_error("cannot drop privileges to %s", user);
		return -1;
	}
	if (setuid(0) == 0) {
		log_errorx("privileges could be regained after dropping them");
		return -1;
	}
	log_info("running as user %s", user);
	return 0;
}

/*
 * -a: authorise an account in the terminal, as the daemon's user so that
 * the token files belong to it.
 */
static int
authorise(const struct config *cfg, const struct options *opts)
{
	struct passwd	*pw;

	if (cfg->user[0] != '\0' && geteuid() != 0 &&
	    ((pw = getpwnam(cfg->user)) == NULL || pw->pw_uid != geteuid())) {
		fprintf(stderr, "mailtlsd: -a runs as root or as %s: the token "
		    "files must belong to the daemon's user\n", cfg->user);
		return 1;
	}
	if (drop_privileges(cfg->user) != 0)
		return 1;
	if (geteuid() == 0 && cfg->user[0] == '\0')
		log_warnx("%s: no user =: the token files will belong to root, "
		    "and only a daemon running as root can read them",
		    cfg->path);
	return oauth2_authorise_cli(cfg, opts->authorise,
	    opts->authorise_user);
}

/*
 * The process that ran "mailtlsd -d": wait until the daemon reports that
 * it started (a byte on the pipe) or failed (end of file), and exit so.
 */
static void __attribute__((noreturn))
detach_wait(int fd)
{
	ssize_t	n;
	char	c;

	while ((n = read(fd, &c, 1)) < 0 && errno == EINTR)
		;
	if (n != 1)
		fprintf(stderr, "mailtlsd: failed to start; see the system "
		    "log\n");
	_exit(n == 1 ? 0 : 1);
}

/*
 * Classic double fork; the grandchild returns with stdio on /dev/null and
 * *ready_fd to pass to detach_done() once it serves.
 */
static int
detach(struct runtime *rt, int *ready_fd)
{
	pid_t	pid;
	int	fd, p[2];

	if (pipe(p) != 0)
		return -1;
	if ((pid = fork()) < 0)
		return -1;
	if (pid > 0) {
		close(p[1]);
		detach_wait(p[0]);
	}
	close(p[0]);
	*ready_fd = p[1];
	if (setsid() < 0)
		return -1;
	if ((pid = fork()) < 0)
		return -1;
	if (pid > 0)
		_exit(0);
	if (chdir("/") != 0)
		return -1;
	umask(022);
	if ((fd = open("/dev/null", O_RDWR)) >= 0) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		if (fd > STDERR_FILENO)
			close(fd);
	}
	if (event_reinit(runtime_base(rt)) != 0)
		return -1;
	return tls_reseed();
}

/* Let the process that ran "mailtlsd -d" exit 0. */
static void
detach_done(int fd)
{
	char	c = 0;

	if (fd < 0)
		return;
	if (write(fd, &c, 1) != 1)
		log_warn("cannot report the start to the parent process");
	close(fd);
}

/* Detach (-d) and write pid_file; -1 after logging why. */
static int
daemonize(struct runtime *rt, int *ready_fd)
{
	char	err[CONFIG_PATH_MAX + 128];

	log_init(LOG_TO_SYSLOG, log_level_raise(runtime_config(rt)->log_level,
	    runtime_verbose(rt)));
	if (detach(rt, ready_fd) != 0) {
		log_error("cannot detach");
		return -1;
	}
	if (pidfile_write(runtime_config(rt)->pid_file, err, sizeof(err)) != 0) {
		log_errorx("%s", err);
		return -1;
	}
	return 0;
}

/* Start the daemon on cfg and run it; the exit status. */
static int
run_daemon(struct config *cfg, const struct options *opts)
{
	struct runtime	*rt;
	char		 outdated[300];
	int		 status = 1, ready_fd = -1;

	log_info("version %s starting with mbedTLS %s", MAILTLSD_VERSION,
	    tls_library_version());
	if (tls_library_outdated(0, outdated, sizeof(outdated)))
		log_warnx("%s", outdated);
	/* systemd sets INVOCATION_ID; its unit names the user itself. */
	if (cfg->user[0] == '\0' && geteuid() == 0 &&
	    getenv("INVOCATION_ID") == NULL)
		log_warnx("%s: running as root without user =: sessions with "
		    "mail clients and servers are handled with root's "
		    "rights; set user = mailtlsd in [global]", cfg->path);
	activation_init();
	notify_init();
	if (!opts->detach && cfg->pid_file[0] != '\0')
		log_warnx("%s: pid_file has no effect without -d: not written",
		    cfg->path);
	rt = runtime_new(cfg, opts->verbose);
	/* The services parsed the generated pair: zero the bytes held. */
	localcert_release();
	activation_close_unused();
	if (rt == NULL)
		goto done;
	if (opts->detach) {
		if (daemonize(rt, &ready_fd) != 0)
			goto done;
	}
	if (drop_privileges(runtime_config(rt)->user) != 0 ||
	    runtime_start_oauth2(rt) != 0)
		goto done;
	runtime_ready(rt);
	detach_done(ready_fd);
	ready_fd = -1;
	status = runtime_run(rt);
done:
	if (ready_fd >= 0)
		close(ready_fd);
	runtime_free(rt);
	pidfile_remove();
	notify_close();
	return status;
}

/* -s: ask the running daemon through its control socket. */
static int
run_status(const char *path, int json)
{
	struct config_errors	 errs = { 0 };
	struct config		*cfg;
	char			 err[1024];
	int			 i, ret;

	/* Only the socket's path matters here: no warnings. */
	if ((cfg = config_load(path, &errs)) == NULL) {
		for (i = 0; i < errs.count; i++)
			fprintf(stderr, "%s\n", errs.lines[i]);
		config_errors_clear(&errs);
		return 1;
	}
	if (cfg->control_socket[0] == '\0') {
		fprintf(stderr, "mailtlsd: %s has control_socket = none: the "
		    "daemon answers no status requests\n", cfg->path);
		config_free(cfg);
		return 1;
	}
	ret = control_query(cfg->control_socket, json ? "status json" :
	    "status", stdout, err, sizeof(err));
	if (ret != 0)
		fprintf(stderr, "mailtlsd: %s\n", err);
	config_free(cfg);
	return ret == 0 ? 0 : 1;
}

/*
 * jansson's memory is wiped when freed: the OAuth2 provider's answers and
 * the token files pass through it with tokens in them.
 */
static void
json_free_wiped(void *p)
{
	if (p == NULL)
		return;
	explicit_bzero(p, malloc_usable_size(p));
	free(p);
}

int
main(int argc, char **argv)
{
	struct options	 opts;
	struct config	*cfg;
	int		 status;

	json_set_alloc_funcs(malloc, json_free_wiped);
	parse_options(argc, argv, &opts);
	signal(SIGPIPE, SIG_IGN);
	if (opts.status)
		return run_status(opts.config_path, opts.json);
	log_init(log_stderr_is_journal() ? LOG_TO_JOURNAL : LOG_TO_STDERR,
	    LOG_LEVEL_INFO);
	/* Before any thread: libcurl's global state is not thread-safe. */
	if (http_global_init() != 0)
		fatalx("cannot initialise libcurl");
	if ((cfg = load_config(opts.config_path)) == NULL)
		return 1;
	log_set_level(log_level_raise(cfg->log_level, opts.verbose));
	if (tls_init() != 0) {
		config_free(cfg);
		fatalx("cannot seed the random generator");
	}
	if (opts.probe != NULL) {
		/* The report is the output; the log says only what is wrong. */
		log_set_level(log_level_raise(LOG_LEVEL_WARN, opts.verbose));
		status = probe_run(cfg, opts.probe);
		config_free(cfg);
		tls_cleanup();
		return status;
	}
	if (opts.authorise != NULL) {
		/* The dialogue is the output; the log says what is wrong. */
		log_set_level(log_level_raise(LOG_LEVEL_WARN, opts.verbose));
		status = authorise(cfg, &opts);
		config_free(cfg);
		tls_cleanup();
		http_global_cleanup();
		return status;
	}
	if (opts.test_only) {
		status = check_services(cfg) == 0 && check_user(cfg) == 0 &&
		    check_oauth2(cfg) == 0 ? 0 : 1;
		if (status == 0)
			printf("configuration OK\n");
		config_free(cfg);
		tls_cleanup();
		return status;
	}
	status = run_daemon(cfg, &opts);
	tls_cleanup();
	return status;
}
