"""Mail servers that take only OAuth2 logins: XOAUTH2 and OAUTHBEARER.

OAuthMailServer is StarttlsServer (the STARTTLS dialogue, or implicit TLS
with a greeting) followed by an IMAP, POP3 or SMTP server whose only way
in is SASL XOAUTH2 or OAUTHBEARER (RFC 7628) with a bearer token that the
FakeIdP (oauth2_server.py) currently honours for that very user.  A
password login (IMAP LOGIN, AUTHENTICATE PLAIN/LOGIN, POP3 USER/PASS, SMTP
AUTH PLAIN/LOGIN) is refused and recorded: the tests assert it never
happens.

A bad token is answered as the real servers do: IMAP `+ <base64 JSON>`,
POP3 `+ <base64 JSON>`, SMTP `334 <base64 JSON>`; the client must answer
with an empty line (XOAUTH2) or %x01 (`AQ==`, OAUTHBEARER), and then gets
`TAG NO [AUTHENTICATIONFAILED] ...`, `-ERR [AUTH] ...` or `535 5.7.8 ...`.
Variants: the mechanisms offered (XOAUTH2 and OAUTHBEARER, or one), IMAP
SASL-IR or not, rejecting the next N good tokens (or all), and Microsoft's
SMTP refusals (smtp_failure, e.g. MS_SMTP_AUTH_DISABLED) in place of the
challenge.

Every attempt is an AuthAttempt in rec.auths (and srv.attempts, in
order): mechanism, whether an initial response was used, user, token,
outcome and what the client answered the error challenge.  Every line is
in rec.pre / rec.post (StarttlsRecord); rec.app holds every byte inside TLS.
"""

import base64
import json
import threading
from dataclasses import dataclass

from starttls_server import StarttlsRecord, StarttlsServer

MECHS = ("XOAUTH2", "OAUTHBEARER")

MS_SMTP_AUTH_DISABLED = (b"535 5.7.139 Authentication unsuccessful, "
                         b"SmtpClientAuthentication is disabled for the "
                         b"Tenant. Visit https://aka.ms/smtp_auth_disabled "
                         b"for more information. [AM0PR04CA0001.eurprd04."
                         b"prod.outlook.com]\r\n")
MS_SMTP_BASIC_AUTH = (b"550 5.7.30 Basic authentication is not supported for "
                      b"Client Submission. Visit https://aka.ms/"
                      b"smtp_auth_disabled for more information.\r\n")

# The client's answer to an error challenge, per mechanism (base64 text).
ERROR_ANSWER = {"XOAUTH2": b"", "OAUTHBEARER": b"AQ=="}

IMPLICIT_GREETING = {
    "imap": b"* OK [CAPABILITY {caps}] FAKE-OAUTH2 IMAP ready\r\n",
    "pop3": b"+OK FAKE-OAUTH2 POP3 ready <4711.1700000000@mail.test>\r\n",
    "smtp": b"220 mail.test ESMTP FAKE-OAUTH2 ready\r\n",
}

# What a logged-in session can do, to show the relay works after login.
IMAP_SELECTED = b"* 3 EXISTS\r\n* OK [UIDVALIDITY 7] UIDs valid\r\n"
POP3_STAT = b"+OK 2 4096\r\n"
SMTP_MAIL_OK = b"250 2.1.0 Sender OK\r\n"


@dataclass
class AuthAttempt:
    """One SASL login attempt the server saw."""
    conn: int
    mech: str
    initial: bool                   # initial response on the command line
    user: str = None
    token: str = None
    ok: bool = False
    reason: str = ""                # why it failed
    error_answer: bytes = None      # the client's answer to the challenge


class OAuthRecord(StarttlsRecord):
    def __init__(self, cid):
        super().__init__(cid)
        self.auths = []                 # AuthAttempt, in order
        self.plain = []                 # password logins tried (lines)
        self.after_login = []           # commands served after login


def _b64(data):
    try:
        return base64.b64decode(data, validate=True)
    except ValueError:
        return None


def _saslname(text):
    """RFC 5801 saslname: =2C is a comma, =3D an equals sign."""
    return text.replace("=2C", ",").replace("=3D", "=")


def parse_xoauth2(blob):
    """(user, token) of an XOAUTH2 initial client response, or a reason."""
    if not blob.endswith(b"\x01\x01"):
        return "XOAUTH2 message does not end in ^A^A"
    parts = blob[:-2].split(b"\x01")
    if len(parts) != 2 or not parts[0].startswith(b"user=") or \
            not parts[1].startswith(b"auth=Bearer "):
        return "malformed XOAUTH2 message %r" % blob[:80]
    return parts[0][5:].decode("utf-8", "replace"), \
        parts[1][12:].decode("utf-8", "replace")


def parse_oauthbearer(blob):
    """(user, token) of an OAUTHBEARER client response, or a reason."""
    if not blob.endswith(b"\x01\x01"):
        return "OAUTHBEARER message does not end in ^A^A"
    parts = blob[:-2].split(b"\x01")
    gs2 = parts[0].decode("utf-8", "replace")
    fields = gs2.split(",")
    if len(fields) != 3 or fields[0] not in ("n", "y") or fields[2] != "" \
            or not fields[1].startswith("a="):
        return "OAUTHBEARER gs2 header %r lacks n,a=USER," % gs2
    pairs = {}
    for kv in parts[1:]:
        k, eq, v = kv.partition(b"=")
        if not eq or not k:
            return "malformed OAUTHBEARER pair %r" % kv[:80]
        pairs[k.decode()] = v.decode("utf-8", "replace")
    auth = pairs.get("auth", "")
    if not auth.lower().startswith("bearer "):
        return "OAUTHBEARER without auth=Bearer"
    return _saslname(fields[1][2:]), auth[7:]


PARSERS = {"XOAUTH2": parse_xoauth2, "OAUTHBEARER": parse_oauthbearer}


class OAuthMailServer(StarttlsServer):
    """See the module's docstring.  protocol imap|pop3|smtp; tls the
    server context; idp the FakeIdP whose tokens are good; implicit TLS or
    STARTTLS."""

    record_class = OAuthRecord

    def __init__(self, protocol, tls, idp, implicit=True, mechs=MECHS,
                 sasl_ir=True, reject=0, smtp_failure=None,
                 host="127.0.0.1"):
        self.idp = idp
        self.mechs = tuple(m.upper() for m in mechs)
        self.sasl_ir = sasl_ir          # IMAP: SASL-IR advertised and taken
        self.reject = reject            # refuse the next N good tokens
                                        # (-1: all)
        self.smtp_failure = smtp_failure
        self.attempts = []
        self.lock = threading.Lock()
        greeting = None
        if implicit:
            greeting = IMPLICIT_GREETING[protocol].replace(
                b"{caps}", self.imap_caps())
        super().__init__(protocol, tls, host=host, greeting=greeting,
                         implicit=implicit)

    # ------------------------------------------------------ what it offers
    def imap_caps(self):
        caps = b"IMAP4rev1 LITERAL+ ID IDLE NAMESPACE"
        if self.sasl_ir:
            caps += b" SASL-IR"
        return caps + b"".join(b" AUTH=" + m.encode() for m in self.mechs)

    def pop3_capa(self):
        return (b"+OK Capability list follows\r\nTOP\r\nUIDL\r\n"
                b"SASL " + " ".join(self.mechs).encode() + b"\r\n"
                b"RESP-CODES\r\nAUTH-RESP-CODE\r\n.\r\n")

    def smtp_ehlo(self, name):
        return (b"250-mail.test Hello [" + name + b"]\r\n"
                b"250-SIZE 35882577\r\n250-PIPELINING\r\n"
                b"250-AUTH " + " ".join(self.mechs).encode() + b"\r\n"
                b"250-8BITMIME\r\n250 SMTPUTF8\r\n")

    # ------------------------------------------------------- observations
    def all_attempts(self):
        with self.cond:
            return list(self.attempts)

    def wait_attempts(self, n, timeout=10):
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.attempts) >= n,
                                      timeout):
                raise AssertionError("the mail server saw %d login "
                                     "attempt(s) within %ss, expected %d: %s"
                                     % (len(self.attempts), timeout, n,
                                        self.attempts))
            return list(self.attempts)

    def plain_logins(self):
        with self.cond:
            return [p for r in self.conns for p in r.plain]

    # ----------------------------------------------------------- the SASL
    def _record(self, rec, attempt):
        with self.cond:
            rec.auths.append(attempt)
            self.attempts.append(attempt)
            self.cond.notify_all()

    def _judge(self, rec, mech, blob, initial):
        """The AuthAttempt for a base64 client response (not recorded)."""
        a = AuthAttempt(rec.id, mech, initial)
        raw = _b64(blob)
        if raw is None:
            a.reason = "client response is not base64: %r" % blob[:80]
            return a
        parsed = PARSERS[mech](raw)
        if isinstance(parsed, str):
            a.reason = parsed
            return a
        a.user, a.token = parsed
        tok = self.idp.check_access(a.token)
        if tok is None:
            a.reason = "token unknown, expired or revoked"
        elif tok.user is not None and tok.user != a.user:
            a.reason = "token of %s used for %s" % (tok.user, a.user)
        else:
            with self.lock:
                if self.reject:
                    self.reject -= 1 if self.reject > 0 else 0
                    a.reason = "scripted rejection"
                    return a
            a.ok = True
        if a.ok and self.protocol == "smtp" and self.smtp_failure:
            a.ok, a.reason = False, "scripted SMTP failure"
        return a

    def _sasl(self, st, rec, mech, initial, prompt):
        """Run one XOAUTH2/OAUTHBEARER exchange after the command;
        prompt(bytes) makes a server challenge line.  Returns the recorded
        AuthAttempt, or None when the client cancelled / went away."""
        if initial is None:
            st.sendall(prompt(b""))
            line = st.readline()
            if not line:
                return None
            blob = line.rstrip(b"\r\n")
            if blob == b"*":
                return None
        else:
            blob = initial
        a = self._judge(rec, mech, blob, initial is not None)
        if a.ok or (self.protocol == "smtp" and self.smtp_failure):
            self._record(rec, a)
            return a
        status = {"status": "401", "schemes": "bearer",
                  "scope": "https://mail.test/"} if mech == "XOAUTH2" else \
            {"status": "invalid_token", "scope": "https://mail.test/",
             "openid-configuration":
                 "https://mail.test/.well-known/openid-configuration"}
        st.sendall(prompt(base64.b64encode(json.dumps(status).encode())))
        line = st.readline()
        a.error_answer = line.rstrip(b"\r\n") if line else None
        self._record(rec, a)
        return a

    def _start_auth(self, rec, mech, initial):
        """None to go on with SASL, or the reason to refuse at once."""
        if mech in ("PLAIN", "LOGIN"):
            rec.plain.append((mech, initial))
            return "password mechanisms are disabled"
        if mech not in self.mechs:
            self._record(rec, AuthAttempt(rec.id, mech, initial is not None,
                                          reason="mechanism not offered"))
            return "unsupported mechanism"
        if initial is not None and self.protocol == "imap" and \
                not self.sasl_ir:
            self._record(rec, AuthAttempt(rec.id, mech, True,
                                          reason="initial response without "
                                                 "SASL-IR"))
            return "SASL-IR not offered"
        return None

    def _answered_right(self, a):
        return a.error_answer == ERROR_ANSWER[a.mech]

    # -- IMAP --
    def _serve_imap(self, st, rec):
        authed = False
        while True:
            words = self._imap_command(st)
            if words is None:
                break
            if not words:
                continue
            tag = words[0]
            verb = words[1].upper() if len(words) > 1 else b""
            args = words[2:]
            if authed:
                rec.after_login.append(b" ".join(words[1:]))
            if verb == b"CAPABILITY":
                st.sendall(b"* CAPABILITY " + self.imap_caps() + b"\r\n" +
                           tag + b" OK CAPABILITY completed\r\n")
            elif verb == b"NOOP":
                st.sendall(tag + b" OK NOOP completed\r\n")
            elif verb == b"ID":
                st.sendall(b"* ID NIL\r\n" + tag + b" OK ID completed\r\n")
            elif verb == b"LOGOUT":
                st.sendall(b"* BYE logging out\r\n" + tag +
                           b" OK LOGOUT completed\r\n")
                break
            elif verb == b"LOGIN" and not authed:
                rec.plain.append((b"LOGIN", b" ".join(args)))
                st.sendall(tag + b" NO [AUTHENTICATIONFAILED] LOGIN "
                           b"failed: basic authentication is disabled\r\n")
            elif verb == b"AUTHENTICATE" and not authed and args:
                mech = args[0].decode("ascii", "replace").upper()
                initial = args[1] if len(args) > 1 else None
                refusal = self._start_auth(rec, mech, initial)
                if refusal == "SASL-IR not offered":
                    st.sendall(tag + b" BAD " + refusal.encode() + b"\r\n")
                    continue
                if refusal:
                    st.sendall(tag + b" NO [CANNOT] " + refusal.encode() +
                               b"\r\n")
                    continue
                a = self._sasl(st, rec, mech, initial,
                               lambda c: b"+ " + c + b"\r\n")
                if a is None:
                    st.sendall(tag + b" BAD AUTHENTICATE cancelled\r\n")
                elif a.ok:
                    authed = True
                    rec.logged_in_as = a.user
                    rec.logged_in.set()
                    st.sendall(tag + b" OK [CAPABILITY IMAP4rev1 LITERAL+ "
                               b"IDLE] " + a.user.encode() +
                               b" authenticated (Success)\r\n")
                elif self._answered_right(a):
                    st.sendall(tag + b" NO [AUTHENTICATIONFAILED] Invalid "
                               b"credentials (Failure)\r\n")
                else:
                    st.sendall(tag + b" BAD invalid SASL error response\r\n")
            elif verb in (b"SELECT", b"EXAMINE") and authed:
                st.sendall(b"* FLAGS (\\Seen \\Deleted)\r\n" + IMAP_SELECTED +
                           tag + b" OK [READ-WRITE] SELECT completed\r\n")
            else:
                st.sendall(tag + b" BAD unknown command or wrong state\r\n")
        st.close()

    # -- POP3 --
    def _serve_pop3(self, st, rec):
        authed = False
        while True:
            line = st.readline()
            if not line:
                break
            words = line.split()
            verb = words[0].upper() if words else b""
            if authed:
                rec.after_login.append(line.rstrip(b"\r\n"))
            if verb == b"CAPA":
                st.sendall(self.pop3_capa())
            elif verb in (b"USER", b"PASS", b"APOP") and not authed:
                rec.plain.append((verb, line))
                st.sendall(b"-ERR [AUTH] basic authentication is disabled\r\n"
                           if verb != b"USER" else b"+OK\r\n")
            elif verb == b"AUTH" and not authed and len(words) == 1:
                st.sendall(b"+OK\r\n" + "\r\n".join(self.mechs).encode() +
                           b"\r\n.\r\n")
            elif verb == b"AUTH" and not authed:
                mech = words[1].decode("ascii", "replace").upper()
                initial = words[2] if len(words) > 2 else None
                refusal = self._start_auth(rec, mech, initial)
                if refusal:
                    st.sendall(b"-ERR " + refusal.encode() + b"\r\n")
                    continue
                a = self._sasl(st, rec, mech, initial,
                               lambda c: b"+ " + c + b"\r\n")
                if a is None:
                    st.sendall(b"-ERR AUTH cancelled\r\n")
                elif a.ok:
                    authed = True
                    rec.logged_in_as = a.user
                    rec.logged_in.set()
                    st.sendall(b"+OK User successfully authenticated.\r\n")
                elif self._answered_right(a):
                    st.sendall(b"-ERR [AUTH] Authentication failed.\r\n")
                else:
                    st.sendall(b"-ERR invalid SASL error response\r\n")
            elif verb == b"STAT" and authed:
                st.sendall(POP3_STAT)
            elif verb == b"NOOP" and authed:
                st.sendall(b"+OK\r\n")
            elif verb == b"QUIT":
                st.sendall(b"+OK Microsoft Exchange Server POP3 server "
                           b"signing off.\r\n")
                break
            else:
                st.sendall(b"-ERR unknown command or wrong state\r\n")
        st.close()

    # -- SMTP --
    def _serve_smtp(self, st, rec):
        authed, mail = False, False
        while True:
            line = st.readline()
            if not line:
                break
            words = line.split()
            verb = words[0].upper() if words else b""
            if authed:
                rec.after_login.append(line.rstrip(b"\r\n"))
            if verb == b"EHLO":
                st.sendall(self.smtp_ehlo(words[1] if len(words) > 1
                                          else b"unknown"))
            elif verb == b"HELO":
                st.sendall(b"250 mail.test\r\n")
            elif verb == b"AUTH" and authed:
                st.sendall(b"503 5.5.1 already authenticated\r\n")
            elif verb == b"AUTH" and len(words) > 1:
                mech = words[1].decode("ascii", "replace").upper()
                initial = words[2] if len(words) > 2 else None
                refusal = self._start_auth(rec, mech, initial)
                if refusal:
                    st.sendall(b"504 5.7.4 Unrecognized authentication "
                               b"type\r\n")
                    continue
                a = self._sasl(st, rec, mech, initial,
                               lambda c: b"334 " + c + b"\r\n")
                if a is None:
                    st.sendall(b"501 5.7.0 AUTH cancelled\r\n")
                elif self.smtp_failure:
                    st.sendall(self.smtp_failure)
                elif a.ok:
                    authed = True
                    rec.logged_in_as = a.user
                    rec.logged_in.set()
                    st.sendall(b"235 2.7.0 Authentication successful\r\n")
                elif self._answered_right(a):
                    st.sendall(b"535 5.7.8 Username and Password not "
                               b"accepted.\r\n")
                else:
                    st.sendall(b"501 5.5.2 invalid SASL error response\r\n")
            elif verb == b"MAIL":
                if authed:
                    mail = True
                    st.sendall(SMTP_MAIL_OK)
                else:
                    st.sendall(b"530 5.7.57 Client not authenticated to "
                               b"send mail\r\n")
            elif verb == b"RCPT" and mail:
                st.sendall(b"250 2.1.5 Recipient OK\r\n")
            elif verb in (b"NOOP", b"RSET"):
                st.sendall(b"250 2.0.0 OK\r\n")
            elif verb == b"QUIT":
                st.sendall(b"221 2.0.0 Service closing transmission "
                           b"channel\r\n")
                break
            else:
                st.sendall(b"503 5.5.1 unknown command or wrong state\r\n")
        st.close()
