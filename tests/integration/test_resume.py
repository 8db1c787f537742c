"""TLS session resumption: per service, the last verified session is offered.

The daemon's log line "[svc#N] connected to ADDR with TLSv1.2, SUITE" ends in
", resumed" when the server accepted the offered session; the server side
(PoolServer in test_pool.py) records ssl's session_reused for every
connection, and both must agree.  Python's server contexts resume TLS 1.2
sessions by ticket (default) or by session ID (OP_NO_TICKET, its session
cache); a server that refuses resumption gets a fresh SSLContext, with its
own ticket keys and cache, for every connection.
"""

import re
import ssl
import threading

from client import noop
from expectations import ERROR_PREFIX
from harness import case, check, expect_error_line, expect_log
from test_pool import (READY, PoolServer, numbered_greeting, pooled_client,
                       wait_log_count)

CONNECTED = (r"\[%s#\d+\] connected to \S+ with (TLSv1\.[23]), ([^,]+)"
             r"(, resumed)?$")
RESUMPTION = {"ticket": {"tickets": True}, "session_id": {"tickets": False}}


def context(t, cert="good", tickets=True):
    ctx = t.tls_context(cert, profile="tls12")
    if not tickets:
        ctx.options |= ssl.OP_NO_TICKET
    return ctx


class FreshContexts:
    """Stands in for an SSLContext: a new context for every connection, so
    no session can be resumed; certs[i] is connection i's certificate."""

    def __init__(self, t, certs):
        self.t = t
        self.certs = list(certs)
        self.n = 0
        self.lock = threading.Lock()

    def wrap_bio(self, *args, **kw):
        with self.lock:
            cert = self.certs[min(self.n, len(self.certs) - 1)]
            self.n += 1
        return context(self.t, cert).wrap_bio(*args, **kw)


def server(t, tls):
    srv = PoolServer(tls)
    t.stack.callback(srv.stop)
    return srv


def session(t, d, svc, srv, token, name="svc"):
    """One client through svc: (resumed per the log, per the server)."""
    mark = d.mark()
    before = srv.count()
    c = t.connect(svc)
    line = c.line()
    check(line == numbered_greeting("imap", before), "got %r, expected "
          "connection %d's greeting", line, before)
    noop(c, "imap", token)
    log = d.wait_log(CONNECTED % re.escape(name), since=mark,
                     what="the connected line")
    m = re.search(CONNECTED % re.escape(name), log)
    check(m.group(1) == "TLSv1.2", "negotiated %s", m.group(1))
    rec = srv.conn(before)
    c.close()
    rec.wait_done(10)
    return bool(m.group(3)), rec.result["reused"]


def expect_resumed(got, want, what):
    log, server_side = got
    check(log == want and server_side == want, "%s: log says %s, server "
          "says %s, expected %s", what,
          "resumed" if log else "full handshake",
          "reused" if server_side else "full handshake",
          "resumed" if want else "a full handshake")


@case(params=RESUMPTION, valgrind=True)
def test_second_handshake_resumes(t, tickets):
    """Connection 1 does a full handshake, 2 and 3 resume it."""
    srv = server(t, context(t, tickets=tickets))
    svc = t.service(srv)
    d = t.daemon(svc)
    expect_resumed(session(t, d, svc, srv, b"one"), False, "first")
    expect_resumed(session(t, d, svc, srv, b"two"), True, "second")
    expect_resumed(session(t, d, svc, srv, b"three"), True, "third")


@case(params={"server_name": {"other": {"server_name": "other.test"}},
              "pins": {"other": {"pin_sha256": "PIN"}}}, valgrind=True)
def test_other_service_not_resumed(t, other):
    """Service b reaches the same server under another server_name (or the
    same name with pins): its first connection never gets service a's
    session, even after a resumed; then it resumes its own."""
    srv = server(t, context(t, "two_names"))
    a = t.service(srv, name="a")
    b = t.service(srv, name="b", **{k: t.certs.pin_good if v == "PIN" else v
                                    for k, v in other.items()})
    d = t.daemon(a, b)
    expect_resumed(session(t, d, a, srv, b"a1", "a"), False, "a, first")
    expect_resumed(session(t, d, a, srv, b"a2", "a"), True, "a, second")
    expect_resumed(session(t, d, b, srv, b"b1", "b"), False, "b, first")
    expect_resumed(session(t, d, b, srv, b"b2", "b"), True, "b, second")
    expect_resumed(session(t, d, a, srv, b"a3", "a"), True, "a, third")


@case(valgrind=True)
def test_server_refuses_resumption(t):
    """A server that never resumes: every connection is a full handshake
    and works."""
    srv = server(t, FreshContexts(t, ["good"]))
    svc = t.service(srv)
    d = t.daemon(svc)
    for i in range(3):
        expect_resumed(session(t, d, svc, srv, b"full-%d" % i), False,
                       "connection %d" % i)


@case(valgrind=True)
def test_refused_resumption_is_verified(t):
    """When the server does not take the offered session, the certificate
    is verified in full: a wrong name fails even with a session on offer."""
    srv = server(t, FreshContexts(t, ["good", "wrong_name", "good"]))
    svc = t.service(srv)
    d = t.daemon(svc)
    expect_resumed(session(t, d, svc, srv, b"first"), False, "first")
    mark = d.mark()
    c = t.connect(svc)
    expect_error_line(c, "imap")
    expect_log(d, "name_mismatch", since=mark)
    check(srv.conn(1).wait_done(10).result.get("reused") in (None, False),
          "the server resumed")
    expect_resumed(session(t, d, svc, srv, b"third"), False, "third")


@case(valgrind=True)
def test_reload_forgets_sessions(t):
    """After SIGHUP the services are new: a session verified under the old
    settings is not offered (the new pin must be checked, and fails), and
    the same settings again start with a full handshake."""
    srv = server(t, context(t))
    svc = t.service(srv)
    d = t.daemon(svc)
    expect_resumed(session(t, d, svc, srv, b"one"), False, "first")
    expect_resumed(session(t, d, svc, srv, b"two"), True, "second")
    svc.opts["pin_sha256"] = t.certs.pin_other
    mark = d.reload(t.config([svc]))
    expect_log(d, "reloaded", since=mark, timeout=10)
    c = t.connect(svc)
    line = expect_error_line(c, "imap")
    check(line.startswith(ERROR_PREFIX["imap"]), "%r", line)
    expect_log(d, "pin", since=mark)
    del svc.opts["pin_sha256"]
    mark = d.reload(t.config([svc]))
    expect_log(d, "reloaded", since=mark, timeout=10)
    expect_resumed(session(t, d, svc, srv, b"three"), False,
                   "first after the reload")
    expect_resumed(session(t, d, svc, srv, b"four"), True,
                   "second after the reload")


@case(valgrind=True)
def test_pool_members_resume(t):
    """Pool members resume the service's session too."""
    srv = server(t, context(t))
    svc = t.service(srv, pool_size=1)
    d = t.daemon(svc)
    wait_log_count(d, READY, 1, what="the first member")
    first = wait_log_count(d, CONNECTED % "svc", 1, what="the first member")
    check(not first[0].endswith(", resumed"), "%s", first[0])
    c, n = pooled_client(t, svc)
    check(n == 0, "greeted by connection %d", n)
    refill = wait_log_count(d, CONNECTED % "svc", 2, what="the refill")[1]
    check(refill.endswith(", resumed"), "refill: %s", refill)
    check(srv.ctl(1).greeted.wait(5), "the refill was not greeted")
    check(srv.conn(1).result["reused"] is True, "server did not resume")
    noop(c, "imap", b"pooled")
