/*
 * check_proto_imap.c - unit tests of the IMAP protocol code: the STARTTLS
 * dialogues with IMAP servers, the greetings a pooled connection may
 * hold, and the pre-login filter's transcripts (check_proto.c runs each
 * entry, and has the cases common to the protocols).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "check_proto.h"
#include "proto.h"
#include "unit.h"

/*
 * Dialogues: server lines in, the verdict after the last one, the start of
 * the reason, everything sent to the server, the final state.
 */
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
};

/* Run one dialogue table entry. */
START_TEST(test_dialogue_table)
{
	check_dialogue_case(&dialogue_cases[_i]);
}
END_TEST

START_TEST(test_dialogue_nul_byte)
{
	struct proto_dialogue	*d = proto_dialogue_new(unit_service(
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
	struct proto_dialogue	*d = proto_dialogue_new(unit_service(
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

/* proto_greeting_complete(): see struct greeting_case. */
static const struct greeting_case greeting_cases[] = {
	{ MAIL_PROTO_IMAP, "", 0 },
	{ MAIL_PROTO_IMAP, "* OK ready", 0 },
	{ MAIL_PROTO_IMAP, "* OK ready\r", 0 },
	{ MAIL_PROTO_IMAP, "* OK ready\r\n", 1 },
	{ MAIL_PROTO_IMAP, "* OK ready\r\n* BYE gone\r\n", -1 },
	{ MAIL_PROTO_IMAP, "* OK ready\r\n*", -1 },
	/* IMAP greets in one line, even one that looks like SMTP's. */
	{ MAIL_PROTO_IMAP, "220-a\r\n220 b\r\n", -1 },
};

START_TEST(test_greeting_complete)
{
	check_greeting_case(&greeting_cases[_i], _i);
}
END_TEST

/*
 * Filter transcripts: what client (C) and server (S) send, in order, and
 * what each side must receive in the end.
 */
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
};

/* One transcript: whole, cut at every byte, and a byte at a time. */
/* Gmail's refusal of a password where it wants an app password. */
#define GMAIL_ALERT	"NO [ALERT] Application-specific password " \
			"required: https://support.google.com/accounts/" \
			"answer/185833 (Failure)"

/*
 * Refusals of the client's LOGIN or AUTHENTICATE: reported once each, the
 * words added as an untagged [ALERT] before the tagged NO unless that is
 * an alert itself.
 */
static const struct refusal_transcript refusals[] = {
	{ { "imap gmail alert: reported, unchanged", MAIL_PROTO_IMAP, 1, {
	    { 'S', "* OK Gimap ready for requests from 192.0.2.1\r\n" },
	    { 'C', "a1 LOGIN bob@gmail.com secret\r\n" },
	    { 'S', "a1 " GMAIL_ALERT "\r\n" },
	    { 'C', "a2 LOGOUT\r\n" },
	    { 'S', "* BYE LOGOUT Requested\r\na2 OK 73 good day\r\n" } },
	    "* OK Gimap ready for requests from 192.0.2.1\r\n"
	    "a1 " GMAIL_ALERT "\r\n"
	    "* BYE LOGOUT Requested\r\na2 OK 73 good day\r\n",
	    "a1 LOGIN bob@gmail.com secret\r\na2 LOGOUT\r\n", 0, NULL },
	    GMAIL_ALERT "\n" },
	{ { "imap words as an untagged alert, then a login", MAIL_PROTO_IMAP,
	    0, {
	    { 'C', "a1 AUTHENTICATE PLAIN\r\n" },
	    { 'S', "+ \r\n" },
	    { 'C', "AGJvYgBzZWNyZXQ=\r\n" },
	    { 'S', "a1 NO [AUTHENTICATIONFAILED] Application-specific "
		"password required\r\n" },
	    { 'C', "a2 LOGIN bob secret\r\n" },
	    { 'S', "a2 OK [CAPABILITY IMAP4rev1] Logged in\r\n" } },
	    "+ \r\n* NO [ALERT] " UNIT_WORDS_APP_PW "\r\n"
	    "a1 NO [AUTHENTICATIONFAILED] Application-specific password "
	    "required\r\na2 OK [CAPABILITY IMAP4rev1] Logged in\r\n",
	    "a1 AUTHENTICATE PLAIN\r\nAGJvYgBzZWNyZXQ=\r\n"
	    "a2 LOGIN bob secret\r\n", 1, NULL },
	    "NO [AUTHENTICATIONFAILED] Application-specific password "
	    "required\n" },
	{ { "imap pipelined logins, literals, any case", MAIL_PROTO_IMAP, 0, {
	    { 'C', "a1 LOGIN {3+}\r\nbob {6+}\r\nsecret\r\n"
		"a2 login bob x\r\na3 Login bob y\r\n" },
	    { 'S', "a1 no [alert] Application-specific password required\r\n"
		"a2 No Application-specific password required\r\n"
		"a3 NO [ALERTS] Application-specific password required\r\n" } },
	    "a1 no [alert] Application-specific password required\r\n"
	    "* NO [ALERT] " UNIT_WORDS_APP_PW "\r\n"
	    "a2 No Application-specific password required\r\n"
	    "* NO [ALERT] " UNIT_WORDS_APP_PW "\r\n"
	    "a3 NO [ALERTS] Application-specific password required\r\n",
	    "a1 LOGIN {3+}\r\nbob {6+}\r\nsecret\r\na2 login bob x\r\n"
	    "a3 Login bob y\r\n", 0, NULL },
	    "no [alert] Application-specific password required\n"
	    "No Application-specific password required\n"
	    "NO [ALERTS] Application-specific password required\n" },
	{ { "imap only a login's NO is a refusal", MAIL_PROTO_IMAP, 0, {
	    { 'C', "a1 LOGIN bob wrong\r\na2 SELECT INBOX\r\na3 LOGIN\r\n" },
	    { 'S', "* NO [ALERT] 5.7.139 untagged\r\n"
		"a1 NO [AUTHENTICATIONFAILED] Invalid credentials "
		"(Failure)\r\n"
		"a2 NO 5.7.139 not a login\r\n"
		"a3 BAD 5.7.139 syntax\r\n" } },
	    "* NO [ALERT] 5.7.139 untagged\r\n"
	    "a1 NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)\r\n"
	    "a2 NO 5.7.139 not a login\r\na3 BAD 5.7.139 syntax\r\n",
	    "a1 LOGIN bob wrong\r\na2 SELECT INBOX\r\na3 LOGIN\r\n", 0, NULL },
	    "NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)\n" },
};

START_TEST(test_filter_transcript)
{
	check_transcript(&transcripts[_i]);
}
END_TEST

/* A refusal: whole, cut at every byte, and a byte at a time. */
START_TEST(test_filter_refusal)
{
	check_refusal_transcript(&refusals[_i]);
}
END_TEST

/* IMAP: dialogues, greetings, pre-login filter transcripts. */
Suite *
proto_imap_suite(void)
{
	Suite	*s = suite_create("proto_imap");
	TCase	*tc = tcase_create("dialogue");

	tcase_add_loop_test(tc, test_dialogue_table, 0,
	    sizeof(dialogue_cases) / sizeof(dialogue_cases[0]));
	tcase_add_test(tc, test_dialogue_nul_byte);
	tcase_add_test(tc, test_dialogue_reason_sanitised);
	suite_add_tcase(s, tc);

	tc = tcase_create("greeting_complete");
	tcase_add_loop_test(tc, test_greeting_complete, 0,
	    sizeof(greeting_cases) / sizeof(greeting_cases[0]));
	suite_add_tcase(s, tc);

	tc = tcase_create("transcripts");
	/* Every transcript runs at every split point. */
	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, test_filter_transcript, 0,
	    sizeof(transcripts) / sizeof(transcripts[0]));
	suite_add_tcase(s, tc);

	tc = tcase_create("refusals");
	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, test_filter_refusal, 0,
	    sizeof(refusals) / sizeof(refusals[0]));
	suite_add_tcase(s, tc);
	return s;
}
