"""TLS 1.3 with mbedTLS 3.6: offered by default, min_tls = 1.3, tickets.

These need a daemon built against mbedTLS 3.6, which `make` builds by
default; against the system's 2.28 (`make MBEDTLS=system check`, TLS 1.2
only) they are skipped, saying so.  Three tests run with either library:
min_tls = 1.3 is a clear configuration error with 2.28, the start-up line
names the library (with a warning for 2.28, whose branch has ended, and
none for a current 3.6), and `mailtlsd -V` names the library and the code
that runs AES-GCM.

TLS 1.3 resumption uses the tickets the server sends after the handshake;
the daemon's log line "[svc#N] connected to ADDR with TLSv1.3, SUITE" ends
in ", resumed" when the server took the ticket, and the server side records
ssl's session_reused: both must agree.  In TLS 1.3 a server judges the
client certificate after the client's handshake is over, and refuses with
an alert on the first read: the client must still get the error line.
"""

import re
import subprocess
import threading

from client import noop
from daemon import check_config
from expectations import GREETING, SECRET
from harness import (Skip, case, check, expect_error_line, expect_log,
                     expect_nothing_forwarded, wait_until)
from servers import behave_echo

CONNECTED = (r"\[%s#\d+\] connected to \S+ with (TLSv1\.[23]), ([^,]+)"
             r"(, resumed)?$")
READY = r"\] ready in the pool$"


def library_version(t):
    """The mbedTLS version the daemon runs with, from `mailtlsd -V`."""
    out = subprocess.run([t.binary, "-V"], capture_output=True, text=True,
                         timeout=10, stdin=subprocess.DEVNULL).stdout
    m = re.search(r"\(mbedTLS (\d+)\.(\d+)\.(\d+)\)", out)
    check(m is not None, "no mbedTLS version in `mailtlsd -V`: %r", out)
    return tuple(int(x) for x in m.groups())


def need_tls13(t):
    v = library_version(t)
    if v < (3, 6, 0):
        raise Skip("mailtlsd is built against mbedTLS %d.%d.%d, which has "
                   "no TLS 1.3; the default build (make check) has 3.6"
                   % v)


def behave_echo_reused(srv, st, rec):
    """The echo behaviour, recording whether TLS resumed."""
    rec.result["reused"] = st.tls.session_reused
    behave_echo(srv, st, rec)


def server(t, **kw):
    srv = t.server(**kw)
    srv.behaviour = behave_echo_reused
    return srv


class FreshContexts:
    """Stands in for an SSLContext: a new one (new ticket keys) for every
    connection, so no ticket is ever taken; certs[i] is connection i's."""

    def __init__(self, t, certs):
        self.t = t
        self.certs = list(certs)
        self.n = 0
        self.lock = threading.Lock()

    def wrap_bio(self, *args, **kw):
        with self.lock:
            cert = self.certs[min(self.n, len(self.certs) - 1)]
            self.n += 1
        return self.t.tls_context(cert).wrap_bio(*args, **kw)


def session(t, d, svc, srv, token, name="svc"):
    """One client through svc: (version, suite, resumed per the log,
    resumed per the server)."""
    mark = d.mark()
    before = srv.count()
    c = t.connect(svc)
    c.expect_line(GREETING["imap"])
    noop(c, "imap", token)
    line = d.wait_log(CONNECTED % re.escape(name), since=mark,
                      what="the connected line")
    m = re.search(CONNECTED % re.escape(name), line)
    rec = srv.conn(before)
    c.close()
    rec.wait_done(10)
    check(rec.tls_version == m.group(1), "log says %s, server says %s",
          m.group(1), rec.tls_version)
    return m.group(1), m.group(2), bool(m.group(3)), rec.result["reused"]


def expect_session(got, resumed, what):
    version, suite, log, server_side = got
    check(version == "TLSv1.3", "%s: negotiated %s", what, version)
    check(suite.startswith("TLS1-3-"), "%s: suite %s", what, suite)
    check(log == resumed and server_side == resumed, "%s: log says %s, "
          "server says %s, expected %s", what,
          "resumed" if log else "full handshake",
          "resumed" if server_side else "full handshake",
          "resumed" if resumed else "a full handshake")


def send_quietly(c, data):
    try:
        c.send(data)
    except OSError:
        pass


def expect_refused(t, srv, svc, reason_regex):
    """The client gets one error line, the server nothing, the log why."""
    d = t.daemon(svc)
    mark = d.mark()
    c = t.connect(svc)
    send_quietly(c, b"a1 LOGIN alice " + SECRET + b"\r\n")
    expect_error_line(c, "imap")
    expect_nothing_forwarded(srv.conn(0))
    d.wait_log(reason_regex, since=mark, what="the reason")
    return d


# ------------------------------------------------------------- negotiation

@case()
def test_offered_by_default(t):
    """A server speaking TLS 1.2 and 1.3 gets TLS 1.3 with a TLS 1.3 suite."""
    need_tls13(t)
    srv = server(t)
    svc = t.service(srv)
    d = t.daemon(svc)
    expect_session(session(t, d, svc, srv, b"one"), False, "first")


@case()
def test_tls12_server_still_works(t):
    """With 3.6 a TLS 1.2-only server (RSA key) is still reached."""
    need_tls13(t)
    srv = server(t, profile="tls12")
    svc = t.service(srv)
    d = t.daemon(svc)
    version, _, _, _ = session(t, d, svc, srv, b"one")
    check(version == "TLSv1.2", "negotiated %s", version)


@case()
def test_min_tls_13(t):
    """min_tls = 1.3 against a TLS 1.3 server works."""
    need_tls13(t)
    srv = server(t)
    svc = t.service(srv, min_tls="1.3")
    d = t.daemon(svc)
    expect_session(session(t, d, svc, srv, b"one"), False, "first")


@case()
def test_min_tls_13_refuses_tls12_server(t):
    """min_tls = 1.3: a TLS 1.2-only server is refused, and the log says
    it does not support TLS 1.3."""
    need_tls13(t)
    srv = t.server(profile="tls12")
    svc = t.service(srv, min_tls="1.3")
    expect_refused(t, srv, svc, r"does not support TLS 1\.3")


@case()
def test_min_tls_13_configuration(t):
    """mbedTLS 2.28: min_tls = 1.3 is a configuration error that names the
    library; 3.6: the configuration is fine."""
    svc = t.service("127.0.0.1:1", min_tls="1.3")
    path = t.tmp + "/min13.conf"
    with open(path, "w") as f:
        f.write(t.config([svc]))
    rc, out, err = check_config(t.binary, path)
    v = library_version(t)
    if v >= (3, 6, 0):
        check(rc == 0 and "configuration OK" in out, "exit %s: %s%s", rc,
              out, err)
        return
    check(rc == 1, "exit %s, expected 1: %s%s", rc, out, err)
    want = ("min_tls = 1.3 needs mbedTLS 3 with TLS 1.3; this build has "
            "mbedTLS %d.%d.%d" % v)
    check(re.search(r"^%s:\d+: .*%s" % (re.escape(path), re.escape(want)),
                    err, re.M), "expected FILE:LINE: ...%s in: %s", want,
          err)


@case()
def test_start_names_the_library(t):
    """The daemon names its mbedTLS at start; 2.28 draws a warning (the
    branch reached its end of life), and any warning names the version."""
    v = library_version(t)
    d = t.daemon(t.service("127.0.0.1:1"))
    name = "%d.%d.%d" % v
    d.wait_log(r"starting with mbedTLS %s$" % re.escape(name))
    warning = d.find_log(r"mbedTLS %s( is older|: )" % re.escape(name))
    if v < (3, 0, 0):
        check(warning is not None and "end of life" in warning,
              "no end-of-life warning for mbedTLS %s:\n%s", name, d.tail())
    if v >= (3, 6, 7):
        check(warning is None, "a warning for mbedTLS %s: %s", name, warning)


@case()
def test_version_names_library_and_gcm(t):
    """mailtlsd -V: the version line, then the library (its version and
    TLS versions) and which code runs AES-GCM."""
    out = subprocess.run([t.binary, "-V"], capture_output=True, text=True,
                         timeout=10, stdin=subprocess.DEVNULL).stdout
    v = library_version(t)
    check(re.search(r"^TLS library: mbedTLS %d\.%d\.%d, .*; TLS (1\.3 and "
                    r"1\.2|1\.2 only);" % v, out, re.M), "-V: %r", out)
    if v >= (3, 6, 0):
        check("; TLS 1.3 and 1.2;" in out, "-V: %r", out)
    check(re.search(r"^AES-GCM: mbedTLS", out, re.M), "-V: %r", out)


# -------------------------------------------------------------- resumption

@case()
def test_tickets_resume(t):
    """Connection 1 does a full handshake and gets tickets; 2 and 3 resume
    with them (PSK with ECDHE), and the server agrees."""
    need_tls13(t)
    srv = server(t)
    svc = t.service(srv)
    d = t.daemon(svc)
    expect_session(session(t, d, svc, srv, b"one"), False, "first")
    expect_session(session(t, d, svc, srv, b"two"), True, "second")
    expect_session(session(t, d, svc, srv, b"three"), True, "third")


@case()
def test_tickets_resume_min_tls_13(t):
    """The same with min_tls = 1.3."""
    need_tls13(t)
    srv = server(t)
    svc = t.service(srv, min_tls="1.3")
    d = t.daemon(svc)
    expect_session(session(t, d, svc, srv, b"one"), False, "first")
    expect_session(session(t, d, svc, srv, b"two"), True, "second")


@case()
def test_refused_ticket_is_verified(t):
    """A server that does not take the ticket gets a full, fully verified
    handshake: a wrong name fails even with a ticket on offer."""
    need_tls13(t)
    srv = t.server(tls=False)
    srv.tls = FreshContexts(t, ["good", "wrong_name", "good"])
    srv.behaviour = behave_echo_reused
    svc = t.service(srv)
    d = t.daemon(svc)
    expect_session(session(t, d, svc, srv, b"one"), False, "first")
    mark = d.mark()
    c = t.connect(svc)
    expect_error_line(c, "imap")
    expect_log(d, "name_mismatch", since=mark)
    expect_session(session(t, d, svc, srv, b"three"), False, "third")


@case()
def test_pins_with_resumption(t):
    """pin_sha256 (verify = yes, and verify = no where the pin is checked on
    every handshake): resumed TLS 1.3 sessions keep working."""
    need_tls13(t)
    srv = server(t)
    a = t.service(srv, name="a", pin_sha256=t.certs.pin_good)
    b = t.service(srv, name="b", pin_sha256=t.certs.pin_good, verify="no")
    d = t.daemon(a, b)
    expect_session(session(t, d, a, srv, b"a1", "a"), False, "a, first")
    expect_session(session(t, d, a, srv, b"a2", "a"), True, "a, second")
    for i in range(3):
        version, _, _, reused = session(t, d, b, srv, b"b%d" % i, "b")
        check(version == "TLSv1.3", "b: negotiated %s", version)
        # The server resumes; the pin is checked on the session's key.
        check(reused == (i > 0), "b%d: server says %s", i,
              "resumed" if reused else "full handshake")


@case()
def test_pool_member_resumes(t):
    """A pool member reads its tickets while it waits; the refill resumes."""
    need_tls13(t)
    srv = server(t)
    svc = t.service(srv, pool_size=1)
    d = t.daemon(svc)
    d.wait_log(READY, what="the first member", timeout=10)
    c = t.connect(svc)
    c.expect_line(GREETING["imap"])
    noop(c, "imap", b"pooled")
    refill = srv.conn(1, timeout=10)
    wait_until(lambda: "reused" in refill.result, 10, "the refill")
    check(refill.tls_version == "TLSv1.3", "refill: %s", refill.tls_version)
    check(refill.result["reused"] is True, "the server did not resume")
    lines = wait_until(lambda: [l for l in d.log()
                                if re.search(CONNECTED % "svc", l)][1:],
                       10, "the refill's connected line")
    check(lines[0].endswith(", resumed"), "refill: %s", lines[0])


# ---------------------------------------------------- client certificates

@case()
def test_client_cert_presented(t):
    """client_cert/client_key: a TLS 1.3 server requiring one accepts us."""
    need_tls13(t)
    srv = server(t, client_ca=t.certs.ca)
    svc = t.service(srv, client_cert=t.certs.client,
                    client_key=t.certs.client_key)
    d = t.daemon(svc)
    expect_session(session(t, d, svc, srv, b"one"), False, "first")
    check(srv.conn(0).client_cert, "server saw no client certificate")


@case()
def test_client_cert_missing(t):
    """Without client_cert the TLS 1.3 server refuses after the handshake:
    the client still gets the error line, the server no data, and the log
    says a client certificate is required."""
    need_tls13(t)
    srv = t.server(client_ca=t.certs.ca)
    svc = t.service(srv)
    expect_refused(t, srv, svc, r"server requires a client certificate "
                   r"\(alert certificate_required\)")


@case()
def test_client_cert_rejected(t):
    """A client certificate the server does not trust: refused the same
    way, and the log says the server rejected it."""
    need_tls13(t)
    srv = t.server(client_ca=t.certs.self_signed)
    svc = t.service(srv, client_cert=t.certs.client,
                    client_key=t.certs.client_key)
    expect_refused(t, srv, svc, r"server rejected the client certificate "
                   r"\(alert \w+\)")
