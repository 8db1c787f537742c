/*
 * check_proto.c - unit tests of the protocol code: refusal lines, the
 * plaintext STARTTLS dialogues, the greetings mailtlsd writes, and the
 * pre-login filters.
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
static char *
drain_string(struct evbuffer *buf)
{
	size_t	 len = evbuffer_get_length(buf);
	char	*s = malloc(len + 1);

	ck_assert_ptr_nonnull(s);
	evbuffer_remove(buf, s, len);
	s[len] = '\0';
	return s;
}

/* A service of the given protocol, as the configuration would give it. */
static const struct service_config *
service(enum mail_protocol protocol)
{
	static struct service_config	sc;

	memset(&sc, 0, sizeof(sc));
	sc.protocol = protocol;
	sc.tls = TLS_MODE_STARTTLS;
	snprintf(sc.server_name, sizeof(sc.server_name), "mail.example.com");
	snprintf(sc.ehlo_name, sizeof(sc.ehlo_name), "client.example");
	return &sc;
}

/*
 * Dialogues: server lines in, the verdict after the last one, the start of
 * the reason, everything sent to the server, the final state.
 */
struct dialogue_case {
	enum mail_protocol	 protocol;
	const char		*lines[10];
	enum proto_verdict	 verdict;
	const char		*reason;
	const char		*sent;
	const char		*state;
};

static const struct dialogue_case dialogue_cases[] = {
	/* IMAP: success, with discarded untagged lines before the OK. */
	{ MAIL_PROTO_IMAP, { "* OK [CAPABILITY IMAP4rev1 SASL-IR STARTTLS "
	    "LOGINDISABLED] Dovecot ready.", "* CAPABILITY IMAP4rev1 "
	    "AUTH=PLAIN", "* LIST () \"/\" INBOX", "* 23 EXISTS",
	    "* OK [ALERT] injected alert", "* OK [REFERRAL imap://evil/] x",
	    "* NO [ALERT] more", "M1 OK Begin TLS negotiation now." },
	    PROTO_UPGRADE, NULL, "M1 STARTTLS\r\n", "UPGRADED" },
	{ MAIL_PROTO_IMAP, { "* OK IMAP4rev1 server ready" },
	    PROTO_MORE, NULL, "M1 STARTTLS\r\n", "STARTTLS_SENT" },
	{ MAIL_PROTO_IMAP, { "* ok [capability imap4rev1 starttls] hi",
	    "M1 ok go" }, PROTO_UPGRADE, NULL, "M1 STARTTLS\r\n",
	    "UPGRADED" },
	{ MAIL_PROTO_IMAP, { "* OK", "M1 OK" }, PROTO_UPGRADE, NULL,
	    "M1 STARTTLS\r\n", "UPGRADED" },
	/* IMAP: STARTTLS missing from the greeting's CAPABILITY code. */
	{ MAIL_PROTO_IMAP, { "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready" },
	    PROTO_FAIL, "server did not offer STARTTLS", "", "FAILED" },
	{ MAIL_PROTO_IMAP, { "* OK [CAPABILITY IMAP4rev1 XSTARTTLS "
	    "STARTTLSX] ready" }, PROTO_FAIL, "server did not offer STARTTLS",
	    "", "FAILED" },
	{ MAIL_PROTO_IMAP, { "* PREAUTH [CAPABILITY IMAP4rev1 STARTTLS] hi" },
	    PROTO_FAIL, "IMAP PREAUTH greeting refused", "", "FAILED" },
	{ MAIL_PROTO_IMAP, { "* preauth hi" }, PROTO_FAIL,
	    "IMAP PREAUTH greeting refused", "", "FAILED" },
	{ MAIL_PROTO_IMAP, { "* BYE [UNAVAILABLE] too busy" }, PROTO_FAIL,
	    "server refused the connection: [UNAVAILABLE] too busy", "",
	    "FAILED" },
	{ MAIL_PROTO_IMAP, { "hello" }, PROTO_FAIL,
	    "malformed IMAP greeting", "", "FAILED" },
	{ MAIL_PROTO_IMAP, { "*OK ready" }, PROTO_FAIL,
	    "malformed IMAP greeting", "", "FAILED" },
	{ MAIL_PROTO_IMAP, { "" }, PROTO_FAIL, "malformed IMAP greeting", "",
	    "FAILED" },
	{ MAIL_PROTO_IMAP, { "* OKAY" }, PROTO_FAIL,
	    "malformed IMAP greeting", "", "FAILED" },
	{ MAIL_PROTO_IMAP, { "+OK POP3 ready" }, PROTO_FAIL,
	    "malformed IMAP greeting", "", "FAILED" },
	/* IMAP: every answer to STARTTLS but the tagged OK. */
	{ MAIL_PROTO_IMAP, { "* OK hi", "M1 NO STARTTLS disabled" },
	    PROTO_FAIL, "server refused STARTTLS: NO STARTTLS disabled",
	    "M1 STARTTLS\r\n", "FAILED" },
	{ MAIL_PROTO_IMAP, { "* OK hi", "M1 BAD Unknown command" },
	    PROTO_FAIL, "server refused STARTTLS: BAD Unknown command",
	    "M1 STARTTLS\r\n", "FAILED" },
	{ MAIL_PROTO_IMAP, { "* OK hi", "+ go ahead" }, PROTO_FAIL,
	    "unexpected response to STARTTLS", "M1 STARTTLS\r\n", "FAILED" },
	{ MAIL_PROTO_IMAP, { "* OK hi", "M2 OK go" }, PROTO_FAIL,
	    "unexpected response to STARTTLS", "M1 STARTTLS\r\n", "FAILED" },
	{ MAIL_PROTO_IMAP, { "* OK hi", "M1 OKAY" }, PROTO_FAIL,
	    "unexpected response to STARTTLS", "M1 STARTTLS\r\n", "FAILED" },
	{ MAIL_PROTO_IMAP, { "* OK hi", "M1" }, PROTO_FAIL,
	    "unexpected response to STARTTLS", "M1 STARTTLS\r\n", "FAILED" },
	{ MAIL_PROTO_IMAP, { "* OK hi", "garbage" }, PROTO_FAIL,
	    "unexpected response to STARTTLS", "M1 STARTTLS\r\n", "FAILED" },
	{ MAIL_PROTO_IMAP, { "* OK hi", "* BYE shutting down" }, PROTO_FAIL,
	    "server closed the connection: shutting down", "M1 STARTTLS\r\n",
	    "FAILED" },
	/* POP3. */
	{ MAIL_PROTO_POP3, { "+OK Dovecot ready.", "+OK Begin TLS "
	    "negotiation" }, PROTO_UPGRADE, NULL, "STLS\r\n", "UPGRADED" },
	{ MAIL_PROTO_POP3, { "+OK <1896.697170952@dbc.mtview.ca.us>" },
	    PROTO_MORE, NULL, "STLS\r\n", "STLS_SENT" },
	{ MAIL_PROTO_POP3, { "+ok", "+ok" }, PROTO_UPGRADE, NULL, "STLS\r\n",
	    "UPGRADED" },
	{ MAIL_PROTO_POP3, { "-ERR [SYS/TEMP] busy" }, PROTO_FAIL,
	    "server refused the connection: -ERR [SYS/TEMP] busy", "",
	    "FAILED" },
	{ MAIL_PROTO_POP3, { "* OK IMAP" }, PROTO_FAIL,
	    "malformed POP3 greeting", "", "FAILED" },
	{ MAIL_PROTO_POP3, { "+OKAY" }, PROTO_FAIL,
	    "malformed POP3 greeting", "", "FAILED" },
	{ MAIL_PROTO_POP3, { "+OK hi", "-ERR command not permitted" },
	    PROTO_FAIL, "server refused STLS: -ERR command not permitted",
	    "STLS\r\n", "FAILED" },
	{ MAIL_PROTO_POP3, { "+OK hi", "+ go" }, PROTO_FAIL,
	    "unexpected response to STLS", "STLS\r\n", "FAILED" },
	{ MAIL_PROTO_POP3, { "+OK hi", "whatever" }, PROTO_FAIL,
	    "unexpected response to STLS", "STLS\r\n", "FAILED" },
	/* SMTP: multi-line greeting, Postfix-style EHLO reply. */
	{ MAIL_PROTO_SMTP, { "220-mail.example.com ESMTP Postfix",
	    "220 no UCE", "250-mail.example.com", "250-PIPELINING",
	    "250-SIZE 10240000", "250-starttls", "250-ENHANCEDSTATUSCODES",
	    "250 CHUNKING", "220 2.0.0 Ready to start TLS" }, PROTO_UPGRADE,
	    NULL, "EHLO client.example\r\nSTARTTLS\r\n", "UPGRADED" },
	{ MAIL_PROTO_SMTP, { "220 mail ESMTP", "250-mail", "250 STARTTLS" },
	    PROTO_MORE, NULL, "EHLO client.example\r\nSTARTTLS\r\n",
	    "STARTTLS_SENT" },
	{ MAIL_PROTO_SMTP, { "220", "250-mail", "250 STARTTLS", "220" },
	    PROTO_UPGRADE, NULL, "EHLO client.example\r\nSTARTTLS\r\n",
	    "UPGRADED" },
	{ MAIL_PROTO_SMTP, { "220 mail ESMTP" }, PROTO_MORE, NULL,
	    "EHLO client.example\r\n", "EHLO_SENT" },
	{ MAIL_PROTO_SMTP, { "554 5.7.1 no service for you" }, PROTO_FAIL,
	    "server refused the connection: 554 5.7.1 no service for you", "",
	    "FAILED" },
	{ MAIL_PROTO_SMTP, { "421 4.3.2 busy" }, PROTO_FAIL,
	    "server refused the connection", "", "FAILED" },
	{ MAIL_PROTO_SMTP, { "220-mail", "554 no" }, PROTO_FAIL,
	    "malformed multi-line SMTP reply", "", "FAILED" },
	{ MAIL_PROTO_SMTP, { "220 mail", "500 5.5.1 EHLO unknown" },
	    PROTO_FAIL, "server refused EHLO (never falling back to HELO): "
	    "500 5.5.1 EHLO unknown", "EHLO client.example\r\n", "FAILED" },
	{ MAIL_PROTO_SMTP, { "220 mail", "502 5.5.2 HELO only" },
	    PROTO_FAIL, "server refused EHLO", "EHLO client.example\r\n",
	    "FAILED" },
	{ MAIL_PROTO_SMTP, { "220 mail", "250-mail", "250-AUTH PLAIN",
	    "250 8BITMIME" }, PROTO_FAIL, "server did not offer STARTTLS",
	    "EHLO client.example\r\n", "FAILED" },
	/* The first line names the server: "STARTTLS" there is no keyword. */
	{ MAIL_PROTO_SMTP, { "220 mail", "250-STARTTLS", "250 AUTH PLAIN" },
	    PROTO_FAIL, "server did not offer STARTTLS",
	    "EHLO client.example\r\n", "FAILED" },
	{ MAIL_PROTO_SMTP, { "220 mail", "250 STARTTLS" }, PROTO_FAIL,
	    "server did not offer STARTTLS", "EHLO client.example\r\n",
	    "FAILED" },
	{ MAIL_PROTO_SMTP, { "220 mail", "250-mail", "250 XSTARTTLS" },
	    PROTO_FAIL, "server did not offer STARTTLS",
	    "EHLO client.example\r\n", "FAILED" },
	{ MAIL_PROTO_SMTP, { "220 mail", "250-mail", "250-STARTTLS",
	    "220 ready" }, PROTO_FAIL, "malformed multi-line SMTP reply",
	    "EHLO client.example\r\n", "FAILED" },
	{ MAIL_PROTO_SMTP, { "220 mail", "250-mail", "250 STARTTLS",
	    "454 4.7.0 TLS not available due to temporary reason" },
	    PROTO_FAIL, "server refused STARTTLS: 454 4.7.0",
	    "EHLO client.example\r\nSTARTTLS\r\n", "FAILED" },
	{ MAIL_PROTO_SMTP, { "220 mail", "250-mail", "250 STARTTLS",
	    "502 5.5.1 unknown command" }, PROTO_FAIL,
	    "server refused STARTTLS", "EHLO client.example\r\nSTARTTLS\r\n",
	    "FAILED" },
	{ MAIL_PROTO_SMTP, { "220 mail", "250-mail", "250 STARTTLS",
	    "250 ok" }, PROTO_FAIL, "server refused STARTTLS",
	    "EHLO client.example\r\nSTARTTLS\r\n", "FAILED" },
	{ MAIL_PROTO_SMTP, { "22 mail" }, PROTO_FAIL, "malformed SMTP reply",
	    "", "FAILED" },
	{ MAIL_PROTO_SMTP, { "220mail" }, PROTO_FAIL, "malformed SMTP reply",
	    "", "FAILED" },
	{ MAIL_PROTO_SMTP, { "2x0 mail" }, PROTO_FAIL, "malformed SMTP reply",
	    "", "FAILED" },
	{ MAIL_PROTO_SMTP, { "" }, PROTO_FAIL, "malformed SMTP reply", "",
	    "FAILED" },
	{ MAIL_PROTO_SMTP, { "220 mail", "250-mail", "250 STARTTLS",
	    "220-go", "220x" }, PROTO_FAIL, "malformed SMTP reply",
	    "EHLO client.example\r\nSTARTTLS\r\n", "FAILED" },
};

/* Run one dialogue table entry. */
START_TEST(test_dialogue_table)
{
	const struct dialogue_case	*c = &dialogue_cases[_i];
	struct proto_dialogue		*d;
	struct evbuffer			*out = evbuffer_new();
	enum proto_verdict		 v = PROTO_MORE;
	char				*sent;
	int				 i;

	d = proto_dialogue_new(service(c->protocol));
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
	sent = drain_string(out);
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
END_TEST

/* Feed n copies of line after a first line; the verdict of the last. */
static enum proto_verdict
dialogue_flood(enum mail_protocol protocol, const char *first,
    const char *line, int n, char *reason, size_t reasonlen)
{
	struct proto_dialogue	*d = proto_dialogue_new(service(protocol));
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

START_TEST(test_dialogue_nul_byte)
{
	struct proto_dialogue	*d = proto_dialogue_new(service(
				    MAIL_PROTO_IMAP));
	struct evbuffer		*out = evbuffer_new();

	ck_assert_int_eq(proto_dialogue_line(d, "* OK hi\0 there", 14, out),
	    PROTO_FAIL);
	ck_assert_ptr_nonnull(strstr(proto_dialogue_reason(d), "NUL"));
	ck_assert_uint_eq(evbuffer_get_length(out), 0);
	proto_dialogue_free(d);
	evbuffer_free(out);
}
END_TEST

START_TEST(test_dialogue_reason_sanitised)
{
	struct proto_dialogue	*d = proto_dialogue_new(service(
				    MAIL_PROTO_IMAP));
	struct evbuffer		*out = evbuffer_new();
	char			 line[300];
	const char		*r;
	size_t			 i;

	memcpy(line, "* BYE ", 6);
	for (i = 6; i < sizeof(line); i++)
		line[i] = "ab\033\r\x7f\xff"[i % 6];
	ck_assert_int_eq(proto_dialogue_line(d, line, sizeof(line), out),
	    PROTO_FAIL);
	r = proto_dialogue_reason(d);
	ck_assert_uint_le(strlen(r), strlen("server refused the connection: ")
	    + 100 + 3);
	for (i = 0; r[i] != '\0'; i++)
		ck_assert((unsigned char)r[i] >= ' ' &&
		    (unsigned char)r[i] < 0x7f);
	ck_assert_ptr_nonnull(strstr(r, "..."));
	proto_dialogue_free(d);
	evbuffer_free(out);
}
END_TEST

START_TEST(test_dialogue_ehlo_name_default)
{
	struct service_config	 sc = *service(MAIL_PROTO_SMTP);
	struct proto_dialogue	*d;
	struct evbuffer		*out = evbuffer_new();
	char			*sent;

	/* A name that would break the command line is never sent. */
	snprintf(sc.ehlo_name, sizeof(sc.ehlo_name), "a\r\nRSET");
	d = proto_dialogue_new(&sc);
	ck_assert_int_eq(proto_dialogue_line(d, "220 hi", 6, out), PROTO_MORE);
	sent = drain_string(out);
	ck_assert_str_eq(sent, "EHLO localhost\r\n");
	free(sent);
	proto_dialogue_free(d);
	evbuffer_free(out);
}
END_TEST

START_TEST(test_greetings)
{
	struct evbuffer	*out = evbuffer_new();
	char		*g;

	ck_assert_int_eq(proto_write_greeting(out, service(MAIL_PROTO_IMAP)),
	    0);
	g = drain_string(out);
	ck_assert_str_eq(g, "* OK mailtlsd: IMAP4rev1 service ready via TLS "
	    "to mail.example.com\r\n");
	ck_assert_ptr_null(strstr(g, "CAPABILITY"));
	ck_assert_ptr_null(strchr(g, '['));
	free(g);
	ck_assert_int_eq(proto_write_greeting(out, service(MAIL_PROTO_POP3)),
	    0);
	g = drain_string(out);
	ck_assert_str_eq(g, "+OK mailtlsd: POP3 service ready via TLS to "
	    "mail.example.com\r\n");
	ck_assert_ptr_null(strchr(g, '<'));	/* no APOP timestamp */
	free(g);
	ck_assert_int_eq(proto_write_greeting(out, service(MAIL_PROTO_SMTP)),
	    0);
	g = drain_string(out);
	ck_assert_str_eq(g, "220 mail.example.com ESMTP ready (mailtlsd, TLS "
	    "to the server)\r\n");
	free(g);
	evbuffer_free(out);
}
END_TEST

/*
 * proto_greeting_complete(): what a pooled connection may hold while it
 * waits (the server's whole greeting and nothing more).
 */
static const struct greeting_case {
	enum mail_protocol	 protocol;
	const char		*text;
	int			 want;
} greeting_cases[] = {
	{ MAIL_PROTO_IMAP, "", 0 },
	{ MAIL_PROTO_IMAP, "* OK ready", 0 },
	{ MAIL_PROTO_IMAP, "* OK ready\r", 0 },
	{ MAIL_PROTO_IMAP, "* OK ready\r\n", 1 },
	{ MAIL_PROTO_IMAP, "* OK ready\r\n* BYE gone\r\n", -1 },
	{ MAIL_PROTO_IMAP, "* OK ready\r\n*", -1 },
	/* IMAP greets in one line, even one that looks like SMTP's. */
	{ MAIL_PROTO_IMAP, "220-a\r\n220 b\r\n", -1 },
	{ MAIL_PROTO_POP3, "+OK", 0 },
	{ MAIL_PROTO_POP3, "+OK ready <1.2@mail.test>\r\n", 1 },
	{ MAIL_PROTO_POP3, "+OK a\r\n+OK b\r\n", -1 },
	{ MAIL_PROTO_SMTP, "220", 0 },
	{ MAIL_PROTO_SMTP, "220 b\r\n", 1 },
	{ MAIL_PROTO_SMTP, "220-a\r\n", 0 },
	{ MAIL_PROTO_SMTP, "220-a\r\n220", 0 },
	{ MAIL_PROTO_SMTP, "220-a\r\n220 b", 0 },
	{ MAIL_PROTO_SMTP, "220-a\r\n220 b\r\n", 1 },
	{ MAIL_PROTO_SMTP, "220-a\r\n220-b\r\n220 c\r\n", 1 },
	{ MAIL_PROTO_SMTP, "220-a\r\n220 b\r\nx", -1 },
	{ MAIL_PROTO_SMTP, "220-a\r\n220 b\r\n250 x\r\n", -1 },
	{ MAIL_PROTO_SMTP, "220 a\r\n220 b\r\n", -1 },
};

/* Append text one byte per chain: every line end straddles chains. */
static void
add_in_pieces(struct evbuffer *buf, const char *text)
{
	size_t	i;

	for (i = 0; text[i] != '\0'; i++)
		evbuffer_add_reference(buf, text + i, 1, NULL, NULL);
}

START_TEST(test_greeting_complete)
{
	const struct greeting_case	*c = &greeting_cases[_i];
	struct evbuffer			*buf = evbuffer_new();
	int				 got;

	evbuffer_add(buf, c->text, strlen(c->text));
	got = proto_greeting_complete(c->protocol, buf);
	ck_assert_msg(got == c->want, "case %d (%s): got %d, want %d", _i,
	    c->text, got, c->want);
	/* It looks, never takes. */
	ck_assert_uint_eq(evbuffer_get_length(buf), strlen(c->text));
	evbuffer_free(buf);

	buf = evbuffer_new();
	add_in_pieces(buf, c->text);
	ck_assert_int_eq(proto_greeting_complete(c->protocol, buf), c->want);
	evbuffer_free(buf);
}
END_TEST

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

/*
 * Filter transcripts: what client (C) and server (S) send, in order, and
 * what each side must receive in the end.
 */
struct step {
	char		 dir;
	const char	*data;
};

struct transcript {
	const char		*name;
	enum mail_protocol	 protocol;
	int			 greeting;	/* implicit TLS */
	struct step		 steps[12];
	const char		*to_client;
	const char		*to_server;
	int			 done;
	const char		*fail;		/* start of the reason */
};

#define IMAP_REFUSAL(tag) tag " BAD STARTTLS is not available: " \
			    "mailtlsd already uses TLS to the server\r\n"
#define POP3_REFUSAL	"-ERR STLS not available: mailtlsd already uses " \
			"TLS to the server\r\n"
#define SMTP_REFUSAL	"454 4.7.0 STARTTLS not available: mailtlsd " \
			"already uses TLS to the server\r\n"

static const struct transcript transcripts[] = {
	{ "imap dovecot login", MAIL_PROTO_IMAP, 0, {
	    { 'C', "a1 CAPABILITY\r\n" },
	    { 'S', "* CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE "
		"IDLE LITERAL+ STARTTLS AUTH=PLAIN AUTH=LOGIN\r\n"
		"a1 OK Pre-login capabilities listed, post-login "
		"capabilities have more.\r\n" },
	    { 'C', "a2 STARTTLS\r\n" },
	    { 'C', "a3 LOGIN bob {6}\r\n" },
	    { 'S', "+ OK\r\n" },
	    { 'C', "secret\r\n" },
	    { 'S', "a3 OK [CAPABILITY IMAP4rev1 SASL-IR STARTTLS SORT "
		"THREAD=REFERENCES MULTIAPPEND IDLE] Logged in\r\n"
		"* 3 EXISTS\r\n" },
	    { 'C', "a4 STARTTLS\r\n" },
	    { 'S', "a4 BAD TLS is already active\r\n" } },
	    "* CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE "
	    "LITERAL+ AUTH=PLAIN AUTH=LOGIN\r\n"
	    "a1 OK Pre-login capabilities listed, post-login capabilities "
	    "have more.\r\n"
	    IMAP_REFUSAL("a2")
	    "+ OK\r\n"
	    "a3 OK [CAPABILITY IMAP4rev1 SASL-IR SORT THREAD=REFERENCES "
	    "MULTIAPPEND IDLE] Logged in\r\n"
	    "* 3 EXISTS\r\n"
	    "a4 BAD TLS is already active\r\n",
	    "a1 CAPABILITY\r\na3 LOGIN bob {6}\r\nsecret\r\na4 STARTTLS\r\n",
	    1, NULL },
	{ "imap tokens", MAIL_PROTO_IMAP, 0, {
	    { 'C', "A CAPABILITY\r\n" },
	    { 'S', "* capability imap4rev1 starttls STARTTLSX XSTARTTLS "
		"logindisabled AUTH=STARTTLS  LoginDisabled\r\n"
		"* CAPABILITY STARTTLS\r\n"
		"* CAPABILITY\r\n"
		"* OK [CAPABILITY STARTTLS IMAP4rev1] [x STARTTLS]\r\n"
		"* OK [CAPABILITYX STARTTLS] no\r\n"
		"* OK [CAPABILITY IMAP4rev1 STARTTLS no bracket\r\n"
		"* NO STARTTLS LOGINDISABLED\r\n"
		"* 1 FETCH (FLAGS (STARTTLS))\r\n"
		"A OK [capability IMAP4rev1 LOGINDISABLED]\r\n" } },
	    "* capability imap4rev1 STARTTLSX XSTARTTLS AUTH=STARTTLS\r\n"
	    "* CAPABILITY\r\n"
	    "* CAPABILITY\r\n"
	    "* OK [CAPABILITY IMAP4rev1] [x STARTTLS]\r\n"
	    "* OK [CAPABILITYX STARTTLS] no\r\n"
	    "* OK [CAPABILITY IMAP4rev1 STARTTLS no bracket\r\n"
	    "* NO STARTTLS LOGINDISABLED\r\n"
	    "* 1 FETCH (FLAGS (STARTTLS))\r\n"
	    "A OK [capability IMAP4rev1]\r\n",
	    "A CAPABILITY\r\n", 0, NULL },
	{ "imap implicit greeting", MAIL_PROTO_IMAP, 1, {
	    { 'S', "* OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR STARTTLS "
		"LOGINDISABLED AUTH=PLAIN] Dovecot ready.\r\n" } },
	    "* OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR AUTH=PLAIN] Dovecot "
	    "ready.\r\n", "", 0, NULL },
	{ "imap preauth", MAIL_PROTO_IMAP, 1, {
	    { 'S', "* PREAUTH [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n"
		"* CAPABILITY STARTTLS\r\n" } },
	    "* PREAUTH [CAPABILITY IMAP4rev1] hi\r\n"
	    "* CAPABILITY STARTTLS\r\n", "", 1, NULL },
	{ "imap server literals", MAIL_PROTO_IMAP, 0, {
	    { 'C', "a1 ID NIL\r\n" },
	    { 'S', "* ID (\"name\" {23}\r\n* CAPABILITY STARTTLS\r\n "
		"\"x\" {0}\r\n {3}\r\n{1}) ~{10}\r\nSTARTTLS\r\n\r\n"
		"* CAPABILITY IMAP4rev1 STARTTLS\r\n"
		"a1 OK ID completed.\r\n" } },
	    "* ID (\"name\" {23}\r\n* CAPABILITY STARTTLS\r\n "
	    "\"x\" {0}\r\n {3}\r\n{1}) ~{10}\r\nSTARTTLS\r\n\r\n"
	    "* CAPABILITY IMAP4rev1\r\n"
	    "a1 OK ID completed.\r\n",
	    "a1 ID NIL\r\n", 0, NULL },
	{ "imap status lines carry no literal", MAIL_PROTO_IMAP, 0, {
	    { 'S', "* OK [ALERT] pay {5}\r\n"
		"* CAPABILITY IMAP4rev1 STARTTLS\r\n"
		"+ send {3}\r\n* CAPABILITY STARTTLS\r\n" } },
	    "* OK [ALERT] pay {5}\r\n* CAPABILITY IMAP4rev1\r\n"
	    "+ send {3}\r\n* CAPABILITY\r\n", "", 0, NULL },
	{ "imap client literals", MAIL_PROTO_IMAP, 0, {
	    { 'C', "a2 LOGIN {11+}\r\na3 STARTTLS \"pw\"\r\n" },
	    { 'S', "a2 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n" },
	    { 'C', "a5 APPEND INBOX ~{10+}\r\nSTARTTLS\r\n {0+}\r\n {0}\r\n" },
	    { 'S', "+ go\r\n" },
	    { 'C', "\r\n" },
	    { 'S', "a5 NO not authenticated\r\n" },
	    { 'C', "a6 STARTTLS\r\n" },
	    { 'C', "a7 LOGIN {21}\r\n" },
	    { 'S', "+ OK\r\n" },
	    { 'C', "* CAPABILITY STARTTLS pw\r\n" },
	    { 'S', "a7 NO [AUTHENTICATIONFAILED] no\r\n" } },
	    "a2 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
	    "+ go\r\n"
	    "a5 NO not authenticated\r\n"
	    IMAP_REFUSAL("a6")
	    "+ OK\r\n"
	    "a7 NO [AUTHENTICATIONFAILED] no\r\n",
	    "a2 LOGIN {11+}\r\na3 STARTTLS \"pw\"\r\n"
	    "a5 APPEND INBOX ~{10+}\r\nSTARTTLS\r\n {0+}\r\n {0}\r\n\r\n"
	    "a7 LOGIN {21}\r\n* CAPABILITY STARTTLS pw\r\n", 0, NULL },
	{ "imap synchronizing literal held", MAIL_PROTO_IMAP, 0, {
	    { 'C', "a1 LOGIN {5}\r\nhello pw\r\n" },
	    { 'S', "+ go ahead\r\n" },
	    { 'S', "a1 OK [CAPABILITY IMAP4rev1 STARTTLS] in\r\n" } },
	    "+ go ahead\r\na1 OK [CAPABILITY IMAP4rev1] in\r\n",
	    "a1 LOGIN {5}\r\nhello pw\r\n", 1, NULL },
	{ "imap synchronizing literal refused", MAIL_PROTO_IMAP, 0, {
	    { 'C', "a1 LOGIN {5000}\r\n" },
	    { 'S', "a1 NO too long\r\n" },
	    { 'C', "a2 STARTTLS\r\n" },
	    { 'C', "a3 CAPABILITY\r\n" },
	    { 'S', "* CAPABILITY IMAP4rev1 STARTTLS\r\na3 OK\r\n" } },
	    "a1 NO too long\r\n" IMAP_REFUSAL("a2")
	    "* CAPABILITY IMAP4rev1\r\na3 OK\r\n",
	    "a1 LOGIN {5000}\r\na3 CAPABILITY\r\n", 0, NULL },
	{ "imap authenticate", MAIL_PROTO_IMAP, 0, {
	    { 'C', "a1 AUTHENTICATE PLAIN\r\n" },
	    { 'S', "+ \r\n" },
	    { 'C', "AGJvYgBzZWNyZXQ=\r\n" },
	    { 'S', "a1 OK [CAPABILITY IMAP4rev1 STARTTLS IDLE] Logged in\r\n" },
	    { 'C', "a2 STARTTLS\r\n" } },
	    "+ \r\na1 OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n",
	    "a1 AUTHENTICATE PLAIN\r\nAGJvYgBzZWNyZXQ=\r\na2 STARTTLS\r\n",
	    1, NULL },
	{ "imap authenticate sasl-ir", MAIL_PROTO_IMAP, 0, {
	    { 'C', "a1 authenticate PLAIN AGJvYgBzZWNyZXQ=\r\n" },
	    { 'S', "a1 OK Logged in\r\n" } },
	    "a1 OK Logged in\r\n",
	    "a1 authenticate PLAIN AGJvYgBzZWNyZXQ=\r\n", 1, NULL },
	{ "imap authenticate data is not a command", MAIL_PROTO_IMAP, 0, {
	    { 'C', "a1 AUTHENTICATE LOGIN\r\n" },
	    { 'S', "+ VXNlcm5hbWU6\r\n" },
	    { 'C', "a2 STARTTLS\r\n" },
	    { 'S', "+ UGFzc3dvcmQ6\r\n" },
	    { 'C', "*\r\n" },
	    { 'S', "a1 BAD Authentication aborted\r\n" },
	    { 'C', "a3 STARTTLS\r\n" },
	    { 'C', "a4 LOGIN bob secret\r\n" },
	    { 'S', "a4 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n" },
	    { 'C', "a5 CAPABILITY\r\n" },
	    { 'S', "* CAPABILITY IMAP4rev1 STARTTLS\r\na5 OK\r\n" } },
	    "+ VXNlcm5hbWU6\r\n+ UGFzc3dvcmQ6\r\n"
	    "a1 BAD Authentication aborted\r\n" IMAP_REFUSAL("a3")
	    "a4 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
	    "* CAPABILITY IMAP4rev1\r\na5 OK\r\n",
	    "a1 AUTHENTICATE LOGIN\r\na2 STARTTLS\r\n*\r\n"
	    "a4 LOGIN bob secret\r\na5 CAPABILITY\r\n", 0, NULL },
	{ "imap pipelined logins", MAIL_PROTO_IMAP, 0, {
	    { 'C', "a1 LOGIN bob wrong\r\na2 STARTTLS\r\n"
		"a3 LOGIN bob right\r\na4 SELECT INBOX\r\n" },
	    { 'S', "a1 NO [AUTHENTICATIONFAILED] no\r\n"
		"a3 OK [CAPABILITY IMAP4rev1 STARTTLS] yes\r\n"
		"* CAPABILITY STARTTLS\r\n" } },
	    IMAP_REFUSAL("a2") "a1 NO [AUTHENTICATIONFAILED] no\r\n"
	    "a3 OK [CAPABILITY IMAP4rev1] yes\r\n* CAPABILITY STARTTLS\r\n",
	    "a1 LOGIN bob wrong\r\na3 LOGIN bob right\r\na4 SELECT INBOX\r\n",
	    1, NULL },
	{ "imap refusal waits for a literal's end", MAIL_PROTO_IMAP, 0, {
	    { 'C', "a1 ID NIL\r\n" },
	    { 'S', "* ID (\"x\" {4}\r\nab" },
	    { 'C', "a2 STARTTLS\r\n" },
	    { 'S', "cd)\r\na1 OK\r\n" } },
	    "* ID (\"x\" {4}\r\nabcd)\r\n" IMAP_REFUSAL("a2") "a1 OK\r\n",
	    "a1 ID NIL\r\n", 0, NULL },
	{ "imap sasl ended by the server", MAIL_PROTO_IMAP, 0, {
	    { 'C', "a1 AUTHENTICATE PLAIN\r\n" },
	    { 'S', "+ \r\na1 NO [UNAVAILABLE] try later\r\n" },
	    { 'C', "a2 STARTTLS\r\n" } },
	    "+ \r\na1 NO [UNAVAILABLE] try later\r\n" IMAP_REFUSAL("a2"),
	    "a1 AUTHENTICATE PLAIN\r\n", 0, NULL },
	{ "imap login reusing a tag in flight", MAIL_PROTO_IMAP, 0, {
	    { 'C', "a1 NOOP\r\na1 LOGIN bob wrong\r\n" } },
	    "", "a1 NOOP\r\n", 0, "IMAP client gave a LOGIN or AUTHENTICATE "
	    "the tag of another command in progress" },
	{ "imap command reusing a login's tag", MAIL_PROTO_IMAP, 0, {
	    { 'C', "a1 LOGIN bob wrong\r\na1 NOOP\r\n" } },
	    "", "a1 LOGIN bob wrong\r\n", 0, "IMAP client gave a LOGIN or "
	    "AUTHENTICATE the tag of another command in progress" },
	{ "imap tags reused one after the other", MAIL_PROTO_IMAP, 0, {
	    { 'C', "a NOOP\r\n" },
	    { 'S', "a OK done\r\n" },
	    { 'C', "a LOGIN bob wrong\r\n" },
	    { 'S', "a NO [AUTHENTICATIONFAILED] no\r\n" },
	    { 'C', "a LOGIN bob right\r\n" },
	    { 'S', "a OK [CAPABILITY IMAP4rev1 STARTTLS] in\r\n" } },
	    "a OK done\r\na NO [AUTHENTICATIONFAILED] no\r\n"
	    "a OK [CAPABILITY IMAP4rev1] in\r\n",
	    "a NOOP\r\na LOGIN bob wrong\r\na LOGIN bob right\r\n", 1, NULL },
	{ "imap bare LF", MAIL_PROTO_IMAP, 0, {
	    { 'C', "a1 CAPABILITY\n" },
	    { 'S', "* CAPABILITY IMAP4rev1 STARTTLS\na1 OK\n" } },
	    "* CAPABILITY IMAP4rev1\na1 OK\n", "a1 CAPABILITY\n", 0, NULL },
	{ "imap server literal too large", MAIL_PROTO_IMAP, 0, {
	    { 'S', "* 1 FETCH (BODY[] {2147483649}\r\n" } },
	    "", "", 0, "server literal too large" },
	{ "imap client literal too large", MAIL_PROTO_IMAP, 0, {
	    { 'C', "a1 APPEND INBOX {99999999999999999999+}\r\n" } },
	    "", "", 0, "client literal too large" },

	{ "pop3 lang list", MAIL_PROTO_POP3, 0, {
	    { 'C', "LANG\r\nUSER bob\r\nPASS pw\r\n" },
	    { 'S', "+OK Language listing follows\r\nen English\r\n"
		"fr Francais\r\n.\r\n+OK\r\n+OK logged in\r\n" },
	    { 'C', "STLS\r\n" } },
	    "+OK Language listing follows\r\nen English\r\nfr Francais\r\n"
	    ".\r\n+OK\r\n+OK logged in\r\n",
	    "LANG\r\nUSER bob\r\nPASS pw\r\nSTLS\r\n", 1, NULL },
	{ "pop3 unknown multi-line answer", MAIL_PROTO_POP3, 0, {
	    { 'C', "XLIST\r\nUSER bob\r\n" },
	    { 'S', "+OK here\r\nline one\r\n.\r\n" } },
	    "+OK here\r\n", "XLIST\r\nUSER bob\r\n", 0,
	    "POP3 server line that is neither +OK nor -ERR" },
	{ "pop3 dovecot login", MAIL_PROTO_POP3, 0, {
	    { 'C', "CAPA\r\n" },
	    { 'S', "+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\n"
		"AUTH-RESP-CODE\r\nSTLS\r\nUSER\r\nSASL PLAIN LOGIN\r\n.\r\n" },
	    { 'C', "STLS\r\n" },
	    { 'C', "USER bob\r\n" },
	    { 'S', "+OK\r\n" },
	    { 'C', "PASS secret\r\n" },
	    { 'S', "+OK Logged in.\r\n" },
	    { 'C', "STLS\r\n" },
	    { 'S', "-ERR Unknown command.\r\n" } },
	    "+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\n"
	    "AUTH-RESP-CODE\r\nUSER\r\nSASL PLAIN LOGIN\r\n.\r\n"
	    POP3_REFUSAL "+OK\r\n+OK Logged in.\r\n-ERR Unknown command.\r\n",
	    "CAPA\r\nUSER bob\r\nPASS secret\r\nSTLS\r\n", 1, NULL },
	{ "pop3 pipelined refusals", MAIL_PROTO_POP3, 0, {
	    { 'C', "CAPA\r\nSTLS\r\nUSER bob\r\nSTLS\r\nSTLS\r\nLIST\r\n" },
	    { 'S', "+OK Capability list follows\r\nstls\r\nSTLSX\r\nUSER\r\n"
		".\r\n+OK\r\n-ERR not logged in\r\n" } },
	    "+OK Capability list follows\r\nSTLSX\r\nUSER\r\n.\r\n"
	    POP3_REFUSAL "+OK\r\n" POP3_REFUSAL POP3_REFUSAL
	    "-ERR not logged in\r\n",
	    "CAPA\r\nUSER bob\r\nLIST\r\n", 0, NULL },
	{ "pop3 refusal first", MAIL_PROTO_POP3, 0, {
	    { 'C', "stls\r\n" },
	    { 'C', "CAPA\r\n" },
	    { 'S', "+OK\r\nSTLS\r\n.\r\n" } },
	    POP3_REFUSAL "+OK\r\n.\r\n", "CAPA\r\n", 0, NULL },
	{ "pop3 multi-line bodies pass", MAIL_PROTO_POP3, 0, {
	    { 'C', "TOP 1 0\r\nLIST\r\nLIST 1\r\nUIDL\r\nAUTH\r\nCAPA\r\n" },
	    { 'S', "+OK\r\nSubject: STLS\r\nSTLS\r\n..\r\n..STLS\r\n.\r\n"
		"+OK\r\n1 120\r\n.\r\n+OK 1 120\r\n+OK\r\n1 abc\r\n.\r\n"
		"+OK\r\nPLAIN\r\nSTLS\r\n.\r\n-ERR no CAPA\r\n" },
	    { 'C', "STLS\r\n" } },
	    "+OK\r\nSubject: STLS\r\nSTLS\r\n..\r\n..STLS\r\n.\r\n"
	    "+OK\r\n1 120\r\n.\r\n+OK 1 120\r\n+OK\r\n1 abc\r\n.\r\n"
	    "+OK\r\nPLAIN\r\nSTLS\r\n.\r\n-ERR no CAPA\r\n" POP3_REFUSAL,
	    "TOP 1 0\r\nLIST\r\nLIST 1\r\nUIDL\r\nAUTH\r\nCAPA\r\n", 0, NULL },
	{ "pop3 failed login", MAIL_PROTO_POP3, 0, {
	    { 'C', "USER bob\r\nPASS wrong\r\n" },
	    { 'S', "+OK\r\n-ERR [AUTH] Authentication failed.\r\n" },
	    { 'C', "APOP bob 0123456789abcdef0123456789abcdef\r\n" },
	    { 'S', "-ERR [AUTH] no\r\n" },
	    { 'C', "CAPA\r\n" },
	    { 'S', "+OK\r\nSTLS\r\nUSER\r\n.\r\n" } },
	    "+OK\r\n-ERR [AUTH] Authentication failed.\r\n-ERR [AUTH] no\r\n"
	    "+OK\r\nUSER\r\n.\r\n",
	    "USER bob\r\nPASS wrong\r\n"
	    "APOP bob 0123456789abcdef0123456789abcdef\r\nCAPA\r\n", 0, NULL },
	{ "pop3 apop", MAIL_PROTO_POP3, 0, {
	    { 'C', "APOP bob 0123456789abcdef0123456789abcdef\r\n" },
	    { 'S', "+OK maildrop has 2 messages\r\n+OK after\r\n" } },
	    "+OK maildrop has 2 messages\r\n+OK after\r\n",
	    "APOP bob 0123456789abcdef0123456789abcdef\r\n", 1, NULL },
	{ "pop3 auth exchange", MAIL_PROTO_POP3, 0, {
	    { 'C', "AUTH LOGIN\r\n" },
	    { 'S', "+ VXNlcm5hbWU6\r\n" },
	    { 'C', "STLS\r\n" },
	    { 'S', "+ UGFzc3dvcmQ6\r\n" },
	    { 'C', "c2VjcmV0\r\n" },
	    { 'S', "+OK Logged in.\r\n" },
	    { 'C', "STAT\r\n" } },
	    "+ VXNlcm5hbWU6\r\n+ UGFzc3dvcmQ6\r\n+OK Logged in.\r\n",
	    "AUTH LOGIN\r\nSTLS\r\nc2VjcmV0\r\nSTAT\r\n", 1, NULL },
	{ "pop3 auth initial response held", MAIL_PROTO_POP3, 0, {
	    { 'C', "AUTH PLAIN AGJvYgB3cm9uZw==\r\nSTLS\r\n" },
	    { 'S', "-ERR [AUTH] Authentication failed.\r\n" } },
	    "-ERR [AUTH] Authentication failed.\r\n" POP3_REFUSAL,
	    "AUTH PLAIN AGJvYgB3cm9uZw==\r\n", 0, NULL },
	{ "pop3 refusal after login keeps its place", MAIL_PROTO_POP3, 0, {
	    { 'C', "PASS secret\r\nSTAT\r\nSTLS\r\n" },
	    { 'S', "+OK Logged in.\r\n+OK 2 320\r\n" } },
	    "+OK Logged in.\r\n+OK 2 320\r\n" POP3_REFUSAL,
	    "PASS secret\r\nSTAT\r\n", 1, NULL },
	{ "pop3 implicit greeting", MAIL_PROTO_POP3, 1, {
	    { 'C', "CAPA\r\n" },
	    { 'S', "+OK Dovecot ready.\r\n+OK\r\nSTLS\r\nUSER\r\n.\r\n" } },
	    "+OK Dovecot ready.\r\n+OK\r\nUSER\r\n.\r\n", "CAPA\r\n", 0, NULL },

	{ "smtp postfix submission", MAIL_PROTO_SMTP, 0, {
	    { 'C', "EHLO client.example\r\n" },
	    { 'S', "250-mail.example.com\r\n250-PIPELINING\r\n"
		"250-SIZE 10240000\r\n250-VRFY\r\n250-ETRN\r\n250-STARTTLS\r\n"
		"250-AUTH PLAIN LOGIN\r\n250-AUTH=PLAIN LOGIN\r\n"
		"250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n"
		"250 CHUNKING\r\n" },
	    { 'C', "AUTH PLAIN AGJvYgBzZWNyZXQ=\r\n" },
	    { 'S', "235 2.7.0 Authentication successful\r\n" },
	    { 'C', "MAIL FROM:<bob@example.com>\r\nSTARTTLS\r\n" },
	    { 'S', "250 2.1.0 Ok\r\n" } },
	    "250-mail.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n"
	    "250-VRFY\r\n250-ETRN\r\n250-AUTH PLAIN LOGIN\r\n"
	    "250-AUTH=PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n"
	    "250-8BITMIME\r\n250-DSN\r\n250 CHUNKING\r\n"
	    "235 2.7.0 Authentication successful\r\n250 2.1.0 Ok\r\n",
	    "EHLO client.example\r\nAUTH PLAIN AGJvYgBzZWNyZXQ=\r\n"
	    "MAIL FROM:<bob@example.com>\r\nSTARTTLS\r\n", 1, NULL },
	{ "smtp starttls last", MAIL_PROTO_SMTP, 0, {
	    { 'C', "EHLO x\r\n" },
	    { 'S', "250-mail\r\n250-AUTH PLAIN\r\n250 starttls\r\n" },
	    { 'C', "ehlo x\n" },
	    { 'S', "250-mail\n250 STARTTLS\n" },
	    { 'C', "EHLO x\r\n" },
	    { 'S', "250 mail\r\n" },
	    { 'C', "EHLO x\r\n" },
	    { 'S', "250-mail\r\n250-STARTTLS\r\n250-STARTTLS\r\n"
		"250 STARTTLS\r\n" },
	    { 'C', "EHLO x\r\n" },
	    { 'S', "250-STARTTLS\r\n250 STARTTLSX\r\n" } },
	    "250-mail\r\n250 AUTH PLAIN\r\n250 mail\n250 mail\r\n"
	    "250 mail\r\n250-STARTTLS\r\n250 STARTTLSX\r\n",
	    "EHLO x\r\nehlo x\nEHLO x\r\nEHLO x\r\nEHLO x\r\n", 0, NULL },
	{ "smtp pipelined refusals", MAIL_PROTO_SMTP, 0, {
	    { 'C', "EHLO x\r\nSTARTTLS\r\nNOOP\r\nSTARTTLS\r\n" },
	    { 'S', "250-mail\r\n250-STARTTLS\r\n250 PIPELINING\r\n" },
	    { 'S', "250 2.0.0 Ok\r\n" } },
	    "250-mail\r\n250 PIPELINING\r\n" SMTP_REFUSAL "250 2.0.0 Ok\r\n"
	    SMTP_REFUSAL, "EHLO x\r\nNOOP\r\n", 0, NULL },
	{ "smtp data ended with a bare LF", MAIL_PROTO_SMTP, 0, {
	    { 'C', "MAIL FROM:<a@b>\nRCPT TO:<c@d>\nDATA\n" },
	    { 'S', "250 ok\n250 ok\n354 go\n" },
	    { 'C', "Subject: x\n\nbody\n.\n" },
	    { 'S', "250 queued\n" },
	    { 'C', "EHLO x\n" },
	    { 'S', "250-mail\n250 STARTTLS\n" },
	    { 'C', "STARTTLS\n" } },
	    "250 ok\n250 ok\n354 go\n250 queued\n250 mail\n" SMTP_REFUSAL,
	    "MAIL FROM:<a@b>\nRCPT TO:<c@d>\nDATA\nSubject: x\n\nbody\n.\n"
	    "EHLO x\n", 0, NULL },
	{ "smtp refusal first", MAIL_PROTO_SMTP, 0, {
	    { 'C', "STARTTLS\r\nEHLO x\r\n" },
	    { 'S', "250-mail\r\n250 STARTTLS\r\n" } },
	    SMTP_REFUSAL "250 mail\r\n", "EHLO x\r\n", 0, NULL },
	{ "smtp auth login exchange", MAIL_PROTO_SMTP, 0, {
	    { 'C', "AUTH LOGIN\r\n" },
	    { 'S', "334 VXNlcm5hbWU6\r\n" },
	    { 'C', "STARTTLS\r\n" },
	    { 'S', "334 UGFzc3dvcmQ6\r\n" },
	    { 'C', "c2VjcmV0\r\n" },
	    { 'S', "535 5.7.8 Error: authentication failed\r\n" },
	    { 'C', "EHLO x\r\n" },
	    { 'S', "250-mail\r\n250 STARTTLS\r\n" },
	    { 'C', "AUTH PLAIN\r\n" },
	    { 'S', "334 \r\n" },
	    { 'C', "AGJvYgBzZWNyZXQ=\r\n" },
	    { 'S', "235 2.7.0 Authentication successful\r\n" } },
	    "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n"
	    "535 5.7.8 Error: authentication failed\r\n250 mail\r\n"
	    "334 \r\n235 2.7.0 Authentication successful\r\n",
	    "AUTH LOGIN\r\nSTARTTLS\r\nc2VjcmV0\r\nEHLO x\r\nAUTH PLAIN\r\n"
	    "AGJvYgBzZWNyZXQ=\r\n", 1, NULL },
	{ "smtp auth commands held", MAIL_PROTO_SMTP, 0, {
	    { 'C', "AUTH PLAIN AGJvYgB3cm9uZw==\r\nSTARTTLS\r\n" },
	    { 'S', "535 5.7.8 Error: authentication failed\r\n" } },
	    "535 5.7.8 Error: authentication failed\r\n" SMTP_REFUSAL,
	    "AUTH PLAIN AGJvYgB3cm9uZw==\r\n", 0, NULL },
	{ "smtp data", MAIL_PROTO_SMTP, 0, {
	    { 'C', "MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n"
		"DATA\r\n" },
	    { 'S', "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
		"354 End data with <CR><LF>.<CR><LF>\r\n" },
	    { 'C', "Subject: STARTTLS\r\n\r\nSTARTTLS\r\n250-STARTTLS\r\n"
		"..\r\n.x\r\n.\n.\nbare\n.\r\n\r.\r\n." },
	    { 'C', "\r\n" },
	    { 'S', "250 2.0.0 Ok: queued as 1234\r\n" },
	    { 'C', "STARTTLS\r\n" } },
	    "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
	    "354 End data with <CR><LF>.<CR><LF>\r\n"
	    "250 2.0.0 Ok: queued as 1234\r\n" SMTP_REFUSAL,
	    "MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"
	    "Subject: STARTTLS\r\n\r\nSTARTTLS\r\n250-STARTTLS\r\n"
	    "..\r\n.x\r\n.\n.\nbare\n.\r\n\r.\r\n.\r\n", 0, NULL },
	{ "smtp data sent before 354", MAIL_PROTO_SMTP, 0, {
	    { 'C', "DATA\r\nSubject: x\r\n\r\nSTARTTLS\r\n.\r\nSTARTTLS\r\n" },
	    { 'S', "354 go ahead\r\n" },
	    { 'S', "250 Ok\r\n" } },
	    "354 go ahead\r\n250 Ok\r\n" SMTP_REFUSAL,
	    "DATA\r\nSubject: x\r\n\r\nSTARTTLS\r\n.\r\n", 0, NULL },
	{ "smtp data refused", MAIL_PROTO_SMTP, 0, {
	    { 'C', "DATA\r\nSTARTTLS\r\n" },
	    { 'S', "554 5.5.1 Error: no valid recipients\r\n" } },
	    "554 5.5.1 Error: no valid recipients\r\n" SMTP_REFUSAL,
	    "DATA\r\n", 0, NULL },
	{ "smtp empty message", MAIL_PROTO_SMTP, 0, {
	    { 'C', "DATA\r\n" },
	    { 'S', "354 go\r\n" },
	    { 'C', ".\r\nSTARTTLS\r\n" },
	    { 'S', "250 ok\r\n" } },
	    "354 go\r\n250 ok\r\n" SMTP_REFUSAL, "DATA\r\n.\r\n", 0, NULL },
	{ "smtp bdat", MAIL_PROTO_SMTP, 0, {
	    { 'C', "BDAT 24\r\nSTARTTLS\r\n250-STARTTLS\r\n" },
	    { 'C', "BDAT 0 LAST\r\nSTARTTLS\r\n" },
	    { 'S', "250 2.0.0 24 octets\r\n250 2.0.0 Ok: queued\r\n" },
	    { 'C', "BDAT x\r\nBDAT 10 LAST\r\nSTARTTLS\r\n" },
	    { 'S', "501 5.5.4 Syntax: BDAT count [LAST]\r\n250 Ok\r\n" } },
	    "250 2.0.0 24 octets\r\n250 2.0.0 Ok: queued\r\n" SMTP_REFUSAL
	    "501 5.5.4 Syntax: BDAT count [LAST]\r\n250 Ok\r\n",
	    "BDAT 24\r\nSTARTTLS\r\n250-STARTTLS\r\nBDAT 0 LAST\r\n"
	    "BDAT x\r\nBDAT 10 LAST\r\nSTARTTLS\r\n", 0, NULL },
	{ "smtp bdat too large", MAIL_PROTO_SMTP, 0, {
	    { 'C', "BDAT 99999999999 LAST\r\n" } },
	    "", "", 0, "BDAT chunk too large" },
	{ "smtp ehlo refused passes", MAIL_PROTO_SMTP, 0, {
	    { 'C', "EHLO x\r\n" },
	    { 'S', "502-5.5.2 no\r\n502 5.5.2 STARTTLS\r\n" } },
	    "502-5.5.2 no\r\n502 5.5.2 STARTTLS\r\n", "EHLO x\r\n", 0, NULL },
	{ "smtp implicit greeting", MAIL_PROTO_SMTP, 1, {
	    { 'C', "EHLO x\r\n" },
	    { 'S', "220-mail.example.com ESMTP\r\n220 STARTTLS\r\n"
		"250-mail\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n" } },
	    "220-mail.example.com ESMTP\r\n220 STARTTLS\r\n"
	    "250-mail\r\n250 AUTH PLAIN\r\n", "EHLO x\r\n", 0, NULL },
	{ "smtp unsolicited reply", MAIL_PROTO_SMTP, 0, {
	    { 'S', "421-4.4.2 timeout\r\n" },
	    { 'C', "STARTTLS\r\n" },
	    { 'S', "421 4.4.2 bye\r\n" } },
	    "421-4.4.2 timeout\r\n421 4.4.2 bye\r\n" SMTP_REFUSAL, "", 0,
	    NULL },
	{ "smtp malformed reply", MAIL_PROTO_SMTP, 0, {
	    { 'C', "NOOP\r\n" },
	    { 'S', "25 ok\r\n" } },
	    "", "NOOP\r\n", 0, "malformed SMTP reply" },
	{ "smtp inconsistent reply", MAIL_PROTO_SMTP, 0, {
	    { 'C', "EHLO x\r\n" },
	    { 'S', "250-mail\r\n220 STARTTLS\r\n" } },
	    "", "EHLO x\r\n", 0, "malformed multi-line SMTP reply" },
	{ "imap http request", MAIL_PROTO_IMAP, 1, {
	    { 'S', "* OK ready\r\n" },
	    { 'C', "POST / HTTP/1.1\r\nHost: 127.0.0.1:1143\r\n\r\n"
		"a LOGIN bob secret\r\n" } },
	    "* OK ready\r\n", "", 0, "client sent an HTTP request" },
	{ "imap http header first", MAIL_PROTO_IMAP, 0, {
	    { 'C', "a1 NOOP\r\nuser-agent: Mozilla/5.0\r\n" } },
	    "", "a1 NOOP\r\n", 0, "client sent an HTTP request" },
	{ "imap compress refused", MAIL_PROTO_IMAP, 0, {
	    { 'C', "c1 COMPRESS DEFLATE\r\nc2 NOOP\r\n" },
	    { 'S', "c2 OK done\r\n" } },
	    "c1 BAD COMPRESS is only available after login\r\nc2 OK done\r\n",
	    "c2 NOOP\r\n", 0, NULL },
	{ "imap compress with a literal", MAIL_PROTO_IMAP, 0, {
	    { 'C', "c1 COMPRESS {7}\r\n" } },
	    "", "", 0, "IMAP COMPRESS before login" },
	{ "pop3 http request", MAIL_PROTO_POP3, 0, {
	    { 'C', "GET /index.html HTTP/1.0\r\nUSER bob\r\n" } },
	    "", "", 0, "client sent an HTTP request" },
	{ "pop3 password is no http", MAIL_PROTO_POP3, 0, {
	    { 'C', "PASS GET / HTTP/1.1\r\n" },
	    { 'S', "-ERR no\r\n" } },
	    "-ERR no\r\n", "PASS GET / HTTP/1.1\r\n", 0, NULL },
	{ "smtp http request", MAIL_PROTO_SMTP, 1, {
	    { 'S', "220 mx ESMTP\r\n" },
	    { 'C', "POST /form HTTP/1.1\r\nContent-Type: text/plain\r\n\r\n"
		"MAIL FROM:<a@example.org>\r\n" } },
	    "220 mx ESMTP\r\n", "", 0, "client sent an HTTP request" },
	{ "smtp headers in a message are mail", MAIL_PROTO_SMTP, 0, {
	    { 'C', "DATA\r\n" },
	    { 'S', "354 go\r\n" },
	    { 'C', "Host: x\r\nGET / HTTP/1.1\r\n.\r\n" },
	    { 'S', "250 ok\r\n" } },
	    "354 go\r\n250 ok\r\n", "DATA\r\nHost: x\r\nGET / HTTP/1.1\r\n"
	    ".\r\n", 0, NULL },
};

/* The bytes of a transcript run, and how the filter ended. */
struct result {
	struct evbuffer	*to_client;
	struct evbuffer	*to_server;
	int		 done;
	char		 fail[256];
};

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

enum feed_mode {
	FEED_WHOLE,	/* each step at once */
	FEED_CUT,	/* one step split at a byte position */
	FEED_BYTES	/* one byte at a time */
};

/* Run a transcript; with FEED_CUT the byte at cut starts a new chunk. */
static void
run_transcript(const struct transcript *t, enum feed_mode mode, size_t cut,
    struct result *r)
{
	struct harness	h;
	size_t		pos = 0, len, i;
	int		s;

	memset(r, 0, sizeof(*r));
	r->to_client = evbuffer_new();
	r->to_server = evbuffer_new();
	h.r = r;
	h.f = proto_filter_new(t->protocol);
	ck_assert_ptr_nonnull(h.f);
	if (t->greeting)
		proto_filter_expect_greeting(h.f);
	h.from_server = evbuffer_new();
	h.from_client = evbuffer_new();
	for (s = 0; s < 12 && t->steps[s].data != NULL; s++) {
		const struct step	*st = &t->steps[s];

		len = strlen(st->data);
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

	for (s = 0; s < 12 && t->steps[s].data != NULL; s++)
		n += strlen(t->steps[s].data);
	return n;
}

/* Check one run against what the transcript expects. */
static void
check_result(const struct transcript *t, struct result *r, const char *how,
    size_t cut)
{
	char	*to_client = drain_string(r->to_client);
	char	*to_server = drain_string(r->to_server);

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
	}
	free(to_client);
	free(to_server);
	evbuffer_free(r->to_client);
	evbuffer_free(r->to_server);
}

/* One transcript: whole, cut at every byte, and a byte at a time. */
START_TEST(test_filter_transcript)
{
	const struct transcript	*t = &transcripts[_i];
	struct result		 r;
	size_t			 cut, total = transcript_len(t);

	run_transcript(t, FEED_WHOLE, 0, &r);
	check_result(t, &r, "whole", 0);
	for (cut = 1; cut < total; cut++) {
		run_transcript(t, FEED_CUT, cut, &r);
		check_result(t, &r, "cut at", cut);
	}
	run_transcript(t, FEED_BYTES, 0, &r);
	check_result(t, &r, "bytes", 0);
}
END_TEST

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
		s = drain_string(in);
		ck_assert_str_eq(s, c[i].rest);
		free(s);
		s = drain_string(out);
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

/* The common cases and the dialogues. */
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
	tcase_add_loop_test(tc, test_dialogue_table, 0,
	    sizeof(dialogue_cases) / sizeof(dialogue_cases[0]));
	tcase_add_test(tc, test_dialogue_too_many_lines);
	tcase_add_test(tc, test_dialogue_nul_byte);
	tcase_add_test(tc, test_dialogue_reason_sanitised);
	tcase_add_test(tc, test_dialogue_ehlo_name_default);
	tcase_add_test(tc, test_greetings);
	suite_add_tcase(s, tc);

	tc = tcase_create("greeting_complete");
	tcase_add_loop_test(tc, test_greeting_complete, 0,
	    sizeof(greeting_cases) / sizeof(greeting_cases[0]));
	tcase_add_test(tc, test_greeting_complete_prefixes);
	suite_add_tcase(s, tc);
	return s;
}

/* The pre-login filters. */
Suite *
proto_filter_suite(void)
{
	Suite	*s = suite_create("proto_filter");
	TCase	*tc = tcase_create("transcripts");

	/* Every transcript runs at every split point. */
	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, test_filter_transcript, 0,
	    sizeof(transcripts) / sizeof(transcripts[0]));
	suite_add_tcase(s, tc);

	tc = tcase_create("limits");
	tcase_add_test(tc, test_filter_done_leaves_rest);
	tcase_add_test(tc, test_filter_overlong_lines);
	tcase_add_test(tc, test_filter_sasl_whole_lines);
	tcase_add_test(tc, test_filter_payload_streams);
	tcase_add_test(tc, test_filter_bounds);
	tcase_add_test(tc, test_filter_client_backlog);
	tcase_add_test(tc, test_filter_past_login);
	tcase_add_test(tc, test_http_lines);
	suite_add_tcase(s, tc);
	return s;
}
