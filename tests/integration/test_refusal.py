"""A server's refusal of a login that passes through (a service without
oauth2): the client gets the server's own lines and, where mailtlsd knows
what to change and the protocol has room, mailtlsd's words with them --
SMTP one more line of the same reply, IMAP an untagged [ALERT] before the
tagged NO unless that is an alert itself, POP3 nothing more; the log says
"login refused by the server: TEXT; WORDS" once per refusal, as a
warning, or without words at info level (a wrong password).

The daemon's stderr is a journal stream here, so that every log line
carries its priority: <4> warning, <6> info.
"""

import base64
import re

from expectations import GREETING
from harness import case, check
from oauth2_mail import MS_SMTP_AUTH_DISABLED, MS_SMTP_BASIC_AUTH
from test_service import service_daemon

AUTH = b"AUTH PLAIN " + base64.b64encode(b"\0alice\0secret") + b"\r\n"
REFUSED = r"login refused by the server: "

GMAIL_SMTP = (b"534-5.7.9 Application-specific password required. Learn "
              b"more at\r\n534 5.7.9  https://support.google.com/mail/"
              b"?p=InvalidSecondFactor a1-20020a17090a gsmtp\r\n")
GMAIL_SMTP_WRONG = (b"535-5.7.8 Username and Password not accepted. For more "
                    b"information, go to\r\n535 5.7.8  https://support."
                    b"google.com/mail/?p=BadCredentials a1-20020a gsmtp\r\n")
GMAIL_IMAP = (b"NO [ALERT] Application-specific password required: "
              b"https://support.google.com/accounts/answer/185833 "
              b"(Failure)\r\n")
GMAIL_POP3 = (b"-ERR [AUTH] Application-specific password required: "
              b"https://support.google.com/accounts/answer/185833\r\n")
# Not a real server's words: an IMAP refusal mailtlsd explains, no alert.
IMAP_NO_ALERT = (b"NO [AUTHENTICATIONFAILED] Application-specific password "
                 b"required\r\n")


def refusal_rig(t, protocol, refusal):
    """A server that refuses every login with refusal, a daemon whose log
    has priorities, a client greeted; (daemon, client, server)."""
    srv = t.server("refuse", protocol=protocol, refusal=refusal)
    svc = t.service(srv, protocol=protocol)
    d = service_daemon(t, [svc], journal=True)
    c = t.connect(svc)
    c.expect_line(GREETING[protocol])
    return d, c, srv


def refusal_logged(d, mark, server_text):
    """The one log line of the refusal since mark; it names server_text."""
    line = d.wait_log(REFUSED + re.escape(server_text), since=mark,
                      what="the refusal in the log")
    lines = [l for l in d.log(since=mark) if re.search(REFUSED, l)]
    check(lines == [line], "the refusal was logged %d times: %r",
          len(lines), lines)
    return line


def smtp_login(c):
    """EHLO, then AUTH PLAIN: the server's refusal follows."""
    c.send(b"EHLO client.test\r\n")
    c.expect_line(b"250-mail.test hello\r\n")
    c.expect_line(b"250 AUTH PLAIN\r\n")
    c.send(AUTH)


def smtp_next_reply(c):
    """Nothing more came before the reply to the next command."""
    c.send(b"NOOP\r\n")
    c.expect_line(b"503 5.5.1 expected EHLO/AUTH\r\n")


@case(valgrind=True, params={
    "gmail-534-5.7.9": {"reply": GMAIL_SMTP, "codes": b"534 5.7.9 ",
                        "words": rb"app password.*provider = google"},
    "microsoft-535-5.7.139": {"reply": MS_SMTP_AUTH_DISABLED,
                              "codes": b"535 5.7.139 ",
                              "words": rb"SMTP AUTH disabled.*"
                                       rb"Set-CASMailbox"},
    "microsoft-550-5.7.30": {"reply": MS_SMTP_BASIC_AUTH,
                             "codes": b"550 5.7.30 ",
                             "words": rb"no longer takes passwords.*"
                                      rb"oauth2 = NAME"}})
def test_smtp_refusal_explained(t, reply, codes, words):
    """The server's reply reaches the client line for line, its last line
    continued ("ddd-") by one more line with the same codes and what to
    do; the log has the server's words and mailtlsd's, as a warning."""
    d, c, srv = refusal_rig(t, "smtp", reply)
    smtp_login(c)
    mark = d.mark()
    lines = reply.splitlines(keepends=True)
    for want in lines[:-1]:
        c.expect_line(want)
    c.expect_line(lines[-1][:3] + b"-" + lines[-1][4:])
    added = c.line()
    check(added.startswith(codes + b"mailtlsd: ") and
          re.search(words, added) and len(added) <= 512,
          "the line mailtlsd adds: %r", added)
    smtp_next_reply(c)
    first = lines[0].rstrip(b"\r\n").decode()
    line = refusal_logged(d, mark, first)
    explained = added[len(codes):-2].decode()
    check(line.startswith("<4>") and line.endswith("; " + explained),
          "log line %r is not a warning ending in %r", line, explained)
    check(srv.conn().result.get("refused") == 1, "server: %r",
          srv.conn().result)


@case(valgrind=True,
      params={"one-line": {"reply": b"535 5.7.8 Username and Password not "
                                    b"accepted.\r\n"},
              "gmail-multi-line": {"reply": GMAIL_SMTP_WRONG}})
def test_smtp_wrong_password_unchanged(t, reply):
    """An ordinary refusal (535 5.7.8) reaches the client as it is, with no
    line more; the log says so at info level, without words."""
    d, c, _ = refusal_rig(t, "smtp", reply)
    smtp_login(c)
    mark = d.mark()
    for want in reply.splitlines(keepends=True):
        c.expect_line(want)
    smtp_next_reply(c)
    text = b" ".join(l[4:] if i else l for i, l in enumerate(
        reply.rstrip(b"\r\n").split(b"\r\n"))).decode()
    line = refusal_logged(d, mark, text)
    check(line.startswith("<6>") and line.endswith(REFUSED + text),
          "log line %r is not info with the server's text only", line)


@case(valgrind=True)
def test_imap_gmail_alert(t):
    """Gmail's [ALERT] reaches the client as it is, with nothing before
    it; the log adds what to do, as a warning."""
    d, c, _ = refusal_rig(t, "imap", GMAIL_IMAP)
    mark = d.mark()
    c.send(b"a1 LOGIN alice secret\r\n")
    c.expect_line(b"a1 " + GMAIL_IMAP)
    c.send(b"a2 NOOP\r\n")
    c.expect_line(b"a2 BAD expected LOGIN\r\n")
    line = refusal_logged(d, mark, GMAIL_IMAP.rstrip(b"\r\n").decode())
    check(line.startswith("<4>") and
          re.search(r"; mailtlsd: Gmail wants OAuth2 or an app password",
                    line), "log line %r", line)


@case(valgrind=True)
def test_imap_words_as_alert(t):
    """A tagged NO without [ALERT] that mailtlsd can explain gets an
    untagged "* NO [ALERT] mailtlsd: ..." just before it."""
    d, c, _ = refusal_rig(t, "imap", IMAP_NO_ALERT)
    mark = d.mark()
    c.send(b"a1 LOGIN alice secret\r\n")
    alert = c.line()
    check(re.match(rb"\* NO \[ALERT\] mailtlsd: Gmail wants OAuth2 or an "
                   rb"app password.*\r\n$", alert), "untagged line %r", alert)
    c.expect_line(b"a1 " + IMAP_NO_ALERT)
    c.send(b"a2 NOOP\r\n")
    c.expect_line(b"a2 BAD expected LOGIN\r\n")
    line = refusal_logged(d, mark, IMAP_NO_ALERT.rstrip(b"\r\n").decode())
    check(line.startswith("<4>") and
          line.endswith("; " + alert[len(b"* NO [ALERT] "):-2].decode()),
          "log line %r", line)


@case(valgrind=True)
def test_pop3_gmail_unchanged(t):
    """POP3's one -ERR line stays as it is; the log adds what to do."""
    d, c, _ = refusal_rig(t, "pop3", GMAIL_POP3)
    mark = d.mark()
    c.send(b"USER alice\r\n")
    c.expect_line(b"+OK send PASS\r\n")
    c.send(b"PASS secret\r\n")
    c.expect_line(GMAIL_POP3)
    c.send(b"NOOP\r\n")
    c.expect_line(b"-ERR expected USER/PASS\r\n")
    line = refusal_logged(d, mark, GMAIL_POP3.rstrip(b"\r\n").decode())
    check(line.startswith("<4>") and re.search(r"; mailtlsd: Gmail", line),
          "log line %r", line)
