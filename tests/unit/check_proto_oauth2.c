/*
 * check_proto_oauth2.c - unit tests of the pre-login filters that log in
 * with OAuth2 (proto_filter_use_oauth2(), proto_oauth2.c): every form of
 * login a client can send, the exchange with the server (XOAUTH2 and
 * OAUTHBEARER, the error challenge, the failure, a retry), refusals, the
 * capability lists the client sees, and the bounds.  Transcripts run
 * whole, cut at every byte and a byte at a time (check_proto.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "check_proto.h"
#include "proto.h"
#include "unit.h"

#define USER		"bob@example.com"
#define TOKEN		"ya29.tok"
#define TOKEN2		"ya29.new"
/* base64 of "user=" USER "\1auth=Bearer " TOKEN "\1\1" (XOAUTH2) */
#define XOAUTH2_B64	"dXNlcj1ib2JAZXhhbXBsZS5jb20BYXV0aD1CZWFyZXIgeWEy" \
			"OS50b2sBAQ=="
#define XOAUTH2_B64_NEW	"dXNlcj1ib2JAZXhhbXBsZS5jb20BYXV0aD1CZWFyZXIgeWEy" \
			"OS5uZXcBAQ=="
/* base64 of "n,a=" USER ",\1auth=Bearer " TOKEN "\1\1" (OAUTHBEARER) */
#define BEARER_B64	"bixhPWJvYkBleGFtcGxlLmNvbSwBYXV0aD1CZWFyZXIgeWEy" \
			"OS50b2sBAQ=="
/* PLAIN: "\0" USER "\0secret"; USER "\0" USER "\0secret"; "admin\0"... */
#define PLAIN_B64	"AGJvYkBleGFtcGxlLmNvbQBzZWNyZXQ="
#define PLAIN_SAME_B64	"Ym9iQGV4YW1wbGUuY29tAGJvYkBleGFtcGxlLmNvbQBzZWNy" \
			"ZXQ="
#define PLAIN_ADMIN_B64	"YWRtaW4AYm9iQGV4YW1wbGUuY29tAHNlY3JldA=="
#define PLAIN_ONE_NUL	"AGJvYkBleGFtcGxlLmNvbQ=="	/* no password */
#define PLAIN_3_NULS	"AGJvYkBleGFtcGxlLmNvbQBzZWMAcmV0"
#define USER_B64	"Ym9iQGV4YW1wbGUuY29t"
#define SECRET_B64	"c2VjcmV0"
/* Error challenges: {"status":"401",...} and {"status":"invalid_token"} */
#define ERR_401_B64	"eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIiwic2Nv" \
			"cGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ=="
#define ERR_400_B64	"eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2Nv" \
			"cGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ=="
#define ERR_TOKEN_B64	"eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJodHRw" \
			"czovL291dGxvb2sub2ZmaWNlLmNvbS9JTUFQLkFjY2Vzc0FzVXNl" \
			"ci5BbGwifQ=="
/* A token of 200 bytes, too long for a POP3 initial response. */
#define L20		"LLLLLLLLLLLLLLLLLLLL"
#define LONG_TOKEN	L20 L20 L20 L20 L20 L20 L20 L20 L20 L20
#define LONG_B64	\
	"dXNlcj1ib2JAZXhhbXBsZS5jb20BYXV0aD1CZWFyZXIgTExMTExMTExMTExMTExM" \
	"TExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExM" \
	"TExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExM" \
	"TExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExM" \
	"TExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTEwBAQ=="
/* 1024 and 1025 bytes: the bound of a user name and of a password. */
#define X16		"xxxxxxxxxxxxxxxx"
#define X256		X16 X16 X16 X16 X16 X16 X16 X16 X16 X16 X16 X16 \
			X16 X16 X16 X16
#define X1024		X256 X256 X256 X256
#define X1025		X1024 "x"

#define IMAP_GREETING_IN	"* OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL+ " \
				"AUTH=PLAIN AUTH=XOAUTH2 AUTH=OAUTHBEARER " \
				"STARTTLS LOGINDISABLED] ready\r\n"
#define IMAP_GREETING_OUT	"* OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL+ " \
				"AUTH=PLAIN] ready\r\n"
#define IMAP_LITERAL_GO		"+ Ready for literal data\r\n"
#define IMAP_LIMIT		" NO [LIMIT] mailtlsd: user name or password " \
				"longer than 1024 bytes\r\n"
#define IMAP_CANNOT		" NO [CANNOT] mailtlsd logs in to the server " \
				"with OAuth2 itself: use LOGIN or " \
				"AUTHENTICATE PLAIN\r\n"
#define IMAP_LOGIN_BAD		" BAD mailtlsd: malformed LOGIN command\r\n"

static const struct transcript imap_transcripts[] = {
	{ "imap login with atoms, a command pipelined after it",
	    MAIL_PROTO_IMAP, 1, {
	    { 'S', IMAP_GREETING_IN },
	    { 'C', "a1 LOGIN " USER " secret\r\na2 SELECT INBOX\r\n" },
	    { 'L', "WANTED" }, { 'U', USER }, { 'P', "secret" },
	    { 'T', TOKEN },
	    { 'L', "SENT" },
	    { 'S', "a1 OK [CAPABILITY IMAP4rev1 IDLE STARTTLS] Logged in\r\n"
		"* 3 EXISTS\r\n" } },
	    IMAP_GREETING_OUT
	    "a1 OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n* 3 EXISTS\r\n",
	    "a1 AUTHENTICATE XOAUTH2 " XOAUTH2_B64 "\r\na2 SELECT INBOX\r\n",
	    1, NULL },
	{ "imap login with quoted strings", MAIL_PROTO_IMAP, 1, {
	    { 'S', "* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2] hi\r\n" },
	    { 'C', "x LOGIN \"" USER "\" \"p\\\"w\\\\d x\"\r\n" },
	    { 'U', USER }, { 'P', "p\"w\\d x" },
	    { 'T', TOKEN },
	    { 'S', "x OK done\r\n" } },
	    "* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] hi\r\n"
	    "x OK done\r\n",
	    "x AUTHENTICATE XOAUTH2 " XOAUTH2_B64 "\r\n", 1, NULL },
	{ "imap login with synchronizing literals, the filter's CAPABILITY",
	    MAIL_PROTO_IMAP, 0, {
	    { 'C', "a1 LOGIN {15}\r\n" },
	    { 'C', USER " {6}\r\n" },
	    { 'C', "secret\r\n" },
	    { 'L', "WANTED" }, { 'U', USER }, { 'P', "secret" },
	    { 'T', TOKEN },
	    { 'L', "SENT" },
	    { 'S', "* CAPABILITY IMAP4rev1 AUTH=XOAUTH2 AUTH=PLAIN\r\n"
		"mailtlsd0 OK Capability completed.\r\n" },
	    { 'S', "+ \r\n" },
	    { 'S', "a1 OK Logged in\r\n" } },
	    IMAP_LITERAL_GO IMAP_LITERAL_GO "a1 OK Logged in\r\n",
	    "mailtlsd0 CAPABILITY\r\na1 AUTHENTICATE XOAUTH2\r\n" XOAUTH2_B64
	    "\r\n", 1, NULL },
	{ "imap login with non-synchronizing literals", MAIL_PROTO_IMAP, 1, {
	    { 'S', IMAP_GREETING_IN },
	    { 'C', "a1 LOGIN {15+}\r\n" USER " {10+}\r\nsecret pw!\r\n" },
	    { 'U', USER }, { 'P', "secret pw!" },
	    { 'T', TOKEN },
	    { 'S', "a1 OK in\r\n" } },
	    IMAP_GREETING_OUT "a1 OK in\r\n",
	    "a1 AUTHENTICATE XOAUTH2 " XOAUTH2_B64 "\r\n", 1, NULL },
	{ "imap login with an empty password literal", MAIL_PROTO_IMAP, 1, {
	    { 'S', IMAP_GREETING_IN },
	    { 'C', "a1 LOGIN " USER " {0}\r\n\r\n" },
	    { 'L', "WANTED" }, { 'P', "" } },
	    IMAP_GREETING_OUT IMAP_LITERAL_GO, "", 0, NULL },
	{ "imap authenticate plain with sasl-ir", MAIL_PROTO_IMAP, 1, {
	    { 'S', IMAP_GREETING_IN },
	    { 'C', "a1 AUTHENTICATE PLAIN " PLAIN_SAME_B64 "\r\n" },
	    { 'U', USER }, { 'P', "secret" },
	    { 'T', TOKEN },
	    { 'S', "a1 OK in\r\n" } },
	    IMAP_GREETING_OUT "a1 OK in\r\n",
	    "a1 AUTHENTICATE XOAUTH2 " XOAUTH2_B64 "\r\n", 1, NULL },
	{ "imap authenticate plain cancelled, then again", MAIL_PROTO_IMAP, 1, {
	    { 'S', IMAP_GREETING_IN },
	    { 'C', "a1 AUTHENTICATE PLAIN\r\n" },
	    { 'C', "*\r\n" },
	    { 'L', "NONE" },
	    { 'C', "a2 authenticate plain\r\n" },
	    { 'C', PLAIN_B64 "\r\n" },
	    { 'L', "WANTED" }, { 'U', USER }, { 'P', "secret" },
	    { 'T', TOKEN },
	    { 'S', "a2 OK in\r\n" } },
	    IMAP_GREETING_OUT "+ \r\na1 BAD mailtlsd: AUTHENTICATE "
	    "cancelled\r\n+ \r\na2 OK in\r\n",
	    "a2 AUTHENTICATE XOAUTH2 " XOAUTH2_B64 "\r\n", 1, NULL },
	{ "imap error challenge, rejected, retried", MAIL_PROTO_IMAP, 1, {
	    { 'S', IMAP_GREETING_IN },
	    { 'C', "a1 LOGIN " USER " secret\r\n" },
	    { 'T', TOKEN },
	    { 'S', "+ " ERR_401_B64 "\r\n" },
	    { 'L', "SENT" },
	    { 'S', "a1 NO [AUTHENTICATIONFAILED] Invalid credentials "
		"(Failure)\r\n" },
	    { 'L', "REJECTED" },
	    { 'E', "NO [AUTHENTICATIONFAILED] Invalid credentials (Failure) "
		"(status 401)" },
	    { 'U', USER }, { 'P', "secret" },
	    { 'T', TOKEN2 },
	    { 'L', "SENT" },
	    { 'S', "a1 OK Success\r\n" } },
	    IMAP_GREETING_OUT "a1 OK Success\r\n",
	    "a1 AUTHENTICATE XOAUTH2 " XOAUTH2_B64 "\r\n\r\n"
	    "a1 AUTHENTICATE XOAUTH2 " XOAUTH2_B64_NEW "\r\n", 1, NULL },
	{ "imap rejected and refused, then more logins refused",
	    MAIL_PROTO_IMAP, 1, {
	    { 'S', IMAP_GREETING_IN },
	    { 'C', "a1 LOGIN " USER " secret\r\na2 NOOP\r\n" },
	    { 'T', TOKEN },
	    { 'S', "a1 NO AUTHENTICATE failed.\r\n" },
	    { 'E', "NO AUTHENTICATE failed." },
	    { 'R', "mailtlsd: the server refused the login" },
	    { 'L', "NONE" }, { 'U', "" }, { 'P', "" },
	    { 'S', "a2 OK NOOP completed\r\n" },
	    { 'C', "a3 LOGIN " USER " secret\r\n" },
	    { 'A', "mailtlsd: to authorise " USER " visit https://microsoft.com"
		"/devicelogin and enter ABCD-EFGH, then log in again" },
	    { 'C', "a4 LOGIN " USER " secret\r\n" },
	    { 'r', "mailtlsd: the provider cannot be reached" },
	    { 'L', "NONE" } },
	    IMAP_GREETING_OUT
	    "a1 NO [AUTHENTICATIONFAILED] mailtlsd: the server refused the "
	    "login\r\na2 OK NOOP completed\r\n"
	    "a3 NO [ALERT] mailtlsd: to authorise " USER " visit "
	    "https://microsoft.com/devicelogin and enter ABCD-EFGH, then log "
	    "in "
	    "again\r\n"
	    "a4 NO [UNAVAILABLE] mailtlsd: the provider cannot be reached\r\n",
	    "a1 AUTHENTICATE XOAUTH2 " XOAUTH2_B64 "\r\na2 NOOP\r\n", 0, NULL },
	{ "imap refused before a token, then a second login", MAIL_PROTO_IMAP,
	    1, {
	    { 'S', IMAP_GREETING_IN },
	    { 'C', "a1 LOGIN " USER " wrong\r\na2 LOGIN " USER " secret\r\n" },
	    { 'P', "wrong" },
	    { 'R', "mailtlsd: wrong password" },
	    { 'L', "WANTED" }, { 'P', "secret" },
	    { 'T', TOKEN },
	    { 'S', "a2 OK in\r\n" } },
	    IMAP_GREETING_OUT "a1 NO [AUTHENTICATIONFAILED] mailtlsd: wrong "
	    "password\r\na2 OK in\r\n",
	    "a2 AUTHENTICATE XOAUTH2 " XOAUTH2_B64 "\r\n", 1, NULL },
	{ "imap oauthbearer when only it is offered", MAIL_PROTO_IMAP, 1, {
	    { 'S', "* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=OAUTHBEARER] "
		"hi\r\n" },
	    { 'C', "a1 LOGIN " USER " secret\r\n" },
	    { 'T', TOKEN },
	    { 'S', "+ " ERR_TOKEN_B64 "\r\n" },
	    { 'S', "a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n" },
	    { 'E', "NO [AUTHENTICATIONFAILED] Authentication failed. (status "
		"invalid_token)" },
	    { 'T', TOKEN },
	    { 'S', "a1 OK in\r\n" } },
	    "* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] hi\r\na1 OK in\r\n",
	    "a1 AUTHENTICATE OAUTHBEARER " BEARER_B64 "\r\nAQ==\r\n"
	    "a1 AUTHENTICATE OAUTHBEARER " BEARER_B64 "\r\n", 1, NULL },
	{ "imap token waits for the client's CAPABILITY", MAIL_PROTO_IMAP, 0, {
	    { 'C', "a1 CAPABILITY\r\na2 LOGIN " USER " secret\r\n" },
	    { 'L', "WANTED" },
	    { 'T', TOKEN },
	    { 'L', "SENT" },
	    { 'S', "* CAPABILITY IMAP4rev1 AUTH=XOAUTH2 STARTTLS\r\n" },
	    { 'S', "a1 OK\r\n" },
	    { 'S', "+\r\n" },
	    { 'S', "a2 OK in\r\n" } },
	    "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\na1 OK\r\na2 OK in\r\n",
	    "a1 CAPABILITY\r\na2 AUTHENTICATE XOAUTH2\r\n" XOAUTH2_B64 "\r\n",
	    1, NULL },
	{ "imap the client's CAPABILITY refused: the filter asks",
	    MAIL_PROTO_IMAP, 0, {
	    { 'C', "a1 CAPABILITY\r\na2 LOGIN " USER " secret\r\n" },
	    { 'T', TOKEN },
	    { 'S', "a1 BAD not now\r\n" },
	    { 'S', "* CAPABILITY IMAP4rev1 SASL-IR\r\nmailtlsd0 OK\r\n" },
	    { 'S', "a2 OK in\r\n" } },
	    "a1 BAD not now\r\na2 OK in\r\n",
	    "a1 CAPABILITY\r\nmailtlsd0 CAPABILITY\r\n"
	    "a2 AUTHENTICATE XOAUTH2 " XOAUTH2_B64 "\r\n", 1, NULL },
	{ "imap the filter's tag avoids the tags in flight", MAIL_PROTO_IMAP,
	    0, {
	    { 'C', "mailtlsd0 NOOP\r\nmailtlsd1 LOGIN " USER " secret\r\n" },
	    { 'T', TOKEN },
	    { 'S', "mailtlsd0 OK\r\n* CAPABILITY IMAP4rev1\r\n"
		"mailtlsd2 NO go away\r\n" },
	    { 'S', "+ \r\nmailtlsd1 OK in\r\n" } },
	    "mailtlsd0 OK\r\nmailtlsd1 OK in\r\n",
	    "mailtlsd0 NOOP\r\nmailtlsd2 CAPABILITY\r\n"
	    "mailtlsd1 AUTHENTICATE XOAUTH2\r\n" XOAUTH2_B64 "\r\n", 1, NULL },
	{ "imap capability lists", MAIL_PROTO_IMAP, 0, {
	    { 'C', "a CAPABILITY\r\n" },
	    { 'S', "* CAPABILITY IMAP4rev1 AUTH=GSSAPI AUTH=XOAUTH2 auth=plain "
		"AUTH=OAUTHBEARER LOGINDISABLED SASL-IR AUTH= AUTHX\r\n"
		"* CAPABILITY IMAP4rev1\r\n"
		"* CAPABILITY\r\n"
		"* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2] x\r\n"
		"a OK [CAPABILITY IMAP4rev1] done\r\n" } },
	    "* CAPABILITY IMAP4rev1 auth=plain SASL-IR AUTH= AUTHX\r\n"
	    "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n"
	    "* CAPABILITY AUTH=PLAIN\r\n"
	    "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] x\r\n"
	    "a OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] done\r\n",
	    "a CAPABILITY\r\n", 0, NULL },
	{ "imap credentials refused", MAIL_PROTO_IMAP, 0, {
	    { 'C', "a1 AUTHENTICATE PLAIN " PLAIN_ADMIN_B64 "\r\n" },
	    { 'C', "a2 AUTHENTICATE PLAIN AGJvYg!=\r\n" },
	    { 'C', "a3 AUTHENTICATE PLAIN =\r\n" },
	    { 'C', "a4 AUTHENTICATE PLAIN " PLAIN_ONE_NUL "\r\n" },
	    { 'C', "a5 AUTHENTICATE PLAIN " PLAIN_3_NULS "\r\n" },
	    { 'C', "a6 AUTHENTICATE CRAM-MD5\r\n" },
	    { 'C', "a7 AUTHENTICATE XOAUTH2 dXNlcj0=\r\n" },
	    { 'C', "a8 AUTHENTICATE\r\na9 AUTHENTICATE PLAIN a b\r\n" },
	    { 'C', "b1 LOGIN {3}\r\n" },
	    { 'C', "a\001b x\r\n" },
	    { 'C', "b2 LOGIN \"\" x\r\n" },
	    { 'L', "NONE" } },
	    "a1 NO [AUTHORIZATIONFAILED] mailtlsd: logging in as another user "
	    "(an authorization identity) is not supported\r\n"
	    "a2 BAD mailtlsd: the PLAIN response is not valid base64\r\n"
	    "a3 BAD mailtlsd: malformed PLAIN response\r\n"
	    "a4 BAD mailtlsd: malformed PLAIN response\r\n"
	    "a5 BAD mailtlsd: malformed PLAIN response\r\n"
	    "a6" IMAP_CANNOT "a7" IMAP_CANNOT
	    "a8 BAD mailtlsd: malformed AUTHENTICATE command\r\n"
	    "a9 BAD mailtlsd: malformed AUTHENTICATE command\r\n"
	    IMAP_LITERAL_GO
	    "b1 NO [AUTHENTICATIONFAILED] mailtlsd: the user name is empty "
	    "or holds control characters\r\n"
	    "b2 NO [AUTHENTICATIONFAILED] mailtlsd: the user name is empty "
	    "or holds control characters\r\n", "", 0, NULL },
	{ "imap malformed logins", MAIL_PROTO_IMAP, 0, {
	    { 'C', "a1 LOGIN bob\r\n" },
	    { 'C', "a2 LOGIN bob pw extra\r\n" },
	    { 'C', "a3 LOGIN \"bob\\x\" pw\r\n" },
	    { 'C', "a4 LOGIN  bob pw\r\n" },
	    { 'C', "a5 LOGIN bob pw {3}\r\n" },
	    { 'C', "a6 LOGIN (bob) pw\r\n" },
	    { 'C', "a7 LOGIN \"bob pw\r\n" },
	    { 'C', "a8 LOGIN bob {x}\r\n" },
	    { 'C', "LOGIN bob pw\r\n" },
	    { 'C', "a9   login bob pw\r\n" },
	    { 'L', "WANTED" }, { 'U', "bob" }, { 'P', "pw" },
	    { 'R', "no" } },
	    "a1" IMAP_LOGIN_BAD "a2" IMAP_LOGIN_BAD "a3" IMAP_LOGIN_BAD
	    "a4" IMAP_LOGIN_BAD "a5" IMAP_LOGIN_BAD "a6" IMAP_LOGIN_BAD
	    "a7" IMAP_LOGIN_BAD "a8" IMAP_LOGIN_BAD
	    "* BAD mailtlsd: LOGIN or AUTHENTICATE without a tag\r\n"
	    "a9 NO [AUTHENTICATIONFAILED] no\r\n", "", 0, NULL },
	{ "imap over-long credentials", MAIL_PROTO_IMAP, 1, {
	    { 'S', IMAP_GREETING_IN },
	    { 'C', "a1 LOGIN {1025}\r\n" },
	    { 'C', "a2 LOGIN bob {1025}\r\n" },
	    { 'C', "a3 LOGIN bob {1025+}\r\n" X1025 "\r\n" },
	    { 'C', "a4 LOGIN {1025+}\r\n" X1025 " {2+}\r\npw\r\n" },
	    { 'C', "a5 LOGIN " X1025 " pw\r\n" },
	    { 'C', "a6 LOGIN bob \"" X1025 "\"\r\n" },
	    { 'C', "a7 LOGIN " X1024 " {1024+}\r\n" X1024 "\r\n" },
	    { 'L', "WANTED" }, { 'U', X1024 }, { 'P', X1024 },
	    { 'T', TOKEN },
	    { 'S', "a7 OK in\r\n" } },
	    IMAP_GREETING_OUT "a1" IMAP_LIMIT "a2" IMAP_LIMIT "a3" IMAP_LIMIT
	    "a4" IMAP_LIMIT "a5" IMAP_LIMIT "a6" IMAP_LIMIT "a7 OK in\r\n",
	    "a7 AUTHENTICATE XOAUTH2 "
	    "dXNlcj14eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
	    "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
	    "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
	    "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
	    "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
	    "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
	    "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
	    "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
	    "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
	    "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
	    "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
	    "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
	    "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
	    "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
	    "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
	    "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
	    "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
	    "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
	    "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
	    "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
	    "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
	    "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
	    "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4AWF1dGg9"
	    "QmVhcmVyIHlhMjkudG9rAQE=\r\n",
	    1, NULL },
	{ "imap a bad token changes nothing", MAIL_PROTO_IMAP, 1, {
	    { 'S', IMAP_GREETING_IN },
	    { 'C', "a1 LOGIN " USER " secret\r\n" },
	    { 't', "a token" }, { 't', "" }, { 't', "tok\001en" },
	    { 't', "tok\303\251n" },
	    { 'L', "WANTED" },
	    { 'T', TOKEN },
	    { 't', TOKEN },
	    { 'S', "a1 OK in\r\n" } },
	    IMAP_GREETING_OUT "a1 OK in\r\n",
	    "a1 AUTHENTICATE XOAUTH2 " XOAUTH2_B64 "\r\n", 1, NULL },
	{ "imap login with the tag of a command in flight", MAIL_PROTO_IMAP,
	    0, {
	    { 'C', "a1 NOOP\r\na1 LOGIN bob pw\r\n" } },
	    "", "a1 NOOP\r\n", 0, "IMAP client gave a LOGIN or AUTHENTICATE "
	    "the tag of another command in progress" },
	{ "imap malformed login with a non-synchronizing literal",
	    MAIL_PROTO_IMAP, 0, {
	    { 'C', "a1 LOGIN bob pw {5+}\r\n" } },
	    "", "", 0, "malformed IMAP LOGIN with a non-synchronizing "
	    "literal" },
	{ "imap authenticate with a literal", MAIL_PROTO_IMAP, 0, {
	    { 'C', "a1 AUTHENTICATE PLAIN {5+}\r\n" } },
	    "", "", 0, "IMAP AUTHENTICATE with a literal" },
	{ "imap login literal too large", MAIL_PROTO_IMAP, 0, {
	    { 'C', "a1 LOGIN {99999999999999999999+}\r\n" } },
	    "", "", 0, "client literal too large" },
	{ "imap continuation to the filter's CAPABILITY", MAIL_PROTO_IMAP, 0, {
	    { 'C', "a1 LOGIN bob pw\r\n" },
	    { 'T', TOKEN },
	    { 'S', "+ go\r\n" } },
	    "", "mailtlsd0 CAPABILITY\r\n", 0, "IMAP server sent a "
	    "continuation to a CAPABILITY command" },
	{ "imap a second challenge", MAIL_PROTO_IMAP, 1, {
	    { 'S', IMAP_GREETING_IN },
	    { 'C', "a1 LOGIN bob pw\r\n" },
	    { 'T', TOKEN },
	    { 'S', "+ e30=\r\n+ e30=\r\n" } },
	    "", "", 0, "server sent a second challenge in the OAuth2 login" },
};

#define POP3_CAPA_IN	"+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n" \
			"PIPELINING\r\nAUTH-RESP-CODE\r\nSTLS\r\nUSER\r\n" \
			"SASL PLAIN XOAUTH2 OAUTHBEARER\r\n.\r\n"
#define POP3_CAPA_OUT	"+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n" \
			"PIPELINING\r\nAUTH-RESP-CODE\r\nUSER\r\n" \
			"SASL PLAIN\r\n.\r\n"

static const struct transcript pop3_transcripts[] = {
	{ "pop3 user and pass, an initial response, a command after",
	    MAIL_PROTO_POP3, 1, {
	    { 'S', "+OK Dovecot ready.\r\n" },
	    { 'C', "CAPA\r\n" },
	    { 'S', POP3_CAPA_IN },
	    { 'C', "USER " USER "\r\n" },
	    { 'L', "NONE" },
	    { 'C', "PASS secret with spaces\r\nSTAT\r\n" },
	    { 'L', "WANTED" }, { 'U', USER }, { 'P', "secret with spaces" },
	    { 'T', TOKEN },
	    { 'S', "+OK Logged in.\r\n" } },
	    "+OK Dovecot ready.\r\n" POP3_CAPA_OUT "+OK\r\n+OK Logged in.\r\n",
	    "CAPA\r\nAUTH XOAUTH2 " XOAUTH2_B64 "\r\nSTAT\r\n", 1, NULL },
	{ "pop3 the filter's CAPA, a token too long for an initial response",
	    MAIL_PROTO_POP3, 0, {
	    { 'C', "USER " USER "\r\nPASS secret\r\n" },
	    { 'T', LONG_TOKEN },
	    { 'S', "+OK\r\nTOP\r\nSASL XOAUTH2\r\n.\r\n" },
	    { 'S', "+\r\n" },
	    { 'S', "+OK Logged in\r\n" } },
	    "+OK\r\n+OK Logged in\r\n",
	    "CAPA\r\nAUTH XOAUTH2\r\n" LONG_B64 "\r\n", 1, NULL },
	{ "pop3 capa without user and sasl lines", MAIL_PROTO_POP3, 0, {
	    { 'C', "CAPA\r\n" },
	    { 'S', "+OK\r\nTOP\r\n.\r\n" },
	    { 'C', "CAPA\r\n" },
	    { 'S', "+OK\r\nSASL\r\nSASL XOAUTH2\r\nUSER\r\n.\r\n" },
	    { 'C', "CAPA\r\n" },
	    { 'S', "-ERR no\r\n" } },
	    "+OK\r\nTOP\r\nUSER\r\nSASL PLAIN\r\n.\r\n"
	    "+OK\r\nSASL PLAIN\r\nUSER\r\n.\r\n-ERR no\r\n",
	    "CAPA\r\nCAPA\r\nCAPA\r\n", 0, NULL },
	{ "pop3 oauthbearer, rejected, refused for now, a command after",
	    MAIL_PROTO_POP3, 1, {
	    { 'S', "+OK ready\r\n" },
	    { 'C', "CAPA\r\n" },
	    { 'S', "+OK\r\nSASL OAUTHBEARER\r\nUSER\r\n.\r\n" },
	    { 'C', "USER " USER "\r\nPASS secret\r\nQUIT\r\n" },
	    { 'T', TOKEN },
	    { 'S', "+ " ERR_TOKEN_B64 "\r\n" },
	    { 'S', "-ERR [AUTH] Authentication failed.\r\n" },
	    { 'L', "REJECTED" },
	    { 'E', "-ERR [AUTH] Authentication failed. (status "
		"invalid_token)" },
	    { 'r', "mailtlsd: the provider cannot be reached" },
	    { 'L', "NONE" },
	    { 'S', "+OK Logging out.\r\n" } },
	    "+OK ready\r\n+OK\r\nSASL PLAIN\r\nUSER\r\n.\r\n+OK\r\n"
	    "-ERR [SYS/TEMP] mailtlsd: the provider cannot be reached\r\n"
	    "+OK Logging out.\r\n",
	    "CAPA\r\nAUTH OAUTHBEARER " BEARER_B64 "\r\nAQ==\r\nQUIT\r\n", 0,
	    NULL },
	{ "pop3 rejected, retried", MAIL_PROTO_POP3, 0, {
	    { 'C', "CAPA\r\n" },
	    { 'S', "+OK\r\nSASL XOAUTH2\r\n.\r\n" },
	    { 'C', "USER " USER "\r\nPASS secret\r\n" },
	    { 'T', TOKEN },
	    { 'S', "-ERR Authentication failed\r\n" },
	    { 'E', "-ERR Authentication failed" },
	    { 'T', TOKEN2 },
	    { 'S', "+OK in\r\n" } },
	    "+OK\r\nSASL PLAIN\r\nUSER\r\n.\r\n+OK\r\n+OK in\r\n",
	    "CAPA\r\nAUTH XOAUTH2 " XOAUTH2_B64 "\r\nAUTH XOAUTH2 "
	    XOAUTH2_B64_NEW "\r\n", 1, NULL },
	{ "pop3 auth forms", MAIL_PROTO_POP3, 0, {
	    { 'C', "AUTH\r\nAUTH CRAM-MD5\r\nAPOP bob 0123\r\nPASS x\r\n" },
	    { 'C', "AUTH PLAIN\r\n" },
	    { 'C', "*\r\n" },
	    { 'C', "AUTH PLAIN " PLAIN_ADMIN_B64 "\r\nAUTH PLAIN !!!!\r\n" },
	    { 'C', "AUTH PLAIN =\r\nAUTH PLAIN a b\r\nUSER\r\n" },
	    { 'C', "USER a\001b\r\nPASS x\r\n" },
	    { 'C', "USER " USER "\r\nPASS\r\nPASS x\r\n" },
	    { 'C', "auth plain\r\n" },
	    { 'C', PLAIN_B64 "\r\n" },
	    { 'L', "WANTED" }, { 'U', USER }, { 'P', "secret" },
	    { 'R', "mailtlsd: wrong password" } },
	    "+OK\r\nPLAIN\r\n.\r\n"
	    "-ERR mailtlsd logs in to the server with OAuth2 itself: use USER "
	    "and PASS, or AUTH PLAIN\r\n"
	    "-ERR mailtlsd logs in to the server with OAuth2 itself: use USER "
	    "and PASS\r\n"
	    "-ERR mailtlsd: USER first\r\n"
	    "+ \r\n-ERR mailtlsd: AUTH cancelled\r\n"
	    "-ERR [AUTH] mailtlsd: logging in as another user (an "
	    "authorization identity) is not supported\r\n"
	    "-ERR mailtlsd: the PLAIN response is not valid base64\r\n"
	    "-ERR mailtlsd: malformed PLAIN response\r\n"
	    "-ERR mailtlsd: malformed command\r\n"
	    "-ERR mailtlsd: malformed command\r\n"
	    "-ERR [AUTH] mailtlsd: the user name is empty or holds control "
	    "characters\r\n"
	    "-ERR mailtlsd: USER first\r\n"
	    "+OK\r\n-ERR mailtlsd: malformed command\r\n"
	    "-ERR mailtlsd: USER first\r\n"
	    "+ \r\n-ERR [AUTH] mailtlsd: wrong password\r\n", "", 0, NULL },
	{ "pop3 a refusal waits for the answers before it", MAIL_PROTO_POP3,
	    0, {
	    { 'C', "CAPA\r\nUSER " USER "\r\nPASS secret\r\nNOOP\r\n" },
	    { 'L', "WANTED" },
	    { 'R', "mailtlsd: wrong password" },
	    { 'S', "+OK\r\nUSER\r\nSASL PLAIN\r\n.\r\n" },
	    { 'S', "+OK\r\n" } },
	    "+OK\r\nUSER\r\nSASL PLAIN\r\n.\r\n+OK\r\n"
	    "-ERR [AUTH] mailtlsd: wrong password\r\n+OK\r\n",
	    "CAPA\r\nNOOP\r\n", 0, NULL },
	{ "pop3 over-long credentials", MAIL_PROTO_POP3, 0, {
	    { 'C', "USER " X1025 "\r\n" },
	    { 'C', "USER " USER "\r\nPASS " X1025 "\r\n" },
	    { 'C', "USER " X1024 "\r\nPASS " X1024 "\r\n" },
	    { 'L', "WANTED" }, { 'U', X1024 }, { 'P', X1024 } },
	    "-ERR [AUTH] mailtlsd: user name or password longer than 1024 "
	    "bytes\r\n+OK\r\n-ERR [AUTH] mailtlsd: user name or password "
	    "longer than 1024 bytes\r\n+OK\r\n", "", 0, NULL },
	{ "pop3 challenge to the filter's CAPA", MAIL_PROTO_POP3, 0, {
	    { 'C', "USER " USER "\r\nPASS secret\r\n" },
	    { 'T', TOKEN },
	    { 'S', "+ go\r\n" } },
	    "", "CAPA\r\n", 0, "POP3 server sent a challenge to CAPA" },
	{ "pop3 neither +OK nor -ERR in the login", MAIL_PROTO_POP3, 0, {
	    { 'C', "USER " USER "\r\nPASS secret\r\n" },
	    { 'T', TOKEN },
	    { 'S', "-ERR no\r\n" },
	    { 'S', "hello\r\n" } },
	    "", "", 0, "POP3 server line that is neither +OK nor -ERR" },
};

#define SMTP_EHLO_OUT	"250-mail.example.com\r\n250-PIPELINING\r\n" \
			"250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n"

static const struct transcript smtp_transcripts[] = {
	{ "smtp ehlo, auth plain with an initial response, a command after",
	    MAIL_PROTO_SMTP, 0, {
	    { 'C', "EHLO client\r\n" },
	    { 'S', "250-mail.example.com\r\n250-PIPELINING\r\n"
		"250-AUTH LOGIN XOAUTH2\r\n250-AUTH=LOGIN\r\n250-STARTTLS\r\n"
		"250 8BITMIME\r\n" },
	    { 'C', "AUTH PLAIN " PLAIN_B64 "\r\nMAIL FROM:<" USER ">\r\n" },
	    { 'L', "WANTED" }, { 'U', USER }, { 'P', "secret" },
	    { 'T', TOKEN },
	    { 'S', "235 2.7.0 Authentication successful\r\n" } },
	    SMTP_EHLO_OUT "235 2.7.0 Authentication successful\r\n",
	    "EHLO client\r\nAUTH XOAUTH2 " XOAUTH2_B64 "\r\nMAIL FROM:<" USER
	    ">\r\n", 1, NULL },
	{ "smtp ehlo replies", MAIL_PROTO_SMTP, 0, {
	    { 'C', "EHLO a\r\n" },
	    { 'S', "250-mail\r\n250 STARTTLS\r\n" },
	    { 'C', "EHLO b\r\n" },
	    { 'S', "250 mail\r\n" },
	    { 'C', "EHLO c\r\n" },
	    { 'S', "250-x\r\n250-AUTH XOAUTH2\r\n250 STARTTLS\r\n" },
	    { 'C', "EHLO d\r\n" },
	    { 'S', "250-x\r\n250-AUTH=XOAUTH2\r\n250-AUTH GSSAPI\r\n"
		"250-AUTH XOAUTH2\r\n250 AUTH OAUTHBEARER\r\n" },
	    { 'C', "EHLO e\r\n" },
	    { 'S', "250\r\n" },
	    { 'C', "EHLO f\r\n" },
	    { 'S', "550 go away\r\n" } },
	    "250-mail\r\n250 AUTH PLAIN LOGIN\r\n"
	    "250-mail\r\n250 AUTH PLAIN LOGIN\r\n"
	    "250-x\r\n250 AUTH PLAIN LOGIN\r\n"
	    "250-x\r\n250 AUTH PLAIN LOGIN\r\n"
	    "250-\r\n250 AUTH PLAIN LOGIN\r\n"
	    "550 go away\r\n",
	    "EHLO a\r\nEHLO b\r\nEHLO c\r\nEHLO d\r\nEHLO e\r\nEHLO f\r\n", 0,
	    NULL },
	{ "smtp auth login, error challenge, gmail's failure, refused",
	    MAIL_PROTO_SMTP, 0, {
	    { 'C', "EHLO c\r\n" },
	    { 'S', "250-smtp.gmail.com at your service\r\n250 AUTH LOGIN PLAIN "
		"XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER XOAUTH\r\n" },
	    { 'C', "AUTH LOGIN\r\n" },
	    { 'C', USER_B64 "\r\n" },
	    { 'C', SECRET_B64 "\r\n" },
	    { 'L', "WANTED" }, { 'U', USER }, { 'P', "secret" },
	    { 'T', TOKEN },
	    { 'S', "334 " ERR_400_B64 "\r\n" },
	    { 'S', "535-5.7.8 Username and Password not accepted. Learn more "
		"at\r\n535 5.7.8  https://support.google.com/mail/?p="
		"BadCredentials x\r\n" },
	    { 'L', "REJECTED" },
	    { 'E', "535-5.7.8 Username and Password not accepted. Learn more "
		"at 5.7.8  https://support.google.com/mail/?p=BadCredentials x "
		"(status 400)" },
	    { 'R', "mailtlsd: the server refused the login" } },
	    "250-smtp.gmail.com at your service\r\n250 AUTH PLAIN LOGIN\r\n"
	    "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n"
	    "535 5.7.8 mailtlsd: the server refused the login\r\n",
	    "EHLO c\r\nAUTH XOAUTH2 " XOAUTH2_B64 "\r\n\r\n", 0, NULL },
	{ "smtp microsoft's failure, refused for now, a command after",
	    MAIL_PROTO_SMTP, 0, {
	    { 'C', "EHLO c\r\nAUTH LOGIN " USER_B64 "\r\n" },
	    { 'S', "250-outlook.office365.com\r\n250-AUTH LOGIN XOAUTH2\r\n"
		"250 CHUNKING\r\n" },
	    { 'C', SECRET_B64 "\r\nQUIT\r\n" },
	    { 'T', TOKEN },
	    { 'S', "535 5.7.139 Authentication unsuccessful, "
		"SmtpClientAuthentication is disabled for the Tenant.\r\n" },
	    { 'E', "535 5.7.139 Authentication unsuccessful, "
		"SmtpClientAuthentication is disabled for the Tenant." },
	    { 'r', "mailtlsd: try later" },
	    { 'S', "221 2.0.0 bye\r\n" } },
	    "250-outlook.office365.com\r\n250-AUTH PLAIN LOGIN\r\n"
	    "250 CHUNKING\r\n334 UGFzc3dvcmQ6\r\n454 4.7.0 mailtlsd: try "
	    "later\r\n221 2.0.0 bye\r\n",
	    "EHLO c\r\nAUTH XOAUTH2 " XOAUTH2_B64 "\r\nQUIT\r\n", 0, NULL },
	{ "smtp auth answered here", MAIL_PROTO_SMTP, 0, {
	    { 'C', "AUTH PLAIN " PLAIN_B64 "\r\n" },
	    { 'C', "HELO c\r\n" },
	    { 'S', "250 hi\r\n" },
	    { 'C', "AUTH PLAIN\r\n" },
	    { 'C', "EHLO c\r\n" },
	    { 'S', "250 hi\r\n" },
	    { 'C', "AUTH CRAM-MD5\r\nAUTH PLAIN\r\n" },
	    { 'C', "*\r\nAUTH LOGIN\r\n" },
	    { 'C', "*\r\nAUTH LOGIN\r\n" USER_B64 "\r\n*\r\n" },
	    { 'C', "AUTH PLAIN !!!!\r\nAUTH PLAIN " PLAIN_ADMIN_B64 "\r\n" },
	    { 'C', "AUTH\r\nAUTH PLAIN a b\r\nAUTH LOGIN =\r\n" },
	    { 'C', "AUTH LOGIN\r\nYWJj\r\n!\r\n" },
	    { 'C', "AUTH PLAIN =\r\n" },
	    { 'L', "NONE" } },
	    "503 5.5.1 mailtlsd: send EHLO first\r\n"
	    "250 hi\r\n"
	    "503 5.5.1 mailtlsd: send EHLO first\r\n"
	    "250-hi\r\n250 AUTH PLAIN LOGIN\r\n"
	    "504 5.5.4 mailtlsd logs in to the server with OAuth2 itself: use "
	    "AUTH PLAIN or AUTH LOGIN\r\n"
	    "334 \r\n501 5.7.0 mailtlsd: authentication cancelled\r\n"
	    "334 VXNlcm5hbWU6\r\n501 5.7.0 mailtlsd: authentication "
	    "cancelled\r\n"
	    "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n501 5.7.0 mailtlsd: "
	    "authentication cancelled\r\n"
	    "501 5.5.2 mailtlsd: the response is not valid base64\r\n"
	    "535 5.7.8 mailtlsd: logging in as another user (an authorization "
	    "identity) is not supported\r\n"
	    "501 5.5.4 mailtlsd: malformed AUTH command\r\n"
	    "501 5.5.4 mailtlsd: malformed AUTH command\r\n"
	    "535 5.7.8 mailtlsd: the user name is empty or holds control "
	    "characters\r\n"
	    "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n"
	    "501 5.5.2 mailtlsd: the response is not valid base64\r\n"
	    "501 5.5.2 mailtlsd: malformed PLAIN response\r\n",
	    "HELO c\r\nEHLO c\r\n", 0, NULL },
	{ "smtp the token waits for the ehlo reply, oauthbearer",
	    MAIL_PROTO_SMTP, 0, {
	    { 'C', "EHLO c\r\nAUTH PLAIN " PLAIN_B64 "\r\n" },
	    { 'L', "WANTED" },
	    { 'T', TOKEN },
	    { 'L', "SENT" },
	    { 'S', "250-mail\r\n250 AUTH OAUTHBEARER\r\n" },
	    { 'S', "334 " ERR_TOKEN_B64 "\r\n" },
	    { 'S', "535 5.7.8 no\r\n" },
	    { 'E', "535 5.7.8 no (status invalid_token)" },
	    { 'T', TOKEN },
	    { 'S', "235 2.7.0 OK\r\n" } },
	    "250-mail\r\n250 AUTH PLAIN LOGIN\r\n235 2.7.0 OK\r\n",
	    "EHLO c\r\nAUTH OAUTHBEARER " BEARER_B64 "\r\nAQ==\r\n"
	    "AUTH OAUTHBEARER " BEARER_B64 "\r\n", 1, NULL },
	{ "smtp refused, then a second login", MAIL_PROTO_SMTP, 0, {
	    { 'C', "EHLO c\r\n" },
	    { 'S', "250-mail\r\n250 AUTH XOAUTH2\r\n" },
	    { 'C', "AUTH PLAIN " PLAIN_B64 "\r\n" },
	    { 'A', "mailtlsd: to authorise " USER " visit https://example.com "
		"and enter ABCD-EFGH, then log in again" },
	    { 'L', "NONE" },
	    { 'C', "AUTH LOGIN\r\n" USER_B64 "\r\n" SECRET_B64 "\r\n" },
	    { 'L', "WANTED" }, { 'U', USER }, { 'P', "secret" },
	    { 'T', TOKEN },
	    { 'S', "235 2.7.0 Authentication successful\r\n" } },
	    "250-mail\r\n250 AUTH PLAIN LOGIN\r\n"
	    "535 5.7.8 mailtlsd: to authorise " USER " visit "
	    "https://example.com "
	    "and enter ABCD-EFGH, then log in again\r\n"
	    "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n"
	    "235 2.7.0 Authentication successful\r\n",
	    "EHLO c\r\nAUTH XOAUTH2 " XOAUTH2_B64 "\r\n", 1, NULL },
	{ "smtp no mechanism offered: xoauth2 is tried", MAIL_PROTO_SMTP, 0, {
	    { 'C', "EHLO c\r\n" },
	    { 'S', "250 mail\r\n" },
	    { 'C', "AUTH PLAIN " PLAIN_B64 "\r\n" },
	    { 'T', TOKEN },
	    { 'S', "504 5.5.4 Unrecognized authentication type\r\n" },
	    { 'E', "504 5.5.4 Unrecognized authentication type" },
	    { 'R', "mailtlsd: the server takes no OAuth2 login" } },
	    "250-mail\r\n250 AUTH PLAIN LOGIN\r\n"
	    "535 5.7.8 mailtlsd: the server takes no OAuth2 login\r\n",
	    "EHLO c\r\nAUTH XOAUTH2 " XOAUTH2_B64 "\r\n", 0, NULL },
	{ "smtp over-long credentials", MAIL_PROTO_SMTP, 0, {
	    { 'C', "EHLO c\r\n" },
	    { 'S', "250 mail\r\n" },
	    { 'C', "AUTH LOGIN " USER_B64 "\r\n" },
	    /* base64 of 1025 'x': one byte too many */
	    { 'C', "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
		"eHh4"
		"eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
		"eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
		"eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
		"eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
		"eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
		"eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
		"eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
		"eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
		"eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
		"eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
		"eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
		"eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
		"eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
		"eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
		"eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
		"eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
		"eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
		"eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
		"eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
		"eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
		"eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
		"eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHg=\r\n" },
	    { 'L', "NONE" } },
	    "250-mail\r\n250 AUTH PLAIN LOGIN\r\n334 UGFzc3dvcmQ6\r\n"
	    "535 5.7.8 mailtlsd: user name or password longer than 1024 "
	    "bytes\r\n", "EHLO c\r\n", 0, NULL },
};

/* A filter that logs in with OAuth2, and the buffers a session holds. */
struct login {
	struct proto_filter	*f;
	struct evbuffer		*from_client, *from_server;
	struct evbuffer		*to_client, *to_server;
};

static void
login_start(struct login *l, enum mail_protocol protocol)
{
	l->f = proto_filter_new(protocol);
	ck_assert_ptr_nonnull(l->f);
	ck_assert_int_eq(proto_filter_use_oauth2(l->f), 0);
	l->from_client = evbuffer_new();
	l->from_server = evbuffer_new();
	l->to_client = evbuffer_new();
	l->to_server = evbuffer_new();
}

/* Feed the client's bytes (len: with NUL bytes) through the filter. */
static void
login_client(struct login *l, const char *text, size_t len)
{
	evbuffer_add(l->from_client, text, len);
	ck_assert_int_eq(proto_filter_client(l->f, l->from_client,
	    l->to_server, l->to_client), 0);
}

static void
login_server(struct login *l, const char *text)
{
	evbuffer_add(l->from_server, text, strlen(text));
	ck_assert_int_eq(proto_filter_server(l->f, l->from_server,
	    l->to_client), 0);
}

/* What one of the outputs got, as a string (to free). */
static char *
login_take(struct evbuffer *buf)
{
	return unit_drain_string(buf);
}

static void
login_end(struct login *l)
{
	proto_filter_free(l->f);
	evbuffer_free(l->from_client);
	evbuffer_free(l->from_server);
	evbuffer_free(l->to_client);
	evbuffer_free(l->to_server);
}

/* Strict base64: every padding, and what is refused. */
START_TEST(test_base64_strict)
{
	static const struct {
		const char	*b64;
		const char	*password;	/* NULL: refused */
	} c[] = {
		{ "AGJvYgBwdw==", "pw" },
		{ "AGJvYgBwd2Q=", "pwd" },
		{ "AGJvYgBwd2R4", "pwdx" },
		{ "AGJvYgBwdw", NULL },		/* padding left out */
		{ "AGJvYgBwdw=", NULL },
		{ "AGJvYgBwdw===", NULL },
		{ "AGJvYgBwdx==", NULL },	/* bits after the end */
		{ "AGJvYgBwd2R=", NULL },
		{ "AGJv YgBwdw==", NULL },	/* a space */
		{ "AGJvYgBw\tdw==", NULL },
		{ "AGJvYgBwdw==AGJv", NULL },	/* padding inside */
		{ "AG=vYgBwdw==", NULL },
		{ "=GJvYgBwdw==", NULL },
		{ "AGJvYgBw-w==", NULL },	/* base64url */
		{ "AGJvYgBw_w==", NULL },
		{ "AGJvYgBw\xc3\xa9w=", NULL },
	};
	struct login	 l;
	const char	*user, *password;
	size_t		 i, pwlen;
	char		 line[128], *got;

	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		login_start(&l, MAIL_PROTO_IMAP);
		login_client(&l, "a AUTHENTICATE PLAIN\r\n", 22);
		got = login_take(l.to_client);
		ck_assert_str_eq(got, "+ \r\n");
		free(got);
		snprintf(line, sizeof(line), "%s\r\n", c[i].b64);
		login_client(&l, line, strlen(line));
		got = login_take(l.to_client);
		proto_filter_login_credentials(l.f, &user, &password, &pwlen);
		if (c[i].password != NULL) {
			ck_assert_msg(proto_filter_login(l.f) ==
			    PROTO_LOGIN_WANTED, "%s: %s", c[i].b64, got);
			ck_assert_str_eq(got, "");
			ck_assert_str_eq(user, "bob");
			ck_assert_str_eq(password, c[i].password);
		} else {
			ck_assert_msg(strcmp(got, "a BAD mailtlsd: the PLAIN "
			    "response is not valid base64\r\n") == 0,
			    "%s: %s", c[i].b64, got);
			ck_assert_int_eq(proto_filter_login(l.f),
			    PROTO_LOGIN_NONE);
		}
		free(got);
		ck_assert_uint_eq(evbuffer_get_length(l.to_server), 0);
		login_end(&l);
	}
}
END_TEST

/* Token and refusal only where a login waits for them. */
START_TEST(test_login_states)
{
	struct login	 l;
	const char	*user, *password;
	size_t		 pwlen;
	char		*got;

	/* A filter without OAuth2 never has a login. */
	l.f = proto_filter_new(MAIL_PROTO_SMTP);
	l.to_server = evbuffer_new();
	ck_assert_int_eq(proto_filter_login(l.f), PROTO_LOGIN_NONE);
	ck_assert_int_eq(proto_filter_login_token(l.f, TOKEN, l.to_server),
	    -1);
	ck_assert_int_eq(proto_filter_login_refuse(l.f, 0, 0, "x",
	    l.to_server), -1);
	ck_assert_str_eq(proto_filter_login_error(l.f), "");
	proto_filter_login_credentials(l.f, &user, &password, &pwlen);
	ck_assert_str_eq(user, "");
	ck_assert_uint_eq(pwlen, 0);
	ck_assert_uint_eq(evbuffer_get_length(l.to_server), 0);
	proto_filter_free(l.f);
	evbuffer_free(l.to_server);

	login_start(&l, MAIL_PROTO_IMAP);
	/* Called twice, it is the same filter. */
	ck_assert_int_eq(proto_filter_use_oauth2(l.f), 0);
	ck_assert_int_eq(proto_filter_login_token(l.f, TOKEN, l.to_server),
	    -1);
	ck_assert_int_eq(proto_filter_login_refuse(l.f, 0, 0, "x",
	    l.to_client), -1);
	login_client(&l, "a LOGIN bob pw\r\n", 16);
	ck_assert_int_eq(proto_filter_login(l.f), PROTO_LOGIN_WANTED);
	ck_assert_int_eq(proto_filter_login_token(l.f, TOKEN, l.to_server),
	    0);
	ck_assert_int_eq(proto_filter_login(l.f), PROTO_LOGIN_SENT);
	/* The exchange is the server's now. */
	ck_assert_int_eq(proto_filter_login_refuse(l.f, 0, 0, "x",
	    l.to_client), -1);
	ck_assert_int_eq(proto_filter_login_token(l.f, TOKEN, l.to_server),
	    -1);
	ck_assert_uint_eq(evbuffer_get_length(l.to_client), 0);
	/* The credentials stay until the login ends... */
	proto_filter_login_credentials(l.f, &user, &password, &pwlen);
	ck_assert_str_eq(user, "bob");
	ck_assert_str_eq(password, "pw");
	login_server(&l, "* CAPABILITY IMAP4rev1 AUTH=XOAUTH2\r\n"
	    "mailtlsd0 OK\r\n+ \r\na NO [AUTHENTICATIONFAILED] no\r\n");
	ck_assert_int_eq(proto_filter_login(l.f), PROTO_LOGIN_REJECTED);
	proto_filter_login_credentials(l.f, &user, &password, &pwlen);
	ck_assert_str_eq(password, "pw");
	ck_assert_int_eq(proto_filter_login_refuse(l.f, 0, 0, "x",
	    l.to_client), 0);
	/* ... and not after. */
	proto_filter_login_credentials(l.f, &user, &password, &pwlen);
	ck_assert_str_eq(user, "");
	ck_assert_str_eq(password, "");
	ck_assert_uint_eq(pwlen, 0);
	ck_assert_str_eq(proto_filter_login_error(l.f), "");
	got = login_take(l.to_client);
	ck_assert_str_eq(got, "a NO [AUTHENTICATIONFAILED] x\r\n");
	free(got);
	ck_assert_int_eq(proto_filter_login_refuse(l.f, 0, 0, "x",
	    l.to_client), -1);
	login_end(&l);

	/* A failed filter takes nothing more. */
	login_start(&l, MAIL_PROTO_IMAP);
	login_client(&l, "a LOGIN bob pw\r\n", 16);
	evbuffer_add_printf(l.from_server, "* 1 FETCH {99999999999}\r\n");
	ck_assert_int_eq(proto_filter_server(l.f, l.from_server, l.to_client),
	    -1);
	ck_assert_int_eq(proto_filter_login_token(l.f, TOKEN, l.to_server),
	    -1);
	ck_assert_int_eq(proto_filter_login_refuse(l.f, 1, 0, "x",
	    l.to_client), -1);
	ck_assert_uint_eq(evbuffer_get_length(l.to_server), 0);
	login_end(&l);
}
END_TEST

/* The text of a refusal becomes one safe line of bounded length. */
START_TEST(test_refusal_text)
{
	struct login	 l;
	char		 text[700], *got;
	size_t		 i;

	login_start(&l, MAIL_PROTO_SMTP);
	login_client(&l, "EHLO c\r\n", 8);
	login_server(&l, "250 mail\r\n");
	evbuffer_drain(l.to_client, evbuffer_get_length(l.to_client));
	login_client(&l, "AUTH PLAIN " PLAIN_B64 "\r\n", 13 +
	    strlen(PLAIN_B64));
	ck_assert_int_eq(proto_filter_login_refuse(l.f, 0, 0,
	    "line\r\nbreak\001\x7f\xc3\xa9!", l.to_client), 0);
	got = login_take(l.to_client);
	ck_assert_str_eq(got, "535 5.7.8 line  break  ?" "?!\r\n");
	free(got);

	login_client(&l, "AUTH PLAIN " PLAIN_B64 "\r\n", 13 +
	    strlen(PLAIN_B64));
	ck_assert_int_eq(proto_filter_login_refuse(l.f, 1, 1, NULL,
	    l.to_client), 0);
	got = login_take(l.to_client);
	ck_assert_str_eq(got, "454 4.7.0 mailtlsd: login failed\r\n");
	free(got);

	for (i = 0; i < sizeof(text) - 1; i++)
		text[i] = 'a' + i % 26;
	text[i] = '\0';
	login_client(&l, "AUTH PLAIN " PLAIN_B64 "\r\n", 13 +
	    strlen(PLAIN_B64));
	ck_assert_int_eq(proto_filter_login_refuse(l.f, 0, 0, text,
	    l.to_client), 0);
	got = login_take(l.to_client);
	ck_assert_uint_eq(strlen(got), strlen("535 5.7.8 \r\n") + 400);
	ck_assert_int_eq(strncmp(got + 10, text, 400), 0);
	free(got);
	login_end(&l);
}
END_TEST

/* The server's failure text is kept, bounded and printable. */
START_TEST(test_error_text)
{
	struct login	 l;
	const char	*e;
	char		 line[3000];
	size_t		 i;

	login_start(&l, MAIL_PROTO_POP3);
	login_client(&l, "USER bob\r\nPASS pw\r\n", 19);
	ck_assert_int_eq(proto_filter_login_token(l.f, TOKEN, l.to_server),
	    0);
	login_server(&l, "-ERR no\r\n");	/* to the filter's CAPA */
	memcpy(line, "-ERR ", 5);
	for (i = 5; i < 2000; i++)
		line[i] = "ab\033\x7f\xff"[i % 5];
	memcpy(line + i, "\r\n", 3);
	login_server(&l, line);
	ck_assert_int_eq(proto_filter_login(l.f), PROTO_LOGIN_REJECTED);
	e = proto_filter_login_error(l.f);
	ck_assert_uint_gt(strlen(e), 100);
	ck_assert_uint_lt(strlen(e), 256);
	ck_assert_int_eq(strncmp(e, "-ERR ab???ab", 12), 0);
	for (i = 0; e[i] != '\0'; i++)
		ck_assert((unsigned char)e[i] >= ' ' &&
		    (unsigned char)e[i] < 0x7f);
	login_end(&l);
}
END_TEST

/* POP3: an initial response only when AUTH fits in 255 octets. */
START_TEST(test_pop3_initial_response)
{
	struct login	 l;
	char		 token[200], *got;
	size_t		 n;

	for (n = 145; n <= 146; n++) {
		login_start(&l, MAIL_PROTO_POP3);
		login_client(&l, "CAPA\r\n", 6);
		login_server(&l, "+OK\r\nSASL XOAUTH2\r\n.\r\n");
		evbuffer_drain(l.to_server, evbuffer_get_length(l.to_server));
		login_client(&l, "USER " USER "\r\nPASS pw\r\n",
		    strlen("USER " USER "\r\nPASS pw\r\n"));
		memset(token, 't', n);
		token[n] = '\0';
		ck_assert_int_eq(proto_filter_login_token(l.f, token,
		    l.to_server), 0);
		got = login_take(l.to_server);
		if (n == 145) {
			ck_assert_uint_eq(strlen(got), 255);
			ck_assert_int_eq(strncmp(got,
			    "AUTH XOAUTH2 dXNlcj1", 20), 0);
		} else
			ck_assert_str_eq(got, "AUTH XOAUTH2\r\n");
		free(got);
		login_end(&l);
	}
}
END_TEST

/* A password read from an IMAP literal may hold a NUL byte. */
START_TEST(test_password_with_nul)
{
	static const char	 cmd[] = "a LOGIN bob {3+}\r\nx\0y\r\n";
	struct login		 l;
	const char		*user, *password;
	size_t			 pwlen;

	login_start(&l, MAIL_PROTO_IMAP);
	login_client(&l, cmd, sizeof(cmd) - 1);
	ck_assert_int_eq(proto_filter_login(l.f), PROTO_LOGIN_WANTED);
	proto_filter_login_credentials(l.f, &user, &password, &pwlen);
	ck_assert_str_eq(user, "bob");
	ck_assert_uint_eq(pwlen, 3);
	ck_assert_int_eq(memcmp(password, "x\0y", 4), 0);
	login_end(&l);
}
END_TEST

/* A user name with a comma or "=" is escaped in OAUTHBEARER's header. */
START_TEST(test_oauthbearer_escapes)
{
	struct login	 l;
	char		*got;

	login_start(&l, MAIL_PROTO_SMTP);
	login_client(&l, "EHLO c\r\n", 8);
	login_server(&l, "250-mail\r\n250 AUTH OAUTHBEARER\r\n");
	/* "\0a=b,c\0pw" */
	login_client(&l, "AUTH PLAIN AGE9YixjAHB3\r\n", 25);
	ck_assert_int_eq(proto_filter_login_token(l.f, TOKEN, l.to_server),
	    0);
	got = login_take(l.to_server);
	/* "n,a=a=3Db=2Cc,\1auth=Bearer ya29.tok\1\1" */
	ck_assert_str_eq(got, "EHLO c\r\nAUTH OAUTHBEARER "
	    "bixhPWE9M0RiPTJDYywBYXV0aD1CZWFyZXIgeWEyOS50b2sBAQ==\r\n");
	free(got);
	login_end(&l);
}
END_TEST

START_TEST(test_imap_transcript)
{
	check_transcript_oauth2(&imap_transcripts[_i]);
}
END_TEST

START_TEST(test_pop3_transcript)
{
	check_transcript_oauth2(&pop3_transcripts[_i]);
}
END_TEST

START_TEST(test_smtp_transcript)
{
	check_transcript_oauth2(&smtp_transcripts[_i]);
}
END_TEST

/* OAuth2: every filter logs in with OAuth2. */
Suite *
proto_oauth2_suite(void)
{
	Suite	*s = suite_create("proto_oauth2");
	TCase	*tc = tcase_create("transcripts");

	/* Every transcript runs at every split point. */
	tcase_set_timeout(tc, 300);
	tcase_add_loop_test(tc, test_imap_transcript, 0,
	    sizeof(imap_transcripts) / sizeof(imap_transcripts[0]));
	tcase_add_loop_test(tc, test_pop3_transcript, 0,
	    sizeof(pop3_transcripts) / sizeof(pop3_transcripts[0]));
	tcase_add_loop_test(tc, test_smtp_transcript, 0,
	    sizeof(smtp_transcripts) / sizeof(smtp_transcripts[0]));
	suite_add_tcase(s, tc);

	tc = tcase_create("login");
	tcase_add_test(tc, test_base64_strict);
	tcase_add_test(tc, test_login_states);
	tcase_add_test(tc, test_refusal_text);
	tcase_add_test(tc, test_error_text);
	tcase_add_test(tc, test_pop3_initial_response);
	tcase_add_test(tc, test_password_with_nul);
	tcase_add_test(tc, test_oauthbearer_escapes);
	suite_add_tcase(s, tc);
	return s;
}
