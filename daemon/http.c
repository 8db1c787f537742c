/*
 * http.c - HTTPS requests to OAuth2 endpoints from the event loop.
 *
 * libcurl's multi interface with libevent driving it: libcurl says which
 * sockets it waits on (http_socket_cb) and when it next needs the clock
 * (http_timer_cb); libevent reports readiness and timeouts back through
 * curl_multi_socket_action().  No call here waits.
 *
 * Name resolution: Debian's libcurl is built with the threaded resolver
 * ("AsynchDNS" in `curl-config --features`): getaddrinfo() runs on a
 * thread of libcurl's own and the loop only waits for its socket, so a
 * slow DNS server never stalls the daemon; CURLOPT_TIMEOUT bounds it too.
 *
 * Every request is verified (peer and host name) against ca_file alone
 * when one is given, speaks https only and never follows a redirect.
 * Request bodies hold client secrets, codes and refresh tokens, response
 * bodies hold tokens: both are wiped before they are freed, and neither
 * is ever logged.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <sodium.h>

#include "http.h"

#ifndef MAILTLSD_VERSION
#define MAILTLSD_VERSION "unknown"
#endif

#define HTTP_USER_AGENT		"mailtlsd/" MAILTLSD_VERSION
#define HTTP_ERROR_MAX		(CURL_ERROR_SIZE + 512)
#define HTTP_DEFAULT_TIMEOUT	30	/* seconds, when given 0 */

struct http_request {
	TAILQ_ENTRY(http_request) entry;
	struct http		*http;
	CURL			*easy;
	struct curl_slist	*headers;
	char			*form;		/* the body sent: secrets */
	size_t			 form_len;
	char			*body;		/* the body received */
	size_t			 body_len;
	size_t			 body_cap;
	int			 too_large;
	unsigned		 timeout;
	char			 host[256];	/* for error texts */
	char			 curl_error[CURL_ERROR_SIZE];
	http_done_cb		*done_cb;
	void			*done_arg;
};

TAILQ_HEAD(http_requests, http_request);

/* One socket libcurl waits on. */
struct http_socket {
	LIST_ENTRY(http_socket) entry;
	struct event	*ev;
};

struct http {
	struct event_base	*base;
	CURLM			*multi;
	struct event		*timer;
	struct http_requests	 requests;
	LIST_HEAD(, http_socket) sockets;
	struct http_request	*in_callback;	/* its done_cb runs */
	int			 dispatching;	/* inside an event callback */
	int			 free_pending;	/* http_free() came meanwhile */
};

static void	http_check_done(struct http *);

/* libcurl's global state, before any thread exists. */
int
http_global_init(void)
{
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

void
http_global_cleanup(void)
{
	curl_global_cleanup();
}

/* Percent-encode in for a query string or a form body. */
int
http_escape(const char *in, char *out, size_t outlen)
{
	static const char	hex[] = "0123456789ABCDEF";
	const unsigned char	*p;
	size_t			 n = 0;

	for (p = (const unsigned char *)in; *p != '\0'; p++) {
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		    (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' ||
		    *p == '_' || *p == '~') {
			if (n + 1 >= outlen)
				goto full;
			out[n++] = (char)*p;
		} else {
			if (n + 3 >= outlen)
				goto full;
			out[n++] = '%';
			out[n++] = hex[*p >> 4];
			out[n++] = hex[*p & 0x0f];
		}
	}
	if (n >= outlen)
		goto full;
	out[n] = '\0';
	return (int)n;
full:
	if (outlen > 0)
		sodium_memzero(out, outlen);
	return -1;
}

/* Wipe and free a buffer that may hold a secret. */
static void
http_wipe_free(char *buf, size_t len)
{
	if (buf == NULL)
		return;
	sodium_memzero(buf, len);
	free(buf);
}

/* Free a request that libcurl no longer holds. */
static void
http_request_free(struct http_request *req)
{
	if (req->easy != NULL)
		curl_easy_cleanup(req->easy);
	curl_slist_free_all(req->headers);
	http_wipe_free(req->form, req->form_len);
	http_wipe_free(req->body, req->body_cap);
	free(req);
}

/* Take the request out of the multi handle and the list; then free it. */
static void
http_request_drop(struct http_request *req)
{
	curl_multi_remove_handle(req->http->multi, req->easy);
	TAILQ_REMOVE(&req->http->requests, req, entry);
	http_request_free(req);
}

/* libcurl hands over response bytes: keep them, up to HTTP_BODY_MAX. */
static size_t
http_write_cb(char *data, size_t size, size_t nmemb, void *arg)
{
	struct http_request	*req = arg;
	size_t			 len = size * nmemb, cap;
	char			*grown;

	if (len > HTTP_BODY_MAX - req->body_len) {
		req->too_large = 1;
		return 0;	/* libcurl fails the transfer */
	}
	if (req->body_len + len + 1 > req->body_cap) {
		cap = req->body_cap == 0 ? 4096 : req->body_cap;
		while (cap < req->body_len + len + 1)
			cap *= 2;
		if (cap > HTTP_BODY_MAX + 1)
			cap = HTTP_BODY_MAX + 1;
		/* A copy, not realloc(): the old bytes are wiped. */
		if ((grown = malloc(cap)) == NULL)
			return 0;
		if (req->body_len > 0)
			memcpy(grown, req->body, req->body_len);
		http_wipe_free(req->body, req->body_cap);
		req->body = grown;
		req->body_cap = cap;
	}
	memcpy(req->body + req->body_len, data, len);
	req->body_len += len;
	req->body[req->body_len] = '\0';
	return len;
}

/* The host part of an URL, for messages. */
static void
http_url_host(const char *url, char *host, size_t hostlen)
{
	const char	*p = strstr(url, "://");
	size_t		 n;

	p = p != NULL ? p + 3 : url;
	n = strcspn(p, "/:?#");
	if (p[0] == '[')
		n = strcspn(p, "]") + (p[strcspn(p, "]")] == ']');
	snprintf(host, hostlen, "%.*s", (int)n, p);
}

/* Why a transfer failed, in words. */
static void
http_explain(const struct http_request *req, CURLcode rc, char *err,
    size_t errlen)
{
	const char	*detail = req->curl_error[0] != '\0' ? req->curl_error :
			    curl_easy_strerror(rc);

	switch (rc) {
	case CURLE_COULDNT_RESOLVE_HOST:
		snprintf(err, errlen, "could not resolve host %s", req->host);
		break;
	case CURLE_COULDNT_CONNECT:
		snprintf(err, errlen, "could not connect to %s: %s", req->host,
		    detail);
		break;
	case CURLE_OPERATION_TIMEDOUT:
		snprintf(err, errlen, "timed out after %u s", req->timeout);
		break;
	case CURLE_PEER_FAILED_VERIFICATION:
		snprintf(err, errlen, "TLS verification failed: %s", detail);
		break;
	case CURLE_SSL_CONNECT_ERROR:
		snprintf(err, errlen, "TLS handshake with %s failed: %s",
		    req->host, detail);
		break;
	case CURLE_SSL_CACERT_BADFILE:
		snprintf(err, errlen, "cannot use the CA file: %s", detail);
		break;
	case CURLE_UNSUPPORTED_PROTOCOL:
		snprintf(err, errlen, "not an https URL: %s", detail);
		break;
	case CURLE_URL_MALFORMAT:
		snprintf(err, errlen, "malformed URL: %s", detail);
		break;
	case CURLE_FILESIZE_EXCEEDED:
		snprintf(err, errlen, "response over %d KiB",
		    HTTP_BODY_MAX / 1024);
		break;
	case CURLE_WRITE_ERROR:
		if (req->too_large) {
			snprintf(err, errlen, "response over %d KiB",
			    HTTP_BODY_MAX / 1024);
			break;
		}
		snprintf(err, errlen, "out of memory for the response");
		break;
	default:
		snprintf(err, errlen, "%s: %s", req->host, detail);
		break;
	}
}

/* A transfer ended: tell the caller, then free the request. */
static void
http_request_done(struct http_request *req, CURLcode rc)
{
	struct http	*h = req->http;
	char		 err[HTTP_ERROR_MAX] = "";
	long		 status = 0;

	if (rc == CURLE_OK)
		curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
	else
		http_explain(req, rc, err, sizeof(err));
	curl_multi_remove_handle(h->multi, req->easy);
	TAILQ_REMOVE(&h->requests, req, entry);
	h->in_callback = req;
	req->done_cb((int)status, rc == CURLE_OK && req->body != NULL ?
	    req->body : "", rc == CURLE_OK ? req->body_len : 0,
	    rc == CURLE_OK ? NULL : err, req->done_arg);
	h->in_callback = NULL;
	http_request_free(req);
}

/* Report every transfer libcurl has finished. */
static void
http_check_done(struct http *h)
{
	struct http_request	*req;
	CURLMsg			*msg;
	char			*priv;
	int			 left;

	while (!h->free_pending &&
	    (msg = curl_multi_info_read(h->multi, &left)) != NULL) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		priv = NULL;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
		req = (struct http_request *)(void *)priv;
		if (req != NULL)
			http_request_done(req, msg->data.result);
	}
}

static void	http_destroy(struct http *);

/* Let libcurl act on fd (or on its timeout) and report what finished. */
static void
http_act(struct http *h, curl_socket_t fd, int bitmask)
{
	int	running;

	h->dispatching = 1;
	curl_multi_socket_action(h->multi, fd, bitmask, &running);
	http_check_done(h);
	h->dispatching = 0;
	if (h->free_pending)
		http_destroy(h);
}

/* A socket libcurl waits on is ready. */
static void
http_event_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http	*h = arg;
	int		 bitmask = 0;

	if (what & EV_READ)
		bitmask |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		bitmask |= CURL_CSELECT_OUT;
	http_act(h, fd, bitmask);
}

/* libcurl's timeout came. */
static void
http_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	http_act(arg, CURL_SOCKET_TIMEOUT, 0);
}

/* Stop waiting on a socket. */
static void
http_socket_free(struct http_socket *s)
{
	LIST_REMOVE(s, entry);
	event_free(s->ev);
	free(s);
}

/* libcurl says which events it wants on a socket (or none any more). */
static int
http_socket_cb(CURL *easy, curl_socket_t fd, int what, void *arg,
    void *sockp)
{
	struct http		*h = arg;
	struct http_socket	*s = sockp;
	short			 events = EV_PERSIST;

	(void)easy;
	if (what == CURL_POLL_REMOVE) {
		if (s != NULL)
			http_socket_free(s);
		return 0;
	}
	if (what & CURL_POLL_IN)
		events |= EV_READ;
	if (what & CURL_POLL_OUT)
		events |= EV_WRITE;
	if (s == NULL) {
		if ((s = calloc(1, sizeof(*s))) == NULL)
			return -1;
		s->ev = event_new(h->base, fd, events, http_event_cb, h);
		if (s->ev == NULL) {
			free(s);
			return -1;
		}
		LIST_INSERT_HEAD(&h->sockets, s, entry);
		curl_multi_assign(h->multi, fd, s);
	} else {
		event_del(s->ev);
		event_assign(s->ev, h->base, fd, events, http_event_cb, h);
	}
	return event_add(s->ev, NULL) == 0 ? 0 : -1;
}

/* libcurl wants to be called back after timeout_ms (-1: never). */
static int
http_timer_cb(CURLM *multi, long timeout_ms, void *arg)
{
	struct http	*h = arg;
	struct timeval	 tv;

	(void)multi;
	if (timeout_ms < 0)
		return evtimer_del(h->timer) == 0 ? 0 : -1;
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	return evtimer_add(h->timer, &tv) == 0 ? 0 : -1;
}

/* A client for requests on base. */
struct http *
http_new(struct event_base *base, char *err, size_t errlen)
{
	struct http	*h;

	if ((h = calloc(1, sizeof(*h))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	h->base = base;
	TAILQ_INIT(&h->requests);
	LIST_INIT(&h->sockets);
	if ((h->multi = curl_multi_init()) == NULL ||
	    (h->timer = evtimer_new(base, http_timeout_cb, h)) == NULL) {
		snprintf(err, errlen, "cannot set up libcurl");
		http_destroy(h);
		return NULL;
	}
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, http_socket_cb);
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, http_timer_cb);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
	return h;
}

/* Free h and every request it holds, without a callback. */
static void
http_destroy(struct http *h)
{
	struct http_request	*req;

	while ((req = TAILQ_FIRST(&h->requests)) != NULL)
		http_request_drop(req);
	if (h->multi != NULL)
		curl_multi_cleanup(h->multi);
	/* Sockets of cached connections libcurl closed without a word. */
	while (!LIST_EMPTY(&h->sockets))
		http_socket_free(LIST_FIRST(&h->sockets));
	if (h->timer != NULL)
		event_free(h->timer);
	free(h);
}

/* Cancel every request and free the client (later, inside a callback). */
void
http_free(struct http *h)
{
	struct http_request	*req;

	if (h == NULL)
		return;
	if (h->dispatching) {
		h->free_pending = 1;
		while ((req = TAILQ_FIRST(&h->requests)) != NULL)
			http_request_drop(req);
		return;
	}
	http_destroy(h);
}

/* Build "a=b&c=d" from fields, each escaped; NULL when out of memory. */
static char *
http_form(const char *const *fields, size_t *lenp)
{
	const char *const	*f;
	size_t			 cap = 1, len = 0;
	char			*form;
	int			 n;

	for (f = fields; f[0] != NULL && f[1] != NULL; f += 2)
		cap += 3 * (strlen(f[0]) + strlen(f[1])) + 2;
	if ((form = malloc(cap)) == NULL)
		return NULL;
	form[0] = '\0';
	for (f = fields; f[0] != NULL && f[1] != NULL; f += 2) {
		if (len > 0)
			form[len++] = '&';
		if ((n = http_escape(f[0], form + len, cap - len)) < 0)
			goto fail;
		len += (size_t)n;
		form[len++] = '=';
		if ((n = http_escape(f[1], form + len, cap - len)) < 0)
			goto fail;
		len += (size_t)n;
	}
	form[len] = '\0';
	*lenp = len;
	return form;
fail:
	http_wipe_free(form, cap);
	return NULL;
}

/* Set the options every request has; -1 when libcurl refuses one. */
static int
http_setup(struct http_request *req, const char *url, const char *ca_file)
{
	CURL	*e = req->easy;
	int	 bad = 0;

	bad |= curl_easy_setopt(e, CURLOPT_URL, url) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https") != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "https") !=
	    CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_SSLVERSION,
	    (long)CURL_SSLVERSION_TLSv1_2) != CURLE_OK;
	if (ca_file != NULL && ca_file[0] != '\0') {
		/* ca_file alone: not also the default directory. */
		bad |= curl_easy_setopt(e, CURLOPT_CAINFO, ca_file) != CURLE_OK;
		bad |= curl_easy_setopt(e, CURLOPT_CAPATH, NULL) != CURLE_OK;
	}
	bad |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_TIMEOUT, (long)req->timeout) !=
	    CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE,
	    (curl_off_t)HTTP_BODY_MAX) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_USERAGENT, HTTP_USER_AGENT) !=
	    CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, req->headers) !=
	    CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->form) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
	    (curl_off_t)req->form_len) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, http_write_cb) !=
	    CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_WRITEDATA, req) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, req->curl_error) !=
	    CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)req) != CURLE_OK;
	return bad ? -1 : 0;
}

/* POST a form to url; the answer comes to done_cb from the loop. */
struct http_request *
http_post_form(struct http *h, const char *url, const char *const *fields,
    const char *ca_file, unsigned timeout, http_done_cb *done_cb, void *arg)
{
	struct http_request	*req;
	struct curl_slist	*hdr;

	if ((req = calloc(1, sizeof(*req))) == NULL)
		return NULL;
	req->http = h;
	req->done_cb = done_cb;
	req->done_arg = arg;
	req->timeout = timeout > 0 ? timeout : HTTP_DEFAULT_TIMEOUT;
	http_url_host(url, req->host, sizeof(req->host));
	if ((req->form = http_form(fields, &req->form_len)) == NULL)
		goto fail;
	if ((hdr = curl_slist_append(NULL, "Accept: application/json")) ==
	    NULL)
		goto fail;
	req->headers = hdr;
	if ((hdr = curl_slist_append(req->headers, "Content-Type: "
	    "application/x-www-form-urlencoded")) == NULL)
		goto fail;
	req->headers = hdr;
	if ((req->easy = curl_easy_init()) == NULL ||
	    http_setup(req, url, ca_file) != 0)
		goto fail;
	/* The first step runs from libcurl's timer, never from here. */
	if (curl_multi_add_handle(h->multi, req->easy) != CURLM_OK)
		goto fail;
	TAILQ_INSERT_TAIL(&h->requests, req, entry);
	return req;
fail:
	http_request_free(req);
	return NULL;
}

/* The caller went away: no callback, the transfer stops. */
void
http_cancel(struct http_request *req)
{
	if (req == NULL || req->http->in_callback == req)
		return;
	http_request_drop(req);
}
