/*
 * check_proto_local.c - unit tests of proto_local.c, the plaintext opening
 * mailtlsd speaks toward the client with local_tls = starttls.
 *
 * Each transcript (client bytes in; the daemon's answers, the verdict and
 * the bytes left after the go-ahead out) runs whole, split in two at every
 * byte position, and one byte at a time: every way must give the same.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "proto.h"
#include "proto_local.h"
#include "unit.h"

/* A service of the given protocol, as the configuration would give it. */
static const struct service_config *
local_service(enum mail_protocol protocol)
{
	static struct service_config	sc;

	memset(&sc, 0, sizeof(sc));
	sc.protocol = protocol;
	sc.tls = TLS_MODE_IMPLICIT;
	sc.local_tls = LOCAL_TLS_STARTTLS;
	snprintf(sc.server_name, sizeof(sc.server_name), "mail.example.com");
	return &sc;
}

/* The whole content of buf as a NUL-terminated string (to free). */
static char *
take_string(struct evbuffer *buf)
{
	size_t	 len = evbuffer_get_length(buf);
	char	*s = malloc(len + 1);

	ck_assert_ptr_nonnull(s);
	evbuffer_remove(buf, s, len);
	s[len] = '\0';
	return s;
}

struct local_case {
	const char			*name;
	enum mail_protocol		 protocol;
	const char			*in;
	const char			*out;
	enum proto_local_verdict	 verdict;
	const char			*rest;		/* left in the input */
	const char			*state;
};

static const struct local_case local_cases[] = {
	/* IMAP: the usual client, and a pipelined one. */
	{ "imap capability starttls", MAIL_PROTO_IMAP,
	    "a1 CAPABILITY\r\na2 STARTTLS\r\n",
	    "* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\n"
	    "a1 OK CAPABILITY completed\r\n"
	    "a2 OK Begin TLS negotiation now\r\n",
	    PROTO_LOCAL_UPGRADE, "", "UPGRADED" },
	{ "imap lower case, LF only", MAIL_PROTO_IMAP,
	    "x.1 noop\nx.2 starttls\n",
	    "x.1 OK NOOP completed\r\nx.2 OK Begin TLS negotiation now\r\n",
	    PROTO_LOCAL_UPGRADE, "", "UPGRADED" },
	/* Bytes after the STARTTLS line stay for the caller to refuse. */
	{ "imap injection stays", MAIL_PROTO_IMAP,
	    "a STARTTLS\r\nb LOGIN alice secret\r\n",
	    "a OK Begin TLS negotiation now\r\n",
	    PROTO_LOCAL_UPGRADE, "b LOGIN alice secret\r\n", "UPGRADED" },
	{ "imap partial stays", MAIL_PROTO_IMAP,
	    "a STARTTLS\r\n\x16\x03\x01",
	    "a OK Begin TLS negotiation now\r\n",
	    PROTO_LOCAL_UPGRADE, "\x16\x03\x01", "UPGRADED" },
	/* No login before TLS. */
	{ "imap login refused", MAIL_PROTO_IMAP,
	    "a LOGIN alice secret\r\n"
	    "b AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n"
	    "c SELECT INBOX\r\n",
	    "a NO [PRIVACYREQUIRED] use STARTTLS first\r\n"
	    "b NO [PRIVACYREQUIRED] use STARTTLS first\r\n"
	    "c BAD use STARTTLS first\r\n",
	    PROTO_LOCAL_MORE, "", "PLAIN" },
	{ "imap logout", MAIL_PROTO_IMAP,
	    "a NOOP\r\nb LOGOUT\r\nc STARTTLS\r\n",
	    "a OK NOOP completed\r\n* BYE mailtlsd logging out\r\n"
	    "b OK LOGOUT completed\r\n",
	    PROTO_LOCAL_QUIT, "c STARTTLS\r\n", "QUIT" },
	{ "imap bad lines", MAIL_PROTO_IMAP,
	    "\r\n* NOOP\r\n+ x\r\na\r\na \r\n a NOOP\r\nb STARTTLS now\r\n",
	    "* BAD invalid tag or empty command\r\n"
	    "* BAD invalid tag or empty command\r\n"
	    "* BAD invalid tag or empty command\r\n"
	    "a BAD missing command\r\n"
	    "a BAD missing command\r\n"
	    "* BAD invalid tag or empty command\r\n"
	    "b BAD STARTTLS takes no arguments\r\n",
	    PROTO_LOCAL_MORE, "", "PLAIN" },
	{ "imap synchronizing literal refused", MAIL_PROTO_IMAP,
	    "a LOGIN {5}\r\nb STARTTLS\r\n",
	    "a BAD no literals before STARTTLS\r\n"
	    "b OK Begin TLS negotiation now\r\n",
	    PROTO_LOCAL_UPGRADE, "", "UPGRADED" },
	{ "imap non-synchronizing literal closes", MAIL_PROTO_IMAP,
	    "a LOGIN {5+}\r\nalice {6+}\r\nsecret\r\n",
	    "* BYE mailtlsd: IMAP literal before STARTTLS\r\n",
	    PROTO_LOCAL_FAIL, "alice {6+}\r\nsecret\r\n", "FAILED" },
	{ "imap incomplete", MAIL_PROTO_IMAP,
	    "a STARTTL", "", PROTO_LOCAL_MORE, "a STARTTL", "PLAIN" },

	/* POP3. */
	{ "pop3 capa stls", MAIL_PROTO_POP3,
	    "CAPA\r\nSTLS\r\n",
	    "+OK Capability list follows\r\nSTLS\r\n.\r\n"
	    "+OK Begin TLS negotiation\r\n",
	    PROTO_LOCAL_UPGRADE, "", "UPGRADED" },
	{ "pop3 login refused, quit", MAIL_PROTO_POP3,
	    "USER alice\r\nPASS secret\r\nAUTH PLAIN\r\nstls x\r\nquit\r\n",
	    "-ERR use STLS first\r\n-ERR use STLS first\r\n"
	    "-ERR use STLS first\r\n-ERR use STLS first\r\n"
	    "+OK mailtlsd closing\r\n",
	    PROTO_LOCAL_QUIT, "", "QUIT" },
	{ "pop3 injection stays", MAIL_PROTO_POP3,
	    "stls\nUSER alice\r\n",
	    "+OK Begin TLS negotiation\r\n",
	    PROTO_LOCAL_UPGRADE, "USER alice\r\n", "UPGRADED" },

	/* SMTP: EHLO offers STARTTLS and no AUTH. */
	{ "smtp ehlo starttls", MAIL_PROTO_SMTP,
	    "EHLO client.example\r\nSTARTTLS\r\n",
	    "250-mail.example.com\r\n250 STARTTLS\r\n"
	    "220 2.0.0 Ready to start TLS\r\n",
	    PROTO_LOCAL_UPGRADE, "", "UPGRADED" },
	{ "smtp refusals", MAIL_PROTO_SMTP,
	    "HELO c\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nMAIL FROM:<a@b>\r\n"
	    "RSET\r\nNOOP\r\nSTARTTLS now\r\nQUIT\r\n",
	    "250 mail.example.com\r\n"
	    "530 5.7.0 Must issue a STARTTLS command first\r\n"
	    "530 5.7.0 Must issue a STARTTLS command first\r\n"
	    "250 2.0.0 OK\r\n250 2.0.0 OK\r\n"
	    "501 5.5.4 STARTTLS takes no parameters\r\n"
	    "221 2.0.0 mailtlsd closing connection\r\n",
	    PROTO_LOCAL_QUIT, "", "QUIT" },
	{ "smtp pipelined injection stays", MAIL_PROTO_SMTP,
	    "EHLO c\r\nSTARTTLS\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
	    "250-mail.example.com\r\n250 STARTTLS\r\n"
	    "220 2.0.0 Ready to start TLS\r\n",
	    PROTO_LOCAL_UPGRADE, "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
	    "UPGRADED" },
};

/* The result of feeding a case in some pieces. */
struct local_result {
	char				*out;
	char				*rest;
	enum proto_local_verdict	 verdict;
	const char			*state;
};

/* Feed in at the given cut positions (0 = none); collect the result. */
static void
run_local(const struct local_case *c, size_t cut, int bytewise,
    struct local_result *r)
{
	struct proto_local	*pl;
	struct evbuffer		*in = evbuffer_new(), *out = evbuffer_new();
	size_t			 len = strlen(c->in), i;

	pl = proto_local_new(local_service(c->protocol));
	ck_assert_ptr_nonnull(pl);
	r->verdict = PROTO_LOCAL_MORE;
	if (bytewise) {
		for (i = 0; i < len; i++) {
			evbuffer_add(in, c->in + i, 1);
			r->verdict = proto_local_input(pl, in, out);
		}
	} else {
		if (cut > 0) {
			evbuffer_add(in, c->in, cut);
			r->verdict = proto_local_input(pl, in, out);
		}
		evbuffer_add(in, c->in + cut, len - cut);
		r->verdict = proto_local_input(pl, in, out);
	}
	r->out = take_string(out);
	r->rest = take_string(in);
	r->state = proto_local_state(pl);
	proto_local_free(pl);
	evbuffer_free(in);
	evbuffer_free(out);
}

/* Compare a result with the case; free it. */
static void
check_local(const struct local_case *c, struct local_result *r,
    const char *how, size_t cut)
{
	ck_assert_msg(strcmp(r->out, c->out) == 0, "%s (%s %zu): client got\n"
	    "%s\nnot\n%s", c->name, how, cut, r->out, c->out);
	ck_assert_msg(r->verdict == c->verdict, "%s (%s %zu): verdict %d, "
	    "not %d", c->name, how, cut, (int)r->verdict, (int)c->verdict);
	ck_assert_msg(strcmp(r->rest, c->rest) == 0, "%s (%s %zu): left "
	    "\"%s\", not \"%s\"", c->name, how, cut, r->rest, c->rest);
	ck_assert_msg(strcmp(r->state, c->state) == 0, "%s (%s %zu): state "
	    "%s, not %s", c->name, how, cut, r->state, c->state);
	free(r->out);
	free(r->rest);
}

START_TEST(test_local_transcript)
{
	const struct local_case	*c = &local_cases[_i];
	struct local_result	 r;
	size_t			 cut;

	run_local(c, 0, 0, &r);
	check_local(c, &r, "whole", 0);
	for (cut = 1; cut < strlen(c->in); cut++) {
		run_local(c, cut, 0, &r);
		check_local(c, &r, "cut at", cut);
	}
	run_local(c, 0, 1, &r);
	check_local(c, &r, "bytes", 0);
}
END_TEST

START_TEST(test_local_greetings)
{
	static const struct {
		enum mail_protocol	 protocol;
		const char		*greeting;
	} g[] = {
		{ MAIL_PROTO_IMAP, "* OK [CAPABILITY IMAP4rev1 STARTTLS "
		    "LOGINDISABLED] mailtlsd ready\r\n" },
		{ MAIL_PROTO_POP3, "+OK mailtlsd ready\r\n" },
		{ MAIL_PROTO_SMTP, "220 mail.example.com ESMTP mailtlsd\r\n" },
	};
	struct evbuffer		*out = evbuffer_new();
	struct proto_local	*pl;
	char			*got;
	size_t			 i;

	for (i = 0; i < sizeof(g) / sizeof(g[0]); i++) {
		pl = proto_local_new(local_service(g[i].protocol));
		ck_assert_ptr_nonnull(pl);
		ck_assert_int_eq(proto_local_greeting(pl, out), 0);
		got = take_string(out);
		ck_assert_str_eq(got, g[i].greeting);
		ck_assert_str_eq(proto_local_state(pl), "PLAIN");
		ck_assert_str_eq(proto_local_reason(pl), "no failure");
		free(got);
		proto_local_free(pl);
	}
	ck_assert_ptr_null(proto_local_new(local_service(MAIL_PROTO_NONE)));
	proto_local_free(NULL);
	evbuffer_free(out);
}
END_TEST

/* A line of exactly the limit passes; one byte more closes. */
START_TEST(test_local_line_limit)
{
	static const enum mail_protocol	protos[] = { MAIL_PROTO_IMAP,
	    MAIL_PROTO_POP3, MAIL_PROTO_SMTP };
	static const char *const	closing[] = { "* BYE mailtlsd: line",
	    "-ERR mailtlsd: line", "421 4.7.0 mailtlsd: line" };
	struct proto_local		*pl;
	struct evbuffer			*in, *out;
	char				 line[PROTO_LOCAL_LINE_MAX + 8];
	char				*got;
	size_t				 i;

	for (i = 0; i < 3; i++) {
		pl = proto_local_new(local_service(protos[i]));
		in = evbuffer_new();
		out = evbuffer_new();
		/* "a NOOPxxx...": exactly PROTO_LOCAL_LINE_MAX bytes. */
		memset(line, 'x', sizeof(line));
		memcpy(line, "a NOOP ", 7);
		memcpy(line + PROTO_LOCAL_LINE_MAX, "\r\n", 2);
		evbuffer_add(in, line, PROTO_LOCAL_LINE_MAX + 2);
		ck_assert_int_eq(proto_local_input(pl, in, out),
		    PROTO_LOCAL_MORE);
		ck_assert_uint_eq(evbuffer_get_length(in), 0);
		evbuffer_drain(out, evbuffer_get_length(out));
		/* Without a line end, one byte over the limit is enough. */
		evbuffer_add(in, line, PROTO_LOCAL_LINE_MAX + 1);
		ck_assert_int_eq(proto_local_input(pl, in, out),
		    PROTO_LOCAL_MORE);
		evbuffer_add(in, "\r", 1);
		ck_assert_int_eq(proto_local_input(pl, in, out),
		    PROTO_LOCAL_FAIL);
		got = take_string(out);
		ck_assert_msg(strncmp(got, closing[i], strlen(closing[i])) == 0,
		    "closing line %s", got);
		ck_assert_str_eq(proto_local_state(pl), "FAILED");
		ck_assert_str_eq(proto_local_reason(pl), "line longer than "
		    PROTO_LOCAL_LINE_MAX_TEXT " bytes before STARTTLS");
		/* A failed opening takes nothing more. */
		evbuffer_add(in, "STARTTLS\r\n", 10);
		ck_assert_int_eq(proto_local_input(pl, in, out),
		    PROTO_LOCAL_FAIL);
		ck_assert_uint_eq(evbuffer_get_length(out), 0);
		free(got);
		proto_local_free(pl);
		evbuffer_free(in);
		evbuffer_free(out);
	}
}
END_TEST

/* At most PROTO_LOCAL_COMMANDS lines, then the opening closes. */
START_TEST(test_local_command_limit)
{
	struct proto_local	*pl = proto_local_new(local_service(
	    MAIL_PROTO_SMTP));
	struct evbuffer		*in = evbuffer_new(), *out = evbuffer_new();
	char			*got;
	int			 i;

	for (i = 0; i < PROTO_LOCAL_COMMANDS; i++)
		evbuffer_add(in, "NOOP\r\n", 6);
	ck_assert_int_eq(proto_local_input(pl, in, out), PROTO_LOCAL_MORE);
	evbuffer_drain(out, evbuffer_get_length(out));
	evbuffer_add(in, "STARTTLS\r\n", 10);
	ck_assert_int_eq(proto_local_input(pl, in, out), PROTO_LOCAL_FAIL);
	got = take_string(out);
	ck_assert_str_eq(got, "421 4.7.0 mailtlsd: too many commands before "
	    "STARTTLS\r\n");
	ck_assert_str_eq(proto_local_reason(pl), "too many commands before "
	    "STARTTLS");
	free(got);
	proto_local_free(pl);
	evbuffer_free(in);
	evbuffer_free(out);
}
END_TEST

/* After the go-ahead nothing more is taken or answered. */
START_TEST(test_local_after_upgrade)
{
	struct proto_local	*pl = proto_local_new(local_service(
	    MAIL_PROTO_POP3));
	struct evbuffer		*in = evbuffer_new(), *out = evbuffer_new();

	evbuffer_add(in, "STLS\r\n", 6);
	ck_assert_int_eq(proto_local_input(pl, in, out), PROTO_LOCAL_UPGRADE);
	evbuffer_drain(out, evbuffer_get_length(out));
	evbuffer_add(in, "CAPA\r\n", 6);
	ck_assert_int_eq(proto_local_input(pl, in, out), PROTO_LOCAL_UPGRADE);
	ck_assert_uint_eq(evbuffer_get_length(in), 6);
	ck_assert_uint_eq(evbuffer_get_length(out), 0);
	proto_local_free(pl);
	evbuffer_free(in);
	evbuffer_free(out);
}
END_TEST

/*
 * proto_filter_drop_greeting(): after the local STARTTLS the client had its
 * greeting; the server's positive one is dropped, a refusal passes.
 */
static const struct drop_case {
	enum mail_protocol	 protocol;
	const char		*from_server;
	const char		*to_client;
} drop_cases[] = {
	{ MAIL_PROTO_IMAP, "* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n"
	    "* CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN\r\n",
	    "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" },
	{ MAIL_PROTO_IMAP, "* ok hi\n", "" },
	{ MAIL_PROTO_IMAP, "* BYE going away\r\n", "* BYE going away\r\n" },
	{ MAIL_PROTO_IMAP, "* PREAUTH hi\r\n", "* PREAUTH hi\r\n" },
	{ MAIL_PROTO_POP3, "+OK ready <1.2@mail.test>\r\n", "" },
	{ MAIL_PROTO_SMTP, "220-mail.test ESMTP\r\n220-more\r\n"
	    "220 mail.test ready\r\n", "" },
	{ MAIL_PROTO_SMTP, "220 mail.test\r\n", "" },
	{ MAIL_PROTO_SMTP, "554 5.3.2 go away\r\n",
	    "554 5.3.2 go away\r\n" },
	{ MAIL_PROTO_POP3, "-ERR [SYS/TEMP] busy\r\n",
	    "-ERR [SYS/TEMP] busy\r\n" },
};

/* Run one drop case with the server's bytes cut at cut (0: whole). */
static void
run_drop(const struct drop_case *c, size_t cut, int bytewise)
{
	struct proto_filter	*f = proto_filter_new(c->protocol);
	struct evbuffer		*in = evbuffer_new(), *out = evbuffer_new();
	size_t			 len = strlen(c->from_server), i;
	int			 r = 0;
	char			*got;

	ck_assert_ptr_nonnull(f);
	proto_filter_drop_greeting(f);
	for (i = 0; i < len && r == 0; i = bytewise ? i + 1 : (i < cut ?
	    cut : len)) {
		size_t n = bytewise ? 1 : (i < cut ? cut - i : len - i);

		evbuffer_add(in, c->from_server + i, n);
		r = proto_filter_server(f, in, out);
	}
	got = take_string(out);
	ck_assert_msg(r == 0, "case %s (cut %zu): failed: %s",
	    c->from_server, cut, proto_filter_reason(f));
	ck_assert_msg(strcmp(got, c->to_client) == 0, "case %s (cut %zu): "
	    "client got %s", c->from_server, cut, got);
	free(got);
	proto_filter_free(f);
	evbuffer_free(in);
	evbuffer_free(out);
}

START_TEST(test_drop_greeting)
{
	const struct drop_case	*c = &drop_cases[_i];
	size_t			 cut;

	run_drop(c, 0, 0);
	for (cut = 1; cut < strlen(c->from_server); cut++)
		run_drop(c, cut, 0);
	run_drop(c, 0, 1);
}
END_TEST

/* A greeting without an end fails once a line is over the limit. */
START_TEST(test_drop_greeting_bounded)
{
	struct proto_filter	*f = proto_filter_new(MAIL_PROTO_IMAP);
	struct evbuffer		*in = evbuffer_new(), *out = evbuffer_new();
	char			 chunk[4096];

	memset(chunk, 'x', sizeof(chunk));
	proto_filter_drop_greeting(f);
	evbuffer_add(in, "* OK ", 5);
	while (evbuffer_get_length(in) <= PROTO_LINE_MAX + 1) {
		ck_assert_int_eq(proto_filter_server(f, in, out), 0);
		evbuffer_add(in, chunk, sizeof(chunk));
	}
	ck_assert_int_eq(proto_filter_server(f, in, out), -1);
	ck_assert_ptr_nonnull(strstr(proto_filter_reason(f), "greeting"));
	ck_assert_uint_eq(evbuffer_get_length(out), 0);
	proto_filter_free(f);
	evbuffer_free(in);
	evbuffer_free(out);
}
END_TEST

Suite *
proto_local_suite(void)
{
	Suite	*s = suite_create("proto_local");
	TCase	*tc = tcase_create("transcripts");

	tcase_add_loop_test(tc, test_local_transcript, 0,
	    sizeof(local_cases) / sizeof(local_cases[0]));
	suite_add_tcase(s, tc);
	tc = tcase_create("limits");
	tcase_add_test(tc, test_local_greetings);
	tcase_add_test(tc, test_local_line_limit);
	tcase_add_test(tc, test_local_command_limit);
	tcase_add_test(tc, test_local_after_upgrade);
	suite_add_tcase(s, tc);
	tc = tcase_create("drop_greeting");
	tcase_add_loop_test(tc, test_drop_greeting, 0,
	    sizeof(drop_cases) / sizeof(drop_cases[0]));
	tcase_add_test(tc, test_drop_greeting_bounded);
	suite_add_tcase(s, tc);
	return s;
}
