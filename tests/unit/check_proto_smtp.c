/*
 * check_proto_smtp.c - unit tests of the SMTP protocol code: the STARTTLS
 * dialogues with SMTP servers, the greetings a pooled connection may
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
	check_dialogue_case(&dialogue_cases[_i]);
}
END_TEST

START_TEST(test_dialogue_ehlo_name_default)
{
	struct service_config	 sc = *unit_service(MAIL_PROTO_SMTP);
	struct proto_dialogue	*d;
	struct evbuffer		*out = evbuffer_new();
	char			*sent;

	/* A name that would break the command line is never sent. */
	snprintf(sc.ehlo_name, sizeof(sc.ehlo_name), "a\r\nRSET");
	d = proto_dialogue_new(&sc);
	ck_assert_int_eq(proto_dialogue_line(d, "220 hi", 6, out), PROTO_MORE);
	sent = unit_drain_string(out);
	ck_assert_str_eq(sent, "EHLO localhost\r\n");
	free(sent);
	proto_dialogue_free(d);
	evbuffer_free(out);
}
END_TEST

/* proto_greeting_complete(): see struct greeting_case. */
static const struct greeting_case greeting_cases[] = {
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

/* Gmail's refusal of a password where it wants an app password. */
#define GMAIL_534_1	"534-5.7.9 Application-specific password " \
			"required. Learn more at\r\n"
#define GMAIL_534_2	"5.7.9  https://support.google.com/mail/" \
			"?p=InvalidSecondFactor a1-20020a gsmtp"
#define MS_535		"535 5.7.139 Authentication unsuccessful, " \
			"SmtpClientAuthentication is disabled for the Tenant."
#define MS_550		"550 5.7.30 Basic authentication is not " \
			"supported for Client Submission."

/*
 * Refusals of the client's AUTH: reported once each, and the words added
 * as the last line of the same reply, with its codes.
 */
static const struct refusal_transcript refusals[] = {
	{ { "smtp gmail 534 multi-line, words added", MAIL_PROTO_SMTP, 1, {
	    { 'S', "220 smtp.gmail.com ESMTP\r\n" },
	    { 'C', "EHLO x\r\n" },
	    { 'S', "250-smtp.gmail.com\r\n250 AUTH LOGIN PLAIN\r\n" },
	    { 'C', "AUTH PLAIN AGJvYgBzZWNyZXQ=\r\n" },
	    { 'S', GMAIL_534_1 "534 " GMAIL_534_2 "\r\n" },
	    { 'C', "QUIT\r\n" },
	    { 'S', "221 2.0.0 closing connection\r\n" } },
	    "220 smtp.gmail.com ESMTP\r\n"
	    "250-smtp.gmail.com\r\n250 AUTH LOGIN PLAIN\r\n"
	    GMAIL_534_1 "534-" GMAIL_534_2 "\r\n"
	    "534 5.7.9 " UNIT_WORDS_APP_PW "\r\n"
	    "221 2.0.0 closing connection\r\n",
	    "EHLO x\r\nAUTH PLAIN AGJvYgBzZWNyZXQ=\r\nQUIT\r\n", 0, NULL },
	    "534-5.7.9 Application-specific password required. Learn more "
	    "at " GMAIL_534_2 "\n" },
	{ { "smtp microsoft 535 after auth login, then a login",
	    MAIL_PROTO_SMTP, 0, {
	    { 'C', "AUTH LOGIN\r\n" },
	    { 'S', "334 VXNlcm5hbWU6\r\n" },
	    { 'C', "Ym9i\r\n" },
	    { 'S', "334 UGFzc3dvcmQ6\r\n" },
	    { 'C', "c2VjcmV0\r\n" },
	    { 'S', MS_535 "\r\n" },
	    { 'C', "AUTH PLAIN AGJvYgBzZWNyZXQ=\r\n" },
	    { 'S', "235 2.7.0 Authentication successful\r\n" } },
	    "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n"
	    "535-5.7.139 Authentication unsuccessful, SmtpClientAuthentication "
	    "is disabled for the Tenant.\r\n"
	    "535 5.7.139 " UNIT_WORDS_OAUTH2 "\r\n"
	    "235 2.7.0 Authentication successful\r\n",
	    "AUTH LOGIN\r\nYm9i\r\nc2VjcmV0\r\n"
	    "AUTH PLAIN AGJvYgBzZWNyZXQ=\r\n", 1, NULL }, MS_535 "\n" },
	{ { "smtp microsoft 550, bare LF kept, pipelined after",
	    MAIL_PROTO_SMTP, 0, {
	    { 'C', "AUTH PLAIN AGJvYgBzZWNyZXQ=\r\n" },
	    { 'S', MS_550 "\n" },
	    { 'C', "NOOP\r\nRSET\r\n" },
	    { 'S', "250 2.0.0 OK\r\n250 2.0.0 Reset\r\n" } },
	    "550-5.7.30 Basic authentication is not supported for Client "
	    "Submission.\n550 5.7.30 " UNIT_WORDS_OAUTH2 "\r\n"
	    "250 2.0.0 OK\r\n250 2.0.0 Reset\r\n",
	    "AUTH PLAIN AGJvYgBzZWNyZXQ=\r\nNOOP\r\nRSET\r\n", 0, NULL },
	    MS_550 "\n" },
	{ { "smtp wrong password: reported, unchanged", MAIL_PROTO_SMTP, 0, {
	    { 'C', "AUTH PLAIN AGJvYgB3cm9uZw==\r\n" },
	    { 'S', "535-5.7.8 Username and Password not accepted.\r\n"
		"535 5.7.8 Learn more\r\n" },
	    { 'C', "QUIT\r\n" },
	    { 'S', "221 bye\r\n" } },
	    "535-5.7.8 Username and Password not accepted.\r\n"
	    "535 5.7.8 Learn more\r\n221 bye\r\n",
	    "AUTH PLAIN AGJvYgB3cm9uZw==\r\nQUIT\r\n", 0, NULL },
	    "535-5.7.8 Username and Password not accepted. 5.7.8 Learn "
	    "more\n" },
	{ { "smtp words without enhanced codes", MAIL_PROTO_SMTP, 0, {
	    { 'C', "AUTH PLAIN AGJvYgBzZWNyZXQ=\r\n" },
	    { 'S', "534 Application-specific password required\r\n" },
	    { 'C', "AUTH PLAIN AGJvYgBzZWNyZXQ=\r\n" },
	    { 'S', "534 4.7.9 Application-specific password required\r\n" },
	    { 'C', "AUTH PLAIN AGJvYgBzZWNyZXQ=\r\n" },
	    { 'S', "534 5.7.1234 Application-specific password required\r\n" },
	    { 'C', "AUTH PLAIN AGJvYgBzZWNyZXQ=\r\n" },
	    { 'S', "534 5.7.139\r\n" } },
	    "534-Application-specific password required\r\n"
	    "534 " UNIT_WORDS_APP_PW "\r\n"
	    "534-4.7.9 Application-specific password required\r\n"
	    "534 " UNIT_WORDS_APP_PW "\r\n"
	    "534-5.7.1234 Application-specific password required\r\n"
	    "534 " UNIT_WORDS_APP_PW "\r\n"
	    "534-5.7.139\r\n534 5.7.139 " UNIT_WORDS_OAUTH2 "\r\n",
	    "AUTH PLAIN AGJvYgBzZWNyZXQ=\r\nAUTH PLAIN AGJvYgBzZWNyZXQ=\r\n"
	    "AUTH PLAIN AGJvYgBzZWNyZXQ=\r\nAUTH PLAIN AGJvYgBzZWNyZXQ=\r\n", 0,
	    NULL },
	    "534 Application-specific password required\n"
	    "534 4.7.9 Application-specific password required\n"
	    "534 5.7.1234 Application-specific password required\n"
	    "534 5.7.139\n" },
	{ { "smtp not refusals: mechanism, syntax, closing, other commands",
	    MAIL_PROTO_SMTP, 0, {
	    { 'C', "AUTH CRAM-MD5\r\n" },
	    { 'S', "504 5.5.4 Unrecognized authentication type 5.7.139\r\n" },
	    { 'C', "AUTH LOGIN\r\n" },
	    { 'S', "334 VXNlcm5hbWU6\r\n" },
	    { 'C', "*\r\n" },
	    { 'S', "501 5.7.0 Authentication cancelled\r\n" },
	    { 'C', "MAIL FROM:<a@b>\r\n" },
	    { 'S', "550 5.7.30 not an AUTH\r\n" },
	    { 'C', "AUTH PLAIN AGJvYgBzZWNyZXQ=\r\n" },
	    { 'S', "421 4.7.0 5.7.139 closing\r\n" } },
	    "504 5.5.4 Unrecognized authentication type 5.7.139\r\n"
	    "334 VXNlcm5hbWU6\r\n501 5.7.0 Authentication cancelled\r\n"
	    "550 5.7.30 not an AUTH\r\n421 4.7.0 5.7.139 closing\r\n",
	    "AUTH CRAM-MD5\r\nAUTH LOGIN\r\n*\r\nMAIL FROM:<a@b>\r\n"
	    "AUTH PLAIN AGJvYgBzZWNyZXQ=\r\n", 0, NULL }, "" },
	{ { "smtp temporary failure: reported", MAIL_PROTO_SMTP, 0, {
	    { 'C', "AUTH PLAIN AGJvYgBzZWNyZXQ=\r\n" },
	    { 'S', "454 4.7.0 Temporary authentication failure\r\n" } },
	    "454 4.7.0 Temporary authentication failure\r\n",
	    "AUTH PLAIN AGJvYgBzZWNyZXQ=\r\n", 0, NULL },
	    "454 4.7.0 Temporary authentication failure\n" },
	{ { "smtp control bytes in a refusal", MAIL_PROTO_SMTP, 0, {
	    { 'C', "AUTH PLAIN AGJvYgBzZWNyZXQ=\r\n" },
	    { 'S', "535 5.7.8 bad\tpass\x80word\r\n" } },
	    "535 5.7.8 bad\tpass\x80word\r\n",
	    "AUTH PLAIN AGJvYgBzZWNyZXQ=\r\n", 0, NULL },
	    "535 5.7.8 bad?pass?word\n" },
};

/* One transcript: whole, cut at every byte, and a byte at a time. */
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

/* SMTP: dialogues, greetings, pre-login filter transcripts. */
Suite *
proto_smtp_suite(void)
{
	Suite	*s = suite_create("proto_smtp");
	TCase	*tc = tcase_create("dialogue");

	tcase_add_loop_test(tc, test_dialogue_table, 0,
	    sizeof(dialogue_cases) / sizeof(dialogue_cases[0]));
	tcase_add_test(tc, test_dialogue_ehlo_name_default);
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
