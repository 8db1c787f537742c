#!/usr/bin/env python3
"""Soak and load test for mailtlsd: many sessions, churn, nothing lost or
leaked.

    python3 tests/soak/soak.py [--daemon build/mailtlsd] [--seconds 300]
        [--sessions 2000] [--warmup S] [--idle-sessions 1000]

(make soak SOAK_SECONDS=N SOAK_SESSIONS=M runs it.)  It starts a local TLS
server (implicit-TLS IMAP-ish, in --servers processes sharing one port with
SO_REUSEPORT) and mailtlsd relaying a loopback port to it, then client
processes that keep --sessions sessions open at all times for the duration:
each session connects, reads the greeting, logs in ("a1 LOGIN u p", which
the daemon's pre-login filter lets through and then steps aside), runs
transfers checked by SHA-256 (ECHO: bytes up and back; SOURCE: bytes down;
SINK: bytes up, the server answers their hash) with pauses between them,
and leaves; a new session takes its place.  A share of the sessions read
slowly (a 4 KiB receive buffer, small reads with sleeps) and a share reset
their connection (SO_LINGER 0) at a chosen point: before the greeting,
before the login reply, in the middle of a download or an upload, or idle.

The run has a warm-up phase, after which every client is gone and the
daemon's RSS is noted, then the main phase.  Then --idle-sessions relayed
sessions sit idle while the daemon's user+system CPU time is measured over
5 s: it must stay under 0.05 s.  After the warm-up, after the main phase
and at the end, with all clients gone, the daemon's open descriptors
(/proc/PID/fd) must be back to their count at start and its RSS (read once
idle, after a few short sessions: see settled_rss()) within max(10%, 4 MiB)
of the post-warm-up value (reported only for sanitizer builds, whose
allocator keeps freed memory in quarantine).  Any session error fails the
run; a session fails when nothing moves for STEP_TIMEOUT.  Prints sessions
completed, bytes verified, errors by kind, the daemon's peak and final
descriptors and RSS, and PASS or FAIL (exit 1).

The load processes run at nice +5 so that on a small machine the daemon
under test is not the one kept waiting for the CPU.

The same functions serve tests/integration/test_soak_short.py.
"""

import argparse
import asyncio
import collections
import hashlib
import json
import logging
import os
import random
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
INTEGRATION = os.path.join(TOP, "tests", "integration")

GREETING = b"* OK soak server ready\r\n"
BLOCK = random.Random(0x5eed).randbytes(1 << 20)   # payloads cycle through
CHUNK = 65536
STEP_TIMEOUT = 120          # seconds without progress that fail a session
SLOW_WAIT = 10              # a wait this long is counted (and reported)
RSS_MARGIN = 0.10           # RSS after the run vs after the warm-up ...
RSS_SLACK_KIB = 4096        # ... whichever of the two is larger
LOAD_NICE = 5               # the load processes yield to the daemon
SETTLE_ROUNDS = 6           # rounds of 5 short sessions before an RSS
IDLE_CPU_SECONDS = 5.0
IDLE_CPU_MAX = 0.05

# Session kinds and their shares.
KINDS = [("normal", 0.62), ("slow", 0.10), ("fin", 0.06),
         ("rst_connect", 0.04), ("rst_login", 0.04), ("rst_download", 0.05),
         ("rst_upload", 0.05), ("rst_idle", 0.04)]


def payload(seed, n):
    """n bytes for a transfer, in pieces: BLOCK from an offset, cycling."""
    off = (seed * 7919) % len(BLOCK)
    while n > 0:
        k = min(n, CHUNK, len(BLOCK) - off)
        yield BLOCK[off:off + k]
        n -= k
        off = (off + k) % len(BLOCK)


def payload_hash(seed, n):
    h = hashlib.sha256()
    for piece in payload(seed, n):
        h.update(piece)
    return h.hexdigest()


# ================================================================ server

async def serve_conn(reader, writer):
    """One connection: greeting, LOGIN, then ECHO/SOURCE/SINK/QUIT."""
    try:
        writer.write(GREETING)
        await writer.drain()
        while True:
            line = await reader.readline()
            if not line:
                return
            words = line.split()
            tag = words[0] if words else b"*"
            if len(words) >= 2 and words[1].upper() == b"LOGIN":
                writer.write(tag + b" OK LOGIN completed\r\n")
                break
            writer.write(tag + b" BAD expected LOGIN\r\n")
        await writer.drain()
        while True:
            line = await reader.readline()
            if not line:
                return
            w = line.split()
            cmd = w[0].upper() if w else b""
            if cmd == b"ECHO":
                left = int(w[1])
                while left > 0:
                    data = await reader.read(min(left, CHUNK))
                    if not data or writer.transport.is_closing():
                        return
                    left -= len(data)
                    writer.write(data)
                    await writer.drain()
            elif cmd == b"SOURCE":
                for piece in payload(int(w[2]), int(w[1])):
                    if writer.transport.is_closing():
                        return
                    writer.write(piece)
                    await writer.drain()
            elif cmd == b"SINK":
                left, h = int(w[1]), hashlib.sha256()
                while left > 0:
                    data = await reader.read(min(left, CHUNK))
                    if not data:
                        return
                    left -= len(data)
                    h.update(data)
                writer.write(b"SINK " + h.hexdigest().encode() + b"\r\n")
                await writer.drain()
            elif cmd == b"QUIT":
                writer.write(b"* BYE\r\n")
                await writer.drain()
                return
            else:
                writer.write(b"* BAD unknown command\r\n")
                await writer.drain()
    except (OSError, ssl.SSLError, ValueError, IndexError,
            asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


def load_process():
    """Set up a load process: the daemon under test goes first for the CPU
    (on two cores the load takes more than the daemon), and peers that reset
    are the point here: no asyncio warnings about them."""
    os.nice(LOAD_NICE)
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)


def role_server(args):
    """A TLS server process on --port (SO_REUSEPORT); prints "ready"."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.options |= getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    ctx.load_cert_chain(args.cert, args.key)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(4096)

    async def main():
        srv = await asyncio.start_server(serve_conn, sock=sock, ssl=ctx,
                                         backlog=4096,
                                         ssl_handshake_timeout=60)
        print("ready %d" % sock.getsockname()[1], flush=True)
        async with srv:
            await srv.serve_forever()

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    load_process()
    asyncio.run(main())


# ================================================================ clients

class SessionError(Exception):
    def __init__(self, kind, detail=""):
        super().__init__(kind)
        self.kind = kind
        self.detail = detail


class Stats:
    def __init__(self):
        self.c = collections.Counter()
        self.errors = collections.Counter()
        self.samples = {}

    def error(self, kind, detail):
        self.errors[kind] += 1
        if kind not in self.samples:
            self.samples[kind] = detail[:200]

    def as_dict(self):
        return {"counts": dict(self.c), "errors": dict(self.errors),
                "samples": self.samples}


WAITS = collections.Counter()   # waits over SLOW_WAIT, by step; longest


async def step(aw, what):
    """Await one step of a session: a failure after STEP_TIMEOUT."""
    t0 = time.monotonic()
    try:
        return await asyncio.wait_for(aw, STEP_TIMEOUT)
    except asyncio.TimeoutError:
        raise SessionError("timeout:" + what) from None
    finally:
        took = time.monotonic() - t0
        what = what.split()[0]          # "sink send" -> "sink"
        WAITS["longest_wait_ms:" + what] = max(
            WAITS["longest_wait_ms:" + what], int(took * 1000))
        if took > SLOW_WAIT:
            WAITS["slow_waits:" + what] += 1


async def expect_line(reader, prefix, what):
    line = await step(reader.readline(), what)
    if not line:
        raise SessionError("eof:" + what)
    if not line.startswith(prefix):
        raise SessionError("unexpected:" + what, repr(line[:120]))
    return line


def reset(writer):
    """Abort the connection with an RST (SO_LINGER 0)."""
    sock = writer.get_extra_info("socket")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                        struct.pack("ii", 1, 0))
    except OSError:
        pass
    writer.transport.abort()


def pick_size(rng):
    r = rng.random()
    if r < 0.80:
        return rng.randint(100, 16384)
    if r < 0.98:
        return rng.randint(16385, 131072)
    return rng.randint(131073, 1 << 20)


async def send_payload(writer, seed, n, what, stop_after=None):
    """Send a payload; each piece must be taken within STEP_TIMEOUT."""
    sent = 0
    for piece in payload(seed, n):
        if stop_after is not None and sent >= stop_after:
            return
        writer.write(piece)
        sent += len(piece)
        await step(writer.drain(), what)


async def read_exact_hash(reader, n, what, slow=None):
    h, left = hashlib.sha256(), n
    while left > 0:
        data = await step(reader.read(min(left, 4096 if slow else CHUNK)),
                          what)
        if not data:
            raise SessionError("eof:" + what, "%d of %d bytes" % (n - left,
                                                                  n))
        h.update(data)
        left -= len(data)
        if slow:
            await asyncio.sleep(slow)
    return h.hexdigest()


async def op_echo(reader, writer, rng, st):
    n, seed = pick_size(rng), rng.getrandbits(32)
    writer.write(b"ECHO %d\r\n" % n)
    sender = asyncio.ensure_future(send_payload(writer, seed, n,
                                                "echo send"))
    try:
        got = await read_exact_hash(reader, n, "echo")
        await sender
    finally:
        sender.cancel()
    if got != payload_hash(seed, n):
        raise SessionError("hash_mismatch:echo", "%d bytes" % n)
    st.c["transfers_verified"] += 1
    st.c["bytes_verified"] += 2 * n


async def op_source(reader, writer, rng, st, slow=None):
    n, seed = pick_size(rng), rng.getrandbits(32)
    if slow:
        n = rng.randint(65536, 393216)
    writer.write(b"SOURCE %d %d\r\n" % (n, seed))
    got = await read_exact_hash(reader, n, "source", slow)
    if got != payload_hash(seed, n):
        raise SessionError("hash_mismatch:source", "%d bytes" % n)
    st.c["transfers_verified"] += 1
    st.c["bytes_verified"] += n


async def op_sink(reader, writer, rng, st):
    n, seed = pick_size(rng), rng.getrandbits(32)
    writer.write(b"SINK %d\r\n" % n)
    await send_payload(writer, seed, n, "sink send")
    try:
        line = await expect_line(reader, b"SINK ", "sink reply")
    except SessionError as e:
        e.detail += "%d bytes sent" % n
        raise
    if line.split()[1].decode() != payload_hash(seed, n):
        raise SessionError("hash_mismatch:sink", "%d bytes" % n)
    st.c["transfers_verified"] += 1
    st.c["bytes_verified"] += n


async def one_session(cfg, rng, st, deadline):
    """One session of a random kind; raises SessionError on a failure."""
    kind = rng.choices([k for k, _ in KINDS], [w for _, w in KINDS])[0]
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    # A small send buffer: an upload progresses only as the daemon reads.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    if kind == "slow":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        await step(loop.sock_connect(sock, ("127.0.0.1", cfg.port)),
                   "connect")
    except OSError as e:
        sock.close()
        raise SessionError("connect:%s" % (e.strerror or e), str(e))
    except SessionError:
        sock.close()
        raise
    reader, writer = await asyncio.open_connection(
        sock=sock, limit=4096 if kind == "slow" else CHUNK)
    st.c["sessions_started"] += 1
    try:
        if kind == "rst_connect":
            reset(writer)
            st.c["aborted:" + kind] += 1
            return
        await expect_line(reader, b"* OK", "greeting")
        writer.write(b"a1 LOGIN u p\r\n")
        if kind == "rst_login":
            reset(writer)
            st.c["aborted:" + kind] += 1
            return
        await expect_line(reader, b"a1 OK", "login")
        if kind == "rst_download":
            writer.write(b"SOURCE 1048576 %d\r\n" % rng.getrandbits(32))
            await step(reader.readexactly(rng.randint(1, 200000)),
                       "download")
            reset(writer)
            st.c["aborted:" + kind] += 1
            return
        if kind == "rst_upload":
            n = 1 << 20
            writer.write(b"SINK %d\r\n" % n)
            await send_payload(writer, 1, n, "upload",
                               stop_after=rng.randint(1, n - 1))
            reset(writer)
            st.c["aborted:" + kind] += 1
            return
        if kind == "rst_idle":
            await asyncio.sleep(rng.uniform(0, cfg.think))
            reset(writer)
            st.c["aborted:" + kind] += 1
            return
        if kind == "slow":
            await op_source(reader, writer, rng, st, slow=0.005)
        else:
            for _ in range(rng.randint(1, 3)):
                op = rng.choice((op_echo, op_source, op_sink))
                await op(reader, writer, rng, st)
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(rng.uniform(0, cfg.think))
        if kind == "fin":
            writer.write_eof()          # half-close: the server then closes
            rest = await step(reader.read(), "close")
            if rest:
                raise SessionError("unexpected:close", repr(rest[:120]))
        else:
            writer.write(b"QUIT\r\n")
            await expect_line(reader, b"* BYE", "quit")
            if await step(reader.read(), "close"):
                raise SessionError("unexpected:after quit")
        st.c["sessions_completed"] += 1
        st.c["completed:" + kind] += 1
    except SessionError as e:
        e.detail = "%s session: %s" % (kind, e.detail)
        raise
    except (ConnectionResetError, BrokenPipeError) as e:
        raise SessionError("reset_by_peer", str(e)) from None
    except asyncio.IncompleteReadError as e:
        raise SessionError("eof:read", "%d bytes" % len(e.partial)) from None
    finally:
        if not writer.transport.is_closing():
            writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), 5)
        except (OSError, asyncio.TimeoutError):
            pass


async def slot(cfg, idx, st, deadline):
    rng = random.Random(cfg.seed * 100003 + idx)
    await asyncio.sleep(rng.uniform(0, cfg.ramp))
    while time.monotonic() < deadline:
        try:
            await one_session(cfg, rng, st, deadline)
        except SessionError as e:
            st.error(e.kind, e.detail)
            await asyncio.sleep(0.1)
        except Exception as e:          # a bug here, or an odd failure
            st.error("exception:%s" % type(e).__name__, str(e))
            await asyncio.sleep(0.1)


def role_clients(args):
    """Keep --sessions sessions going for --seconds; print stats as JSON."""
    st = Stats()

    async def main():
        deadline = time.monotonic() + args.seconds
        tasks = [asyncio.ensure_future(slot(args, i, st, deadline))
                 for i in range(args.sessions)]
        done, pending = await asyncio.wait(
            tasks, timeout=args.seconds + 3 * STEP_TIMEOUT)
        for t in pending:
            t.cancel()
            st.error("unfinished_at_end", "session still running")

    load_process()
    asyncio.run(main())
    st.c.update(WAITS)
    print(json.dumps(st.as_dict()), flush=True)


def role_idle(args):
    """Open --sessions logged-in sessions; "ready OK ERR"; close on input."""
    async def main():
        sem = asyncio.Semaphore(64)
        conns, errors = [], collections.Counter()

        async def open_one(i):
            async with sem:
                try:
                    r, w = await asyncio.wait_for(asyncio.open_connection(
                        "127.0.0.1", args.port), STEP_TIMEOUT)
                    await expect_line(r, b"* OK", "greeting")
                    w.write(b"i%d LOGIN u p\r\n" % i)
                    await expect_line(r, b"i%d OK" % i, "login")
                    conns.append(w)
                except (OSError, SessionError, asyncio.TimeoutError) as e:
                    errors[getattr(e, "kind", type(e).__name__)] += 1

        await asyncio.gather(*(open_one(i) for i in range(args.sessions)))
        print("ready %d %s" % (len(conns), json.dumps(dict(errors))),
              flush=True)
        await asyncio.get_running_loop().run_in_executor(
            None, sys.stdin.readline)
        for w in conns:
            w.close()
        print("closed", flush=True)

    load_process()
    asyncio.run(main())


# ============================================================ orchestration

def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    """User + system CPU time of pid, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sanitized(pid):
    """Whether the daemon runs with ASan (its RSS does not come back)."""
    try:
        with open("/proc/%d/maps" % pid) as f:
            return "libasan" in f.read()
    except OSError:
        return False


def script_cmd(role, *extra):
    return [sys.executable, os.path.abspath(__file__), "--role", role,
            *map(str, extra)]


def start_servers(cert, key, n, port=0):
    """n server processes on one port; returns (procs, port)."""
    procs = []
    for _ in range(n):
        p = subprocess.Popen(script_cmd("server", "--cert", cert, "--key",
                                        key, "--port", port),
                             stdout=subprocess.PIPE,
                             stdin=subprocess.DEVNULL)
        procs.append(p)
        line = p.stdout.readline().decode()
        if not line.startswith("ready"):
            stop_procs(procs)
            raise RuntimeError("soak server did not start: %r" % line)
        port = int(line.split()[1])
    return procs, port


def stop_procs(procs):
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


class Sampler:
    """Samples the daemon's fds and RSS in the background: the peaks."""

    def __init__(self, pid):
        self.pid = pid
        self.peak_fds = self.peak_rss = 0
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop.wait(0.25):
            try:
                self.peak_fds = max(self.peak_fds, fd_count(self.pid))
                self.peak_rss = max(self.peak_rss, rss_kib(self.pid))
            except OSError:
                return

    def close(self):
        self.stop.set()
        self.t.join()


def run_clients(port, seconds, sessions, workers, think, seed):
    """One phase of load; returns the merged stats."""
    per = [sessions // workers + (i < sessions % workers)
           for i in range(workers)]
    ramp = min(10.0, max(1.0, sessions / 200))
    procs = [subprocess.Popen(script_cmd("clients", "--port", port,
                                         "--seconds", seconds, "--sessions",
                                         n, "--think", think, "--ramp", ramp,
                                         "--seed", seed * 31 + i),
                              stdout=subprocess.PIPE,
                              stdin=subprocess.DEVNULL)
             for i, n in enumerate(per) if n > 0]
    total = {"counts": collections.Counter(), "errors": collections.Counter(),
             "samples": {}}
    for p in procs:
        out, _ = p.communicate(timeout=seconds + 4 * STEP_TIMEOUT)
        try:
            r = json.loads(out.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            total["errors"]["client_process_died"] += 1
            continue
        for k, v in r["counts"].items():
            if k.endswith("_ms"):       # a maximum, not a sum
                total["counts"][k] = max(total["counts"][k], v)
            else:
                total["counts"][k] += v
        total["errors"].update(r["errors"])
        for k, v in r["samples"].items():
            total["samples"].setdefault(k, v)
    return total


def wait_fds(pid, target, timeout=30):
    """Wait until the daemon's fd count is at most target; the last count."""
    deadline = time.monotonic() + timeout
    n = fd_count(pid)
    while n > target and time.monotonic() < deadline:
        time.sleep(0.1)
        n = fd_count(pid)
    return n


def quick_session(port):
    """Connect, log in, QUIT: one short session; True when it went well."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            f = s.makefile("rwb")
            ok = f.readline().startswith(b"* OK")
            f.write(b"q1 LOGIN u p\r\n")
            f.flush()
            ok = ok and f.readline().startswith(b"q1 OK")
            f.write(b"QUIT\r\n")
            f.flush()
            return ok and f.readline().startswith(b"* BYE")
    except OSError:
        return False


def settled_rss(pid, port, fds):
    """The daemon's RSS once idle, in KiB, and whether all went well.

    glibc gives memory back only from the top of its heap, so right after a
    load the RSS depends on where the last long-lived allocation landed
    (measured: 6 to 20 MiB after the same 1,000 sessions).  A few short
    sessions move it; the lowest RSS seen between them is the working set
    (then within 0.1 MiB from one load to the next).
    """
    ok, low = True, rss_kib(pid)
    for _ in range(SETTLE_ROUNDS):
        for _ in range(5):
            ok = quick_session(port) and ok
        wait_fds(pid, fds)
        low = min(low, rss_kib(pid))
    return low, ok


def idle_cpu(pid, port, sessions, seconds=IDLE_CPU_SECONDS):
    """Hold idle logged-in sessions; the daemon's CPU seconds meanwhile."""
    p = subprocess.Popen(script_cmd("idle", "--port", port, "--sessions",
                                    sessions),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        line = p.stdout.readline().decode().split(None, 2)
        if not line or line[0] != "ready":
            raise RuntimeError("idle clients did not start: %r" % line)
        opened, errors = int(line[1]), json.loads(line[2])
        time.sleep(1.0)                 # let the last handshakes settle
        c0, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(seconds)
        used, took = cpu_seconds(pid) - c0, time.monotonic() - t0
        fds = fd_count(pid)
        p.stdin.write(b"close\n")
        p.stdin.flush()
        p.stdout.readline()
    finally:
        p.stdin.close()
        p.wait(30)
    return {"sessions": opened, "errors": errors, "cpu": used,
            "seconds": took, "fds": fds}


def soak(pid, port, seconds, sessions, warmup, workers=2, think=None,
         idle_sessions=1000, log=print):
    """The whole run against a started daemon; returns the report."""
    if think is None:                   # about 250 sessions a second busy
        think = max(1.0, sessions / 250.0)
    rep = {"seconds": seconds, "sessions": sessions, "warmup_seconds": warmup,
           "workers": workers, "think": think, "sanitized": sanitized(pid)}
    rep["fds_start"], rep["rss_start"] = fd_count(pid), rss_kib(pid)
    sampler = Sampler(pid)
    t0 = time.monotonic()
    log("warm-up: %d s with %d sessions" % (warmup, sessions))
    warm = run_clients(port, warmup, sessions, workers, think, 1)
    rep["fds_after_warmup"] = wait_fds(pid, rep["fds_start"])
    rep["rss_after_warmup"], ok1 = settled_rss(pid, port, rep["fds_start"])
    log("main phase: %d s with %d sessions" % (seconds, sessions))
    cpu0 = cpu_seconds(pid)
    main = run_clients(port, seconds, sessions, workers, think, 2)
    rep["cpu_main"] = cpu_seconds(pid) - cpu0
    rep["fds_after_main"] = wait_fds(pid, rep["fds_start"])
    rep["rss_after_main"], ok2 = settled_rss(pid, port, rep["fds_start"])
    rep["load_seconds"] = time.monotonic() - t0
    if idle_sessions:
        log("idle: %d sessions, CPU over %.0f s" % (idle_sessions,
                                                   IDLE_CPU_SECONDS))
        rep["idle"] = idle_cpu(pid, port, idle_sessions)
    sampler.close()
    rep["fds_final"] = wait_fds(pid, rep["fds_start"])
    rep["rss_final"], ok3 = settled_rss(pid, port, rep["fds_start"])
    rep["fds_final"] = wait_fds(pid, rep["fds_start"])
    rep["settle_ok"] = ok1 and ok2 and ok3
    rep["fds_peak"], rep["rss_peak"] = sampler.peak_fds, sampler.peak_rss
    for name, ph in (("warmup", warm), ("main", main)):
        rep[name] = {"counts": dict(ph["counts"]),
                     "errors": dict(ph["errors"]),
                     "samples": ph["samples"]}
    return rep


def failures(rep):
    """What went wrong, as sentences; empty when the run passed."""
    bad = []
    for name in ("warmup", "main"):
        errs = rep[name]["errors"]
        if errs:
            bad.append("%s: %d session errors: %s" % (
                name, sum(errs.values()), ", ".join(
                    "%s %d" % kv for kv in sorted(errs.items()))))
    if not rep["main"]["counts"].get("sessions_completed"):
        bad.append("no session completed")
    if not rep["settle_ok"]:
        bad.append("a short session after the load failed")
    for key in ("fds_after_warmup", "fds_after_main", "fds_final"):
        if rep[key] != rep["fds_start"]:
            bad.append("%s: %d open fds, %d at start" % (key, rep[key],
                                                         rep["fds_start"]))
    limit = rep["rss_after_warmup"] + max(
        RSS_SLACK_KIB, int(RSS_MARGIN * rep["rss_after_warmup"]))
    for key in ("rss_after_main", "rss_final"):
        if rep[key] > limit and not rep["sanitized"]:
            bad.append("%s: RSS %d KiB, %d KiB after the warm-up (limit %d)"
                       % (key, rep[key], rep["rss_after_warmup"], limit))
    idle = rep.get("idle")
    if idle:
        if idle["errors"] or idle["sessions"] == 0:
            bad.append("idle sessions: %d opened, errors %s"
                       % (idle["sessions"], idle["errors"]))
        if idle["cpu"] >= IDLE_CPU_MAX:
            bad.append("%.2f s CPU in %.1f s with %d idle sessions (limit "
                       "%.2f)" % (idle["cpu"], idle["seconds"],
                                  idle["sessions"], IDLE_CPU_MAX))
    return bad


def mib(kib):
    return "%.1f MiB" % (kib / 1024.0)


def report_text(rep, daemon_log=None):
    """The human-readable summary."""
    c, out = rep["main"]["counts"], []
    w = rep["warmup"]["counts"]
    out.append("mailtlsd soak: %d s (after a %d s warm-up), %d concurrent "
               "sessions in %d client processes%s" % (
                   rep["seconds"], rep["warmup_seconds"], rep["sessions"],
                   rep["workers"], ", ASan build" if rep["sanitized"] else ""))
    done = c.get("sessions_completed", 0)
    out.append("sessions completed:  %d (%.0f/s; warm-up %d)" % (
        done, done / max(1, rep["seconds"]), w.get("sessions_completed", 0)))
    kinds = sorted(k for k in c if k.startswith("completed:"))
    out.append("  by kind:           " + ", ".join(
        "%s %d" % (k.split(":")[1], c[k]) for k in kinds))
    aborts = sorted(k for k in c if k.startswith("aborted:"))
    out.append("planned resets:      %d (%s)" % (
        sum(c[k] for k in aborts),
        ", ".join("%s %d" % (k.split(":")[1], c[k]) for k in aborts)))
    out.append("transfers verified:  %d (pauses up to %.1f s between them)"
               % (c.get("transfers_verified", 0), rep["think"]))
    out.append("bytes verified:      %d (%.2f GiB, SHA-256; %.1f MiB/s)" % (
        c.get("bytes_verified", 0), c.get("bytes_verified", 0) / 2**30,
        c.get("bytes_verified", 0) / 2**20 / max(1, rep["seconds"])))
    slow = sorted((k.split(":")[1], v) for k, v in c.items()
                  if k.startswith("slow_waits:"))
    longest = sorted(((v, k.split(":")[1]) for k, v in c.items()
                      if k.startswith("longest_wait_ms:")), reverse=True)
    out.append("client waits:        over %d s: %s; longest: %s" % (
        SLOW_WAIT, ", ".join("%s %d" % kv for kv in slow) or "none",
        ", ".join("%s %.1f s" % (k, v / 1000.0) for v, k in longest[:4])))
    errs = collections.Counter(rep["warmup"]["errors"])
    errs.update(rep["main"]["errors"])
    out.append("errors:              " + (", ".join(
        "%s %d" % kv for kv in sorted(errs.items())) or "none"))
    for phase in ("warmup", "main"):
        for k, v in rep[phase]["samples"].items():
            out.append("  %s e.g.: %s" % (k, v))
    out.append("daemon CPU:          %.1f s in the %d s main phase (%.0f%% of "
               "a core)" % (rep["cpu_main"], rep["seconds"],
                            100.0 * rep["cpu_main"] / max(1, rep["seconds"])))
    out.append("daemon fds:          start %d, peak %d, after warm-up %d, "
               "final %d" % (rep["fds_start"], rep["fds_peak"],
                             rep["fds_after_warmup"], rep["fds_final"]))
    out.append("daemon RSS:          start %s, peak %s, after warm-up %s, "
               "after the main phase %s, final %s (%+.1f%%; idle, after %d "
               "short sessions)" % (
                   mib(rep["rss_start"]), mib(rep["rss_peak"]),
                   mib(rep["rss_after_warmup"]), mib(rep["rss_after_main"]),
                   mib(rep["rss_final"]),
                   100.0 * (rep["rss_final"] - rep["rss_after_warmup"]) /
                   max(1, rep["rss_after_warmup"]), 5 * SETTLE_ROUNDS))
    idle = rep.get("idle")
    if idle:
        out.append("idle CPU:            %d idle relayed sessions: %.2f s "
                   "CPU in %.1f s (%d fds)" % (idle["sessions"], idle["cpu"],
                                               idle["seconds"], idle["fds"]))
    if daemon_log:
        out.append("daemon log (handshakes; warnings and errors by reason):")
        for reason, n in daemon_log.most_common(12):
            out.append("  %6d  %s" % (n, reason))
    bad = failures(rep)
    for b in bad:
        out.append("FAIL: " + b)
    out.append("result: %s" % ("FAIL" if bad else "PASS"))
    return "\n".join(out)


def log_reasons(lines):
    """Count the daemon's warning and error lines by their text, and its
    TLS handshakes with the server (resumed or not)."""
    n = collections.Counter()
    for line in lines:
        if "connected to" in line:
            n["(TLS handshakes with the server)"] += 1
            if line.rstrip().endswith(", resumed"):
                n["(of them resumed)"] += 1
            continue
        if not re.search(r"warn|error|fatal", line, re.I):
            continue
        text = re.sub(r"\d+(\.\d+)*(:\d+)?", "N", line)
        n[text[-120:]] += 1
    return n


def free_port():
    """A free loopback port below the ephemeral range."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 32000)
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError("no free port")


def main_cli(args):
    sys.path.insert(0, INTEGRATION)
    from certs import generate
    from daemon import Daemon, config_text

    binary = os.path.abspath(args.daemon)
    work = tempfile.mkdtemp(prefix="mailtlsd-soak-")
    certs = generate(os.path.join(work, "certs"))
    servers, sport = start_servers(certs.good, certs.key, args.servers)
    d = None
    try:
        lport = free_port()
        d = Daemon(binary, work, "mailtlsd")
        d.write_config(config_text(
            {"log_level": "info",
             "max_sessions": 2 * args.sessions + args.idle_sessions + 64,
             "max_sessions_per_client": 0},
            [("soak", {"listen": "127.0.0.1:%d" % lport,
                       "remote": "127.0.0.1:%d" % sport, "protocol": "imap",
                       "tls": "implicit", "server_name": "mail.test",
                       "ca_file": certs.ca})]))
        d.start()
        warmup = args.warmup if args.warmup is not None else \
            min(60, max(5, args.seconds // 5))
        rep = soak(d.pid, lport, args.seconds, args.sessions, warmup,
                   args.workers, args.think, args.idle_sessions)
        rc = d.stop(30)
        rep["daemon_exit"] = rc
        text = report_text(rep, log_reasons(d.log()))
        bad = d.sanitizer_report()
        if rc != 0 or bad:
            text += "\nFAIL: daemon exit %s on SIGTERM%s" % (
                rc, "; " + bad[0] if bad else "")
            text = text.replace("result: PASS", "result: FAIL")
        print(text)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(rep, f, indent=1)
        return 0 if text.endswith("result: PASS") else 1
    finally:
        if d is not None:
            d.kill()
        stop_procs(servers)
        if not args.keep:
            import shutil
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("kept %s" % work)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--daemon", default=os.path.join(TOP, "build",
                                                     "mailtlsd"))
    ap.add_argument("--seconds", type=int, default=300)
    ap.add_argument("--sessions", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=None,
                    help="warm-up seconds (default: seconds/5, 5 to 60)")
    ap.add_argument("--workers", type=int, default=2,
                    help="client processes")
    ap.add_argument("--servers", type=int, default=2,
                    help="server processes")
    ap.add_argument("--think", type=float, default=None,
                    help="longest pause between transfers, seconds "
                    "(default: sessions/250, at least 1)")
    ap.add_argument("--idle-sessions", type=int, default=1000)
    ap.add_argument("--json", help="also write the report here")
    ap.add_argument("--keep", action="store_true")
    # Internal: the child processes.
    ap.add_argument("--role", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--cert", help=argparse.SUPPRESS)
    ap.add_argument("--key", help=argparse.SUPPRESS)
    ap.add_argument("--ramp", type=float, default=1.0,
                    help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role == "server":
        return role_server(args)
    if args.role == "clients":
        return role_clients(args)
    if args.role == "idle":
        return role_idle(args)
    return main_cli(args)


if __name__ == "__main__":
    sys.exit(main())
