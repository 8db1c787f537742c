/*
 * control.c - the control socket (see control.h): the daemon's side, one
 * bufferevent per client with a bounded request, a bounded answer and a
 * timeout each way, and `mailtlsd -s`'s side, a blocking client.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "control.h"
#include "log.h"

#define CONTROL_CLIENT_WAIT	10	/* seconds mailtlsd -s waits */

struct control_client {
	struct control		*control;
	struct bufferevent	*bev;
	struct control_client	*next;
	int			 answered;
	int			 shut;		/* the answer went out, FIN sent */
};

struct control {
	struct evconnlistener	*listener;
	struct control_client	*clients;
	unsigned		 n_clients;
	control_answer_fn	*answer;
	void			*arg;
	char			 path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	dev_t			 dev;		/* the socket file we made */
	ino_t			 ino;
};

/* Fill sun with path; 0, or -1 when it does not fit. */
static int
control_address(const char *path, struct sockaddr_un *sun)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun->sun_path))
		return -1;
	memcpy(sun->sun_path, path, strlen(path) + 1);
	return 0;
}

/* Create the missing parent directory of path for uid/gid. */
static int
control_make_dir(const char *path, uid_t uid, gid_t gid, char *err,
    size_t errlen)
{
	char		 dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char		*slash;
	struct stat	 sb;

	snprintf(dir, sizeof(dir), "%s", path);
	if ((slash = strrchr(dir, '/')) == NULL || slash == dir)
		return 0;
	*slash = '\0';
	if (stat(dir, &sb) == 0)
		return 0;
	if (errno != ENOENT || mkdir(dir, 0750) != 0) {
		snprintf(err, errlen, "cannot create %s: %s", dir,
		    strerror(errno));
		return -1;
	}
	if (uid != (uid_t)-1 && chown(dir, uid, gid) != 0) {
		snprintf(err, errlen, "cannot give %s to the daemon's user: %s",
		    dir, strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * Remove a socket file that no daemon answers on; -1 with err when one
 * does, or when path is something else than a socket.
 */
static int
control_remove_stale(const char *path, const struct sockaddr_un *sun,
    char *err, size_t errlen)
{
	struct stat	sb;
	int		fd, alive;

	if (lstat(path, &sb) != 0)
		return 0;
	if (!S_ISSOCK(sb.st_mode)) {
		snprintf(err, errlen, "%s exists and is not a socket", path);
		return -1;
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
	    0)) < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	/* Non-blocking: a daemon with a full backlog answers EAGAIN. */
	alive = connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0 ||
	    errno == EAGAIN || errno == EINPROGRESS;
	close(fd);
	if (alive) {
		snprintf(err, errlen, "another mailtlsd answers on %s", path);
		return -1;
	}
	if (unlink(path) != 0 && errno != ENOENT) {
		snprintf(err, errlen, "cannot remove the old socket %s: %s",
		    path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Bind and listen on path, mode 0600, owned by uid/gid. */
int
control_bind(const char *path, uid_t uid, gid_t gid, int make_dir, char *err,
    size_t errlen)
{
	struct sockaddr_un	sun;
	mode_t			old;
	int			fd, ret;

	if (control_address(path, &sun) != 0) {
		snprintf(err, errlen, "path too long for a socket (at most %zu "
		    "characters)", sizeof(sun.sun_path) - 1);
		return -1;
	}
	if ((make_dir && control_make_dir(path, uid, gid, err, errlen) != 0) ||
	    control_remove_stale(path, &sun, err, errlen) != 0)
		return -1;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	/* Born 0600: no moment where anyone else could connect. */
	old = umask(0177);
	ret = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	if (ret != 0) {
		snprintf(err, errlen, "cannot bind %s: %s", path,
		    strerror(errno));
		goto err;
	}
	if (uid != (uid_t)-1 && chown(path, uid, gid) != 0) {
		snprintf(err, errlen, "cannot give %s to the daemon's user: %s",
		    path, strerror(errno));
		unlink(path);
		goto err;
	}
	if (listen(fd, CONTROL_CLIENTS_MAX) != 0) {
		snprintf(err, errlen, "listen on %s: %s", path, strerror(errno));
		unlink(path);
		goto err;
	}
	return fd;
err:
	close(fd);
	return -1;
}

/* Close a client and forget it. */
static void
control_client_free(struct control_client *cl)
{
	struct control_client	**pp;

	for (pp = &cl->control->clients; *pp != NULL; pp = &(*pp)->next)
		if (*pp == cl) {
			*pp = cl->next;
			break;
		}
	cl->control->n_clients--;
	bufferevent_free(cl->bev);
	free(cl);
}

/* Queue the answer to one request line and stop reading. */
static void
control_client_answer(struct control_client *cl, const char *request)
{
	struct control	*c = cl->control;
	struct evbuffer	*answer, *out = bufferevent_get_output(cl->bev);

	cl->answered = 1;
	if ((answer = evbuffer_new()) == NULL) {
		evbuffer_add_printf(out, "error: out of memory\n");
		return;
	}
	if (c->answer(request, answer, c->arg) != 0)
		log_debug("control: unknown request");
	if (evbuffer_get_length(answer) > CONTROL_ANSWER_MAX) {
		evbuffer_add_printf(out, "error: the answer is larger than "
		    "%d bytes\n", CONTROL_ANSWER_MAX);
		log_warnx("control: an answer over %d bytes was not sent",
		    CONTROL_ANSWER_MAX);
	} else
		evbuffer_add_buffer(out, answer);
	evbuffer_free(answer);
}

/* Bytes of the request arrived. */
static void
control_client_read_cb(struct bufferevent *bev, void *arg)
{
	struct control_client	*cl = arg;
	struct evbuffer		*in = bufferevent_get_input(bev);
	struct evbuffer_ptr	 eol;
	char			 line[CONTROL_REQUEST_MAX + 1];
	size_t			 len;

	if (cl->answered) {
		/* One request per connection: the rest is discarded. */
		evbuffer_drain(in, evbuffer_get_length(in));
		return;
	}
	eol = evbuffer_search_eol(in, NULL, NULL, EVBUFFER_EOL_LF);
	if (eol.pos < 0 || eol.pos >= CONTROL_REQUEST_MAX) {
		if (eol.pos < 0 && evbuffer_get_length(in) < CONTROL_REQUEST_MAX)
			return;		/* the rest of the line is coming */
		cl->answered = 1;
		evbuffer_drain(in, evbuffer_get_length(in));
		evbuffer_add_printf(bufferevent_get_output(bev), "error: "
		    "request longer than %d bytes\n", CONTROL_REQUEST_MAX - 1);
		return;
	}
	len = (size_t)eol.pos;
	evbuffer_remove(in, line, len + 1);
	line[len] = '\0';
	if (len > 0 && line[len - 1] == '\r')
		line[--len] = '\0';
	control_client_answer(cl, line);
}

/*
 * The answer left: send FIN and wait (within the timeout) for the
 * client's, so that bytes it sent beyond its request do not turn the
 * close into a reset that could cost it the answer.
 */
static void
control_client_write_cb(struct bufferevent *bev, void *arg)
{
	struct control_client	*cl = arg;

	if (!cl->answered || cl->shut ||
	    evbuffer_get_length(bufferevent_get_output(bev)) > 0)
		return;
	cl->shut = 1;
	if (shutdown(bufferevent_getfd(bev), SHUT_WR) != 0)
		control_client_free(cl);
}

/* The client went away, failed, or took too long. */
static void
control_client_event_cb(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	if (what & BEV_EVENT_TIMEOUT)
		log_debug("control: a client took longer than %d seconds; "
		    "closed", CONTROL_TIMEOUT);
	control_client_free(arg);
}

/* A client connected. */
static void
control_accept_cb(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct control		*c = arg;
	struct control_client	*cl;
	struct timeval		 tv = { CONTROL_TIMEOUT, 0 };

	(void)l;
	(void)sa;
	(void)salen;
	if (c->n_clients >= CONTROL_CLIENTS_MAX) {
		/* The newest list first: the oldest, likely stalled, goes. */
		for (cl = c->clients; cl->next != NULL; cl = cl->next)
			;
		log_debug("control: %u clients at once; the oldest is closed",
		    c->n_clients);
		control_client_free(cl);
	}
	if ((cl = calloc(1, sizeof(*cl))) == NULL) {
		close(fd);
		return;
	}
	cl->control = c;
	cl->bev = bufferevent_socket_new(evconnlistener_get_base(c->listener),
	    fd, BEV_OPT_CLOSE_ON_FREE);
	if (cl->bev == NULL) {
		close(fd);
		free(cl);
		return;
	}
	cl->next = c->clients;
	c->clients = cl;
	c->n_clients++;
	bufferevent_setcb(cl->bev, control_client_read_cb,
	    control_client_write_cb, control_client_event_cb, cl);
	bufferevent_setwatermark(cl->bev, EV_READ, 0, CONTROL_REQUEST_MAX);
	bufferevent_set_timeouts(cl->bev, &tv, &tv);
	bufferevent_enable(cl->bev, EV_READ | EV_WRITE);
}

/* Serve the bound socket. */
struct control *
control_new(struct event_base *base, int fd, const char *path,
    control_answer_fn *answer, void *arg)
{
	struct control	*c;
	struct stat	 sb;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	c->answer = answer;
	c->arg = arg;
	snprintf(c->path, sizeof(c->path), "%s", path);
	if (lstat(path, &sb) == 0) {
		c->dev = sb.st_dev;
		c->ino = sb.st_ino;
	}
	c->listener = evconnlistener_new(base, control_accept_cb, c,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (c->listener == NULL) {
		free(c);
		return NULL;
	}
	return c;
}

/* Stop serving and remove the socket file we made. */
void
control_free(struct control *c)
{
	struct stat	sb;

	if (c == NULL)
		return;
	while (c->clients != NULL)
		control_client_free(c->clients);
	evconnlistener_free(c->listener);
	/* Not a file someone put there since: only our own socket. */
	if (lstat(c->path, &sb) == 0 && sb.st_dev == c->dev &&
	    sb.st_ino == c->ino && S_ISSOCK(sb.st_mode) && unlink(c->path) != 0)
		log_debug("control: cannot remove %s: %s", c->path,
		    strerror(errno));
	free(c);
}

/* ---- mailtlsd -s ----------------------------------------------------------- */

/* Why connecting to the daemon failed, in words. */
static void
control_connect_error(const char *path, int err_no, char *err, size_t errlen)
{
	switch (err_no) {
	case ENOENT:
		snprintf(err, errlen, "no control socket at %s: is mailtlsd "
		    "running with this configuration (control_socket)?", path);
		break;
	case ECONNREFUSED:
		snprintf(err, errlen, "nothing answers on %s: mailtlsd is not "
		    "running", path);
		break;
	case EACCES:
	case EPERM:
		snprintf(err, errlen, "%s: permission denied; run mailtlsd -s "
		    "as root or as the daemon's user", path);
		break;
	default:
		snprintf(err, errlen, "cannot connect to %s: %s", path,
		    strerror(err_no));
	}
}

/* Read the whole answer into a buffer; its length, or -1 with err. */
static ssize_t
control_read_answer(int fd, char **answer, char *err, size_t errlen)
{
	size_t	 len = 0, cap = 64 * 1024;
	char	*buf, *v;
	ssize_t	 n;

	if ((buf = malloc(cap)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (;;) {
		if (len == cap) {
			if (cap >= CONTROL_ANSWER_MAX + 1024 ||
			    (v = realloc(buf, cap * 2)) == NULL) {
				snprintf(err, errlen, "the answer is too large");
				free(buf);
				return -1;
			}
			buf = v;
			cap *= 2;
		}
		if ((n = read(fd, buf + len, cap - len)) == 0)
			break;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				snprintf(err, errlen, "mailtlsd did not answer "
				    "within %d seconds", CONTROL_CLIENT_WAIT);
			else
				snprintf(err, errlen, "reading the answer: %s",
				    strerror(errno));
			free(buf);
			return -1;
		}
		len += (size_t)n;
	}
	*answer = buf;
	return (ssize_t)len;
}

/* Ask the daemon at path. */
int
control_query(const char *path, const char *request, FILE *out, char *err,
    size_t errlen)
{
	struct sockaddr_un	 sun;
	struct timeval		 tv = { CONTROL_CLIENT_WAIT, 0 };
	char			 line[CONTROL_REQUEST_MAX + 1], *answer = NULL;
	ssize_t			 len;
	int			 fd, n, ret = -1;

	if (control_address(path, &sun) != 0) {
		snprintf(err, errlen, "control_socket path too long: %s", path);
		return -1;
	}
	n = snprintf(line, sizeof(line), "%s\n", request);
	if (n < 0 || (size_t)n >= sizeof(line)) {
		snprintf(err, errlen, "request too long");
		return -1;
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0)
		control_connect_error(path, errno, err, errlen);
	else if (write(fd, line, (size_t)n) != n)
		snprintf(err, errlen, "cannot send the request: %s",
		    strerror(errno));
	else if ((len = control_read_answer(fd, &answer, err, errlen)) >= 0) {
		if (len == 0)
			snprintf(err, errlen, "mailtlsd closed the connection "
			    "without an answer");
		else if (len >= 7 && memcmp(answer, "error: ", 7) == 0) {
			snprintf(err, errlen, "mailtlsd answered: %.*s",
			    (int)(len - 7 - (answer[len - 1] == '\n')),
			    answer + 7);
			ret = 1;
		} else if (fwrite(answer, 1, (size_t)len, out) != (size_t)len ||
		    fflush(out) != 0)
			snprintf(err, errlen, "cannot write the answer: %s",
			    strerror(errno));
		else
			ret = 0;
	}
	free(answer);
	close(fd);
	return ret;
}
