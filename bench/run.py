#!/usr/bin/env python3
"""make bench: mailtlsd side by side with stunnel4, on this machine, now.

Measures, for mailtlsd and for stunnel4 in client mode with certificate
verification on (verifyChain, checkHost, the same CA file), each proxy
listening on loopback and carrying IMAP to the benchmark's TLS server:

  1. throughput, download and upload, MB/s and daemon CPU seconds per GB,
     next to the raw mbedTLS AEAD speed (build/bench/aead_speed);
  2. time from connect to the greeting and to the first command answered
     (a1 NOOP), p50/p95, through a relay adding 25 ms each way: implicit
     TLS and STARTTLS, cold, with resumption and (mailtlsd) with the pool;
  3. daemon RSS per idle session at 1,000 and 9,000 sessions;
  4. new sessions per second with 8 concurrent clients, and CPU per session.

Every figure is the median of interleaved rounds (mailtlsd and stunnel
alternate who goes first).  The table is printed and written, with the raw
numbers, to build/bench/results.md and results.json.

Environment:
  MAILTLSD=path      the daemon (default build/mailtlsd)
  BENCH_OUT=dir      where results go and the C helpers are (build/bench)
  BENCH_QUICK=1      one round, 128 MiB transfers, 5 s session-rate runs
  BENCH_ROUNDS=n     rounds (default 3, quick 1)
  BENCH_KEY=rsa      RSA 2048 certificates instead of ECDSA P-256
  BENCH_TLS=1.2      the test server speaks TLS 1.2 at most (default: 1.3)
  BENCH_ONLY=a,b     only these sections: aead,throughput,latency,memory,rate
  STUNNEL=path       stunnel binary; STUNNEL=none measures mailtlsd alone
  BENCH_KEEP=1       keep the temporary directory (configs, logs, certs)
"""

import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import clients  # noqa: E402
import pki      # noqa: E402

PROXIES = ("mailtlsd", "stunnel")
DELAY = 0.025                   # one way, seconds: RTT 50 ms
POOL_SIZE = 4
CLK_TCK = os.sysconf("SC_CLK_TCK")
SECTIONS = ("aead", "throughput", "latency", "memory", "rate")


class BenchFailure(Exception):
    """A section could not be measured."""


class Unsupported(Exception):
    """The daemon refuses a configuration key of this benchmark."""


def log(text):
    sys.stderr.write("bench: %s\n" % text)
    sys.stderr.flush()


# ---------------------------------------------------------------- settings

@dataclass
class Settings:
    quick: bool
    rounds: int
    bulk_bytes: int
    latency_conns: int
    idle_counts: tuple
    rate_clients: int
    rate_secs: float
    aead_secs: float
    key_type: str
    sections: tuple
    out_dir: str
    mailtlsd: str
    stunnel: str = None             # path, or None when not available
    stunnel_note: str = ""


def settings_from_env():
    env = os.environ
    quick = env.get("BENCH_QUICK", "") not in ("", "0")
    rounds = int(env.get("BENCH_ROUNDS", "1" if quick else "3"))
    out_dir = os.path.abspath(env.get("BENCH_OUT",
                                      os.path.join(ROOT, "build", "bench")))
    only = tuple(s for s in env.get("BENCH_ONLY", "").split(",") if s)
    for s in only:
        if s not in SECTIONS:
            sys.exit("bench: BENCH_ONLY: unknown section %s (one of %s)" %
                     (s, ", ".join(SECTIONS)))
    return Settings(
        quick=quick, rounds=max(1, rounds),
        bulk_bytes=(128 if quick else 512) << 20,
        latency_conns=30,
        idle_counts=(1000, 9000),
        rate_clients=8,
        rate_secs=5.0 if quick else 10.0,
        aead_secs=0.3 if quick else 0.5,
        key_type=env.get("BENCH_KEY", "ecdsa"),
        sections=only or SECTIONS,
        out_dir=out_dir,
        mailtlsd=os.path.abspath(env.get(
            "MAILTLSD", os.path.join(ROOT, "build", "mailtlsd"))))


def find_stunnel(st):
    """Set st.stunnel, installing stunnel4 with apt-get when root."""
    wanted = os.environ.get("STUNNEL", "")
    if wanted == "none":
        st.stunnel_note = "stunnel not measured (STUNNEL=none)"
        return
    if wanted:
        st.stunnel = shutil.which(wanted)
        if st.stunnel is None:
            st.stunnel_note = "STUNNEL=%s not found" % wanted
        return
    st.stunnel = shutil.which("stunnel4") or shutil.which("stunnel")
    if st.stunnel:
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log("stunnel is not installed: apt-get install stunnel4")
        envi = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        cmd = ["apt-get", "install", "-y", "-q", "stunnel4"]
        for attempt in (1, 2):
            p = subprocess.run(cmd, env=envi, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, timeout=300)
            if p.returncode == 0 or attempt == 2:
                break
            subprocess.run(["apt-get", "update", "-q"], env=envi,
                           stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=300)
        st.stunnel = shutil.which("stunnel4") or shutil.which("stunnel")
        if st.stunnel is None:
            st.stunnel_note = "stunnel could not be installed: " + \
                p.stderr.decode(errors="replace").strip()[-200:]
        return
    st.stunnel_note = "stunnel is not installed (apt-get install " \
        "stunnel4 as root); measuring mailtlsd alone"


# --------------------------------------------------------------- processes

class Proc:
    """A child process: own session, killed if this script dies, its
    stdout read line by line (when capture) and stderr sent to a file."""

    def __init__(self, name, argv, workdir, capture=True, stdin=False,
                 env=None):
        self.name = name
        self.lines = []
        self.cond = threading.Condition()
        self.log_path = os.path.join(workdir, name + ".log")
        prefix = []
        if shutil.which("setpriv"):
            prefix = ["setpriv", "--pdeathsig", "KILL", "--"]
        with open(self.log_path, "ab") as err:
            self.popen = subprocess.Popen(
                prefix + argv, cwd=workdir, start_new_session=True,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE if capture else err, stderr=err,
                env=env)
        self.pid = self.popen.pid
        REGISTRY.append(self)
        if capture:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for raw in self.popen.stdout:
            with self.cond:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_line(self, pattern, start=0, timeout=20):
        """The first line from index start matching pattern (a regex)."""
        rx = re.compile(pattern)
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines[start:]:
                    if rx.search(line):
                        return line
                start = len(self.lines)
                left = end - time.monotonic()
                if left <= 0 or self.popen.poll() is not None:
                    raise BenchFailure("%s: no line like %r (%s)" % (
                        self.name, pattern, self.log_tail()))
                self.cond.wait(min(left, 0.2))

    def send(self, text):
        self.popen.stdin.write(text.encode() + b"\n")
        self.popen.stdin.flush()

    def log_tail(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return " | ".join(f.read().strip().splitlines()[-3:]) or \
                    "no output"
        except OSError:
            return "no log"

    def alive(self):
        return self.popen.poll() is None

    def stop(self, grace=3.0):
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(signal.SIGTERM)
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
            except ProcessLookupError:
                pass
        if self.popen.stdin:
            self.popen.stdin.close()
        if self in REGISTRY:
            REGISTRY.remove(self)

    def cpu(self):
        """utime + stime of the whole process (every thread), seconds."""
        with open("/proc/%d/stat" % self.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_kib(self):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise BenchFailure("%s: no VmRSS" % self.name)

    def threads(self):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
        return 0


REGISTRY = []


def stop_all():
    for p in list(REGISTRY):
        try:
            p.stop(grace=2.0)
        except Exception as e:          # cleanup must go on
            log("cannot stop %s (pid %d): %s" % (p.name, p.pid, e))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port):
    """Whether something listens on 127.0.0.1:port (from /proc/net/tcp)."""
    want = ":%04X" % port
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            cols = line.split()
            if cols[1].endswith(want) and cols[3] == "0A":
                return True
    return False


def wait_listening(proc, ports, timeout=15):
    end = time.monotonic() + timeout
    while not all(listening(p) for p in ports):
        if not proc.alive():
            raise BenchFailure("%s exited: %s" % (proc.name, proc.log_tail()))
        if time.monotonic() > end:
            raise BenchFailure("%s does not listen on %s: %s" % (
                proc.name, ports, proc.log_tail()))
        time.sleep(0.02)


# ----------------------------------------------------------------- proxies

@dataclass
class Service:
    name: str
    port: int           # where the proxy listens
    target: int         # where it connects (server or relay)
    tls: str = "implicit"
    pool: int = 0


class Proxy:
    """mailtlsd or stunnel, started with a list of services."""

    def __init__(self, kind, st, env):
        self.kind = kind
        self.st = st
        self.env = env
        self.proc = None
        self.starts = 0

    def start(self, services):
        self.starts += 1
        tag = "%s-%d" % (self.kind, self.starts)
        conf = os.path.join(self.env.tmp, tag + ".conf")
        with open(conf, "w") as f:
            f.write(self.config(services))
        if self.kind == "mailtlsd":
            p = subprocess.run([self.st.mailtlsd, "-t", "-c", conf],
                               capture_output=True, timeout=30)
            if p.returncode != 0:
                err = p.stderr.decode(errors="replace").strip()
                if "not supported" in err:
                    raise Unsupported(err)
                raise BenchFailure("mailtlsd -t: " + err)
            argv = [self.st.mailtlsd, "-f", "-c", conf]
        else:
            argv = [self.st.stunnel, conf]
        self.proc = Proc(tag, argv, self.env.tmp, capture=False)
        wait_listening(self.proc, [s.port for s in services])
        return self.proc

    def stop(self):
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def config(self, services):
        ca = self.env.pki.ca
        if self.kind == "mailtlsd":
            out = ["[global]", "ca_file = " + ca, "log_level = warn",
                   "max_sessions = 20000", "max_sessions_per_client = 0",
                   "shutdown_timeout = 1"]
            for s in services:
                out += ["", "[%s]" % s.name,
                        "listen = 127.0.0.1:%d" % s.port,
                        "remote = 127.0.0.1:%d" % s.target,
                        "server_name = " + pki.SERVER_NAME,
                        "protocol = imap", "tls = " + s.tls]
                if s.pool:
                    out.append("pool_size = %d" % s.pool)
            return "\n".join(out) + "\n"
        out = ["foreground = yes", "pid =", "syslog = no", "debug = 4"]
        for s in services:
            out += ["", "[%s]" % s.name, "client = yes",
                    "accept = 127.0.0.1:%d" % s.port,
                    "connect = 127.0.0.1:%d" % s.target,
                    "verifyChain = yes", "checkHost = " + pki.SERVER_NAME,
                    "sni = " + pki.SERVER_NAME, "CAfile = " + ca]
            if s.tls == "starttls":
                out.append("protocol = imap")
        return "\n".join(out) + "\n"


@dataclass
class Env:
    """What the measurements share."""
    st: Settings
    tmp: str
    pki: object
    proxies: dict = field(default_factory=dict)     # kind -> Proxy
    results: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    failed: list = field(default_factory=list)

    def kinds(self):
        return [k for k in PROXIES if k in self.proxies]

    def order(self, rnd):
        """Interleave: who goes first alternates between rounds."""
        kinds = self.kinds()
        return kinds if rnd % 2 == 0 else kinds[::-1]

    def add(self, key, kind, value):
        self.results.setdefault(key, {}).setdefault(kind, []).append(value)


def start_server(env, name, listens):
    """The threaded IMAP server with --listen PORT:TLS:RESUME specs."""
    argv = [sys.executable, os.path.join(HERE, "mailserver.py"),
            "--chain", env.pki.chain, "--key", env.pki.key]
    for spec in listens:
        argv += ["--listen", spec]
    p = Proc(name, argv, env.tmp, env=server_environ(env))
    p.wait_line("^ready$")
    return p


# The test servers' OpenSSL configuration: AES-128-GCM first in TLS 1.3
# too (the server's preference decides), as in the TLS 1.2 suites.
SERVER_OPENSSL_CONF = """openssl_conf = default_conf
[default_conf]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
Ciphersuites = TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:\
TLS_CHACHA20_POLY1305_SHA256
"""


def server_environ(env):
    """The environment of a test server process."""
    path = os.path.join(env.tmp, "server-openssl.cnf")
    if not os.path.exists(path):
        with open(path, "w") as f:
            f.write(SERVER_OPENSSL_CONF)
    return dict(os.environ, OPENSSL_CONF=path)


def handshakes(server, start, port=None):
    """Handshake lines (port, reused, version, cipher) from index start."""
    with server.cond:
        lines = server.lines[start:]
    out = []
    for line in lines:
        w = line.split()
        if w[:1] == ["hs"] and (port is None or int(w[1]) == port):
            out.append((int(w[1]), w[2] == "1", w[3], w[4]))
    return out


# ------------------------------------------------------------ measurements

def measure_aead(env):
    """One aead_speed run per round (MB per CPU second)."""
    st = env.st
    for rnd in range(st.rounds):
        p = subprocess.run([helper(st, "aead_speed"), "%g" % st.aead_secs],
                           capture_output=True, timeout=120)
        if p.returncode != 0:
            raise BenchFailure("aead_speed: " +
                               p.stderr.decode(errors="replace"))
        text = p.stdout.decode()
        for line in text.splitlines():
            m = re.match(r"^(\S+) (encrypt|decrypt) ([\d.]+) MB/s", line)
            if m:
                env.add("aead " + " ".join(m.group(1, 2)), "mbedtls",
                        float(m.group(3)))
        log("aead: " + "; ".join(text.splitlines()[1:]))


def measure_throughput(env):
    st = env.st
    port = free_port()
    server = start_server(env, "bulk-server", ["%d:implicit:resume" % port])
    try:
        for rnd in range(st.rounds):
            for kind in env.order(rnd):
                proxy = env.proxies[kind]
                svc = Service("bulk", free_port(), port)
                proxy.start([svc])
                try:
                    mark = len(server.lines)
                    bulk_run(env, kind, svc.port, server, proxy.proc)
                    hs = handshakes(server, mark)
                    if hs:
                        env.results.setdefault("suite", {})[kind] = \
                            "%s %s" % hs[0][2:4]
                finally:
                    proxy.stop()
            bulk_run(env, "direct", port, server, None,
                     tls_ctx=clients.direct_tls_context(env.pki.ca))
    finally:
        server.stop()


def bulk_run(env, kind, port, server, proc, tls_ctx=None):
    """One download and one upload of bulk_bytes through port."""
    n = env.st.bulk_bytes
    c = clients.greeted(port, tls_ctx)
    try:
        clients.download(c, 8 << 20)            # warm up
        for direction, fn in (("download", clients.download),
                              ("upload", clients.upload)):
            cpu0 = proc.cpu() if proc else 0.0
            scpu0 = server.cpu()
            secs = fn(c, n)
            cpu = (proc.cpu() - cpu0) if proc else 0.0
            scpu = server.cpu() - scpu0
            env.add("tp_" + direction, kind, n / secs / 1e6)
            env.add("tp_cpu_" + direction, kind, cpu / (n / 1e9))
            env.add("tp_server_busy_" + direction, kind, scpu / secs)
            log("throughput %-8s %-8s %7.1f MB/s, daemon %.2f CPU s/GB, "
                "test server busy %3.0f%%" % (
                    kind, direction, n / secs / 1e6, cpu / (n / 1e9),
                    100 * scpu / secs))
    finally:
        c.sock.close()


LATENCY_ROWS = (("implicit", "cold"), ("implicit", "resume"),
                ("starttls", "cold"), ("starttls", "resume"))


def measure_latency(env):
    st = env.st
    srv_ports = {row: free_port() for row in LATENCY_ROWS}
    relay_ports = {row: free_port() for row in LATENCY_ROWS}
    server = start_server(env, "latency-server", [
        "%d:%s:%s" % (srv_ports[r], r[0], r[1]) for r in LATENCY_ROWS])
    relay = Proc("relay", [sys.executable, os.path.join(HERE, "relay.py"),
                           "--delay", str(DELAY)] +
                 sum((["--map", "%d:%d" % (relay_ports[r], srv_ports[r])]
                      for r in LATENCY_ROWS), []), env.tmp)
    relay.wait_line("^ready$")
    pool_ok = True
    try:
        for rnd in range(st.rounds):
            for kind in env.order(rnd):
                proxy = env.proxies[kind]
                svcs = {r: Service("%s-%s" % r, free_port(), relay_ports[r],
                                   tls=r[0]) for r in LATENCY_ROWS}
                proxy.start(list(svcs.values()))
                try:
                    for r in LATENCY_ROWS:
                        latency_run(env, kind, "%s %s" % r, svcs[r].port,
                                    server, srv_ports[r], gap=0.0)
                finally:
                    proxy.stop()
            if "mailtlsd" in env.proxies and pool_ok:
                pool_ok = pool_run(env, server, srv_ports, relay_ports)
    finally:
        relay.stop()
        server.stop()


def pool_run(env, server, srv_ports, relay_ports):
    """mailtlsd with pool_size = POOL_SIZE; False when not supported."""
    proxy = env.proxies["mailtlsd"]
    rows = [("implicit", "resume"), ("starttls", "resume")]
    svcs = {r: Service("%s-pool" % r[0], free_port(), relay_ports[r],
                       tls=r[0], pool=POOL_SIZE) for r in rows}
    mark = len(server.lines)
    try:
        proxy.start(list(svcs.values()))
    except Unsupported as e:
        env.results["pool_unsupported"] = str(e)
        log("pool: not supported by this build (%s)" % e)
        return False
    try:
        end = time.monotonic() + 15
        while any(len(handshakes(server, mark, srv_ports[r])) < POOL_SIZE
                  for r in rows):
            if time.monotonic() > end:
                raise BenchFailure("the pool did not fill within 15 s")
            time.sleep(0.05)
        time.sleep(0.2)
        for r in rows:
            latency_run(env, "mailtlsd", "%s pool" % r[0], svcs[r].port,
                        server, srv_ports[r], gap=0.1)
    finally:
        proxy.stop()
    return True


def latency_run(env, kind, row, port, server, srv_port, gap):
    """Warm-up, then latency_conns sessions one after another."""
    clients.first_command(port)
    if gap:
        time.sleep(gap)
    mark = len(server.lines)
    greet, answer = [], []
    for _ in range(env.st.latency_conns):
        g, a = clients.first_command(port)
        greet.append(g * 1e3)
        answer.append(a * 1e3)
        if gap:
            time.sleep(gap)
    time.sleep(0.05)
    hs = handshakes(server, mark, srv_port)
    resumed = sum(1 for h in hs if h[1])
    env.add("lat_greet " + row, kind, (pct(greet, 50), pct(greet, 95)))
    env.add("lat_answer " + row, kind, (pct(answer, 50), pct(answer, 95)))
    env.add("lat_resumed " + row, kind, (resumed, len(hs)))
    if row.endswith("pool"):
        env.add("lat_pooled " + row, kind,
                (sum(1 for g in greet if g < DELAY * 1e3), len(greet)))
    log("latency %-8s %-17s greeting p50 %6.1f p95 %6.1f ms, first "
        "answer p50 %6.1f p95 %6.1f ms, server saw %d/%d resumed" % (
            kind, row, pct(greet, 50), pct(greet, 95), pct(answer, 50),
            pct(answer, 95), resumed, len(hs)))


def pct(values, p):
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def helper(st, name):
    """A C helper built by make bench."""
    return os.path.join(st.out_dir, name)


def measure_memory(env):
    st = env.st
    for rnd in range(st.rounds):
        for kind in env.order(rnd):
            memory_run(env, kind)
    p = subprocess.run([helper(st, "ssl_mem"), env.pki.ca, env.pki.chain,
                        env.pki.key], capture_output=True, timeout=60)
    if p.returncode != 0:
        raise BenchFailure("ssl_mem: " + p.stderr.decode(errors="replace"))
    mem = {}
    for line in p.stdout.decode().splitlines():
        name, _, value = line.partition(" ")
        mem[name] = int(value) if value.isdigit() else value
    env.results["ssl_mem"] = mem
    log("mbedTLS heap per client session: " + ", ".join(
        "%s %s" % kv for kv in mem.items()))


def memory_run(env, kind):
    st = env.st
    srv_port = free_port()
    server = Proc("idle-server", [
        sys.executable, os.path.join(HERE, "idle.py"), "server",
        "--chain", env.pki.chain, "--key", env.pki.key,
        "--port", str(srv_port)], env.tmp, env=server_environ(env))
    proxy = env.proxies[kind]
    cl = None
    try:
        server.wait_line("^ready$")
        svc = Service("idle", free_port(), srv_port)
        proc = proxy.start([svc])
        cl = Proc("idle-clients", [
            sys.executable, os.path.join(HERE, "idle.py"), "clients",
            "--port", str(svc.port)], env.tmp, stdin=True)
        mark = 0

        def open_more(n):
            nonlocal mark
            cl.send("open %d" % n)
            line = cl.wait_line("^opened ", start=mark, timeout=900)
            mark = len(cl.lines)
            w = line.split(None, 4)
            return int(w[1]), int(w[2]), float(w[3]), \
                (w[4] if len(w) > 4 else "")

        open_more(10)                   # warm-up, then back to idle
        cl.send("close")
        cl.wait_line("^closed$", start=mark)
        mark = len(cl.lines)
        time.sleep(1.0)
        base = proc.rss_kib()
        opened = 0
        for target in st.idle_counts:
            ok, errors, secs, first = open_more(target - opened)
            opened += ok
            time.sleep(1.0)
            rss = proc.rss_kib()
            per = (rss - base) / opened if opened else float("nan")
            env.add("mem_%d" % target, kind, per)
            env.add("mem_threads_%d" % target, kind, proc.threads())
            env.add("mem_open_%d" % target, kind, (opened, errors, first))
            log("memory %-8s %5d sessions open (%d errors%s) in %.1f s: "
                "RSS %d KiB -> %d KiB, %.1f KiB per session, %d threads" % (
                    kind, opened, errors, ": " + first if first else "",
                    secs, base, rss, per, proc.threads()))
            if errors:
                env.notes.append("%s at %d idle sessions: %d connections "
                                 "failed (first: %s)" % (kind, target,
                                                          errors, first))
                break
        cl.send("close")
        cl.wait_line("^closed$", start=mark, timeout=120)
    finally:
        if cl is not None:
            cl.stop()
        proxy.stop()
        server.stop()


def measure_rate(env):
    st = env.st
    ports = {"cold": free_port(), "resume": free_port()}
    server = start_server(env, "rate-server", [
        "%d:implicit:%s" % (p, v) for v, p in ports.items()])
    try:
        for rnd in range(st.rounds):
            for kind in env.order(rnd):
                proxy = env.proxies[kind]
                svcs = {v: Service("rate-" + v, free_port(), p)
                        for v, p in ports.items()}
                proc = proxy.start(list(svcs.values()))
                try:
                    for variant in ("cold", "resume"):
                        rate_run(env, kind, variant, svcs[variant].port,
                                 proc, server, ports[variant])
                finally:
                    proxy.stop()
    finally:
        server.stop()


def rate_run(env, kind, variant, port, proc, server, srv_port):
    st = env.st
    clients.first_command(port)         # warm-up (and a session to resume)
    mark = len(server.lines)
    cpu0 = proc.cpu()
    ok, errors, first, secs = clients.session_rate(port, st.rate_clients,
                                                   st.rate_secs)
    cpu = proc.cpu() - cpu0
    hs = handshakes(server, mark, srv_port)
    resumed = sum(1 for h in hs if h[1])
    env.add("rate " + variant, kind, ok / secs)
    env.add("rate_errors " + variant, kind, errors)
    env.add("rate_cpu " + variant, kind, cpu / ok * 1e3 if ok else
            float("nan"))
    env.add("rate_resumed " + variant, kind, (resumed, len(hs)))
    if errors:
        env.notes.append("%s, %s sessions: %d errors (first: %s)" % (
            kind, variant, errors, first))
    log("rate %-8s %-6s %6.0f sessions/s, %d errors, %.3f ms CPU per "
        "session, server saw %d/%d resumed%s" % (
            kind, variant, ok / secs, errors,
            cpu / ok * 1e3 if ok else float("nan"), resumed, len(hs),
            " (first error: %s)" % first if first else ""))


# ------------------------------------------------------------------ report

def med(env, key, kind):
    """Median over rounds (element-wise for tuples), or None."""
    vals = env.results.get(key, {}).get(kind)
    if not vals:
        return None
    if isinstance(vals[0], tuple):
        if any(isinstance(x, str) for x in vals[0]):
            return vals[len(vals) // 2]
        return tuple(statistics.median(v[i] for v in vals)
                     for i in range(len(vals[0])))
    return statistics.median(vals)


class Table:
    def __init__(self, env):
        self.env = env
        self.rows = []
        self.stunnel = "stunnel" in env.proxies

    def section(self, title):
        self.rows.append(("**%s**" % title, "", "", "", "", ""))

    def row(self, label, m, s, rat="", target="", met=""):
        if not self.stunnel and s:
            s = "-"
        self.rows.append((label, m, s, rat, target, met))

    def markdown(self):
        head = ("measure", "mailtlsd", "stunnel", "mailtlsd/stunnel",
                "target", "met?")
        widths = [max(len(str(r[i])) for r in self.rows + [head])
                  for i in range(6)]

        def line(cells):
            return "| " + " | ".join(str(c).ljust(w) for c, w in
                                     zip(cells, widths)) + " |"

        out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) +
               "|"]
        out += [line(r) for r in self.rows]
        return "\n".join(out)


def ratio(m, s):
    if m is None or s is None or s == 0:
        return ""
    return "%.2f" % (m / s)


def yes(cond):
    if cond is None:
        return "-"
    return "yes" if cond else "**no**"


def fmt(v, spec):
    return "-" if v is None else spec % v


def build_table(env):
    t = Table(env)
    res = env.results
    has_s = "stunnel" in env.proxies
    ceiling = med(env, "aead AES-128-GCM encrypt", "mbedtls")

    if ceiling is not None:
        t.section("1. raw mbedTLS AEAD speed, one core, 16 KiB records "
                  "(MB/s, encrypt / decrypt)")
        for name in ("AES-128-GCM", "AES-256-GCM", "ChaCha20-Poly1305"):
            e = med(env, "aead %s encrypt" % name, "mbedtls")
            d = med(env, "aead %s decrypt" % name, "mbedtls")
            t.row(name + (" (the ceiling)" if name == "AES-128-GCM" else ""),
                  "%s / %s" % (fmt(e, "%.0f"), fmt(d, "%.0f")), "")
    if "tp_download" in res:
        t.section("1. throughput through the proxy, one session, %d MiB "
                  "each way (MB = 10^6 bytes)" % (env.st.bulk_bytes >> 20))
        for d in ("download", "upload"):
            m, s = med(env, "tp_" + d, "mailtlsd"), med(env, "tp_" + d,
                                                        "stunnel")
            share = m / ceiling if m is not None and ceiling else None
            t.row("%s MB/s" % d,
                  fmt(m, "%.0f") + ("" if share is None else
                                    " (%.0f%% of ceiling)" % (100 * share)),
                  fmt(s, "%.0f"), ratio(m, s))
            mc, sc = (med(env, "tp_cpu_" + d, k) for k in PROXIES)
            t.row("%s daemon CPU s per GB" % d, fmt(mc, "%.2f"),
                  fmt(sc, "%.2f"), ratio(mc, sc))
            eff = 1e3 / mc if mc else None
            share = eff / ceiling if eff is not None and ceiling else None
            seff = 1e3 / sc if sc else None
            t.row("%s MB per daemon CPU second (load-independent)" % d,
                  fmt(eff, "%.0f") + ("" if share is None else
                                      " (%.0f%% of ceiling)" % (100 * share)),
                  fmt(seff, "%.0f"), ratio(eff, seff),
                  ">= 0.35x stunnel (mbedTLS's GCM)",
                  yes(None if eff is None or seff is None
                      else eff >= 0.35 * seff))
        dd = med(env, "tp_download", "direct")
        du = med(env, "tp_upload", "direct")
        busy = [med(env, "tp_server_busy_" + d, k) for d in
                ("download", "upload") for k in PROXIES]
        t.row("test server alone (TLS client direct), MB/s down / up",
              "%s / %s" % (fmt(dd, "%.0f"), fmt(du, "%.0f")), "")
        t.row("test server busy during the runs (down / up, % of a core)",
              "%s / %s" % (fmt(pctx(busy[0]), "%.0f"),
                           fmt(pctx(busy[2]), "%.0f")),
              "%s / %s" % (fmt(pctx(busy[1]), "%.0f"),
                           fmt(pctx(busy[3]), "%.0f")) if has_s else "")
    if any(k.startswith("lat_") for k in res):
        latency_rows(env, t)
    if any(k.startswith("mem_") for k in res):
        t.section("3. daemon RSS per idle relaying session (KiB; RSS after "
                  "minus before, / N)")
        for n in env.st.idle_counts:
            m, s = med(env, "mem_%d" % n, "mailtlsd"), \
                med(env, "mem_%d" % n, "stunnel")
            cond = None
            if m is not None and s is not None:
                cond = m <= 0.4 * s
            t.row("at %d sessions" % n, fmt(m, "%.1f"), fmt(s, "%.1f"),
                  ratio(m, s), "<= 0.4x stunnel", yes(cond))
        n = env.st.idle_counts[-1]
        mt, sth = (med(env, "mem_threads_%d" % n, k) for k in PROXIES)
        t.row("process threads at %d sessions" % n, fmt(mt, "%d"),
              fmt(sth, "%d"))
        mem = res.get("ssl_mem")
        if mem:
            resumed = mem.get("resumed") == 1
            version = mem.get("version", "")
            for key, label in (
                    ("after_resumed_handshake", "mbedTLS heap of one idle "
                     "client session, %s, %s (bench/ssl_mem.c)" % (
                         version, "resumed" if resumed else
                         "second full handshake (its in-process mbedTLS "
                         "server sent no ticket)")),
                    ("after_full_handshake", "the same after a full "
                     "handshake (peer chain kept)"),
                    ("record_buffers", "  of which record contents (the "
                     "buffers add about 0.5 KiB of headers)"),
                    ("bufferevents_2", "two socket bufferevents (libevent), "
                     "buffers empty")):
                if isinstance(mem.get(key), int):
                    t.row(label, "%.1f" % (mem[key] / 1024), "")
    if any(k.startswith("rate") for k in res):
        t.section("4. new sessions, %d concurrent clients for %g s "
                  "(connect, greeting, NOOP, close)" % (
                      env.st.rate_clients, env.st.rate_secs))
        for v, label in (("cold", "server refuses resumption"),
                         ("resume", "server allows resumption")):
            m, s = med(env, "rate " + v, "mailtlsd"), \
                med(env, "rate " + v, "stunnel")
            me, se = (med(env, "rate_errors " + v, k) for k in PROXIES)
            t.row("sessions/s, %s (errors)" % label,
                  "%s (%s)" % (fmt(m, "%.0f"), fmt(me, "%d")),
                  "%s (%s)" % (fmt(s, "%.0f"), fmt(se, "%d")), ratio(m, s))
            mc, sc = (med(env, "rate_cpu " + v, k) for k in PROXIES)
            # Cold: at most 2x stunnel.  Resumption: no worse than mailtlsd
            # was with TLS 1.2 resumption (0.280 ms; see performance.md).
            limit, target = ((2.0 * sc if sc else None, "<= 2x stunnel")
                             if v == "cold" else
                             (0.280, "<= 0.280 ms (TLS 1.2, before)"))
            t.row("daemon CPU ms per session, %s" % label, fmt(mc, "%.3f"),
                  fmt(sc, "%.3f"), ratio(mc, sc), target,
                  yes(None if mc is None or limit is None
                      else mc <= limit))
    return t


def pctx(v):
    return None if v is None else 100 * v


def latency_rows(env, t):
    res = env.results
    t.section("2. ms from connect to the greeting / to the answer of the "
              "first command (a1 NOOP), p50 / p95, RTT 50 ms via the relay")
    for mode in ("implicit", "starttls"):
        for variant in ("cold", "resume"):
            row = "%s %s" % (mode, variant)
            what = {"cold": "cold (server refuses resumption)",
                    "resume": "with resumption"}[variant]
            g = [med(env, "lat_greet " + row, k) for k in PROXIES]
            a = [med(env, "lat_answer " + row, k) for k in PROXIES]
            r = [med(env, "lat_resumed " + row, k) for k in PROXIES]
            t.row("%s %s: greeting" % (mode, what), lat(g[0]), lat(g[1]),
                  ratio(*(x and x[0] for x in g)))
            cond = None
            if a[0] is not None and a[1] is not None:
                cond = a[0][0] <= a[1][0] * 1.02
            t.row("%s %s: first command answered" % (mode, what),
                  lat(a[0]), lat(a[1]), ratio(*(x and x[0] for x in a)),
                  "p50 <= 1.02x stunnel", yes(cond))
            t.row("  handshakes the server saw resumed", frac(r[0]),
                  frac(r[1]))
    if "stunnel" in env.proxies and any(
            k.startswith("lat_greet starttls") for k in res):
        t.row("  (stunnel's STARTTLS greeting is its own '* OK Connected.', "
              "written before TLS)", "", "")
    if "pool_unsupported" in res:
        for mode in ("implicit", "starttls"):
            t.row("%s with the pool (pool_size = %d)" % (mode, POOL_SIZE),
                  "n/a (pool not supported by this build)", "-", "",
                  "greeting >= 50x sooner; answer in 1 RTT", "-")
        return
    for mode in ("implicit", "starttls"):
        row = "%s pool" % mode
        g = med(env, "lat_greet " + row, "mailtlsd")
        a = med(env, "lat_answer " + row, "mailtlsd")
        if g is None:
            continue
        sg = med(env, "lat_greet %s resume" % mode, "stunnel")
        pooled = med(env, "lat_pooled " + row, "mailtlsd")
        cond = None if sg is None else g[0] * 50 <= sg[0]
        t.row("%s with the pool (pool_size = %d): greeting" % (
            mode, POOL_SIZE), lat(g), "%s (resumed)" % lat(sg) if sg else "",
            ratio(g[0], sg[0]) if sg else "", ">= 50x sooner than stunnel",
            yes(cond))
        t.row("%s with the pool: first command answered" % mode, lat(a), "",
              "", "1 round trip (p50 < 1.5 RTT)",
              yes(a[0] < DELAY * 2e3 * 1.5))
        t.row("  sessions served from the pool (greeting < 25 ms)",
              frac(pooled), "")


def lat(v):
    return "-" if v is None else "%.1f / %.1f" % v


def frac(v):
    return "-" if v is None else "%d/%d" % (v[0], v[1])


def header(env, elapsed):
    st = env.st
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M)
            cpu = m.group(1) if m else cpu
    except OSError:
        pass
    stv = ""
    if st.stunnel:
        p = subprocess.run([st.stunnel, "-version"], capture_output=True,
                           timeout=10, stdin=subprocess.DEVNULL)
        text = (p.stdout + p.stderr).decode(errors="replace")
        m1 = re.search(r"stunnel (\S+)", text)
        m2 = re.search(r"Running\s+with (OpenSSL \S+)", text)
        stv = "stunnel %s with %s" % (m1.group(1) if m1 else "?",
                                       m2.group(1) if m2 else "?")
    lines = [
        "mailtlsd benchmark, %s" % time.strftime("%Y-%m-%d %H:%M"),
        "",
        "- command: `make bench`%s; %d round(s), each figure the median "
        "of interleaved rounds; took %.0f s" % (
            " (BENCH_QUICK=1)" if st.quick else "", st.rounds, elapsed),
        "- machine: %s, %d cores, Linux %s" % (cpu, os.cpu_count(),
                                               platform.release()),
        "- %s; %s" % (mailtlsd_version(st), stv or st.stunnel_note),
        "- both proxies: open-file limit %d (the hard limit), log level "
        "warning" % resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "- test server: Python %s ssl (%s), TLS %s, %s certificate chain "
        "(leaf + intermediate)" % (platform.python_version(),
                                   __import__("ssl").OPENSSL_VERSION,
                                   "1.2" if os.environ.get("BENCH_TLS") ==
                                   "1.2" else "1.3 and 1.2",
                                   "RSA 2048" if st.key_type == "rsa"
                                   else "ECDSA P-256"),
    ]
    lines.append("- load average (1 min) at the start and the end: %s "
                 "and %.2f (other work on the machine slows the wall-clock "
                 "figures)" % (env.results.get("loadavg_start", "?"),
                               os.getloadavg()[0]))
    suites = env.results.get("suite", {})
    if suites:
        lines.append("- negotiated: " + "; ".join(
            "%s %s" % (k, suites[k]) for k in PROXIES if k in suites))
    return "\n".join(lines)


def mailtlsd_version(st):
    try:
        p = subprocess.run([st.mailtlsd, "-V"], capture_output=True,
                           timeout=10, stdin=subprocess.DEVNULL)
        text = (p.stdout + p.stderr).decode(errors="replace").strip()
        return "; ".join(text.splitlines())
    except OSError:
        return "?"


# -------------------------------------------------------------------- main

def on_signal(signum, frame):
    raise KeyboardInterrupt("signal %d" % signum)


def main():
    st = settings_from_env()
    for path in (st.mailtlsd, helper(st, "aead_speed"),
                 helper(st, "ssl_mem")):
        if not os.access(path, os.X_OK):
            sys.exit("bench: %s is not an executable (run make bench)" %
                     path)
    # Also SIGINT: a shell may have started this script with it ignored.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    need = 2 * max(st.idle_counts) + 100
    if hard < need:
        log("the fd limit is %d: fewer than %d idle sessions will fit" %
            (hard, max(st.idle_counts)))
    find_stunnel(st)
    if st.stunnel_note:
        log(st.stunnel_note)
    os.makedirs(st.out_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="mailtlsd-bench-")
    t0 = time.monotonic()
    env = None
    try:
        try:
            certs = pki.generate(os.path.join(tmp, "pki"), st.key_type)
        except (RuntimeError, OSError) as e:
            sys.exit("bench: cannot make the test certificates: %s" % e)
        env = Env(st=st, tmp=tmp, pki=certs)
        env.results["loadavg_start"] = "%.2f" % os.getloadavg()[0]
        env.proxies["mailtlsd"] = Proxy("mailtlsd", st, env)
        if st.stunnel:
            env.proxies["stunnel"] = Proxy("stunnel", st, env)
        steps = {"aead": measure_aead, "throughput": measure_throughput,
                 "latency": measure_latency, "memory": measure_memory,
                 "rate": measure_rate}
        for name in st.sections:
            log("--- %s" % name)
            t_section = time.monotonic()
            try:
                steps[name](env)
                log("--- %s took %.0f s" % (name,
                                            time.monotonic() - t_section))
            except (BenchFailure, clients.BenchError, OSError,
                    subprocess.SubprocessError) as e:
                env.failed.append("%s: %s" % (name, e))
                log("%s FAILED: %s" % (name, e))
                stop_all_proxies(env)
    except KeyboardInterrupt as e:
        log("interrupted (%s): cleaning up" % (e or "Ctrl-C"))
        stop_all()
        sys.exit(130)
    finally:
        stop_all()
        if os.environ.get("BENCH_KEEP", "") not in ("", "0"):
            log("kept " + tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    report(env, time.monotonic() - t0)
    sys.exit(1 if env.failed else 0)


def stop_all_proxies(env):
    for proxy in env.proxies.values():
        proxy.stop()


def report(env, elapsed):
    st = env.st
    table = build_table(env)
    text = header(env, elapsed) + "\n\n" + table.markdown() + "\n"
    notes = list(env.notes)
    if "pool_unsupported" in env.results:
        notes.append("pool rows: mailtlsd refused pool_size (%s)" %
                     env.results["pool_unsupported"])
    notes += ["FAILED " + f for f in env.failed]
    if notes:
        text += "\n" + "\n".join("- " + n for n in notes) + "\n"
    print()
    print(text)
    with open(os.path.join(st.out_dir, "results.md"), "w") as f:
        f.write(text)
    with open(os.path.join(st.out_dir, "results.json"), "w") as f:
        json.dump({"results": env.results, "notes": notes,
                   "settings": {k: v for k, v in vars(st).items()}}, f,
                  indent=1, default=str)
    log("written to %s/results.md and results.json" % st.out_dir)


if __name__ == "__main__":
    main()
