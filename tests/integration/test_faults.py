"""Fault injection: allocation failure, descriptor exhaustion, resets,
trickling servers, clients that never read, DNS failure and slow DNS.

Every test injects its fault, checks that the session affected ends the
way it must (the client's error line before the relay, a close during it,
never a crash, hang or leak), and then that the daemon is alive and serves
a new client normally.  Allocation failures come from the LD_PRELOAD shim
tests/faults/failalloc.c (see faults.FailAlloc); name resolution from the
test's own DNS server (faults.DnsServer, MAILTLSD_RESOLV_CONF).
"""

import hashlib
import re
import resource
import socket
import ssl
import threading
import time

from client import login, noop
from expectations import ERROR_PREFIX, GREETING, echo_reply
from faults import (FailAlloc, cpu_seconds, dns_server, fd_count, reset,
                    script_server, wait_fds)
from harness import Skip, case, check, expect_error_line, wait_until
from servers import random_chunks
from test_starttls import DAEMON_GREETING

MIB = 1024 * 1024
MEMORY_RX = r"memory|alloc"      # a log reason that says out of memory
STALL = 6               # seconds a client waits for a byte before "stalled"


# ------------------------------------------------------------ the mail side

STARTTLS_GREETING = (b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] "
                     b"plaintext greeting\r\n")


def starttls_go_ahead(conn):
    """The server's plaintext part of IMAP STARTTLS, up to the go-ahead."""
    conn.st.sendall(STARTTLS_GREETING)
    line = conn.st.readline()
    check(line.split()[1:2] == [b"STARTTLS"], "daemon sent %r", line)
    conn.st.sendall(line.split()[0] + b" OK Begin TLS negotiation now\r\n")


def mail_script(conn):
    """An IMAP server: greet, LOGIN, "tag GET n seed" sends n random bytes
    then "tag OK done", other lines get echo_reply(); close at EOF."""
    st = conn.st
    st.sendall(GREETING["imap"])
    mail_loop(conn)


def starttls_mail_script(t):
    """mail_script behind a STARTTLS dialogue (a fresh TLS context each)."""
    def script(conn):
        starttls_go_ahead(conn)
        conn.st.start_tls(t.tls_context())
        mail_loop(conn)
    return script


def mail_loop(conn):
    """mail_script after its greeting."""
    st = conn.st
    while True:
        line = st.readline()
        if not line:
            break
        words = line.split()
        if len(words) >= 2 and words[1].upper() == b"LOGIN":
            st.sendall(words[0] + b" OK LOGIN completed\r\n")
            conn.rec.logged_in.set()
        elif len(words) == 4 and words[1] == b"GET":
            for chunk in random_chunks(int(words[2]), int(words[3])):
                st.sendall(chunk)
            st.sendall(words[0] + b" OK done\r\n")
        else:
            st.sendall(echo_reply("imap", line))
    st.close()


def payload(n, seed):
    """The n bytes "GET n seed" sends."""
    return b"".join(random_chunks(n, seed))


# What one checked session says and expects back, step by step.
def session_steps(get, seed, greeting=GREETING["imap"]):
    steps = [(b"", greeting),
             (b"a1 LOGIN alice secret\r\n", b"a1 OK LOGIN completed\r\n"),
             (b"a2 NOOP check\r\n", echo_reply("imap", b"a2 NOOP check\r\n"))]
    if get:
        steps.append((b"a3 GET %d %d\r\n" % (get, seed),
                      payload(get, seed) + b"a3 OK done\r\n"))
    return steps


def strip_error_line(got):
    """(bytes before a final protocol error line, whether there was one)."""
    prefix = ERROR_PREFIX["imap"]
    if not got.endswith(b"\r\n"):
        return got, False
    start = got.rfind(b"\n", 0, len(got) - 1) + 1
    if got[start:].startswith(prefix):
        return got[:start], True
    return got, False


def checked_session(port, get=0, seed=1, stall=STALL,
                    greeting=GREETING["imap"]):
    """Run one session; "ok", "error" (error line) or "closed".

    Anything received must be a prefix of what the server sends, optionally
    followed by one error line at a line boundary; a client left waiting
    stall seconds on an open connection is a failure (a hang)."""
    steps = session_steps(get, seed, greeting)
    expected = b"".join(want for _, want in steps)
    got = bytearray()
    sock = socket.create_connection(("127.0.0.1", port), timeout=stall)
    try:
        closed = False
        want_len = 0
        for cmd, want in steps:
            want_len += len(want)
            if cmd:
                try:
                    sock.sendall(cmd)
                except OSError:
                    closed = True
            while not closed and len(got) < want_len:
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    data = b""
                except socket.timeout:
                    raise AssertionError(
                        "session stalled: nothing for %ss after %d of %d "
                        "bytes (%r)" % (stall, len(got), len(expected),
                                        bytes(got[-80:])))
                if not data:
                    closed = True
                got += data
            if closed:
                break
    finally:
        sock.close()
    got = bytes(got)
    if got == expected:
        return "ok"
    body, error_line = strip_error_line(got)
    check(expected.startswith(body), "session got corrupted data: %d bytes,"
          " first difference at %d", len(got),
          next((i for i, (a, b) in enumerate(zip(body, expected)) if a != b),
               len(body)))
    check(len(body) < len(expected) or not error_line,
          "an error line after the whole session")
    return "error" if error_line else "closed"


def serves_normally(svc, n=2):
    """n fresh sessions work end to end (with a transfer)."""
    for i in range(n):
        out = checked_session(svc.port, get=200000, seed=100 + i, stall=10,
                              greeting=svc_greeting(svc))
        check(out == "ok", "a session after the fault ended %s", out)


def svc_greeting(svc):
    """What a client of svc sees first: the server's or the daemon's."""
    if svc.opts.get("tls") == "starttls":
        return DAEMON_GREETING["imap"]
    return GREETING["imap"]


# -------------------------------------------------------- 1. allocation

POOL_READY = r"\] ready in the pool$"


def alloc_setup(t, tls=True, **opts):
    """A daemon with the failalloc shim in front of a mail_script server
    (tls="starttls": behind a STARTTLS dialogue)."""
    fa = FailAlloc(t)
    if tls == "starttls":
        srv = script_server(t, starttls_mail_script(t), tls=False)
        opts["tls"] = "starttls"
    else:
        srv = script_server(t, mail_script, tls=tls)
    svc = t.service(srv, handshake_timeout=5, **opts)
    fa.d = t.daemon(svc, env=fa.env())
    if opts.get("pool_size"):           # the baseline counts the pool
        fa.d.wait_log(POOL_READY, timeout=10, what="the pool to fill")
    base_fds = fd_count(fa.d.pid)
    mark = fa.d.mark()
    serves_normally(svc)                # warm up: resumption, buffers
    if opts.get("pool_size"):           # ... and the pool's refill
        fa.d.wait_log(POOL_READY, since=mark, timeout=10,
                      what="the pool to refill")
    wait_fds(fa.d, base_fds)
    return fa, srv, svc, fa.d, base_fds


def expect_no_leak(fa, d, svc, base_fds, base_live):
    """All sessions gone (fds), then the live blocks are back."""
    wait_fds(d, base_fds, timeout=15)
    serves_normally(svc)
    wait_fds(d, base_fds, timeout=10)
    live = fa.live()
    check(live - base_live <= 8, "%d more blocks live than before the "
          "faults (%d -> %d): a leak", live - base_live, base_live, live)


@case(timeout=60)
def test_alloc_sporadic(t):
    """Allocations fail 1 in 61 while 4 clients run 60 sessions: each ends
    cleanly (a whole session, an error line, or a close, never corrupted
    data or a stalled client); afterwards nothing leaked and it serves."""
    fa, srv, svc, d, base_fds = alloc_setup(t)
    # libevent keeps a small block for each descriptor number it has ever
    # watched: use as many at once as the concurrent clients will, first.
    held = [socket.create_connection(("127.0.0.1", svc.port), timeout=10)
            for _ in range(12)]
    for sock in held:
        check(sock.recv(1) != b"", "no greeting while warming up")
    for sock in held:
        sock.close()
    wait_fds(d, base_fds, timeout=15)
    base_live = fa.live()
    outcomes = {"ok": 0, "error": 0, "closed": 0}
    errors = []
    lock = threading.Lock()

    def worker(k):
        for i in range(15):
            try:
                out = checked_session(svc.port, get=(i % 3) * 70000,
                                      seed=k * 100 + i)
            except Exception as e:
                with lock:
                    errors.append("client %d session %d: %s" % (k, i, e))
                return
            with lock:
                outcomes[out] += 1

    fa.arm(every=61)
    threads = [threading.Thread(target=worker, args=(k,), daemon=True)
               for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(45)
    calls, failed, _ = fa.disarm()
    check(not any(th.is_alive() for th in threads), "clients still running")
    check(not errors, "%d bad sessions, first: %s", len(errors),
          errors[0] if errors else "")
    check(failed > 0, "no allocation failed (%d calls)", calls)
    check(outcomes["ok"] < 60, "no session was affected: %s", outcomes)
    print("sporadic: %d calls, %d failed, outcomes %s" % (calls, failed,
                                                          outcomes))
    expect_no_leak(fa, d, svc, base_fds, base_live)


def sweep_points(total, first=100, samples=250):
    """Allocation numbers to fail: all of the first ones, then spread."""
    points = list(range(1, min(first, total) + 1))
    if total > first:
        step = (total - first) / samples
        points += sorted({first + 1 + int(i * step) for i in range(samples)})
    return points


def sweep(t, fa, d, svc, base_fds, burst, tls_label):
    """Fail allocation N (burst: every one from N on) of one session, for N
    over the session's allocations; each session must end cleanly."""
    greeting = svc_greeting(svc)
    fa.arm(after=1 << 40)               # count one session's allocations
    check(checked_session(svc.port, greeting=greeting) == "ok",
          "counting session failed")
    total = fa.disarm()[0]
    wait_fds(d, base_fds)
    outcomes = {"ok": 0, "error": 0, "closed": 0}
    for n in sweep_points(total):
        fa.arm(after=n, limit=0 if burst else 1, trace=True)
        try:
            out = checked_session(svc.port, greeting=greeting)
        except AssertionError as e:
            raise AssertionError("%s, failing allocation %d%s of %d: %s"
                                 % (tls_label, n, " on" if burst else "",
                                    total, e))
        fa.disarm()
        outcomes[out] += 1
        if burst:
            # Sessions that lost everything still end: none stays behind.
            wait_fds(d, base_fds, what="the session to end (allocations "
                     "%d on of %d failing)" % (n, total))
    print("%s sweep%s over %d allocations: %s" % (
        tls_label, " (burst)" if burst else "", total, outcomes))
    return outcomes


@case(timeout=90, params={"resumed": {"tls": True, "burst": False},
                          "resumed-burst": {"tls": True, "burst": True},
                          "full-handshake": {"tls": "fresh", "burst": False},
                          "starttls": {"tls": "starttls", "burst": False}})
def test_alloc_session_start(t, tls, burst):
    """One session at a time, the Nth allocation from its accept on fails
    (burst: all from the Nth on, error paths included), for N over the
    session's setup and handshake: each ends cleanly, nothing leaks, and
    the daemon goes on serving."""
    fa, srv, svc, d, base_fds = alloc_setup(t, tls=tls)
    base_live = fa.live()
    outcomes = sweep(t, fa, d, svc, base_fds, burst,
                     {True: "resumed", "fresh": "full handshake",
                      "starttls": "STARTTLS"}[tls])
    check(outcomes["error"] + outcomes["closed"] > 0,
          "no failed allocation affected a session: %s", outcomes)
    expect_no_leak(fa, d, svc, base_fds, base_live)


HANDOUT_ALLOCS_MAX = 40     # allocations of a hand-out that are tried


@case(timeout=300, params={"implicit": {"tls": True},
                           "starttls": {"tls": "starttls"}})
def test_alloc_pooled_handout(t, tls):
    """A ready pool member is handed to a client while allocation N of the
    hand-out fails, for every N: that client's session ends cleanly and the
    next client is served normally.  (The client's socket belongs to the
    session from the hand-out on: closing it a second time from the
    listener took over the descriptor number of the next client.)"""
    fa, srv, svc, d, base_fds = alloc_setup(t, tls=tls, pool_size=1)
    greeting = svc_greeting(svc)
    base_live = fa.live()

    def handout(n):
        # The failed allocation may fall in the pool's refill instead:
        # a few in a row put the pool in back-off (at most 60 s).
        d.wait_log(POOL_READY, since=handout.mark, timeout=70,
                   what="a pool member to be ready")
        handout.mark = d.mark()
        fa.arm(after=n, limit=1, trace=True)
        try:
            return checked_session(svc.port, greeting=greeting)
        finally:
            calls = fa.disarm()[0]
            handout.calls = calls
    handout.mark = 0

    # Count one hand-out's allocations.  The pool's refill (a new TLS
    # handshake, hundreds of allocations) may fall in the count too; the
    # hand-out's own allocations come first.
    handout(1 << 40)
    total = min(handout.calls, HANDOUT_ALLOCS_MAX)
    outcomes = {"ok": 0, "error": 0, "closed": 0}
    slowest = (0, 0)
    for n in range(1, total + 1):
        started = time.monotonic()
        outcomes[handout(n)] += 1
        # The next client is served as if nothing had happened.
        try:
            check(checked_session(svc.port, greeting=greeting) == "ok",
                  "the next session failed")
        except AssertionError as e:
            raise AssertionError("after failing allocation %d of %d of a "
                                 "hand-out: %s" % (n, total, e))
        slowest = max(slowest, (time.monotonic() - started, n))
    print("pooled hand-out (%s) over %d allocations: %s; slowest: "
          "allocation %d, %.1f s" % (tls, total, outcomes, slowest[1],
                                     slowest[0]))
    check(outcomes["error"] + outcomes["closed"] > 0,
          "no failed allocation affected a session: %s", outcomes)
    # As expect_no_leak(), once the pool's refill has finished: a member
    # still in its handshake holds more memory than a parked one.
    wait_fds(d, base_fds, timeout=15)
    mark = d.mark()
    serves_normally(svc)
    d.wait_log(POOL_READY, since=mark, timeout=10, what="the pool to refill")
    wait_fds(d, base_fds, timeout=10)
    live = fa.live()
    check(live - base_live <= 8, "%d more blocks live than before the "
          "faults (%d -> %d): a leak", live - base_live, base_live, live)


@case()
def test_alloc_big_buffers(t):
    """Every allocation of 16 KiB or more fails (mbedTLS's record buffers):
    clients get the error line, the log says why; then it serves again."""
    fa, srv, svc, d, base_fds = alloc_setup(t)
    base_live = fa.live()
    mark = d.mark()
    fa.arm(min=16384)
    for _ in range(3):
        c = t.connect(svc)
        expect_error_line(c, "imap", timeout=10)
        c.close()
    _, failed, _ = fa.disarm()
    check(failed >= 3, "only %d allocations failed", failed)
    d.wait_log(r"cannot reach .* securely: .*(%s)" % MEMORY_RX, since=mark,
               what="the out-of-memory reason")
    expect_no_leak(fa, d, svc, base_fds, base_live)


@case()
def test_alloc_resumption_offer(t):
    """Copying the saved TLS session into a new connection (to offer its
    resumption) runs out of memory: the offer is optional, so the session
    goes on with a full handshake, or at worst fails saying why; it must
    not send the server a broken offer (an unrelated "server refused the
    TLS handshake" failure)."""
    fa, srv, svc, d, base_fds = alloc_setup(t)
    base_live = fa.live()
    bad = []
    for n in range(1, 30):
        mark = d.mark()
        fa.arm(within="mbedtls_ssl_set_session", after=n, limit=1)
        out = checked_session(svc.port)
        calls, failed, _ = fa.disarm()
        if not failed:
            break                       # past the copy's last allocation
        reason = d.wait_log(r"closed: ", since=mark)
        if out != "ok" and not re.search(MEMORY_RX, reason, re.I):
            bad.append("allocation %d of the copy: %s" % (n, reason))
    if n == 1:
        raise Skip("no session was offered for resumption")
    check(not bad, "%d of %d failed offers broke the session: %s", len(bad),
          n - 1, bad[0] if bad else "")
    expect_no_leak(fa, d, svc, base_fds, base_live)


# ------------------------------------------------ 2. out of descriptors

@case(timeout=40)
def test_emfile_pauses_without_spinning(t):
    """RLIMIT_NOFILE leaves room for exactly 8 sessions: the 9th client's
    accept fails with EMFILE; the listener pauses (logged, retried every
    500 ms, no CPU spent meanwhile), and the waiting client is served as
    soon as a session ends."""
    srv = t.server("echo")
    svc = t.service(srv)
    d = t.daemon(svc)
    base = fd_count(d.pid)
    limit = base + 2 * 8                # each session: client + server fd
    resource.prlimit(d.pid, resource.RLIMIT_NOFILE, (limit, limit))
    held = []
    for i in range(8):
        c = t.connect(svc)
        c.expect_line(GREETING["imap"])
        noop(c, "imap", b"held-%d" % i)
        held.append(c)
    check(fd_count(d.pid) == limit, "daemon holds %d fds, limit %d",
          fd_count(d.pid), limit)
    mark = d.mark()
    waiting = t.connect(svc)            # completes in the kernel's backlog
    pause_rx = r"cannot accept on .*Too many open files; pausing for"
    d.wait_log(pause_rx, since=mark, what="the EMFILE pause")
    # Measure over the next four pauses (about 2 s): a listener spinning
    # on a readable socket would burn a CPU and log thousands of lines.
    first = d.mark()
    cpu0, t0 = cpu_seconds(d.pid), time.monotonic()
    for _ in range(4):
        d.wait_log(pause_rx, since=d.mark(), timeout=5,
                   what="the listener to retry after its pause")
    cpu, secs = cpu_seconds(d.pid) - cpu0, time.monotonic() - t0
    pauses = len([l for l in d.log(first) if re.search(pause_rx, l)])
    check(cpu < 0.2, "daemon used %.2fs of CPU in %.1fs of EMFILE pause",
          cpu, secs)
    check(pauses <= 2 * secs / 0.5 + 2, "%d pause lines in %.1fs: not "
          "pausing", pauses, secs)
    check(waiting.is_open(), "the waiting client was closed")
    for c in held:                      # the held sessions still work
        noop(c, "imap", b"still-here")
    held.pop().close()                  # frees two descriptors
    waiting.expect_line(GREETING["imap"], timeout=5)
    noop(waiting, "imap", b"served-after-the-pause")
    held.pop().close()
    late = t.connect(svc)
    late.expect_line(GREETING["imap"], timeout=5)
    noop(late, "imap", b"late")


# ------------------------------------------------------ 3. server resets

def read_hello(conn):
    """Wait for the first bytes of the daemon's ClientHello."""
    data = conn.sock.recv(5)
    check(data[:1] == b"\x16", "expected a TLS handshake record, got %r",
          data)


def reset_in_handshake(conn):
    read_hello(conn)
    conn.reset()


def reset_in_dialogue(conn):
    conn.st.sendall(STARTTLS_GREETING)
    conn.st.readline()                  # the daemon's STARTTLS command
    conn.reset()


def reset_after_go_ahead(conn):
    starttls_go_ahead(conn)
    read_hello(conn)
    conn.reset()


def greet_and_login(st):
    """The server side of a greeting and a LOGIN that succeeds."""
    st.sendall(GREETING["imap"])
    st.readline()
    st.sendall(b"a1 OK LOGIN completed\r\n")


def reset_mid_download(conn):
    """Greet, log in, send 4 MiB of the GET, then reset."""
    st = conn.st
    greet_and_login(st)
    words = st.readline().split()       # a3 GET n seed
    data = payload(int(words[2]), int(words[3]))
    st.sendall(data[:4 * MIB])
    conn.rec.finished_sending.set()
    conn.reset()


def reset_mid_upload(conn):
    """Greet, log in, read 2 MiB of the client's upload, then reset."""
    st = conn.st
    greet_and_login(st)
    got = 0
    while got < 2 * MIB:
        data = st.recv()
        check(data, "client stopped early")
        got += len(data)
    conn.reset()


SERVER_RESETS = {
    "handshake": (reset_in_handshake, False, "during the TLS handshake"),
    "starttls-dialogue": (reset_in_dialogue, "starttls",
                          "during the STARTTLS dialogue"),
    "starttls-handshake": (reset_after_go_ahead, "starttls",
                           "during the TLS handshake"),
}


def silent_close_notify(conn):
    """TLS up, then close_notify and FIN without a word."""
    conn.st.close()


def silent_fin(conn):
    """TLS up, then FIN without close_notify or a word."""
    conn.sock.shutdown(socket.SHUT_WR)
    conn.read_until_closed()


def silent_after_starttls(t):
    def script(conn):
        starttls_go_ahead(conn)
        conn.st.start_tls(t.tls_context())
        conn.st.close()
    return script


@case(params={"imap": {"protocol": "imap", "how": "close_notify"},
              "pop3": {"protocol": "pop3", "how": "close_notify"},
              "smtp-fin": {"protocol": "smtp", "how": "fin"},
              "imap-starttls": {"protocol": "imap", "how": "starttls"}})
def test_server_closes_without_a_word(t, protocol, how):
    """A server that completes TLS and closes without sending anything (at
    its connection limit, say): the client gets the protocol's error line,
    not a bare close, and the log says what happened."""
    if how == "starttls":
        srv = script_server(t, silent_after_starttls(t), tls=False)
        svc = t.service(srv, protocol, tls="starttls")
    else:
        srv = script_server(t, silent_close_notify if how == "close_notify"
                            else silent_fin)
        svc = t.service(srv, protocol)
    d = t.daemon(svc)
    mark = d.mark()
    c = t.connect(svc)
    if how == "starttls":
        c.expect_line(DAEMON_GREETING[protocol])
    expect_error_line(c, protocol)
    d.wait_log(r"ending: server closed the (session|connection) before "
               r"sending anything", since=mark)


def with_good_service(t, bad_svc, **daemon_opts):
    """A daemon serving bad_svc and, beside it, a working service."""
    good_srv = script_server(t, mail_script)
    good = t.service(good_srv, name="good")
    d = t.daemon(bad_svc, good, **daemon_opts)
    return good, d


@case(params={k: {"when": k} for k in SERVER_RESETS})
def test_server_reset_before_relay(t, when):
    """The server resets mid-handshake or mid-dialogue: the client gets the
    error line, the log says "reset", the daemon serves on."""
    script, mode, where = SERVER_RESETS[when]
    if mode == "starttls":
        srv = script_server(t, script, tls=False)
        svc = t.service(srv, tls="starttls")
    else:
        srv = script_server(t, script, tls=False)
        svc = t.service(srv)
    good, d = with_good_service(t, svc)
    base = fd_count(d.pid)
    mark = d.mark()
    c = t.connect(svc)
    expect_error_line(c, "imap")
    c.close()
    d.wait_log(r"cannot reach .* securely: Connection reset by peer %s"
               % where, since=mark)
    wait_fds(d, base)
    serves_normally(good)


@case(params={"download": {"upload": False}, "upload": {"upload": True}})
def test_server_reset_mid_transfer(t, upload):
    """The server resets after a few MiB: the client's connection closes
    (no error line in the middle of its data), what it got is intact."""
    srv = script_server(t, reset_mid_upload if upload else
                        reset_mid_download)
    svc = t.service(srv)
    good, d = with_good_service(t, svc)
    base = fd_count(d.pid)
    mark = d.mark()
    c = t.connect(svc, timeout=STALL)
    c.expect_line(GREETING["imap"])
    login(c, "imap")
    if upload:
        # Once the session ended the daemon closes its side and discards
        # what the client still sends: send until that close shows.
        sent, closed = 0, False
        try:
            for chunk in random_chunks(64 * MIB, 5):
                c.send(chunk)
                sent += len(chunk)
                if not c.is_open():
                    closed = True
                    break
        except OSError:
            closed = True
        check(closed, "the connection stayed open after %d bytes", sent)
        check(c.buf == b"", "client got %r", bytes(c.buf[:100]))
        c.close()
    else:
        size = 16 * MIB
        c.send(b"a3 GET %d 9\r\n" % size)
        count, sha = c.hash_to_eof(timeout=30)
        check(count < size, "client got all %d bytes", count)
        check(hashlib.sha256(payload(size, 9)[:count]).hexdigest() == sha,
              "the %d bytes the client got are not the server's", count)
        c.close()
    d.wait_log(r"closed: .*(reset|without close_notify)", since=mark)
    wait_fds(d, base)
    serves_normally(good)


# ------------------------------------------------------ 4. client resets

def hold_in_handshake(conn):
    """Take the ClientHello, say nothing, read until the daemon closes."""
    read_hello(conn)
    conn.rec.logged_in.set()            # "reached the point": see the test
    conn.read_until_closed()


def hold_in_dialogue(conn):
    conn.st.sendall(STARTTLS_GREETING)
    conn.st.readline()
    conn.rec.logged_in.set()
    conn.read_until_closed()


def hold_after_go_ahead(conn):
    starttls_go_ahead(conn)
    read_hello(conn)
    conn.rec.logged_in.set()
    conn.read_until_closed()


def endless_download(conn):
    """Greet, log in, then send data until the peer goes away."""
    st = conn.st
    greet_and_login(st)
    conn.rec.logged_in.set()
    try:
        for chunk in random_chunks(1 << 40, 3):
            st.sendall(chunk)
    except OSError as e:
        conn.rec.result["ended"] = repr(e)


def endless_upload(conn):
    """Greet, log in, read until the peer goes away."""
    st = conn.st
    greet_and_login(st)
    conn.rec.logged_in.set()
    conn.read_until_closed()


CLIENT_RESETS = {
    "handshake": (hold_in_handshake, False),
    "starttls-dialogue": (hold_in_dialogue, "starttls"),
    "starttls-handshake": (hold_after_go_ahead, "starttls"),
    "download": (endless_download, True),
    "upload": (endless_upload, True),
}


@case(params={k: {"when": k} for k in CLIENT_RESETS})
def test_client_reset(t, when):
    """The client resets while the daemon talks to the server (handshake,
    STARTTLS dialogue) or mid-transfer: the server sees its connection
    closed, the daemon's descriptors return to their baseline."""
    script, mode = CLIENT_RESETS[when]
    srv = script_server(t, script, tls=mode is True)
    svc = t.service(srv, **({"tls": "starttls"} if mode == "starttls"
                            else {}))
    good, d = with_good_service(t, svc)
    base = fd_count(d.pid)
    mark = d.mark()
    c = t.connect(svc, timeout=STALL)
    if mode is True:
        c.expect_line(GREETING["imap"])
        login(c, "imap")
    rec = srv.conn(0)
    check(rec.logged_in.wait(5), "the server never reached the point")
    if when == "download":
        c.recv_exact(2 * MIB, timeout=STALL)
    elif when == "upload":
        for chunk in random_chunks(2 * MIB, 4):
            c.send(chunk)
        wait_until(lambda: rec.app_count >= MIB, 5, "the upload to flow")
    reset(c.sock)
    rec.wait_done(5)
    d.wait_log(r"closed: client connection reset", since=mark)
    wait_fds(d, base)
    serves_normally(good)


def greet_and_close(conn):
    conn.st.sendall(GREETING["imap"])
    conn.st.close()


@case(timeout=60)
def test_closing_client_cannot_hold_the_session(t):
    """The server ended the session; a client that never closes but keeps
    sending a byte now and then does not keep it (and its max_sessions
    slot) open: the close waits the linger time (5 s), not for the client."""
    srv = script_server(t, greet_and_close)
    svc = t.service(srv)
    d = t.daemon(svc)
    mark = d.mark()
    c = t.connect(svc)
    c.expect_line(GREETING["imap"])
    stop = threading.Event()

    def trickle():
        while not stop.wait(0.5):
            try:
                c.send(b"x")
            except OSError:
                return
    th = threading.Thread(target=trickle, daemon=True)
    th.start()
    try:
        d.wait_log(r"\] closed: server closed the session", since=mark,
                   timeout=20, what="the session to end while the client "
                   "still sends")
    finally:
        stop.set()
        th.join(5)


@case()
def test_client_reset_while_connecting(t):
    """The client resets while the daemon's connect hangs (blackhole): the
    attempt is abandoned at once, nothing stays open."""
    bh = t.blackhole()
    svc = t.service(bh.address, connect_timeout=10)
    good, d = with_good_service(t, svc)
    base = fd_count(d.pid)
    mark = d.mark()
    c = t.connect(svc)
    d.wait_log(r"client .*, connecting to", since=mark)
    reset(c.sock)
    d.wait_log(r"closed: client connection reset", since=mark, timeout=3)
    wait_fds(d, base)
    serves_normally(good)


# ---------------------------------------------------- 5. trickling servers

TRICKLE = 0.5           # seconds between two bytes
TRICKLED = 6            # bytes trickled each time: 3 s, past idle_timeout


def trickle(st, data):
    """Send data one byte (one TLS record) every TRICKLE seconds."""
    for i in range(len(data)):
        st.sendall(data[i:i + 1])
        time.sleep(TRICKLE)


def trickle_script(conn):
    """mail_script, but the greeting starts with a trickle and so does the
    middle of a GET; after a GET the server says nothing more."""
    st = conn.st
    greeting = GREETING["imap"]
    trickle(st, greeting[:TRICKLED])
    st.sendall(greeting[TRICKLED:])
    st.readline()
    st.sendall(b"a1 OK LOGIN completed\r\n")
    words = st.readline().split()       # a3 GET n seed
    data = payload(int(words[2]), int(words[3]))
    st.sendall(data[:MIB])
    trickle(st, data[MIB:MIB + TRICKLED])
    st.sendall(data[MIB + TRICKLED:] + words[0] + b" OK done\r\n")
    conn.read_until_closed()


@case(timeout=40)
def test_trickling_server_within_idle_timeout(t):
    """A server that sends a byte every 0.5 s (greeting, then mid-transfer)
    for longer than idle_timeout = 2: the session lives on while bytes
    flow, the data is intact, and it ends by idle timeout once they stop."""
    srv = script_server(t, trickle_script)
    svc = t.service(srv, idle_timeout=2)
    d = t.daemon(svc)
    mark = d.mark()
    c = t.connect(svc, timeout=STALL)
    t0 = time.monotonic()
    c.expect_line(GREETING["imap"])
    check(time.monotonic() - t0 >= TRICKLED * TRICKLE * 0.8,
          "the greeting was not trickled")
    login(c, "imap")
    size = MIB + 1000
    c.send(b"a3 GET %d 11\r\n" % size)
    data = c.recv_exact(size, timeout=30)
    check(data == payload(size, 11), "the trickled data differs")
    c.expect_line(b"a3 OK done\r\n")
    check(not d.find_log(r"idle timeout", since=mark),
          "the daemon timed out a session that was trickling")
    t1 = time.monotonic()
    check(c.read_to_eof(10) == b"", "data after the end")
    idle = time.monotonic() - t1
    check(1.5 <= idle <= 5, "closed %.1fs after the last byte (idle_timeout"
          " = 2)", idle)
    c.close()
    d.wait_log(r"closed: idle timeout", since=mark)


def trickle_handshake_script(t, starttls):
    """The server's handshake flight, one byte every 0.25 s, forever."""
    def script(conn):
        if starttls:
            starttls_go_ahead(conn)
        bio_in, bio_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = t.tls_context().wrap_bio(bio_in, bio_out, server_side=True)
        flight = b""
        while not flight:
            data = conn.sock.recv(65536)
            check(data, "EOF before the ClientHello")
            bio_in.write(data)
            try:
                tls.do_handshake()
            except ssl.SSLWantReadError:
                pass
            flight = bio_out.read()
        conn.rec.logged_in.set()
        for i in range(len(flight)):
            conn.sock.sendall(flight[i:i + 1])
            time.sleep(0.25)
    return script


@case(params={"implicit": {"starttls": False},
              "starttls": {"starttls": True}})
def test_trickling_handshake_is_bounded(t, starttls):
    """A server that trickles its TLS handshake (implicit, or after the
    STARTTLS go-ahead) a byte at a time: handshake_timeout = 2 still ends
    it, counted from the TCP connect."""
    srv = script_server(t, trickle_handshake_script(t, starttls), tls=False)
    svc = t.service(srv, handshake_timeout=2,
                    **({"tls": "starttls"} if starttls else {}))
    good, d = with_good_service(t, svc)
    base = fd_count(d.pid)
    mark = d.mark()
    t0 = time.monotonic()
    c = t.connect(svc)
    expect_error_line(c, "imap")
    secs = time.monotonic() - t0
    c.close()
    check(srv.conn(0).logged_in.is_set(), "the server never trickled")
    check(1.5 <= secs <= 5, "handshake ended after %.1fs (handshake_timeout"
          " = 2)", secs)
    d.wait_log(r"cannot reach .* securely: TLS handshake timed out",
               since=mark)
    srv.conn(0).wait_done(5)
    wait_fds(d, base)
    serves_normally(good)


# --------------------------------------------- 6. a client that never reads

FILLER = b"".join(b"* OK [ALERT] filler line %06d, the client is not reading"
                  b"\r\n" % i for i in range(1000))


def flood_script(total, starttls, t):
    """Greet, then push total bytes of untagged lines before any login
    (the daemon's capability filter reads every one), then "* OK done"."""
    def script(conn):
        st = conn.st
        if starttls:
            starttls_go_ahead(conn)
            st.start_tls(t.tls_context())
        else:
            st.sendall(GREETING["imap"])
        conn.rec.sent = 0
        for _ in range(total // len(FILLER)):
            st.sendall(FILLER)
        st.sendall(b"* OK done\r\n")
        conn.rec.finished_sending.set()
        mail_loop(conn)
    return script


@case(timeout=90, heavy=True, params={"implicit": {"starttls": False},
                                      "starttls": {"starttls": True}})
def test_non_reading_client_before_login(t, starttls):
    """Before login (the capability filter in the path) a server pushes
    24 MiB of lines to a client that reads nothing: the server is held by
    back-pressure (about 5 MiB sit in the kernel's socket buffers), the
    daemon's memory stays bounded; then the client reads it all, intact,
    and logs in."""
    from test_relay import quarantine_env, watch_until_stalled
    total = 24 * MIB // len(FILLER) * len(FILLER)
    srv = script_server(t, flood_script(total, starttls, t),
                        tls=not starttls)
    svc = t.service(srv, **({"tls": "starttls"} if starttls else {}))
    d = t.daemon(svc, env=quarantine_env())
    c = t.connect(svc, timeout=30, rcvbuf=4096)
    base = d.rss_kib()
    rec = srv.conn(0)
    peak, ahead = watch_until_stalled(d, rec)
    check(ahead < 16 * MIB, "server pushed %d MiB ahead of a client that "
          "reads nothing", ahead // MIB)
    check(peak - base < 16 * 1024, "daemon RSS grew by %d KiB (from %d KiB)",
          peak - base, base)
    check(not rec.finished_sending.is_set(), "the server was never held")
    c.expect_line(svc_greeting(svc))
    h, want = hashlib.sha256(), hashlib.sha256()
    for _ in range(total // len(FILLER)):
        h.update(c.recv_exact(len(FILLER), timeout=30))
        want.update(FILLER)
    check(h.digest() == want.digest(), "the lines arrived changed")
    c.expect_line(b"* OK done\r\n")
    login(c, "imap")
    noop(c, "imap", b"after-the-flood")


# ------------------------------------------------------------------ 7. DNS

def dns_daemon(t, table, names, **svc_opts):
    """A DnsServer for table and a daemon resolving through it, with one
    service per name in names (remote = name:port of a mail_script server
    on 127.0.0.1, or of port for ("name", port)) and the "good" service."""
    dns, conf = dns_server(t, table)
    srv = script_server(t, mail_script)
    services = []
    for i, name in enumerate(names):
        host, port = name if isinstance(name, tuple) else (name, srv.port)
        services.append(t.service("%s:%d" % (host, port), name="dns%d" % i,
                                  **svc_opts))
    good = t.service(srv, name="good")
    d = t.daemon(*services, good, env={"MAILTLSD_RESOLV_CONF": conf})
    return dns, srv, services, good, d


def expect_dns_failure(t, d, svc, name, within):
    """The client gets the error line within `within` seconds and the log
    says the name cannot be resolved."""
    mark = d.mark()
    t0 = time.monotonic()
    c = t.connect(svc, timeout=within + 5)
    expect_error_line(c, "imap", timeout=within + 5)
    secs = time.monotonic() - t0
    c.close()
    check(secs <= within, "the error line came after %.1fs", secs)
    d.wait_log(r"cannot reach .* securely: cannot resolve %s" % re.escape(
        name), since=mark)
    return secs


@case(params={"nxdomain": {"rcode": "nxdomain"},
              "servfail": {"rcode": "servfail"}})
def test_dns_failure(t, rcode):
    """The name server answers NXDOMAIN or SERVFAIL: the client gets the
    error line at once, the log says "cannot resolve", the daemon serves."""
    name = "bad.faults.test"
    dns, srv, (svc,), good, d = dns_daemon(t, {name: {"rcode": rcode}},
                                           [name])
    base = fd_count(d.pid)
    for _ in range(2):
        expect_dns_failure(t, d, svc, name, within=3)
    wait_fds(d, base)
    serves_normally(good)


@case(timeout=45)
def test_dns_no_answer(t):
    """A name server that never answers: the resolver gives up after its
    own timeout (2 attempts x 5 s) and the client gets the error line.  A
    second client that resets while its lookup is outstanding is dropped
    at once, and the lookup's late end does not touch its session."""
    name = "silent.faults.test"
    dns, srv, (svc,), good, d = dns_daemon(t, {name: {"drop": True}},
                                           [name])
    base = fd_count(d.pid)
    mark = d.mark()
    quitter = t.connect(svc)
    dns.wait_query(name)
    reset(quitter.sock)
    d.wait_log(r"closed: client connection reset", since=mark, timeout=3)
    serves_normally(good)               # the loop is not blocked meanwhile
    secs = expect_dns_failure(t, d, svc, name, within=16)
    check(secs >= 8, "gave up after %.1fs: not the resolver's timeout", secs)
    wait_fds(d, base)
    serves_normally(good)


@case()
def test_dns_slow_answer(t):
    """The answer comes after 1 s: the session waits for it and works."""
    name = "slow.faults.test"
    dns, srv, (svc,), good, d = dns_daemon(
        t, {name: {"A": ["127.0.0.1"], "delay": 1}}, [name])
    t0 = time.monotonic()
    out = checked_session(svc.port, get=100000, stall=10)
    check(out == "ok", "the session ended %s", out)
    check(time.monotonic() - t0 >= 0.9, "the answer was not delayed")


def have_ipv6_loopback():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


@case()
def test_dns_first_address_refuses(t):
    """A name with several addresses, the first of which refuses: each is
    tried in turn and the session works (two A records in both orders, and
    an AAAA record beside the A record when ::1 exists)."""
    names = {"v4-refused-first.faults.test": {"A": ["127.0.0.2",
                                                   "127.0.0.1"]},
             "v4-refused-last.faults.test": {"A": ["127.0.0.1",
                                                  "127.0.0.2"]}}
    if have_ipv6_loopback():
        # Nothing listens on [::1]:port: whichever family comes first,
        # one address refuses and the other works.
        names["dual.faults.test"] = {"A": ["127.0.0.1"], "AAAA": ["::1"]}
    dns, srv, services, good, d = dns_daemon(t, names, list(names))
    for name, svc in zip(names, services):
        mark = d.mark()
        out = checked_session(svc.port, get=100000, stall=10)
        check(out == "ok", "%s: the session ended %s", name, out)
        d.wait_log(r"TCP connected to 127\.0\.0\.1:%d" % srv.port, since=mark)
    check(srv.count() == len(names), "the server saw %d connections",
          srv.count())
