"""Relay tests: byte-exact transfers, many sessions, back-pressure, closes.

Each test starts a TLS test server, one daemon relaying a loopback port to
it, and plaintext clients; everything is compared byte for byte (sha256 for
bulk data).
"""

import hashlib
import os
import socket
import threading
import time

from client import Client, login, noop
from expectations import GREETING
from harness import Skip, case, check
from servers import UNTERMINATED_LAST, random_chunks

MIB = 1024 * 1024
PROTOCOLS = {p: {"protocol": p} for p in ("imap", "pop3", "smtp")}


def relay_to(t, behaviour="echo", protocol="imap", service_opts=None,
             daemon_opts=None, **server_kw):
    """A server with behaviour, a daemon in front of it: (server, svc, d)."""
    srv = t.server(behaviour, protocol=protocol, **server_kw)
    svc = t.service(srv, protocol, **(service_opts or {}))
    d = t.daemon(svc, **(daemon_opts or {}))
    return srv, svc, d


def logged_in_client(t, svc, protocol="imap", timeout=30):
    c = t.connect(svc, timeout=timeout)
    c.expect_line(GREETING[protocol])
    login(c, protocol)
    return c


@case(params=PROTOCOLS, valgrind=True)
def test_greeting_and_commands(t, protocol):
    """The server's greeting and replies reach the client unchanged."""
    _, svc, _ = relay_to(t, protocol=protocol)
    c = t.connect(svc)
    c.expect_line(GREETING[protocol])
    for i in range(5):
        noop(c, protocol, b"token-%d" % i)


@case(timeout=120, heavy=True)
def test_download_64mib(t):
    """64 MiB of random data server -> client arrive byte-exact."""
    size = 64 * MIB
    srv, svc, _ = relay_to(t, "source", size=size)
    c = logged_in_client(t, svc)
    count, sha = c.hash_to_eof(timeout=90)
    c.close()
    rec = srv.conn(0).wait_done()
    check(count == size, "client got %d bytes, server sent %d", count, size)
    check(sha == rec.result["sha256"], "sha256 differs after %d bytes", count)


@case(timeout=120, heavy=True)
def test_upload_64mib(t):
    """64 MiB of random data client -> server arrive byte-exact."""
    size = 64 * MIB
    srv, svc, _ = relay_to(t, "sink")
    c = logged_in_client(t, svc)
    h = hashlib.sha256()
    for chunk in random_chunks(size, 7):
        h.update(chunk)
        c.send(chunk)
    c.half_close()
    line = c.line(timeout=90)
    check(line == b"SINK %d %s\r\n" % (size, h.hexdigest().encode()),
          "server reports %r, client sent %d bytes sha256 %s", line, size,
          h.hexdigest())
    check(c.read_to_eof(10) == b"", "data after the final line")


def one_session(svc, i, barrier, errors):
    """Greet, wait for every other session, then three round trips."""
    c = None
    try:
        c = Client(svc.port, timeout=60)
        c.expect_line(GREETING["imap"])
        barrier.wait()
        for j in range(3):
            noop(c, "imap", b"session-%d-line-%d-%s" % (i, j,
                                                        os.urandom(8).hex()
                                                        .encode()))
    except Exception as e:
        errors.append("session %d: %s: %s" % (i, type(e).__name__, e))
        barrier.abort()
    finally:
        if c:
            c.close()


@case(timeout=120, heavy=True)
def test_200_concurrent_sessions(t):
    """200 sessions open at once through one daemon, each does round trips."""
    n = 200
    # One address, like the clients of a multi-user host: no per-client cap.
    srv, svc, _ = relay_to(t, daemon_opts={"max_sessions_per_client": 0})
    barrier = threading.Barrier(n, timeout=60)
    errors = []
    threads = [threading.Thread(target=one_session,
                                args=(svc, i, barrier, errors), daemon=True)
               for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(90)
    check(not any(th.is_alive() for th in threads), "sessions still running")
    check(not errors, "%d sessions failed, first: %s", len(errors),
          errors[0] if errors else "")
    check(srv.count() == n, "server saw %d connections, expected %d",
          srv.count(), n)


def watch_until_stalled(d, rec, quiet=1.0, timeout=60):
    """Sample RSS while the server pushes; stop when its progress stalls.

    Returns (peak RSS KiB, bytes the server had sent).  Progress has no
    event to wait on, so this polls, bounded by timeout."""
    peak, last, since = d.rss_kib(), rec.sent, time.monotonic()
    deadline = since + timeout
    while not rec.done.is_set():
        time.sleep(0.05)
        peak = max(peak, d.rss_kib())
        now = time.monotonic()
        if rec.sent != last:
            last, since = rec.sent, now
        elif last > 0 and now - since >= quiet:
            break
        check(now < deadline, "server never stalled (sent %d bytes)",
              rec.sent)
    return peak, rec.sent


def quarantine_env():
    """ASan keeps freed memory in a quarantine; keep it small for RSS tests."""
    opts = os.environ.get("ASAN_OPTIONS", "")
    return {"ASAN_OPTIONS": (opts + ":" if opts else "") +
            "quarantine_size_mb=1"}


@case(timeout=180, heavy=True)
def test_slow_reader_is_bounded(t):
    """A client that does not read: the daemon buffers a bounded amount."""
    size = 256 * MIB
    srv = t.server("source", size=size)
    svc = t.service(srv)
    d = t.daemon(svc, env=quarantine_env())
    c = t.connect(svc, timeout=30)
    c.expect_line(GREETING["imap"])
    base = d.rss_kib()
    login(c, "imap")                    # the server starts pushing now
    rec = srv.conn(0)
    peak, ahead = watch_until_stalled(d, rec)
    check(ahead < 48 * MIB, "server pushed %d MiB ahead of a client that "
          "reads nothing", ahead // MIB)
    h = hashlib.sha256(c.buf)
    count = len(c.buf)
    c.buf.clear()
    for _ in range(40):                 # read very slowly for a while
        data = c.recv_exact(16384)
        h.update(data)
        count += len(data)
        peak = max(peak, d.rss_kib())
        time.sleep(0.02)
    count, sha = c.hash_to_eof(timeout=120, h=h, count=count)
    c.close()
    rec.wait_done(30)
    check((peak - base) < 16 * 1024, "daemon RSS grew by %d KiB (from %d "
          "KiB)", peak - base, base)
    check(count == size, "client got %d bytes, server sent %d", count, size)
    check(sha == rec.result["sha256"], "sha256 differs")


def wait_sent_or_stalled(rec, quiet=0.5, timeout=20):
    """Wait until the server finished sending, or its progress stalled."""
    last, since = rec.sent, time.monotonic()
    deadline = since + timeout
    while not rec.finished_sending.wait(0.05):
        now = time.monotonic()
        if rec.sent != last:
            last, since = rec.sent, now
        elif now - since >= quiet:
            return
        check(now < deadline, "server neither finished nor stalled")


def read_slowly_to_eof(c, piece=32768, pause=0.001, timeout=30):
    """Read at a trickle until EOF, so the daemon's buffers stay full."""
    h, count = hashlib.sha256(), 0
    deadline = time.monotonic() + timeout
    while True:
        check(time.monotonic() < deadline, "no EOF within %ss", timeout)
        data = c.read_some(piece)
        if not data:
            return count, h.hexdigest()
        h.update(data)
        count += len(data)
        time.sleep(pause)


@case(valgrind=True)
def test_server_closes_first(t):
    """Server sends a last 6 MiB and closes at once: nothing is lost.

    The client (tiny receive window) waits until the server is done or
    blocked, then reads slower than the daemon can write, so the daemon's
    buffers are full when the server's close reaches it."""
    srv, svc, _ = relay_to(t, "close_first", size=6 * MIB)
    c = t.connect(svc, timeout=30, rcvbuf=4096)
    c.expect_line(GREETING["imap"])
    login(c, "imap")
    rec = srv.conn(0)
    wait_sent_or_stalled(rec)
    count, sha = read_slowly_to_eof(c)
    c.close()
    rec.wait_done(10)
    check(count == rec.result["count"], "client got %d of %d bytes", count,
          rec.result["count"])
    check(sha == rec.result["sha256"], "last chunk corrupted")


@case(valgrind=True)
def test_client_half_close(t):
    """Client sends its last bytes, then SHUT_WR; the reply still arrives."""
    srv, svc, _ = relay_to(t, "sink")
    c = logged_in_client(t, svc)
    payload = b"".join(random_chunks(3 * MIB + 12345, 3)) + b"LAST BYTES\r\n"
    c.send(payload)
    c.half_close()
    want = b"SINK %d %s\r\n" % (len(payload),
                                hashlib.sha256(payload).hexdigest().encode())
    c.expect_line(want, timeout=20)
    check(c.read_to_eof(10) == b"", "data after the final line")


@case(valgrind=True)
def test_client_closes_first(t):
    """When the client closes, the daemon closes the upstream connection."""
    srv, svc, d = relay_to(t)
    c = t.connect(svc)
    c.expect_line(GREETING["imap"])
    noop(c, "imap")
    c.close()
    rec = srv.conn(0).wait_done(10)
    check(rec.eof is not None, "server connection ended by %s", rec.error)


def have_ipv6_loopback():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    except OSError:
        return False
    try:
        s.bind(("::1", 0))
        return True
    except OSError:
        return False
    finally:
        s.close()


@case(valgrind=True)
def test_ipv6_loopback(t):
    """listen = [::1]:PORT relaying to a server on ::1."""
    if not have_ipv6_loopback():
        raise Skip("::1 is not available on this host")
    srv = t.server("echo", host="::1")
    svc = t.service(srv, host="::1")
    check(svc.opts["listen"].startswith("[::1]:"), "bad listen %s",
          svc.opts["listen"])
    t.daemon(svc)
    c = t.connect(svc)
    c.expect_line(GREETING["imap"])
    noop(c, "imap", b"over-ipv6")


@case()
def test_idle_timeout(t):
    """idle_timeout = 1: traffic keeps a session open, silence closes it."""
    _, svc, _ = relay_to(t, service_opts={"idle_timeout": 1})
    c = t.connect(svc)
    c.expect_line(GREETING["imap"])
    for i in range(6):                  # 2.4s of activity, gaps < 1s
        time.sleep(0.4)
        noop(c, "imap", b"keepalive-%d" % i)
    t0 = time.monotonic()
    rest = c.read_to_eof(timeout=10)
    idle = time.monotonic() - t0
    check(0.5 <= idle <= 6, "idle session closed after %.1fs", idle)
    check(not rest.strip() or rest.startswith(b"* BYE"),
          "unexpected data before close: %r", rest[:100])


@case()
def test_unterminated_last_line_reaches_client(t):
    """Before login the relay reads the server's bytes as lines; when the
    server closes after bytes without a line end, those bytes still reach
    the client (nothing is lost at the end of a session)."""
    srv = t.server("unterminated")
    svc = t.service(srv)
    t.daemon(svc)
    c = t.connect(svc)
    c.expect_line(GREETING["imap"])
    got = c.read_to_eof()
    check(got == UNTERMINATED_LAST, "client got %r, want %r", got,
          UNTERMINATED_LAST)
