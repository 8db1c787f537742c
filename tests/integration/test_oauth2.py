"""OAuth2 logins (oauth2 = NAME): a legacy client's password login becomes
XOAUTH2 / OAUTHBEARER toward a server that takes nothing else.

The parts are fakes, quick and scriptable: FakeIdP (oauth2_server.py) is
the provider, OAuthMailServer (oauth2_mail.py) the mail servers that
accept only its live tokens for the right user.  The client speaks plain
IMAP, POP3 or SMTP to mailtlsd with a user name and a password of its
user's choosing, which must never reach any server.

1. -t is in test_config.py.
2. The device flow for every client login form (IMAP LOGIN atom, quoted,
   literal {n} and {n+}, AUTHENTICATE PLAIN with and without SASL-IR; POP3
   USER/PASS and AUTH PLAIN; SMTP AUTH PLAIN and AUTH LOGIN), implicit TLS
   and STARTTLS toward the server, XOAUTH2 or OAUTHBEARER, SASL-IR or not:
   instructions, approval, then the same password logs in and the session
   relays.  Pending, denied and expired codes, slow_down.
3. The browser flow (PKCE, state, the loopback redirect listener) and
   client credentials (the first password seals the account).
4. Tokens over time: refresh before use, rotation kept (also across a
   restart), a server that rejects a token (one refresh, one retry), a
   revoked grant, the provider's errors in words, a wrong password (the
   token file untouched), two services sharing one authorisation.
5. The provider unreachable, slow, oversized, untrusted: a temporary
   failure, the daemon stays up; the key derivation does not stall other
   sessions.
6. Nothing secret in the debug log; the client sees only plain mechanisms.
7. What -s, -s -j and the metrics show of an account: nothing before a
   login, a flow waiting for a person, authorised with the access token's
   expiry the provider gave, the last error of a refresh in full; never a
   password, token or code.
"""

import base64
import datetime
import json
import os
import re
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

from client import noop
from daemon import assert_no_sanitizer_report
from expectations import GREETING
from harness import Service, case, check, connect_refused, wait_until
from oauth2_mail import (ERROR_ANSWER, IMAP_SELECTED, MECHS,
                         MS_SMTP_AUTH_DISABLED, MS_SMTP_BASIC_AUTH, POP3_STAT,
                         SMTP_MAIL_OK, OAuthMailServer)
from oauth2_server import (AADSTS50076, AADSTS65001, AADSTS70043,
                           AADSTS700016, AADSTS700082, DEVICE_GRANT,
                           GOOGLE_REVOKED, FakeIdP, s256)
from test_relay import quarantine_env
from test_status import fetch, iso_seconds, parse_metrics, run_status

PROTOCOLS = ("imap", "pop3", "smtp")
PER_PROTOCOL = {p: {"protocol": p} for p in PROTOCOLS}

USER = "alice@example.com"
PASSWORD = "Pw-of-alice.7"              # an IMAP atom
OTHER_PASSWORD = "not-alices-password"
SECTION = "fake"
CLIENT_ID = "mailtlsd-test-client"
CLIENT_SECRET = "cs~Sup3r.Secret_of-the-app"
GENERIC_SCOPE = "https://mail.test/imap https://mail.test/pop " \
                "https://mail.test/smtp offline_access"

MS_IMAP = "https://outlook.office.com/IMAP.AccessAsUser.All"
MS_POP = "https://outlook.office.com/POP.AccessAsUser.All"
MS_SMTP = "https://outlook.office.com/SMTP.Send"
MS_CLIENT_SCOPE = "https://outlook.office365.com/.default"
GOOGLE_SCOPE = "https://mail.google.com/"

# Passwords by login form: each needs that form (quotes, spaces, braces).
FORM_PASSWORD = {
    "login-atom": PASSWORD,
    "login-quoted": 'correct "horse" \\ battery staple',
    "login-literal": "p\u00e4ss {w}\"\\ \u00f6rd",
    "login-literal-plus": "plus {3+} and \"quotes\"",
    "plain-ir": "plain ir p\u00e4ssword",
    "plain": "plain continued",
    "user-pass": "pop3 pass with spaces",
    "login": "smtp login \u00e9t\u00e9",
    "login-ir": "smtp login with initial user",
}

# ------------------------------------------------------------ expectations
# The line a login gets when a person must authorise (keys.md).
DEVICE_TEXT = ("mailtlsd: to authorise %s visit %s and enter %s, then log in "
               "again")
AUTHORISE_PREFIX = {"imap": b"%s NO [ALERT] ", "pop3": b"-ERR [AUTH] ",
                    "smtp": b"454 4.7.0 "}
# A temporary failure (provider unreachable, timeout, oversized answer).
TEMPORARY_PREFIX = {"imap": b"%s NO [UNAVAILABLE] ", "pop3": b"-ERR [SYS/TEMP] ",
                    "smtp": b"454 4.7.0 "}
# A login refused for good: wrong password, token rejected after a
# refresh (proto.h, proto_filter_login_refuse()).
REFUSED_PREFIX = {"imap": b"%s NO [AUTHENTICATIONFAILED] ",
                  "pop3": b"-ERR [AUTH] ", "smtp": b"535 5.7.8 "}
SUCCESS_PREFIX = {"imap": b"%s OK", "pop3": b"+OK", "smtp": b"235 "}

# Log reasons (case-insensitive regexes).
LOG_TIMEOUT = r"time(d)?[ -]?out"
LOG_UNREACHABLE = r"refused|could ?n[o']?t connect|unreachable|connect\w* " \
                  r"(failed|error)"
LOG_OVERSIZE = r"too (large|big|long)|exceed|size|limit|over \d+ ?[KM]i?B"
LOG_UNTRUSTED = r"certificate|verif|trust|issuer"
LOG_CLOSED = r"empty|closed|reset|no response|connection|receiv"
LOG_SERVER_ERROR = r"\b500\b|temporarily_unavailable|server error"
LOG_WRONG_PASSWORD = r"password"


def prefix(table, protocol, tag):
    p = table[protocol]
    return p % tag if b"%s" in p else p


# ------------------------------------------------------------ the rig

def state_dir(t):
    return os.path.join(t.tmp, "state")


def token_dir(t):
    return os.path.join(state_dir(t), "oauth2")


def token_files(t):
    """{relative path: bytes} of the daemon's token files (temporary
    files of an atomic write left out)."""
    out = {}
    top = token_dir(t)
    for root, _, files in os.walk(top):
        for name in files:
            if name.startswith(".") or "tmp" in name.lower():
                continue
            path = os.path.join(root, name)
            try:
                with open(path, "rb") as f:
                    out[os.path.relpath(path, top)] = f.read()
            except OSError:
                pass
    return out


def write_secret(t, text=CLIENT_SECRET, name="client.secret"):
    path = os.path.join(t.tmp, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    return path


class Rig:
    """A FakeIdP, one OAuthMailServer per protocol, their services with
    oauth2 = fake, and a daemon (plus any extra services, such as a plain
    one)."""

    def __init__(self, t, protocols=("imap",), tls="implicit",
                 provider="generic", flow="device", mechs=MECHS,
                 sasl_ir=True, section=None, service=None, glob=None,
                 idp_cert="idp", extra_services=(), start=True, env=None,
                 secret=None):
        self.t = t
        self.flow = flow
        self.provider = provider
        self.idp = FakeIdP(t.tls_context(cert=idp_cert),
                           port=t.ports.take())
        t.stack.callback(self.idp.stop)
        if secret:
            self.idp.client_secret = secret
        self.servers, self.services = {}, {}
        for p in protocols:
            srv = OAuthMailServer(p, t.tls_context(), self.idp,
                                  implicit=(tls == "implicit"), mechs=mechs,
                                  sasl_ir=sasl_ir)
            t.stack.callback(srv.stop)
            self.servers[p] = srv
            opts = {"tls": tls, "oauth2": SECTION}
            opts.update(service or {})
            self.services[p] = t.service(srv, p, name="mail-" + p, **opts)
        self.redirect_port = t.ports.take() if flow == "browser" else None
        keys = self.section_keys(provider, flow, secret)
        keys.update(section or {})
        self.section = Service("oauth2:" + SECTION, 0,
                               {k: v for k, v in keys.items()
                                if v is not None})
        os.makedirs(state_dir(t), mode=0o700, exist_ok=True)
        self.glob = {"state_dir": state_dir(t)}
        self.glob.update(glob or {})
        self.all_services = list(self.services.values()) + \
            list(extra_services)
        self.env = env
        self.d = None
        self.generation = 0
        if start:
            self.start()

    def section_keys(self, provider, flow, secret):
        idp = self.idp
        # Under valgrind one HTTPS request (libcurl, OpenSSL) takes seconds.
        timeout = 30 if "valgrind" in os.path.basename(self.t.binary) else 5
        keys = {"provider": provider, "client_id": CLIENT_ID, "flow": flow,
                "ca_file": self.t.certs.ca, "http_timeout": timeout,
                "kdf_memory": 8, "kdf_passes": 1}
        keys["token_url"] = idp.url("token")
        if flow == "device":
            keys["device_url"] = idp.url("devicecode")
        if flow == "browser":
            keys["authorize_url"] = idp.url("authorize")
            keys["redirect_listen"] = "127.0.0.1:%d" % self.redirect_port
        if provider == "generic":
            keys["scope"] = GENERIC_SCOPE
        if provider == "microsoft" and flow == "client_credentials":
            keys["tenant"] = "contoso.onmicrosoft.com"
        if secret:
            keys["client_secret_file"] = write_secret(self.t, secret)
        return keys

    def start(self):
        """(Re)start the daemon: a restart is a new process on the same
        configuration and state_dir."""
        if self.d is not None:
            self.stop_daemon()
        self.d = self.t.daemon(*self.all_services, self.section,
                               name="mailtlsd%d" % self.generation,
                               env=self.env, **self.glob)
        self.generation += 1
        return self.d

    def stop_daemon(self):
        rc = self.d.stop(15)
        self.d.stopped_by_test = True
        check(rc == 0, "daemon exited %s on SIGTERM", rc)

    def client(self, protocol="imap"):
        return MailClient(self.t, self.services[protocol], protocol)

    # -- the device flow --
    def expect_device_instructions(self, line, protocol, tag, since=0,
                                   user=USER, why=False):
        """line carries the instructions for the IdP's newest device code;
        returns that code's answer.  why: the instructions may follow the
        reason a new authorisation is needed ("mailtlsd: WHY; to authorise
        ..."), kept in self.why."""
        self.idp.wait_request(
            lambda r: r.endpoint == "devicecode" and r.status == 200,
            timeout=5, since=since, what="device authorisation request")
        req = self.idp.requests_of("devicecode", since=since, status=200)[-1]
        ans = req.answer
        start = prefix(AUTHORISE_PREFIX, protocol, tag) + b"mailtlsd: "
        text = (DEVICE_TEXT % (user, ans["verification_uri"],
                               ans["user_code"])).encode() + b"\r\n"
        want = start + text[len(b"mailtlsd: "):]
        self.why = b""
        if why and line != want:
            tail = b"; " + text[len(b"mailtlsd: "):]
            if line.startswith(start) and line.endswith(tail):
                self.why = line[len(start):-len(tail)]
                want = line if self.why.strip() else want
        check(line == want, "the login got %r, want the instructions %r%s",
              line, want, " (after a reason)" if why else "")
        check(req.form.get("client_id") == CLIENT_ID,
              "device request for client_id %r", req.form.get("client_id"))
        return ans

    def authorise(self, answer, user=USER, timeout=15):
        """Approve a device code as user; return once the daemon has the
        tokens and has stored them."""
        snap = token_files(self.t)
        mark = self.idp.mark()
        self.idp.approve(answer["user_code"], user)
        self.idp.wait_request(
            lambda r: r.grant == DEVICE_GRANT and r.status == 200 and
            r.form.get("device_code") == answer["device_code"],
            timeout=timeout, since=mark,
            what="device code redeemed after approval")
        self.wait_stored(snap, timeout)

    def wait_stored(self, snap, timeout=15):
        wait_until(lambda: token_files(self.t) != snap and
                   token_files(self.t), timeout,
                   "the daemon to store the tokens under %s"
                   % token_dir(self.t))

    def first_login(self, protocol="imap", form=None, password=PASSWORD,
                    user=USER):
        """Log in once, get the device instructions, approve; returns the
        device answer."""
        mark = self.idp.mark()
        m = self.client(protocol)
        line = m.login(form or DEFAULT_FORM[protocol], user, password)
        ans = self.expect_device_instructions(line, protocol, m.tag, mark,
                                              user)
        self.authorise(ans, user)
        return ans

    def logged_in(self, protocol="imap", form=None, password=PASSWORD,
                  user=USER):
        """A client that logged in (and checked that it relays)."""
        m = self.client(protocol)
        line = m.login(form or DEFAULT_FORM[protocol], user, password)
        m.expect_success(line)
        m.after_login()
        return m

    # -- what the servers saw --
    def attempts(self, protocol="imap"):
        return self.servers[protocol].all_attempts()

    def check_no_password_sent(self, *passwords):
        """No server received a password login or a password's bytes."""
        for p, srv in self.servers.items():
            check(not srv.plain_logins(), "%s server got password logins "
                  "%r", p, srv.plain_logins()[:3])
            for rec in srv.wait_conns(0):
                for pw in passwords:
                    for form in password_forms(pw):
                        check(form not in bytes(rec.raw) and
                              form not in bytes(rec.app), "the %s server "
                              "received the password (%r)", p, form)


DEFAULT_FORM = {"imap": "login-atom", "pop3": "user-pass",
                "smtp": "plain-ir"}


def password_forms(password):
    """The ways a password can travel: as is, in SASL PLAIN, base64."""
    pw = password.encode()
    return [pw, base64.b64encode(pw),
            base64.b64encode(b"\0" + USER.encode() + b"\0" + pw)]


def plain_blob(user, password):
    return base64.b64encode(b"\0" + user + b"\0" + password)


def imap_quote(s):
    return b'"' + s.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


class MailClient:
    """The legacy client: a plaintext session to mailtlsd that logs in
    with a password in one of the forms of its protocol."""

    def __init__(self, t, svc, protocol, timeout=20):
        self.c = t.connect(svc, timeout=timeout)
        self.protocol = protocol
        self.n = 0
        self.tag = b"*"
        self.greeting = self.reply()
        self.ehlo_lines = self.ehlo() if protocol == "smtp" else []

    # -- lines --
    def send(self, data):
        self.c.send(data)

    def line(self, timeout=None):
        return self.c.line(timeout)

    def reply(self):
        """One reply: a line; SMTP multi-line replies whole (joined)."""
        line = self.line()
        if self.protocol == "smtp":
            out = line
            while len(line) > 3 and line[3:4] == b"-":
                line = self.line()
                out += line
            return out
        return line

    def next_tag(self):
        self.n += 1
        self.tag = b"a%d" % self.n
        return self.tag

    def tagged(self, tag):
        """IMAP: the tagged response to tag (untagged lines kept)."""
        self.untagged = []
        while True:
            line = self.line()
            if line.startswith(tag + b" "):
                return line
            self.untagged.append(line)

    def continuation(self, start):
        line = self.line()
        check(line.startswith(start), "expected a continuation %r, got %r",
              start, line)
        return line

    def ehlo(self):
        self.send(b"EHLO client.test\r\n")
        reply = self.reply()
        check(reply.startswith(b"250"), "EHLO answered %r", reply)
        return reply.splitlines()

    # -- login --
    def login(self, form, user=USER, password=PASSWORD):
        """Log in with form; returns the final reply line."""
        u, p = user.encode(), password.encode()
        return getattr(self, "_login_" + self.protocol)(form, u, p)

    def _login_imap(self, form, u, p):
        tag = self.next_tag()
        if form == "login-atom":
            self.send(tag + b" LOGIN " + u + b" " + p + b"\r\n")
        elif form == "login-quoted":
            self.send(tag + b" LOGIN " + imap_quote(u) + b" " +
                      imap_quote(p) + b"\r\n")
        elif form == "login-literal":
            self.send(tag + b" LOGIN {%d}\r\n" % len(u))
            self.continuation(b"+")
            self.send(u + b" {%d}\r\n" % len(p))
            self.continuation(b"+")
            self.send(p + b"\r\n")
        elif form == "login-literal-plus":
            self.send(tag + b" LOGIN {%d+}\r\n" % len(u) + u +
                      b" {%d+}\r\n" % len(p) + p + b"\r\n")
        elif form == "plain-ir":
            self.send(tag + b" AUTHENTICATE PLAIN " + plain_blob(u, p) +
                      b"\r\n")
        elif form == "plain":
            self.send(tag + b" AUTHENTICATE PLAIN\r\n")
            self.continuation(b"+")
            self.send(plain_blob(u, p) + b"\r\n")
        else:
            raise ValueError(form)
        return self.tagged(tag)

    def _login_pop3(self, form, u, p):
        if form == "user-pass":
            self.send(b"USER " + u + b"\r\n")
            self.continuation(b"+OK")
            self.send(b"PASS " + p + b"\r\n")
        elif form == "plain-ir":
            self.send(b"AUTH PLAIN " + plain_blob(u, p) + b"\r\n")
        elif form == "plain":
            self.send(b"AUTH PLAIN\r\n")
            self.continuation(b"+ ")
            self.send(plain_blob(u, p) + b"\r\n")
        else:
            raise ValueError(form)
        return self.line()

    def _login_smtp(self, form, u, p):
        b64 = base64.b64encode
        if form == "plain-ir":
            self.send(b"AUTH PLAIN " + plain_blob(u, p) + b"\r\n")
        elif form == "plain":
            self.send(b"AUTH PLAIN\r\n")
            self.continuation(b"334 ")
            self.send(plain_blob(u, p) + b"\r\n")
        elif form == "login":
            self.send(b"AUTH LOGIN\r\n")
            self.continuation(b"334 ")
            self.send(b64(u) + b"\r\n")
            self.continuation(b"334 ")
            self.send(b64(p) + b"\r\n")
        elif form == "login-ir":
            self.send(b"AUTH LOGIN " + b64(u) + b"\r\n")
            self.continuation(b"334 ")
            self.send(b64(p) + b"\r\n")
        else:
            raise ValueError(form)
        return self.reply()

    def expect_success(self, line):
        want = prefix(SUCCESS_PREFIX, self.protocol, self.tag)
        check(line.startswith(want), "login answered %r, want %r...", line,
              want)

    def expect_prefix(self, line, table, what):
        want = prefix(table, self.protocol, self.tag)
        check(line.startswith(want) and line.endswith(b"\r\n") and
              len(line.strip()) > len(want.strip()),
              "%s: the login got %r, want %r...", what, line, want)
        return line[len(want):].rstrip(b"\r\n")

    def after_login(self):
        """A command after login reaches the server and is answered."""
        if self.protocol == "imap":
            tag = self.next_tag()
            self.send(tag + b" SELECT INBOX\r\n")
            line = self.tagged(tag)
            check(line.startswith(tag + b" OK") and
                  b"".join(self.untagged).find(IMAP_SELECTED) >= 0,
                  "SELECT after login: %r %r", self.untagged, line)
        elif self.protocol == "pop3":
            self.send(b"STAT\r\n")
            check(self.line() == POP3_STAT, "STAT after login failed")
        else:
            self.send(b"MAIL FROM:<%s>\r\n" % USER.encode())
            check(self.reply() == SMTP_MAIL_OK, "MAIL after login failed")


def expect_log(d, pattern, since=0, timeout=5, what=None):
    return d.wait_log(pattern, since=since, timeout=timeout, what=what)


# A line about OAuth2 (not a session's TLS or connect lines).
OAUTH2_CONTEXT = r"oauth2|\bfake\b|provider|token|device|authori[sz]"


def expect_oauth2_log(d, pattern, since=0, timeout=5):
    """A log line giving the reason pattern for something OAuth2 did."""
    return d.wait_log(r"(?=.*(%s)).*(%s)" % (OAUTH2_CONTEXT, pattern),
                      since=since, timeout=timeout,
                      what="an OAuth2 line saying /%s/" % pattern)


# ======================================= 2. the device flow, every form

MATRIX = {
    "imap-login-atom": dict(protocol="imap", form="login-atom"),
    "imap-login-quoted": dict(protocol="imap", form="login-quoted",
                              tls="starttls", mechs=("OAUTHBEARER",)),
    "imap-login-literal": dict(protocol="imap", form="login-literal",
                               sasl_ir=False),
    "imap-login-literal-plus": dict(protocol="imap",
                                    form="login-literal-plus",
                                    tls="starttls", same_conn=True),
    "imap-authenticate-plain-ir": dict(protocol="imap", form="plain-ir",
                                       mechs=("OAUTHBEARER",),
                                       sasl_ir=False),
    "imap-authenticate-plain": dict(protocol="imap", form="plain",
                                    tls="starttls"),
    "pop3-user-pass": dict(protocol="pop3", form="user-pass"),
    "pop3-auth-plain-ir": dict(protocol="pop3", form="plain-ir",
                               tls="starttls", mechs=("OAUTHBEARER",)),
    "pop3-auth-plain": dict(protocol="pop3", form="plain", same_conn=True),
    "smtp-auth-plain-ir": dict(protocol="smtp", form="plain-ir",
                               tls="starttls"),
    "smtp-auth-plain": dict(protocol="smtp", form="plain",
                            mechs=("OAUTHBEARER",), same_conn=True),
    "smtp-auth-login": dict(protocol="smtp", form="login"),
    "smtp-auth-login-ir": dict(protocol="smtp", form="login-ir",
                               tls="starttls", mechs=("OAUTHBEARER",)),
}
MATRIX = {k: dict({"tls": "implicit", "mechs": MECHS, "sasl_ir": True,
                   "same_conn": False}, **v) for k, v in MATRIX.items()}
VALGRIND_MATRIX = ("imap-login-literal", "pop3-user-pass",
                   "smtp-auth-login")


def device_flow_login(t, protocol, form, tls="implicit", mechs=MECHS,
                      sasl_ir=True, same_conn=False):
    password = FORM_PASSWORD[form]
    rig = Rig(t, (protocol,), tls=tls, mechs=mechs, sasl_ir=sasl_ir)
    srv = rig.servers[protocol]
    m = rig.client(protocol)
    line = m.login(form, USER, password)
    ans = rig.expect_device_instructions(line, protocol, m.tag)
    check(not srv.all_attempts(), "the server saw a login before there was "
          "a token: %s", srv.all_attempts())
    rig.authorise(ans)
    if not same_conn:
        m = rig.client(protocol)
    line = m.login(form, USER, password)
    m.expect_success(line)
    m.after_login()
    attempts = srv.all_attempts()
    check(len(attempts) == 1 and attempts[0].ok, "server attempts: %s",
          attempts)
    a = attempts[0]
    want_mech = "XOAUTH2" if "XOAUTH2" in mechs else "OAUTHBEARER"
    check(a.mech == want_mech, "logged in with %s, want %s", a.mech,
          want_mech)
    if protocol == "imap":
        check(a.initial == sasl_ir, "initial response %s with SASL-IR %s",
              a.initial, sasl_ir)
    check(a.user == USER, "SASL user %r, want the client's %r", a.user, USER)
    issued = rig.idp.requests_of("token", DEVICE_GRANT, status=200)
    check(a.token == issued[-1].answer["access_token"],
          "the server got a token the IdP did not issue for this login")
    check(srv.conn(len(srv.conns) - 1).logged_in_as == USER,
          "session not logged in as %s", USER)
    rig.check_no_password_sent(password)
    return rig


@case(timeout=60, params={k: v for k, v in MATRIX.items()
                          if k in VALGRIND_MATRIX}, valgrind=True)
def test_device_flow(t, protocol, form, tls, mechs, sasl_ir, same_conn):
    """Instructions, approval, then the same password logs in and relays
    (the valgrind subset of the matrix)."""
    device_flow_login(t, protocol, form, tls, mechs, sasl_ir, same_conn)


@case(timeout=40, params={k: v for k, v in MATRIX.items()
                          if k not in VALGRIND_MATRIX})
def test_device_flow_forms(t, protocol, form, tls, mechs, sasl_ir,
                           same_conn):
    """The rest of the matrix: every login form, both TLS modes, XOAUTH2
    and OAUTHBEARER, SASL-IR or not."""
    device_flow_login(t, protocol, form, tls, mechs, sasl_ir, same_conn)


@case(timeout=60, valgrind=True)
def test_device_flow_pending_login_again(t):
    """Logging in again before the approval: the same instructions, no
    second device code; the daemon polls no faster than the interval."""
    rig = Rig(t)
    m = rig.client()
    ans = rig.expect_device_instructions(m.login("login-atom"), "imap",
                                         m.tag)
    first = rig.idp.wait_request(lambda r: r.grant == DEVICE_GRANT,
                                 timeout=10, what="a first poll")
    m2 = rig.client()
    line = m2.login("login-atom")
    again = rig.expect_device_instructions(line, "imap", m2.tag)
    check(again["user_code"] == ans["user_code"], "a new code %s while %s "
          "waits", again["user_code"], ans["user_code"])
    check(len(rig.idp.requests_of("devicecode")) == 1,
          "%d device authorisation requests for one account",
          len(rig.idp.requests_of("devicecode")))
    rig.idp.wait_request(lambda r: r.grant == DEVICE_GRANT and
                         r.n > first.n, timeout=10, what="a second poll")
    polls = [r.at for r in rig.idp.requests_of("token", DEVICE_GRANT)]
    gaps = [b - a for a, b in zip(polls, polls[1:])]
    check(min(gaps) >= 0.9, "polls %s apart, interval is 1s", gaps)
    rig.authorise(ans)
    rig.logged_in()


@case(timeout=40, params={"denied": {"outcome": "denied"},
                          "expired": {"outcome": "expired"}})
def test_device_flow_not_approved(t, outcome):
    """A denied or expired device code ends that flow: the login does not
    succeed, and a later login gets a new code."""
    rig = Rig(t)
    m = rig.client()
    ans = rig.expect_device_instructions(m.login("login-atom"), "imap",
                                         m.tag)
    mark = rig.idp.mark()
    if outcome == "denied":
        rig.idp.deny(ans["user_code"])
    else:
        rig.idp.expire_device(ans["user_code"])
    rig.idp.wait_request(lambda r: r.note == outcome, timeout=10,
                         since=mark, what="the %s poll" % outcome)
    expect_log(rig.d, r"denied|declined" if outcome == "denied"
               else r"expired", since=0, timeout=5)
    dmark = rig.idp.mark()
    lines = []
    for _ in range(2):
        m = rig.client()
        line = m.login("login-atom")
        lines.append(line)
        check(not line.startswith(m.tag + b" OK"), "login succeeded after "
              "the code was %s", outcome)
        if rig.idp.requests_of("devicecode", since=dmark, status=200):
            new = rig.expect_device_instructions(line, "imap", m.tag, dmark,
                                                 why=True)
            check(new["user_code"] != ans["user_code"], "the %s code was "
                  "offered again", outcome)
            break
    else:
        raise AssertionError("no new device code within two logins after "
                             "the code was %s: %r" % (outcome, lines))
    rig.authorise(new)
    rig.logged_in()


@case(timeout=40)
def test_device_flow_slow_down(t):
    """slow_down adds 5 seconds to the polling interval (RFC 8628 3.5)."""
    rig = Rig(t)
    rig.idp.slow_down_next()
    m = rig.client()
    rig.expect_device_instructions(m.login("login-atom"), "imap", m.tag)
    first = rig.idp.wait_request(lambda r: r.grant == DEVICE_GRANT,
                                 timeout=10, what="the first poll")
    check(first.answer == {"error": "slow_down"}, "first poll got %s",
          first.answer)
    second = rig.idp.wait_request(lambda r: r.grant == DEVICE_GRANT and
                                  r.n > first.n, timeout=15,
                                  what="the poll after slow_down")
    gap = second.at - first.answered
    check(gap >= 5.5, "polled again %.1fs after slow_down (interval 1 + 5)",
          gap)


# ============================================ 3. browser, client credentials

class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def browser(t, follow=True):
    """An opener like a browser: trusts the test CA, follows redirects."""
    ctx = ssl.create_default_context(cafile=t.certs.ca)
    handlers = [urllib.request.HTTPSHandler(context=ctx)]
    if not follow:
        handlers.append(NoRedirect)
    return urllib.request.build_opener(*handlers)


def browser_get(opener, url, timeout=10):
    """(status, final URL, body) of a GET; HTTP errors are answers too."""
    try:
        with opener.open(url, timeout=timeout) as r:
            return r.status, r.geturl(), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Location") or url, e.read()


def browser_rig(t, **kw):
    rig = Rig(t, provider="google", flow="browser", secret=CLIENT_SECRET,
              **kw)
    rig.idp.authorize_user = USER
    return rig


def expect_browser_instructions(rig, m, line):
    """The login line tells the user what to open: the provider's
    authorisation URL, or a link on the redirect listener that leads
    there.  Returns (what to open, the authorisation URL, its query)."""
    m.expect_prefix(line, AUTHORISE_PREFIX, "browser instructions")
    start = prefix(AUTHORISE_PREFIX, m.protocol, m.tag) + b"mailtlsd: "
    to = b"to authorise " + USER.encode() + b" "
    check(line.startswith(start) and (line[len(start):].startswith(to) or
                                      b"; " + to in line) and
          line.endswith(b", then log in again\r\n"),
          "not the instructions for %s: %r", USER, line)
    urls = re.findall(rb"https?://[^\s,()]+", line)
    check(urls, "no URL to open in %r", line)
    url = urls[0].decode()
    authorize = url
    if not url.startswith(rig.idp.url("authorize") + "?"):
        check(urllib.parse.urlsplit(url).netloc ==
              "127.0.0.1:%d" % rig.redirect_port, "the URL %s is neither "
              "the authorize_url nor on redirect_listen", url)
        status, authorize, _ = browser_get(browser(rig.t, follow=False), url)
        check(status in (301, 302, 303, 307), "the link answered %s",
              status)
    split = urllib.parse.urlsplit(authorize)
    check("%s://%s%s" % (split.scheme, split.netloc, split.path) ==
          rig.idp.url("authorize"), "URL %s does not lead to the "
          "authorize_url", authorize)
    q = {k: v[-1] for k, v in urllib.parse.parse_qs(split.query).items()}
    redirect = urllib.parse.urlsplit(q.get("redirect_uri", ""))
    check(q.get("response_type") == "code" and
          q.get("client_id") == CLIENT_ID and
          q.get("code_challenge_method") == "S256" and
          len(q.get("code_challenge", "")) == 43 and q.get("state") and
          redirect.scheme == "http" and
          redirect.port == rig.redirect_port and
          redirect.hostname in ("127.0.0.1", "localhost"),
          "authorisation URL lacks what it needs: %s", q)
    check(q.get("scope") == GOOGLE_SCOPE, "scope %r, want %r",
          q.get("scope"), GOOGLE_SCOPE)
    check(q.get("access_type") == "offline", "Google gives a refresh token "
          "only with access_type=offline: %s", q)
    return url, authorize, q


def browser_authorise(rig, m, line):
    """Open what the login line says, as the user's browser would, and
    wait until the daemon has stored the tokens."""
    url, _, q = expect_browser_instructions(rig, m, line)
    snap = token_files(rig.t)
    status, final, _ = browser_get(browser(rig.t), url)
    check(200 <= status < 300, "the redirect listener answered %s", status)
    check(final.startswith(q["redirect_uri"].split("?")[0]),
          "browser ended at %s", final)
    ex = rig.idp.wait_grant("authorization_code", timeout=10)
    rig.wait_stored(snap)
    return q, ex


@case(timeout=60, valgrind=True)
def test_browser_flow(t):
    """Authorization code with PKCE: the URL in the login line, the
    redirect to the loopback listener (open only while a flow waits), the
    code exchanged with its verifier and the client secret."""
    rig = browser_rig(t)
    check(connect_refused(rig.redirect_port), "redirect_listen open before "
          "any flow")
    m = rig.client()
    line = m.login("login-atom")
    check(not connect_refused(rig.redirect_port), "redirect_listen not "
          "open while the flow waits")
    q, ex = browser_authorise(rig, m, line)
    check(s256(ex.form.get("code_verifier", "")) == q["code_challenge"],
          "PKCE verifier does not match the challenge")
    check(ex.form.get("redirect_uri") == q["redirect_uri"],
          "redirect_uri %r at the exchange, %r at authorize",
          ex.form.get("redirect_uri"), q["redirect_uri"])
    check(ex.client_secret == CLIENT_SECRET, "client secret %r sent, want "
          "the configured one", ex.client_secret)
    wait_until(lambda: connect_refused(rig.redirect_port), 10,
               "redirect_listen to close once no flow waits")
    rig.logged_in()
    a = rig.attempts()[-1]
    check(a.ok and a.user == USER and
          a.token == ex.answer["access_token"], "server attempt %s", a)
    rig.check_no_password_sent(PASSWORD)


@case(timeout=40)
def test_browser_state_mismatch(t):
    """A redirect with another state is refused and its code never
    exchanged; the genuine redirect still completes the flow."""
    rig = browser_rig(t)
    m = rig.client()
    _, authorize, q = expect_browser_instructions(rig, m,
                                                  m.login("login-atom"))
    status, location, _ = browser_get(browser(t, follow=False), authorize)
    check(status == 302, "authorize answered %s", status)
    forged = location.replace("state=" + urllib.parse.quote(q["state"]),
                              "state=forged-state")
    check(forged != location, "no state in %s", location)
    code = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)[
        "code"][0]
    fstatus, _, _ = browser_get(browser(t), forged)
    check(fstatus >= 400, "forged state answered %s", fstatus)
    m2 = rig.client()
    line = m2.login("login-atom")
    m2.expect_prefix(line, AUTHORISE_PREFIX, "login after a forged state")
    check(not any(r.form.get("code") == code
                  for r in rig.idp.requests_of("token")),
          "the code of a forged-state redirect was exchanged")
    snap = token_files(t)
    status, _, _ = browser_get(browser(t), location)
    check(200 <= status < 300, "the genuine redirect answered %s", status)
    rig.idp.wait_grant("authorization_code", timeout=10)
    rig.wait_stored(snap)
    rig.logged_in()


@case(timeout=60, valgrind=True)
def test_client_credentials(t):
    """No interaction: the first login seals its password for the user;
    another password is refused, the same one works; each user has its
    own."""
    rig = Rig(t, provider="microsoft", flow="client_credentials",
              secret=CLIENT_SECRET)
    m = rig.logged_in()
    reqs = rig.idp.requests_of("token")
    check(len(reqs) == 1 and reqs[0].grant == "client_credentials",
          "token requests: %s", rig.idp.summary())
    check(reqs[0].client_secret == CLIENT_SECRET, "client secret %r",
          reqs[0].client_secret)
    check(reqs[0].form.get("scope") == MS_CLIENT_SCOPE, "scope %r, want %r",
          reqs[0].form.get("scope"), MS_CLIENT_SCOPE)
    check(not rig.idp.requests_of("devicecode"), "a device code was asked")
    check(rig.attempts()[0].user == USER, "SASL user %r",
          rig.attempts()[0].user)
    files = token_files(t)
    check(files, "nothing stored for the sealed account")
    n = len(rig.attempts())
    mark = rig.idp.mark()
    m = rig.client()
    m.expect_prefix(m.login("login-atom", USER, OTHER_PASSWORD),
                    REFUSED_PREFIX, "another password")
    check(len(rig.attempts()) == n, "the server saw a login for a wrong "
          "password")
    check(token_files(t) == files, "a wrong password changed the files")
    rig.logged_in()
    rig.logged_in(user="bob@example.com", password=OTHER_PASSWORD)
    check(rig.attempts()[-1].user == "bob@example.com", "bob's SASL user")
    check(not rig.idp.requests_of("devicecode", since=mark),
          "a device code was asked")
    rig.check_no_password_sent(PASSWORD, OTHER_PASSWORD)


@case(timeout=40)
def test_user_names_stay_in_state_dir(t):
    """User names that look like paths are accounts like any other: each
    one's file lies in the section's directory, two names never share one,
    and nothing is written outside state_dir/oauth2."""
    rig = Rig(t, provider="microsoft", flow="client_credentials",
              secret=CLIENT_SECRET)
    users = {"../../escape": "pw-1", "a/b": "pw-2", "a%2Fb": "pw-3",
             ".hidden": "pw-4", "..": "pw-5"}
    before = set(os.listdir(t.tmp))
    for user, password in users.items():
        rig.logged_in(form="login-quoted", user=user, password=password)
        check(rig.attempts()[-1].user == user, "SASL user %r for %r",
              rig.attempts()[-1].user, user)
    files = token_files(t)
    check(len(files) == len(users), "%d token files for %d users: %s",
          len(files), len(users), sorted(files))
    for path in files:
        parts = path.split(os.sep)
        check(len(parts) == 2 and not parts[1].startswith(".") and
              parts[1] not in ("..", "."), "token file %r", path)
    check(set(os.listdir(t.tmp)) - before <= {"state"} | {
        n for n in os.listdir(t.tmp) if n.endswith((".log", ".conf"))},
        "new files beside state_dir: %s", set(os.listdir(t.tmp)) - before)
    for root, _, names in os.walk(os.path.dirname(t.tmp)):
        check("escape" not in names, "a file named escape in %s", root)
    names = list(users)
    for i, user in enumerate(names):
        other = users[names[(i + 1) % len(names)]]
        m = rig.client()
        m.expect_prefix(m.login("login-quoted", user, other),
                        REFUSED_PREFIX, "%r with another user's password"
                        % user)


# ================================================= 4. tokens over time

@case(timeout=40)
def test_refresh_before_use(t):
    """An access token past its lifetime is refreshed before the login
    uses it: the server sees only the new token."""
    rig = Rig(t)
    rig.idp.expires_in = 1
    rig.first_login()
    rig.logged_in()
    time.sleep(1.5)                     # the token's lifetime runs out
    rig.idp.expire_access()
    rig.idp.expires_in = 3600
    mark = rig.idp.mark()
    srv = rig.servers["imap"]
    n = len(srv.all_attempts())
    rig.logged_in()
    refreshes = rig.idp.refreshes(mark)
    check(len(refreshes) == 1 and refreshes[0].status == 200,
          "refreshes: %s", rig.idp.summary(mark))
    new = srv.all_attempts()[n:]
    check(len(new) == 1 and new[0].ok and
          new[0].token == refreshes[0].answer["access_token"],
          "the server saw %s: not just the refreshed token", new)


@case(timeout=60)
def test_refresh_rotation_kept(t):
    """Rotated refresh tokens are saved: each refresh presents the newest,
    also after a restart (the old ones are revoked by the provider)."""
    rig = Rig(t)
    rig.idp.expires_in = 1
    rig.idp.rotate = True
    rig.first_login()
    rig.logged_in()
    for restart in (False, False, True):
        if restart:
            rig.start()
        newest = list(rig.idp.refresh)[-1]
        files = token_files(t)
        time.sleep(1.2)                 # the access token expires
        mark = rig.idp.mark()
        rig.logged_in()
        refreshes = rig.idp.refreshes(mark)
        check(refreshes, "no refresh of an expired token (restart %s)",
              restart)
        check(refreshes[0].form.get("refresh_token") == newest,
              "refresh presented an old refresh token (restart %s)",
              restart)
        check(refreshes[-1].status == 200, "refresh failed: %s",
              rig.idp.summary(mark))
        wait_until(lambda: token_files(t) != files, 10,
                   "the rotated refresh token to be saved")


@case(timeout=60, params={"imap": {"protocol": "imap", "mechs": MECHS},
                          "pop3": {"protocol": "pop3",
                                   "mechs": ("OAUTHBEARER",)},
                          "smtp": {"protocol": "smtp", "mechs": MECHS}},
      valgrind=True)
def test_server_rejects_token_once(t, protocol, mechs):
    """A token the server rejects: one refresh, one retry in the same
    login; the error challenge answered as the mechanism wants."""
    rig = Rig(t, (protocol,), mechs=mechs)
    rig.first_login(protocol)
    rig.logged_in(protocol)
    srv = rig.servers[protocol]
    n = len(srv.all_attempts())
    rig.idp.expire_access()
    mark = rig.idp.mark()
    m = rig.client(protocol)
    m.expect_success(m.login(DEFAULT_FORM[protocol]))
    new = srv.all_attempts()[n:]
    check(len(new) == 2 and not new[0].ok and new[1].ok,
          "server attempts %s, want a rejection then a success", new)
    check(new[0].conn == new[1].conn, "the retry used another connection")
    check(new[0].error_answer == ERROR_ANSWER[new[0].mech],
          "error challenge answered %r for %s", new[0].error_answer,
          new[0].mech)
    refreshes = rig.idp.refreshes(mark)
    check(len(refreshes) == 1, "%d refreshes for one rejection",
          len(refreshes))
    check(new[1].token == refreshes[0].answer["access_token"],
          "retried with a token that is not the refreshed one")
    m.after_login()


@case(timeout=40, params=PER_PROTOCOL)
def test_server_rejects_token_twice(t, protocol):
    """A server that keeps rejecting: the client gets a readable failure
    after one refresh and two attempts; the tokens stay."""
    rig = Rig(t, (protocol,))
    rig.first_login(protocol)
    srv = rig.servers[protocol]
    srv.reject = -1
    mark, dmark = rig.idp.mark(), rig.d.mark()
    m = rig.client(protocol)
    line = m.login(DEFAULT_FORM[protocol])
    table = REFUSED_PREFIX
    if protocol == "imap" and line.startswith(m.tag + b" NO [ALERT] "):
        table = AUTHORISE_PREFIX        # shown to the user: readable too
    text = m.expect_prefix(line, table, "token rejected twice")
    check(b"eyJ" not in line and b"+ " not in line[:2], "the client got "
          "the server's challenge: %r", line)
    check(len(srv.all_attempts()) == 2, "server attempts %s, want 2",
          srv.all_attempts())
    check(len(rig.idp.refreshes(mark)) <= 1, "%d refreshes",
          len(rig.idp.refreshes(mark)))
    check(text, "no words in %r", line)
    check(rig.d.find_log(r"reject|refus|fail", dmark), "no log reason")
    srv.reject = 0
    rig.logged_in(protocol)


def expect_new_authorisation(rig, protocol="imap", since=0):
    """After the grant went bad: the login gets new instructions, or a
    refusal saying so and then the instructions at the next login.
    Returns (the lines, the new device answer)."""
    lines = []
    for _ in range(2):
        m = rig.client(protocol)
        line = m.login(DEFAULT_FORM[protocol])
        lines.append(line)
        check(not line.startswith(prefix(SUCCESS_PREFIX, protocol, m.tag)),
              "login succeeded with a bad grant: %r", line)
        if rig.idp.requests_of("devicecode", since=since, status=200):
            return lines, rig.expect_device_instructions(line, protocol,
                                                         m.tag, since,
                                                         why=True)
    raise AssertionError("no new instructions within two logins: %r"
                         % lines)


@case(timeout=40)
def test_revoked_refresh_token(t):
    """invalid_grant at refresh: the account is authorised anew."""
    rig = Rig(t)
    rig.first_login()
    rig.idp.expire_access()
    rig.idp.revoke_refresh()
    mark, dmark = rig.idp.mark(), rig.d.mark()
    lines, ans = expect_new_authorisation(rig, since=mark)
    check(rig.idp.refreshes(mark)[0].status == 400, "the refresh was not "
          "refused: %s", rig.idp.summary(mark))
    check(rig.d.find_log(r"invalid_grant|revoked|expired", dmark),
          "the log does not say the grant went bad")
    check(re.search(rb"revoked|expired|refused|invalid_grant",
                    b"".join(lines), re.I), "the client was not told why it "
          "must authorise again: %r", lines)
    rig.authorise(ans)
    rig.logged_in()


# The provider's errors in words: (where, error, the words the client line
# and the log must hold).
PROVIDER_ERRORS = {
    "aadsts70043": ("refresh", AADSTS70043, r"expired|sign.?in|authoris"),
    "aadsts700082": ("refresh", AADSTS700082, r"expired|inactiv|authoris"),
    "aadsts65001": ("refresh", AADSTS65001, r"consent"),
    "aadsts50076": ("refresh", AADSTS50076, r"\bMFA\b|multi-?factor"),
    "aadsts700016": ("device", AADSTS700016,
                     r"client_id|app(lication)? registration|not found"),
}


@case(timeout=40, params={k: {"name": k} for k in PROVIDER_ERRORS})
def test_provider_error_in_words(t, name):
    """Microsoft's AADSTS errors: the client line and the log say what to
    do; nothing is retried in a loop; the daemon stays up."""
    where, (error, description), words = PROVIDER_ERRORS[name]
    rig = Rig(t, provider="microsoft")
    if where == "refresh":
        rig.first_login()
        rig.idp.expire_access()
        rig.idp.fail_next("token", error, description, grant="refresh_token")
    else:
        rig.idp.fail_next("devicecode", error, description)
    mark, dmark = rig.idp.mark(), rig.d.mark()
    m = rig.client()
    line = m.login("login-atom")
    check(line.startswith(m.tag + b" NO "), "login answered %r", line)
    if rig.idp.requests_of("devicecode", since=mark, status=200):
        rig.expect_device_instructions(line, "imap", m.tag, mark, why=True)
    check(re.search(words.encode(), line, re.I), "the client line %r "
          "does not say /%s/", line, words)
    expect_log(rig.d, words, since=dmark)
    expect_log(rig.d, description.split(":")[0], since=dmark)
    check(len(rig.idp.requests_of("token", "refresh_token", mark)) <= 1,
          "refreshed again and again: %s", rig.idp.summary(mark))


@case(timeout=40)
def test_google_revoked(t):
    """Google's invalid_grant (revoked, or the 7-day limit of an app in
    Testing): a new browser authorisation."""
    rig = browser_rig(t)
    m = rig.client()
    browser_authorise(rig, m, m.login("login-atom"))
    rig.logged_in()
    rig.idp.expire_access()
    rig.idp.fail_next("token", *GOOGLE_REVOKED, grant="refresh_token")
    dmark = rig.d.mark()
    lines = []
    for _ in range(2):
        m = rig.client()
        line = m.login("login-atom")
        lines.append(line)
        if b"to authorise " in line:
            expect_browser_instructions(rig, m, line)
            break
    else:
        raise AssertionError("no new authorisation URL: %r" % lines)
    check(re.search(rb"revoked|expired|invalid_grant", b"".join(lines),
                    re.I), "the client was not told why: %r", lines)
    expect_log(rig.d, r"expired or revoked|invalid_grant", since=dmark)
    expect_log(rig.d, r"Testing|7 days", since=dmark)


@case(timeout=40, params={"5.7.139": {"reply": MS_SMTP_AUTH_DISABLED,
                                      "words": r"SMTP AUTH|"
                                               r"SmtpClientAuthentication"},
                          "5.7.30": {"reply": MS_SMTP_BASIC_AUTH,
                                     "words": r"5\.7\.30|basic auth|"
                                              r"SMTP AUTH"}})
def test_microsoft_smtp_refusal(t, reply, words):
    """Microsoft 365 refusing SMTP AUTH: the client and the log are told
    what to change, not just "authentication failed"."""
    rig = Rig(t, ("smtp",), provider="microsoft")
    rig.first_login("smtp")
    srv = rig.servers["smtp"]
    srv.smtp_failure = reply
    mark, dmark = rig.idp.mark(), rig.d.mark()
    m = rig.client("smtp")
    line = m.login(DEFAULT_FORM["smtp"])
    check(line[:1] in (b"4", b"5") and
          re.search(words.encode(), line, re.I),
          "client line %r does not say /%s/", line, words)
    expect_log(rig.d, words, since=dmark)
    check(len(srv.all_attempts()) <= 2, "server attempts: %s",
          srv.all_attempts())
    check(len(rig.idp.refreshes(mark)) <= 1, "%d refreshes",
          len(rig.idp.refreshes(mark)))


@case(timeout=60, valgrind=True)
def test_wrong_password_keeps_tokens(t):
    """A wrong password fails that login only: the token file's bytes are
    unchanged, nothing is asked of the provider or the server, the right
    password works; the same after a restart (no unlocked key cached)."""
    rig = Rig(t)
    rig.first_login()
    rig.logged_in()
    files = token_files(t)
    for restart in (False, True):
        if restart:
            rig.start()
        mark, dmark = rig.idp.mark(), rig.d.mark()
        n = len(rig.attempts())
        m = rig.client()
        m.expect_prefix(m.login("login-atom", USER, OTHER_PASSWORD),
                        REFUSED_PREFIX, "wrong password")
        check(token_files(t) == files, "a wrong password changed the "
              "token files")
        check(len(rig.attempts()) == n, "the server saw a login")
        check(not rig.idp.requests_of(since=mark), "the provider was "
              "asked: %s", rig.idp.summary(mark))
        expect_log(rig.d, LOG_WRONG_PASSWORD, since=dmark)
        rig.logged_in()
        check(token_files(t) and set(token_files(t)) == set(files),
              "token files %s, were %s", list(token_files(t)), list(files))
    rig.check_no_password_sent(PASSWORD, OTHER_PASSWORD)


@case(timeout=40)
def test_shared_section(t):
    """Two services naming one section: one authorisation serves both,
    and it asked for both services' scopes (and not the third's)."""
    rig = Rig(t, ("imap", "smtp"), provider="microsoft")
    rig.first_login("imap")
    rig.logged_in("imap")
    rig.logged_in("smtp")
    reqs = rig.idp.requests_of("devicecode")
    check(len(reqs) == 1, "%d device authorisations for one account",
          len(reqs))
    scope = set(reqs[0].form.get("scope", "").split())
    check({MS_IMAP, MS_SMTP, "offline_access"} <= scope and
          MS_POP not in scope, "scope %s, want IMAP, SMTP and "
          "offline_access only", sorted(scope))
    check(rig.attempts("smtp")[-1].ok and
          rig.attempts("smtp")[-1].user == USER, "SMTP login %s",
          rig.attempts("smtp"))


# ================================ 5. the provider failing; the KDF

IDP_FAILURES = {
    "unreachable-imap": {"protocol": "imap", "kind": "unreachable"},
    "timeout-pop3": {"protocol": "pop3", "kind": "timeout"},
    "oversize-smtp": {"protocol": "smtp", "kind": "oversize"},
    "untrusted-imap": {"protocol": "imap", "kind": "untrusted"},
    "closed-pop3": {"protocol": "pop3", "kind": "closed"},
    "server-error-smtp": {"protocol": "smtp", "kind": "server-error"},
}
FAILURE_LOG = {"unreachable": LOG_UNREACHABLE, "timeout": LOG_TIMEOUT,
               "oversize": LOG_OVERSIZE, "untrusted": LOG_UNTRUSTED,
               "closed": LOG_CLOSED, "server-error": LOG_SERVER_ERROR}


@case(timeout=40, params=IDP_FAILURES)
def test_provider_failure_is_temporary(t, protocol, kind):
    """The provider unreachable, too slow, oversized, untrusted, silent or
    failing: a temporary failure line and a log reason; the daemon stays
    up, and once the provider is back a login goes on."""
    section = {"http_timeout": 1}
    if kind == "unreachable":
        closed = t.ports.take()
        section.update(device_url="https://127.0.0.1:%d/devicecode" % closed,
                       token_url="https://127.0.0.1:%d/token" % closed)
    rig = Rig(t, (protocol,), section=section,
              idp_cert="unknown_ca" if kind == "untrusted" else "idp")
    if kind == "timeout":
        rig.idp.hold_next("devicecode")
    elif kind == "oversize":
        rig.idp.oversize_next("devicecode")
    elif kind == "closed":
        rig.idp.close_next("devicecode")
    elif kind == "server-error":
        rig.idp.fail_next("devicecode", "temporarily_unavailable",
                          status=500)
    dmark = rig.d.mark()
    m = rig.client(protocol)
    line = m.login(DEFAULT_FORM[protocol])
    m.expect_prefix(line, TEMPORARY_PREFIX, "provider %s" % kind)
    check(b"[ALERT]" not in line and b"then log in again" not in line,
          "instructions without a device code: %r", line)
    expect_oauth2_log(rig.d, FAILURE_LOG[kind], since=dmark)
    check(rig.d.alive(), "the daemon died")
    rig.check_no_password_sent(FORM_PASSWORD[DEFAULT_FORM[protocol]],
                               PASSWORD)
    if kind in ("unreachable", "untrusted"):
        return
    mark = rig.idp.mark()
    m = rig.client(protocol)
    rig.expect_device_instructions(m.login(DEFAULT_FORM[protocol]), protocol,
                                   m.tag, mark)


@case(timeout=40)
def test_refresh_timeout_keeps_tokens(t):
    """A refresh that times out: a temporary failure, the stored tokens
    unchanged, and the next login refreshes and works."""
    rig = Rig(t, ("smtp",), section={"http_timeout": 1})
    rig.first_login("smtp")
    files = token_files(t)
    rig.idp.expire_access()
    rig.idp.hold_next("token", grant="refresh_token")
    dmark = rig.d.mark()
    m = rig.client("smtp")
    m.expect_prefix(m.login(DEFAULT_FORM["smtp"]), TEMPORARY_PREFIX,
                    "refresh timed out")
    expect_log(rig.d, LOG_TIMEOUT, since=dmark)
    check(token_files(t) == files, "the tokens changed after a failed "
          "refresh")
    rig.logged_in("smtp")


@case(timeout=40)
def test_state_dir_made_at_start(t):
    """A state_dir that does not exist yet is made (0700) when a section
    needs it, and the first login stores its tokens there."""
    fresh = os.path.join(t.tmp, "fresh-state")
    rig = Rig(t, provider="microsoft", flow="client_credentials",
              secret=CLIENT_SECRET, glob={"state_dir": fresh})
    expect_log(rig.d, r"created state_dir " + re.escape(fresh))
    mode = os.stat(fresh).st_mode & 0o777
    check(mode == 0o700, "state_dir made with mode %04o", mode)
    rig.logged_in()
    wait_until(lambda: os.path.isdir(os.path.join(fresh, "oauth2")) and
               os.listdir(os.path.join(fresh, "oauth2")), 10,
               "the token file under the new state_dir")


@case(timeout=40)
def test_client_gone_during_login(t):
    """A client that ends its session while its login waits for the
    provider: mailtlsd ends the session, and no token reaches the server
    for nobody once the provider answers."""
    rig = Rig(t, provider="microsoft", flow="client_credentials",
              secret=CLIENT_SECRET)
    rig.start()
    srv = rig.servers["imap"]
    release = rig.idp.hold_next("token", grant="client_credentials")
    dmark = rig.d.mark()
    m = rig.client()
    m.send(m.next_tag() + b" LOGIN " + USER.encode() + b" " +
           PASSWORD.encode() + b"\r\n")
    wait_until(lambda: rig.idp.requests_of("token", "client_credentials"),
               10, "the login's request to the provider")
    m.c.half_close()
    expect_log(rig.d, r"client ended the session during its login",
               since=dmark)
    check(m.c.read_to_eof(timeout=5) == b"", "the client got an answer "
          "to a login it no longer waited for")
    release.set()
    expect_log(rig.d, r"new access token|access token for", since=dmark,
               timeout=10)
    check(not srv.all_attempts(), "a token reached the server after the "
          "client had gone: %r" % srv.all_attempts())


@case(timeout=90, heavy=True)
def test_kdf_does_not_block_sessions(t):
    """While a login derives its key (Argon2id, 256 MiB here), a plain
    service's session completes a round trip: the derivation runs off the
    event loop.  Ordering by events: the derivation's memory is in use,
    the round trip completes, and only then does the login reach the
    server."""
    plain_srv = t.server("echo")
    plain = t.service(plain_srv, name="plain")
    rig = Rig(t, provider="microsoft", flow="client_credentials",
              secret=CLIENT_SECRET, extra_services=(plain,),
              section={"kdf_memory": 256, "kdf_passes": 6},
              env=quarantine_env())
    rig.logged_in()                     # seals the account: 256 MiB
    rig.start()                         # no key cached any more
    srv = rig.servers["imap"]
    n = len(srv.all_attempts())
    p = t.connect(plain)
    p.expect_line(GREETING["imap"])
    noop(p, "imap", b"before")
    base = rig.d.rss_kib()
    m = rig.client()
    m.send(m.next_tag() + b" LOGIN " + USER.encode() + b" " +
           PASSWORD.encode() + b"\r\n")
    wait_until(lambda: rig.d.rss_kib() > base + 128 * 1024, 20,
               "the key derivation to take its memory")
    noop(p, "imap", b"during-the-kdf")
    check(len(srv.all_attempts()) == n, "the login reached the server "
          "before the other session's round trip completed")
    check(m.c.is_open() and not m.c.buf, "the login was answered before "
          "the other session's round trip completed")
    m.expect_success(m.tagged(m.tag))


# =================================================== 6. secrets, caps

def sasl_blobs(attempts):
    """The base64 SASL messages that carried the tokens."""
    out = []
    for a in attempts:
        if a.token:
            out.append(base64.b64encode(
                b"user=%s\x01auth=Bearer %s\x01\x01"
                % (a.user.encode(), a.token.encode())))
    return out


@case(timeout=60, params={"device": {"flow": "device"},
                          "browser": {"flow": "browser"}}, valgrind=True)
def test_no_secret_in_debug_log(t, flow):
    """log_level = debug: the log holds none of the password, the access
    and refresh tokens, the device code, the authorization code, the PKCE
    verifier, the client secret; the token file holds none in the clear."""
    if flow == "device":
        rig = Rig(t, secret=CLIENT_SECRET)
        rig.first_login()
    else:
        rig = browser_rig(t)
        m = rig.client()
        browser_authorise(rig, m, m.login("login-atom"))
    check(rig.glob.get("log_level", "debug") == "debug", "not at debug")
    rig.idp.rotate = True
    rig.logged_in()
    rig.idp.expire_access()
    rig.logged_in()                     # a refresh and a retry
    m = rig.client()
    m.login("login-atom", USER, OTHER_PASSWORD)
    secrets = {"password": PASSWORD, "wrong password": OTHER_PASSWORD,
               "client secret": CLIENT_SECRET}
    for i, tok in enumerate(rig.idp.issued()):
        secrets["issued #%d %s" % (i, tok[:3])] = tok
    for r in rig.idp.requests_of("token", "authorization_code"):
        secrets["PKCE verifier"] = r.form.get("code_verifier")
    for i, blob in enumerate(sasl_blobs(rig.attempts())):
        secrets["SASL message #%d" % i] = blob.decode()
    for i, form in enumerate(password_forms(PASSWORD)[1:]):
        secrets["password form #%d" % i] = form.decode()
    log = "\n".join(rig.d.log())
    check(len(log.splitlines()) > 10, "hardly any log")
    leaked = [name for name, s in secrets.items() if s and s in log]
    check(not leaked, "the debug log holds: %s", ", ".join(leaked))
    stored = b"".join(token_files(t).values())
    in_file = [name for name, s in secrets.items()
               if s and s.encode() in stored]
    check(not in_file, "the token file holds in the clear: %s",
          ", ".join(in_file))


def expect_plain_mechanisms(protocol, text):
    """What the client is offered: plain mechanisms, no OAuth2 ones."""
    check(b"XOAUTH2" not in text.upper() and
          b"OAUTHBEARER" not in text.upper(), "OAuth2 mechanisms shown to "
          "the client: %r", text)
    if protocol == "imap":
        check(b"AUTH=PLAIN" in text.upper(), "no AUTH=PLAIN in %r", text)
    elif protocol == "pop3":
        lines = [l.strip().upper() for l in text.splitlines()]
        check(any(l.startswith(b"SASL") and b"PLAIN" in l.split()
                  for l in lines) and b"USER" in lines,
              "no SASL PLAIN and USER in %r", text)
    else:
        auth = [l for l in text.upper().splitlines()
                if l[4:].startswith(b"AUTH ")]
        check(auth and b"PLAIN" in auth[0].split() and
              b"LOGIN" in auth[0].split(), "no AUTH PLAIN LOGIN in %r", text)


@case(timeout=40, valgrind=True, params={
    "%s-%s" % (p, tls): {"protocol": p, "tls": tls}
    for p in PROTOCOLS for tls in ("implicit", "starttls")})
def test_capabilities_offer_plain(t, protocol, tls):
    """Before login the client sees AUTH=PLAIN / SASL PLAIN and USER /
    AUTH PLAIN LOGIN, never XOAUTH2 or OAUTHBEARER (the server offers
    only those)."""
    rig = Rig(t, (protocol,), tls=tls)
    m = rig.client(protocol)
    if protocol == "imap":
        if b"[CAPABILITY " in m.greeting:
            expect_plain_mechanisms("imap", m.greeting)
        m.send(b"c1 CAPABILITY\r\n")
        line = m.tagged(b"c1")
        caps = b"".join(m.untagged)
        check(line.startswith(b"c1 OK") and caps.startswith(b"* CAPABILITY"),
              "CAPABILITY answered %r %r", caps, line)
        expect_plain_mechanisms("imap", caps)
    elif protocol == "pop3":
        m.send(b"CAPA\r\n")
        lines = [m.line()]
        while lines[-1] != b".\r\n":
            lines.append(m.line())
        check(lines[0].startswith(b"+OK"), "CAPA answered %r", lines[0])
        expect_plain_mechanisms("pop3", b"".join(lines[1:]))
    else:
        expect_plain_mechanisms("smtp", b"\r\n".join(m.ehlo_lines))
    check(not rig.idp.requests_of(), "the provider was asked")


# ==================================== 7. -s, -s -j and the metrics

# The access token lifetime the fake provider reports in the status tests:
# not the daemon's default for an answer without expires_in (3600).
STATUS_LIFETIME = 2345
# Seconds between the provider's answer and the daemon taking its tokens.
EXPIRY_SLACK = 3
ACCOUNT_STATE = {"authorised": "authorised",
                 "pending": "waiting for a person to authorise",
                 "none": "not authorised"}


def status_rig(t, make=Rig, **kw):
    """A rig (Rig or browser_rig) whose daemon also serves /metrics."""
    port = t.ports.take()
    glob = dict(kw.pop("glob", None) or {})
    glob["metrics_listen"] = "127.0.0.1:%d" % port
    rig = make(t, glob=glob, **kw)
    rig.idp.expires_in = STATUS_LIFETIME
    rig.metrics_port = port
    return rig


def status_json_raw(t, d, timeout=20):
    """The bytes of `mailtlsd -s -j` as printed (escapes and all)."""
    p = subprocess.run([t.binary, "-s", "-j", "-c", d.conf_path],
                       capture_output=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    out, err = (p.stdout.decode(errors="replace"),
                p.stderr.decode(errors="replace"))
    assert_no_sanitizer_report(out + err)
    check(p.returncode == 0, "mailtlsd -s -j exited %s: %s", p.returncode,
          err.strip())
    return out


def wall_time(monotonic):
    """time.time() at an instant recorded with time.monotonic()."""
    return time.time() - (time.monotonic() - monotonic)


class StatusViews:
    """One look at the daemon: the text of -s, the JSON of -s -j (parsed
    and as printed) and the body of /metrics."""

    ACCOUNT_LINE = r"^  \[%s\] %s: (.*)$"

    def __init__(self, rig, what):
        self.what = what
        self.text = run_status(rig.t, rig.d)
        self.json_raw = status_json_raw(rig.t, rig.d)
        self.doc = json.loads(self.json_raw)
        status, _, self.metrics = fetch(rig.metrics_port)
        check(status == 200, "%s: GET /metrics answered %s", what, status)
        self.samples = parse_metrics(self.metrics)

    def everything(self):
        return {"-s": self.text, "-s -j": self.json_raw,
                "/metrics": self.metrics}

    def line(self, user=USER):
        """What -s says of the account after "[fake] USER: ", or None."""
        _, sep, accounts = self.text.partition("\nOAuth2 accounts:\n")
        if not sep:
            return None
        m = re.search(self.ACCOUNT_LINE % (re.escape(SECTION),
                                           re.escape(user)), accounts, re.M)
        return m.group(1) if m else None

    def account(self, user=USER):
        """The account's object in -s -j, or None."""
        found = [a for a in self.doc.get("oauth2_accounts") or []
                 if a.get("section") == SECTION and a.get("user") == user]
        check(len(found) <= 1, "%s: %d entries for %s: %r", self.what,
              len(found), user, found)
        return found[0] if found else None

    def sample(self, name, user=USER):
        """A metric's value for the account, or None."""
        key = (name, frozenset({("section", SECTION), ("user", user)}))
        return self.samples.get(key)

    def oauth2_samples(self):
        return {k: v for k, v in self.samples.items()
                if k[0].startswith("mailtlsd_oauth2_")}

    def expect_no_account(self):
        """No account shown anywhere (the section may be, with none)."""
        check(self.line() is None and USER not in self.text,
              "%s: -s shows an account:\n%s", self.what, self.text)
        check(self.account() is None and
              not self.doc.get("oauth2_accounts"), "%s: -s -j shows "
              "accounts: %r", self.what, self.doc.get("oauth2_accounts"))
        check(not self.oauth2_samples(), "%s: OAuth2 metrics: %r",
              self.what, self.oauth2_samples())

    def expect_account(self, state, expiry=None, last_error=None):
        """The account in all three views, in state (ACCOUNT_STATE), with
        no access token expiry (expiry None) or one; with last_error (the
        exact text) or none.  Returns (JSON object, -s words)."""
        words, acc = self.line(), self.account()
        check(words is not None, "%s: -s shows no line for %s:\n%s",
              self.what, USER, self.text)
        check(acc is not None, "%s: -s -j shows no account %s: %r",
              self.what, USER, self.doc.get("oauth2_accounts"))
        check(words.startswith(ACCOUNT_STATE[state]), "%s: -s says %r, "
              "want %r", self.what, words, ACCOUNT_STATE[state])
        check(acc["authorised"] is (state == "authorised") and
              acc["flow_pending"] is (state == "pending"),
              "%s: -s -j says %r, want %s", self.what, acc, state)
        authorised = self.sample("mailtlsd_oauth2_authorised")
        check(authorised == (1 if state == "authorised" else 0),
              "%s: mailtlsd_oauth2_authorised is %s, want %s (%r)",
              self.what, authorised, state, self.oauth2_samples())
        self.expect_expiry(acc, words, expiry)
        if last_error is None:
            check(acc["last_error"] is None and "last error" not in words,
                  "%s: an error shown: %r / %r", self.what,
                  acc["last_error"], words)
        else:
            check(acc["last_error"] == last_error, "%s: -s -j's last_error "
                  "is %r, want %r", self.what, acc["last_error"],
                  last_error)
            check(words.endswith(", last error: " + last_error),
                  "%s: -s says %r, want it to end with the last error %r",
                  self.what, words, last_error)
        return acc, words

    def expect_expiry(self, acc, words, expiry):
        """The access token's expiry (seconds since the epoch, or None
        for none) in all three views."""
        sample = self.sample("mailtlsd_oauth2_access_token_expiry_"
                             "timestamp_seconds")
        if expiry is None:
            check(acc["access_token_expires"] is None and
                  "access token" not in words and sample is None,
                  "%s: an access token expiry is shown: %r / %r / %r",
                  self.what, acc["access_token_expires"], words, sample)
            return
        check(acc["access_token_expires"] is not None, "%s: -s -j shows no "
              "access token expiry: %r", self.what, acc)
        got = iso_seconds(acc["access_token_expires"])
        lo, hi = expiry
        check(lo <= got <= hi, "%s: the access token expires at %d, the "
              "provider's answer says %d..%d", self.what, got, lo, hi)
        m = re.search(r"access token expires (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)"
                      r" UTC \(in ", words)
        check(m, "%s: -s shows no access token expiry: %r", self.what,
              words)
        shown = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")
        shown = int(shown.replace(tzinfo=datetime.timezone.utc).timestamp())
        check(shown == got and sample == got, "%s: the expiry is %s in -s, "
              "%s in -s -j, %s in the metrics", self.what, shown, got,
              sample)

    def expect_no_secret(self, secrets):
        """None of {name: text} in any view."""
        for view, body in self.everything().items():
            leaked = [name for name, s in secrets.items() if s and s in body]
            check(not leaked, "%s: %s shows %s", self.what, view,
                  ", ".join(leaked))


def issued_expiry(req):
    """The bounds of the expiry a token answer gives: its lifetime from
    the second of the answer (one before, for the two clocks) to a few
    seconds after."""
    at = int(wall_time(req.answered))
    lifetime = req.answer["expires_in"]
    return at + lifetime - 1, at + lifetime + EXPIRY_SLACK


def told(line):
    """The daemon's words to the client in a login's answer: "mailtlsd:
    ..." up to the instructions when a new authorisation follows."""
    text = line.rstrip(b"\r\n").decode()
    at = text.find("mailtlsd: ")
    check(at >= 0, "the client was not told why: %r", line)
    text = text[at:]
    cut = text.find("; to authorise ")
    return text if cut < 0 else text[:cut]


def all_secrets(rig, *passwords):
    """{name: text} of everything secret this rig saw: passwords in every
    form, the client secret, every token and code the provider issued,
    PKCE verifiers, the SASL messages."""
    out = {"client secret": CLIENT_SECRET}
    for pw in passwords or (PASSWORD,):
        for i, form in enumerate(password_forms(pw)):
            out["password %r form %d" % (pw[:4], i)] = form.decode()
    for i, tok in enumerate(rig.idp.issued()):
        out["issued #%d %s" % (i, tok[:3])] = tok
    for i, r in enumerate(rig.idp.requests_of("token",
                                              "authorization_code")):
        out["PKCE verifier #%d" % i] = r.form.get("code_verifier")
    for i, blob in enumerate(sasl_blobs(rig.attempts())):
        out["SASL message #%d" % i] = blob.decode()
    return out


@case(timeout=60)
def test_status_device_flow_pending(t):
    """-s, -s -j and the metrics: no account before a login; after a
    login that starts the device flow, the account waits for a person and
    is not authorised, and none of the password and codes is shown."""
    rig = status_rig(t, secret=CLIENT_SECRET)
    StatusViews(rig, "before any login").expect_no_account()
    mark = rig.idp.mark()
    m = rig.client()
    ans = rig.expect_device_instructions(m.login("login-atom"), "imap",
                                         m.tag, mark)
    v = StatusViews(rig, "the device flow waiting")
    v.expect_account("pending")
    v.expect_no_secret(all_secrets(rig))
    check(ans["device_code"] in rig.idp.issued(), "the device code is not "
          "among the secrets checked")
    check(not rig.attempts(), "the server saw a login")


@case(timeout=60, valgrind=True)
def test_status_authorised(t):
    """After the approval and a login: authorised, the access token's
    expiry the provider gave (its lifetime from its answer), the same in
    -s, -s -j and the metrics; promtool finds nothing wrong."""
    rig = status_rig(t)
    rig.first_login()
    rig.logged_in()
    grants = rig.idp.requests_of("token", DEVICE_GRANT, status=200)
    check(len(grants) == 1 and not rig.idp.refreshes(), "token requests: "
          "%s", rig.idp.summary())
    check(grants[0].answer["expires_in"] == STATUS_LIFETIME, "lifetime %r",
          grants[0].answer)
    v = StatusViews(rig, "authorised")
    acc, _ = v.expect_account("authorised", issued_expiry(grants[0]))
    at = wall_time(grants[0].answered)
    # The status shows whole seconds; at is a fraction of one later.
    check(acc["last_refresh"] is not None and
          at - 2 <= iso_seconds(acc["last_refresh"]) <= at + EXPIRY_SLACK,
          "last_refresh %r, the tokens came at %d", acc["last_refresh"],
          at)
    v.expect_no_secret(all_secrets(rig))
    promtool = shutil.which("promtool")
    if promtool is not None:            # scripts/install-deps --test
        p = subprocess.run([promtool, "check", "metrics"],
                           input=v.metrics.encode(), capture_output=True,
                           timeout=30)
        check(p.returncode == 0 and not p.stdout.strip() and
              not p.stderr.strip(), "promtool check metrics: exit %s: %s "
              "%s", p.returncode, p.stdout.decode(), p.stderr.decode())


REFRESH_FAILURES = {
    # A dead grant: the tokens are dropped, a new authorisation starts.
    "aadsts70043": {"fault": AADSTS70043, "status": 400, "state": "pending",
                    "kept": False, "words": r"\(AADSTS70043\)"},
    # Refused until an administrator acts (a long text); the grant stays.
    "aadsts65001": {"fault": AADSTS65001, "status": 400,
                    "state": "authorised", "kept": True,
                    "words": r"\(AADSTS65001\).*/adminconsent\?client_id="
                             + CLIENT_ID + "$"},
    # The provider down for a while: the grant stays.
    "unavailable": {"fault": ("temporarily_unavailable", None),
                    "status": 503, "state": "authorised", "kept": True,
                    "words": r"HTTP 503"},
}


@case(timeout=60, params=REFRESH_FAILURES)
def test_status_refresh_error(t, fault, status, state, kept, words):
    """A refresh the provider refuses: -s and -s -j show the words the
    client got, whole, as the account's last error, and the state the
    error leaves (a dead grant shows no access token any more)."""
    rig = status_rig(t, provider="microsoft")
    rig.first_login()
    rig.logged_in()
    grant = rig.idp.requests_of("token", DEVICE_GRANT, status=200)[-1]
    rig.idp.expire_access()             # the server rejects it: a refresh
    error, description = fault
    rig.idp.fail_next("token", error, description, status=status,
                      grant="refresh_token")
    mark = rig.idp.mark()
    m = rig.client()
    line = m.login("login-atom")
    check(not line.startswith(m.tag + b" OK"), "login succeeded: %r", line)
    refreshes = rig.idp.refreshes(mark)
    check(len(refreshes) == 1 and refreshes[0].status == status,
          "refreshes: %s", rig.idp.summary(mark))
    last_error = told(line)
    check(re.search(words, last_error), "the client was told %r, not /%s/",
          last_error, words)
    v = StatusViews(rig, "after the refresh failed (%s)" % error)
    v.expect_account(state, issued_expiry(grant) if kept else None,
                     last_error)
    v.expect_no_secret(all_secrets(rig))


@case(timeout=90, params={"device": {"flow": "device"},
                          "browser": {"flow": "browser"}})
def test_status_shows_no_secret(t, flow):
    """Through a whole life -- the flow waiting, authorised, a rejected
    token refreshed (rotated), a wrong password, the grant revoked and a
    new flow waiting -- -s, -s -j and the metrics show the account each
    time, and never a password, a token, a code, a PKCE verifier or the
    client secret."""
    if flow == "device":
        rig = status_rig(t, secret=CLIENT_SECRET)
        grant_type = DEVICE_GRANT
    else:
        rig = status_rig(t, make=browser_rig)
        grant_type = "authorization_code"
    rig.idp.rotate = True
    views = []

    m = rig.client()
    line = m.login("login-atom")
    if flow == "device":
        ans = rig.expect_device_instructions(line, "imap", m.tag)
    else:
        expect_browser_instructions(rig, m, line)
    views.append(StatusViews(rig, "the flow waiting"))
    views[-1].expect_account("pending")
    if flow == "device":
        rig.authorise(ans)
    else:
        browser_authorise(rig, m, line)
    rig.logged_in()
    grant = rig.idp.requests_of("token", grant_type, status=200)[-1]
    views.append(StatusViews(rig, "authorised"))
    views[-1].expect_account("authorised", issued_expiry(grant))

    rig.idp.expire_access()             # rejected: a refresh and a retry
    mark = rig.idp.mark()
    rig.logged_in()
    refresh = rig.idp.refreshes(mark)
    check(len(refresh) == 1 and refresh[0].status == 200 and
          refresh[0].answer.get("refresh_token"), "refreshes: %s",
          rig.idp.summary(mark))
    views.append(StatusViews(rig, "refreshed"))
    views[-1].expect_account("authorised", issued_expiry(refresh[0]))

    m = rig.client()
    m.expect_prefix(m.login("login-atom", USER, OTHER_PASSWORD),
                    REFUSED_PREFIX, "wrong password")
    views.append(StatusViews(rig, "after a wrong password"))
    views[-1].expect_account("authorised", issued_expiry(refresh[0]))

    rig.idp.expire_access()
    rig.idp.revoke_refresh()
    m = rig.client()
    line = m.login("login-atom")
    check(b"; to authorise " + USER.encode() in line, "no new "
          "authorisation after the grant was revoked: %r", line)
    views.append(StatusViews(rig, "the grant revoked"))
    views[-1].expect_account("pending", last_error=told(line))

    secrets = all_secrets(rig, PASSWORD, OTHER_PASSWORD)
    kinds = {tok[:3] for tok in rig.idp.issued()}
    check({"at-", "rt-", "dc-" if flow == "device" else "ac-"} <= kinds and
          len(rig.idp.issued()) >= 5, "the provider issued only %s",
          rig.idp.issued())
    for v in views:
        v.expect_no_secret(secrets)
