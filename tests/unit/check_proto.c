/*
 * check_proto.c - unit tests of the protocol code common to IMAP, POP3 and
 * SMTP: refusal lines, the limits of the STARTTLS dialogues and of the
 * pre-login filters, the greetings mailtlsd writes; and what runs the
 * tables of check_proto_imap.c, check_proto_pop3.c and check_proto_smtp.c
 * (dialogues, greetings a pooled connection may hold, filter transcripts).
 *
 * Each filter transcript runs whole, split in two at every byte position,
 * and one byte at a time, the way a session would run it (server bytes
 * through proto_filter_server(), then the client's through
 * proto_filter_client(), then a plain copy once the filter is done); every
 * way must give the same bytes to both sides.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "check_proto.h"
#include "proto.h"
#include "unit.h"

START_TEST(test_unavailable_lines)
{
	char	line[128];

	ck_assert_int_gt(proto_format_unavailable(line, sizeof(line),
	    MAIL_PROTO_IMAP, "down"), 0);
	ck_assert_str_eq(line, "* BYE [UNAVAILABLE] down\r\n");
	ck_assert_int_gt(proto_format_unavailable(line, sizeof(line),
	    MAIL_PROTO_POP3, "down"), 0);
	ck_assert_str_eq(line, "-ERR [SYS/TEMP] down\r\n");
	ck_assert_int_gt(proto_format_unavailable(line, sizeof(line),
	    MAIL_PROTO_SMTP, "down"), 0);
	ck_assert_str_eq(line, "421 4.7.0 down\r\n");
}
END_TEST

START_TEST(test_unavailable_truncation_refused)
{
	char	line[16];

	/* A line that would not fit is refused, never cut without CRLF. */
	ck_assert_int_eq(proto_format_unavailable(line, sizeof(line),
	    MAIL_PROTO_IMAP, "a long reason that does not fit"), -1);
}
END_TEST

START_TEST(test_unavailable_evbuffer)
{
	struct evbuffer	*buf = evbuffer_new();
	char		 out[64];
	size_t		 len;

	ck_assert_int_eq(proto_write_unavailable(buf, MAIL_PROTO_SMTP, "x"), 0);
	len = evbuffer_get_length(buf);
	ck_assert_uint_eq(len, strlen("421 4.7.0 x\r\n"));
	evbuffer_remove(buf, out, len);
	ck_assert_int_eq(memcmp(out, "421 4.7.0 x\r\n", len), 0);
	evbuffer_free(buf);
}
END_TEST

/* The whole content of buf as a NUL-terminated string (to free). */
char *
unit_drain_string(struct evbuffer *buf)
{
	size_t	 len = evbuffer_get_length(buf);
	char	*s = malloc(len + 1);

	ck_assert_ptr_nonnull(s);
	evbuffer_remove(buf, s, len);
	s[len] = '\0';
	return s;
}

/* A service of the given protocol, as the configuration would give it. */
const struct service_config *
unit_service(enum mail_protocol protocol)
{
	static struct service_config	sc;

	memset(&sc, 0, sizeof(sc));
	sc.protocol = protocol;
	sc.tls = TLS_MODE_STARTTLS;
	snprintf(sc.server_name, sizeof(sc.server_name), "mail.example.com");
	snprintf(sc.ehlo_name, sizeof(sc.ehlo_name), "client.example");
	return &sc;
}

/* Run one dialogue table entry. */
void
check_dialogue_case(const struct dialogue_case *c)
{
	struct proto_dialogue		*d;
	struct evbuffer			*out = evbuffer_new();
	enum proto_verdict		 v = PROTO_MORE;
	char				*sent;
	int				 i;

	d = proto_dialogue_new(unit_service(c->protocol));
	ck_assert_ptr_nonnull(d);
	ck_assert_str_eq(proto_dialogue_state(d), "GREETING");
	for (i = 0; c->lines[i] != NULL; i++) {
		ck_assert_int_eq(v, PROTO_MORE);
		v = proto_dialogue_line(d, c->lines[i], strlen(c->lines[i]),
		    out);
	}
	ck_assert_int_eq(v, c->verdict);
	if (c->reason != NULL)
		ck_assert_msg(strncmp(proto_dialogue_reason(d), c->reason,
		    strlen(c->reason)) == 0, "reason \"%s\", not \"%s\"",
		    proto_dialogue_reason(d), c->reason);
	sent = unit_drain_string(out);
	ck_assert_str_eq(sent, c->sent);
	ck_assert_str_eq(proto_dialogue_state(d), c->state);
	free(sent);
	/* A finished dialogue takes no more lines. */
	if (v != PROTO_MORE) {
		ck_assert_int_eq(proto_dialogue_line(d, "* OK", 4, out),
		    PROTO_FAIL);
		ck_assert_str_eq(proto_dialogue_reason(d),
		    "dialogue already finished");
		ck_assert_uint_eq(evbuffer_get_length(out), 0);
	}
	proto_dialogue_free(d);
	evbuffer_free(out);
}

/* Feed n copies of line after a first line; the verdict of the last. */
static enum proto_verdict
dialogue_flood(enum mail_protocol protocol, const char *first,
    const char *line, int n, char *reason, size_t reasonlen)
{
	struct proto_dialogue	*d = proto_dialogue_new(unit_service(protocol));
	struct evbuffer		*out = evbuffer_new();
	enum proto_verdict	 v;
	int			 i;

	v = proto_dialogue_line(d, first, strlen(first), out);
	for (i = 0; i < n && v == PROTO_MORE; i++)
		v = proto_dialogue_line(d, line, strlen(line), out);
	snprintf(reason, reasonlen, "%s", proto_dialogue_reason(d));
	proto_dialogue_free(d);
	evbuffer_free(out);
	return v;
}

START_TEST(test_dialogue_too_many_lines)
{
	char	reason[256];

	/* PROTO_DIALOGUE_LINES lines in all are fine, one more is not. */
	ck_assert_int_eq(dialogue_flood(MAIL_PROTO_IMAP, "* OK hi",
	    "* 1 EXISTS", PROTO_DIALOGUE_LINES - 1, reason, sizeof(reason)),
	    PROTO_MORE);
	ck_assert_int_eq(dialogue_flood(MAIL_PROTO_IMAP, "* OK hi",
	    "* 1 EXISTS", PROTO_DIALOGUE_LINES, reason, sizeof(reason)),
	    PROTO_FAIL);
	ck_assert_str_eq(reason, "too many lines before STARTTLS");
	ck_assert_int_eq(dialogue_flood(MAIL_PROTO_SMTP, "220-hi",
	    "220-more", PROTO_DIALOGUE_LINES, reason, sizeof(reason)),
	    PROTO_FAIL);
	ck_assert_str_eq(reason, "too many lines before STARTTLS");
	ck_assert_int_eq(dialogue_flood(MAIL_PROTO_SMTP, "220 hi",
	    "250-X", PROTO_DIALOGUE_LINES, reason, sizeof(reason)),
	    PROTO_FAIL);
	ck_assert_str_eq(reason, "too many lines before STARTTLS");
}
END_TEST

START_TEST(test_greetings)
{
	struct evbuffer	*out = evbuffer_new();
	char		*g;

	ck_assert_int_eq(proto_write_greeting(out, unit_service(MAIL_PROTO_IMAP)),
	    0);
	g = unit_drain_string(out);
	ck_assert_str_eq(g, "* OK mailtlsd: IMAP4rev1 service ready via TLS "
	    "to mail.example.com\r\n");
	ck_assert_ptr_null(strstr(g, "CAPABILITY"));
	ck_assert_ptr_null(strchr(g, '['));
	free(g);
	ck_assert_int_eq(proto_write_greeting(out, unit_service(MAIL_PROTO_POP3)),
	    0);
	g = unit_drain_string(out);
	ck_assert_str_eq(g, "+OK mailtlsd: POP3 service ready via TLS to "
	    "mail.example.com\r\n");
	ck_assert_ptr_null(strchr(g, '<'));	/* no APOP timestamp */
	free(g);
	ck_assert_int_eq(proto_write_greeting(out, unit_service(MAIL_PROTO_SMTP)),
	    0);
	g = unit_drain_string(out);
	ck_assert_str_eq(g, "220 mail.example.com ESMTP ready (mailtlsd, TLS "
	    "to the server)\r\n");
	free(g);
	evbuffer_free(out);
}
END_TEST

/* Append text one byte per chain: every line end straddles chains. */
static void
add_in_pieces(struct evbuffer *buf, const char *text)
{
	size_t	i;

	for (i = 0; text[i] != '\0'; i++)
		evbuffer_add_reference(buf, text + i, 1, NULL, NULL);
}

/* Check one greeting_case (number i in its table). */
void
check_greeting_case(const struct greeting_case *c, int i)
{
	struct evbuffer			*buf = evbuffer_new();
	int				 got;

	evbuffer_add(buf, c->text, strlen(c->text));
	got = proto_greeting_complete(c->protocol, buf);
	ck_assert_msg(got == c->want, "case %d (%s): got %d, want %d", i,
	    c->text, got, c->want);
	/* It looks, never takes. */
	ck_assert_uint_eq(evbuffer_get_length(buf), strlen(c->text));
	evbuffer_free(buf);

	buf = evbuffer_new();
	add_in_pieces(buf, c->text);
	ck_assert_int_eq(proto_greeting_complete(c->protocol, buf), c->want);
	evbuffer_free(buf);
}

START_TEST(test_greeting_complete_prefixes)
{
	static const char *const	smtp = "220-mail.test ESMTP\r\n"
	    "220-second\r\n220 mail.test ready\r\n";
	static const char *const	imap = "* OK [CAPABILITY IMAP4rev1] "
	    "ready\r\n";
	struct evbuffer			*buf;
	size_t				 n;

	/* Every proper prefix of a greeting is incomplete, never too much. */
	for (n = 0; n < strlen(smtp); n++) {
		buf = evbuffer_new();
		evbuffer_add(buf, smtp, n);
		ck_assert_msg(proto_greeting_complete(MAIL_PROTO_SMTP, buf) ==
		    0, "SMTP prefix of %zu bytes", n);
		evbuffer_free(buf);
	}
	for (n = 0; n < strlen(imap); n++) {
		buf = evbuffer_new();
		evbuffer_add(buf, imap, n);
		ck_assert_msg(proto_greeting_complete(MAIL_PROTO_IMAP, buf) ==
		    0, "IMAP prefix of %zu bytes", n);
		ck_assert_msg(proto_greeting_complete(MAIL_PROTO_POP3, buf) ==
		    0, "POP3 prefix of %zu bytes", n);
		evbuffer_free(buf);
	}
}
END_TEST

/* The bytes of a transcript run, and how the filter ended. */
struct result {
	struct evbuffer	*to_client;
	struct evbuffer	*to_server;
	struct evbuffer	*refused;	/* the texts reported */
	int		 done;
	char		 fail[256];
};

/* The session's part in a refusal: keep its text, add some words. */
static const char *
unit_refusal(const char *server_text, void *arg)
{
	struct result	*r = arg;

	evbuffer_add_printf(r->refused, "%s\n", server_text);
	if (strstr(server_text, "5.7.139") != NULL ||
	    strstr(server_text, "5.7.30") != NULL)
		return UNIT_WORDS_OAUTH2;
	if (strstr(server_text, "Application-specific password") != NULL)
		return UNIT_WORDS_APP_PW;
	return NULL;
}

/* The buffers a session would hold. */
struct harness {
	struct proto_filter	*f;
	struct evbuffer		*from_server;
	struct evbuffer		*from_client;
	struct result		*r;
};

/* Run the filter over what has arrived, as a session would. */
static void
harness_pump(struct harness *h)
{
	struct result	*r = h->r;

	if (r->fail[0] != '\0')
		return;
	if (!r->done) {
		if (proto_filter_server(h->f, h->from_server,
		    r->to_client) != 0 || proto_filter_client(h->f,
		    h->from_client, r->to_server, r->to_client) != 0) {
			snprintf(r->fail, sizeof(r->fail), "%s",
			    proto_filter_reason(h->f));
			return;
		}
		r->done = proto_filter_done(h->f);
	}
	if (r->done) {
		/* Then the session copies plainly. */
		evbuffer_add_buffer(r->to_client, h->from_server);
		evbuffer_add_buffer(r->to_server, h->from_client);
	}
}

/* Deliver len bytes from one side. */
static void
harness_deliver(struct harness *h, char dir, const char *data, size_t len)
{
	evbuffer_add(dir == 'S' ? h->from_server : h->from_client, data,
	    len);
	harness_pump(h);
}

/* The name of a login state, as the transcripts write it. */
static const char *
login_name(enum proto_login login)
{
	switch (login) {
	case PROTO_LOGIN_NONE:
		return "NONE";
	case PROTO_LOGIN_WANTED:
		return "WANTED";
	case PROTO_LOGIN_SENT:
		return "SENT";
	case PROTO_LOGIN_REJECTED:
		return "REJECTED";
	}
	return "?";
}

/* What the session does, or what must hold, between two deliveries. */
static void
harness_act(struct harness *h, const struct transcript *t,
    const struct step *st)
{
	const char	*user, *password;
	size_t		 pwlen;

	if (h->r->fail[0] != '\0' || h->r->done)
		return;
	proto_filter_login_credentials(h->f, &user, &password, &pwlen);
	switch (st->dir) {
	case 'T':
	case 't':
		ck_assert_msg(proto_filter_login_token(h->f, st->data,
		    h->r->to_server) == (st->dir == 'T' ? 0 : -1),
		    "%s: token %s", t->name, st->data);
		break;
	case 'R':
	case 'r':
	case 'A':
		ck_assert_msg(proto_filter_login_refuse(h->f, st->dir == 'r',
		    st->dir == 'A', st->data, h->r->to_client) == 0,
		    "%s: refuse", t->name);
		break;
	case 'L':
		ck_assert_msg(strcmp(login_name(proto_filter_login(h->f)),
		    st->data) == 0, "%s: login %s, not %s", t->name,
		    login_name(proto_filter_login(h->f)), st->data);
		return;
	case 'U':
		ck_assert_msg(strcmp(user, st->data) == 0, "%s: user \"%s\"",
		    t->name, user);
		return;
	case 'P':
		ck_assert_msg(pwlen == strlen(st->data) &&
		    strcmp(password, st->data) == 0, "%s: password \"%s\"",
		    t->name, password);
		return;
	case 'E':
		ck_assert_msg(strcmp(proto_filter_login_error(h->f),
		    st->data) == 0, "%s: error \"%s\"", t->name,
		    proto_filter_login_error(h->f));
		return;
	default:
		ck_abort_msg("%s: step '%c'", t->name, st->dir);
	}
	harness_pump(h);
}

enum feed_mode {
	FEED_WHOLE,	/* each step at once */
	FEED_CUT,	/* one step split at a byte position */
	FEED_BYTES	/* one byte at a time */
};

/* Run a transcript; with FEED_CUT the byte at cut starts a new chunk. */
static void
run_transcript(const struct transcript *t, int oauth2, enum feed_mode mode,
    size_t cut, struct result *r)
{
	struct harness	h;
	size_t		pos = 0, len, i;
	int		s;

	memset(r, 0, sizeof(*r));
	r->to_client = evbuffer_new();
	r->to_server = evbuffer_new();
	r->refused = evbuffer_new();
	h.r = r;
	h.f = proto_filter_new(t->protocol);
	ck_assert_ptr_nonnull(h.f);
	proto_filter_on_refusal(h.f, unit_refusal, r);
	if (t->greeting)
		proto_filter_expect_greeting(h.f);
	h.from_server = evbuffer_new();
	h.from_client = evbuffer_new();
	if (oauth2)
		ck_assert_int_eq(proto_filter_use_oauth2(h.f), 0);
	for (s = 0; s < TRANSCRIPT_STEPS && t->steps[s].data != NULL; s++) {
		const struct step	*st = &t->steps[s];

		len = strlen(st->data);
		if (st->dir != 'S' && st->dir != 'C') {
			harness_act(&h, t, st);
			continue;
		}
		if (mode == FEED_BYTES) {
			for (i = 0; i < len; i++)
				harness_deliver(&h, st->dir, st->data + i, 1);
		} else if (mode == FEED_CUT && cut > pos && cut < pos + len) {
			harness_deliver(&h, st->dir, st->data, cut - pos);
			harness_deliver(&h, st->dir, st->data + cut - pos,
			    len - (cut - pos));
		} else
			harness_deliver(&h, st->dir, st->data, len);
		pos += len;
	}
	proto_filter_free(h.f);
	evbuffer_free(h.from_server);
	evbuffer_free(h.from_client);
}

/* The total bytes of a transcript. */
static size_t
transcript_len(const struct transcript *t)
{
	size_t	n = 0;
	int	s;

	for (s = 0; s < TRANSCRIPT_STEPS && t->steps[s].data != NULL; s++)
		if (t->steps[s].dir == 'S' || t->steps[s].dir == 'C')
			n += strlen(t->steps[s].data);
	return n;
}

/* Check one run against what the transcript expects. */
static void
check_result(const struct transcript *t, const char *want_refused,
    struct result *r, const char *how, size_t cut)
{
	char	*to_client = unit_drain_string(r->to_client);
	char	*to_server = unit_drain_string(r->to_server);
	char	*refused = unit_drain_string(r->refused);

	if (t->fail != NULL) {
		ck_assert_msg(strncmp(r->fail, t->fail, strlen(t->fail)) == 0,
		    "%s (%s %zu): failure \"%s\", not \"%s\"", t->name, how,
		    cut, r->fail, t->fail);
	} else {
		ck_assert_msg(r->fail[0] == '\0', "%s (%s %zu): failed: %s",
		    t->name, how, cut, r->fail);
		ck_assert_msg(strcmp(to_client, t->to_client) == 0,
		    "%s (%s %zu): client got\n%s\nnot\n%s", t->name, how, cut,
		    to_client, t->to_client);
		ck_assert_msg(strcmp(to_server, t->to_server) == 0,
		    "%s (%s %zu): server got\n%s\nnot\n%s", t->name, how, cut,
		    to_server, t->to_server);
		ck_assert_msg(r->done == t->done, "%s (%s %zu): done %d",
		    t->name, how, cut, r->done);
		ck_assert_msg(want_refused == NULL || strcmp(refused,
		    want_refused) == 0, "%s (%s %zu): refusals reported\n%s\n"
		    "not\n%s", t->name, how, cut, refused, want_refused);
	}
	free(to_client);
	free(to_server);
	free(refused);
	evbuffer_free(r->to_client);
	evbuffer_free(r->to_server);
	evbuffer_free(r->refused);
}

/*
 * Run a transcript whole, cut at every byte, and a byte at a time; the
 * refusals reported must be want_refused (NULL: not checked).
 */
static void
check_transcript_runs(const struct transcript *t, int oauth2,
    const char *want_refused)
{
	struct result		 r;
	size_t			 cut, total = transcript_len(t);

	run_transcript(t, oauth2, FEED_WHOLE, 0, &r);
	check_result(t, want_refused, &r, "whole", 0);
	for (cut = 1; cut < total; cut++) {
		run_transcript(t, oauth2, FEED_CUT, cut, &r);
		check_result(t, want_refused, &r, "cut at", cut);
	}
	run_transcript(t, oauth2, FEED_BYTES, 0, &r);
	check_result(t, want_refused, &r, "bytes", 0);
}

/* One transcript: whole, cut at every byte, and a byte at a time. */
void
check_transcript(const struct transcript *t)
{
	check_transcript_runs(t, 0, NULL);
}

/* The same with a filter that logs in with OAuth2: nothing reported. */
void
check_transcript_oauth2(const struct transcript *t)
{
	check_transcript_runs(t, 1, "");
}

/* A transcript with refusals, and the texts reported. */
void
check_refusal_transcript(const struct refusal_transcript *rt)
{
	check_transcript_runs(&rt->t, 0, rt->refused);
}

/* Bytes after the line that completes the login stay for the session. */
START_TEST(test_filter_done_leaves_rest)
{
	static const struct {
		enum mail_protocol	 protocol;
		const char		*command;
		const char		*reply;
		const char		*rest;
	} c[] = {
		{ MAIL_PROTO_IMAP, "a1 LOGIN bob secret\r\n",
		    "a1 OK [CAPABILITY IMAP4rev1 STARTTLS] Logged in\r\n",
		    "* CAPABILITY STARTTLS\r\n" },
		{ MAIL_PROTO_POP3, "PASS secret\r\n", "+OK Logged in.\r\n",
		    "+OK\r\nSTLS\r\n.\r\n" },
		{ MAIL_PROTO_SMTP, "AUTH PLAIN AGJvYgBzZWNyZXQ=\r\n",
		    "235 2.7.0 Authentication successful\r\n",
		    "250-x\r\n250 STARTTLS\r\n" },
	};
	struct evbuffer	*in = evbuffer_new(), *out = evbuffer_new();
	struct evbuffer	*cin = evbuffer_new();
	char		*s;
	size_t		 i;

	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		struct proto_filter *f = proto_filter_new(c[i].protocol);

		evbuffer_add(cin, c[i].command, strlen(c[i].command));
		ck_assert_int_eq(proto_filter_client(f, cin, out, out), 0);
		evbuffer_drain(out, evbuffer_get_length(out));
		evbuffer_add_printf(in, "%s%s", c[i].reply, c[i].rest);
		ck_assert_int_eq(proto_filter_server(f, in, out), 0);
		ck_assert_int_eq(proto_filter_done(f), 1);
		s = unit_drain_string(in);
		ck_assert_str_eq(s, c[i].rest);
		free(s);
		s = unit_drain_string(out);
		ck_assert_ptr_null(strstr(s, "STARTTLS"));
		free(s);
		/* A done filter takes nothing more. */
		evbuffer_add(cin, "x\r\n", 3);
		ck_assert_int_eq(proto_filter_client(f, cin, out, out), 0);
		ck_assert_uint_eq(evbuffer_get_length(cin), 3);
		evbuffer_drain(cin, 3);
		proto_filter_free(f);
	}
	evbuffer_free(in);
	evbuffer_free(out);
	evbuffer_free(cin);
}
END_TEST

/* A line of n bytes of 'a' with a line end (or without: partial). */
static void
add_long_line(struct evbuffer *buf, const char *prefix, size_t n,
    int complete)
{
	size_t	i;

	evbuffer_add(buf, prefix, strlen(prefix));
	for (i = strlen(prefix); i < n; i++)
		evbuffer_add(buf, "a", 1);
	if (complete)
		evbuffer_add(buf, "\r\n", 2);
}

/* Run one side of a new filter over one long line: its result. */
static int
long_line(enum mail_protocol protocol, int server, size_t n, int complete)
{
	struct proto_filter	*f = proto_filter_new(protocol);
	struct evbuffer		*in = evbuffer_new(), *out = evbuffer_new();
	const char		*prefix;
	int			 r;

	if (server)
		prefix = protocol == MAIL_PROTO_IMAP ? "* OK " :
		    protocol == MAIL_PROTO_POP3 ? "+OK " : "250 ";
	else
		prefix = protocol == MAIL_PROTO_IMAP ? "a1 NOOP " : "NOOP ";
	add_long_line(in, prefix, n, complete);
	r = server ? proto_filter_server(f, in, out) :
	    proto_filter_client(f, in, out, out);
	if (r != 0)
		ck_assert_ptr_nonnull(strstr(proto_filter_reason(f),
		    "longer than " PROTO_LINE_MAX_TEXT " bytes before login"));
	/* A failed filter stays failed. */
	if (r != 0)
		ck_assert_int_eq(server ? proto_filter_server(f, in, out) :
		    proto_filter_client(f, in, out, out), -1);
	proto_filter_free(f);
	evbuffer_free(in);
	evbuffer_free(out);
	return r;
}

START_TEST(test_filter_overlong_lines)
{
	enum mail_protocol	p;
	int			server;

	for (p = MAIL_PROTO_IMAP; p <= MAIL_PROTO_SMTP; p++)
		for (server = 0; server <= 1; server++) {
			ck_assert_int_eq(long_line(p, server, PROTO_LINE_MAX,
			    1), 0);
			ck_assert_int_eq(long_line(p, server, PROTO_LINE_MAX,
			    0), 0);
			ck_assert_int_eq(long_line(p, server,
			    PROTO_LINE_MAX + 1, 1), -1);
			ck_assert_int_eq(long_line(p, server,
			    PROTO_LINE_MAX + 2, 0), -1);
			ck_assert_int_eq(long_line(p, server, 100000, 0), -1);
		}
}
END_TEST

/*
 * A SASL response moves only once its line is complete: the server may end
 * the exchange before that, and the rest of the line must then be read as
 * a command of its own, never appended to bytes already sent.  It has the
 * same length bound as any other line before login.
 */
static int
sasl_line(enum mail_protocol protocol, size_t n, int complete, size_t *moved)
{
	struct proto_filter	*f = proto_filter_new(protocol);
	struct evbuffer		*in = evbuffer_new(), *out = evbuffer_new();
	struct evbuffer		*back = evbuffer_new();
	const char		*auth, *go;
	int			 r;

	auth = protocol == MAIL_PROTO_IMAP ? "a1 AUTHENTICATE PLAIN\r\n" :
	    "AUTH PLAIN\r\n";
	go = protocol == MAIL_PROTO_SMTP ? "334 \r\n" : "+ \r\n";
	evbuffer_add(in, auth, strlen(auth));
	ck_assert_int_eq(proto_filter_client(f, in, out, back), 0);
	evbuffer_add(in, go, strlen(go));
	ck_assert_int_eq(proto_filter_server(f, in, back), 0);
	evbuffer_drain(out, evbuffer_get_length(out));
	add_long_line(in, "", n, complete);
	r = proto_filter_client(f, in, out, back);
	if (r != 0)
		ck_assert_str_eq(proto_filter_reason(f), "client line longer "
		    "than " PROTO_LINE_MAX_TEXT " bytes before login");
	*moved = evbuffer_get_length(out);
	proto_filter_free(f);
	evbuffer_free(in);
	evbuffer_free(out);
	evbuffer_free(back);
	return r;
}

START_TEST(test_filter_sasl_whole_lines)
{
	enum mail_protocol	p;
	size_t			moved;

	for (p = MAIL_PROTO_IMAP; p <= MAIL_PROTO_SMTP; p++) {
		ck_assert_int_eq(sasl_line(p, 100, 0, &moved), 0);
		ck_assert_uint_eq(moved, 0);
		ck_assert_int_eq(sasl_line(p, 100, 1, &moved), 0);
		ck_assert_uint_eq(moved, 102);
		ck_assert_int_eq(sasl_line(p, PROTO_LINE_MAX, 1, &moved), 0);
		ck_assert_uint_eq(moved, PROTO_LINE_MAX + 2);
		ck_assert_int_eq(sasl_line(p, PROTO_LINE_MAX + 1, 1, &moved),
		    -1);
		ck_assert_uint_eq(moved, 0);
		ck_assert_int_eq(sasl_line(p, PROTO_LINE_MAX + 2, 0, &moved),
		    -1);
		ck_assert_uint_eq(moved, 0);
	}
}
END_TEST

/* Long payloads stream by count, without a line limit or buffering. */
START_TEST(test_filter_payload_streams)
{
	struct proto_filter	*f = proto_filter_new(MAIL_PROTO_IMAP);
	struct evbuffer		*in = evbuffer_new(), *out = evbuffer_new();
	struct evbuffer		*to_client = evbuffer_new();
	size_t			 i;

	evbuffer_add_printf(in, "a1 APPEND INBOX {100000+}\r\n");
	ck_assert_int_eq(proto_filter_client(f, in, out, to_client), 0);
	for (i = 0; i < 100000 / 1000; i++) {
		add_long_line(in, "", 1000, 0);
		ck_assert_int_eq(proto_filter_client(f, in, out, to_client), 0);
		/* Nothing of the literal waits in the filter's input. */
		ck_assert_uint_eq(evbuffer_get_length(in), 0);
	}
	evbuffer_add_printf(in, " STARTTLS\r\na2 STARTTLS\r\n");
	ck_assert_int_eq(proto_filter_client(f, in, out, to_client), 0);
	ck_assert_uint_eq(evbuffer_get_length(out), strlen(
	    "a1 APPEND INBOX {100000+}\r\n") + 100000 + strlen(" STARTTLS\r\n"));
	ck_assert_uint_eq(evbuffer_get_length(to_client),
	    strlen(IMAP_REFUSAL("a2")));
	proto_filter_free(f);

	/* SMTP message lines have no limit either. */
	f = proto_filter_new(MAIL_PROTO_SMTP);
	evbuffer_drain(out, evbuffer_get_length(out));
	evbuffer_add_printf(in, "DATA\r\n");
	ck_assert_int_eq(proto_filter_client(f, in, out, to_client), 0);
	evbuffer_add_printf(in, "354 go\r\n");
	ck_assert_int_eq(proto_filter_server(f, in, out), 0);
	add_long_line(in, "", 3 * PROTO_LINE_MAX, 1);
	ck_assert_int_eq(proto_filter_client(f, in, out, to_client), 0);
	ck_assert_uint_eq(evbuffer_get_length(in), 0);
	proto_filter_free(f);
	evbuffer_free(in);
	evbuffer_free(out);
	evbuffer_free(to_client);
}
END_TEST

/*
 * More pipelined commands than the filter tracks wait in the client's
 * buffer until answers come (RFC 2920 sets no limit: a relay may send 100
 * RCPT TO at once); too long an EHLO reply ends the session.
 */
static void
pipeline_waits(enum mail_protocol protocol, const char *cmd,
    const char *answer)
{
	struct proto_filter	*f = proto_filter_new(protocol);
	struct evbuffer		*in = evbuffer_new(), *out = evbuffer_new();
	struct evbuffer		*back = evbuffer_new(), *srv = evbuffer_new();
	int			 i;

	for (i = 0; i < PROTO_PIPELINE_MAX + 3; i++)
		evbuffer_add_printf(in, "%s", cmd);
	ck_assert_int_eq(proto_filter_client(f, in, out, back), 0);
	ck_assert_uint_eq(evbuffer_get_length(out),
	    PROTO_PIPELINE_MAX * strlen(cmd));
	ck_assert_uint_eq(evbuffer_get_length(in), 3 * strlen(cmd));
	/* Each answer lets one more through. */
	for (i = 1; i <= 3; i++) {
		evbuffer_add_printf(srv, "%s", answer);
		ck_assert_int_eq(proto_filter_server(f, srv, back), 0);
		ck_assert_int_eq(proto_filter_client(f, in, out, back), 0);
		ck_assert_uint_eq(evbuffer_get_length(out),
		    (PROTO_PIPELINE_MAX + i) * strlen(cmd));
	}
	ck_assert_uint_eq(evbuffer_get_length(in), 0);
	proto_filter_free(f);
	evbuffer_free(in);
	evbuffer_free(out);
	evbuffer_free(back);
	evbuffer_free(srv);
}

START_TEST(test_filter_bounds)
{
	struct proto_filter	*f;
	struct evbuffer		*in = evbuffer_new(), *out = evbuffer_new();
	int			 i;

	pipeline_waits(MAIL_PROTO_SMTP, "RCPT TO:<r@example.org>\r\n",
	    "250 ok\r\n");
	pipeline_waits(MAIL_PROTO_POP3, "NOOP\r\n", "+OK\r\n");
	pipeline_waits(MAIL_PROTO_IMAP, "a NOOP\r\n", "a OK\r\n");

	f = proto_filter_new(MAIL_PROTO_POP3);
	for (i = 0; i <= PROTO_PIPELINE_MAX; i++)
		evbuffer_add_printf(in, "STLS\r\n");
	ck_assert_int_eq(proto_filter_client(f, in, out, out), 0);
	ck_assert_uint_eq(evbuffer_get_length(in), 0);
	proto_filter_free(f);

	f = proto_filter_new(MAIL_PROTO_SMTP);
	evbuffer_drain(in, evbuffer_get_length(in));
	evbuffer_add_printf(in, "EHLO x\r\n");
	ck_assert_int_eq(proto_filter_client(f, in, out, out), 0);
	evbuffer_drain(out, evbuffer_get_length(out));
	for (i = 0; i <= 128; i++)
		evbuffer_add_printf(in, "250-X%d\r\n", i);
	ck_assert_int_eq(proto_filter_server(f, in, out), -1);
	ck_assert_str_eq(proto_filter_reason(f),
	    "EHLO reply longer than 128 lines");
	ck_assert_uint_eq(evbuffer_get_length(out), 0);
	proto_filter_free(f);

	f = proto_filter_new(MAIL_PROTO_SMTP);
	evbuffer_drain(in, evbuffer_get_length(in));
	evbuffer_add_printf(in, "EHLO x\r\n");
	ck_assert_int_eq(proto_filter_client(f, in, out, out), 0);
	evbuffer_drain(out, evbuffer_get_length(out));
	for (i = 0; i < 4; i++)
		add_long_line(in, "250-", 4000, 1);
	ck_assert_int_eq(proto_filter_server(f, in, out), 0);
	add_long_line(in, "250 ", 400, 1);
	ck_assert_int_eq(proto_filter_server(f, in, out), -1);
	ck_assert_str_eq(proto_filter_reason(f),
	    "EHLO reply longer than 16384 bytes");
	ck_assert_uint_eq(evbuffer_get_length(out), 0);
	proto_filter_free(f);

	f = proto_filter_new(MAIL_PROTO_IMAP);
	evbuffer_drain(in, evbuffer_get_length(in));
	evbuffer_add_printf(in, "%s LOGIN {5}\r\n", "t123456789012345678901234"
	    "5678901234567890123456789012345678901234567890");
	ck_assert_int_eq(proto_filter_client(f, in, out, out), -1);
	proto_filter_free(f);
	evbuffer_free(in);
	evbuffer_free(out);
}
END_TEST

/* What a web page can make a browser send, and mail that only looks so. */
START_TEST(test_http_lines)
{
	static const char *const http[] = {
		"POST / HTTP/1.1", "GET /index.html HTTP/1.0",
		"OPTIONS * HTTP/1.1", "PRI * HTTP/2.0", "PUT /x http/1.1",
		"Host: 127.0.0.1:1143", "host:x", "User-Agent: Mozilla/5.0",
		"Content-Type: text/plain", "Origin: null", "Sec-Fetch-Mode: cors",
	};
	static const char *const mail[] = {
		"a1 LOGIN bob secret", "a GET HTTP/1.1", "GET / HTTP/1.1 x",
		"GET  / HTTP/1.1", "post / HTTP/1.1", "GET / HTTP/x.1",
		"POST / HTTP/1.", "USER bob", "MAIL FROM:<a@example.org>",
		"Hostname: x", "X-Host: x", "a1 Host: x", "", "POST",
		"EHLO HTTP/1.1",
	};
	size_t	i;

	for (i = 0; i < sizeof(http) / sizeof(http[0]); i++)
		ck_assert_msg(proto_http_line(http[i], strlen(http[i])),
		    "not taken for HTTP: %s", http[i]);
	for (i = 0; i < sizeof(mail) / sizeof(mail[0]); i++)
		ck_assert_msg(!proto_http_line(mail[i], strlen(mail[i])),
		    "taken for HTTP: %s", mail[i]);
}
END_TEST

/*
 * A client that sends commands the filter answers itself and never reads:
 * the filter stops taking them while PROTO_CLIENT_BACKLOG bytes wait for
 * the client, and goes on once they are read.
 */
START_TEST(test_filter_client_backlog)
{
	static const struct {
		enum mail_protocol	 protocol;
		const char		*command;
	} c[] = {
		{ MAIL_PROTO_IMAP, "a STARTTLS\r\n" },
		{ MAIL_PROTO_IMAP, "a COMPRESS DEFLATE\r\n" },
		{ MAIL_PROTO_POP3, "STLS\r\n" },
		{ MAIL_PROTO_SMTP, "STARTTLS\r\n" },
	};
	struct proto_filter	*f;
	struct evbuffer		*in, *to_server, *to_client;
	size_t			 i, left;
	int			 n;

	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		f = proto_filter_new(c[i].protocol);
		in = evbuffer_new();
		to_server = evbuffer_new();
		to_client = evbuffer_new();
		for (n = 0; n < 100000; n++)
			evbuffer_add(in, c[i].command, strlen(c[i].command));
		ck_assert_int_eq(proto_filter_client(f, in, to_server,
		    to_client), 0);
		ck_assert_uint_ge(evbuffer_get_length(to_client),
		    PROTO_CLIENT_BACKLOG);
		ck_assert_uint_lt(evbuffer_get_length(to_client),
		    PROTO_CLIENT_BACKLOG + 256);
		left = evbuffer_get_length(in);
		ck_assert_uint_gt(left, 0);
		/* Nothing more while the client has not read. */
		ck_assert_int_eq(proto_filter_client(f, in, to_server,
		    to_client), 0);
		ck_assert_uint_eq(evbuffer_get_length(in), left);
		evbuffer_drain(to_client, evbuffer_get_length(to_client));
		ck_assert_int_eq(proto_filter_client(f, in, to_server,
		    to_client), 0);
		ck_assert_uint_lt(evbuffer_get_length(in), left);
		ck_assert_uint_eq(evbuffer_get_length(to_server), 0);
		ck_assert_uint_eq(proto_filter_refused(f),
		    strstr(c[i].command, "COMPRESS") != NULL ? 0 :
		    (unsigned)((100000 * strlen(c[i].command) -
		    evbuffer_get_length(in)) / strlen(c[i].command)));
		proto_filter_free(f);
		evbuffer_free(in);
		evbuffer_free(to_server);
		evbuffer_free(to_client);
	}
}
END_TEST

/* The login deadline ends at login, and for SMTP at 354 to DATA. */
START_TEST(test_filter_past_login)
{
	struct proto_filter	*f = proto_filter_new(MAIL_PROTO_SMTP);
	struct evbuffer		*in = evbuffer_new(), *out = evbuffer_new();

	evbuffer_add_printf(in, "MAIL FROM:<a@example.org>\r\nDATA\r\n");
	ck_assert_int_eq(proto_filter_client(f, in, out, out), 0);
	evbuffer_add_printf(in, "250 ok\r\n");
	ck_assert_int_eq(proto_filter_server(f, in, out), 0);
	ck_assert_int_eq(proto_filter_past_login(f), 0);
	evbuffer_add_printf(in, "354 go\r\n");
	ck_assert_int_eq(proto_filter_server(f, in, out), 0);
	ck_assert_int_eq(proto_filter_past_login(f), 1);
	ck_assert_int_eq(proto_filter_done(f), 0);
	proto_filter_free(f);

	f = proto_filter_new(MAIL_PROTO_POP3);
	evbuffer_add_printf(in, "USER bob\r\nPASS x\r\n");
	ck_assert_int_eq(proto_filter_client(f, in, out, out), 0);
	evbuffer_add_printf(in, "+OK\r\n");
	ck_assert_int_eq(proto_filter_server(f, in, out), 0);
	ck_assert_int_eq(proto_filter_past_login(f), 0);
	evbuffer_add_printf(in, "+OK logged in\r\n");
	ck_assert_int_eq(proto_filter_server(f, in, out), 0);
	ck_assert_int_eq(proto_filter_past_login(f), 1);
	proto_filter_free(f);
	evbuffer_free(in);
	evbuffer_free(out);
}
END_TEST

/* What a refusal callback saw. */
struct refusal_seen {
	int	calls;
	size_t	text_len;
};

/* Words over 400 bytes with line ends, controls and non-ASCII bytes. */
static const char *
unruly_words(const char *server_text, void *arg)
{
	static char		 words[600];
	struct refusal_seen	*seen = arg;
	static const char	 start[] = "mailtlsd: a\r\n535 5.7.8 "
				    "b\x01\xc3\xa9";

	seen->calls++;
	seen->text_len = strlen(server_text);
	memset(words, 'x', sizeof(words) - 1);
	words[sizeof(words) - 1] = '\0';
	memcpy(words, start, sizeof(start) - 1);
	return words;
}

/*
 * The words added to a refusal are one line of at most 400 bytes of
 * printable ASCII, whatever the callback returns; the server's text it
 * gets is at most 255 bytes; without a callback nothing is added.
 */
START_TEST(test_refusal_words_one_line)
{
	struct proto_filter	*f = proto_filter_new(MAIL_PROTO_SMTP);
	struct evbuffer		*in = evbuffer_new();
	struct evbuffer		*out = evbuffer_new();
	struct refusal_seen	 seen = { 0, 0 };
	char			 want[600], *got;
	size_t			 n;

	proto_filter_on_refusal(f, unruly_words, &seen);
	evbuffer_add_printf(in, "AUTH PLAIN AGJvYgBzZWNyZXQ=\r\n");
	ck_assert_int_eq(proto_filter_client(f, in, out, out), 0);
	evbuffer_drain(out, evbuffer_get_length(out));
	evbuffer_add_printf(in, "535 5.7.8 ");
	for (n = 0; n < 1000; n++)
		evbuffer_add(in, "y", 1);
	evbuffer_add_printf(in, "\r\n");
	ck_assert_int_eq(proto_filter_server(f, in, out), 0);
	ck_assert_int_eq(seen.calls, 1);
	ck_assert_uint_eq(seen.text_len, 255);
	got = unit_drain_string(out);
	n = snprintf(want, sizeof(want), "535 5.7.8 mailtlsd: a  535 5.7.8 b "
	    "??");
	/* "535 5.7.8 " and 400 bytes of words. */
	memset(want + n, 'x', 410 - n);
	memcpy(want + 410, "\r\n", 3);
	ck_assert_uint_eq(strlen(got), 1012 + 412);
	ck_assert(strncmp(got, "535-5.7.8 yyy", 13) == 0);
	ck_assert_str_eq(got + 1012, want);
	free(got);

	/* Without a callback the refusal passes as it is. */
	proto_filter_on_refusal(f, NULL, NULL);
	evbuffer_add_printf(in, "AUTH PLAIN AGJvYgBzZWNyZXQ=\r\n");
	ck_assert_int_eq(proto_filter_client(f, in, out, out), 0);
	evbuffer_drain(out, evbuffer_get_length(out));
	evbuffer_add_printf(in, "535 5.7.139 no\r\n");
	ck_assert_int_eq(proto_filter_server(f, in, out), 0);
	got = unit_drain_string(out);
	ck_assert_str_eq(got, "535 5.7.139 no\r\n");
	ck_assert_int_eq(seen.calls, 1);
	free(got);
	proto_filter_free(f);
	evbuffer_free(in);
	evbuffer_free(out);
}
END_TEST

/* The cases common to the protocols. */
Suite *
proto_suite(void)
{
	Suite	*s = suite_create("proto");
	TCase	*tc = tcase_create("unavailable");

	tcase_add_test(tc, test_unavailable_lines);
	tcase_add_test(tc, test_unavailable_truncation_refused);
	tcase_add_test(tc, test_unavailable_evbuffer);
	suite_add_tcase(s, tc);

	tc = tcase_create("dialogue");
	tcase_add_test(tc, test_dialogue_too_many_lines);
	tcase_add_test(tc, test_greetings);
	suite_add_tcase(s, tc);

	tc = tcase_create("greeting_complete");
	tcase_add_test(tc, test_greeting_complete_prefixes);
	suite_add_tcase(s, tc);

	tc = tcase_create("limits");
	tcase_add_test(tc, test_filter_done_leaves_rest);
	tcase_add_test(tc, test_filter_overlong_lines);
	tcase_add_test(tc, test_filter_sasl_whole_lines);
	tcase_add_test(tc, test_filter_payload_streams);
	tcase_add_test(tc, test_filter_bounds);
	tcase_add_test(tc, test_filter_client_backlog);
	tcase_add_test(tc, test_refusal_words_one_line);
	tcase_add_test(tc, test_filter_past_login);
	tcase_add_test(tc, test_http_lines);
	suite_add_tcase(s, tc);
	return s;
}
