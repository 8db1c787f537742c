"""Upstream connection failures: refused, connect timeout, handshake timeout.

The client must get the protocol error line within a bounded time that
matches the configured timeout, and the log must say why.
"""

import time

from expectations import SECRET
from harness import case, check, expect_error_line, expect_log
from test_tls import send_quietly

PROTOCOLS = {p: {"protocol": p} for p in ("imap", "pop3", "smtp")}


def fail_and_time(t, svc, protocol="imap"):
    """Connect through the daemon; return (daemon, log mark, seconds)."""
    d = t.daemon(svc)
    mark = d.mark()
    t0 = time.monotonic()
    c = t.connect(svc)
    send_quietly(c, b"a1 LOGIN alice " + SECRET + b"\r\n")
    expect_error_line(c, protocol)
    return d, mark, time.monotonic() - t0


@case(params=PROTOCOLS, valgrind=True)
def test_connection_refused(t, protocol):
    """Nothing listens on the remote port."""
    port = t.ports.take()
    svc = t.service("127.0.0.1:%d" % port, protocol)
    d, mark, secs = fail_and_time(t, svc, protocol)
    expect_log(d, "refused", since=mark)
    check(secs < 3, "error took %.1fs for a refused connection", secs)


@case()
def test_connect_timeout(t):
    """A remote that never answers the SYN: connect_timeout = 1."""
    bh = t.blackhole()
    svc = t.service(bh.address, connect_timeout=1)
    d, mark, secs = fail_and_time(t, svc)
    expect_log(d, "connect_timeout", since=mark)
    check(0.8 <= secs <= 6, "connect timeout after %.1fs (want ~1s)", secs)


@case()
def test_handshake_timeout(t):
    """A server that accepts and never speaks: handshake_timeout = 1."""
    srv = t.server("silent", tls=False)
    svc = t.service(srv, handshake_timeout=1)
    d, mark, secs = fail_and_time(t, svc)
    expect_log(d, "handshake_timeout", since=mark)
    check(0.8 <= secs <= 6, "handshake timeout after %.1fs (want ~1s)", secs)
    rec = srv.conn(0).wait_done(10)
    check(SECRET not in rec.raw, "client bytes reached the server")
