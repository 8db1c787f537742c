"""The connection pool (pool_size, pool_max_age): ready upstream connections.

A PoolServer greets every connection with its number ("conn N"), so a client
can tell which server connection it was given and whether that connection
was made before it came.  While a connection waits for its client, the test
can tell the server to close it or to say something more (Ctl.order); the
daemon must then discard and replace it.  Server-side counts and the daemon's
log are the events waited on: no sleeps for synchronisation.  Back-off is
checked against a listener that accepts and closes at once, counting and
timing every attempt, and the daemon's CPU time over the wait.
"""

import os
import queue
import re
import select
import signal
import socket
import threading
import time

from client import Client, login, noop
from expectations import echo_reply
from harness import case, check, expect_error_line, wait_until
from servers import TestServer
from starttls_server import StarttlsServer
from test_starttls import DAEMON_GREETING, DAEMON_LINES

PROTOCOLS = ("imap", "pop3", "smtp")
PER_PROTOCOL = {p: {"protocol": p} for p in PROTOCOLS}

# Daemon log lines (daemon/session.c, daemon/pool.c); case-insensitive.
READY = r"\] ready in the pool$"
CONNECTING = r"\] pool: connecting to "
TAKEN = r"\] client \S+, pooled connection to "
FAILED = (r"\[svc\] pool: connection failed \((\d+) in a row\); "
          r"next attempt in (\d+\.\d)s")
AGED = r"pool: pooled connection reached pool_max_age"
SERVER_TALKED = r"pool: server sent data while the connection waited in " \
                r"the pool"
SERVER_CLOSED = r"pool: server closed the (session|connection)"
CONNECTED = r"\] connected to \S+ with (TLSv1\.[23]), "


def numbered_greeting(protocol, n):
    """What PoolServer connection n says first (SMTP: two lines)."""
    if protocol == "imap":
        return b"* OK conn %d ready\r\n" % n
    if protocol == "pop3":
        return b"+OK conn %d ready\r\n" % n
    return b"220-mail.test conn %d\r\n220 mail.test ESMTP ready\r\n" % n


def greeting_number(line):
    """The N of a numbered greeting line."""
    m = re.search(rb"conn (\d+)", line)
    check(m is not None, "not a numbered greeting: %r", line)
    return int(m.group(1))


# ------------------------------------------------------------- the server

class Ctl:
    """Per connection: when it was accepted and greeted, orders for it."""

    def __init__(self):
        self.accepted_at = None
        self.greeted = threading.Event()
        self.talked = threading.Event()
        self.orders = queue.SimpleQueue()
        self.then = None                # run right after a "talk"
        self.r, self.w = socket.socketpair()

    def order(self, what, then=None):
        """"close" (close_notify + FIN), "drop" (FIN only) or "talk" (then
        call then(), from the connection's thread)."""
        self.then = then
        self.orders.put(what)
        self.w.send(b"!")


class PoolServer(TestServer):
    """A TLS echo server whose greeting carries the connection's number.

    refuse: while true, every new connection is closed right after accept.
    hold_after: greet connections with this number or higher only once
    release is set.  rec.result["reused"] says whether TLS resumed.
    """

    def __init__(self, tls, protocol="imap", refuse=False, hold_after=None,
                 split_greeting=None):
        super().__init__("echo", tls=tls, protocol=protocol)
        self.behaviour = behave_pooled
        self.refuse = refuse
        self.hold_after = hold_after
        self.release = threading.Event()
        self.split_greeting = split_greeting    # (Event, first part)
        self.ctls = {}
        self.ctl_lock = threading.Lock()

    def ctl(self, i):
        with self.ctl_lock:
            return self.ctls.setdefault(i, Ctl())

    def _serve(self, sock, rec):
        self.ctl(rec.id).accepted_at = time.monotonic()
        if self.refuse:
            rec.result["refused"] = True
            sock.close()
            rec.done.set()
            with self.cond:
                self.cond.notify_all()
            return
        super()._serve(sock, rec)

    def stop(self):
        super().stop()
        with self.ctl_lock:
            for c in self.ctls.values():
                c.r.close()
                c.w.close()

    def refused(self):
        return sum(1 for r in self.wait_conns(0) if r.result.get("refused"))


def wait_idle(st, ctl):
    """Until the client speaks (None) or the test gives an order."""
    while True:
        # Bytes already read from the socket (maybe with the handshake's
        # last record) would never wake select().
        if st.buf or (st.tls is not None and (st.tls.pending() or
                                              st.bio_in.pending)):
            return None
        ready, _, _ = select.select([st.sock, ctl.r], [], [], 60)
        if ctl.r in ready:
            ctl.r.recv(1)
            return ctl.orders.get()
        if st.sock in ready or not ready:
            return None


def behave_pooled(srv, st, rec):
    """Greet with the number, wait for the client or an order, then echo."""
    ctl = srv.ctl(rec.id)
    rec.result["reused"] = st.tls.session_reused if st.tls else None
    if srv.hold_after is not None and rec.id >= srv.hold_after:
        if not srv.release.wait(20):
            raise AssertionError("the test never released the greeting")
    greeting = numbered_greeting(srv.protocol, rec.id)
    if srv.split_greeting is not None:
        event, first = srv.split_greeting
        st.sendall(greeting[:first])
        if not event.wait(20):
            raise AssertionError("the test never released the greeting")
        greeting = greeting[first:]
    st.sendall(greeting)
    ctl.greeted.set()
    while True:
        order = wait_idle(st, ctl)
        if order == "close":
            st.close()
            return
        if order == "drop":
            try:
                st.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            st._drain(5)
            return
        if order == "talk":
            st.sendall(b"* OK unsolicited\r\n" if srv.protocol == "imap"
                       else b"+OK unsolicited\r\n" if srv.protocol == "pop3"
                       else b"421 4.3.2 unsolicited\r\n")
            if ctl.then is not None:
                ctl.then()
            ctl.talked.set()
            continue
        break
    while True:
        line = st.readline()
        if not line:
            break
        st.sendall(echo_reply(srv.protocol, line))
    st.close()


class ClosingListener:
    """A port that accepts every connection and closes it at once.

    Counts and timestamps the accepts: the daemon's connection attempts."""

    def __init__(self, host="127.0.0.1"):
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.bind((host, 0))
        self.lsock.listen(64)
        self.address = "%s:%d" % (host, self.lsock.getsockname()[1])
        self.times = []
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while True:
            try:
                s, _ = self.lsock.accept()
            except OSError:
                return
            with self.cond:
                self.times.append(time.monotonic())
                self.cond.notify_all()
            s.close()

    def accepts(self):
        with self.cond:
            return list(self.times)

    def stop(self):
        try:
            self.lsock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.lsock.close()
        self.thread.join(5)


class ConnectingClient(Client):
    """A Client whose connect() was started elsewhere (non-blocking), e.g.
    from a server thread at a chosen instant."""

    def __init__(self, sock, timeout=10):   # noqa: super() would connect
        sock.setblocking(True)
        sock.settimeout(timeout)
        self.sock = sock
        self.timeout = timeout
        self.buf = bytearray()
        self.rbuf = memoryview(bytearray(262144))
        self.closed_how = None


def start_connect(port, into):
    """Begin a connect to port without waiting; append the socket to into."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    try:
        s.connect(("127.0.0.1", port))
    except BlockingIOError:
        pass
    into.append(s)


# ---------------------------------------------------------------- helpers

def wait_log_count(d, pattern, n, since=0, timeout=10, what=None):
    """Wait until n log lines (after since) match; return them."""
    rx = re.compile(pattern, re.I)
    deadline = time.monotonic() + timeout
    with d.cond:
        while True:
            hits = [l for l in d.log(since) if rx.search(l)]
            if len(hits) >= n:
                return hits
            left = deadline - time.monotonic()
            if left <= 0 or (d.lines and d.lines[-1] is None):
                break
            d.cond.wait(left)
    raise AssertionError("%d of %d log lines matching /%s/ within %ss%s; "
                         "log tail:\n%s" % (len(hits), n, pattern, timeout,
                                            " (waiting for %s)" % what
                                            if what else "", d.tail(15)))


def count_log(d, pattern, since=0):
    rx = re.compile(pattern, re.I)
    return sum(1 for l in d.log(since) if rx.search(l))


def stays(pred, window, what):
    """pred() holds throughout a short, bounded window (polled)."""
    deadline = time.monotonic() + window
    while time.monotonic() < deadline:
        check(pred(), "%s", what)
        time.sleep(0.02)
    check(pred(), "%s", what)


def pool_setup(t, size=2, protocol="imap", service_opts=None,
               daemon_opts=None, **server_kw):
    """A PoolServer, a daemon with pool_size = size in front of it, and the
    pool filled: (server, service, daemon)."""
    srv = PoolServer(t.tls_context(), protocol=protocol, **server_kw)
    t.stack.callback(srv.stop)
    opts = {"pool_size": size}
    opts.update(service_opts or {})
    svc = t.service(srv, protocol, **opts)
    d = t.daemon(svc, **(daemon_opts or {}))
    if size:
        wait_log_count(d, READY, size, timeout=10,
                       what="the pool to fill")
        srv.wait_conns(size)
    return srv, svc, d


def pooled_client(t, svc, protocol="imap"):
    """A client greeted by a pooled connection: (client, connection no.)."""
    c = t.connect(svc)
    first = c.line()
    n = greeting_number(first)
    if protocol == "smtp":
        check(first == b"220-mail.test conn %d\r\n" % n, "got %r", first)
        c.expect_line(b"220 mail.test ESMTP ready\r\n")
    else:
        check(first == numbered_greeting(protocol, n), "got %r", first)
    return c, n


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def app_bytes(rec):
    with rec.lock:
        return bytes(rec.app)


# ------------------------------------------------------------------ tests

@case(params=PER_PROTOCOL, valgrind=True)
def test_handout(t, protocol):
    """A client gets a pre-established connection's greeting at once; the
    pool refills behind it with exactly one new connection."""
    srv, svc, d = pool_setup(t, 2, protocol)
    check(srv.count() == 2, "server has %d connections with pool_size = 2",
          srv.count())
    for i in range(2):
        check(srv.ctl(i).greeted.wait(5), "connection %d not greeted", i)
        check(srv.conn(i).tls_ok, "connection %d has no TLS", i)
        check(app_bytes(srv.conn(i)) == b"", "connection %d got bytes "
              "before any client came", i)
    mark = d.mark()
    c, n = pooled_client(t, svc, protocol)
    check(n in (0, 1), "the client was greeted by connection %d, not one of "
          "the two made before it came", n)
    d.wait_log(TAKEN, since=mark, what="the hand-out line")
    # The refill: one connection more, ready again; none for the client.
    wait_log_count(d, READY, 1, since=mark, what="the refill")
    check(srv.count() == 3, "server has %d connections after one client; "
          "expected 2 + 1 refill", srv.count())
    stays(lambda: srv.count() == 3, 0.3, "no further connection")
    token = b"handout-%s" % protocol.encode()
    noop(c, protocol, token)
    check(token in app_bytes(srv.conn(n)), "the client's command did not "
          "reach connection %d", n)
    for i in set(range(3)) - {n}:
        check(app_bytes(srv.conn(i)) == b"", "connection %d (not the "
              "client's) got bytes", i)


@case(valgrind=True)
def test_handout_is_immediate(t):
    """With the pool full, a client is greeted even though the server now
    holds back the greeting of every new connection."""
    srv, svc, d = pool_setup(t, 1, hold_after=1)
    c, n = pooled_client(t, svc)
    check(n == 0, "greeted by connection %d", n)
    noop(c, "imap", b"immediate")
    # The refill has TLS but cannot be ready while its greeting waits.
    srv.wait_conns(2)
    wait_log_count(d, CONNECTED, 2, what="the refill's handshake")
    stays(lambda: count_log(d, READY) == 1, 0.3,
          "a member became ready without its greeting")
    srv.release.set()
    wait_log_count(d, READY, 2, what="the refill once greeted")


@case()
def test_smtp_multiline_greeting(t):
    """An SMTP member is ready only once the final 220 line is in, and the
    client gets every line of it."""
    ev = threading.Event()
    srv = PoolServer(t.tls_context(), protocol="smtp",
                     split_greeting=(ev, len(b"220-mail.test conn 0\r\n")))
    t.stack.callback(srv.stop)
    svc = t.service(srv, "smtp", pool_size=1)
    d = t.daemon(svc)
    d.wait_log(r"\] TCP connected to ", what="the member's connect")
    srv.wait_conns(1)
    d.wait_log(CONNECTED, what="the member's TLS")
    stays(lambda: count_log(d, READY) == 0, 0.5,
          "ready in the pool with half of the SMTP greeting")
    ev.set()
    wait_log_count(d, READY, 1, what="ready after the final line")
    c, n = pooled_client(t, svc, "smtp")
    check(n == 0, "greeted by connection %d", n)
    noop(c, "smtp", b"multiline")


@case(params={"close": {"how": "close"}, "drop": {"how": "drop"},
              "talk": {"how": "talk"}})
def test_server_gone_replaced(t, how):
    """A member whose server closes (close_notify, or a bare FIN) or talks
    while it waits is discarded and replaced; a client never gets it."""
    srv, svc, d = pool_setup(t, 2)
    mark = d.mark()
    srv.ctl(0).order(how)
    d.wait_log(SERVER_TALKED if how == "talk" else SERVER_CLOSED,
               since=mark, what="the discard")
    srv.conn(0).wait_done(10)
    wait_log_count(d, FAILED, 1, since=mark, what="the failure count")
    # The replacement, after the first back-off step.
    srv.wait_conns(3, timeout=5)
    wait_log_count(d, READY, 1, since=mark, timeout=5,
                   what="the replacement ready")
    seen = set()
    for i in range(2):
        c, n = pooled_client(t, svc)
        check(n != 0, "a client got the discarded connection 0")
        check(n not in seen, "connection %d handed out twice", n)
        seen.add(n)
        noop(c, "imap", b"after-%s-%d" % (how.encode(), i))
    check(b"after-" not in app_bytes(srv.conn(0)), "client bytes reached the "
          "discarded connection")


@case()
def test_ageing(t):
    """pool_max_age = 1: members are replaced after about a second, without
    back-off, and a client is still served by a live one.  (The client
    connects right after an ageing is logged: a daemon that still hands out
    the aged member while its close_notify flushes fails here too, mostly
    on the slower ASan build; see test_discarded_member_never_handed_out.)"""
    srv, svc, d = pool_setup(t, 1, service_opts={"pool_max_age": 1})
    first = srv.ctl(0)
    d.wait_log(AGED, what="the first member to age out", timeout=5)
    aged_at = time.monotonic()
    srv.conn(0).wait_done(5)
    age = aged_at - first.accepted_at
    check(0.8 <= age <= 3.0, "member aged out after %.2fs with "
          "pool_max_age = 1", age)
    srv.wait_conns(2, timeout=3)
    wait_log_count(d, AGED, 2, timeout=5, what="the replacement ageing too")
    check(count_log(d, FAILED) == 0, "ageing counted as a failure:\n%s",
          d.tail(10))
    # Ages 1 s each: a client is served by whichever member is live now.
    c, n = pooled_client(t, svc)
    check(n >= 2, "greeted by connection %d, which had aged out", n)
    noop(c, "imap", b"after-ageing")
    # Once taken, a connection is the client's: it no longer ages out.
    mark = d.mark()
    wait_log_count(d, AGED, 1, since=mark, timeout=5,
                   what="a later member ageing")
    noop(c, "imap", b"still-mine")
    check(not srv.conn(n).done.is_set(), "the client's connection ended")


@case(timeout=40)
def test_backoff_when_server_closes(t):
    """A server that closes every connection at once: attempts back off
    1, 2, 4, 8 s (logged and real), no storm, no busy loop."""
    lst = ClosingListener()
    t.stack.callback(lst.stop)
    svc = t.service(lst, pool_size=1)
    d = t.daemon(svc)
    lines = wait_log_count(d, FAILED, 1, timeout=5, what="the first failure")
    cpu0, t0 = cpu_seconds(d.pid), time.monotonic()
    lines = wait_log_count(d, FAILED, 4, timeout=15,
                           what="four failures in a row")
    cpu1, t1 = cpu_seconds(d.pid), time.monotonic()
    got = [re.search(FAILED, l, re.I).groups() for l in lines]
    check([int(k) for k, _ in got] == [1, 2, 3, 4], "failure counts %s", got)
    delays = [float(x) for _, x in got]
    check(delays == [1.0, 2.0, 4.0, 8.0], "back-off delays %s, expected "
          "1, 2, 4, 8", delays)
    times = lst.accepts()
    check(len(times) == 4, "%d connection attempts for 4 logged failures",
          len(times))
    gaps = [b - a for a, b in zip(times, times[1:])]
    for gap, want in zip(gaps, delays):
        check(want * 0.9 <= gap <= want + 1.0, "attempts %.2fs apart after "
              "a logged back-off of %.1fs (all gaps: %s)", gap, want,
              ["%.2f" % g for g in gaps])
    check(cpu1 - cpu0 < 0.2, "daemon used %.2fs CPU in %.1fs of back-off",
          cpu1 - cpu0, t1 - t0)
    # The next attempt is 8 s away: nothing in the next second.
    stays(lambda: len(lst.accepts()) == 4, 1.0, "an attempt before the "
          "logged 8.0s back-off was over")


@case()
def test_backoff_when_refused(t):
    """Nothing listens at the remote: the same back-off, from the log."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]           # bound, never listening: refused
    t.stack.callback(s.close)
    svc = t.service("127.0.0.1:%d" % port, pool_size=1)
    d = t.daemon(svc)
    lines = wait_log_count(d, FAILED, 1, timeout=5, what="the first failure")
    cpu0, t0 = cpu_seconds(d.pid), time.monotonic()
    lines = wait_log_count(d, FAILED, 3, timeout=10,
                           what="three failures in a row")
    cpu1, t1 = cpu_seconds(d.pid), time.monotonic()
    delays = [float(re.search(FAILED, l, re.I).group(2)) for l in lines]
    check(delays == [1.0, 2.0, 4.0], "back-off delays %s", delays)
    check(2.7 <= t1 - t0 <= 4.5, "failures 1 to 3 took %.2fs, expected "
          "about 1 + 2 s", t1 - t0)
    check(count_log(d, r"connection refused") >= 3, "refusals not logged")
    check(count_log(d, CONNECTING) == 3, "%d connection attempts logged "
          "for 3 failures", count_log(d, CONNECTING))
    check(cpu1 - cpu0 < 0.2, "daemon used %.2fs CPU in %.1fs of back-off",
          cpu1 - cpu0, t1 - t0)


@case(timeout=40, params={"client": {"reset_by": "client"},
                          "age": {"reset_by": "age"}})
def test_backoff_resets(t, reset_by):
    """After failures, a member that proved healthy (taken by a client, or
    aged out) resets the back-off: the next failure waits 1 s again."""
    srv = PoolServer(t.tls_context(), refuse=True)
    t.stack.callback(srv.stop)
    opts = {"pool_max_age": 1} if reset_by == "age" else {}
    svc = t.service(srv, pool_size=1, **opts)
    d = t.daemon(svc)
    lines = wait_log_count(d, FAILED, 2, timeout=8, what="two failures")
    check(lines[-1].endswith("next attempt in 2.0s"), "%s", lines[-1])
    srv.refuse = False
    wait_log_count(d, READY, 1, timeout=8, what="a member once the server "
                   "is back")
    mark = d.mark()
    srv.refuse = True                   # the refill (or next member) fails
    if reset_by == "client":
        c, n = pooled_client(t, svc)
        noop(c, "imap", b"healthy")
    else:
        d.wait_log(AGED, since=mark, timeout=5, what="the member to age out")
    line = d.wait_log(FAILED, since=mark, timeout=8,
                      what="the next failure")
    check(re.search(r"\(1 in a row\); next attempt in 1\.0s$", line),
          "back-off not reset by a healthy member: %s", line)


@case()
def test_never_shared(t):
    """Each client gets its own server connection, sees only its own bytes,
    and a connection a client has left is never handed out again."""
    srv, svc, d = pool_setup(t, 2)
    a, na = pooled_client(t, svc)
    b, nb = pooled_client(t, svc)
    check(na != nb, "two clients greeted by the same connection %d", na)
    for i in range(3):
        noop(a, "imap", b"client-A-%d" % i)
        noop(b, "imap", b"client-B-%d" % i)
    check(b"client-B" not in app_bytes(srv.conn(na)), "B's bytes reached A's "
          "server connection")
    check(b"client-A" not in app_bytes(srv.conn(nb)), "A's bytes reached B's "
          "server connection")
    a.close()
    srv.conn(na).wait_done(10)          # not kept for another client
    used = {na, nb}
    for i in range(3):
        c, n = pooled_client(t, svc)
        check(n not in used, "connection %d handed out again", n)
        used.add(n)
        noop(c, "imap", b"client-N%d-x" % i)
        c.close()
    noop(b, "imap", b"client-B-last")
    for n in used:
        data = app_bytes(srv.conn(n))
        owners = set(re.findall(rb"client-(\w+)-", data))
        check(len(owners) == 1, "connection %d saw bytes of %s", n,
              sorted(owners))


@case(params=PER_PROTOCOL)
def test_starttls_pool(t, protocol):
    """tls = starttls: the whole plaintext dialogue and TLS are done before
    the client comes; the client gets the daemon's greeting and logs in."""
    srv = StarttlsServer(protocol, t.tls_context())
    t.stack.callback(srv.stop)
    svc = t.service(srv, protocol, tls="starttls", pool_size=1)
    d = t.daemon(svc)
    wait_log_count(d, READY, 1, what="the STARTTLS member")
    rec = srv.conn(0)
    check(rec.go_ahead_sent.is_set(), "member ready before the go-ahead")
    # The server flags its handshake just after sending its Finished.
    wait_until(lambda: rec.tls_ok, 5, "the server's side of the handshake")
    check(rec.pre == DAEMON_LINES[protocol], "server received %r before TLS",
          rec.pre)
    check(rec.post == [], "server received %r inside TLS before any client",
          rec.post)
    mark = d.mark()
    c = t.connect(svc)
    c.expect_line(DAEMON_GREETING[protocol])
    d.wait_log(TAKEN, since=mark, what="the hand-out line")
    login(c, protocol)
    check(rec.logged_in.wait(5) and rec.logged_in_as == b"alice",
          "the login did not reach the pooled connection")
    wait_log_count(d, READY, 1, since=mark, what="the refill")
    check(srv.count() == 2, "server has %d connections after one client",
          srv.count())


@case()
def test_max_sessions_counts_members(t):
    """max_sessions = 2 = pool_size: the members fill it; clients that take
    them need no new slot, a third client is turned away, and the server
    never sees more than 2 connections while they are held."""
    srv, svc, d = pool_setup(t, 2, daemon_opts={"max_sessions": 2})
    mark = d.mark()
    a, na = pooled_client(t, svc)
    b, nb = pooled_client(t, svc)
    noop(a, "imap", b"A")
    noop(b, "imap", b"B")
    third = t.connect(svc)
    expect_error_line(third, "imap")
    d.wait_log(r"max_sessions \(2\) reached", since=mark,
               what="the refusal")
    check(srv.count() == 2, "server has %d connections with max_sessions = "
          "2", srv.count())
    stays(lambda: srv.count() == 2, 0.3, "a refill beyond max_sessions")
    check(count_log(d, CONNECTING, since=mark) == 0, "pool tried to connect "
          "with no room")
    check(count_log(d, FAILED, since=mark) == 0, "a full max_sessions "
          "counted as a pool failure")
    # A session ends: the pool gets its slot back.
    a.close()
    srv.conn(na).wait_done(10)
    wait_log_count(d, READY, 1, since=mark, timeout=10,
                   what="the refill once there is room")
    check(srv.count() == 3, "server has %d connections", srv.count())
    c, n = pooled_client(t, svc)
    check(n == 2, "greeted by connection %d, expected the refill", n)
    noop(c, "imap", b"C")
    noop(b, "imap", b"B-again")


@case()
def test_sigterm_closes_pool(t):
    """SIGTERM closes the members at once (shutdown_timeout is for client
    sessions) while a client's session drains and keeps working."""
    srv, svc, d = pool_setup(t, 2, service_opts={"shutdown_timeout": 20})
    c, n = pooled_client(t, svc)
    wait_log_count(d, READY, 3, what="the refill")
    members = [i for i in range(3) if i != n]
    d.signal(signal.SIGTERM)
    t0 = time.monotonic()
    for i in members:
        srv.conn(i).wait_done(5)
    check(time.monotonic() - t0 < 3, "members closed only after %.1fs",
          time.monotonic() - t0)
    check(srv.count() == 3, "the pool refilled while stopping")
    noop(c, "imap", b"draining")
    c.close()
    rc = d.wait_exit(10)
    d.stopped_by_test = True
    check(rc == 0, "daemon exited %s after the last session", rc)


@case()
def test_reload_replaces_pool(t):
    """SIGHUP with a new remote: members to the old server close, the new
    pool connects to the new one, an open pooled session keeps working."""
    srv_a, svc, d = pool_setup(t, 1)
    old, _ = pooled_client(t, svc)
    wait_log_count(d, READY, 2, what="the refill")
    srv_b = PoolServer(t.tls_context())
    t.stack.callback(srv_b.stop)
    svc.opts["remote"] = srv_b.address
    mark = d.reload(t.config([svc]))
    d.wait_log(r"reloaded", since=mark, timeout=10)
    srv_a.conn(1).wait_done(5)
    wait_log_count(d, READY, 1, since=mark, what="the new pool")
    srv_b.wait_conns(1)
    c = t.connect(svc)
    c.expect_line(numbered_greeting("imap", 0))
    check(srv_b.count() >= 1 and srv_a.count() == 2, "connections: old "
          "server %d, new server %d", srv_a.count(), srv_b.count())
    noop(c, "imap", b"new-pool")
    noop(old, "imap", b"old-session")


@case(timeout=40)
def test_discarded_member_never_handed_out(t):
    """A member the daemon has discarded (the server talked while it waited)
    is never given to a client, even one accepted while the discarded
    connection still flushes its close_notify.  Each of 8 services has a
    pool of 1; each server says something unsolicited and, microseconds
    later from the same thread, a client connects to that service.  Every
    client must get a working session (the member, if the daemon had not yet
    read the extra line, or a fresh connection), never the dead one."""
    n = 8
    servers, services = [], []
    for i in range(n):
        srv = PoolServer(t.tls_context())
        t.stack.callback(srv.stop)
        servers.append(srv)
        services.append(t.service(srv, name="s%d" % i, pool_size=1))
    d = t.daemon(*services)
    wait_log_count(d, READY, n, what="every pool to fill")
    for srv in servers:
        check(srv.ctl(0).greeted.wait(5), "member not greeted")
    socks = [[] for _ in range(n)]
    for srv, svc, into in zip(servers, services, socks):
        srv.ctl(0).order("talk", then=lambda p=svc.port, into=into:
                         start_connect(p, into))
    for srv in servers:
        check(srv.ctl(0).talked.wait(5), "server did not talk")
    clients = []
    for i, into in enumerate(socks):
        c = ConnectingClient(into[0], timeout=5)
        t.stack.callback(c.close)
        c.send(b"a1 NOOP s%d\r\n" % i)
        clients.append(c)
    dead = []
    deadline = time.monotonic() + 5     # for all: answers come at once
    for i, c in enumerate(clients):
        try:
            while not c.line(max(0.1, deadline - time.monotonic())) \
                    .startswith(b"a1 OK NOOP s%d" % i):
                pass
        except AssertionError as e:
            dead.append("s%d (%s)" % (i, str(e)[:80]))
    if dead:
        log = d.log()
        handed = []
        for l in log:
            m = re.search(r"\[(s\d+#\d+)\]" + TAKEN[2:], l)
            if m and any("[%s]" % m.group(1) in x and
                         re.search(SERVER_TALKED, x)
                         for x in log[:log.index(l)]):
                handed.append(m.group(1))
        raise AssertionError("the daemon gave clients pool members it had "
                             "already discarded (log: 'server sent data "
                             "while the connection waited in the pool', "
                             "then 'client ..., pooled connection') for %s; "
                             "%d of %d clients got no answer: %s"
                             % (", ".join(handed) or "none", len(dead), n,
                                ", ".join(dead)))
