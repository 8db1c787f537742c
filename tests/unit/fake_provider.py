#!/usr/bin/python3
"""An HTTPS server that plays an OAuth2 provider for the unit tests.

    fake_provider.py DIR

makes a throwaway self-signed certificate for IP 127.0.0.1 only (DIR/cert.pem)
and one more that signs nothing it serves (DIR/other.pem), listens on an
ephemeral port of 127.0.0.1, prints the port on a line of its own and serves
until its standard input ends (the test that started it went away).

Plain HTTP test endpoints (check_http.c):
  POST /echo          200, JSON: the form as received and some headers
  POST /big           a body over 64 KiB with Content-Length
  POST /big-chunked   the same without Content-Length
  POST /slow          answers after 5 s
  POST /redirect      302 to /echo
  POST /status/NNN    status NNN, a small JSON body

OAuth2 endpoints (check_oauth2.c):
  POST /device        RFC 8628 device authorisation
  GET  /authorize     the user "consents" at once: 302 to redirect_uri
  POST /token         refresh_token, authorization_code (PKCE S256 checked),
                      device_code and client_credentials grants
  POST /control       JSON: change the behaviour (see CONTROL below)
  POST /stats         JSON: what was asked so far

Every token endpoint answer is scripted through /control; the defaults
issue tokens that last an hour and rotate refresh tokens.
"""

import base64
import hashlib
import http.server
import json
import os
import socketserver
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse

LOCK = threading.Lock()

# What /control may change.
CONTROL = {
    "expires_in": 3600,         # lifetime of issued access tokens
    "rotate": True,             # a new refresh token with each refresh
    "refresh_delay": 0.0,       # seconds before a refresh is answered
    "refresh_error": None,      # {"status": 400, "body": {...}}: next refresh
    "device_script": [],        # answers of successive device polls, then ok
    "device_interval": 1,
    "device_expires_in": 600,
    "device_verification_key": "verification_uri",
    "client_secret": "",        # required when not empty
    "token_error": None,        # {"status":..,"body":..}: every token call
}

STATE = {
    "refreshes": 0,             # refresh_token grants answered
    "refresh_tokens_seen": [],
    "device_polls": [],         # times of device_code grants
    "device_codes_issued": 0,
    "codes": {},                # code -> (challenge, redirect_uri)
    "client_credentials": 0,
    "valid_refresh": set(),
    "serial": 0,
    "forms": [],                # every form posted to /token and /device
}


def new_tokens(with_refresh=True):
    """A fresh access token (and refresh token) answer."""
    STATE["serial"] += 1
    n = STATE["serial"]
    body = {"access_token": "at-SECRET-%d" % n, "token_type": "Bearer",
            "expires_in": CONTROL["expires_in"], "scope": "s1 s2"}
    if with_refresh:
        rt = "rt-SECRET-%d" % n
        STATE["valid_refresh"].add(rt)
        body["refresh_token"] = rt
    return body


def s256(verifier):
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def reply(self, status, body, headers=()):
        data = body if isinstance(body, bytes) else \
            json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def form(self):
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length).decode("utf-8") if length else ""
        return raw, dict(urllib.parse.parse_qsl(raw, keep_blank_values=True))

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path != "/authorize":
            self.reply(404, {"error": "not_found"})
            return
        q = dict(urllib.parse.parse_qsl(url.query))
        code = "code-SECRET-%d" % len(STATE["codes"])
        with LOCK:
            STATE["codes"][code] = (q.get("code_challenge"),
                                    q.get("redirect_uri"), q)
        target = "%s?%s" % (q["redirect_uri"], urllib.parse.urlencode(
            {"code": code, "state": q.get("state", "")}))
        self.send_response(302)
        self.send_header("Location", target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        raw, form = self.form()
        path = self.path
        if path == "/echo":
            self.reply(200, {"form": raw,
                             "ua": self.headers.get("User-Agent"),
                             "accept": self.headers.get("Accept"),
                             "ctype": self.headers.get("Content-Type")})
        elif path == "/big":
            self.reply(200, b"x" * (64 * 1024 + 1))
        elif path == "/big-chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"y" * 8192
            for _ in range(9):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/slow":
            time.sleep(5)
            self.reply(200, {"late": True})
        elif path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/echo")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path.startswith("/status/"):
            self.reply(int(path[len("/status/"):]), {"status": "scripted"})
        elif path == "/control":
            with LOCK:
                CONTROL.update(json.loads(form.get("json", "{}")))
            self.reply(200, {"ok": True})
        elif path == "/stats":
            with LOCK:
                stats = {k: v for k, v in STATE.items()
                         if k not in ("valid_refresh", "codes")}
                stats["codes"] = {c: v[2] for c, v in STATE["codes"].items()}
            self.reply(200, stats)
        elif path == "/device":
            self.device(form, raw)
        elif path == "/token":
            self.token(form, raw)
        else:
            self.reply(404, {"error": "not_found"})

    def device(self, form, raw):
        with LOCK:
            STATE["forms"].append(raw)
            STATE["device_codes_issued"] += 1
            n = STATE["device_codes_issued"]
        self.reply(200, {
            "device_code": "dc-SECRET-%d" % n,
            "user_code": "UC-%04d" % n,
            CONTROL["device_verification_key"]: "https://example.test/device",
            "expires_in": CONTROL["device_expires_in"],
            "interval": CONTROL["device_interval"]})

    def token(self, form, raw):
        with LOCK:
            STATE["forms"].append(raw)
        if CONTROL["token_error"]:
            err = CONTROL["token_error"]
            self.reply(err["status"], err["body"])
            return
        secret = CONTROL["client_secret"]
        if secret and form.get("client_secret") != secret:
            self.reply(401, {"error": "invalid_client",
                             "error_description": "bad secret"})
            return
        grant = form.get("grant_type")
        if grant == "refresh_token":
            self.refresh(form)
        elif grant == "authorization_code":
            self.code(form)
        elif grant == "urn:ietf:params:oauth:grant-type:device_code":
            self.device_poll(form)
        elif grant == "client_credentials":
            with LOCK:
                STATE["client_credentials"] += 1
                body = new_tokens(with_refresh=False)
            self.reply(200, body)
        else:
            self.reply(400, {"error": "unsupported_grant_type"})

    def refresh(self, form):
        time.sleep(CONTROL["refresh_delay"])
        with LOCK:
            STATE["refreshes"] += 1
            rt = form.get("refresh_token")
            STATE["refresh_tokens_seen"].append(rt)
            err = CONTROL["refresh_error"]
            if err:
                CONTROL["refresh_error"] = None
                status, body = err["status"], err["body"]
            elif rt not in STATE["valid_refresh"]:
                status, body = 400, {"error": "invalid_grant",
                                     "error_description": "unknown token"}
            else:
                if CONTROL["rotate"]:
                    STATE["valid_refresh"].discard(rt)
                body = new_tokens(with_refresh=CONTROL["rotate"])
                status = 200
        self.reply(status, body)

    def code(self, form):
        with LOCK:
            entry = STATE["codes"].pop(form.get("code"), None)
            if entry is None:
                status, body = 400, {"error": "invalid_grant",
                                     "error_description": "AADSTS54005: "
                                     "code already redeemed",
                                     "error_codes": [54005]}
            elif s256(form.get("code_verifier", "")) != entry[0]:
                status, body = 400, {"error": "invalid_grant",
                                     "error_description": "PKCE mismatch"}
            elif form.get("redirect_uri") != entry[1]:
                status, body = 400, {"error": "invalid_grant",
                                     "error_description": "redirect_uri"}
            else:
                status, body = 200, new_tokens()
        self.reply(status, body)

    def device_poll(self, form):
        with LOCK:
            STATE["device_polls"].append(time.monotonic())
            script = CONTROL["device_script"]
            step = script.pop(0) if script else None
            if step is None:
                status, body = 200, new_tokens()
            else:
                status, body = 400, {"error": step}
        self.reply(status, body)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def make_cert(directory, name, san):
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
         "-subj", "/CN=mailtlsd test provider",
         "-addext", "subjectAltName=" + san,
         "-keyout", os.path.join(directory, name + ".key"),
         "-out", os.path.join(directory, name + ".pem")],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main():
    directory = sys.argv[1]
    make_cert(directory, "cert", "IP:127.0.0.1")
    make_cert(directory, "other", "IP:127.0.0.1")
    server = Server(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(directory, "cert.pem"),
                        os.path.join(directory, "cert.key"))
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_address[1], flush=True)
    sys.stdin.read()            # until the test goes away


if __name__ == "__main__":
    main()
