"""Seeing into the running daemon: `mailtlsd -s` and `-s -j` over the
control socket, the metrics endpoint (Prometheus text format), SIGUSR1's
summary in the log, and the warnings that come before things break (a
server certificate near its end, a service failing again and again, the
service manager's status line).

Most tests drive a known set of sessions first -- successes, a
verification failure, an injection after STARTTLS, a handshake timeout --
and then check every number the daemon reports against what was driven.
"""

import datetime
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time
import urllib.error
import urllib.request

from client import login, noop
from daemon import assert_no_sanitizer_report, check_config
from expectations import GREETING, echo_reply
from harness import Skip, case, check, expect_error_line, wait_until
from starttls_server import StarttlsServer
from test_service import NotifySocket

INJECT = b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n"
NOOP = b"a1 NOOP x\r\n"
REASONS = ("dns", "connect", "timeout", "starttls", "injection",
           "tls_handshake", "tls_verify", "server", "client", "other")


# ------------------------------------------------------------- helpers

def run_status(t, d, json_out=False, timeout=20):
    """`mailtlsd -s [-j] -c CONF`: the parsed JSON or the text."""
    args = [t.binary, "-s", "-c", d.conf_path] + (["-j"] if json_out else [])
    p = subprocess.run(args, capture_output=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    out, err = (p.stdout.decode(errors="replace"),
                p.stderr.decode(errors="replace"))
    assert_no_sanitizer_report(out + err)
    check(p.returncode == 0, "mailtlsd -s exited %s: %s", p.returncode,
          err.strip())
    return json.loads(out) if json_out else out


def service_of(doc, name):
    """The service called name in a -s -j document."""
    for s in doc["services"]:
        if s["name"] == name:
            return s
    raise AssertionError("no service %r in %r" % (name, doc))


def closed_count(d):
    """How many sessions the log says were closed."""
    return sum(1 for line in d.log() if re.search(r"\] closed: ", line))


def wait_closed(d, n, timeout=15):
    wait_until(lambda: closed_count(d) >= n, timeout,
               "%d sessions to be closed" % n)


def good_session(t, svc):
    """Greeting, one NOOP, close: one successful session."""
    c = t.connect(svc)
    c.expect_line(GREETING["imap"])
    noop(c, "imap")
    c.close()


def refused_session(t, svc):
    """A session the daemon refuses with its one error line."""
    c = t.connect(svc)
    expect_error_line(c, "imap")
    c.close()


def cert_not_after(path):
    """A certificate's end of validity, seconds since the epoch."""
    out = subprocess.run(["openssl", "x509", "-enddate", "-noout", "-in",
                          path], capture_output=True, check=True,
                         timeout=30).stdout.decode()
    text = out.strip().split("=", 1)[1]
    when = datetime.datetime.strptime(text, "%b %d %H:%M:%S %Y %Z")
    return int(when.replace(tzinfo=datetime.timezone.utc).timestamp())


def iso_seconds(text):
    """An ISO 8601 UTC time of the JSON as seconds since the epoch."""
    when = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
    return int(when.replace(tzinfo=datetime.timezone.utc).timestamp())


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """{(name, frozenset(labels)): value} of an exposition."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        check(m is not None, "not a sample line: %r", line)
        labels = frozenset(LABEL.findall(m.group(3) or ""))
        samples[(m.group(1), labels)] = float(m.group(4))
    return samples


def metric(samples, name, **labels):
    key = (name, frozenset(labels.items()))
    check(key in samples, "no sample %s%r", name, labels)
    return samples[key]


def fetch(port, path="/metrics", method="GET"):
    """(status, content type, body) of an HTTP request to the daemon."""
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path),
                                 method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers.get("Content-Type"), \
                r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), ""


def known_sessions(t, metrics=False):
    """A daemon with four services and a known set of sessions behind
    it: 3 successes (good), a name mismatch (badname), data injected after
    the STARTTLS go-ahead (inject), a server that never answers the
    ClientHello (slow).  Returns (daemon, services by name, metrics port,
    bytes each way per good session)."""
    good = t.server("echo")
    badname = t.server("echo", cert="wrong_name")
    inject = StarttlsServer("imap", t.tls_context(), inject=INJECT)
    t.stack.callback(inject.stop)
    silent = t.server("silent", tls=False)
    svcs = {
        "good": t.service(good, name="good"),
        "badname": t.service(badname, name="badname"),
        "inject": t.service(inject, name="inject", tls="starttls"),
        "slow": t.service(silent, name="slow", handshake_timeout=1),
    }
    port = t.ports.take() if metrics else None
    opts = {"metrics_listen": "127.0.0.1:%d" % port} if metrics else {}
    d = t.daemon(*svcs.values(), **opts)
    for _ in range(3):
        good_session(t, svcs["good"])
    for name in ("badname", "inject", "slow"):
        refused_session(t, svcs[name])
    wait_closed(d, 6)
    up = len(NOOP)
    down = len(GREETING["imap"]) + len(echo_reply("imap", NOOP))
    return d, svcs, port, (up, down)


def expect_failures(svc, **want):
    """Every reason class of a -s -j service is as wanted (others 0)."""
    got = svc["totals"]["failures"]
    check(set(got) == set(REASONS), "reason classes %r", sorted(got))
    for reason in REASONS:
        check(got[reason] == want.get(reason, 0), "%s: %s failures %s, "
              "expected %s", svc["name"], reason, got[reason],
              want.get(reason, 0))


# ------------------------------------------------------- -s and -s -j

@case(valgrind=True, timeout=60)
def test_status_json_after_known_sessions(t):
    """-s -j counts each session where it belongs: results, reasons,
    bytes, handshakes, the certificate's end, the last failure."""
    d, _, _, (up, down) = known_sessions(t)
    doc = run_status(t, d, json_out=True)
    check(doc["sessions"] == 0, "sessions now: %s", doc["sessions"])
    check(doc["pid"] == d.pid, "pid %s, the daemon is %s", doc["pid"], d.pid)
    check(doc["max_sessions"] == 1024, "max_sessions %s", doc["max_sessions"])

    good = service_of(doc, "good")
    check(good["totals"]["sessions_ok"] == 3 and
          good["totals"]["sessions_failed"] == 0, "good: %r", good["totals"])
    check(good["totals"]["bytes_to_server"] == 3 * up and
          good["totals"]["bytes_to_client"] == 3 * down,
          "good: bytes %r, expected %d up and %d down", good["totals"],
          3 * up, 3 * down)
    expect_failures(good)
    check(good["last_failure"] is None, "good: %r", good["last_failure"])
    tls = good["tls"]
    check(tls["handshakes"] == 3, "good: %r", tls)
    check(0 <= tls["resumed"] <= 2, "good: resumed %r", tls)
    check(abs(tls["resumption_rate"] - tls["resumed"] / 3) < 1e-9,
          "good: rate %r", tls)
    check(tls["version"] in ("TLSv1.2", "TLSv1.3") and tls["ciphersuite"],
          "good: %r", tls)
    cert = good["server_certificate"]
    check(iso_seconds(cert["expires"]) == cert_not_after(t.certs.good),
          "good: the chain ends %s, the certificate %s", cert["expires"],
          cert_not_after(t.certs.good))
    check(not cert["expiring_soon"], "good: %r", cert)
    check(good["sessions_now"] == {"reaching": 0, "login": 0, "relaying": 0,
                                   "closing": 0}, "good: %r",
          good["sessions_now"])

    for name, reason, words in (("badname", "tls_verify", "name mismatch"),
                                ("inject", "injection", "data injected"),
                                ("slow", "timeout", "timed out")):
        svc = service_of(doc, name)
        check(svc["totals"]["sessions_ok"] == 0 and
              svc["totals"]["sessions_failed"] == 1, "%s: %r", name,
              svc["totals"])
        expect_failures(svc, **{reason: 1})
        last = svc["last_failure"]
        check(last["reason"] == reason and words in last["text"],
              "%s: last failure %r", name, last)
        check(abs(iso_seconds(last["time"]) - time.time()) < 60,
              "%s: last failure at %s", name, last["time"])
        check(svc["failures_in_row"] == 1 and not svc["failing_warning"],
              "%s: %r", name, svc)
        check(svc["tls"]["handshakes"] == 0, "%s: %r", name, svc["tls"])
        check(svc["server_certificate"]["expires"] is None, "%s: %r", name,
              svc["server_certificate"])


@case(timeout=60)
def test_status_text_after_known_sessions(t):
    """-s prints the same numbers for people, one block per service."""
    d, svcs, _, (up, down) = known_sessions(t)
    text = run_status(t, d)
    check(re.search(r"^mailtlsd \S+, pid %d, up " % d.pid, text, re.M),
          "no head line: %s", text)
    check("sessions: 0 (max_sessions 1024)" in text, "%s", text)
    blocks = {m.group(1): m.group(0) for m in
              re.finditer(r"^\[(\w+)\] [^\n]*\n(  [^\n]*\n)*", text, re.M)}
    check(set(blocks) == set(svcs), "services shown: %r", sorted(blocks))
    good = blocks["good"]
    check("[good] imap, implicit TLS: 127.0.0.1:%d -> %s" % (
        svcs["good"].port, svcs["good"].opts["remote"]) in good, "%s", good)
    check("3 sessions (3 ok, 0 failed), %d B to the server, %d B to "
          "clients" % (3 * up, 3 * down) in good, "%s", good)
    check(re.search(r"failures: +none", good), "%s", good)
    check(re.search(r"TLS: +TLSv1\.[23], \S+ .*3 handshake\(s\)", good),
          "%s", good)
    check(re.search(r"certificate: +the server's chain expires", good),
          "%s", good)
    for name, reason in (("badname", "tls_verify"), ("inject", "injection"),
                         ("slow", "timeout")):
        block = blocks[name]
        check("1 sessions (0 ok, 1 failed)" in block, "%s", block)
        check(re.search(r"failures: +%s 1\n" % reason, block), "%s", block)
        check(re.search(r"last failure: +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC "
                        r"\(\d+s ago\), %s: " % reason, block), "%s", block)


@case(valgrind=True)
def test_status_fails_clearly_without_daemon(t):
    """-s with no daemon: exit 1 and why, on stderr; -j needs -s."""
    srv = t.server()
    svc = t.service(srv)
    d = t.daemon(svc, start=False)
    p = subprocess.run([t.binary, "-s", "-c", d.conf_path],
                       capture_output=True, timeout=20)
    check(p.returncode == 1 and p.stdout == b"", "exit %s, out %r",
          p.returncode, p.stdout)
    check(b"no control socket at" in p.stderr, "stderr %r", p.stderr)
    p = subprocess.run([t.binary, "-j", "-c", d.conf_path],
                       capture_output=True, timeout=20)
    check(p.returncode == 2 and b"usage" in p.stderr, "-j alone: exit %s, "
          "%r", p.returncode, p.stderr)


# ------------------------------------------------------------- metrics

@case(timeout=60)
def test_metrics_values(t):
    """/metrics holds the same numbers as -s -j, by service and label."""
    d, _, port, (up, down) = known_sessions(t, metrics=True)
    status, ctype, body = fetch(port)
    check(status == 200, "GET /metrics: %s", status)
    check(ctype.startswith("text/plain; version=0.0.4"), "type %r", ctype)
    m = parse_metrics(body)
    check(metric(m, "mailtlsd_sessions_open") == 0, "sessions open")
    check(metric(m, "mailtlsd_sessions_limit") == 1024, "limit")
    for svc, ok, failed in (("good", 3, 0), ("badname", 0, 1),
                            ("inject", 0, 1), ("slow", 0, 1)):
        check(metric(m, "mailtlsd_sessions_total", service=svc,
                     result="ok") == ok, "%s ok", svc)
        check(metric(m, "mailtlsd_sessions_total", service=svc,
                     result="failed") == failed, "%s failed", svc)
    want = {("badname", "tls_verify"), ("inject", "injection"),
            ("slow", "timeout")}
    for svc in ("good", "badname", "inject", "slow"):
        for reason in REASONS:
            got = metric(m, "mailtlsd_failures_total", service=svc,
                         reason=reason)
            check(got == (1 if (svc, reason) in want else 0),
                  "failures_total{%s,%s} = %s", svc, reason, got)
    check(metric(m, "mailtlsd_relayed_bytes_total", service="good",
                 direction="to_server") == 3 * up, "bytes to the server")
    check(metric(m, "mailtlsd_relayed_bytes_total", service="good",
                 direction="to_client") == 3 * down, "bytes to the client")
    check(metric(m, "mailtlsd_handshake_duration_seconds_count",
                 service="good") == 3, "handshakes")
    check(metric(m, "mailtlsd_handshake_duration_seconds_bucket",
                 service="good", le="+Inf") == 3, "+Inf bucket")
    check(metric(m, "mailtlsd_handshake_duration_seconds_count",
                 service="slow") == 0, "slow handshakes")
    check(metric(m, "mailtlsd_server_certificate_expiry_timestamp_seconds",
                 service="good") == cert_not_after(t.certs.good), "expiry")
    check(metric(m, "mailtlsd_failures_in_row", service="badname") == 1,
          "in a row")
    check(metric(m, "mailtlsd_sessions_active", service="good",
                 phase="relaying") == 0, "active")
    doc = run_status(t, d, json_out=True)
    check(metric(m, "mailtlsd_tls_resumed_total", service="good") ==
          service_of(doc, "good")["tls"]["resumed"], "resumed")

    status, _, _ = fetch(port, "/")
    check(status == 404, "GET /: %s", status)
    status, _, _ = fetch(port, "/metrics", method="POST")
    check(status not in (200, 404), "POST /metrics: %s", status)


@case(timeout=60)
def test_metrics_pass_promtool(t):
    """promtool check metrics finds nothing to say about /metrics."""
    promtool = shutil.which("promtool")
    if promtool is None:
        raise Skip("promtool is not installed (Debian package prometheus; "
                   "scripts/install-deps --test installs it)")
    _, _, port, _ = known_sessions(t, metrics=True)
    _, _, body = fetch(port)
    p = subprocess.run([promtool, "check", "metrics"], input=body.encode(),
                       capture_output=True, timeout=30)
    check(p.returncode == 0 and not p.stdout.strip() and
          not p.stderr.strip(), "promtool check metrics: exit %s: %s %s",
          p.returncode, p.stdout.decode(), p.stderr.decode())


@case(valgrind=True)
def test_metrics_listen_checked(t):
    """metrics_listen: loopback unless allow_remote_clients, not a listen
    address of a service; none is none."""
    srv = t.server()
    svc = t.service(srv)
    d = t.daemon(svc, start=False)
    for opts, want in (
            ({"metrics_listen": "192.0.2.1:9100"}, r"metrics_listen "
             r"192\.0\.2\.1:9100 is not loopback"),
            ({"metrics_listen": "127.0.0.1:%d" % svc.port},
             r"already a listen address"),
            ({"metrics_listen": "localhost:9100"}, r"invalid metrics_listen"),
            ({"control_socket": "relative/ctl"}, r"invalid control_socket"),
            ({"control_socket": "/" + "x" * 120}, r"too long for a socket")):
        d.write_config(t.config([svc], **opts))
        rc, _, err = check_config(t.binary, d.conf_path)
        check(rc == 1 and re.search(r"%s:\d+: .*%s" % (re.escape(
            d.conf_path), want), err), "%r: exit %s, %r", opts, rc, err)
    for opts in ({"metrics_listen": "none", "control_socket": "none"},
                 {"metrics_listen": "192.0.2.1:9100",
                  "allow_remote_clients": "yes"}):
        d.write_config(t.config([svc], **opts))
        rc, out, err = check_config(t.binary, d.conf_path)
        check(rc == 0, "%r: exit %s, %r", opts, rc, err)


# ------------------------------------------------------ control socket

@case(valgrind=True)
def test_control_socket_file(t):
    """Mode 0600, the line protocol's errors, removed at exit; a stale
    socket is replaced, a live one is not taken over."""
    srv = t.server()
    svc = t.service(srv)
    d = t.daemon(svc)
    path = t.control_path()
    st = os.lstat(path)
    check(stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600,
          "control socket mode %o", st.st_mode)
    for request, want in ((b"frobnicate\n", b"error: unknown request"),
                          (b"x" * 80, b"error: request longer than"),
                          (b"sessions\n", b"0 session(s)\n")):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(path)
            s.sendall(request)
            answer = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                answer += chunk
        check(answer.startswith(want), "%r: answered %r", request, answer)

    # A second daemon may not take a live socket over.
    d2 = t.daemon(svc, start=False, control_socket=path)
    d2.write_config(t.config([t.service(srv, name="other")],
                             control_socket=path))
    p = subprocess.run([t.binary, "-f", "-c", d2.conf_path],
                       capture_output=True, timeout=20)
    check(p.returncode == 1 and b"another mailtlsd answers on" in p.stderr,
          "second daemon: exit %s, %r", p.returncode, p.stderr[-300:])
    run_status(t, d)

    d.stopped_by_test = True
    check(d.stop() == 0, "exit status")
    check(not os.path.lexists(path), "the socket file stayed after exit")

    # A stale socket file (a daemon that died) is replaced.
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()
    d3 = t.daemon(svc, control_socket=path)
    run_status(t, d3)


def raw_control(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(15)
    s.connect(path)
    return s


@case(timeout=60)
def test_status_while_control_clients_stall(t):
    """Clients of the control socket that send nothing, or half a line,
    and never read: -s from another process still answers at once, and
    each stalled client is closed after the 5 s timeout."""
    srv = t.server()
    svc = t.service(srv)
    d = t.daemon(svc)
    path = t.control_path()
    silent = raw_control(path)
    half = raw_control(path)
    half.sendall(b"stat")
    t0 = time.monotonic()
    for _ in range(3):
        run_status(t, d, json_out=True, timeout=5)
    check(time.monotonic() - t0 < 4, "-s took %.1fs beside stalled clients",
          time.monotonic() - t0)
    for s in (silent, half):
        check(s.recv(100) == b"", "a stalled client got an answer")
    waited = time.monotonic() - t0
    check(4 <= waited <= 9, "stalled clients closed after %.1fs (timeout "
          "5 s)", waited)
    # More stalled clients than the daemon serves at once: the oldest go,
    # -s is still answered.
    crowd = [raw_control(path) for _ in range(24)]
    run_status(t, d, timeout=5)
    check(crowd[0].recv(100) == b"", "the oldest stalled client stayed")
    for s in crowd + [silent, half]:
        s.close()


@case(timeout=120)
def test_status_under_load(t):
    """40 sessions logged in and relaying, 20 more coming and going, and
    -s and -s -j asked from 4 processes at once: each answer is whole and
    the counts add up."""
    srv = t.server("echo")
    svc = t.service(srv)
    d = t.daemon(svc)
    held = []
    for _ in range(40):
        c = t.connect(svc)
        c.expect_line(GREETING["imap"])
        login(c, "imap")
        held.append(c)
    errors = []
    stop = threading.Event()

    def churn():
        try:
            while not stop.is_set():
                good_session(t, svc)
        except Exception as e:          # noqa: BLE001 - reported below
            errors.append("churn: %r" % e)

    def ask(n):
        try:
            for i in range(n):
                doc = run_status(t, d, json_out=(i % 2 == 0), timeout=15)
                if isinstance(doc, dict):
                    check(doc["sessions"] >= 40, "sessions %s",
                          doc["sessions"])
        except Exception as e:          # noqa: BLE001 - reported below
            errors.append("status: %r" % e)

    churners = [threading.Thread(target=churn) for _ in range(2)]
    askers = [threading.Thread(target=ask, args=(6,)) for _ in range(4)]
    for th in churners + askers:
        th.start()
    for th in askers:
        th.join(60)
    stop.set()
    for th in churners:
        th.join(30)
    check(not errors, "%s", errors[:3])
    doc = run_status(t, d, json_out=True)
    now = service_of(doc, "svc")["sessions_now"]
    check(now["relaying"] == 40 and doc["sessions"] >= 40, "%r", doc)
    done = service_of(doc, "svc")["totals"]["sessions_ok"]
    for c in held:
        c.close()
    wait_until(lambda: service_of(run_status(t, d, json_out=True), "svc")
               ["totals"]["sessions_ok"] == done + 40, 20,
               "the 40 sessions to be counted")


# -------------------------------------------------------------- SIGUSR1

@case(valgrind=True)
def test_sigusr1_logs_summary_and_sessions(t):
    """SIGUSR1: the summary and one line per live session in the log,
    whatever log_level says."""
    srv = t.server("echo")
    svc = t.service(srv)
    d = t.daemon(svc)
    # log_level = warn from now on; the SIGHUP is handled before SIGUSR1.
    d.wait_log(r"reloading", since=d.reload(t.config([svc],
                                                     log_level="warn")))
    relaying = t.connect(svc)
    relaying.expect_line(GREETING["imap"])
    login(relaying, "imap")
    before_login = t.connect(svc)
    before_login.expect_line(GREETING["imap"])
    mark = d.mark()
    d.signal(signal.SIGUSR1)
    d.wait_log(r"status: end$", since=mark, what="the end of the summary")
    lines = d.log(mark)
    text = "\n".join(lines)
    check(re.search(r"status: \[svc\] imap, implicit TLS: 127\.0\.0\.1:%d"
                    % svc.port, text), "%s", text)
    check(re.search(r"status: +sessions now: +2 \(0 reaching the server, 1 "
                    r"before login, 1 relaying, 0 closing\)", text), "%s",
          text)
    check(re.search(r"status: 2 session\(s\)", text), "%s", text)
    for port, phase in ((relaying.sock.getsockname()[1], "relaying"),
                        (before_login.sock.getsockname()[1], "login")):
        check(re.search(r"status: #\d+ \[svc\] 127\.0\.0\.1:%d RELAYING "
                        r"\(%s\), \d+\.\ds, \d+ bytes to the server, \d+ to "
                        r"the client" % (port, phase), text),
              "no line for the session from port %d (%s): %s", port, phase,
              text)
    check(not re.search(r"alice|secret", text, re.I),
          "the summary shows what a client sent: %s", text)
    noop(relaying, "imap", b"after-usr1")


# ------------------------------------------------------------- warnings

@case(valgrind=True)
def test_certificate_expiry_warning(t):
    """A server certificate that ends in 3 days: one warning in the log
    (not one per session), and -s and -s -j say so."""
    srv = t.server("echo", cert="expiring")
    svc = t.service(srv)
    d = t.daemon(svc)
    for _ in range(3):
        good_session(t, svc)
    wait_closed(d, 3)
    warnings = [l for l in d.log() if "certificate chain expires" in l]
    check(len(warnings) == 1, "expiry warnings: %r", warnings)
    check(re.search(r"\[svc\] the server's certificate chain expires on "
                    r"\d{4}-\d\d-\d\d .* \(in 2 day\(s\)\)", warnings[0]),
          "%r", warnings[0])
    doc = run_status(t, d, json_out=True)
    cert = service_of(doc, "svc")["server_certificate"]
    check(cert["expiring_soon"], "%r", cert)
    check(2 * 86400 <= cert["expires_in_seconds"] <= 3 * 86400, "%r", cert)
    check(iso_seconds(cert["expires"]) == cert_not_after(t.certs.expiring),
          "%r", cert)
    text = run_status(t, d)
    check("WARNING: within 14 days" in text, "%s", text)


@case(timeout=60)
def test_failing_service_warns_once_per_streak(t):
    """A service whose sessions fail again and again: one warning at the
    5th in a row, naming the reason class and what to check; none for the
    7th; a success re-arms it, and 5 more failures warn again."""
    bad = t.server("echo", cert="wrong_name")
    good = t.server("echo")
    svc = t.service(bad)
    d = t.daemon(svc)
    rx = r"\[svc\] (\d+) attempts in a row failed to reach the server"
    for i in range(7):
        refused_session(t, svc)
        if i == 4:
            d.wait_log(rx, what="the warning at the 5th failure")
    wait_closed(d, 7)
    warnings = [l for l in d.log() if re.search(rx, l)]
    check(len(warnings) == 1, "warnings: %r", warnings)
    check(re.search(rx + r" securely, the last for tls_verify \(certificate "
                    r"name mismatch[^)]*\): check the server's certificate, "
                    r"ca_file, server_name", warnings[0]), "%r", warnings[0])
    doc = run_status(t, d, json_out=True)
    s = service_of(doc, "svc")
    check(s["failures_in_row"] == 7 and s["failing_warning"], "%r", s)
    check(re.search(r"WARNING: +the last 7 attempts to reach the server "
                    r"failed \(tls_verify\)", run_status(t, d)), "-s text")

    svc.opts["remote"] = good.address
    mark = d.reload(t.config([svc]))
    d.wait_log(r"reloaded", since=mark)
    good_session(t, svc)
    d.wait_log(r"\[svc\] the server is reached securely again after 7 "
               r"failure", since=mark)
    check(service_of(run_status(t, d, json_out=True), "svc")
          ["failures_in_row"] == 0, "not reset by the success")

    svc.opts["remote"] = bad.address
    mark = d.reload(t.config([svc]))
    d.wait_log(r"reloaded", since=mark)
    for _ in range(5):
        refused_session(t, svc)
    d.wait_log(rx, since=mark, what="the second streak's warning")
    check(len([l for l in d.log() if re.search(rx, l)]) == 2,
          "warnings after two streaks")
    # The counters lived through both reloads.
    s = service_of(run_status(t, d, json_out=True), "svc")
    check(s["totals"]["failures"]["tls_verify"] == 12 and
          s["totals"]["sessions_ok"] == 1, "%r", s["totals"])


@case()
def test_status_line_follows_counts(t):
    """systemd's status line shows live counts, at most once a second."""
    ns = NotifySocket(t)
    srv = t.server("echo")
    svc = t.service(srv)
    t.daemon(svc, env={"NOTIFY_SOCKET": ns.address})
    ns.expect("READY")

    def next_status(want, timeout=10):
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            msg = ns.next(max(deadline - time.monotonic(), 0.01))
            seen.append((time.monotonic(), msg.get("STATUS")))
            if msg.get("STATUS") == want:
                return seen
        raise AssertionError("no STATUS=%s, saw %r" % (want, seen))

    c = t.connect(svc)
    c.expect_line(GREETING["imap"])
    next_status("serving 1 service, 1 session, 0 failing")
    c.close()
    next_status("serving 1 service, 0 sessions, 0 failing")
    # 12 changes in a burst: at most one line a second while it lasts
    # (lines are counted, not timed on arrival: they may wait unread).
    clients = []
    t0 = time.monotonic()
    for _ in range(12):
        c = t.connect(svc)
        c.expect_line(GREETING["imap"])
        clients.append(c)
    seen = next_status("serving 1 service, 12 sessions, 0 failing")
    took = time.monotonic() - t0
    check(len(seen) <= took + 1.5, "%d status lines in %.2fs: %r",
          len(seen), took, seen)
    for c in clients:
        c.close()
