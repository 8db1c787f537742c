/*
 * oauth2_cli.c - mailtlsd -a SECTION USER: authorise one account from a
 * terminal, in an event loop of its own, with the daemon's code for the
 * flows, the token endpoint and the token store.
 *
 * The password is read from the controlling terminal (/dev/tty) without
 * echo, never from standard input or the command line: it would end in a
 * shell history, a process list or a file.  A new account's password is
 * asked twice; an existing account's must open its tokens, which are then
 * replaced by those of the new authorisation (client credentials: the
 * grant is checked and the password sealed).  main() has dropped the
 * privileges to the daemon's user, so the files belong to it.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <event2/event.h>
#include <sodium.h>

#include "config.h"
#include "oauth2_impl.h"
#include "tokenstore.h"

/* One run of mailtlsd -a. */
struct o2_cli {
	struct event_base	*base;
	struct oauth2		*o;
	struct o2_account	*acct;
	int			 done;
	int			 ok;
	enum tokenstore_result	 opened;
	char			 reason[512];
};

static volatile sig_atomic_t	o2_cli_interrupted;

static void
o2_cli_signal(int sig)
{
	(void)sig;
	o2_cli_interrupted = 1;
}

/* Write a prompt to the terminal. */
static void
o2_cli_say(int tty, const char *text)
{
	size_t	len = strlen(text);
	ssize_t	n;

	while (len > 0 && (n = write(tty, text, len)) > 0) {
		text += n;
		len -= (size_t)n;
	}
}

/*
 * Ask for a password on the terminal without echo; a signal interrupts
 * (and the terminal gets its echo back).  The password, or NULL.
 */
static char *
o2_cli_ask(int tty, const char *prompt, size_t *lenp)
{
	struct termios		 saved, quiet;
	struct sigaction	 sa, old[4];
	static const int	 sigs[4] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };
	char			*pw, c;
	size_t			 len = 0;
	ssize_t			 n;
	int			 i, toolong = 0;

	if (tcgetattr(tty, &saved) != 0 ||
	    (pw = sodium_malloc(TOKENSTORE_PASSWORD_MAX + 1)) == NULL)
		return NULL;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = o2_cli_signal;	/* no SA_RESTART: read() ends */
	sigemptyset(&sa.sa_mask);
	for (i = 0; i < 4; i++)
		sigaction(sigs[i], &sa, &old[i]);
	quiet = saved;
	quiet.c_lflag &= ~(tcflag_t)ECHO;
	quiet.c_lflag |= ECHONL;
	/* Echo off before the prompt (what was typed before it, and echoed,
	 * is dropped): a password typed at the prompt never shows. */
	tcsetattr(tty, TCSAFLUSH, &quiet);
	o2_cli_say(tty, prompt);
	while (!o2_cli_interrupted && (n = read(tty, &c, 1)) == 1 &&
	    c != '\n') {
		if (len < TOKENSTORE_PASSWORD_MAX)
			pw[len++] = c;
		else
			toolong = 1;
	}
	tcsetattr(tty, TCSADRAIN, &saved);
	for (i = 0; i < 4; i++)
		sigaction(sigs[i], &old[i], NULL);
	pw[len] = '\0';
	if (o2_cli_interrupted || toolong || len == 0) {
		fprintf(stderr, "mailtlsd: %s\n", o2_cli_interrupted ?
		    "interrupted" : toolong ? "the password is longer than "
		    "4096 bytes" : "the password must not be empty");
		sodium_free(pw);
		return NULL;
	}
	*lenp = len;
	return pw;
}

/* Run the loop until the step under way is done. */
static void
o2_cli_wait(struct o2_cli *cli)
{
	cli->done = 0;
	while (!cli->done && event_base_loop(cli->base, EVLOOP_ONCE) == 0)
		;
}

static void
o2_cli_opened_cb(enum tokenstore_result result, const struct token_set *set,
    const char *reason, void *arg)
{
	struct o2_cli	*cli = arg;

	(void)set;
	cli->opened = result;
	snprintf(cli->reason, sizeof(cli->reason), "%s", reason != NULL ?
	    reason : "");
	cli->done = 1;
}

/* A flow's instructions, for a person at the terminal. */
static void
o2_cli_flow_text(struct o2_flow *f)
{
	struct o2_cli	*cli = f->cli;

	if (f->kind == OAUTH2_FLOW_DEVICE)
		printf("\nTo authorise %s, visit\n\n    %s\n\nand enter the "
		    "code %s\n", cli->acct->user, f->go_to, f->user_code);
	else
		printf("\nTo authorise %s, open in a browser on this host (or "
		    "through ssh -L %s)\n\n    %s\n\nwhich leads to\n\n    "
		    "%s\n", cli->acct->user,
		    cli->acct->sec->cfg->redirect_listen.text, f->go_to,
		    f->authorize_url);
	printf("\nWaiting until %s (Ctrl-C gives up)...\n",
	    f->kind == OAUTH2_FLOW_DEVICE ? "the code expires" :
	    "15 minutes have passed");
	fflush(stdout);
}

/* The flow ended. */
static void
o2_cli_flow_done(struct o2_flow *f, int ok, const char *text)
{
	struct o2_cli	*cli = f->cli;

	cli->ok = ok;
	if (!ok)
		snprintf(cli->reason, sizeof(cli->reason), "%s", text != NULL ?
		    text : "the authorisation failed");
	cli->done = 1;
}

/* The client credentials grant (and seal) ended. */
static void
o2_cli_renew_done(struct o2_renew *rn, int ok, const char *text)
{
	struct o2_cli	*cli = rn->cli;

	cli->ok = ok;
	if (!ok)
		snprintf(cli->reason, sizeof(cli->reason), "%s", text);
	cli->done = 1;
}

/* Open the account with pw; 0, or -1 after saying why. */
static int
o2_cli_open(struct o2_cli *cli, const char *pw, size_t pwlen)
{
	struct tokenstore_job	*job;
	char			 why[512];

	if (o2_store(cli->o, why, sizeof(why)) == NULL) {
		fprintf(stderr, "mailtlsd: %s\n", why);
		return -1;
	}
	job = tokenstore_open(cli->o->store, cli->acct->sec->cfg->name,
	    cli->acct->user, pw, pwlen, o2_cli_opened_cb, cli);
	if (job == NULL) {
		fprintf(stderr, "mailtlsd: out of memory\n");
		return -1;
	}
	o2_cli_wait(cli);
	switch (cli->opened) {
	case TOKENSTORE_OK:
	case TOKENSTORE_ABSENT:
		return 0;
	case TOKENSTORE_WRONG:
		fprintf(stderr, "mailtlsd: the tokens of %s are sealed with "
		    "another password; mailtlsd -a keeps them.  To start over, "
		    "remove the account's file under %s (as the daemon's user) "
		    "and run mailtlsd -a again.\n", cli->acct->user,
		    cli->o->store_dir);
		return -1;
	case TOKENSTORE_ERROR:
		break;
	}
	fprintf(stderr, "mailtlsd: cannot open the tokens of %s: %s\n",
	    cli->acct->user, cli->reason);
	return -1;
}

/* Run the section's flow (or grant) with pw; the exit status. */
static int
o2_cli_run(struct o2_cli *cli, const char *pw, size_t pwlen)
{
	struct o2_account	*acct = cli->acct;
	const struct oauth2_config *cfg = acct->sec->cfg;
	struct o2_renew		*rn;
	struct o2_flow		*f;
	char			 why[512];

	if (cfg->flow == OAUTH2_FLOW_CLIENT_CREDENTIALS) {
		rn = o2_renew_start(acct, 1, cli->opened == TOKENSTORE_ABSENT,
		    pw, pwlen);
		if (rn == NULL) {
			fprintf(stderr, "mailtlsd: out of memory\n");
			return 1;
		}
		rn->cli_done = o2_cli_renew_done;
		rn->cli = cli;
	} else {
		if ((f = o2_flow_start(acct, pw, pwlen, why, sizeof(why))) ==
		    NULL) {
			fprintf(stderr, "mailtlsd: %s\n", why);
			return 1;
		}
		f->cli_text = o2_cli_flow_text;
		f->cli_done = o2_cli_flow_done;
		f->cli = cli;
		if (f->state == O2_FLOW_WAITING)
			o2_cli_flow_text(f);
	}
	o2_cli_wait(cli);
	if (!cli->ok) {
		fprintf(stderr, "%s\n", cli->reason);
		return 1;
	}
	if (cfg->flow == OAUTH2_FLOW_CLIENT_CREDENTIALS)
		printf("The provider granted [oauth2:%s] an access token; %s "
		    "is sealed with the password given.\n", cfg->name,
		    acct->user);
	else
		printf("%s is authorised; its tokens are sealed in %s with the "
		    "password given.\n", acct->user, cli->o->store_dir);
	printf("Mail clients log in as %s with that password.\n", acct->user);
	return 0;
}

/* Ask the password (twice for a new account) and run; the exit status. */
static int
o2_cli_session(struct o2_cli *cli, int tty)
{
	char	*pw, *again;
	size_t	 pwlen, againlen;
	int	 status = 1;

	if ((pw = o2_cli_ask(tty, "Password the mail client will log in "
	    "with: ", &pwlen)) == NULL)
		return 1;
	if (o2_cli_open(cli, pw, pwlen) != 0)
		goto done;
	if (cli->opened == TOKENSTORE_ABSENT) {
		if ((again = o2_cli_ask(tty, "The same password again: ",
		    &againlen)) == NULL)
			goto done;
		if (!o2_password_matches(pw, pwlen, again, againlen)) {
			fprintf(stderr, "mailtlsd: the two passwords differ\n");
			sodium_free(again);
			goto done;
		}
		sodium_free(again);
	} else
		printf("%s is authorised already: a new authorisation replaces "
		    "its tokens.\n", cli->acct->user);
	status = o2_cli_run(cli, pw, pwlen);
done:
	sodium_free(pw);
	return status;
}

/* mailtlsd -a SECTION USER. */
int
oauth2_authorise_cli(const struct config *cfg, const char *section,
    const char *user)
{
	const struct oauth2_config	*oc;
	struct o2_cli			 cli;
	char				 err[1024];
	int				 tty, status = 1;

	memset(&cli, 0, sizeof(cli));
	if ((oc = config_find_oauth2(cfg, section)) == NULL) {
		fprintf(stderr, "mailtlsd: %s has no [oauth2:%s]\n", cfg->path,
		    section);
		return 1;
	}
	if (!o2_user_ok(user)) {
		fprintf(stderr, "mailtlsd: the user name must be 1 to 255 "
		    "bytes without spaces or control characters\n");
		return 1;
	}
	if ((tty = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0) {
		fprintf(stderr, "mailtlsd: -a asks for the password on a "
		    "terminal, and there is none: %s\n", strerror(errno));
		return 1;
	}
	if ((cli.base = event_base_new()) == NULL ||
	    (cli.o = oauth2_new(cli.base, cfg, err, sizeof(err))) == NULL) {
		fprintf(stderr, "mailtlsd: %s\n", cli.base == NULL ?
		    "out of memory" : err);
		goto done;
	}
	cli.o->cli = 1;
	cli.acct = o2_account_lookup(cli.o, oc->name, user);
	if (cli.acct == NULL) {
		fprintf(stderr, "mailtlsd: out of memory\n");
		goto done;
	}
	printf("Authorising %s with [oauth2:%s] (%s flow).\n", user, oc->name,
	    o2_flow_name(oc->flow));
	fflush(stdout);
	status = o2_cli_session(&cli, tty);
done:
	oauth2_free(cli.o);
	if (cli.base != NULL)
		event_base_free(cli.base);
	close(tty);
	return status;
}
