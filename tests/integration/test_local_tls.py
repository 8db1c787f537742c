"""TLS toward the mail client (local_tls = starttls | implicit).

The clients are the real ones: Python's imaplib/poplib/smtplib with
starttls()/stls() or their _SSL classes, and curl with --ssl-reqd, each
trusting only the certificate the daemon generated in state_dir (the
hostname 127.0.0.1 is checked against its subjectAltNames).  The servers
are StarttlsServer (tls = starttls upstream) and ImplicitServer, the same
real post-TLS server behind implicit TLS.  Attack tests check the three
outcomes: the client is closed, the log gives the reason, and the server
received nothing from the client (no line inside TLS, SECRET nowhere).
"""

import base64
import hashlib
import imaplib
import os
import poplib
import pwd
import re
import shutil
import smtplib
import socket
import ssl
import stat
import subprocess
import tempfile

from daemon import Daemon, check_config
from expectations import SECRET
from faults import is_asan_build, shim_so
from harness import Skip, case, check, expect_error_line
from starttls_server import MESSAGE, StarttlsServer
from test_starttls import DAEMON_GREETING, DAEMON_LINES, expect_record

PROTOCOLS = ("imap", "pop3", "smtp")
PER_PROTOCOL = {p: {"protocol": p} for p in PROTOCOLS}
UPSTREAMS = {"%s-%s" % (p, u): {"protocol": p, "upstream": u}
             for p in PROTOCOLS for u in ("starttls", "implicit")}

# ------------------------------------------------------------ expectations
# mailtlsd's own plaintext opening (daemon/proto_local.c); server_name is
# mail.test.
LOCAL_GREETING = {
    "imap": b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] "
            b"mailtlsd ready\r\n",
    "pop3": b"+OK mailtlsd ready\r\n",
    "smtp": b"220 mail.test ESMTP mailtlsd\r\n",
}
LOCAL_STARTTLS = {              # the command and mailtlsd's go-ahead
    "imap": (b"s1 STARTTLS\r\n", b"s1 OK Begin TLS negotiation now\r\n"),
    "pop3": (b"STLS\r\n", b"+OK Begin TLS negotiation\r\n"),
    "smtp": (b"STARTTLS\r\n", b"220 2.0.0 Ready to start TLS\r\n"),
}
# A login sent in plaintext, and mailtlsd's refusal of each line.
PLAIN_LOGIN = {
    "imap": [(b"a1 LOGIN alice " + SECRET + b"\r\n",
              b"a1 NO [PRIVACYREQUIRED] use STARTTLS first\r\n")],
    "pop3": [(b"USER alice\r\n", b"-ERR use STLS first\r\n"),
             (b"PASS " + SECRET + b"\r\n", b"-ERR use STLS first\r\n")],
    "smtp": [(b"AUTH PLAIN " + base64.b64encode(b"\0alice\0" + SECRET) +
              b"\r\n", b"530 5.7.0 Must issue a STARTTLS command first\r\n")],
}
# The greeting an implicit-TLS server sends: the client must see it with
# local_tls = implicit, and never after its own STARTTLS.
IMPLICIT_GREETING = {
    "imap": b"* OK [CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN AUTH=LOGIN "
            b"X-POSTTLS] SERVER-GREETING ready\r\n",
    "pop3": b"+OK SERVER-GREETING ready\r\n",
    "smtp": b"220-mail.test ESMTP SERVER-GREETING\r\n"
            b"220 mail.test ready\r\n",
}
HIDDEN = ("STARTTLS", "STLS", "LOGINDISABLED")

# Daemon log lines (daemon/localcert.c, daemon/session.c).
FINGERPRINT = r"([0-9A-F]{2}(?::[0-9A-F]{2}){31})"
GENERATED = r"local_tls: generated self-signed certificate (\S+), SHA-256 " \
            r"fingerprint " + FINGERPRINT
REUSED = r"local_tls: using the self-signed certificate (\S+), SHA-256 " \
         r"fingerprint " + FINGERPRINT
CLIENT_REASON = r"\] client \S+: %s"


class ImplicitServer(StarttlsServer):
    """StarttlsServer's real post-TLS server behind implicit TLS: TLS from
    the first byte, then a greeting (marked SERVER-GREETING)."""

    def _dialogue(self, st, rec):
        return True                     # no plaintext at all

    def _serve_imap(self, st, rec):
        st.sendall(IMPLICIT_GREETING["imap"])
        super()._serve_imap(st, rec)

    def _serve_pop3(self, st, rec):
        st.sendall(IMPLICIT_GREETING["pop3"])
        super()._serve_pop3(st, rec)

    def _serve_smtp(self, st, rec):
        st.sendall(IMPLICIT_GREETING["smtp"])
        super()._serve_smtp(st, rec)


# ----------------------------------------------------------------- helpers

def state_dir(t):
    return os.path.join(t.tmp, "state")


def setup(t, protocol, local_tls, upstream="starttls", service_opts=None,
          daemon_opts=None):
    """A server and a daemon with local_tls: (server, service, daemon)."""
    cls = StarttlsServer if upstream == "starttls" else ImplicitServer
    srv = cls(protocol, t.tls_context())
    t.stack.callback(srv.stop)
    opts = {"tls": upstream, "local_tls": local_tls}
    opts.update(service_opts or {})
    svc = t.service(srv, protocol, **opts)
    dopts = {"state_dir": state_dir(t)}
    dopts.update(daemon_opts or {})
    d = t.daemon(svc, **dopts)
    return srv, svc, d


def trust(t):
    """A client context that trusts only the generated certificate."""
    return ssl.create_default_context(
        cafile=os.path.join(state_dir(t), "local.crt"))


def upstream_pre(protocol, upstream):
    """What the server may receive in plaintext: the daemon's own lines."""
    return DAEMON_LINES[protocol] if upstream == "starttls" else []


def expect_nothing_received(srv):
    """Every server connection ended with no client line inside TLS."""
    for rec in srv.wait_conns(0):
        rec.wait_done(10)
        check(rec.post == [], "the server received %r", rec.post[:5])
        check(rec.logged_in_as is None, "the server saw a login")
        check(SECRET not in rec.raw, "SECRET reached the server")


def expect_hidden(caps, what):
    for word in HIDDEN:
        check(word not in caps, "%s shows %s: %r", what, word, caps)


def fingerprint_of(path):
    """The SHA-256 fingerprint of a PEM certificate, as the daemon logs it."""
    with open(path) as f:
        der = ssl.PEM_cert_to_DER_cert(f.read())
    return ":".join("%02X" % b for b in hashlib.sha256(der).digest())


def presented_der(port, host="127.0.0.1"):
    """The DER certificate the daemon presents (implicit)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=10) as s:
        with ctx.wrap_socket(s) as tls:
            return tls.getpeercert(binary_form=True)


def presented_fingerprint(port, host="127.0.0.1"):
    """The fingerprint of the certificate the daemon presents (implicit)."""
    der = presented_der(port, host)
    return ":".join("%02X" % b for b in hashlib.sha256(der).digest())


# ------------------------------------------------ what each client does

def use_imap(m):
    """Capabilities as after TLS, login, select, fetch, logout."""
    caps = m.capabilities
    expect_hidden(caps, "imaplib")
    check("AUTH=PLAIN" in caps and "X-POSTTLS" in caps,
          "imaplib misses the server's list: %r", caps)
    check(m.login("alice", "secret")[0] == "OK", "login failed")
    typ, data = m.select("INBOX")
    check(typ == "OK" and data == [b"1"], "select: %r %r", typ, data)
    typ, data = m.fetch("1", "(RFC822)")
    check(typ == "OK" and data[0][1] == MESSAGE, "fetch: %r %r", typ,
          data[0][1][:100] if typ == "OK" else data)
    check(m.logout()[0] == "BYE", "logout")


def use_pop3(p):
    capa = p.capa()
    expect_hidden(capa, "poplib")
    check("X-POSTTLS" in capa, "poplib misses the server's list: %r", capa)
    p.user("alice")
    p.pass_("secret")
    _, lines, _ = p.retr(1)
    check(b"\r\n".join(lines) + b"\r\n" == MESSAGE, "retr differs: %r",
          lines[:5])
    p.quit()


def use_smtp(s):
    code, _ = s.ehlo("client.test")
    check(code == 250, "ehlo %d", code)
    check(not s.has_extn("starttls"), "smtplib sees STARTTLS after TLS")
    check("x-posttls" in s.esmtp_features, "smtplib misses the server's "
          "list: %r", s.esmtp_features)
    check(s.login("alice", "secret")[0] == 235, "login")
    check(s.sendmail("alice@mail.test", ["bob@mail.test"], MESSAGE) == {},
          "sendmail refused")
    s.quit()


def starttls_client(t, svc, protocol):
    """The Python client: greeting, STARTTLS/STLS, then use_*()."""
    ctx = trust(t)
    if protocol == "imap":
        m = imaplib.IMAP4("127.0.0.1", svc.port, timeout=10)
        try:
            check(m.welcome + b"\r\n" == LOCAL_GREETING["imap"], "welcome "
                  "%r", m.welcome)
            check("STARTTLS" in m.capabilities and
                  "LOGINDISABLED" in m.capabilities, "before TLS: %r",
                  m.capabilities)
            m.starttls(ssl_context=ctx)
            use_imap(m)
        finally:
            if m.state != "LOGOUT":
                m.shutdown()
    elif protocol == "pop3":
        p = poplib.POP3("127.0.0.1", svc.port, timeout=10)
        try:
            check(p.getwelcome() + b"\r\n" == LOCAL_GREETING["pop3"],
                  "welcome %r", p.getwelcome())
            check("STLS" in p.capa(), "no STLS before TLS")
            p.stls(context=ctx)
            use_pop3(p)
        finally:
            p.close()
    else:
        s = smtplib.SMTP("127.0.0.1", svc.port, local_hostname="client.test",
                         timeout=10)
        try:
            code, _ = s.ehlo()
            check(code == 250 and s.has_extn("starttls"), "no STARTTLS "
                  "before TLS: %r", s.esmtp_features)
            check(not s.has_extn("auth"), "AUTH offered before TLS")
            s.starttls(context=ctx)
            use_smtp(s)
        finally:
            s.close()


def implicit_client(t, svc, protocol):
    """The Python client over implicit TLS, then use_*()."""
    ctx = trust(t)
    if protocol == "imap":
        m = imaplib.IMAP4_SSL("127.0.0.1", svc.port, ssl_context=ctx,
                              timeout=10)
        try:
            use_imap(m)
        finally:
            if m.state != "LOGOUT":
                m.shutdown()
        return m.welcome
    if protocol == "pop3":
        p = poplib.POP3_SSL("127.0.0.1", svc.port, context=ctx, timeout=10)
        try:
            welcome = p.getwelcome()
            use_pop3(p)
        finally:
            p.close()
        return welcome
    s = smtplib.SMTP_SSL("127.0.0.1", svc.port, context=ctx, timeout=10,
                         local_hostname="client.test")
    try:
        use_smtp(s)
    finally:
        s.close()
    return None


def expect_server_saw_login(srv, protocol, upstream):
    rec = srv.conn(0).wait_done(10)
    expect_record(rec, protocol, pre=upstream_pre(protocol, upstream))
    if protocol == "smtp":
        check(rec.result.get("body") == MESSAGE, "server got %r",
              rec.result.get("body", b"")[:100])


# ------------------------------------------------------ real clients

@case(params=UPSTREAMS, valgrind=True)
def test_python_starttls(t, protocol, upstream):
    """imaplib starttls(), poplib stls(), smtplib starttls() through
    local_tls = starttls, to a STARTTLS or an implicit-TLS server."""
    srv, svc, d = setup(t, protocol, "starttls", upstream)
    starttls_client(t, svc, protocol)
    expect_server_saw_login(srv, protocol, upstream)


@case(params=UPSTREAMS, valgrind=True)
def test_python_implicit(t, protocol, upstream):
    """IMAP4_SSL, POP3_SSL, SMTP_SSL through local_tls = implicit."""
    srv, svc, d = setup(t, protocol, "implicit", upstream)
    welcome = implicit_client(t, svc, protocol)
    if upstream == "implicit" and protocol == "pop3":
        check(welcome + b"\r\n" == IMPLICIT_GREETING["pop3"],
              "not the server's greeting: %r", welcome)
    elif upstream == "starttls" and welcome is not None:
        check(welcome + b"\r\n" == DAEMON_GREETING[protocol],
              "not the daemon's greeting: %r", welcome)
    expect_server_saw_login(srv, protocol, upstream)
    d.wait_log(r"client \S+: TLS with TLSv1\.[23], ", what="client TLS line")


def curl(t, args, timeout=30):
    if shutil.which("curl") is None:
        raise Skip("curl is not installed")
    cmd = ["curl", "-sS", "--noproxy", "*", "--max-time", "20",
           "--cacert", os.path.join(state_dir(t), "local.crt"),
           "--user", "alice:secret"] + args
    p = subprocess.run(cmd, capture_output=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    check(p.returncode == 0, "curl exited %d: %s", p.returncode,
          p.stderr.decode(errors="replace")[-300:])
    return p.stdout


CURL_SCHEME = {("imap", "starttls"): "imap", ("imap", "implicit"): "imaps",
               ("pop3", "starttls"): "pop3", ("pop3", "implicit"): "pop3s",
               ("smtp", "starttls"): "smtp", ("smtp", "implicit"): "smtps"}


@case(params={"%s-%s" % (p, l): {"protocol": p, "local_tls": l}
              for p in PROTOCOLS for l in ("starttls", "implicit")},
      valgrind=True)
def test_curl(t, protocol, local_tls):
    """curl --ssl-reqd (STARTTLS) and imaps/pop3s/smtps (implicit)."""
    srv, svc, d = setup(t, protocol, local_tls)
    url = "%s://127.0.0.1:%d" % (CURL_SCHEME[(protocol, local_tls)],
                                 svc.port)
    extra = ["--ssl-reqd"] if local_tls == "starttls" else []
    if protocol == "imap":
        out = curl(t, extra + [url + "/INBOX;MAILINDEX=1"])
        check(out == MESSAGE, "curl fetched %r", out[:200])
    elif protocol == "pop3":
        out = curl(t, extra + [url + "/1"])
        check(out == MESSAGE, "curl retrieved %r", out[:200])
    else:
        msg = os.path.join(t.tmp, "message.eml")
        with open(msg, "wb") as f:
            f.write(MESSAGE)
        curl(t, extra + [url, "--mail-from", "alice@mail.test",
                         "--mail-rcpt", "bob@mail.test", "--upload-file",
                         msg])
    expect_server_saw_login(srv, protocol, "starttls")


# ------------------------------------------------ one greeting only

def raw_starttls(t, svc, protocol, greeting=True):
    """A raw client through the local opening and STARTTLS: the TLS socket."""
    c = t.connect(svc)
    if greeting:
        c.expect_line(LOCAL_GREETING[protocol])
    command, go_ahead = LOCAL_STARTTLS[protocol]
    c.send(command)
    c.expect_line(go_ahead)
    tls = trust(t).wrap_socket(c.sock, server_hostname="127.0.0.1")
    tls.settimeout(10)
    return tls


def tls_line(tls):
    data = bytearray()
    while not data.endswith(b"\n"):
        piece = tls.recv(1)
        check(piece, "closed after %r", bytes(data))
        data += piece
    return bytes(data)


NOOP = {"imap": (b"n1 NOOP\r\n", b"n1 OK"),
        "pop3": (b"NOOP\r\n", b"+OK\r\n"),   # a greeting has text
        "smtp": (b"NOOP\r\n", b"250 ")}


@case(params=dict(
    {k: dict(v, pool=0) for k, v in UPSTREAMS.items()},
    **{"%s-implicit-pooled" % p: {"protocol": p, "upstream": "implicit",
                                  "pool": 1} for p in PROTOCOLS}),
      valgrind=True)
def test_no_second_greeting(t, protocol, upstream, pool):
    """After the client's STARTTLS the first line it reads answers its first
    command: neither the server's greeting nor mailtlsd's comes again."""
    opts = {"pool_size": pool} if pool else {}
    srv, svc, d = setup(t, protocol, "starttls", upstream, opts)
    if pool:
        d.wait_log(r"\] ready in the pool$", timeout=10,
                   what="a pooled connection")
    tls = raw_starttls(t, svc, protocol)
    command, want = NOOP[protocol]
    tls.sendall(command)
    got = tls_line(tls)
    check(got.startswith(want), "first line after TLS is %r, not the "
          "answer to %r", got, command)
    tls.close()


# --------------------------------------------------------------- attacks

@case(params=PER_PROTOCOL, valgrind=True)
def test_plaintext_login_refused(t, protocol):
    """A login before STARTTLS is answered by mailtlsd and never reaches
    the server; SMTP's EHLO offers no AUTH before TLS."""
    srv, svc, d = setup(t, protocol, "starttls")
    c = t.connect(svc)
    c.expect_line(LOCAL_GREETING[protocol])
    if protocol == "smtp":
        c.send(b"EHLO client.test\r\n")
        c.expect_line(b"250-mail.test\r\n")
        c.expect_line(b"250 STARTTLS\r\n")
    for line, refusal in PLAIN_LOGIN[protocol]:
        c.send(line)
        c.expect_line(refusal)
    c.close()
    d.wait_log(CLIENT_REASON % "left before STARTTLS", what="the close")
    expect_nothing_received(srv)


INJECTED = {
    "imap": b"a1 LOGIN alice " + SECRET + b"\r\n",
    "pop3": b"USER alice\r\nPASS " + SECRET + b"\r\n",
    "smtp": b"AUTH PLAIN " + base64.b64encode(b"\0alice\0" + SECRET) +
            b"\r\n",
}


@case(params=PER_PROTOCOL, valgrind=True)
def test_injection_same_segment(t, protocol):
    """STARTTLS and a pipelined login in one segment: mailtlsd says go
    ahead, finds bytes before any ClientHello, and closes."""
    srv, svc, d = setup(t, protocol, "starttls")
    c = t.connect(svc)
    c.expect_line(LOCAL_GREETING[protocol])
    command, go_ahead = LOCAL_STARTTLS[protocol]
    c.send(command + INJECTED[protocol])
    c.expect_line(go_ahead)
    rest = c.read_to_eof(10)
    check(rest == b"", "more after the go-ahead: %r", rest[:200])
    d.wait_log(CLIENT_REASON % "data injected after the client's STARTTLS",
               what="the injection reason")
    expect_nothing_received(srv)


@case(params=PER_PROTOCOL, valgrind=True)
def test_injection_after_go_ahead(t, protocol):
    """Plaintext where the ClientHello is due: the handshake fails, close."""
    srv, svc, d = setup(t, protocol, "starttls")
    c = t.connect(svc)
    c.expect_line(LOCAL_GREETING[protocol])
    command, go_ahead = LOCAL_STARTTLS[protocol]
    c.send(command)
    c.expect_line(go_ahead)
    c.send(INJECTED[protocol])
    rest = c.read_to_eof(10)
    check(rest == b"" or rest[0] == 0x15, "not a TLS alert: %r", rest[:200])
    d.wait_log(CLIENT_REASON % "TLS handshake failed: client did not start "
               "TLS", what="the handshake failure")
    expect_nothing_received(srv)


@case(valgrind=True)
def test_implicit_plaintext_client(t):
    """A plaintext client on an implicit-TLS port gets nothing, not even a
    protocol line, and its login reaches nobody."""
    srv, svc, d = setup(t, "imap", "implicit")
    c = t.connect(svc)
    c.send(INJECTED["imap"])
    rest = c.read_to_eof(10)
    check(rest == b"" or rest[0] == 0x15, "not a TLS alert: %r", rest[:200])
    d.wait_log(CLIENT_REASON % "TLS handshake failed: client did not start "
               "TLS", what="the handshake failure")
    expect_nothing_received(srv)


@case(params={"implicit": {"local_tls": "implicit", "protocol": "imap"},
              "starttls-imap": {"local_tls": "starttls", "protocol": "imap"},
              "starttls-pop3": {"local_tls": "starttls", "protocol": "pop3"},
              "starttls-smtp": {"local_tls": "starttls",
                                "protocol": "smtp"}}, valgrind=True)
def test_client_handshake_timeout(t, local_tls, protocol):
    """A client that never does TLS is closed after handshake_timeout; one
    still in the plaintext opening first gets the protocol's error line."""
    srv, svc, d = setup(t, protocol, local_tls,
                        service_opts={"handshake_timeout": 1})
    c = t.connect(svc)
    if local_tls == "starttls":
        c.expect_line(LOCAL_GREETING[protocol])
        line = expect_error_line(c, protocol)
        check(b"no STARTTLS in time" in line, "error line %r", line)
    else:
        rest = c.read_to_eof(10)
        check(rest == b"", "got %r", rest[:200])
    d.wait_log(CLIENT_REASON % ("TLS handshake timed out"
                                if local_tls == "implicit" else
                                "no STARTTLS within handshake_timeout"))
    expect_nothing_received(srv)


@case(valgrind=True)
def test_client_distrusts_certificate(t):
    """A client that does not trust the certificate: the log says so."""
    srv, svc, d = setup(t, "imap", "implicit")
    ctx = ssl.create_default_context(cafile=t.certs.ca)   # another CA
    with socket.create_connection(("127.0.0.1", svc.port), timeout=10) as s:
        try:
            ctx.wrap_socket(s, server_hostname="127.0.0.1")
            raise AssertionError("the handshake succeeded")
        except ssl.SSLCertVerificationError:
            pass
    # TLS 1.2: the client's alert; 1.3 (mbedTLS 3.6): unreadable alert.
    d.wait_log(CLIENT_REASON % "TLS handshake failed: client .*does not "
               "trust mailtlsd's certificate")
    expect_nothing_received(srv)


# ------------------------------------------------ the generated certificate

@case(timeout=60, valgrind=True)
def test_certificate_persists(t):
    """Generated once (0600 in a 0700 state_dir, fingerprint logged and
    presented), reused after a restart, made again for a new listen
    address at a restart and at a reload."""
    state = state_dir(t)
    srv, svc, d = setup(t, "imap", "implicit")
    path, fp = re.search(GENERATED, d.wait_log(GENERATED)).groups()
    crt = os.path.join(state, "local.crt")
    key = os.path.join(state, "local.key")
    check(path == crt, "generated %s, not %s", path, crt)
    check(stat.S_IMODE(os.stat(state).st_mode) == 0o700, "state_dir mode")
    for f in (crt, key):
        check(stat.S_IMODE(os.stat(f).st_mode) == 0o600, "%s is %o", f,
              stat.S_IMODE(os.stat(f).st_mode))
    check(fingerprint_of(crt) == fp, "logged %s, file has %s", fp,
          fingerprint_of(crt))
    check(presented_fingerprint(svc.port) == fp, "presents another")
    with open(crt, "rb") as f:
        pem = f.read()
    check(d.stop() == 0, "first daemon did not stop cleanly")
    d.stopped_by_test = True

    # A restart reuses it as it is.
    d2 = t.daemon(svc, state_dir=state, name="restart")
    _, fp2 = re.search(REUSED, d2.wait_log(REUSED)).groups()
    check(fp2 == fp, "fingerprint changed: %s -> %s", fp, fp2)
    with open(crt, "rb") as f:
        check(f.read() == pem, "the file was rewritten")
    check(presented_fingerprint(svc.port) == fp, "presents another")
    check(d2.stop() == 0, "second daemon did not stop cleanly")
    d2.stopped_by_test = True

    # A new listen address the certificate does not cover: made again.
    port2 = t.ports.take("127.0.0.2")
    svc.opts["listen"] = [svc.opts["listen"], "127.0.0.2:%d" % port2]
    d3 = t.daemon(svc, state_dir=state, name="new-address")
    d3.wait_log(r"local_tls: generating a self-signed certificate .*"
                r"\(it does not cover 127\.0\.0\.2\)")
    _, fp3 = re.search(GENERATED, d3.wait_log(GENERATED)).groups()
    check(fp3 != fp, "not regenerated")
    ctx = trust(t)
    with socket.create_connection(("127.0.0.2", port2), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname="127.0.0.2") as tls:
            check(tls.recv(100).startswith(b"* OK"), "no greeting")

    # And at a reload.
    port3 = t.ports.take("127.0.0.3")
    svc.opts["listen"] = svc.opts["listen"] + ["127.0.0.3:%d" % port3]
    mark = d3.reload(t.config([svc], state_dir=state))
    d3.wait_log(r"\(it does not cover 127\.0\.0\.3\)", since=mark)
    d3.wait_log(r"configuration reloaded", since=mark)
    ctx = trust(t)
    with socket.create_connection(("127.0.0.3", port3), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname="127.0.0.3") as tls:
            check(tls.recv(100).startswith(b"* OK"), "no greeting")


@case(valgrind=True)
def test_configured_certificate(t):
    """local_cert/local_key: the daemon presents them and generates none."""
    srv, svc, d = setup(t, "imap", "implicit", service_opts={
        "local_cert": t.certs.good, "local_key": t.certs.key})
    ctx = ssl.create_default_context(cafile=t.certs.ca)
    with socket.create_connection(("127.0.0.1", svc.port), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname="mail.test") as tls:
            check(tls.recv(100).startswith(b"* OK"), "no greeting")
    check(not os.path.exists(state_dir(t)), "state_dir was made")


@case(valgrind=True)
def test_check_config(t):
    """-t accepts local_tls without writing anything; a bad local_cert is
    an error with its line."""
    srv = StarttlsServer("imap", t.tls_context())
    t.stack.callback(srv.stop)
    svc = t.service(srv, "imap", tls="starttls", local_tls="starttls")
    d = t.daemon(svc, start=False, state_dir=state_dir(t))
    rc, out, err = check_config(t.binary, d.conf_path)
    check(rc == 0 and "configuration OK" in out, "-t: %s %s", out, err)
    check(not os.path.exists(state_dir(t)), "-t made state_dir")
    svc.opts.update(local_cert=os.path.join(t.tmp, "missing.pem"),
                    local_key=t.certs.key)
    d.write_config(t.config([svc], state_dir=state_dir(t)))
    rc, out, err = check_config(t.binary, d.conf_path)
    check(rc == 1 and "local_cert" in err, "-t: %s %s", out, err)


@case(valgrind=True)
def test_remote_clients_warning(t):
    """allow_remote_clients with local_tls = none warns at start; with
    local TLS it does not."""
    srv = StarttlsServer("imap", t.tls_context())
    t.stack.callback(srv.stop)
    plain = t.service(srv, "imap", name="plain", host="0.0.0.0",
                      tls="starttls", allow_remote_clients="yes")
    secure = t.service(srv, "imap", name="secure", host="0.0.0.0",
                       tls="starttls", allow_remote_clients="yes",
                       local_tls="starttls")
    d = t.daemon(plain, secure, state_dir=state_dir(t))
    d.wait_log(r"\[plain\] allow_remote_clients = yes with local_tls = "
               r"none: passwords cross the network")
    check(d.find_log(r"\[secure\] allow_remote_clients") is None,
          "warned for the service with local TLS")


# ------------------------------------------------ user = and state_dir

def nobody():
    """(uid, gid, name) of the unprivileged test user, or Skip."""
    if os.geteuid() != 0:
        raise Skip("dropping privileges needs the tests to run as root")
    try:
        pw = pwd.getpwnam("nobody")
    except KeyError:
        raise Skip("no user nobody")
    return pw.pw_uid, pw.pw_gid, pw.pw_name


def open_home(t):
    """A directory the user nobody can reach, with a copy of the test CA:
    after the privilege drop a reload reads the file and the CA again."""
    home = tempfile.mkdtemp(prefix="mailtlsd-localtls-")
    t.stack.callback(shutil.rmtree, home, True)
    os.chmod(home, 0o755)
    ca = os.path.join(home, "ca.crt")
    shutil.copyfile(t.certs.ca, ca)
    os.chmod(ca, 0o644)
    return home, ca


def home_daemon(t, home, name, text):
    """A daemon whose config (readable by anyone) lives in home."""
    d = Daemon(t.binary, home, name)
    t.daemons.append(d)
    d.write_config(text)
    os.chmod(d.conf_path, 0o644)
    t.stack.callback(t._finish_daemon, d)
    return d.start()


def owner_and_mode(path):
    st = os.lstat(path)
    return st.st_uid, stat.S_IMODE(st.st_mode)


@case(timeout=60, valgrind=True)
def test_user_takes_over_state_dir(t):
    """A certificate made by a start without user = (root's 0700 state_dir,
    0600 files) is given to the user at a start with user = nobody and
    kept; every reload after the privilege drop then works, one that
    changes nothing and one that needs a new certificate."""
    uid, gid, name = nobody()
    home, ca = open_home(t)
    state = os.path.join(home, "state")
    crt = os.path.join(state, "local.crt")
    key = os.path.join(state, "local.key")
    srv = StarttlsServer("imap", t.tls_context())
    t.stack.callback(srv.stop)
    svc = t.service(srv, "imap", tls="starttls", local_tls="implicit",
                    ca_file=ca)

    d = home_daemon(t, home, "as-root", t.config([svc], state_dir=state))
    _, fp = re.search(GENERATED, d.wait_log(GENERATED)).groups()
    check(d.stop() == 0, "the daemon as root did not stop cleanly")
    d.stopped_by_test = True
    for path, mode in ((state, 0o700), (crt, 0o600), (key, 0o600)):
        check(owner_and_mode(path) == (0, mode), "%s: %r", path,
              owner_and_mode(path))

    text = t.config([svc], state_dir=state, user=name)
    d2 = home_daemon(t, home, "as-nobody", text)
    _, fp2 = re.search(REUSED, d2.wait_log(REUSED)).groups()
    check(fp2 == fp, "made again: %s -> %s", fp, fp2)
    d2.wait_log(r"running as user %s" % name)
    for path, mode in ((state, 0o700), (crt, 0o600), (key, 0o600)):
        check(owner_and_mode(path) == (uid, mode), "%s: %r, not nobody's",
              path, owner_and_mode(path))
    check(os.stat(state).st_gid == gid, "state_dir group")

    # A reload that changes nothing about TLS.
    mark = d2.reload()
    d2.wait_log(r"configuration reloaded|reload failed", since=mark)
    check(d2.find_log(r"reload failed", since=mark) is None,
          "reload failed:\n%s", "\n".join(d2.log(mark)))
    check(d2.find_log(r"generating", since=mark) is None, "made again")
    check(presented_fingerprint(svc.port) == fp, "presents another")

    # One with a new listen address: nobody makes the new certificate.
    port2 = t.ports.take("127.0.0.2")
    svc.opts["listen"] = [svc.opts["listen"], "127.0.0.2:%d" % port2]
    mark = d2.reload(t.config([svc], state_dir=state, user=name))
    d2.wait_log(r"configuration reloaded|reload failed", since=mark)
    check(d2.find_log(r"reload failed", since=mark) is None,
          "reload failed:\n%s", "\n".join(d2.log(mark)))
    _, fp3 = re.search(GENERATED, d2.wait_log(GENERATED, since=mark)).groups()
    check(fp3 != fp and presented_fingerprint(port2, "127.0.0.2") == fp3,
          "the new certificate is not presented")
    check(owner_and_mode(crt) == (uid, 0o600), "new local.crt: %r",
          owner_and_mode(crt))


@case(timeout=60, valgrind=True)
def test_state_dir_fifo(t):
    """A FIFO named local.crt is never opened for reading, which would wait
    for a writer for ever: not at start, not in a reload, where it would
    stop the event loop.  A new certificate takes its place."""
    state = state_dir(t)
    crt = os.path.join(state, "local.crt")
    os.mkdir(state, 0o700)
    os.mkfifo(crt, 0o600)
    srv, svc, d = setup(t, "imap", "implicit")
    d.wait_log(r"generating a self-signed certificate .*\(%s is not a "
               r"regular file\)" % re.escape(crt))
    _, fp = re.search(GENERATED, d.wait_log(GENERATED)).groups()
    check(presented_fingerprint(svc.port) == fp, "presents another")

    os.unlink(crt)
    os.mkfifo(crt, 0o600)
    mark = d.reload()
    d.wait_log(r"configuration reloaded|reload failed", since=mark,
               timeout=10)
    check(d.find_log(r"reload failed", since=mark) is None,
          "reload failed:\n%s", "\n".join(d.log(mark)))
    _, fp2 = re.search(GENERATED, d.wait_log(GENERATED, since=mark)).groups()
    check(presented_fingerprint(svc.port) == fp2, "presents another")
    check(stat.S_ISREG(os.lstat(crt).st_mode), "local.crt is no file")


# Which open of local.crt / local.key (1: the first) the swapfile shim
# follows with a swap for a symbolic link to the test CA's mail.test pair.
SWAPS = {
    "at_check": {"local.crt": 1, "local.key": 1},
    "before_load": {"local.crt": 2, "local.key": 1},
    "cert": {"local.crt": 1},
    "key": {"local.key": 1},
}
SWAPPED = r"swapfile: (\S+) now links to (\S+) \(after open (\d+)\)"


@case(timeout=60, params={k: {"swaps": v} for k, v in SWAPS.items()},
      valgrind=True)
def test_swapped_after_check(t, swaps):
    """The service user owns state_dir and can replace local.crt and
    local.key with symbolic links to any pair root can read, right after
    mailtlsd opened them to check them (tests/faults/swapfile.c): the
    daemon presents the certificate it generated, whose fingerprint is
    the one it logged, never the one linked to."""
    if is_asan_build(t.binary):
        raise Skip("the daemon is the ASan build, which must come first "
                   "in the process: the swapfile shim cannot be preloaded")
    so = shim_so(t, "swapfile")
    state = state_dir(t)
    srv, svc, d = setup(t, "imap", "implicit")
    d.wait_log(GENERATED)
    check(d.stop() == 0, "first daemon did not stop cleanly")
    d.stopped_by_test = True
    crt = os.path.join(state, "local.crt")
    with open(crt) as f:
        original = ssl.PEM_cert_to_DER_cert(f.read())
    target = {"local.crt": t.certs.good, "local.key": t.certs.key}
    env = {"LD_PRELOAD": so}
    for i, (name, nth) in enumerate(sorted(swaps.items())):
        env["SWAPFILE%d" % i] = "%d %s %s" % (
            nth, os.path.join(state, name), target[name])

    d2 = t.daemon(svc, state_dir=state, name="swapped", env=env)
    _, fp = re.search(REUSED, d2.wait_log(REUSED)).groups()
    done = [re.search(SWAPPED, l).group(1) for l in d2.log()
            if re.search(SWAPPED, l)]
    for name, nth in swaps.items():
        if nth == 1:        # every start opens each file at least once
            check(os.path.join(state, name) in done, "%s was not swapped:"
                  "\n%s", name, d2.tail(15))
    der = presented_der(svc.port)
    served = ":".join("%02X" % b for b in hashlib.sha256(der).digest())
    check(der == original, "presents another certificate than the one "
          "generated (logged %s, presents %s)", fp, served)
    check(served == fp, "logged fingerprint %s, presents %s", fp, served)


def fifo_config(t, svc, state):
    """A daemon (not started) for svc; the paths of a FIFO and its config."""
    fifo = os.path.join(t.tmp, "fifo")
    if not os.path.exists(fifo):
        os.mkfifo(fifo, 0o600)
    d = t.daemon(svc, start=False, state_dir=state)
    return d, fifo


def expect_start_fails(t, d, phrase):
    """-t and a start both fail at once, naming phrase."""
    rc, out, err = check_config(t.binary, d.conf_path)
    check(rc == 1 and phrase in err, "-t: %s %s", out, err)
    p = subprocess.run([t.binary, "-f", "-c", d.conf_path],
                       capture_output=True, timeout=10,
                       stdin=subprocess.DEVNULL)
    text = p.stderr.decode(errors="replace")
    check(p.returncode != 0 and phrase in text, "start: %s %s",
          p.returncode, text)


@case(valgrind=True)
def test_fifo_files_refused(t):
    """A FIFO as local_cert, as client_key or as the configuration file is
    refused with a clear error by -t and at start, without waiting for a
    writer (run by the harness with a timeout)."""
    srv = StarttlsServer("imap", t.tls_context())
    t.stack.callback(srv.stop)
    state = state_dir(t)
    svc = t.service(srv, "imap", tls="starttls", local_tls="starttls")
    d, fifo = fifo_config(t, svc, state)

    svc.opts.update(local_cert=fifo, local_key=t.certs.key)
    d.write_config(t.config([svc], state_dir=state))
    expect_start_fails(t, d, "local_cert %s: not a regular file" % fifo)

    del svc.opts["local_cert"], svc.opts["local_key"]
    svc.opts.update(client_cert=t.certs.good, client_key=fifo)
    d.write_config(t.config([svc], state_dir=state))
    expect_start_fails(t, d, "client_key %s: not a regular file" % fifo)

    rc, out, err = check_config(t.binary, fifo)
    check(rc == 1 and "%s: not a regular file" % fifo in err, "-t: %s %s",
          out, err)
    p = subprocess.run([t.binary, "-f", "-c", fifo], capture_output=True,
                       timeout=10, stdin=subprocess.DEVNULL)
    text = p.stderr.decode(errors="replace")
    check(p.returncode != 0 and "%s: not a regular file" % fifo in text,
          "start: %s %s", p.returncode, text)


@case(valgrind=True)
def test_state_dir_open_to_others(t):
    """A state_dir others may write to, where anyone could plant a key:
    the start fails, saying so, and nothing is written there."""
    state = state_dir(t)
    os.mkdir(state)
    os.chmod(state, 0o777)
    srv = StarttlsServer("imap", t.tls_context())
    t.stack.callback(srv.stop)
    svc = t.service(srv, "imap", tls="starttls", local_tls="starttls")
    d = t.daemon(svc, start=False, state_dir=state)
    p = subprocess.run([t.binary, "-f", "-c", d.conf_path],
                       capture_output=True, stdin=subprocess.DEVNULL,
                       timeout=15)
    err = p.stderr.decode(errors="replace")
    check(p.returncode == 1, "exit status %s: %s", p.returncode, err[-300:])
    check("local_tls: state_dir %s is writable by group or others" % state
          in err, "stderr: %s", err[-300:])
    check(os.listdir(state) == [], "written: %r", os.listdir(state))
