/*
 * probe.c - mailtlsd -p: one service's way to its mail server, step by
 * step, as a readable report.
 *
 *   CONNECTING -> [DIALOGUE] -> HANDSHAKING -> [GREETING] -> CAPABILITY
 *              -> LOGOUT -> CLOSING
 *
 * The steps up to TLS are the session's own: uplink.c, with the service's
 * settings and timeouts, reporting each step to the probe's trace; the
 * only difference is that the handshake verifies with authmode OPTIONAL
 * so that a chain that fails can still be shown, after which the probe
 * applies the session's verdict itself (tls_conn_verify_result(), and the
 * pins in the handshake as always).  A server that fails is sent
 * nothing more.  One that passes is asked what a mail client would ask
 * first -- its greeting (implicit TLS), IMAP CAPABILITY, POP3 CAPA or SMTP
 * EHLO -- through the pre-login filter, so the report shows the capability
 * list as a client would see it; then LOGOUT or QUIT and close_notify.
 * Nothing else is ever sent: no credentials, no mail.
 *
 * Each service gets its own event loop and resolver, and the services are
 * probed one after the other so that the report reads in order.
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include <mbedtls/asn1.h>
#include <mbedtls/x509_crt.h>

#include "config.h"
#include "probe.h"
#include "proto.h"
#include "tls.h"
#include "tlsstream.h"
#include "uplink.h"
#include "upstream.h"

#define PROBE_SHOW_MAX	200		/* characters of a peer line shown */
#define PROBE_DN_MAX	400		/* characters of a name shown */
#define PROBE_CHUNK	(16 * 1024)	/* one TLS record */
#define PROBE_DASH	"\xe2\x80\x94"	/* an em dash, in UTF-8 */
#define PROBE_IMAP_CAPA	"P1 CAPABILITY"
#define PROBE_IMAP_BYE	"P2 LOGOUT"

enum probe_step {
	PROBE_CONNECTING,
	PROBE_DIALOGUE,		/* plaintext, up to the STARTTLS go-ahead */
	PROBE_HANDSHAKING,
	PROBE_GREETING,		/* implicit TLS: the server's greeting */
	PROBE_CAPABILITY,	/* the answer to the capability request */
	PROBE_LOGOUT,		/* the answer to LOGOUT / QUIT, or the close */
	PROBE_CLOSING,		/* close_notify queued: flush it */
	PROBE_DONE
};

/* One service's probe. */
struct probe {
	const struct service_config	*sc;
	struct event_base		*base;
	struct evdns_base		*dns;
	struct tls_ctx			*ctx;
	struct uplink			*uplink;
	struct bufferevent		*bev;
	struct tls_stream		*tls;
	struct proto_filter		*filter;
	struct evbuffer			*from_server;	/* decrypted */
	struct evbuffer			*seen;		/* filtered */
	struct evbuffer			*from_client;	/* our commands */
	struct evbuffer			*to_server;	/* ... filtered */
	struct evbuffer			*scratch;
	struct event			*timer;
	enum probe_step			 step;
	int				 eof;		/* the socket ended */
	int				 failed;
	int				 reply_ok;	/* the reply was positive */
	int				 pop3_list;	/* in a CAPA list */
	int				 reported;	/* the reason was shown */
	char				 hostport[CONFIG_HOST_MAX + 8];
	char				 addr[80];
	char				 reason[512];
	char				 line[PROTO_LINE_MAX + 1];
};

static int	probe_pump(struct probe *);

/*
 * Copy at most max characters of src (len bytes) for the report: printable
 * ASCII as it is, a backslash doubled, anything else as \xNN; "..." when
 * cut.
 */
static void
probe_safe(char *dst, size_t dstlen, const char *src, size_t len, size_t max)
{
	static const char	hex[] = "0123456789abcdef";
	size_t			i, o = 0;
	unsigned char		c;

	for (i = 0; i < len && i < max; i++) {
		c = (unsigned char)src[i];
		if (o + 5 >= dstlen)
			break;
		if (c == '\\') {
			dst[o++] = '\\';
			dst[o++] = '\\';
		} else if (c >= ' ' && c < 0x7f)
			dst[o++] = (char)c;
		else {
			dst[o++] = '\\';
			dst[o++] = 'x';
			dst[o++] = hex[c >> 4];
			dst[o++] = hex[c & 0xf];
		}
	}
	dst[o] = '\0';
	if (i < len && o + 4 <= dstlen)
		memcpy(dst + o, "...", 4);
}

/* Print one line of a transcript: "  < text" or "  > text". */
static void
probe_show(const char *dir, const char *line, size_t len)
{
	char	safe[PROBE_SHOW_MAX * 4 + 8];

	probe_safe(safe, sizeof(safe), line, len, PROBE_SHOW_MAX);
	printf("  %s %s\n", dir, safe);
}

/* Print our own bytes (CRLF-terminated lines) as "> " lines. */
static void
probe_show_sent(const char *data, size_t len)
{
	const char	*lf;
	size_t		 n;

	while (len > 0) {
		lf = memchr(data, '\n', len);
		n = lf != NULL ? (size_t)(lf - data) + 1 : len;
		probe_show(">", data, n - (n > 0 && data[n - 1] == '\n') -
		    (n > 1 && data[n - 2] == '\r'));
		data += n;
		len -= n;
	}
}

/* Whether line begins with word (any case), then a space or its end. */
static int
probe_word(const char *line, size_t len, const char *word)
{
	size_t	n = strlen(word);

	return len >= n && strncasecmp(line, word, n) == 0 &&
	    (len == n || line[n] == ' ');
}

/* The server's name as clients would write it, "host:port". */
static void
probe_hostport(const struct service_config *sc, char *buf, size_t len)
{
	snprintf(buf, len, strchr(sc->remote_host, ':') != NULL ? "[%s]:%u" :
	    "%s:%u", sc->remote_host, sc->remote_port);
}

/* ---- The end of a probe ------------------------------------------------ */

/* Free the connection and stop the loop: the probe is over. */
static void
probe_finish(struct probe *p)
{
	uplink_cancel(p->uplink);
	p->uplink = NULL;
	tls_stream_free(p->tls);
	p->tls = NULL;
	if (p->bev != NULL)
		bufferevent_free(p->bev);
	p->bev = NULL;
	proto_filter_free(p->filter);
	p->filter = NULL;
	if (p->timer != NULL)
		evtimer_del(p->timer);
	p->step = PROBE_DONE;
	if (p->base != NULL)
		event_base_loopbreak(p->base);
}

/* The service would not work, for reason: end the probe.  Always -1. */
static int __attribute__((format(printf, 2, 3)))
probe_fail(struct probe *p, const char *fmt, ...)
{
	va_list	ap;

	if (p->step == PROBE_DONE)
		return -1;
	va_start(ap, fmt);
	vsnprintf(p->reason, sizeof(p->reason), fmt, ap);
	va_end(ap);
	p->failed = 1;
	/* Each failed address was listed as it failed. */
	if (p->step != PROBE_CONNECTING && !p->reported)
		printf("  failed: %s\n", p->reason);
	probe_finish(p);
	return -1;
}

/* (Re)start the one timer: seconds for the step that begins. */
static void
probe_arm(struct probe *p, unsigned seconds)
{
	struct timeval	tv = { (time_t)seconds, 0 };

	evtimer_add(p->timer, &tv);
}

/* Queue close_notify; the probe ends once it has left (or at the timer). */
static int
probe_close(struct probe *p)
{
	tls_stream_close_notify(p->tls);
	p->step = PROBE_CLOSING;
	bufferevent_disable(p->bev, EV_READ);
	if (p->eof ||
	    evbuffer_get_length(bufferevent_get_output(p->bev)) == 0) {
		probe_finish(p);
		return -1;
	}
	probe_arm(p, p->sc->handshake_timeout);
	return 0;
}

/* ---- After TLS: greeting, capabilities, goodbye ---------------------------- */

/* Send one command line through the pre-login filter and TLS. */
static int
probe_send(struct probe *p, const char *command)
{
	probe_show(">", command, strlen(command));
	if (evbuffer_add_printf(p->from_client, "%s\r\n", command) < 0)
		return probe_fail(p, "out of memory");
	if (proto_filter_client(p->filter, p->from_client, p->to_server,
	    p->scratch) != 0)
		return probe_fail(p, "%s", proto_filter_reason(p->filter));
	/* What the filter would answer a client itself is not the server's. */
	evbuffer_drain(p->scratch, evbuffer_get_length(p->scratch));
	if (evbuffer_add_buffer(tls_stream_output(p->tls), p->to_server) != 0)
		return probe_fail(p, "out of memory");
	if (tls_stream_encrypt(p->tls, (size_t)-1) != 0)
		return probe_fail(p, "%s", tls_stream_error(p->tls));
	p->reply_ok = 0;
	p->pop3_list = 0;
	return 0;
}

/* Ask for what a mail client asks for first. */
static int
probe_ask_capabilities(struct probe *p)
{
	const struct service_config	*sc = p->sc;
	char				 ehlo[CONFIG_HOST_MAX + 8];

	p->step = PROBE_CAPABILITY;
	probe_arm(p, sc->handshake_timeout);
	switch (sc->protocol) {
	case MAIL_PROTO_IMAP:
		return probe_send(p, PROBE_IMAP_CAPA);
	case MAIL_PROTO_POP3:
		return probe_send(p, "CAPA");
	case MAIL_PROTO_SMTP:
	default:
		snprintf(ehlo, sizeof(ehlo), "EHLO %s", sc->ehlo_name[0] != '\0' ?
		    sc->ehlo_name : CONFIG_DEFAULT_EHLO_NAME);
		return probe_send(p, ehlo);
	}
}

/* Say goodbye politely. */
static int
probe_logout(struct probe *p)
{
	printf("Logout:\n");
	p->step = PROBE_LOGOUT;
	probe_arm(p, p->sc->handshake_timeout);
	return probe_send(p, p->sc->protocol == MAIL_PROTO_IMAP ?
	    PROBE_IMAP_BYE : "QUIT");
}

/*
 * One line a client would see: 1 when it completes the reply of the
 * current step (p->reply_ok says whether it was positive), else 0.
 */
static int
probe_reply_line(struct probe *p, const char *line, size_t len)
{
	const char	*tag;
	size_t		 n;

	switch (p->sc->protocol) {
	case MAIL_PROTO_IMAP:
		if (p->step == PROBE_GREETING) {
			p->reply_ok = probe_word(line, len, "* OK") ||
			    probe_word(line, len, "* PREAUTH");
			return 1;
		}
		tag = p->step == PROBE_CAPABILITY ? "P1" : "P2";
		n = strlen(tag);
		if (len > n && memcmp(line, tag, n) == 0 && line[n] == ' ') {
			p->reply_ok = probe_word(line + n + 1, len - n - 1,
			    "OK");
			return 1;
		}
		return 0;
	case MAIL_PROTO_POP3:
		if (p->pop3_list)
			return len == 1 && line[0] == '.';
		p->reply_ok = probe_word(line, len, "+OK");
		/* CAPA's +OK opens a list that ends with ".". */
		if (p->step == PROBE_CAPABILITY && p->reply_ok) {
			p->pop3_list = 1;
			return 0;
		}
		return 1;
	case MAIL_PROTO_SMTP:
	default:
		if (len < 3 || line[0] < '0' || line[0] > '9' ||
		    line[1] < '0' || line[1] > '9' || line[2] < '0' ||
		    line[2] > '9') {
			p->reply_ok = 0;
			return 1;
		}
		if (len > 3 && line[3] == '-')
			return 0;
		p->reply_ok = memcmp(line, p->step == PROBE_GREETING ? "220" :
		    p->step == PROBE_CAPABILITY ? "250" : "221", 3) == 0;
		return 1;
	}
}

/* A reply is complete: on to the next step. */
static int
probe_reply_done(struct probe *p, const char *last, size_t len)
{
	char	safe[PROBE_SHOW_MAX * 4 + 8];

	switch (p->step) {
	case PROBE_GREETING:
		if (!p->reply_ok) {
			probe_safe(safe, sizeof(safe), last, len, 100);
			return probe_fail(p, "server refused the connection "
			    "after TLS: %s", safe);
		}
		return probe_ask_capabilities(p);
	case PROBE_CAPABILITY:
		if (!p->reply_ok)
			printf("  (the server refused the capability request: "
			    "clients will not see its capabilities)\n");
		return probe_logout(p);
	case PROBE_LOGOUT:
		return probe_close(p);
	default:
		return 0;
	}
}

/* Read every complete line a client would see. */
static int
probe_lines(struct probe *p)
{
	size_t	len;
	int	got;

	while (p->step >= PROBE_GREETING && p->step <= PROBE_LOGOUT &&
	    (got = proto_take_line(p->seen, p->line, &len)) != 0) {
		if (got < 0)
			return probe_fail(p, "server line longer than %d "
			    "bytes", PROTO_LINE_MAX);
		probe_show("<", p->line, len);
		if (probe_reply_line(p, p->line, len) &&
		    probe_reply_done(p, p->line, len) != 0)
			return -1;
	}
	return p->step == PROBE_DONE ? -1 : 0;
}

/* The server ended the TLS session (close_notify or just the socket). */
static int
probe_server_ended(struct probe *p, int how)
{
	const char	*what = how == TLS_CLOSED ? "closed the session" :
			    "closed the connection";

	switch (p->step) {
	case PROBE_GREETING:
		return probe_fail(p, "server %s after TLS, before its "
		    "greeting", what);
	case PROBE_CAPABILITY:
		return probe_fail(p, "server %s after TLS, before answering "
		    "the capability request", what);
	default:
		/* After LOGOUT / QUIT that is what it should do. */
		probe_finish(p);
		return -1;
	}
}

/* Decrypt what the server sent, through the filter, line by line. */
static int
probe_pump(struct probe *p)
{
	struct evbuffer	*in = tls_stream_input(p->tls);
	int		 r;

	for (;;) {
		r = tls_stream_decrypt(p->tls, PROBE_CHUNK);
		if (evbuffer_get_length(in) == 0)
			break;
		if (evbuffer_add_buffer(p->from_server, in) != 0)
			return probe_fail(p, "out of memory");
		if (proto_filter_server(p->filter, p->from_server,
		    p->seen) != 0)
			return probe_fail(p, "%s",
			    proto_filter_reason(p->filter));
		if (probe_lines(p) != 0)
			return -1;
		if (p->step == PROBE_CLOSING)
			return 0;
	}
	switch (r) {
	case TLS_WANT:
		return 0;
	case TLS_CLOSED:
	case TLS_EOF:
		return probe_server_ended(p, r);
	default:
		return probe_fail(p, "%s", tls_stream_error(p->tls));
	}
}

/* ---- The TLS handshake and the report on it ---------------------------- */

/* Seconds from now until t (negative when past); 0 with *ok = 0 if odd. */
static double
probe_seconds_until(const mbedtls_x509_time *t, int *ok)
{
	time_t	when;

	if ((when = tls_x509_time(t)) == (time_t)-1) {
		*ok = 0;
		return 0;
	}
	*ok = 1;
	return difftime(when, time(NULL));
}

/* Print a certificate time with how far it is. */
static void
probe_show_time(const char *label, const mbedtls_x509_time *t, int after)
{
	double	secs;
	long	days;
	int	ok;

	secs = probe_seconds_until(t, &ok);
	printf("      %-11s%04d-%02d-%02d %02d:%02d:%02d UTC", label, t->year,
	    t->mon, t->day, t->hour, t->min, t->sec);
	days = (long)(secs / 86400);
	if (!ok)
		printf("\n");
	else if (after && secs >= 0)
		printf(" (%ld day%s left)\n", days, days == 1 ? "" : "s");
	else if (after)
		printf(" (EXPIRED %ld day%s ago)\n", -days, days == -1 ? "" :
		    "s");
	else
		printf(" (NOT YET VALID: in %ld day%s)\n", days, days == 1 ?
		    "" : "s");
}

/* The subject alternative names of crt as "DNS:a, IP:192.0.2.1". */
static void
probe_sans(const mbedtls_x509_crt *crt, char *out, size_t outlen)
{
	const mbedtls_x509_sequence	*san;
	const mbedtls_x509_buf		*b;
	char				 item[PROBE_SHOW_MAX * 4 + 16];
	char				 text[PROBE_SHOW_MAX * 4 + 8];
	char				 ip[INET6_ADDRSTRLEN];
	size_t				 used = 0;

	out[0] = '\0';
	for (san = &crt->subject_alt_names; san != NULL; san = san->next) {
		b = &san->buf;
		if (b->p == NULL ||
		    (b->tag & 0xc0) != MBEDTLS_ASN1_CONTEXT_SPECIFIC)
			continue;
		switch (b->tag & MBEDTLS_ASN1_TAG_VALUE_MASK) {
		case 1:		/* rfc822Name */
		case 2:		/* dNSName */
		case 6:		/* uniformResourceIdentifier */
			probe_safe(text, sizeof(text), (const char *)b->p,
			    b->len, PROBE_SHOW_MAX);
			snprintf(item, sizeof(item), "%s:%s",
			    (b->tag & MBEDTLS_ASN1_TAG_VALUE_MASK) == 2 ?
			    "DNS" : (b->tag & MBEDTLS_ASN1_TAG_VALUE_MASK) ==
			    1 ? "email" : "URI", text);
			break;
		case 7:		/* iPAddress */
			if ((b->len != 4 && b->len != 16) ||
			    inet_ntop(b->len == 4 ? AF_INET : AF_INET6, b->p,
			    ip, sizeof(ip)) == NULL)
				snprintf(item, sizeof(item), "IP:(malformed)");
			else
				snprintf(item, sizeof(item), "IP:%s", ip);
			break;
		default:
			continue;
		}
		if (used + strlen(item) + 8 >= outlen) {
			snprintf(out + used, outlen - used, ", ...");
			return;
		}
		used += (size_t)snprintf(out + used, outlen - used, "%s%s",
		    used > 0 ? ", " : "", item);
	}
	if (used == 0)
		snprintf(out, outlen, "(none)");
}

/* Print one certificate of the chain the server sent. */
static void
probe_show_cert(int i, const mbedtls_x509_crt *crt)
{
	char	dn[1024], safe[PROBE_DN_MAX * 4 + 8], sans[2048];
	char	pin[64];
	int	n;

	n = mbedtls_x509_dn_gets(dn, sizeof(dn), &crt->subject);
	probe_safe(safe, sizeof(safe), dn, n < 0 ? 0 : (size_t)n,
	    PROBE_DN_MAX);
	printf("  [%d] subject:   %s\n", i, n < 0 ? "(unreadable)" : safe);
	n = mbedtls_x509_dn_gets(dn, sizeof(dn), &crt->issuer);
	probe_safe(safe, sizeof(safe), dn, n < 0 ? 0 : (size_t)n,
	    PROBE_DN_MAX);
	printf("      issuer:    %s\n", n < 0 ? "(unreadable)" : safe);
	probe_sans(crt, sans, sizeof(sans));
	printf("      SANs:      %s\n", sans);
	if (probe_seconds_until(&crt->valid_from, &n) > 0 && n)
		probe_show_time("not before:", &crt->valid_from, 0);
	probe_show_time("not after:", &crt->valid_to, 1);
	if (tls_cert_pin(crt, pin, sizeof(pin)) == 0)
		printf("      key pin:   %s\n", pin);
}

/* Print the chain; the leaf's pin into pin (or ""). */
static void
probe_show_chain(struct tls_conn *conn, char *pin, size_t pinlen)
{
	const struct mbedtls_x509_crt	*crt, *chain;
	int				 i, n = 0;

	chain = tls_conn_peer_chain(conn);
	for (crt = chain; crt != NULL && crt->version != 0; crt = crt->next)
		n++;
	printf("Certificate chain sent by the server (%d certificate%s, "
	    "the server's own first):\n", n, n == 1 ? "" : "s");
	pin[0] = '\0';
	for (crt = chain, i = 0; crt != NULL && crt->version != 0;
	    crt = crt->next, i++)
		probe_show_cert(i, crt);
	if (n > 0 && tls_cert_pin(chain, pin, pinlen) != 0)
		pin[0] = '\0';
}

/*
 * The handshake is over, and the pins failed (pin_error) or not (NULL):
 * report on it; 0 when a session would go on, else -1 with the reason in
 * why.
 */
static int
probe_tls_report(struct probe *p, struct tls_conn *conn,
    const char *pin_error, char *why, size_t whylen)
{
	const struct service_config	*sc = p->sc;
	char				 verify[512];
	char				 pin[64];
	int				 vr;

	printf("  version:       %s\n", tls_conn_version(conn));
	printf("  cipher suite:  %s\n", tls_conn_ciphersuite(conn));
	printf("  resumed:       %s\n", tls_conn_resumed(conn) ? "yes" :
	    "no (a new session)");
	probe_show_chain(conn, pin, sizeof(pin));
	vr = tls_conn_verify_result(conn, verify, sizeof(verify));
	if (vr == 0)
		printf("Verification: verified (chain to a trusted CA of "
		    "ca_file, name %s)\n", sc->server_name);
	else if (vr < 0)
		printf("Verification: NOT checked (verify = no): anyone on "
		    "the path could read the passwords\n");
	else
		printf("Verification: FAILED: %s\n", verify);
	if (sc->n_pins == 0)
		printf("Pins: none configured (pin_sha256)\n");
	else if (pin_error != NULL)
		printf("Pins: FAILED: %s\n", pin_error);
	else
		printf("Pins: matched (a key of the chain matches one of "
		    "%d pin_sha256)\n", sc->n_pins);
	if (pin[0] != '\0')
		printf("Pin of the server's key, for pin_sha256 (pins are "
		    "checked on top of verification):\n  pin_sha256 = %s\n",
		    pin);
	p->reported = 1;	/* the lines above said what failed */
	if (vr > 0 || pin_error != NULL) {
		snprintf(why, whylen, "%s", vr > 0 ? verify : pin_error);
		return -1;
	}
	return 0;
}

/* TLS is up and the server passed: on to what a client sees. */
static int
probe_after_tls(struct probe *p)
{
	if ((p->filter = proto_filter_new(p->sc->protocol)) == NULL)
		return probe_fail(p, "out of memory");
	if (p->sc->tls == TLS_MODE_IMPLICIT) {
		printf("Greeting and capabilities a mail client will see "
		    "(through mailtlsd's filter):\n");
		proto_filter_expect_greeting(p->filter);
		p->step = PROBE_GREETING;
		p->reply_ok = 0;
		probe_arm(p, p->sc->handshake_timeout);
	} else {
		printf("Capabilities a mail client will see (through "
		    "mailtlsd's filter; mailtlsd greets it itself):\n");
		if (probe_ask_capabilities(p) != 0)
			return -1;
	}
	return probe_pump(p);
}

/* ---- Events ---------------------------------------------------------------- */

/* Move the current step on with what has arrived. */
static void
probe_input(struct probe *p)
{
	struct evbuffer	*in;

	switch (p->step) {
	case PROBE_GREETING:
	case PROBE_CAPABILITY:
	case PROBE_LOGOUT:
		probe_pump(p);
		break;
	case PROBE_CLOSING:
		in = bufferevent_get_input(p->bev);
		evbuffer_drain(in, evbuffer_get_length(in));
		break;
	case PROBE_CONNECTING:
	case PROBE_DIALOGUE:
	case PROBE_HANDSHAKING:
	case PROBE_DONE:
		break;		/* the uplink's, or over */
	}
}

/* Bytes arrived from the server. */
static void
probe_read_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	probe_input(arg);
}

/* The output buffer drained: close_notify has left. */
static void
probe_write_cb(struct bufferevent *bev, void *arg)
{
	struct probe	*p = arg;

	if (p->step == PROBE_CLOSING &&
	    evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		probe_finish(p);
}

/* The socket ended or failed. */
static void
probe_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct probe	*p = arg;
	int		 err = EVUTIL_SOCKET_ERROR();

	(void)bev;
	p->eof = 1;
	tls_stream_set_eof(p->tls);
	if (p->step == PROBE_CLOSING) {
		probe_finish(p);
		return;
	}
	if (what & BEV_EVENT_ERROR) {
		probe_fail(p, "%s after TLS with %s",
		    evutil_socket_error_to_string(err), p->addr);
		return;
	}
	probe_input(p);
}

/* The deadline of the current step passed. */
static void
probe_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct probe	*p = arg;
	unsigned	 secs = p->sc->handshake_timeout;

	(void)fd;
	(void)what;
	switch (p->step) {
	case PROBE_GREETING:
		probe_fail(p, "no greeting from the server within %us after "
		    "TLS", secs);
		break;
	case PROBE_CAPABILITY:
		probe_fail(p, "no complete answer to the capability request "
		    "within %us", secs);
		break;
	case PROBE_LOGOUT:
		printf("  (no answer within %us: closing)\n", secs);
		probe_close(p);
		break;
	case PROBE_CLOSING:
		probe_finish(p);
		break;
	case PROBE_CONNECTING:
	case PROBE_DIALOGUE:
	case PROBE_HANDSHAKING:
	case PROBE_DONE:
		break;		/* the uplink bounds its own steps */
	}
}

/* Each step of reaching the server, as the report shows it. */
static void
probe_uplink_trace(enum uplink_trace what, const char *text, size_t len,
    void *arg)
{
	struct probe	*p = arg;

	switch (what) {
	case UPLINK_TRACE_STEP:
		printf("  %.*s\n", (int)len, text);
		break;
	case UPLINK_TRACE_DIALOGUE:
		p->step = PROBE_DIALOGUE;
		printf("STARTTLS dialogue (plaintext, no credentials; "
		    "handshake_timeout %us with the TLS handshake):\n",
		    p->sc->handshake_timeout);
		break;
	case UPLINK_TRACE_RECEIVED:
		probe_show("<", text, len);
		break;
	case UPLINK_TRACE_SENT:
		probe_show_sent(text, len);
		break;
	case UPLINK_TRACE_HANDSHAKE:
		if (p->sc->tls == TLS_MODE_STARTTLS)
			printf("TLS handshake (server_name %s):\n",
			    p->sc->server_name);
		else
			printf("TLS handshake (server_name %s, "
			    "handshake_timeout %us):\n", p->sc->server_name,
			    p->sc->handshake_timeout);
		p->step = PROBE_HANDSHAKING;
		break;
	}
}

/* TLS is up: report on it, then ask what a client would ask. */
static void
probe_uplink_ready(struct uplink *u, void *arg)
{
	struct probe	*p = arg;
	char		 why[512];

	p->uplink = NULL;
	p->eof = uplink_take(u, &p->bev, &p->tls);
	snprintf(p->addr, sizeof(p->addr), "%s", uplink_peer(u));
	bufferevent_setcb(p->bev, probe_read_cb, probe_write_cb,
	    probe_event_cb, p);
	if (probe_tls_report(p, tls_stream_conn(p->tls), NULL, why,
	    sizeof(why)) != 0) {
		probe_fail(p, "%s", why);
		return;
	}
	probe_after_tls(p);
}

/* The server could not be reached securely; show its chain if it sent one. */
static void
probe_uplink_failed(struct uplink *u, const char *reason, void *arg)
{
	struct probe		*p = arg;
	struct tls_stream	*tls = uplink_tls(u);
	char			 why[512];

	p->uplink = NULL;
	/* The chain is there when the handshake ended on the pins. */
	if (tls != NULL && tls_conn_peer_chain(tls_stream_conn(tls)) != NULL) {
		snprintf(why, sizeof(why), "%s", reason);
		(void)probe_tls_report(p, tls_stream_conn(tls), reason, why,
		    sizeof(why));
		probe_fail(p, "%s", why);
		return;
	}
	probe_fail(p, "%s", reason);
}

/* ---- One service --------------------------------------------------------- */

/* Print what the probe is about to do. */
static void
probe_header(const struct probe *p)
{
	const struct service_config	*sc = p->sc;

	printf("== [%s] %s to %s, %s\n", sc->name,
	    sc->protocol == MAIL_PROTO_IMAP ? "IMAP" :
	    sc->protocol == MAIL_PROTO_POP3 ? "POP3" : "SMTP", p->hostport,
	    sc->tls == TLS_MODE_STARTTLS ? "STARTTLS" : "implicit TLS");
	printf("   server_name %s, verify %s, min_tls %s, ", sc->server_name,
	    sc->verify ? "yes" : "no", sc->min_tls == TLS_VERSION_1_3 ?
	    "1.3" : "1.2");
	if (sc->n_pins > 0)
		printf("pin_sha256 %d, ", sc->n_pins);
	else
		printf("pin_sha256 none, ");
	printf("client_cert %s\n", sc->client_cert[0] != '\0' ?
	    sc->client_cert : "none");
	printf("Connect (connect_timeout %us per address):\n",
	    sc->connect_timeout);
}

/* Allocate what the probe needs; -1 with a reason. */
static int
probe_setup(struct probe *p)
{
	char	err[512];

	if ((p->ctx = tls_ctx_new_probe(p->sc, err, sizeof(err))) == NULL) {
		snprintf(p->reason, sizeof(p->reason), "%s", err);
		return -1;
	}
	p->base = event_base_new();
	if (p->base != NULL)
		p->dns = upstream_dns_new(p->base);
	if (p->base != NULL)
		p->timer = evtimer_new(p->base, probe_timer_cb, p);
	p->from_server = evbuffer_new();
	p->seen = evbuffer_new();
	p->from_client = evbuffer_new();
	p->to_server = evbuffer_new();
	p->scratch = evbuffer_new();
	if (p->base == NULL || p->dns == NULL || p->timer == NULL ||
	    p->from_server == NULL || p->seen == NULL ||
	    p->from_client == NULL || p->to_server == NULL ||
	    p->scratch == NULL) {
		snprintf(p->reason, sizeof(p->reason), "out of memory");
		return -1;
	}
	return 0;
}

/* Free what probe_setup() made. */
static void
probe_teardown(struct probe *p)
{
	struct evbuffer	*bufs[] = { p->from_server, p->seen, p->from_client,
			    p->to_server, p->scratch };
	size_t		 i;

	if (p->step != PROBE_DONE)
		probe_finish(p);
	for (i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++)
		if (bufs[i] != NULL)
			evbuffer_free(bufs[i]);
	if (p->timer != NULL)
		event_free(p->timer);
	if (p->dns != NULL)
		evdns_base_free(p->dns, 1);
	if (p->base != NULL)
		event_base_free(p->base);
	tls_ctx_free(p->ctx);
}

/* Probe one service and print its verdict; 0 when it would work. */
static int
probe_service(const struct service_config *sc)
{
	struct uplink_callbacks	 cb = {
		.ready = probe_uplink_ready,
		.failed = probe_uplink_failed,
		.trace = probe_uplink_trace,
	};
	struct probe		*p;
	int			 ok;

	if ((p = calloc(1, sizeof(*p))) == NULL) {
		printf("VERDICT %s: FAIL %s out of memory\n", sc->name,
		    PROBE_DASH);
		return -1;
	}
	p->sc = sc;
	cb.arg = p;
	probe_hostport(sc, p->hostport, sizeof(p->hostport));
	probe_header(p);
	if (probe_setup(p) != 0)
		p->failed = 1;
	else {
		p->uplink = uplink_start(p->base, p->dns, sc, p->ctx, &cb);
		if (p->uplink == NULL) {
			snprintf(p->reason, sizeof(p->reason),
			    "out of memory");
			p->failed = 1;
		} else if (event_base_dispatch(p->base) < 0 ||
		    p->step != PROBE_DONE) {
			snprintf(p->reason, sizeof(p->reason), "the probe's "
			    "event loop stopped early");
			p->failed = 1;
		}
	}
	if (p->failed)
		printf("VERDICT %s: FAIL %s %s\n", sc->name, PROBE_DASH,
		    p->reason);
	else if (!sc->verify)
		printf("VERDICT %s: OK %s clients will reach %s, but its "
		    "certificate is NOT verified (verify = no)\n", sc->name,
		    PROBE_DASH, p->hostport);
	else
		printf("VERDICT %s: OK %s clients will reach %s securely\n",
		    sc->name, PROBE_DASH, p->hostport);
	fflush(stdout);
	ok = !p->failed;
	probe_teardown(p);
	free(p);
	return ok ? 0 : -1;
}

/* Probe the named service or all; the exit status. */
int
probe_run(const struct config *cfg, const char *name)
{
	const struct service_config	*sc;
	int				 i, failed = 0;

	if (strcmp(name, "all") != 0) {
		if ((sc = config_find_service(cfg, name)) == NULL) {
			fprintf(stderr, "mailtlsd: -p %s: %s has no service "
			    "of that name; its services:", name, cfg->path);
			for (i = 0; i < cfg->n_services; i++)
				fprintf(stderr, " %s", cfg->services[i].name);
			fprintf(stderr, " (or -p all)\n");
			return 1;
		}
		return probe_service(sc) == 0 ? 0 : 1;
	}
	if (cfg->n_services == 0) {
		fprintf(stderr, "mailtlsd: -p all: %s defines no service\n",
		    cfg->path);
		return 1;
	}
	for (i = 0; i < cfg->n_services; i++) {
		if (i > 0)
			printf("\n");
		if (probe_service(&cfg->services[i]) != 0)
			failed = 1;
	}
	return failed ? 1 : 0;
}
