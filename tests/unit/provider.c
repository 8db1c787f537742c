/*
 * provider.c - start and stop the fake OAuth2 provider of the unit tests
 * (tests/unit/fake_provider.py), and ask it things.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

#include <check.h>
#include <event2/event.h>

#include "http.h"
#include "provider.h"
#include "unit.h"

#define PROVIDER_PYTHON	"/usr/bin/python3"
#define PROVIDER_SCRIPT	"tests/unit/fake_provider.py"
#define PROVIDER_WAIT_MS	20000	/* openssl makes two keys first */

/* Read the port line the server prints once it listens. */
static unsigned
provider_read_port(int fd)
{
	struct pollfd	pfd = { .fd = fd, .events = POLLIN };
	char		line[32];
	size_t		len = 0;
	ssize_t		n;

	while (len < sizeof(line) - 1) {
		ck_assert_msg(poll(&pfd, 1, PROVIDER_WAIT_MS) == 1,
		    "fake provider did not start");
		n = read(fd, line + len, sizeof(line) - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		ck_assert_msg(n > 0, "fake provider ended before listening");
		len += (size_t)n;
		line[len] = '\0';
		if (strchr(line, '\n') != NULL)
			return (unsigned)strtoul(line, NULL, 10);
	}
	ck_abort_msg("fake provider printed no port");
	return 0;
}

/* Start fake_provider.py in a fresh directory. */
void
provider_start(struct provider *p)
{
	int	in[2], out[2];

	memset(p, 0, sizeof(*p));
	snprintf(p->dir, sizeof(p->dir), "/tmp/check_provider.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(p->dir));
	snprintf(p->ca, sizeof(p->ca), "%s/cert.pem", p->dir);
	snprintf(p->other_ca, sizeof(p->other_ca), "%s/other.pem", p->dir);
	ck_assert_int_eq(pipe(in), 0);
	ck_assert_int_eq(pipe(out), 0);
	p->pid = fork();
	ck_assert_int_ge(p->pid, 0);
	if (p->pid == 0) {
		dup2(in[0], STDIN_FILENO);
		dup2(out[1], STDOUT_FILENO);
		close(in[0]);
		close(in[1]);
		close(out[0]);
		close(out[1]);
		execl(PROVIDER_PYTHON, PROVIDER_PYTHON, PROVIDER_SCRIPT,
		    p->dir, (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	p->to_child = in[1];
	p->port = provider_read_port(out[0]);
	close(out[0]);
	ck_assert_uint_gt(p->port, 0);
}

/* End the server and remove its certificates. */
void
provider_stop(struct provider *p)
{
	if (p->pid > 0) {
		close(p->to_child);
		kill(p->pid, SIGTERM);
		waitpid(p->pid, NULL, 0);
		p->pid = 0;
	}
	if (p->dir[0] != '\0')
		unit_remove_tree(p->dir);
}

/* The URL of path on the server. */
const char *
provider_url(const struct provider *p, const char *path)
{
	static char	urls[4][256];
	static int	next;
	char		*url = urls[next++ % 4];

	snprintf(url, sizeof(urls[0]), "https://127.0.0.1:%u%s", p->port,
	    path);
	return url;
}

/* What provider_post() waits for. */
struct provider_answer {
	struct event_base	*base;
	int			 done;
	int			 status;
	char			*body;
};

static void
provider_answer_cb(int status, const char *body, size_t len,
    const char *error, void *arg)
{
	struct provider_answer	*a = arg;

	(void)len;
	ck_assert_msg(error == NULL, "fake provider: %s", error);
	a->done = 1;
	a->status = status;
	a->body = strdup(body);
}

/* The time given to provider_run() is over. */
static void
provider_limit_cb(evutil_socket_t fd, short what, void *arg)
{
	int	*expired = arg;

	(void)fd;
	(void)what;
	*expired = 1;
}

/* Run base until *done is set (callbacks break the loop), or seconds. */
int
provider_run(struct event_base *base, const int *done, int seconds)
{
	struct timeval	 limit = { seconds, 0 };
	struct event	*timer;
	int		 expired = 0;

	timer = evtimer_new(base, provider_limit_cb, &expired);
	ck_assert_ptr_nonnull(timer);
	evtimer_add(timer, &limit);
	while (!*done && !expired)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(timer);
	return *done;
}

/* POST and wait for the answer. */
int
provider_post(struct provider *p, struct event_base *base, struct http *h,
    const char *path, const char *const *fields, char **body)
{
	struct provider_answer	 a = { .base = base };

	ck_assert_ptr_nonnull(http_post_form(h, provider_url(p, path),
	    fields, p->ca, 10, provider_answer_cb, &a));
	ck_assert_msg(provider_run(base, &a.done, 10),
	    "no answer from the fake provider");
	*body = a.body;
	return a.status;
}

/* Change the server's behaviour. */
void
provider_control(struct provider *p, struct event_base *base,
    struct http *h, const char *json)
{
	const char	*fields[] = { "json", json, NULL };
	char		*body;

	ck_assert_int_eq(provider_post(p, base, h, "/control", fields, &body),
	    200);
	free(body);
}
