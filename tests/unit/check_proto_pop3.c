/*
 * check_proto_pop3.c - unit tests of the POP3 protocol code: the STARTTLS
 * dialogues with POP3 servers, the greetings a pooled connection may
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
};

/* Run one dialogue table entry. */
START_TEST(test_dialogue_table)
{
	check_dialogue_case(&dialogue_cases[_i]);
}
END_TEST

/* proto_greeting_complete(): see struct greeting_case. */
static const struct greeting_case greeting_cases[] = {
	{ MAIL_PROTO_POP3, "+OK", 0 },
	{ MAIL_PROTO_POP3, "+OK ready <1.2@mail.test>\r\n", 1 },
	{ MAIL_PROTO_POP3, "+OK a\r\n+OK b\r\n", -1 },
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

	{ "pop3 http request", MAIL_PROTO_POP3, 0, {
	    { 'C', "GET /index.html HTTP/1.0\r\nUSER bob\r\n" } },
	    "", "", 0, "client sent an HTTP request" },
	{ "pop3 password is no http", MAIL_PROTO_POP3, 0, {
	    { 'C', "PASS GET / HTTP/1.1\r\n" },
	    { 'S', "-ERR no\r\n" } },
	    "-ERR no\r\n", "PASS GET / HTTP/1.1\r\n", 0, NULL },
};

/* One transcript: whole, cut at every byte, and a byte at a time. */
/* Gmail's refusal of a password where it wants an app password. */
#define GMAIL_ERR	"-ERR [AUTH] Application-specific password " \
			"required: https://support.google.com/accounts/" \
			"answer/185833"

/* Refusals of PASS, APOP and AUTH: reported once each, lines unchanged. */
static const struct refusal_transcript refusals[] = {
	{ { "pop3 gmail: reported, unchanged", MAIL_PROTO_POP3, 1, {
	    { 'S', "+OK Gpop ready for requests from 192.0.2.1\r\n" },
	    { 'C', "USER bob@gmail.com\r\n" },
	    { 'S', "+OK send PASS\r\n" },
	    { 'C', "PASS secret\r\n" },
	    { 'S', GMAIL_ERR "\r\n" },
	    { 'C', "QUIT\r\n" },
	    { 'S', "+OK Farewell.\r\n" } },
	    "+OK Gpop ready for requests from 192.0.2.1\r\n+OK send PASS\r\n"
	    GMAIL_ERR "\r\n+OK Farewell.\r\n",
	    "USER bob@gmail.com\r\nPASS secret\r\nQUIT\r\n", 0, NULL },
	    GMAIL_ERR "\n" },
	{ { "pop3 auth and apop refused, user not, then a login",
	    MAIL_PROTO_POP3, 0, {
	    { 'C', "USER nobody\r\n" },
	    { 'S', "-ERR no such user\r\n" },
	    { 'C', "AUTH PLAIN\r\n" },
	    { 'S', "+ \r\n" },
	    { 'C', "AGJvYgBzZWNyZXQ=\r\n" },
	    { 'S', "-ERR [AUTH] Authentication failed.\r\n" },
	    { 'C', "APOP bob c4c9334bac560ecc979e58001b3e22fb\r\n" },
	    { 'S', "-ERR [AUTH] bad digest\r\n" },
	    { 'C', "USER bob\r\nPASS secret\r\n" },
	    { 'S', "+OK\r\n+OK Logged in.\r\n" } },
	    "-ERR no such user\r\n+ \r\n-ERR [AUTH] Authentication failed."
	    "\r\n-ERR [AUTH] bad digest\r\n+OK\r\n+OK Logged in.\r\n",
	    "USER nobody\r\nAUTH PLAIN\r\nAGJvYgBzZWNyZXQ=\r\n"
	    "APOP bob c4c9334bac560ecc979e58001b3e22fb\r\n"
	    "USER bob\r\nPASS secret\r\n", 1, NULL },
	    "-ERR [AUTH] Authentication failed.\n-ERR [AUTH] bad digest\n" },
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

/* POP3: dialogues, greetings, pre-login filter transcripts. */
Suite *
proto_pop3_suite(void)
{
	Suite	*s = suite_create("proto_pop3");
	TCase	*tc = tcase_create("dialogue");

	tcase_add_loop_test(tc, test_dialogue_table, 0,
	    sizeof(dialogue_cases) / sizeof(dialogue_cases[0]));
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
