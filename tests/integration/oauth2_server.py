"""A fake OAuth2 authorisation server for the OAuth2 tests, fully scriptable.

FakeIdP serves HTTPS on loopback (a certificate from the run's test CA
for 127.0.0.1) with the endpoints an [oauth2:NAME] section points at:

    POST /token        grant_type refresh_token, authorization_code (PKCE
                       S256 checked), client_credentials and
                       urn:ietf:params:oauth:grant-type:device_code
    POST /devicecode   RFC 8628 device authorisation
    GET  /authorize    the consent a browser would give: a redirect to
                       redirect_uri with code and state (or an error)

Tokens are opaque random strings kept in the FakeIdP; the fake mail
servers (oauth2_mail.py) look access tokens up with check_access(), so a
token is good exactly while the test says so.  The test acts as the user
(approve() / deny() a device code, authorize_user for the browser) and as
the provider's operator: error responses, slow_down, a response held past
the daemon's http_timeout, an oversized response, token lifetime,
rotation and revocation of refresh tokens.  Every request is recorded
(Request) with its form, its client secret and what was answered; tests
wait on wait_request() instead of sleeping.
"""

import base64
import hashlib
import http.server
import json
import secrets
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"

# Errors real providers send, for fail_next(); (error, error_description).
AADSTS70043 = ("invalid_grant",
               "AADSTS70043: The refresh token has expired or is invalid due "
               "to sign-in frequency checks by conditional access. The token "
               "was issued on 2026-11-01T09:00:00Z and the maximum allowed "
               "lifetime for this request is 86400. Trace ID: 0f1e2d3c "
               "Correlation ID: 4b5a6978 Timestamp: 2026-12-07 06:00:00Z")
AADSTS700082 = ("invalid_grant",
                "AADSTS700082: The refresh token has expired due to "
                "inactivity. The token was issued on 2026-08-01T09:00:00Z "
                "and was inactive for 90.00:00:00. Trace ID: 0f1e2d3c")
AADSTS50076 = ("interaction_required",
               "AADSTS50076: Due to a configuration change made by your "
               "administrator, or because you moved to a new location, you "
               "must use multi-factor authentication to access "
               "'00000002-0000-0ff1-ce00-000000000000'. Trace ID: 0f1e2d3c")
AADSTS65001 = ("invalid_grant",
               "AADSTS65001: The user or administrator has not consented to "
               "use the application with ID 'mailtlsd-test-client' named "
               "'mailtlsd'. Send an interactive authorization request for "
               "this user and resource. Trace ID: 0f1e2d3c")
AADSTS700016 = ("unauthorized_client",
                "AADSTS700016: Application with identifier "
                "'mailtlsd-test-client' was not found in the directory "
                "'Contoso'. This can happen if the application has not been "
                "installed by the administrator of the tenant or consented "
                "to by any user in the tenant. Trace ID: 0f1e2d3c")
GOOGLE_REVOKED = ("invalid_grant", "Token has been expired or revoked.")

USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"     # RFC 8628 6.1: no vowels


def new_token(prefix):
    """An opaque token, recognisable in a log by its prefix."""
    return prefix + secrets.token_urlsafe(24)


def user_code():
    pick = lambda: "".join(secrets.choice(USER_CODE_ALPHABET)
                           for _ in range(4))
    return pick() + "-" + pick()


def s256(verifier):
    """The PKCE S256 challenge of a verifier (RFC 7636 4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass
class Request:
    """One HTTP request as the IdP saw it, and its answer."""
    n: int
    endpoint: str                   # "token" | "devicecode" | "authorize" |
                                    # "other"
    method: str
    path: str
    query: dict                     # GET parameters (last value wins)
    form: dict                      # POST form fields (last value wins)
    headers: dict
    client_secret: str = None       # from the form or HTTP Basic
    basic_auth: bool = False        # the secret came as HTTP Basic
    status: int = None              # what was answered (None: nothing)
    answer: dict = None             # the JSON (or redirect parameters)
    note: str = ""                  # what the IdP decided, in words
    at: float = 0.0                 # time.monotonic() on arrival
    answered: float = None          # time.monotonic() of the answer

    @property
    def grant(self):
        return self.form.get("grant_type")


@dataclass
class AccessToken:
    token: str
    user: str                       # None: an app token (client credentials)
    scope: str
    client_id: str
    valid: bool = True


@dataclass
class RefreshToken:
    token: str
    user: str
    scope: str
    client_id: str
    valid: bool = True


@dataclass
class DeviceCode:
    device_code: str
    user_code: str
    client_id: str
    scope: str
    state: str = "pending"          # pending | approved | denied | expired |
                                    # redeemed
    user: str = None
    polls: list = field(default_factory=list)   # monotonic times


@dataclass
class AuthCode:
    code: str
    client_id: str
    redirect_uri: str
    challenge: str
    method: str
    scope: str
    state: str
    user: str
    used: bool = False


@dataclass
class Fault:
    """What to do instead of the normal answer to one matching request."""
    endpoint: str                   # "token" | "devicecode" | "authorize"
    grant: str = None               # only for this grant_type (token)
    kind: str = "error"             # error | hold | oversize | close
    status: int = 400
    body: dict = None               # kind error: the JSON
    size: int = 0                   # kind oversize: body bytes
    release: threading.Event = None  # kind hold: answer once set


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeIdP/1.0"

    def log_message(self, fmt, *args):      # quiet
        pass

    def do_GET(self):
        self.server.idp._dispatch(self, "GET")

    def do_POST(self):
        self.server.idp._dispatch(self, "POST")


class _HTTPSServer(http.server.ThreadingHTTPServer):
    """HTTPS with the handshake in the request's own thread."""
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, idp, ctx):
        self.idp = idp
        self.ctx = ctx
        super().__init__(addr, _Handler)

    def finish_request(self, request, client_address):
        request.settimeout(30)
        try:
            tls = self.ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            self.idp.handshake_errors.append("%s: %s" % (type(e).__name__, e))
            return
        with self.idp.cond:
            self.idp.live_socks.add(tls)
        try:
            super().finish_request(tls, client_address)
        except (OSError, ssl.SSLError):
            pass
        finally:
            with self.idp.cond:
                self.idp.live_socks.discard(tls)
            try:
                tls.close()
            except OSError:
                pass

    def handle_error(self, request, client_address):
        pass                                # the peer's doing


class FakeIdP:
    """The fake authorisation server (see the module's docstring)."""

    def __init__(self, ctx, host="127.0.0.1", port=0):
        self.cond = threading.Condition()
        self.requests = []
        self.access = {}                # token -> AccessToken
        self.refresh = {}               # token -> RefreshToken
        self.devices = {}               # device_code -> DeviceCode
        self.codes = {}                 # code -> AuthCode
        self.faults = []
        self.handshake_errors = []
        self.live_socks = set()
        self.holds = []                 # release events of held answers
        # What the test may change at any time:
        self.expires_in = 3600          # reported access token lifetime
        self.interval = 1               # device polling interval, seconds
        self.rotate = False             # a refresh returns a new refresh
                                        # token and revokes the old one
        self.refresh_returns_token = True   # echo the refresh token
                                            # (Microsoft) or not (Google)
        self.client_secret = None       # when set, required on /token
        self.authorize_user = None      # who consents at /authorize
        self.authorize_error = None     # e.g. "access_denied"
        self.server = _HTTPSServer((host, port), self, ctx)
        self.host = host
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    # ---------------------------------------------------------- addresses
    def url(self, endpoint):
        return "https://%s:%d/%s" % (self.host, self.port, endpoint)

    @property
    def verification_uri(self):
        return self.url("device")

    # ----------------------------------------------------------- controls
    def approve(self, code, user):
        """The user (a mailbox name) consents to the device code given by
        its user_code or device_code."""
        with self.cond:
            dev = self._device(code)
            dev.state, dev.user = "approved", user
            self.cond.notify_all()
        return dev

    def deny(self, code):
        with self.cond:
            self._device(code).state = "denied"

    def expire_device(self, code):
        with self.cond:
            self._device(code).state = "expired"

    def _device(self, code):
        for dev in self.devices.values():
            if code in (dev.user_code, dev.device_code):
                return dev
        raise AssertionError("the IdP issued no device code %r" % code)

    def fail_next(self, endpoint, error=None, description=None, status=400,
                  grant=None, body=None):
        """The next request to endpoint (of grant type grant) is answered
        with a JSON error."""
        if body is None:
            body = {"error": error}
            if description is not None:
                body["error_description"] = description
        self._add_fault(Fault(endpoint, grant, "error", status, body))

    def slow_down_next(self):
        """The next device-code poll is answered slow_down (RFC 8628)."""
        self.fail_next("token", "slow_down", grant=DEVICE_GRANT)

    def hold_next(self, endpoint, grant=None):
        """The next request to endpoint gets its answer only once the
        returned event is set (teardown sets it)."""
        ev = threading.Event()
        self._add_fault(Fault(endpoint, grant, "hold", release=ev))
        with self.cond:
            self.holds.append(ev)
        return ev

    def oversize_next(self, endpoint, size=200 * 1024, grant=None):
        """The next answer is the normal one padded to size bytes: a
        daemon that does not bound the body would accept it."""
        self._add_fault(Fault(endpoint, grant, "oversize", size=size))

    def close_next(self, endpoint, grant=None):
        """The next request's connection is closed without an answer."""
        self._add_fault(Fault(endpoint, grant, "close"))

    def _add_fault(self, fault):
        with self.cond:
            self.faults.append(fault)

    def expire_access(self, token=None):
        """Access tokens (one, or all issued so far) stop being good at
        the mail servers, whatever the daemon was told of their lifetime."""
        with self.cond:
            for tok in self.access.values():
                if token is None or tok.token == token:
                    tok.valid = False

    def revoke_refresh(self, user=None):
        """Refresh tokens (of user, or all) are no longer honoured."""
        with self.cond:
            for tok in self.refresh.values():
                if user is None or tok.user == user:
                    tok.valid = False

    # --------------------------------------------------- for the servers
    def check_access(self, token):
        """The AccessToken if token is good right now, else None."""
        with self.cond:
            tok = self.access.get(token)
            return tok if tok is not None and tok.valid else None

    # ------------------------------------------------------- observations
    def mark(self):
        """A position in the request record (for since=)."""
        with self.cond:
            return len(self.requests)

    def requests_of(self, endpoint=None, grant=None, since=0, status=None):
        with self.cond:
            return [r for r in self.requests[since:]
                    if (endpoint is None or r.endpoint == endpoint) and
                    (grant is None or r.grant == grant) and
                    (status is None or r.status == status)]

    def refreshes(self, since=0):
        return self.requests_of("token", "refresh_token", since)

    def wait_request(self, pred, timeout=10, since=0, what="a request"):
        """Wait for an answered request matching pred; return it."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for r in self.requests[since:]:
                    if r.answered is not None and pred(r):
                        return r
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        "the IdP saw no %s within %ss; it saw: %s"
                        % (what, timeout, self.summary(since)))
                self.cond.wait(left)

    def wait_grant(self, grant, timeout=10, since=0, status=200):
        return self.wait_request(
            lambda r: r.endpoint == "token" and r.grant == grant and
            r.status == status, timeout, since,
            "%s token request answered %s" % (grant, status))

    def summary(self, since=0):
        with self.cond:
            return "; ".join("#%d %s %s %s -> %s %s" % (
                r.n, r.method, r.endpoint, r.grant or "", r.status, r.note)
                for r in self.requests[since:]) or "nothing"

    def issued(self):
        """Every token and code handed out so far (for the log check)."""
        with self.cond:
            out = list(self.access) + list(self.refresh)
            out += [d.device_code for d in self.devices.values()]
            out += list(self.codes)
            return out

    def stop(self):
        with self.cond:
            for ev in self.holds:
                ev.set()
            socks = list(self.live_socks)
        self.server.shutdown()
        self.server.server_close()
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.thread.join(5)

    # ------------------------------------------------------------ serving
    def _dispatch(self, h, method):
        parsed = urllib.parse.urlsplit(h.path)
        endpoint = parsed.path.strip("/") or "other"
        if endpoint not in ("token", "devicecode", "authorize"):
            endpoint = "other"
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        form = {k: v[-1] for k, v in urllib.parse.parse_qs(
            body.decode("utf-8", "replace"), keep_blank_values=True).items()}
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(
            parsed.query, keep_blank_values=True).items()}
        with self.cond:
            req = Request(len(self.requests), endpoint, method, parsed.path,
                          query, form, dict(h.headers.items()),
                          at=time.monotonic())
            self._client_secret(req, h.headers.get("Authorization"))
            self.requests.append(req)
            fault = self._take_fault(req)
        if fault is not None and fault.kind == "hold":
            fault.release.wait(60)
            fault = None
        if fault is not None and fault.kind == "close":
            self._answered(req, None, None, "closed without an answer")
            h.close_connection = True
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if fault is not None and fault.kind == "error":
            status, answer, note = fault.status, fault.body, "scripted error"
        elif method == "GET" and endpoint == "authorize":
            return self._authorize(h, req)
        elif method == "POST" and endpoint == "token":
            status, answer, note = self._token(req)
        elif method == "POST" and endpoint == "devicecode":
            status, answer, note = self._devicecode(req)
        else:
            status, answer, note = 404, {"error": "not_found"}, "no such page"
        data = json.dumps(answer).encode()
        if fault is not None and fault.kind == "oversize":
            padded = dict(answer, padding="")
            pad = fault.size - len(json.dumps(padded).encode())
            padded["padding"] = "x" * max(0, pad)
            data = json.dumps(padded).encode()
            note += " (oversized to %d bytes)" % len(data)
        self._answered(req, status, answer, note)
        self._send(h, status, data)

    def _client_secret(self, req, authorization):
        if authorization and authorization.lower().startswith("basic "):
            try:
                raw = base64.b64decode(authorization[6:]).decode()
                _, _, secret = raw.partition(":")
                req.client_secret = urllib.parse.unquote_plus(secret)
                req.basic_auth = True
            except (ValueError, UnicodeDecodeError):
                req.client_secret = "<undecodable Basic header>"
        if "client_secret" in req.form:
            req.client_secret = req.form["client_secret"]

    def _take_fault(self, req):
        for i, f in enumerate(self.faults):
            if f.endpoint == req.endpoint and \
                    (f.grant is None or f.grant == req.grant):
                return self.faults.pop(i)
        return None

    def _answered(self, req, status, answer, note):
        with self.cond:
            req.status, req.answer, req.note = status, answer, note
            req.answered = time.monotonic()
            self.cond.notify_all()

    @staticmethod
    def _send(h, status, data, content_type="application/json"):
        try:
            h.send_response(status)
            h.send_header("Content-Type", content_type)
            h.send_header("Content-Length", str(len(data)))
            h.send_header("Cache-Control", "no-store")
            h.end_headers()
            h.wfile.write(data)
        except OSError:
            pass                        # the daemon gave up (a timeout)

    # -- /devicecode --
    def _devicecode(self, req):
        client_id = req.form.get("client_id")
        if not client_id:
            return 400, {"error": "invalid_request",
                         "error_description": "client_id missing"}, "bad"
        with self.cond:
            dev = DeviceCode(new_token("dc-"), user_code(), client_id,
                             req.form.get("scope", ""))
            self.devices[dev.device_code] = dev
        return 200, {
            "device_code": dev.device_code,
            "user_code": dev.user_code,
            "verification_uri": self.verification_uri,
            "expires_in": 900,
            "interval": self.interval,
            "message": "To sign in, use a web browser to open the page %s "
                       "and enter the code %s to authenticate."
                       % (self.verification_uri, dev.user_code),
        }, "device code %s" % dev.user_code

    # -- /authorize --
    def _authorize(self, h, req):
        q = req.query
        redirect = q.get("redirect_uri")
        if not redirect or not q.get("client_id"):
            note = "no redirect_uri or client_id"
            self._answered(req, 400, {"error": "invalid_request"}, note)
            return self._send(h, 400, b"invalid_request", "text/plain")
        params = {"state": q.get("state", "")}
        if q.get("response_type") != "code":
            params["error"] = "unsupported_response_type"
        elif q.get("code_challenge_method") != "S256" or \
                not q.get("code_challenge"):
            params["error"] = "invalid_request"
            params["error_description"] = "PKCE S256 required"
        elif self.authorize_error:
            params["error"] = self.authorize_error
        else:
            with self.cond:
                code = AuthCode(new_token("ac-"), q["client_id"], redirect,
                                q["code_challenge"],
                                q["code_challenge_method"],
                                q.get("scope", ""), q.get("state", ""),
                                self.authorize_user)
                self.codes[code.code] = code
            params["code"] = code.code
        sep = "&" if "?" in redirect else "?"
        location = redirect + sep + urllib.parse.urlencode(params)
        self._answered(req, 302, params, params.get("error", "consented"))
        try:
            h.send_response(302)
            h.send_header("Location", location)
            h.send_header("Content-Length", "0")
            h.end_headers()
        except OSError:
            pass

    # -- /token --
    def _token(self, req):
        f = req.form
        if self.client_secret is not None and \
                req.client_secret != self.client_secret:
            return 401, {"error": "invalid_client",
                         "error_description": "client secret missing or "
                                              "wrong"}, "bad client secret"
        grant = f.get("grant_type")
        handler = {
            "refresh_token": self._grant_refresh,
            "authorization_code": self._grant_code,
            "client_credentials": self._grant_client,
            DEVICE_GRANT: self._grant_device,
        }.get(grant)
        if handler is None:
            return 400, {"error": "unsupported_grant_type"}, \
                "grant %r" % grant
        if not f.get("client_id") and not req.basic_auth:
            return 400, {"error": "invalid_request",
                         "error_description": "client_id missing"}, \
                "no client_id"
        with self.cond:
            return handler(req)

    def _issue(self, user, scope, client_id, refresh=True):
        """Access (and refresh) tokens, under the lock."""
        acc = AccessToken(new_token("at-"), user, scope, client_id)
        self.access[acc.token] = acc
        answer = {"token_type": "Bearer", "access_token": acc.token,
                  "expires_in": self.expires_in, "scope": scope}
        if refresh:
            ref = RefreshToken(new_token("rt-"), user, scope, client_id)
            self.refresh[ref.token] = ref
            answer["refresh_token"] = ref.token
        return answer

    def _grant_device(self, req):
        dev = self.devices.get(req.form.get("device_code"))
        if dev is None:
            return 400, {"error": "invalid_grant",
                         "error_description": "unknown device_code"}, \
                "unknown device code"
        dev.polls.append(req.at)
        if dev.state == "pending":
            return 400, {"error": "authorization_pending"}, "pending"
        if dev.state == "denied":
            return 400, {"error": "access_denied",
                         "error_description": "the user declined"}, "denied"
        if dev.state == "expired":
            return 400, {"error": "expired_token"}, "expired"
        if dev.state == "redeemed":
            return 400, {"error": "invalid_grant",
                         "error_description": "AADSTS54005: OAuth2 "
                         "Authorization code was already redeemed"}, \
                "redeemed again"
        dev.state = "redeemed"
        return 200, self._issue(dev.user, dev.scope, dev.client_id), \
            "tokens for %s" % dev.user

    def _grant_code(self, req):
        f = req.form
        code = self.codes.get(f.get("code"))
        if code is None:
            return 400, {"error": "invalid_grant",
                         "error_description": "unknown code"}, "unknown code"
        if code.used:
            return 400, {"error": "invalid_grant",
                         "error_description": "AADSTS54005: OAuth2 "
                         "Authorization code was already redeemed"}, \
                "code redeemed again"
        code.used = True
        if f.get("redirect_uri") != code.redirect_uri:
            return 400, {"error": "invalid_grant",
                         "error_description": "redirect_uri differs"}, \
                "redirect_uri %r != %r" % (f.get("redirect_uri"),
                                           code.redirect_uri)
        verifier = f.get("code_verifier") or ""
        if s256(verifier) != code.challenge:
            return 400, {"error": "invalid_grant",
                         "error_description": "PKCE verification failed"}, \
                "PKCE mismatch"
        return 200, self._issue(code.user, code.scope, code.client_id), \
            "tokens for %s (PKCE ok)" % code.user

    def _grant_refresh(self, req):
        ref = self.refresh.get(req.form.get("refresh_token"))
        if ref is None or not ref.valid:
            return 400, {"error": "invalid_grant",
                         "error_description": "AADSTS70000: The provided "
                         "grant has expired due to it being revoked"}, \
                "refresh token unknown or revoked"
        answer = self._issue(ref.user, ref.scope, ref.client_id,
                             refresh=self.rotate)
        if self.rotate:
            ref.valid = False
        elif self.refresh_returns_token:
            answer["refresh_token"] = ref.token
        return 200, answer, "refreshed for %s%s" % (
            ref.user, " (rotated)" if self.rotate else "")

    def _grant_client(self, req):
        if not req.client_secret:
            return 401, {"error": "invalid_client",
                         "error_description": "AADSTS7000215: Invalid "
                         "client secret provided."}, "no client secret"
        return 200, self._issue(None, req.form.get("scope", ""),
                                req.form.get("client_id"), refresh=False), \
            "app token"
