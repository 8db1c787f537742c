#!/usr/bin/env python3
"""The OAuth2 part of the interop suite: mailtlsd with [oauth2:NAME]
sections between mail clients that log in with a password of their user's
choosing and real servers that take only OAuth2 bearer tokens.

    make interop                       # both parts (run.py)
    MAILTLSD=build/mailtlsd python3 tests/interop/run.py --part oauth2
    MAILTLSD=build/mailtlsd python3 tests/interop/oauth2.py [--keep] [-v]

The stack (oauth2_stack.py): oauth2-mock-server wrapped by oauth2-idp.js
(device, browser and client-credentials flows, rotating refresh tokens,
a control API), Dovecot 2.3 with passdb oauth2 (XOAUTH2, OAUTHBEARER, local
validation of the RS256 JWTs) and Postfix with SASL through that Dovecot.
First the stack proves itself without mailtlsd (tokens from the
authorisation server log in to Dovecot and Postfix directly, bad and
expired ones fail); then every check drives build/mailtlsd.

Each check prints one line like run.py's; `N passed, N failed` at the end
when run alone. Needs root and tests/interop/setup.sh.
"""

import argparse
import base64
import json
import os
import re
import signal
import socket
import ssl
import sys
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import clients as C        # noqa: E402
import oauth2_stack as O   # noqa: E402
import stack as S          # noqa: E402

IO_TIMEOUT = 30            # one reply from mailtlsd
EVENT_TIMEOUT = 30         # the authorisation server seeing a request
SAVE_TIMEOUT = 15          # mailtlsd writing the token file

# The lines a login that needs a person gets (keys.md): the filter's
# framing, then mailtlsd's text.
INSTRUCTIONS = {
    "imap": re.compile(r"^\S+ NO \[ALERT\] (mailtlsd: .*)$"),
    "pop3": re.compile(r"^-ERR \[AUTH\] (mailtlsd: .*)$"),
    "smtp": re.compile(r"^454 4\.7\.0 (mailtlsd: .*)$"),
}
# Dovecot and Postfix logging a login, and with what mechanism.
DOVECOT_LOGIN = re.compile(r"(imap|pop3)-login: Info: Login: user=<([^>]*)>, "
                           r"method=([^,]+), .*\bTLS\b")
# One failed SASL exchange (auth_debug): whatever the passdbs said, one line.
DOVECOT_FAILED = re.compile(r"auth: Debug: client passdb out: FAIL\t\d+\t"
                            r"user=([^\t]+)")
POSTFIX_LOGIN = re.compile(r"postfix/(submissions?)/smtpd\[\d+\]: \w+: "
                           r"client=\S+, sasl_method=([^,]+), "
                           r"sasl_username=(\S+)")
# What mailtlsd must use: XOAUTH2 where offered, OAUTHBEARER where only
# that is (Postfix's submission port).
MECH = {("imap", "implicit"): "XOAUTH2", ("imap", "starttls"): "XOAUTH2",
        ("pop3", "implicit"): "XOAUTH2", ("pop3", "starttls"): "XOAUTH2",
        ("smtp", "implicit"): "XOAUTH2", ("smtp", "starttls"): "OAUTHBEARER"}


class Failed(C.CheckFailed):
    pass


def address(local):
    return "%s@%s" % (local, S.MAIL_DOMAIN)


def new_password(tag):
    return "pw-%s-%s" % (tag, os.urandom(6).hex())


# ---- a mail client, line by line --------------------------------------------
class Raw:
    """A mail client talking plaintext to a mailtlsd service, line by line,
    as a legacy client does: IMAP LOGIN, POP3 USER/PASS, SMTP AUTH PLAIN.
    Every line goes into the transcript."""

    def __init__(self, proto, port, transcript):
        self.proto = proto
        self.t = transcript
        self.n = 0
        self.sock = socket.create_connection((S.CLIENT_ADDR, port),
                                             timeout=IO_TIMEOUT)
        self.rf = self.sock.makefile("rb")
        greeting = self.line()
        ok = {"imap": "* OK", "pop3": "+OK", "smtp": "220"}[proto]
        if not greeting.startswith(ok):
            raise Failed("greeting %r" % greeting)
        if proto == "smtp":
            self.send("EHLO client.%s" % S.MAIL_DOMAIN)
            code, lines = self.reply()
            if code != 250:
                raise Failed("EHLO: %r" % lines[-1])

    def line(self):
        try:
            raw = self.rf.readline(65536)
        except socket.timeout:
            raise Failed("no answer from mailtlsd within %d s" % IO_TIMEOUT)
        if not raw:
            raise Failed("mailtlsd closed the connection")
        self.t.server(raw)
        return raw.decode("utf-8", "replace").rstrip("\r\n")

    def send(self, text):
        self.t.client(text)
        self.sock.sendall(text.encode() + b"\r\n")

    def reply(self):
        """SMTP: (code, [lines])."""
        lines = []
        while True:
            ln = self.line()
            lines.append(ln)
            if ln[3:4] != "-":
                return int(ln[:3]), lines

    def tagged(self, tag):
        """IMAP: the untagged lines and the tagged one."""
        untagged = []
        while True:
            ln = self.line()
            if ln.startswith(tag + " "):
                return untagged, ln
            untagged.append(ln)

    def next_tag(self):
        self.n += 1
        return "a%d" % self.n

    def login(self, user, password):
        """(success, the server's last line). IMAP: the password as a
        quoted string, or as a synchronising literal when self.literal
        (the client waits for mailtlsd's "+")."""
        if self.proto == "imap":
            tag = self.next_tag()
            if getattr(self, "literal", False):
                pw = password.encode()
                self.send("%s LOGIN %s {%d}" % (tag, imap_quote(user),
                                                len(pw)))
                ln = self.line()
                if not ln.startswith("+"):
                    return False, ln
                self.send(password)
            else:
                self.send("%s LOGIN %s %s" % (tag, imap_quote(user),
                                              imap_quote(password)))
            _, ln = self.tagged(tag)
            return ln.split(" ", 2)[1:2] == ["OK"], ln
        if self.proto == "pop3":
            self.send("USER %s" % user)
            ln = self.line()
            if not ln.startswith("+OK"):
                return False, ln
            self.send("PASS %s" % password)
            ln = self.line()
            return ln.startswith("+OK"), ln
        ir = base64.b64encode(b"\0" + user.encode() + b"\0" +
                              password.encode()).decode()
        self.send("AUTH PLAIN %s" % ir)
        code, lines = self.reply()
        return code == 235, lines[-1]

    def use(self, st, user, token):
        """A command that needs the login: IMAP SELECT INBOX, POP3 STAT,
        SMTP MAIL, RCPT and DATA of a message with the header
        X-Interop-Token: token (then delivered to user's INBOX)."""
        if self.proto == "imap":
            tag = self.next_tag()
            self.send("%s SELECT INBOX" % tag)
            untagged, ln = self.tagged(tag)
            if not ln.startswith(tag + " OK"):
                raise Failed("SELECT INBOX: %r" % ln)
            exists = [u for u in untagged if u.endswith(" EXISTS")]
            return "SELECT INBOX OK (%s)" % (exists[0][2:] if exists
                                             else "no EXISTS")
        if self.proto == "pop3":
            self.send("STAT")
            ln = self.line()
            if not ln.startswith("+OK"):
                raise Failed("STAT: %r" % ln)
            return "STAT %s" % ln
        for cmd, want in (("MAIL FROM:<%s>" % user, 250),
                          ("RCPT TO:<%s>" % user, 250), ("DATA", 354)):
            self.send(cmd)
            code, lines = self.reply()
            if code != want:
                raise Failed("%s: %r" % (cmd.split(":")[0], lines[-1]))
        msg = C.make_message(token, "OAuth2 via mailtlsd").replace(
            b"interop@interop.test", user.encode())
        self.t.client("(message, %d bytes, dot-stuffed)" % len(msg))
        self.sock.sendall(msg.replace(b"\r\n.", b"\r\n..") + b".\r\n")
        code, lines = self.reply()
        if code != 250:
            raise Failed("after DATA: %r" % lines[-1])
        return "DATA %s" % lines[-1][:40]

    def close(self):
        try:
            self.send({"imap": "z LOGOUT", "pop3": "QUIT",
                       "smtp": "QUIT"}[self.proto])
            self.line()
        except (Failed, OSError):
            pass
        self.sock.close()


def imap_quote(s):
    return '"%s"' % s.replace("\\", "\\\\").replace('"', '\\"')


# ---- the suite --------------------------------------------------------------
class LogMark:
    def __init__(self, *paths):
        self.offsets = {p: _size(p) for p in paths}

    def lines(self, path):
        try:
            with open(path, "rb") as f:
                f.seek(self.offsets.get(path, 0))
                return f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return []


def _size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


class OAuth2Suite:
    def __init__(self, st, reporter, verbose=False):
        self.st = st
        self.reporter = reporter
        self.verbose = verbose
        self.passwords = set()
        self.mailtlsd_up = False
        self.idp_ctx = None
        self.users = {}           # (flow, proto, mode) -> (user, password)
        # who logs in again after the restart: (flow, proto, mode, user, pw)
        self.restart_users = []

    # -- reporting -----------------------------------------------------------
    def row(self, client, proto, mode, what, fn):
        t0 = time.monotonic()
        try:
            detail, ok = fn(), True
        except C.CheckFailed as e:
            detail, ok = str(e), False
        except S.StackError as e:
            detail, ok = "stack: %s" % e, False
        except Exception as e:
            detail, ok = "%s: %s" % (type(e).__name__, e), False
            if self.verbose:
                traceback.print_exc()
        self.reporter.report(ok, client, proto, mode, what, detail,
                             time.monotonic() - t0)
        return ok

    def transcript(self, name):
        t = C.Transcript()
        t.name = name
        return t

    def dump(self, t):
        t.dump(self.st.path("clients", t.name + ".transcript"))

    # -- the authorisation server ---------------------------------------------
    def idp_ssl(self):
        if self.idp_ctx is None:
            self.idp_ctx = ssl.create_default_context(cafile=self.st.idp_ca)
        return self.idp_ctx

    def idp_post(self, path, form, basic=None):
        req = urllib.request.Request(
            self.st.idp_url + path,
            data=urllib.parse.urlencode(form).encode())
        if basic:
            req.add_header("Authorization", "Basic " + base64.b64encode(
                basic.encode()).decode())
        try:
            with urllib.request.urlopen(req, context=self.idp_ssl(),
                                        timeout=20) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def wait_event(self, since, what, **match):
        got = self.st.events(since, timeout=EVENT_TIMEOUT, **match)["events"]
        if not got:
            raise Failed("the authorisation server saw no %s within %d s"
                         % (what, EVENT_TIMEOUT))
        return got[0]

    def events(self, since, **match):
        return self.st.events(since, **match)["events"]

    # -- token files ---------------------------------------------------------
    def wait_saved(self, before, why, flow, user):
        """Waits for mailtlsd to write (or rewrite) user's token file of
        flow's section, state_dir/oauth2/SECTION/USER."""
        key = "%s/%s" % (O.SECTIONS[flow], user)
        deadline = time.monotonic() + SAVE_TIMEOUT
        while time.monotonic() < deadline:
            now = self.st.token_files()
            if now.get(key) not in (None, before.get(key)):
                return now
            time.sleep(0.05)
        raise Failed("mailtlsd did not write %s/%s within %d s of %s"
                     % (self.st.token_dir, key, SAVE_TIMEOUT, why))

    # -- the servers' evidence -----------------------------------------------
    def server_login(self, mark, proto, mode, user):
        """The server logged user's login with the mechanism mailtlsd must
        have used."""
        want = MECH[(proto, mode)]
        deadline = time.monotonic() + 5
        while True:
            if proto == "smtp":
                svc = "submission" if mode == "starttls" else "submissions"
                found = [(m.group(2), m.group(3)) for m in
                         map(POSTFIX_LOGIN.search,
                             mark.lines(self.st.postfix_log))
                         if m and m.group(1) == svc]
            else:
                found = [(m.group(3), m.group(2)) for m in
                         map(DOVECOT_LOGIN.search,
                             mark.lines(self.st.dovecot_log))
                         if m and m.group(1) == proto]
            found = [f for f in found if f[1] == user]
            if found or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if not found:
            raise Failed("the server logged no login for %s" % user)
        mechs = sorted({f[0].upper() for f in found})
        if mechs != [want]:
            raise Failed("the server saw %s, expected %s"
                         % ("/".join(mechs), want))
        return "server: %s over TLS" % want

    def server_failures(self, mark, user, want=0):
        """Dovecot's refusals of user's token since mark; waits up to 5 s
        for want of them (its log is written a little after the answer)."""
        deadline = time.monotonic() + 5
        while True:
            found = [m.group(0) for m in map(DOVECOT_FAILED.search,
                                             mark.lines(self.st.dovecot_log))
                     if m and m.group(1) == user]
            if len(found) >= want or time.monotonic() > deadline:
                return found
            time.sleep(0.1)

    def wait_delivered(self, user, token):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.st.mailbox_count(user, "INBOX", (
                    "header", "X-Interop-Token", token)) >= 1:
                return
            time.sleep(0.2)
        raise Failed("the message %s did not reach %s's INBOX" % (token,
                                                                   user))

    def marks(self):
        return LogMark(self.st.dovecot_log, self.st.postfix_log)

    # -- one login through mailtlsd ------------------------------------------
    def login(self, flow, proto, mode, user, password, t, use=True):
        """Logs in through mailtlsd; on success runs a command that needs
        it and checks the server's side. (success, line, detail)."""
        self.passwords.add(password)
        mark = self.marks()
        c = Raw(proto, self.st.port(flow, proto, mode), t)
        # one row's IMAP client sends its password as a literal
        c.literal = (flow, proto, mode) == ("browser", "imap", "starttls")
        try:
            ok, line = c.login(user, password)
            if not ok or not use:
                return ok, line, ""
            token = "oauth2-%s-%s-%s-%d" % (flow, proto, mode,
                                            int(time.time() * 1000))
            did = c.use(self.st, user, token)
        finally:
            c.close()
        server = self.server_login(mark, proto, mode, user)
        if proto == "smtp":
            self.wait_delivered(user, token)
            did += ", delivered"
        return ok, line, "%s; %s" % (did, server)

    def must_succeed(self, flow, proto, mode, user, password, t, why):
        ok, line, detail = self.login(flow, proto, mode, user, password, t)
        if not ok:
            raise Failed("%s: the login failed: %r" % (why, line))
        return detail

    def instructions(self, proto, ok, line, user):
        if ok:
            raise Failed("the login succeeded with no authorisation: %r"
                         % line)
        m = INSTRUCTIONS[proto].match(line)
        if not m:
            raise Failed("not the instructions line: %r" % line)
        text = m.group(1)
        if user not in text:
            raise Failed("the instructions do not name %s: %r" % (user,
                                                                  text))
        return text

    # -- completing a flow as the person would --------------------------------
    def complete_device(self, since, text, user):
        got = self.events(since, type="device_authorization")
        if len(got) != 1:
            raise Failed("%d device authorisation requests, expected 1"
                         % len(got))
        d = got[0]
        if d["client_id"] != O.CLIENT_IDS["device"] or \
                d["scope"] != O.USER_SCOPE:
            raise Failed("device authorisation for %s, scope %r"
                         % (d["client_id"], d["scope"]))
        if d["verification_uri"] not in text or d["user_code"] not in text:
            raise Failed("the instructions lack the URL %s or the code %s: "
                         "%r" % (d["verification_uri"], d["user_code"], text))
        before = self.st.token_files()
        mark = self.st.last_event()
        self.st.control("/approve", {"user_code": d["user_code"],
                                     "user": user})
        self.wait_event(mark, "device_code grant for " + user,
                        type="token", grant="device_code", user=user)
        self.wait_saved(before, "the device_code grant", "device",
                        user)
        polls = self.events(since, type="device_poll",
                            user_code=d["user_code"])
        return "code %s approved; %d pending poll(s) before it" % (
            d["user_code"], len(polls))

    def complete_browser(self, since, text, user):
        """The person opens the URL of the instructions in a browser: the
        authorize URL itself, or a link on redirect_listen that leads to
        it. The browser follows every redirect: to the authorisation
        server, which signs the user in at once, and back to mailtlsd's
        listener with the code."""
        # as a person copies it: without punctuation that ends a sentence
        urls = [u.rstrip(".,;:)>'\"") for u in re.findall(r"https?://\S+",
                                                          text)]
        link = "http://127.0.0.1:%d" % self.st.ports["REDIRECT_PORT"]
        urls = [u for u in urls
                if u.startswith(self.st.idp_url + "/authorize?") or
                u.startswith(link + "/") or u == link]
        if len(urls) != 1:
            raise Failed("no single authorize URL or link on "
                         "redirect_listen in %r" % text)
        before = self.st.token_files()
        mark = self.st.last_event()
        chain = [urls[0]]

        class Recorder(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, req, fp, code, msg, headers, newurl):
                chain.append(newurl)
                return super().redirect_request(req, fp, code, msg, headers,
                                                newurl)
        opener = urllib.request.build_opener(
            Recorder, urllib.request.HTTPSHandler(context=self.idp_ssl()),
            urllib.request.ProxyHandler({}))
        req = urllib.request.Request(urls[0], headers={
            "X-Interop-User": user})
        try:
            with opener.open(req, timeout=20) as r:
                status, body = r.status, r.read(300)
        except urllib.error.HTTPError as e:
            raise Failed("the browser got HTTP %d from %s: %s (went %s)" % (
                e.code, e.geturl(), e.read()[:200], " -> ".join(chain)))
        except urllib.error.URLError as e:
            raise Failed("the browser could not follow %s: %s"
                         % (" -> ".join(chain), e.reason))
        auth = [u for u in chain
                if u.startswith(self.st.idp_url + "/authorize?")]
        if len(auth) != 1:
            raise Failed("the browser never reached the authorize URL: %s"
                         % " -> ".join(chain))
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(auth[0]).query)
        want = {"client_id": O.CLIENT_IDS["browser"], "response_type": "code",
                "code_challenge_method": "S256", "scope": O.USER_SCOPE}
        bad = {k: q.get(k) for k, v in want.items() if q.get(k) != [v]}
        if bad:
            raise Failed("the authorize URL has %r" % bad)
        redirect = q.get("redirect_uri", [""])[0]
        if not (redirect == link or redirect.startswith(link + "/")):
            raise Failed("redirect_uri %r is not on redirect_listen"
                         % redirect)
        if not q.get("state") or not q.get("code_challenge"):
            raise Failed("the authorize URL has no state or code_challenge")
        if not chain[-1].startswith(redirect):
            raise Failed("the browser ended at %s" % chain[-1])
        self.wait_event(mark, "authorization_code grant for " + user,
                        type="token", grant="authorization_code", user=user)
        self.wait_saved(before, "the authorization_code grant",
                        "browser", user)
        return "browser: %s; mailtlsd's page: %d %r" % (
            " -> ".join(_url_path(u) for u in chain), status,
            body.decode("utf-8", "replace").strip()[:60])

    def authorise(self, flow, proto, mode, user, password, t):
        """The first login, then the flow to its end: a description."""
        since = self.st.last_event()
        ok, line, detail = self.login(flow, proto, mode, user, password, t)
        if flow == "app":
            if not ok:
                raise Failed("the first client-credentials login failed: %r"
                             % line)
            got = self.events(since, type="token",
                              grant="client_credentials")
            if len(got) != 1 or got[0]["auth_method"] == "none":
                raise Failed("expected one client_credentials grant with "
                             "the client's secret, saw %r" % got)
            return "first login OK (client_credentials, %s); %s" % (
                got[0]["auth_method"], detail)
        text = self.instructions(proto, ok, line, user)
        if flow == "device":
            how = self.complete_device(since, text, user)
        else:
            how = self.complete_browser(since, text, user)
        return "instructions %r; %s" % (_short(text), how)

    # ===== the checks ========================================================
    def stack_rows(self):
        """The stack without mailtlsd: its parts work together and fail
        the way the checks through mailtlsd expect."""
        self.row("stack", "-", "-", "authorisation server", self.check_idp)
        for proto in ("imap", "pop3", "smtp"):
            for mode in ("implicit", "starttls"):
                self.row("stack", proto.upper(), mode, "bearer tokens",
                         lambda p=proto, m=mode: self.check_server(p, m))

    def check_idp(self):
        user = address("stack-device")
        st, ok = self.st, []
        s, d = self.idp_post("/device", {"client_id": O.CLIENT_IDS["device"],
                                         "scope": O.USER_SCOPE})
        if s != 200 or not d.get("user_code"):
            raise Failed("device authorisation: %d %r" % (s, d))
        grant = {"grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                 "client_id": O.CLIENT_IDS["device"],
                 "device_code": d["device_code"]}
        s, r = self.idp_post("/token", grant)
        if s != 400 or r.get("error") != "authorization_pending":
            raise Failed("before approval: %d %r" % (s, r))
        st.control("/approve", {"user_code": d["user_code"], "user": user})
        time.sleep(d["interval"])     # the client's polling interval
        s, r = self.idp_post("/token", grant)
        if s != 200 or not r.get("refresh_token"):
            raise Failed("device_code grant: %d %r" % (s, r))
        ok.append("device flow")
        claims = jwt_claims(r["access_token"])
        if claims.get("email") != user or "interop.mail" not in \
                claims.get("scope", "").split():
            raise Failed("access token claims %r" % claims)
        rt = r["refresh_token"]
        s, r2 = self.idp_post("/token", {"grant_type": "refresh_token",
                                         "client_id": O.CLIENT_IDS["device"],
                                         "refresh_token": rt})
        if s != 200 or r2.get("refresh_token") in (None, rt):
            raise Failed("refresh did not rotate: %d %r" % (s, list(r2)))
        s, r3 = self.idp_post("/token", {"grant_type": "refresh_token",
                                         "client_id": O.CLIENT_IDS["device"],
                                         "refresh_token": rt})
        if s != 400 or r3.get("error") != "invalid_grant":
            raise Failed("a rotated refresh token was taken: %d %r" % (s, r3))
        ok.append("rotation (old refresh token refused)")
        st.control("/revoke", {"user": user})
        s, r4 = self.idp_post("/token", {"grant_type": "refresh_token",
                                         "client_id": O.CLIENT_IDS["device"],
                                         "refresh_token": r2["refresh_token"]})
        if s != 400 or "AADSTS70043" not in r4.get("error_description", ""):
            raise Failed("a revoked refresh token: %d %r" % (s, r4))
        ok.append("revocation (invalid_grant AADSTS70043)")
        s, r5 = self.idp_post("/token", {"grant_type": "client_credentials",
                                         "scope": O.APP_SCOPE},
                              basic="%s:%s" % (O.CLIENT_IDS["app"],
                                               st.app_secret))
        if s != 200 or "refresh_token" in r5:
            raise Failed("client_credentials: %d %r" % (s, r5))
        s, r6 = self.idp_post("/token", {"grant_type": "client_credentials",
                                         "scope": O.APP_SCOPE},
                              basic="%s:wrong" % O.CLIENT_IDS["app"])
        if s != 401 or r6.get("error") != "invalid_client":
            raise Failed("a wrong client secret: %d %r" % (s, r6))
        ok.append("client credentials (wrong secret refused)")
        self.stack_tokens = {"user": user, "token": r2["access_token"],
                             "app": r5["access_token"]}
        return ", ".join(ok)

    def check_server(self, proto, mode):
        """Straight to the server, with tokens from the authorisation
        server: XOAUTH2 and OAUTHBEARER succeed, a bad and an expired token
        get the error challenge and then a failure."""
        toks = getattr(self, "stack_tokens", None)
        if not toks:
            raise Failed("no tokens (the authorisation server check failed)")
        user = toks["user"]
        expired = self.expired_token(user)
        port = self.st.ports[O.SERVER_PORT[(proto, mode)]]
        mechs = ["XOAUTH2", "OAUTHBEARER"]
        if (proto, mode) == ("smtp", "starttls"):
            mechs = ["OAUTHBEARER"]
        t = self.transcript("stack-%s-%s" % (proto, mode))
        seen = []
        mark = self.marks()
        bad = {"XOAUTH2": ("an expired token", expired),
               "OAUTHBEARER": ("not a token", "not.a.token")}
        try:
            for mech in mechs:
                for tok, who, want in ((toks["token"], user, True),
                                       (toks["app"], address("anyone"), True),
                                       (bad[mech][1], user, False)):
                    ok, chal, last = direct_auth(self.st, proto, mode, port,
                                                 mech, who, tok, t)
                    if ok != want:
                        raise Failed("%s with %s token: %r" % (
                            mech, "a good" if want else "a bad", last))
                    if not want:
                        seen.append("%s with %s: %s" % (mech, bad[mech][0],
                                                         chal))
        finally:
            self.dump(t)
        # what the rejected-token check counts
        fails = self.server_failures(mark, user, len(mechs))
        if len(fails) != len(mechs):
            raise Failed("Dovecot logged %d failed exchanges for %d bad "
                         "tokens" % (len(fails), len(mechs)))
        offered = ", ".join(mechs)
        if proto == "smtp":
            auth = {ln for d, ln in t.lines if d == "<" and
                    re.match(r"^250[- ]AUTH ", ln)}
            if auth != {"250-AUTH " + " ".join(mechs)}:
                raise Failed("EHLO offered %r, expected %s" % (auth, mechs))
            offered = "EHLO: AUTH " + " ".join(mechs)
        return "%s; user and app tokens accepted; %s" % (
            offered, "; ".join(seen))

    def expired_token(self, user):
        """A token valid in all but its time, for the server."""
        if getattr(self, "_expired", None):
            return self._expired
        st = self.st
        st.control("/settings", {"user": user, "server_expired": 1})
        s, d = self.idp_post("/device", {"client_id": O.CLIENT_IDS["device"],
                                         "scope": O.USER_SCOPE})
        st.control("/approve", {"user_code": d["user_code"], "user": user})
        s, r = self.idp_post("/token", {
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            "client_id": O.CLIENT_IDS["device"],
            "device_code": d["device_code"]})
        if s != 200:
            raise Failed("no expired token: %d %r" % (s, r))
        self._expired = r["access_token"]
        return self._expired

    # -- through mailtlsd -----------------------------------------------------
    FLOW_ROWS = (("device", "imap", "implicit"),
                 ("device", "pop3", "starttls"),
                 ("device", "smtp", "implicit"),
                 ("browser", "imap", "starttls"),
                 ("browser", "pop3", "implicit"),
                 ("browser", "smtp", "starttls"),
                 ("app", "imap", "starttls"), ("app", "pop3", "implicit"),
                 ("app", "smtp", "starttls"))

    def flow_row(self, flow, proto, mode):
        user = address("%s-%s-%s" % (flow, proto, mode))
        # one password with what IMAP must quote and POP3 keeps as is
        password = 'pass "wo\\rd" %s' % os.urandom(4).hex() \
            if (flow, proto) == ("device", "imap") else new_password(flow)
        t = self.transcript("%s-%s-%s" % (flow, proto, mode))
        self.users[(flow, proto, mode)] = (user, password)

        def fn():
            try:
                first = self.authorise(flow, proto, mode, user, password, t)
                if flow in ("browser", "app") and proto == "imap":
                    self.restart_users.append((flow, proto, mode, user,
                                               password))
                if flow == "app":
                    self.must_succeed(flow, proto, mode, user, password, t,
                                      "the next login")
                    return "%s; next login OK" % first
                since = self.st.last_event()
                second = self.must_succeed(flow, proto, mode, user, password,
                                           t, "after the flow")
                talk = self.events(since)
                if [e for e in talk if e["type"] in (
                        "device_authorization", "authorize", "token")]:
                    raise Failed("the login after the flow went to the "
                                 "authorisation server: %r" % talk)
                return "%s; then login OK: %s" % (first, second)
            finally:
                self.dump(t)
        self.row("raw", proto.upper(), mode, "%s flow" % (
            O.FLOW_KEY[flow]), fn)

    def rotation_row(self):
        user, pw = address("rotation"), new_password("rot")
        t = self.transcript("rotation")

        def fn():
            try:
                self.st.control("/settings", {"user": user,
                                              "access_expires_in": 1})
                self.authorise("device", "imap", "implicit", user, pw, t)
                self.restart_users.append(("device", "imap", "implicit",
                                           user, pw))
                gens = []
                for n in (2, 3):
                    wait_expiry()
                    since = self.st.last_event()
                    before = self.st.token_files()
                    self.must_succeed("device", "imap", "implicit", user, pw,
                                      t, "login %d" % n)
                    refreshed = self.events(since, type="token",
                                            grant="refresh_token", user=user)
                    errors = self.events(since, type="error")
                    if errors:
                        raise Failed("login %d: the authorisation server "
                                     "refused: %r" % (n, errors))
                    if len(refreshed) != 1:
                        raise Failed("login %d after the access token "
                                     "expired: %d refreshes, expected 1"
                                     % (n, len(refreshed)))
                    ev = refreshed[0]
                    if ev["presented"]["gen"] != n - 1:
                        raise Failed("login %d presented refresh token "
                                     "#%d, the newest is #%d" % (
                                         n, ev["presented"]["gen"], n - 1))
                    self.wait_saved(before, "the rotation", "device",
                                    user)
                    gens.append("#%d->#%d" % (ev["presented"]["gen"],
                                              ev["issued"]["gen"]))
                return ("expires_in 1: each later login refreshed with the "
                        "newest refresh token (%s), rotated token saved "
                        "each time" % ", ".join(gens))
            finally:
                self.dump(t)
        self.row("raw", "IMAP", "implicit", "refresh + rotation", fn)

    def rejected_row(self):
        user, pw = address("rejected"), new_password("rej")
        t = self.transcript("rejected")

        def fn():
            try:
                # the first two tokens are already expired for Dovecot,
                # while expires_in says 3600 s
                self.st.control("/settings", {"user": user,
                                              "server_expired": 2})
                self.authorise("device", "pop3", "implicit", user, pw, t)
                since = self.st.last_event()
                mark = self.marks()
                ok, line, _ = self.login("device", "pop3", "implicit", user,
                                         pw, t)
                n = len(self.events(since, type="token",
                                    grant="refresh_token", user=user))
                fails = self.server_failures(mark, user, 2)
                if ok:
                    raise Failed("login 2 succeeded with two tokens the "
                                 "server rejects")
                if n != 1 or len(fails) != 2:
                    raise Failed("login 2: %d refresh(es) and %d server "
                                 "rejection(s), expected one refresh and "
                                 "one retry (1 and 2)" % (n, len(fails)))
                if not re.match(r"^-ERR \[AUTH\] mailtlsd: ", line) or \
                        "(null)" in line:
                    raise Failed("login 2 answered %r" % line)
                since = self.st.last_event()
                mark = self.marks()
                detail = self.must_succeed("device", "pop3", "implicit",
                                           user, pw, t, "login 3")
                n3 = len(self.events(since, type="token",
                                     grant="refresh_token", user=user))
                fails3 = self.server_failures(mark, user, 1)
                if n3 != 1:
                    raise Failed("login 3: %d refreshes, expected 1" % n3)
                return ("rejected token -> one refresh, one retry: login 2 "
                        "(new token rejected too) failed with %r after 2 "
                        "server rejections; login 3 OK after %d rejection(s)"
                        " and 1 refresh; %s" % (_short(line), len(fails3),
                                                detail))
            finally:
                self.dump(t)
        self.row("raw", "POP3", "implicit", "rejected token, one retry", fn)

    def revoked_row(self):
        user, pw = address("revoked"), new_password("rev")
        t = self.transcript("revoked")

        def fn():
            try:
                self.st.control("/settings", {"user": user,
                                              "access_expires_in": 1})
                self.authorise("device", "smtp", "implicit", user, pw, t)
                first_chain = self.events(0, type="token", user=user)[-1][
                    "issued"]["chain"]
                self.st.control("/revoke", {"user": user})
                wait_expiry()
                since = self.st.last_event()
                ok, line, _ = self.login("device", "smtp", "implicit", user,
                                         pw, t)
                if ok:
                    raise Failed("login after revocation succeeded")
                refused = self.events(since, type="error", user=user)
                if not refused or "AADSTS70043" not in \
                        refused[0]["error_description"]:
                    raise Failed("the refresh token was not presented "
                                 "(events %r)" % self.events(since))
                how = "login refused: %r" % _short(line)
                if not INSTRUCTIONS["smtp"].match(line):
                    # the refusal first, the new flow on the next login
                    since2 = self.st.last_event()
                    ok, line2, _ = self.login("device", "smtp", "implicit",
                                              user, pw, t)
                    text = self.instructions("smtp", ok, line2, user)
                    flow = self.complete_device(since2, text, user)
                    how += "; next login: new instructions"
                else:
                    text = self.instructions("smtp", ok, line, user)
                    flow = self.complete_device(since, text, user)
                    how = "login answered with new instructions"
                detail = self.must_succeed("device", "smtp", "implicit",
                                           user, pw, t, "after the new flow")
                chain = self.events(0, type="token", user=user)[-1][
                    "issued"]["chain"]
                if chain == first_chain:
                    raise Failed("no new grant after the new flow")
                in_log = any("70043" in _read(p)
                             for p in self.st.mailtlsd_logs())
                return ("revoked refresh token (invalid_grant AADSTS70043): "
                        "%s; %s; then OK: %s; mailtlsd's log %s AADSTS70043"
                        % (how, flow, detail, "names" if in_log else
                           "does not name"))
            finally:
                self.dump(t)
        self.row("raw", "SMTP", "implicit", "revoked refresh token", fn)

    def provider_error_row(self):
        user, pw = address("transient"), new_password("tmp")
        t = self.transcript("provider-error")

        def fn():
            try:
                self.st.control("/settings", {"user": user,
                                              "access_expires_in": 1})
                self.authorise("device", "smtp", "starttls", user, pw, t)
                self.st.control("/fail", {
                    "grant": "refresh_token", "status": 503, "count": 1,
                    "error": "temporarily_unavailable",
                    "error_description": "AADSTS90033: A transient error "
                    "has occurred. Please try again."})
                wait_expiry()
                files = self.st.token_files()
                since = self.st.last_event()
                ok, line, _ = self.login("device", "smtp", "starttls", user,
                                         pw, t)
                if ok:
                    raise Failed("the login succeeded although the refresh "
                                 "failed")
                if "mailtlsd:" not in line or INSTRUCTIONS["smtp"].match(
                        line) and "visit" in line:
                    raise Failed("answered %r" % line)
                if not self.events(since, type="error", grant="refresh_token"):
                    raise Failed("no refresh was tried")
                if self.st.token_files() != files:
                    raise Failed("the token file changed after the "
                                 "provider's error")
                since = self.st.last_event()
                detail = self.must_succeed("device", "smtp", "starttls",
                                           user, pw, t, "the next login")
                ref = self.events(since, type="token", grant="refresh_token",
                                  user=user)
                if len(ref) != 1 or ref[0]["presented"]["gen"] != 1:
                    raise Failed("the next login's refresh: %r" % ref)
                return ("refresh answered 503 temporarily_unavailable "
                        "(AADSTS90033): login refused with %r, token file "
                        "unchanged; next login refreshed with the same "
                        "refresh token: %s" % (_short(line), detail))
            finally:
                self.dump(t)
        self.row("raw", "SMTP", "starttls", "provider error, tokens kept",
                 fn)

    def wrong_password_row(self):
        user, pw = address("wrongpw"), new_password("right")
        wrong = new_password("wrong")
        t = self.transcript("wrong-password")

        def fn():
            try:
                self.authorise("device", "pop3", "starttls", user, pw, t)
                self.restart_users.append(("device", "pop3", "starttls",
                                           user, pw))
                files = self.st.token_files()
                since = self.st.last_event()
                for n in (1, 2):
                    ok, line, _ = self.login("device", "pop3", "starttls",
                                             user, wrong, t)
                    if ok:
                        raise Failed("the wrong password logged in")
                    if not line.startswith("-ERR"):
                        raise Failed("wrong password answered %r" % line)
                if self.st.token_files() != files:
                    raise Failed("the token file changed after a wrong "
                                 "password")
                talk = self.events(since)
                if talk:
                    raise Failed("a wrong password reached the "
                                 "authorisation server: %r" % talk)
                detail = self.must_succeed("device", "pop3", "starttls", user,
                                           pw, t, "the right password")
                if self.st.token_files() != files:
                    raise Failed("the token file changed at the next login")
                return ("wrong password twice: %r, token file bytes "
                        "unchanged, nothing sent to the authorisation "
                        "server; right password OK: %s" % (_short(line),
                                                            detail))
            finally:
                self.dump(t)
        self.row("raw", "POP3", "starttls", "wrong password", fn)

    def shared_row(self):
        user, pw = address("shared"), new_password("shared")
        t = self.transcript("shared")

        def fn():
            try:
                self.authorise("device", "imap", "starttls", user, pw, t)
                since = self.st.last_event()
                detail = self.must_succeed("device", "smtp", "starttls",
                                           user, pw, t, "SMTP")
                talk = [e for e in self.events(since) if e["type"] in (
                    "device_authorization", "token")]
                if talk:
                    raise Failed("the SMTP login needed the authorisation "
                                 "server: %r" % talk)
                return ("authorised through IMAP (device-imap-starttls); "
                        "SMTP (device-smtp-starttls, same section) logged "
                        "in with no new flow or token: %s" % detail)
            finally:
                self.dump(t)
        self.row("raw", "IMAP+SMTP", "starttls", "two services, one "
                 "section", fn)

    def restart_row(self):
        t = self.transcript("restart")

        def fn():
            try:
                if not self.restart_users:
                    raise Failed("no user was authorised before the "
                                 "restart")
                self.st.restart_mailtlsd()
                since = self.st.last_event()
                done = []
                for flow, proto, mode, user, pw in self.restart_users:
                    self.must_succeed(flow, proto, mode, user, pw, t,
                                      "%s after the restart" % user)
                    done.append(user)
                talk = self.events(since)
                flows = [e for e in talk if e["type"] in (
                    "device_authorization", "authorize")]
                if flows:
                    raise Failed("a flow started after the restart: %r"
                                 % flows)
                what = ("mailtlsd restarted; %s logged in with their stored "
                        "tokens, no flow" % ", ".join(done))
                if address("rotation") not in done:
                    return what
                # expires_in 1: this login refreshed, with the newest
                # refresh token from before the restart
                rot = [e for e in talk if e["type"] == "token" and
                       e["user"] == address("rotation")]
                newest = max(e["issued"]["gen"] for e in self.events(
                    0, type="token", user=address("rotation")))
                if len(rot) != 1 or rot[0]["presented"]["gen"] != newest - 1:
                    raise Failed("after the restart the rotation user's "
                                 "refresh presented %r, the newest refresh "
                                 "token before was #%d" % (
                                     [e["presented"] for e in rot],
                                     newest - 1))
                return "%s; the rotated refresh token #%d was presented" % (
                    what, newest - 1)
            finally:
                self.dump(t)
        self.row("raw", "-", "-", "restart keeps tokens", fn)

    def clients_rows(self):
        """Real clients: curl, Python's libraries and msmtp log in with a
        password; curl also shows the instructions to a user who has not
        authorised yet."""
        user, pw = address("clients"), new_password("clients")
        self.passwords.add(pw)
        st = self.st
        t = self.transcript("clients-authorise")
        if not self.row("raw", "IMAP", "implicit", "authorise clients@",
                        lambda: self.authorise("device", "imap", "implicit",
                                               user, pw, t)):
            pass    # the rows below then fail on their own

        def curl(args, logname):
            cmd = ["curl", "-sS", "-v", "--noproxy", "*", "--max-time", "60",
                   "--user", "%s:%s" % (user, pw)] + args
            return C.run_program(cmd, st, logname)

        def curl_imap():
            rc, out, err = curl(["imap://127.0.0.1:%d/INBOX" % st.port(
                "device", "imap", "implicit"), "-X", "EXAMINE INBOX"],
                "curl-oauth2-imap")
            if rc != 0 or "EXISTS" not in out:
                raise Failed("curl exited %d: %s" % (rc, err[-300:]))
            how = "AUTHENTICATE PLAIN" if "AUTHENTICATE PLAIN" in err \
                else "LOGIN"
            return "curl logged in (%s), EXAMINE INBOX: %s" % (
                how, out.strip().splitlines()[-1][:60])

        def curl_pop3():
            rc, out, err = curl(["pop3://127.0.0.1:%d/" % st.port(
                "device", "pop3", "starttls")], "curl-oauth2-pop3")
            if rc != 0:
                raise Failed("curl exited %d: %s" % (rc, err[-300:]))
            how = "AUTH PLAIN" if "> AUTH PLAIN" in err else "USER/PASS"
            return "curl logged in (%s), LIST: %d message(s)" % (
                how, len(out.strip().splitlines()))

        def curl_smtp():
            token = "curl-oauth2-%d" % int(time.time() * 1000)
            f = st.path("clients", token + ".eml")
            with open(f, "wb") as fh:
                fh.write(C.make_message(token, "curl via mailtlsd OAuth2"))
            rc, out, err = curl(["smtp://127.0.0.1:%d" % st.port(
                "device", "smtp", "implicit"), "--mail-from", user,
                "--mail-rcpt", user, "--upload-file", f], "curl-oauth2-smtp")
            if rc != 0:
                raise Failed("curl exited %d: %s" % (rc, err[-300:]))
            self.wait_delivered(user, token)
            return "curl sent (AUTH PLAIN), delivered"

        def curl_instructions():
            other, opw = address("curl-newcomer"), new_password("curl")
            self.passwords.add(opw)
            since = st.last_event()
            port = st.port("device", "pop3", "implicit")
            cmd = ["curl", "-sS", "-v", "--noproxy", "*", "--max-time", "60",
                   "--user", "%s:%s" % (other, opw),
                   "pop3://127.0.0.1:%d/" % port]
            rc, out, err = C.run_program(cmd, st, "curl-oauth2-newcomer")
            rc_first = rc
            shown = [ln[2:] for ln in err.splitlines()
                     if ln.startswith("< -ERR [AUTH] mailtlsd:")]
            if rc == 0 or not shown:
                raise Failed("curl exited %d without the instructions: %s"
                             % (rc, err[-300:]))
            flow = self.complete_device(since, shown[0], other)
            rc, out, err = C.run_program(cmd, st, "curl-oauth2-newcomer-2")
            if rc != 0:
                raise Failed("curl after the flow exited %d: %s" % (
                    rc, err[-300:]))
            return ("curl showed %r (exit %d); %s; curl again: exit 0"
                    % (_short(shown[0]), rc_first, flow))

        def python_imap():
            t2 = C.Transcript()
            m = C.RecIMAP(S.CLIENT_ADDR, st.port("device", "imap",
                                                 "implicit"), t2)
            try:
                m.login(user, pw)
                typ, data = m.select("INBOX")
                if typ != "OK":
                    raise Failed("SELECT: %s %r" % (typ, data))
                m.logout()
            finally:
                t2.dump(st.path("clients", "imaplib-oauth2.transcript"))
            return "imaplib login + SELECT INBOX (%s messages)" % data[0]

        def python_pop3():
            t2 = C.Transcript()
            p = C.RecPOP3(S.CLIENT_ADDR, st.port("browser", "pop3",
                                                 "implicit"), t2)
            try:
                buser, bpw = self.users[("browser", "pop3", "implicit")]
                p.user(buser)
                p.pass_(bpw)
                n, size = p.stat()
                p.quit()
            finally:
                t2.dump(st.path("clients", "poplib-oauth2.transcript"))
            return "poplib USER/PASS + STAT: %d message(s)" % n

        def python_smtp():
            t2 = C.Transcript()
            token = "smtplib-oauth2-%d" % int(time.time() * 1000)
            s = C.RecSMTP(S.CLIENT_ADDR, st.port("device", "smtp",
                                                 "starttls"), t2)
            try:
                s.ehlo("client.interop.test")
                s.login(user, pw)
                s.sendmail(user, [user], C.make_message(
                    token, "smtplib via mailtlsd OAuth2"))
                s.quit()
            finally:
                t2.dump(st.path("clients", "smtplib-oauth2.transcript"))
            self.wait_delivered(user, token)
            sent = [ln for d, ln in t2.lines if d == ">" and
                    ln.upper().startswith("AUTH")]
            return "smtplib %s, sendmail delivered" % (
                sent[0].split()[:2] if sent else "?")

        def msmtp():
            app_user, app_pw = self.users[("app", "smtp", "starttls")]
            token = "msmtp-oauth2-%d" % int(time.time() * 1000)
            rc_path = os.path.join(st.path("clients"), "oauth2.msmtprc")
            with open(rc_path, "w") as f:
                f.write("defaults\ntls off\naccount default\nhost %s\n"
                        "port %d\nfrom %s\nauth login\nuser %s\n"
                        "password %s\n" % (
                            S.CLIENT_ADDR, st.port("app", "smtp", "implicit"),
                            app_user, app_user,
                            app_pw))
            os.chmod(rc_path, 0o600)
            rc, out, err = C.run_program(
                ["msmtp", "--debug", "-C", rc_path, "-f", app_user,
                 "--", app_user], st, "msmtp-oauth2",
                stdin_data=C.make_message(token, "msmtp via mailtlsd OAuth2"))
            if rc != 0:
                raise Failed("msmtp exited %d: %s" % (rc, (out + err)[-300:]))
            self.wait_delivered(app_user, token)
            return "msmtp (auth login) sent as %s (client credentials), " \
                "delivered" % app_user

        for client, proto, mode, fn in (
                ("curl", "IMAP", "implicit", curl_imap),
                ("curl", "POP3", "starttls", curl_pop3),
                ("curl", "SMTP", "implicit", curl_smtp),
                ("curl", "POP3", "implicit", curl_instructions),
                ("python-imaplib", "IMAP", "implicit", python_imap),
                ("python-poplib", "POP3", "implicit", python_pop3),
                ("python-smtplib", "SMTP", "starttls", python_smtp),
                ("msmtp", "SMTP", "implicit", msmtp)):
            self.row(client, proto, mode, "password login", fn)

    def secrets_row(self):
        def fn():
            secrets = self.st.control("/secrets")
            logs = {p: _read_bytes(p) for p in self.st.mailtlsd_logs()}
            if not logs or not any(logs.values()):
                raise Failed("no mailtlsd log to check")
            # only worth something if mailtlsd had each kind of secret
            issued = {e["grant"] for e in self.events(
                self.mailtlsd_since, type="token")}
            missing = {"device_code", "authorization_code",
                       "client_credentials", "refresh_token"} - issued
            if missing:
                raise Failed("mailtlsd obtained no token with %s: too "
                             "little to look for" % ", ".join(sorted(
                                 missing)))
            needles = []
            for kind, values in sorted(secrets.items()):
                for v in values:
                    needles += [(kind, n) for n in _needles(v)]
            needles += [("password", p) for p in sorted(self.passwords)]
            found = sorted({kind for kind, n in needles
                            for data in logs.values()
                            if n.encode() in data})
            if found:
                raise Failed("mailtlsd's debug log holds: %s"
                             % ", ".join(found))
            count = {k: len(v) for k, v in secrets.items()}
            return ("log_level = debug, %d lines in %d log(s): none of %d "
                    "passwords, %s" % (
                        sum(d.count(b"\n") for d in logs.values()),
                        len(logs), len(self.passwords), ", ".join(
                            "%d %s" % (n, k.replace("_", " "))
                            for k, n in sorted(count.items()))))
        self.row("mailtlsd", "-", "-", "no secret in the debug log", fn)

    def run(self):
        self.stack_rows()
        try:
            self.mailtlsd_since = self.st.last_event()
        except (OSError, S.StackError):
            self.mailtlsd_since = 0     # the rows will say what is wrong
        if not self.mailtlsd_up:
            try:
                self.st.start_mailtlsd()
                self.mailtlsd_up = True
            except S.StackError as e:
                self.reporter.report(False, "mailtlsd", "-", "-", "start",
                                     str(e)[:600], 0)
        if self.mailtlsd_up:
            self.reporter.report(True, "mailtlsd", "-", "-", "start",
                                 "[oauth2:%s], [oauth2:%s], [oauth2:%s]; "
                                 "18 services" % tuple(O.SECTIONS.values()),
                                 0)
        for flow, proto, mode in self.FLOW_ROWS:
            self.flow_row(flow, proto, mode)
        self.rotation_row()
        self.rejected_row()
        self.revoked_row()
        self.provider_error_row()
        self.wrong_password_row()
        self.shared_row()
        self.clients_rows()
        self.restart_row()
        self.secrets_row()


def _url_path(url):
    """A URL without its query (which holds the state and challenge)."""
    return url.split("?", 1)[0]


def _short(text, n=110):
    return text if len(text) <= n else text[:n] + "..."


def _read(path):
    return _read_bytes(path).decode("utf-8", "replace")


def _read_bytes(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def _needles(secret):
    """What of a secret must not be in the log: all of it, and for a JWT
    its claims and signature parts (the header is the same for all)."""
    out = [secret]
    parts = secret.split(".")
    if len(parts) == 3:
        out += [p for p in parts[1:] if len(p) >= 16]
    elif len(secret) >= 24:
        out.append(secret[:16])
    return out


def jwt_claims(token):
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def wait_expiry():
    """An access token issued with expires_in 1 has expired."""
    time.sleep(1.2)


# ---- straight to the servers (the stack's own checks) ---------------------
def direct_auth(st, proto, mode, port, mech, user, token, t):
    """Logs in to Dovecot or Postfix with mech and token, over TLS (STARTTLS
    first on the starttls ports). (success, decoded error challenge or "",
    last line)."""
    ctx = ssl.create_default_context(cafile=st.path("pki", "ca.crt"))
    sock = socket.create_connection((S.SERVER_ADDR, port), timeout=20)
    f = [sock.makefile("rb")]

    def rd():
        ln = f[0].readline()
        t.server(ln)
        return ln.decode("utf-8", "replace").rstrip("\r\n")

    def wr(s):
        t.client(s[:60] + ("..." if len(s) > 60 else ""))
        sock.sendall(s.encode() + b"\r\n")

    def smtp_reply():
        while True:
            ln = rd()
            if ln[3:4] != "-":
                return ln

    try:
        if mode == "starttls":
            rd()
            cmd = {"imap": "s STARTTLS", "pop3": "STLS",
                   "smtp": "STARTTLS"}[proto]
            if proto == "smtp":
                wr("EHLO stack.test")
                smtp_reply()
            wr(cmd)
            ln = smtp_reply() if proto == "smtp" else rd()
            if not re.match(r"^(s OK|\+OK|220)", ln):
                raise Failed("%s: %r" % (cmd, ln))
            sock = ctx.wrap_socket(sock, server_hostname=S.SERVER_NAME)
            f[0] = sock.makefile("rb")
        else:
            sock = ctx.wrap_socket(sock, server_hostname=S.SERVER_NAME)
            f[0] = sock.makefile("rb")
            rd()
        if proto == "smtp":
            wr("EHLO stack.test")
            smtp_reply()
        if mech == "XOAUTH2":
            ir = "user=%s\x01auth=Bearer %s\x01\x01" % (user, token)
        else:
            ir = "n,a=%s,\x01auth=Bearer %s\x01\x01" % (user, token)
        ir = base64.b64encode(ir.encode()).decode()
        cmd = {"imap": "a AUTHENTICATE %s %s", "pop3": "AUTH %s %s",
               "smtp": "AUTH %s %s"}[proto] % (mech, ir)
        wr(cmd)
        ln = smtp_reply() if proto == "smtp" else rd()
        chal = ""
        if ln.startswith("+ ") or ln.startswith("334 "):
            chal = base64.b64decode(ln.split(" ", 1)[1]).decode()
            wr("" if mech == "XOAUTH2" else "AQ==")
            ln = smtp_reply() if proto == "smtp" else rd()
            chal = "%s -> %s" % (chal, ln)
        ok = ln.startswith({"imap": "a OK", "pop3": "+OK",
                            "smtp": "235"}[proto])
        return ok, chal, ln
    finally:
        sock.close()


# ---- running alone ----------------------------------------------------------
class Reporter:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def report(self, ok, client, proto, mode, what, detail, elapsed):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        print("%s  %-14s %-5s %-14s %s: %s (%.1f s)" % (
            "PASS" if ok else "FAIL", client, proto, mode, what, detail,
            elapsed), flush=True)


def node_dir():
    return os.path.abspath(os.environ.get(
        "INTEROP_NODE_DIR", os.path.join(ROOT, "build", "interop-node")))


def run_part(mailtlsd, port_base, mail_user, reporter, keep=False,
             verbose=False, extra_global=()):
    """The whole OAuth2 part: the stack up, the checks, the teardown.
    Reports through reporter.report()."""
    st = O.OAuth2Stack(mailtlsd, port_base, mail_user, node_dir(), keep=keep,
                       extra_global=extra_global)
    suite = OAuth2Suite(st, reporter, verbose)
    failed_before = reporter.failed
    started = time.monotonic()
    try:
        try:
            st.start(with_mailtlsd=False)
        except S.StackError as e:
            reporter.report(False, "setup", "-", "-", "OAuth2 servers",
                            str(e), 0)
            return
        print("OAuth2 servers up in %s (authorisation server %s, Dovecot "
              "and Postfix on %s)" % (st.rundir, st.idp_url, S.SERVER_ADDR),
              flush=True)
        suite.run()
    finally:
        st.stop()
        if st.mailtlsd_runs:
            bad = []
            for p in st.mailtlsd_logs():
                bad += [ln for ln in _read(p).splitlines()
                        if "AddressSanitizer" in ln or "runtime error:" in ln]
            problems = st.teardown_problems + bad[:10]
            reporter.report(not problems, "mailtlsd", "-", "-", "daemon",
                            "; ".join(problems) if problems else
                            "exit 0 on SIGTERM, no sanitizer report", 0)
        if reporter.failed > failed_before and st.rundir:
            for name, path in (("mailtlsd", st.mailtlsd_log),
                               ("authorisation server", st.idp_log),
                               ("Dovecot", st.dovecot_log),
                               ("Postfix", st.postfix_log)):
                if path:
                    print("--- last lines of the %s log (%s)" % (name, path))
                    print(S.tail(path, 25))
            print("kept %s" % st.rundir if keep else
                  "(INTEROP_KEEP=1 or --keep keeps the run directory)")
        st.remove()
        print("OAuth2 part: %.0f s" % (time.monotonic() - started),
              flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep", action="store_true",
                    default=os.environ.get("INTEROP_KEEP") == "1")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    mailtlsd = os.path.abspath(os.environ.get(
        "MAILTLSD", os.path.join(ROOT, "build", "mailtlsd")))
    port_base = int(os.environ.get("INTEROP_PORT_BASE", "19100"))
    mail_user = os.environ.get("INTEROP_MAIL_USER", "mailtlsd-interop")

    def _abort(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _abort)
    rep = Reporter()
    try:
        run_part(mailtlsd, port_base, mail_user, rep, args.keep, args.verbose,
                 [kv.strip() for kv in os.environ.get(
                     "INTEROP_MAILTLSD_GLOBAL", "").split(";") if kv.strip()])
    except KeyboardInterrupt as e:
        print("aborted: %s" % e)
        rep.failed += 1
    print("%d passed, %d failed" % (rep.passed, rep.failed), flush=True)
    return 1 if rep.failed else 0


if __name__ == "__main__":
    sys.exit(main())
