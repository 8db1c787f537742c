#!/usr/bin/env python3
"""Write the seed corpus under tests/fuzz/corpus/<target>/.

    python3 tests/fuzz/make_corpus.py

Protocol seeds are realistic sessions (Dovecot-, Cyrus-, Postfix- and
Exim-style servers; Thunderbird-style clients), each written in the input
format of fuzz.h: a flags byte, a split byte, then the transcript with
0xfe S / 0xfe C marking who speaks (and, for the login target, 0xfe T,
L, t, R, r, A the session's calls).  Every transcript is written whole and
cut into small pieces, and STARTTLS transcripts also run through the
plaintext dialogue.  Configuration seeds are the sample configuration, the
examples of mailtlsd.conf(5) and the good and bad configurations of the
integration tests.  The corpus is committed; rerun this script after
changing the transcripts.
"""

import hashlib
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(HERE, "corpus")

STARTTLS, IMPLICIT, BAD_EHLO, DROP_GREETING, EAGER, LOCAL = (
    0x01, 0x02, 0x04, 0x08, 0x10, 0x20)
ESC = 0xfe


def encode(flags, split, steps):
    """steps: [("S"|"C", bytes)] -> one fuzz input."""
    out = bytearray([flags, split])
    who = "S"
    for i, (d, data) in enumerate(steps):
        if d != who or i > 0:
            out += bytes([ESC, ord(d)])
            who = d
        out += data.replace(bytes([ESC]), bytes([ESC, ESC]))
    return bytes(out)


def S(text):
    return ("S", text if isinstance(text, bytes) else text.encode())


def C(text):
    return ("C", text if isinstance(text, bytes) else text.encode())


LONG = b"a" * 16380

# ------------------------------------------------------------------ IMAP

DOVECOT_GREETING = ("* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID "
                    "ENABLE IDLE LITERAL+ STARTTLS LOGINDISABLED AUTH=PLAIN] "
                    "Dovecot ready.\r\n")
DOVECOT_CAPS = ("* CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE "
                "IDLE LITERAL+ STARTTLS AUTH=PLAIN AUTH=LOGIN\r\n")
DOVECOT_LOGGED_IN = ("OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID "
                     "ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES "
                     "THREAD=REFS MULTIAPPEND UNSELECT CHILDREN NAMESPACE "
                     "UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC "
                     "ESEARCH STARTTLS SPECIAL-USE MOVE] Logged in\r\n")

IMAP = {
    "dovecot-login": (IMPLICIT, [
        S(DOVECOT_GREETING.replace(" STARTTLS LOGINDISABLED", "")),
        C("1 CAPABILITY\r\n"),
        S(DOVECOT_CAPS + "1 OK Pre-login capabilities listed, post-login "
          "capabilities have more.\r\n"),
        C("2 STARTTLS\r\n"),
        C("3 ID (\"name\" \"Thunderbird\" \"version\" \"115.3\")\r\n"),
        S("* ID (\"name\" \"Dovecot\")\r\n3 OK ID completed.\r\n"),
        C("4 authenticate PLAIN\r\n"),
        S("+ \r\n"),
        C("AGJvYgBzZWNyZXQ=\r\n"),
        S("4 " + DOVECOT_LOGGED_IN),
        C("5 SELECT INBOX\r\n"),
        S("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
          "* 3 EXISTS\r\n* 0 RECENT\r\n5 OK [READ-WRITE] Select "
          "completed.\r\n"),
        C("6 UID FETCH 1:* (FLAGS BODY.PEEK[HEADER])\r\n"),
        S("* 1 FETCH (UID 1 FLAGS (\\Seen) BODY[HEADER] {26}\r\n"
          "Subject: STARTTLS\r\n\r\n\r\n)\r\n6 OK Fetch completed.\r\n"),
    ]),
    "dovecot-starttls": (STARTTLS, [
        S(DOVECOT_GREETING),
        S("M1 OK Begin TLS negotiation now.\r\n"),
        C("a1 CAPABILITY\r\n"),
        S(DOVECOT_CAPS.replace("STARTTLS", "LOGINDISABLED") +
          "a1 OK Pre-login capabilities listed.\r\n"),
        C("a2 LOGIN bob secret\r\n"),
        S("a2 " + DOVECOT_LOGGED_IN),
        C("a3 LIST \"\" \"*\"\r\n"),
        S("* LIST (\\HasNoChildren) \"/\" INBOX\r\na3 OK List completed\r\n"),
    ]),
    "cyrus-starttls-untagged": (STARTTLS, [
        S("* OK [CAPABILITY IMAP4rev1 LITERAL+ ID ENABLE STARTTLS "
          "AUTH=PLAIN SASL-IR] mail.example.com Cyrus IMAP 3.6.1 server "
          "ready\r\n"),
        S("* CAPABILITY IMAP4rev1 STARTTLS\r\n* OK [ALERT] hello\r\n"
          "M1 OK Begin TLS negotiation now\r\n"),
        C("A001 AUTHENTICATE LOGIN\r\n"),
        S("+ VXNlcm5hbWU6\r\n"),
        C("Ym9i\r\n"),
        S("+ UGFzc3dvcmQ6\r\n"),
        C("c2VjcmV0\r\n"),
        S("A001 OK [CAPABILITY IMAP4rev1 STARTTLS] Success (tls "
          "protection)\r\n* CAPABILITY STARTTLS\r\n"),
    ]),
    "literals": (IMPLICIT, [
        S("* OK IMAP4rev1 ready\r\n"),
        C("a1 LOGIN {3}\r\n"),
        S("+ Ready for literal data\r\n"),
        C("bob {6+}\r\nsecret\r\n"),
        S("a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"),
        C("a2 APPEND INBOX (\\Seen) ~{12+}\r\nSTARTTLS\r\n\r\n {0}\r\n"),
        S("+ go\r\n"),
        C("\r\n"),
        S("a2 NO not authenticated\r\n"),
        C("a3 LOGIN bob {6}\r\n"),
        S("+ OK\r\n"),
        C("secret\r\n"),
        S("a3 OK Logged in\r\n* CAPABILITY STARTTLS\r\n"),
    ]),
    "server-literals": (0, [
        C("a1 ID NIL\r\n"),
        S("* ID (\"name\" {23}\r\n* CAPABILITY STARTTLS\r\n \"x\" {0}\r\n"
          " {3}\r\n{1}) ~{10}\r\nSTARTTLS\r\n\r\n* CAPABILITY IMAP4rev1 "
          "STARTTLS\r\na1 OK ID completed.\r\n"),
        C("a2 CAPABILITY\r\n"),
        S("* capability imap4rev1 starttls STARTTLSX logindisabled\r\n"
          "a2 OK [capability IMAP4rev1 LOGINDISABLED]\r\n"),
    ]),
    "pipelined": (IMPLICIT, [
        S("* OK ready\r\n"),
        C("a1 LOGIN bob wrong\r\na2 STARTTLS\r\na3 LOGIN bob right\r\n"
          "a4 SELECT INBOX\r\n"),
        S("a1 NO [AUTHENTICATIONFAILED] no\r\na3 OK [CAPABILITY IMAP4rev1 "
          "STARTTLS] yes\r\n* CAPABILITY STARTTLS\r\n"),
    ]),
    "preauth": (IMPLICIT, [
        S("* PREAUTH [CAPABILITY IMAP4rev1 STARTTLS] logged in as bob\r\n"),
        C("a1 SELECT INBOX\r\n"),
    ]),
    "bye": (IMPLICIT, [
        S("* BYE [UNAVAILABLE] server too busy\r\n"),
    ]),
    "local-starttls": (DROP_GREETING, [
        C("a1 CAPABILITY\r\n"),
        S(DOVECOT_GREETING + DOVECOT_CAPS + "a1 OK done\r\n"),
        C("a2 LOGIN bob secret\r\n"),
        S("a2 OK Logged in\r\n"),
    ]),
    "local-opening": (LOCAL, [
        C("a1 CAPABILITY\r\n"),
        C("a2 NOOP\r\n"),
        C("a3 STARTTLS\r\n"),
        S(DOVECOT_GREETING),
        C("a4 CAPABILITY\r\n"),
        S(DOVECOT_CAPS + "a4 OK done\r\n"),
        C("a5 LOGIN bob secret\r\n"),
        S("a5 OK Logged in\r\n"),
    ]),
    "local-opening-refused": (LOCAL, [
        C("a1 LOGIN bob secret\r\n"),
        C("a2 AUTHENTICATE PLAIN\r\n"),
        C("a3 LOGOUT\r\n"),
    ]),
    "local-opening-injected": (LOCAL, [
        C("a1 STARTTLS\r\na2 LOGIN bob secret\r\n"),
    ]),
    "local-starttls-bye": (DROP_GREETING, [
        S("* BYE [UNAVAILABLE] server too busy\r\n"),
    ]),
    "sasl-aborted": (0, [
        C("a1 AUTHENTICATE PLAIN\r\n"),
        S("+ \r\n"),
        C("*\r\n"),
        S("a1 BAD Authentication aborted\r\n"),
        C("a2 STARTTLS\r\n"),
    ]),
    "bare-lf": (0, [
        C("a1 CAPABILITY\n"),
        S("* CAPABILITY IMAP4rev1 STARTTLS\na1 OK\n"),
        C("a2 LOGIN bob secret\n"),
        S("a2 OK\n"),
    ]),
    "long-line": (0, [
        S(b"* OK " + LONG + b"\r\n"),
        C(b"a1 NOOP " + LONG + b"x\r\n"),
    ]),
    "starttls-refused": (STARTTLS, [
        S("* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n"),
        S("M1 NO STARTTLS disabled\r\n"),
    ]),
    "starttls-missing": (STARTTLS, [
        S("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n"),
    ]),
    "starttls-injected": (STARTTLS, [
        S("* OK hi\r\nM1 OK go\r\n* OK injected\r\n"),
    ]),
}

# ------------------------------------------------------------------ POP3

DOVECOT_CAPA = ("+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\n"
                "AUTH-RESP-CODE\r\nSTLS\r\nUSER\r\nSASL PLAIN LOGIN\r\n.\r\n")

POP3 = {
    "dovecot-login": (IMPLICIT, [
        S("+OK Dovecot ready.\r\n"),
        C("CAPA\r\n"),
        S(DOVECOT_CAPA),
        C("STLS\r\n"),
        C("USER bob\r\n"),
        S("+OK\r\n"),
        C("PASS secret\r\n"),
        S("+OK Logged in.\r\n"),
        C("STAT\r\nUIDL\r\n"),
        S("+OK 2 320\r\n+OK\r\n1 000000015c3a7a1e\r\n2 000000025c3a7a1e\r\n"
          ".\r\n"),
    ]),
    "dovecot-stls": (STARTTLS, [
        S("+OK Dovecot ready.\r\n"),
        S("+OK Begin TLS negotiation now.\r\n"),
        C("CAPA\r\n"),
        S(DOVECOT_CAPA.replace("STLS\r\n", "")),
        C("AUTH PLAIN\r\n"),
        S("+ \r\n"),
        C("AGJvYgBzZWNyZXQ=\r\n"),
        S("+OK Logged in.\r\n"),
        C("LIST\r\n"),
        S("+OK 1 messages:\r\n1 120\r\n.\r\n"),
    ]),
    "auth-login": (IMPLICIT, [
        S("+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n"),
        C("AUTH LOGIN\r\n"),
        S("+ VXNlcm5hbWU6\r\n"),
        C("STLS\r\n"),
        S("+ UGFzc3dvcmQ6\r\n"),
        C("c2VjcmV0\r\n"),
        S("+OK Logged in.\r\n"),
        C("RETR 1\r\n"),
        S("+OK 120 octets\r\nSubject: STLS\r\n\r\n..\r\n..STLS\r\n.\r\n"),
    ]),
    "apop": (IMPLICIT, [
        S("+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n"),
        C("APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n"),
        S("+OK maildrop has 1 message (369 octets)\r\n"),
    ]),
    "pipelined-bodies": (0, [
        C("TOP 1 0\r\nLIST\r\nLIST 1\r\nUIDL\r\nAUTH\r\nCAPA\r\nSTLS\r\n"),
        S("+OK\r\nSubject: STLS\r\nSTLS\r\n..\r\n..STLS\r\n.\r\n"
          "+OK\r\n1 120\r\n.\r\n+OK 1 120\r\n+OK\r\n1 abc\r\n.\r\n"
          "+OK\r\nPLAIN\r\nSTLS\r\n.\r\n-ERR no CAPA\r\n"),
    ]),
    "failed-then-ok": (IMPLICIT, [
        S("+OK ready\r\n"),
        C("USER bob\r\nPASS wrong\r\n"),
        S("+OK\r\n-ERR [AUTH] Authentication failed.\r\n"),
        C("USER bob\r\nPASS right\r\nSTLS\r\n"),
        S("+OK\r\n+OK Logged in.\r\n"),
    ]),
    "auth-initial-response": (0, [
        C("AUTH PLAIN AGJvYgB3cm9uZw==\r\nSTLS\r\n"),
        S("-ERR [AUTH] Authentication failed.\r\n"),
    ]),
    "local-starttls": (DROP_GREETING, [
        S("+OK Dovecot ready.\r\n"),
        C("CAPA\r\nUSER bob\r\nPASS secret\r\n"),
        S(DOVECOT_CAPA + "+OK\r\n+OK Logged in.\r\n"),
    ]),
    "local-opening": (LOCAL, [
        C("CAPA\r\n"),
        C("STLS\r\n"),
        S("+OK Dovecot ready.\r\n"),
        C("USER bob\r\nPASS secret\r\n"),
        S("+OK\r\n+OK Logged in.\r\n"),
    ]),
    "local-opening-refused": (LOCAL, [
        C("USER bob\r\n"),
        C("PASS secret\r\n"),
        C("QUIT\r\n"),
    ]),
    "sys-temp": (IMPLICIT, [
        S("-ERR [SYS/TEMP] too many connections\r\n"),
    ]),
    "stls-refused": (STARTTLS, [
        S("+OK hi\r\n"),
        S("-ERR command not permitted\r\n"),
    ]),
    "long-line": (0, [
        C(b"NOOP " + LONG + b"xx\r\n"),
        S(b"+OK " + LONG + b"\r\n"),
    ]),
}

# ------------------------------------------------------------------ SMTP

POSTFIX_EHLO = ("250-mail.example.com\r\n250-PIPELINING\r\n"
                "250-SIZE 10240000\r\n250-VRFY\r\n250-ETRN\r\n"
                "250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n"
                "250-AUTH=PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n"
                "250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n")

SMTP = {
    "postfix-submissions": (IMPLICIT, [
        S("220 mail.example.com ESMTP Postfix (Debian/GNU)\r\n"),
        C("EHLO [127.0.0.1]\r\n"),
        S(POSTFIX_EHLO),
        C("STARTTLS\r\n"),
        C("AUTH PLAIN AGJvYgBzZWNyZXQ=\r\n"),
        S("235 2.7.0 Authentication successful\r\n"),
        C("MAIL FROM:<bob@example.com> SIZE=312\r\nRCPT TO:<alice@example.org>"
          "\r\nDATA\r\n"),
        S("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR>"
          "<LF>\r\n"),
    ]),
    "postfix-starttls": (STARTTLS, [
        S("220 mail.example.com ESMTP Postfix\r\n"),
        S(POSTFIX_EHLO),
        S("220 2.0.0 Ready to start TLS\r\n"),
        C("EHLO client.example\r\n"),
        S(POSTFIX_EHLO.replace("250-STARTTLS\r\n", "")),
        C("AUTH LOGIN\r\n"),
        S("334 VXNlcm5hbWU6\r\n"),
        C("Ym9i\r\n"),
        S("334 UGFzc3dvcmQ6\r\n"),
        C("c2VjcmV0\r\n"),
        S("235 2.7.0 Authentication successful\r\n"),
        C("QUIT\r\n"),
        S("221 2.0.0 Bye\r\n"),
    ]),
    "exim-multiline-greeting": (STARTTLS | BAD_EHLO, [
        S("220-mx.example.net ESMTP Exim 4.96 Mon, 02 Oct 2023 10:00:00 "
          "+0000\r\n220-We do not authorize the use of this system to "
          "transport unsolicited,\r\n220 and/or bulk e-mail.\r\n"),
        S("250-mx.example.net Hello localhost [127.0.0.1]\r\n"
          "250-SIZE 52428800\r\n250-8BITMIME\r\n250-PIPELINING\r\n"
          "250-PIPE_CONNECT\r\n250-starttls\r\n250 HELP\r\n"),
        S("220 TLS go ahead\r\n"),
        C("EHLO client\r\nAUTH PLAIN\r\n"),
        S("250-mx.example.net Hello\r\n250-AUTH PLAIN\r\n250 HELP\r\n"
          "334 \r\n"),
        C("AGJvYgBzZWNyZXQ=\r\n"),
        S("535 5.7.8 Authentication failed\r\n"),
        C("STARTTLS\r\nAUTH PLAIN AGJvYgBzZWNyZXQ=\r\n"),
        S("235 Authentication succeeded\r\n"),
    ]),
    "data-before-login": (IMPLICIT, [
        S("220 mx.example.com ESMTP\r\n"),
        C("EHLO client.example\r\n"),
        S("250-mx.example.com\r\n250-PIPELINING\r\n250 STARTTLS\r\n"),
        C("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n"
          "DATA\r\n"),
        S("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR>"
          "<LF>\r\n"),
        C("Subject: STARTTLS\r\n\r\n..\r\n.x\r\n.\n.\nbare\n.\r\n\r."
          "\r\n.\r\n"),
        S("250 2.0.0 Ok: queued as 4S0h2x6Jxdz9sHm\r\n"),
        C("STARTTLS\r\nQUIT\r\n"),
        S("221 2.0.0 Bye\r\n"),
    ]),
    "bdat": (0, [
        C("EHLO x\r\n"),
        S("250-mail\r\n250-CHUNKING\r\n250 STARTTLS\r\n"),
        C("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 12\r\nSTARTTLS\r\n\r\n"
          "BDAT 0 LAST\r\n"),
        S("250 Ok\r\n250 Ok\r\n250 12 octets\r\n250 queued\r\n"),
        C("BDAT 99999999999\r\n"),
    ]),
    "pipelined-starttls": (0, [
        C("EHLO a\r\nSTARTTLS\r\nNOOP\r\nSTARTTLS\r\nRSET\r\n"),
        S("250-mail\r\n250 STARTTLS\r\n250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n"),
    ]),
    "local-starttls": (DROP_GREETING, [
        S("220-mail.example.com ESMTP Postfix\r\n220 hi\r\n"),
        C("EHLO client.example\r\n"),
        S(POSTFIX_EHLO),
        C("AUTH PLAIN AGJvYgBzZWNyZXQ=\r\n"),
        S("235 2.7.0 Authentication successful\r\n"),
    ]),
    "local-starttls-554": (DROP_GREETING, [
        S("554 5.7.1 no service\r\n"),
        C("QUIT\r\n"),
    ]),
    "local-opening": (LOCAL, [
        C("EHLO client.example\r\n"),
        C("STARTTLS\r\n"),
        S("220 mail.example.com ESMTP Postfix\r\n"),
        C("EHLO client.example\r\n"),
        S(POSTFIX_EHLO),
        C("AUTH PLAIN AGJvYgBzZWNyZXQ=\r\n"),
        S("235 2.7.0 Authentication successful\r\n"),
    ]),
    "local-opening-refused": (LOCAL, [
        C("HELO client\r\nMAIL FROM:<a@b>\r\nAUTH PLAIN AGJvYgBzZWNyZXQ="
          "\r\n"),
        C("QUIT\r\n"),
    ]),
    "shutdown-421": (IMPLICIT, [
        S("421 4.3.2 Service shutting down and closing channel\r\n"),
    ]),
    "ehlo-refused": (STARTTLS, [
        S("220 mail ESMTP\r\n"),
        S("500 5.5.1 EHLO unknown\r\n"),
    ]),
    "no-starttls": (STARTTLS, [
        S("220 mail\r\n"),
        S("250-mail\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n"),
    ]),
    "long-line": (0, [
        C("EHLO x\r\n"),
        S(b"250-" + LONG + b"\r\n250 ok\r\n"),
        C(b"NOOP " + LONG + b"xx\r\n"),
    ]),
}

# Extra cuts of every transcript: whole, tiny pieces, awkward pieces (and
# those with the client's waiting bytes let through between the pieces).
SPLITS = (0, 1, 7)


def protocol_seeds(table):
    seeds = {}
    for name, (flags, steps) in table.items():
        for split in SPLITS:
            if split and sum(len(d) for _, d in steps) > 4096:
                continue                # long seeds: whole only
            seeds["%s-split%d" % (name, split)] = encode(flags, split, steps)
            if split == 7:              # server pieces each followed by
                seeds["%s-eager%d" % (name, split)] = encode(  # the client
                    flags | EAGER, split, steps)
    return seeds


# ----------------------------------------------------------------- login
# OAuth2 logins (fuzz_login): the protocol in the flags' top bits, AUTO
# for the session's calls made by the driver, or T(oken) and R(efuse)
# steps where the transcript makes them.

AUTO = 0x01
L_IMAP, L_POP3, L_SMTP = 0x00, 0x40, 0x80


def A(code):
    return (code, b"")


def encode_login(flags, split, steps):
    """Like encode(), with the session's calls as steps of their own."""
    out = bytearray([flags, split])
    for d, data in steps:
        out += bytes([ESC, ord(d)])
        out += data.replace(bytes([ESC]), bytes([ESC, ESC]))
    return bytes(out)


XOAUTH2_ERROR = "eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIn0="
PLAIN = "AGJvYkBleGFtcGxlLmNvbQBzZWNyZXQ="

LOGIN = {
    "imap-login-sasl-ir": (L_IMAP | IMPLICIT | AUTO, [
        S("* OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL+ AUTH=PLAIN "
          "AUTH=XOAUTH2 AUTH=OAUTHBEARER] Gimap ready\r\n"),
        C("1 CAPABILITY\r\n"),
        S("* CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2 AUTH=PLAIN\r\n"
          "1 OK done\r\n"),
        C("2 LOGIN bob@example.com \"pass \\\"word\"\r\n3 SELECT INBOX\r\n"),
        S("2 OK [CAPABILITY IMAP4rev1 IDLE] bob@example.com "
          "authenticated (Success)\r\n* 3 EXISTS\r\n"),
    ]),
    "imap-literals-own-capability": (L_IMAP, [
        C("a1 LOGIN {15}\r\n"), C("bob@example.com {6+}\r\nsecret\r\n"),
        A("T"),
        S("* CAPABILITY IMAP4rev1 AUTH=XOAUTH2\r\nmailtlsd0 OK\r\n"),
        S("+ \r\n"),
        S("+ " + XOAUTH2_ERROR + "\r\n"),
        S("a1 NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)\r\n"),
        A("L"),
        S("+ \r\na1 OK in\r\n"),
    ]),
    "imap-authenticate-refused": (L_IMAP | IMPLICIT, [
        S("* OK [CAPABILITY IMAP4rev1 AUTH=OAUTHBEARER SASL-IR] hi\r\n"),
        C("a1 AUTHENTICATE PLAIN\r\n"), C(PLAIN + "\r\n"),
        A("t"), A("T"),
        S("+ eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0=\r\n"),
        S("a1 NO [AUTHENTICATIONFAILED] Authentication failed\r\n"),
        A("A"),
        C("a2 AUTHENTICATE CRAM-MD5\r\na3 AUTHENTICATE PLAIN\r\n*\r\n"
          "a4 LOGIN bob pw\r\na5 NOOP\r\n"),
        A("r"),
        S("a5 OK\r\n"),
    ]),
    "pop3-user-pass": (L_POP3 | IMPLICIT | AUTO, [
        S("+OK Dovecot ready.\r\n"),
        C("CAPA\r\n"),
        S("+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nSTLS\r\nUSER\r\n"
          "SASL PLAIN XOAUTH2\r\n.\r\n"),
        C("USER bob@example.com\r\nPASS secret with spaces\r\nSTAT\r\n"),
        S("+OK Logged in.\r\n+OK 2 320\r\n"),
    ]),
    "pop3-own-capa-rejected": (L_POP3, [
        C("AUTH\r\nAPOP a b\r\nAUTH PLAIN\r\n"), C(PLAIN + "\r\n"),
        A("L"),
        S("+OK\r\nSASL OAUTHBEARER\r\n.\r\n"),
        S("+ \r\n+ eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0=\r\n"),
        S("-ERR [AUTH] Authentication failed.\r\n"),
        A("R"),
        C("USER bob\r\nPASS x\r\nQUIT\r\n"),
        A("r"),
        S("+OK bye\r\n"),
    ]),
    "smtp-auth-plain": (L_SMTP | IMPLICIT | AUTO, [
        S("220 smtp.gmail.com ESMTP ready\r\n"),
        C("EHLO client\r\n"),
        S("250-smtp.gmail.com at your service\r\n250-SIZE 35882577\r\n"
          "250-AUTH LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER\r\n"
          "250-STARTTLS\r\n250 SMTPUTF8\r\n"),
        C("AUTH PLAIN " + PLAIN + "\r\nMAIL FROM:<bob@example.com>\r\n"),
        S("334 " + XOAUTH2_ERROR + "\r\n"),
        S("535-5.7.8 Username and Password not accepted.\r\n"
          "535 5.7.8 https://support.google.com/mail/?p=BadCredentials\r\n"),
        S("235 2.7.0 Accepted\r\n250 2.1.0 OK\r\n"),
    ]),
    "smtp-auth-login-microsoft": (L_SMTP, [
        C("EHLO c\r\nAUTH LOGIN\r\n"),
        S("250-outlook.office365.com\r\n250-AUTH LOGIN XOAUTH2\r\n"
          "250-AUTH=LOGIN\r\n250 CHUNKING\r\n"),
        C("Ym9iQGV4YW1wbGUuY29t\r\n"), C("c2VjcmV0\r\n"),
        A("T"),
        S("535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication "
          "is disabled for the Tenant.\r\n"),
        A("r"),
        C("AUTH CRAM-MD5\r\nAUTH PLAIN\r\n*\r\nQUIT\r\n"),
        S("221 2.0.0 bye\r\n"),
    ]),
    "smtp-before-ehlo": (L_SMTP | AUTO, [
        C("AUTH PLAIN " + PLAIN + "\r\nHELO c\r\n"),
        S("250 hi\r\n"),
        C("EHLO c\r\nAUTH PLAIN " + PLAIN + "\r\n"),
        S("250 hi\r\n"),
        S("504 5.5.4 Unrecognized authentication type\r\n"),
        S("504 5.5.4 Unrecognized authentication type\r\n"),
    ]),
}


def login_seeds(table):
    seeds = {}
    for name, (flags, steps) in table.items():
        for split in SPLITS:
            seeds["%s-split%d" % (name, split)] = encode_login(
                flags, split, steps)
            if split == 7:
                seeds["%s-eager%d" % (name, split)] = encode_login(
                    flags | EAGER, split, steps)
    return seeds


# ---------------------------------------------------------------- config

def man_examples():
    """The literal blocks of mailtlsd.conf(5) that are configurations."""
    with open(os.path.join(TOP, "man", "mailtlsd.conf.5")) as f:
        text = f.read()
    out = {}
    for i, block in enumerate(re.findall(r"^\.Bd -literal[^\n]*\n(.*?)^\.Ed",
                                         text, re.M | re.S)):
        if "[" not in block:
            continue
        block = block.replace("\\e", "\\").replace("\\&", "")
        out["man-example-%d" % i] = block.encode()
    return out


def integration_configs():
    """The good and bad tables of the integration tests."""
    sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
    import test_config
    fill = dict(ca="/etc/ssl/certs/ca-certificates.crt",
                pin="47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
                pin2="9H0Gc4OXCmw/yRqp6fRq4x9SSh9Y2OiqeTK8jR/p+rI=")
    out = {}
    for kind, table in (("good", test_config.GOOD), ("bad", test_config.BAD)):
        for name, text in table.items():
            text = re.sub(r"  # <-", "", text.format(**fill))
            out["%s-%s" % (kind, name)] = text.encode()
    return out


def config_seeds():
    with open(os.path.join(TOP, "conf", "mailtlsd.conf"), "rb") as f:
        seeds = {"sample": f.read()}
    seeds.update(man_examples())
    seeds.update(integration_configs())
    seeds["everything"] = b"""\
# every key once
[global]
user = mailtlsd
pid_file = /run/mailtlsd.pid
state_dir = /var/lib/mailtlsd
log_level = debug
max_sessions = 4096
ca_file = /etc/ssl/certs/ca-certificates.crt

[all-keys]
listen = 127.0.0.1:1143
listen = [::1]:1143
remote = [2001:db8::1]:993
protocol = imap
tls = implicit
server_name = mail.example.com
ca_file = /etc/mailtlsd/ca.pem
verify = yes
pin_sha256 = 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=
min_tls = 1.3
client_cert = /etc/mailtlsd/client.pem
client_key = /etc/mailtlsd/client.key
ehlo_name = client.example
connect_timeout = 10
handshake_timeout = 30
idle_timeout = 1860
shutdown_timeout = 30
pool_size = 2
pool_max_age = 300
local_tls = starttls
local_cert = /etc/mailtlsd/local.pem
local_key = /etc/mailtlsd/local.key
allow_remote_clients = no
"""
    seeds["crlf-bom-tabs"] = (b"\xef\xbb\xbf[global]\r\nlog_level\t=\tinfo"
                              b"\r\n\r\n[s]\r\nlisten = 127.0.0.1:1\r\n"
                              b"remote = h:995\r\n")
    return seeds


def write(target, seeds):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    for old in os.listdir(d):
        os.unlink(os.path.join(d, old))
    for name, data in sorted(seeds.items()):
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    digest = hashlib.sha256(b"".join(seeds[k] for k in sorted(seeds)))
    print("%-7s %3d seeds  %s" % (target, len(seeds),
                                  digest.hexdigest()[:16]))


def main():
    write("imap", protocol_seeds(IMAP))
    write("pop3", protocol_seeds(POP3))
    write("smtp", protocol_seeds(SMTP))
    write("config", config_seeds())
    write("login", login_seeds(LOGIN))


if __name__ == "__main__":
    main()
