/*
 * provider.h - the unit tests' HTTPS server playing an OAuth2 provider
 * (fake_provider.py, run with the system's python3), and a blocking POST
 * through http.c for the tests' own questions to it.
 */
#ifndef MAILTLSD_PROVIDER_H
#define MAILTLSD_PROVIDER_H

#include <stddef.h>
#include <sys/types.h>

struct event_base;
struct http;

struct provider {
	pid_t		 pid;
	int		 to_child;	/* its stdin: closing it ends it */
	unsigned	 port;
	char		 dir[64];	/* its certificates */
	char		 ca[128];	/* the certificate it serves */
	char		 other_ca[128];	/* one that does not sign it */
};

/* Start the server (fails the test when it does not come up). */
void		 provider_start(struct provider *);
void		 provider_stop(struct provider *);

/* https://127.0.0.1:PORT/path in one of a few rotating buffers. */
const char	*provider_url(const struct provider *, const char *path);

/*
 * Run base one event at a time until *done is set or seconds pass:
 * whether *done was set.
 */
int		 provider_run(struct event_base *, const int *done,
		    int seconds);

/*
 * POST fields to path, running base until the answer comes (at most 10
 * s): the status (0 on failure); body is a copy to free.
 */
int		 provider_post(struct provider *, struct event_base *,
		    struct http *, const char *path, const char *const *fields,
		    char **body);

/* POST {"json": json} to /control and check it was taken. */
void		 provider_control(struct provider *, struct event_base *,
		    struct http *, const char *json);

#endif /* MAILTLSD_PROVIDER_H */
