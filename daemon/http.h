/*
 * http.h - HTTPS requests to OAuth2 endpoints from the event loop.
 *
 * libcurl's multi interface driven by libevent: name resolution, connect,
 * TLS and transfer never block the loop.  Certificates and host names are
 * verified against ca_file (the system's bundle by default), every request
 * has a timeout, and a response body over HTTP_BODY_MAX fails the request.
 */
#ifndef MAILTLSD_HTTP_H
#define MAILTLSD_HTTP_H

#include <stddef.h>

struct event_base;
struct http;
struct http_request;

#define HTTP_BODY_MAX	(64 * 1024)

/*
 * status is the HTTP status, or 0 when no response arrived (error says
 * why: DNS, connect, TLS verification, timeout, too large).  body is NUL
 * terminated, valid during the call.  Never called from inside http_post().
 */
typedef void	http_done_cb(int status, const char *body, size_t len,
		    const char *error, void *arg);

/*
 * libcurl's global state: once in main(), before any thread starts (the
 * token store's worker, libcurl's resolver threads).  0, or -1.
 */
int		 http_global_init(void);
void		 http_global_cleanup(void);

struct http	*http_new(struct event_base *, char *err, size_t errlen);
void		 http_free(struct http *);	/* cancels every request */

/*
 * POST an application/x-www-form-urlencoded body built from fields
 * (name, value, name, value, ..., NULL; each escaped here) to url (https
 * only).  NULL: no memory.
 */
struct http_request *http_post_form(struct http *, const char *url,
		    const char *const *fields, const char *ca_file,
		    unsigned timeout, http_done_cb *, void *arg);

/* The callback will not be called; no-op inside its own callback. */
void		 http_cancel(struct http_request *);

/*
 * Percent-encode in (every byte but ALPHA DIGIT - . _ ~) into out, for a
 * URL's query or a form body: the length written, or -1 (out too small,
 * left empty).
 */
int		 http_escape(const char *in, char *out, size_t outlen);

#endif /* MAILTLSD_HTTP_H */
