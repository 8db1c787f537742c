"""STARTTLS mode (tls = starttls): the daemon's own plaintext dialogue.

Each test starts a StarttlsServer (starttls_server.py), a daemon with
tls = starttls in front of it and a plaintext client.  Success paths check
what the client sees (the daemon's greeting, capabilities filtered until
login and raw after it, byte-exact mail) and what the server received
(before TLS only the daemon's own STARTTLS/STLS/EHLO lines).  Attacks check
the three outcomes of every refusal: the client gets the daemon's one error
line and the close; the server recorded no client line, neither in
plaintext nor inside TLS; the log gives the reason from STARTTLS_REASONS.
"""

import base64
import hashlib
import imaplib
import poplib
import re
import smtplib
import threading
import time

from expectations import LOG_REASONS, SECRET
from harness import case, check, expect_error_line
from starttls_server import (HANGUP, IMAP_POST_CAPS, MESSAGE, POP3_POST_CAPA,
                             SMTP_POST_EHLO, StarttlsServer, dot_stuff)
from test_tls import send_quietly

PROTOCOLS = ("imap", "pop3", "smtp")
PER_PROTOCOL = {p: {"protocol": p} for p in PROTOCOLS}

# ------------------------------------------------------------ expectations
# What the daemon writes to the client once TLS to the server is verified
# (daemon/proto_*.c, *_write_greeting); server_name is mail.test.
DAEMON_GREETING = {
    "imap": b"* OK mailtlsd: IMAP4rev1 service ready via TLS to mail.test\r\n",
    "pop3": b"+OK mailtlsd: POP3 service ready via TLS to mail.test\r\n",
    "smtp": b"220 mail.test ESMTP ready (mailtlsd, TLS to the server)\r\n",
}

# The daemon's answer to a client's own STARTTLS / STLS (prefix).
CLIENT_STARTTLS_REFUSAL = {
    "imap": b" BAD ",           # after the client's tag
    "pop3": b"-ERR ",
    "smtp": b"454 4.7.0 ",
}

# Reason -> regex (case-insensitive) of the log line of an aborted session;
# each is searched after "cannot reach HOST:PORT securely: ".
STARTTLS_REASONS = {
    "not_offered":      r"server did not offer STARTTLS",
    "refused_starttls": r"server refused (STARTTLS|STLS)",
    "unexpected_reply": r"unexpected response to (STARTTLS|STLS)",
    "preauth":          r"IMAP PREAUTH greeting refused",
    "refused_conn":     r"server refused the connection",
    "closed_untagged":  r"server closed the connection: ",
    "hung_up":          r"server closed the connection during the "
                        r"STARTTLS dialogue",
    "malformed":        r"malformed (IMAP|POP3) greeting|malformed SMTP reply",
    "ehlo_refused":     r"server refused EHLO",
    "code_changed":     r"malformed multi-line SMTP reply",
    "nul":              r"NUL byte",
    # Seen in the plaintext dialogue (same read as the go-ahead, or before
    # the handshake began): exactly this; seen by the TLS layer (a later
    # read): with ", or the server did not start TLS".
    "injected":         r"data injected after the STARTTLS response$",
    "injected_tls":     r"data injected after the STARTTLS response",
    "line_too_long":    r"server line longer than 16384 bytes",
    "too_many_lines":   r"too many lines before STARTTLS",
    "dialogue_timeout": r"STARTTLS dialogue timed out",
    "handshake_timeout": r"TLS handshake timed out",
    "name_mismatch":    LOG_REASONS["name_mismatch"],
    "not_trusted":      LOG_REASONS["not_trusted"],
    # Not a failure: the debug line of the daemon entering the dialogue.
    "dialogue_started": r"-> DIALOGUE",
}

# The only lines the server may receive in plaintext: the daemon's own.
DAEMON_LINES = {
    "imap": [b"M1 STARTTLS\r\n"],
    "pop3": [b"STLS\r\n"],
    "smtp": [b"EHLO localhost\r\n", b"STARTTLS\r\n"],
}

# What a client sends at once on connecting in the attack tests: a login
# carrying SECRET, which must reach the server neither in plaintext nor
# inside TLS.
CLIENT_FIRST = {
    "imap": b"a1 LOGIN alice " + SECRET + b"\r\n",
    "pop3": b"USER alice\r\nPASS " + SECRET + b"\r\n",
    "smtp": b"EHLO client.test\r\nAUTH PLAIN " +
            base64.b64encode(b"\0alice\0" + SECRET) + b"\r\nMAIL FROM:<" +
            SECRET + b"@client.test>\r\n",
}

AUTH_PLAIN = base64.b64encode(b"\0alice\0secret")
HIDDEN = (b"STARTTLS", b"STLS", b"LOGINDISABLED")


# ----------------------------------------------------------------- helpers

def starttls_setup(t, protocol, cert="good", service_opts=None,
                   daemon_opts=None, **scenario):
    """A StarttlsServer, a tls = starttls daemon: (server, service, daemon)."""
    srv = StarttlsServer(protocol, t.tls_context(cert), **scenario)
    t.stack.callback(srv.stop)
    opts = {"tls": "starttls"}
    opts.update(service_opts or {})
    svc = t.service(srv, protocol, **opts)
    d = t.daemon(svc, **(daemon_opts or {}))
    return srv, svc, d


def expect_reason(d, reason, since=0, timeout=5):
    """The abort's log line gives the reason from STARTTLS_REASONS."""
    rx = r"cannot reach \S+ securely: .*(%s)" % STARTTLS_REASONS[reason]
    return d.wait_log(rx, since=since, timeout=timeout,
                      what="log reason %r" % reason)


class Talk:
    """A client connection that keeps everything it received (transcript)."""

    def __init__(self, c, protocol):
        self.c = c
        self.protocol = protocol
        self.seen = bytearray()

    def line(self, timeout=None):
        got = self.c.line(timeout)
        self.seen += got
        return got

    def exact(self, n):
        got = self.c.recv_exact(n)
        self.seen += got
        return got

    def send(self, data):
        self.c.send(data)

    def greeting(self):
        got = self.line()
        check(got == DAEMON_GREETING[self.protocol],
              "expected the daemon's greeting, got %r", got)
        return got

    def reply(self, tag=None, multi=False):
        """One complete response: a list of its lines (and literals)."""
        if self.protocol == "imap":
            return self._imap_reply(tag)
        if self.protocol == "pop3":
            out = [self.line()]
            if multi and out[0].startswith(b"+OK"):
                while out[-1] != b".\r\n":
                    out.append(self.line())
            return out
        out = [self.line()]
        while out[-1][3:4] == b"-":
            out.append(self.line())
        return out

    def _imap_reply(self, tag):
        out = []
        while True:
            got = self.line()
            out.append(got)
            m = re.search(rb"\{(\d+)\}\r\n$", got)
            if m:
                out.append(self.exact(int(m.group(1))))
                continue
            if got.startswith(tag + b" "):
                return out

    def cmd(self, line, tag=None, multi=False):
        """Send one command line and return its response."""
        self.send(line)
        if tag is None and self.protocol == "imap":
            tag = line.split(b" ", 1)[0]
        return self.reply(tag, multi)


def talk(t, svc, protocol):
    """Connect through the daemon and check its greeting."""
    s = Talk(t.connect(svc), protocol)
    s.greeting()
    return s


def expect_lines(got, want, what):
    check(got == want, "%s: expected %r, got %r", what, want, got)


def expect_record(rec, protocol, pre=None, post_login=True):
    """The server's plaintext record holds only the daemon's own lines."""
    want = DAEMON_LINES[protocol] if pre is None else pre
    check(rec.pre == want, "server's plaintext record is %r, expected only "
          "the daemon's %r", rec.pre[:10], want)
    if post_login:
        check(rec.logged_in_as == b"alice", "server saw no login over TLS")
    check(SECRET not in rec.raw, "a client secret reached the server in "
          "plaintext")


def expect_not_shown(seen, *markers):
    for m in markers:
        check(m not in seen, "the client saw %r: %r", m,
              bytes(seen[max(0, seen.find(m) - 80):seen.find(m) + 80]))


def login(s, method="login"):
    """Log in through the daemon with the protocol's LOGIN or AUTH PLAIN."""
    p = s.protocol
    if p == "imap":
        if method == "login":
            r = s.cmd(b"a2 LOGIN alice secret\r\n")
        else:
            s.send(b"a2 AUTHENTICATE PLAIN\r\n")
            expect_lines(s.line(), b"+ \r\n", "AUTHENTICATE continuation")
            r = s.cmd(AUTH_PLAIN + b"\r\n", tag=b"a2")
        check(r[-1].startswith(b"a2 OK"), "login refused: %r", r)
    elif p == "pop3":
        if method == "login":
            expect_lines(s.cmd(b"USER alice\r\n")[0][:3], b"+OK", "USER")
            r = s.cmd(b"PASS secret\r\n")
        else:
            expect_lines(s.cmd(b"AUTH PLAIN\r\n"), [b"+ \r\n"],
                         "AUTH challenge")
            r = s.cmd(AUTH_PLAIN + b"\r\n")
        check(r[0].startswith(b"+OK"), "login refused: %r", r)
    else:
        if method == "login":
            r = s.cmd(b"AUTH PLAIN " + AUTH_PLAIN + b"\r\n")
        else:
            expect_lines(s.cmd(b"AUTH PLAIN\r\n"), [b"334 \r\n"],
                         "AUTH challenge")
            r = s.cmd(AUTH_PLAIN + b"\r\n")
        check(r[0].startswith(b"235 "), "login refused: %r", r)


def filtered_capabilities(s):
    """Ask for capabilities before login; check the filtered view."""
    p = s.protocol
    if p == "imap":
        r = s.cmd(b"a1 CAPABILITY\r\n")
        expect_lines(r, [b"* CAPABILITY IMAP4rev1 AUTH=PLAIN AUTH=LOGIN IDLE "
                         b"X-POSTTLS\r\n", b"a1 OK CAPABILITY completed\r\n"],
                     "CAPABILITY before login")
        # A [CAPABILITY] response code in a tagged reply is filtered too.
        r = s.cmd(b"n1 NOOP\r\n")
        expect_lines(r, [b"n1 OK [CAPABILITY IMAP4rev1 AUTH=PLAIN X-POSTTLS] "
                         b"NOOP completed\r\n"], "NOOP's [CAPABILITY] code")
    elif p == "pop3":
        r = s.cmd(b"CAPA\r\n", multi=True)
        expect_lines(r, [b"+OK Capability list follows\r\n", b"TOP\r\n",
                         b"USER\r\n", b"SASL PLAIN LOGIN\r\n",
                         b"X-POSTTLS\r\n", b".\r\n"], "CAPA before login")
    else:
        r = s.cmd(b"EHLO client.test\r\n")
        # STARTTLS was the last line: "250-8BITMIME" becomes the last.
        expect_lines(r, [b"250-mail.test Hello client.test\r\n",
                         b"250-PIPELINING\r\n", b"250-AUTH PLAIN LOGIN\r\n",
                         b"250-X-POSTTLS\r\n", b"250 8BITMIME\r\n"],
                     "EHLO before login")
    return r


def raw_capabilities(s):
    """After login the relay is a plain copy: the server's list as it is."""
    p = s.protocol
    if p == "imap":
        expect_lines(s.cmd(b"a3 CAPABILITY\r\n"),
                     [b"* CAPABILITY " + IMAP_POST_CAPS + b"\r\n",
                      b"a3 OK CAPABILITY completed\r\n"],
                     "CAPABILITY after login")
    elif p == "pop3":
        expect_lines(b"".join(s.cmd(b"CAPA\r\n", multi=True)),
                     POP3_POST_CAPA, "CAPA after login")
    else:
        expect_lines(b"".join(s.cmd(b"EHLO client.test\r\n")),
                     SMTP_POST_EHLO.replace(b"{name}", b"client.test"),
                     "EHLO after login")


def transfer(s, rec):
    """A mail transfer, byte-exact both ways it can go."""
    p = s.protocol
    if p == "imap":
        r = s.cmd(b"a4 SELECT INBOX\r\n")
        check(r[-1].startswith(b"a4 OK"), "SELECT: %r", r)
        r = s.cmd(b"a5 FETCH 1 (BODY[])\r\n")
        expect_lines(r[0], b"* 1 FETCH (BODY[] {%d}\r\n" % len(MESSAGE),
                     "FETCH")
        check(r[1] == MESSAGE, "FETCH literal differs: %r", r[1][:200])
        expect_lines(r[2:], [b")\r\n", b"a5 OK FETCH completed\r\n"],
                     "end of FETCH")
        expect_lines(s.cmd(b"a6 LOGOUT\r\n"),
                     [b"* BYE logging out\r\n", b"a6 OK LOGOUT completed\r\n"],
                     "LOGOUT")
    elif p == "pop3":
        expect_lines(s.cmd(b"STAT\r\n"), [b"+OK 1 %d\r\n" % len(MESSAGE)],
                     "STAT")
        r = s.cmd(b"RETR 1\r\n", multi=True)
        expect_lines(b"".join(r[1:]), dot_stuff(MESSAGE) + b".\r\n", "RETR")
        expect_lines(s.cmd(b"QUIT\r\n"), [b"+OK bye\r\n"], "QUIT")
    else:
        expect_lines(s.cmd(b"MAIL FROM:<alice@mail.test>\r\n"),
                     [b"250 2.1.0 Ok\r\n"], "MAIL")
        expect_lines(s.cmd(b"RCPT TO:<bob@mail.test>\r\n"),
                     [b"250 2.1.5 Ok\r\n"], "RCPT")
        expect_lines(s.cmd(b"DATA\r\n")[0][:4], b"354 ", "DATA")
        r = s.cmd(dot_stuff(MESSAGE) + b".\r\n")
        expect_lines(r, [b"250 2.0.0 Ok: body sha256 %s\r\n" %
                         hashlib.sha256(MESSAGE).hexdigest().encode()],
                     "end of DATA")
        expect_lines(s.cmd(b"QUIT\r\n"), [b"221 2.0.0 Bye\r\n"], "QUIT")
    check(s.c.read_to_eof(10) == b"", "data after the last reply")
    s.c.close()
    rec.wait_done(10)
    if p == "smtp":
        check(rec.result.get("body") == MESSAGE, "server got the message "
              "body %r", rec.result.get("body", b"")[:200])


# ------------------------------------------------------------ success paths

@case(params={"%s-%s" % (p, m): {"protocol": p, "method": m}
              for p in PROTOCOLS for m in ("login", "sasl")}, valgrind=True)
def test_success(t, protocol, method):
    """Daemon greeting, filtered capabilities, login, raw list, transfer."""
    srv, svc, _ = starttls_setup(t, protocol)
    s = talk(t, svc, protocol)
    filtered_capabilities(s)
    before_login = bytes(s.seen)
    login(s, method)
    raw_capabilities(s)
    rec = srv.conn(0)
    transfer(s, rec)
    expect_record(rec, protocol)
    check(rec.tls_ok, "no TLS on the server side")
    # Before login the client saw only the post-TLS lists, filtered.
    expect_not_shown(before_login, *HIDDEN)
    expect_not_shown(s.seen, b"PRETLS")


@case(valgrind=True)
def test_ehlo_name(t):
    """SMTP: ehlo_name is what the daemon says in its plaintext EHLO."""
    srv, svc, _ = starttls_setup(t, "smtp",
                                 service_opts={"ehlo_name": "relay.example"})
    s = talk(t, svc, "smtp")
    filtered_capabilities(s)
    login(s)
    rec = srv.conn(0)
    expect_record(rec, "smtp", pre=[b"EHLO relay.example\r\n",
                                    b"STARTTLS\r\n"])


# Pre-TLS noise the daemon must swallow: the session works, the client sees
# none of it.
IMAP_UNTAGGED = (b'* LIST () "/" PRETLS-LIST-INBOX\r\n'
                 b"* 23 EXISTS\r\n"
                 b"* 7 RECENT\r\n"
                 b"* OK [ALERT] PRETLS-ALERT your account is locked\r\n"
                 b"* OK [REFERRAL imap://attacker.test/] PRETLS-REFERRAL\r\n"
                 b"* CAPABILITY IMAP4rev1 AUTH=PLAIN X-PRETLS-INJECT\r\n"
                 b"* NO [ALERT] PRETLS-ALERT-NO\r\n")

NOISE = {
    # Untagged responses before the tagged OK to STARTTLS.
    "imap-untagged": ("imap", {"before_go_ahead": IMAP_UNTAGGED},
                      (b"23 EXISTS", b"7 RECENT", b"ALERT", b"REFERRAL",
                       b"LIST")),
    # The go-ahead with a response code of its own.
    "imap-go-ahead-code": ("imap", {"go_ahead": b"{tag} OK [CAPABILITY "
                                    b"IMAP4rev1 AUTH=PLAIN X-PRETLS] "
                                    b"PRETLS begin TLS\r\n"}, ()),
    # A greeting without a CAPABILITY code (STARTTLS is asked anyway).
    "imap-plain-greeting": ("imap", {"greeting": b"* OK PRETLS-GREETING "
                                     b"hello\r\n"}, ()),
    # Multi-line go-ahead and a long multi-line greeting.
    "smtp-multiline": ("smtp", {"greeting": b"".join(
        b"220-PRETLS greeting line %d\r\n" % i for i in range(10)) +
        b"220 mail.test PRETLS ready\r\n",
        "go_ahead": b"220-PRETLS go\r\n220 2.0.0 PRETLS ahead\r\n"}, ()),
    "pop3-apop-greeting": ("pop3", {"greeting": b"+OK PRETLS "
                                    b"<1.2@mail.test>\r\n"}, (b"<1.2@",)),
}


@case(params={k: {"kind": k} for k in NOISE}, valgrind=True)
def test_pretls_noise_not_shown(t, kind):
    """What the server says in plaintext never reaches the client."""
    protocol, scenario, markers = NOISE[kind]
    srv, svc, _ = starttls_setup(t, protocol, **scenario)
    s = talk(t, svc, protocol)
    filtered_capabilities(s)
    login(s)
    rec = srv.conn(0)
    transfer(s, rec)
    expect_record(rec, protocol)
    expect_not_shown(s.seen, b"PRETLS", *markers)


MAX_LINE = b"* OK " + b"x" * (16384 - 5)     # 16384 bytes before the CRLF


@case(params={k: {"what": k} for k in ("lines", "length", "length-split")},
      valgrind=True)
def test_limits_not_too_strict(t, what):
    """IMAP: exactly 64 dialogue lines, a line of exactly 16384 bytes: fine.

    length-split: the 16384-byte greeting's CR comes in one read, its LF in
    the next (the server sends the LF once the daemon has read the rest)."""
    scenario = {}
    if what == "lines":        # greeting + 62 untagged + tagged OK = 64
        scenario["before_go_ahead"] = b"".join(b"* OK PRETLS filler %d\r\n"
                                               % i for i in range(62))
    elif what == "length":
        scenario["before_go_ahead"] = MAX_LINE + b"\r\n"
    else:
        scenario["greeting"] = [MAX_LINE + b"\r", b"\n"]
    srv, svc, _ = starttls_setup(t, "imap", **scenario)
    s = talk(t, svc, "imap")
    filtered_capabilities(s)
    login(s)
    expect_record(srv.conn(0), "imap")
    expect_not_shown(s.seen, b"PRETLS", b"xxxx")


# ------------------------------------------------------------ real clients

@case(valgrind=True)
def test_python_imaplib(t):
    """imaplib: capabilities without STARTTLS, login, select, fetch."""
    srv, svc, _ = starttls_setup(t, "imap")
    m = imaplib.IMAP4("127.0.0.1", svc.port, timeout=10)
    try:
        check(m.welcome == DAEMON_GREETING["imap"].rstrip(b"\r\n"),
              "welcome %r", m.welcome)
        caps = m.capabilities
        for word in ("STARTTLS", "LOGINDISABLED", "X-PRETLS"):
            check(word not in caps, "imaplib sees %s in %r", word, caps)
        for word in ("AUTH=PLAIN", "AUTH=LOGIN", "X-POSTTLS"):
            check(word in caps, "imaplib misses %s in %r", word, caps)
        check(m.login("alice", "secret")[0] == "OK", "login failed")
        typ, data = m.select("INBOX")
        check(typ == "OK" and data == [b"1"], "select: %r %r", typ, data)
        typ, data = m.fetch("1", "(RFC822)")
        check(typ == "OK", "fetch: %r", typ)
        check(data[0][1] == MESSAGE, "fetched body differs: %r",
              data[0][1][:200])
        check(m.logout()[0] == "BYE", "logout")
    finally:
        if m.state != "LOGOUT":
            m.shutdown()
    expect_record(srv.conn(0).wait_done(10), "imap")


@case(valgrind=True)
def test_python_poplib(t):
    """poplib: CAPA without STLS, user/pass_, retr."""
    srv, svc, _ = starttls_setup(t, "pop3")
    p = poplib.POP3("127.0.0.1", svc.port, timeout=10)
    try:
        check(p.getwelcome() == DAEMON_GREETING["pop3"].rstrip(b"\r\n"),
              "welcome %r", p.getwelcome())
        capa = p.capa()
        check("STLS" not in capa, "poplib sees STLS in %r", capa)
        check("X-PRETLS" not in capa, "poplib sees the pre-TLS list %r", capa)
        check(capa.get("SASL") == ["PLAIN", "LOGIN"] and "X-POSTTLS" in capa,
              "poplib misses the post-TLS list: %r", capa)
        p.user("alice")
        p.pass_("secret")
        resp, lines, octets = p.retr(1)
        check(b"\r\n".join(lines) + b"\r\n" == MESSAGE,
              "retrieved body differs: %r", lines[:10])
        p.quit()
    finally:
        p.close()
    expect_record(srv.conn(0).wait_done(10), "pop3")


@case(valgrind=True)
def test_python_smtplib(t):
    """smtplib: EHLO without STARTTLS, login (AUTH PLAIN), sendmail."""
    srv, svc, _ = starttls_setup(t, "smtp")
    m = smtplib.SMTP("127.0.0.1", svc.port, local_hostname="client.test",
                     timeout=10)
    try:
        code, _ = m.ehlo()
        check(code == 250, "ehlo %d", code)
        feats = m.esmtp_features
        check(not m.has_extn("starttls"), "smtplib sees STARTTLS: %r", feats)
        check("x-pretls" not in feats, "smtplib sees the pre-TLS list")
        check(feats.get("auth", "").split() == ["PLAIN", "LOGIN"] and
              "x-posttls" in feats,
              "smtplib misses the post-TLS list: %r", feats)
        code, _ = m.login("alice", "secret")
        check(code == 235, "login %d", code)
        refused = m.sendmail("alice@mail.test", ["bob@mail.test"], MESSAGE)
        check(refused == {}, "refused %r", refused)
        m.quit()
    finally:
        m.close()
    rec = srv.conn(0).wait_done(10)
    check(rec.result.get("body") == MESSAGE, "server got %r",
          rec.result.get("body", b"")[:200])
    expect_record(rec, "smtp")


# ---------------------------------------------- the client's own STARTTLS

CLIENT_STARTTLS_LINES = {
    "imap": [b"S1 STARTTLS\r\n", b"s2 starttls\r\n"],
    "pop3": [b"STLS\r\n", b"stls\r\n"],
    "smtp": [b"STARTTLS\r\n", b"starttls\r\n"],
}


@case(params=PER_PROTOCOL, valgrind=True)
def test_client_starttls_refused(t, protocol):
    """A client's STARTTLS/STLS is answered by the daemon, never forwarded.

    It comes pipelined between two commands: the refusal arrives in order
    and the commands around it still work."""
    srv, svc, _ = starttls_setup(t, protocol)
    s = talk(t, svc, protocol)
    if protocol == "imap":
        s.send(b"a1 NOOP\r\nS1 STARTTLS\r\na2 NOOP\r\ns2 starttls\r\n")
        got = [s.line() for _ in range(4)]
        refusals = [l for l in got if l.startswith((b"S1 ", b"s2 "))]
        check(len(refusals) == 2 and all(
              l[2:].startswith(CLIENT_STARTTLS_REFUSAL["imap"])
              for l in refusals), "refusals: %r", got)
        check(sorted(l[:3] for l in got) == [b"S1 ", b"a1 ", b"a2 ", b"s2 "],
              "answers %r", got)
    elif protocol == "pop3":
        s.send(b"NOOP\r\nSTLS\r\nNOOP\r\nstls\r\n")
        got = [s.line() for _ in range(4)]
        check(got[0] == b"+OK\r\n" and got[2] == b"+OK\r\n", "got %r", got)
        for l in (got[1], got[3]):
            check(l.startswith(CLIENT_STARTTLS_REFUSAL["pop3"]), "got %r", l)
    else:
        s.send(b"EHLO client.test\r\nSTARTTLS\r\nNOOP\r\nstarttls\r\n")
        got = s.reply()
        check(got[-1] == b"250 8BITMIME\r\n", "EHLO: %r", got)
        for want in ("refusal", b"250 2.0.0 Ok\r\n", "refusal"):
            l = s.line()
            if want == "refusal":
                check(l.startswith(CLIENT_STARTTLS_REFUSAL["smtp"]),
                      "expected the daemon's 454, got %r", l)
            else:
                expect_lines(l, want, "NOOP")
    login(s)
    rec = srv.conn(0)
    transfer(s, rec)
    for line in CLIENT_STARTTLS_LINES[protocol]:
        check(line not in rec.post, "the server received the client's %r",
              line)
    expect_record(rec, protocol)


# ------------------------------------------------- client talks too early

EARLY = {
    "imap": (b"a1 LOGIN alice secret\r\n", [b"a1 OK LOGIN completed\r\n"]),
    "pop3": (b"USER alice\r\nPASS secret\r\n",
             [b"+OK send PASS\r\n", b"+OK logged in\r\n"]),
    "smtp": (b"EHLO client.test\r\nAUTH PLAIN " + AUTH_PLAIN + b"\r\n",
             [b"250-mail.test Hello client.test\r\n", b"250-PIPELINING\r\n",
              b"250-AUTH PLAIN LOGIN\r\n", b"250-X-POSTTLS\r\n",
              b"250 8BITMIME\r\n",
              b"235 2.7.0 Authentication successful\r\n"]),
}


def connect_early(t, svc, d, release, data, in_dialogue=True):
    """Connect and send data before the daemon could greet the client.

    The server holds its greeting until release is set.  in_dialogue: send
    only once the daemon has logged that its plaintext dialogue with the
    server began, so the bytes arrive while it is in that state."""
    mark = d.mark()
    c = t.connect(svc)
    try:
        if in_dialogue:
            d.wait_log(STARTTLS_REASONS["dialogue_started"], since=mark,
                       what="the daemon to start its STARTTLS dialogue")
        send_quietly(c, data)
    finally:
        release.set()
    return c


@case(params={"%s-%s" % (p, w): {"protocol": p, "when": w}
              for p in PROTOCOLS for w in ("on-connect", "in-dialogue")},
      valgrind=True)
def test_login_before_greeting(t, protocol, when):
    """A client that sends its login before it was greeted: the bytes wait
    in the daemon until TLS is verified, then the session works.

    The server greets only after the client's bytes were sent: at once on
    connecting, or once the daemon is in its plaintext dialogue."""
    release = threading.Event()
    srv, svc, d = starttls_setup(t, protocol, hold_greeting=release)
    early, answers = EARLY[protocol]
    s = Talk(connect_early(t, svc, d, release, early,
                           when == "in-dialogue"), protocol)
    s.greeting()
    expect_lines([s.line() for _ in answers], answers, "answers")
    rec = srv.conn(0)
    check(rec.logged_in.wait(10), "the server saw no login")
    expect_record(rec, protocol)
    first_post = b"".join(rec.post)[:len(early)]
    expect_lines(first_post, early, "the server's first lines inside TLS")


@case(valgrind=True)
def test_imap_login_literal(t):
    """IMAP literals are honoured before login: a password literal holding
    "STARTTLS" lines is data, not a command the daemon would answer."""
    srv, svc, _ = starttls_setup(t, "imap")
    s = talk(t, svc, "imap")
    password = b"pass STARTTLS\r\na9 STARTTLS"
    s.send(b"a1 LOGIN alice {%d}\r\n" % len(password))
    expect_lines(s.line(), b"+ Ready for literal data\r\n", "continuation")
    r = s.cmd(password + b"\r\n", tag=b"a1")
    expect_lines(r, [b"a1 OK LOGIN completed\r\n"], "LOGIN with a literal")
    raw_capabilities(s)
    rec = srv.conn(0)
    check(password in rec.post, "the server did not get the literal as is: "
          "%r", rec.post)
    expect_record(rec, "imap")


# ------------------------------------------------------------------ attacks

def assert_refused(t, protocol, reason, pre, service_opts=None, **scenario):
    """One refused STARTTLS session, end to end: (server rec, d, secs).

    The client sends a login carrying SECRET while the daemon is in its
    plaintext dialogue (the server greets only after that)."""
    release = threading.Event()
    srv, svc, d = starttls_setup(t, protocol, service_opts=service_opts,
                                 hold_greeting=release, **scenario)
    mark = d.mark()
    t0 = time.monotonic()
    c = connect_early(t, svc, d, release, CLIENT_FIRST[protocol])
    line = expect_error_line(c, protocol)
    secs = time.monotonic() - t0
    check(b"PRETLS" not in line, "the error line carries the server's "
          "plaintext text: %r", line)
    rec = srv.conn(0).wait_done(10)
    check(rec.pre == pre, "server's plaintext record is %r, expected %r",
          rec.pre[:10], pre)
    check(not rec.tls_ok and rec.post == [], "the server got lines inside "
          "TLS: %r", rec.post[:10])
    check(SECRET not in rec.raw, "the client's secret reached the server")
    expect_reason(d, reason, since=mark)
    return rec, d, secs


IMAP_SENT = [b"M1 STARTTLS\r\n"]
POP3_SENT = [b"STLS\r\n"]
SMTP_EHLO = [b"EHLO localhost\r\n"]
SMTP_SENT = [b"EHLO localhost\r\n", b"STARTTLS\r\n"]

# name -> (protocol, log reason, plaintext lines the server gets, scenario)
ATTACKS = {
    # STARTTLS not offered.
    "imap-capability-without-starttls": (
        "imap", "not_offered", [],
        {"greeting": b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN LOGIN-REFERRALS]"
                     b" PRETLS ready\r\n"}),
    "smtp-ehlo-without-starttls": (
        "smtp", "not_offered", SMTP_EHLO,
        {"ehlo_reply": b"250-mail.test PRETLS hello\r\n250-AUTH PLAIN\r\n"
                       b"250 8BITMIME\r\n"}),
    "smtp-starttls-only-as-name": (     # the first line is the server name
        "smtp", "not_offered", SMTP_EHLO,
        {"ehlo_reply": b"250-STARTTLS\r\n250 AUTH PLAIN\r\n"}),
    # STARTTLS refused or answered wrongly.
    "imap-no": ("imap", "refused_starttls", IMAP_SENT,
                {"starttls_reply": b"{tag} NO PRETLS not now\r\n"}),
    "imap-bad": ("imap", "refused_starttls", IMAP_SENT,
                 {"starttls_reply": b"{tag} BAD PRETLS unknown command\r\n"}),
    "imap-continuation": ("imap", "unexpected_reply", IMAP_SENT,
                          {"starttls_reply": b"+ PRETLS go ahead\r\n"}),
    "imap-other-tag-ok": ("imap", "unexpected_reply", IMAP_SENT,
                          {"starttls_reply": b"X9 OK PRETLS begin TLS\r\n"}),
    "imap-untagged-bye": ("imap", "closed_untagged", IMAP_SENT,
                          {"starttls_reply":
                           b"* BYE PRETLS shutting down\r\n"}),
    "pop3-err": ("pop3", "refused_starttls", POP3_SENT,
                 {"starttls_reply": b"-ERR PRETLS not available\r\n"}),
    "pop3-garbage": ("pop3", "unexpected_reply", POP3_SENT,
                     {"starttls_reply": b"PRETLS whatever\r\n"}),
    "smtp-454": ("smtp", "refused_starttls", SMTP_SENT,
                 {"starttls_reply": b"454 4.7.0 PRETLS no TLS now\r\n"}),
    "smtp-502": ("smtp", "refused_starttls", SMTP_SENT,
                 {"starttls_reply": b"502 5.5.1 PRETLS unknown command\r\n"}),
    "imap-hang-up": ("imap", "hung_up", IMAP_SENT, {"starttls_reply": HANGUP}),
    "smtp-hang-up": ("smtp", "hung_up", SMTP_SENT, {"starttls_reply": HANGUP}),
    # Greetings.
    "imap-preauth": ("imap", "preauth", [],
                     {"greeting": b"* PREAUTH PRETLS welcome, logged in\r\n"}),
    "imap-bye": ("imap", "refused_conn", [],
                 {"greeting": b"* BYE PRETLS too many connections\r\n"}),
    "pop3-err-greeting": ("pop3", "refused_conn", [],
                          {"greeting": b"-ERR PRETLS go away\r\n"}),
    "smtp-554-greeting": ("smtp", "refused_conn", [],
                          {"greeting": b"554 5.3.2 PRETLS go away\r\n"}),
    "imap-malformed": ("imap", "malformed", [],
                       {"greeting": b"PRETLS hello there\r\n"}),
    "pop3-malformed": ("pop3", "malformed", [],
                       {"greeting": b"PRETLS hello there\r\n"}),
    "smtp-malformed": ("smtp", "malformed", [],
                       {"greeting": b"PRETLS hello there\r\n"}),
    "smtp-code-changes": ("smtp", "code_changed", [],
                          {"greeting": b"220-mail.test PRETLS\r\n"
                                       b"250 mail.test PRETLS\r\n"}),
    "imap-nul-greeting": ("imap", "nul", [],
                          {"greeting": b"* OK PRETLS\x00hello\r\n"}),
    # EHLO refused: no fallback to HELO.
    "smtp-ehlo-500": ("smtp", "ehlo_refused", SMTP_EHLO,
                      {"ehlo_reply": b"500 5.5.1 PRETLS what?\r\n"}),
    "smtp-ehlo-502": ("smtp", "ehlo_refused", SMTP_EHLO,
                      {"ehlo_reply": b"502 5.5.2 PRETLS not implemented\r\n"}),
}

# The injection after the go-ahead, per protocol.
INJECT = {
    "imap": b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n",
    "pop3": b"+OK PRETLS capability list\r\nUSER\r\nSASL PLAIN\r\n.\r\n",
    "smtp": b"250 AUTH PLAIN\r\n",
}
SENT = {"imap": IMAP_SENT, "pop3": POP3_SENT, "smtp": SMTP_SENT}
for _p in PROTOCOLS:
    for _when in ("same", "client_hello"):
        ATTACKS["%s-inject-%s" % (_p, _when.replace("_", "-"))] = (
            _p, "injected" if _when == "same" else "injected_tls",
            SENT[_p],
            {"inject": INJECT[_p], "inject_when": _when})

# Over-long lines (> 16384 bytes) before the go-ahead, and too many lines.
LONG = b"x" * 17000
ATTACKS.update({
    "imap-long-untagged": ("imap", "line_too_long", IMAP_SENT,
                           {"before_go_ahead": b"* OK " + LONG + b"\r\n"}),
    "imap-long-greeting": ("imap", "line_too_long", [],
                           {"greeting": b"* OK " + LONG + b"\r\n"}),
    "pop3-long-greeting": ("pop3", "line_too_long", [],
                           {"greeting": b"+OK " + LONG + b"\r\n"}),
    "pop3-long-reply": ("pop3", "line_too_long", POP3_SENT,
                        {"go_ahead": b"+OK " + LONG + b"\r\n"}),
    "smtp-long-reply": ("smtp", "line_too_long", SMTP_SENT,
                        {"before_go_ahead": b"220-" + LONG + b"\r\n"}),
    "imap-too-many-lines": ("imap", "too_many_lines", IMAP_SENT,
                            {"before_go_ahead": b"".join(
                                b"* OK PRETLS filler %d\r\n" % i
                                for i in range(63))}),
    "smtp-too-many-lines": ("smtp", "too_many_lines", SMTP_EHLO,
                            {"ehlo_reply": b"250-mail.test PRETLS\r\n" +
                             b"250-STARTTLS\r\n" + b"".join(
                                 b"250-X-FILLER-%d\r\n" % i
                                 for i in range(70)) + b"250 SIZE 10\r\n"}),
    "smtp-too-many-greeting-lines": ("smtp", "too_many_lines", [],
                                     {"greeting": b"".join(
                                         b"220-PRETLS %d\r\n" % i
                                         for i in range(70)) +
                                      b"220 ready\r\n"}),
})

# TLS after the go-ahead, verified exactly as in implicit mode.
for _p in PROTOCOLS:
    ATTACKS["%s-tls-wrong-name" % _p] = (_p, "name_mismatch", SENT[_p],
                                         {"cert": "wrong_name"})
ATTACKS["imap-tls-self-signed"] = ("imap", "not_trusted", IMAP_SENT,
                                   {"cert": "self_signed"})


@case(params={k: {"kind": k} for k in ATTACKS}, valgrind=True)
def test_attack(t, kind):
    """Each attack: the error line, nothing from the client, the reason."""
    protocol, reason, pre, scenario = ATTACKS[kind]
    rec, _, _ = assert_refused(t, protocol, reason, pre, **scenario)
    if scenario.get("inject_when") == "client_hello":
        check(rec.after_go_ahead[:1] == b"\x16", "the daemon's first bytes "
              "after the go-ahead were not a TLS handshake record: %r",
              bytes(rec.after_go_ahead[:20]))
    if protocol == "smtp":
        check(not any(l.upper().startswith(b"HELO") for l in rec.pre),
              "the daemon fell back to HELO")


# Slowloris: a server that keeps the dialogue alive without ever finishing
# it.  handshake_timeout bounds the whole dialogue, not the gaps in it.
DRIBBLE = {
    "imap": ({"dribble": b"* OK PRETLS still thinking\r\n"}, IMAP_SENT),
    "pop3": ({"greeting": b"", "dribble": b"+"}, []),
    "smtp": ({"greeting": b"", "dribble": b"220-PRETLS still here\r\n"}, []),
}


@case(params=PER_PROTOCOL, valgrind=True)
def test_dribble(t, protocol):
    """A line (or byte) every 0.2s: the abort still comes after ~1s."""
    scenario, pre = DRIBBLE[protocol]
    rec, _, secs = assert_refused(t, protocol, "dialogue_timeout", pre,
                                  service_opts={"handshake_timeout": 1},
                                  **scenario)
    check(0.8 <= secs <= 3, "aborted after %.1fs (handshake_timeout = 1)",
          secs)


# Silence: handshake_timeout = 1 covers the dialogue and the handshake.
SILENCE = {
    "before-greeting": ({"greeting": b""}, False, "dialogue_timeout"),
    "after-starttls": ({"starttls_reply": b""}, True, "dialogue_timeout"),
    "after-go-ahead": ({"after_go_ahead": "silent"}, True,
                       "handshake_timeout"),
}


@case(params={"%s-%s" % (p, w): {"protocol": p, "when": w}
              for p in PROTOCOLS for w in SILENCE}, valgrind=True)
def test_silence(t, protocol, when):
    """A server that stops talking: the abort comes after ~1s."""
    scenario, sent, reason = SILENCE[when]
    pre = SENT[protocol] if sent else []
    rec, _, secs = assert_refused(t, protocol, reason, pre,
                                  service_opts={"handshake_timeout": 1},
                                  **scenario)
    check(0.8 <= secs <= 6, "aborted after %.1fs (handshake_timeout = 1)",
          secs)
    if when == "after-go-ahead":
        check(rec.after_go_ahead[:1] == b"\x16", "after the go-ahead the "
              "daemon sent %r", bytes(rec.after_go_ahead[:20]))
