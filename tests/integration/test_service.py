"""Running as a service: notifications, socket activation, -d, user =, logs.

The service manager is played by the test: a unix datagram socket named by
NOTIFY_SOCKET receives the sd_notify messages, `systemd-socket-activate`
binds and passes listening sockets (LISTEN_FDS), JOURNAL_STREAM names
the pipe the daemon's stderr goes to, and `setpriv` gives the daemon the
user and the single capability the unit gives it.  No PID 1 systemd is
needed; tests that need root or a missing tool are skipped with the reason.
"""

import grp
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

from client import noop
from daemon import Daemon
from expectations import GREETING, LOG_REASONS, SECRET
from harness import Skip, case, check, connect_refused, port_is_free, \
    wait_until

SANITIZER_ENV = ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS")


class NotifySocket:
    """The receiving end of NOTIFY_SOCKET: a path, or @name (abstract)."""

    def __init__(self, t, abstract=False):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = "mailtlsd-test-%d-%d" % (os.getpid(), id(self))
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            self.address = os.path.join(t.tmp, "notify.sock")
            self.sock.bind(self.address)
        self.messages = []
        t.stack.callback(self.sock.close)

    def next(self, timeout=10):
        """The next message as a dict of its NAME=value lines."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except socket.timeout:
            raise AssertionError("no notification within %ss (had %r)"
                                 % (timeout, self.messages))
        msg = dict(line.split("=", 1)
                   for line in data.decode().split("\n") if line)
        self.messages.append(msg)
        return msg

    def pending(self):
        """Messages already waiting, without blocking; status line
        updates (a message of STATUS= alone) aside."""
        out = []
        self.sock.settimeout(0)
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return out
            if not data.startswith(b"STATUS=") or b"\n" in data.rstrip():
                out.append(data)

    def expect(self, key, timeout=10):
        """The next message that carries key=1; status line updates (a
        message of STATUS= alone, as counts change) may come before."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self.next(max(deadline - time.monotonic(), 0.01))
            if list(msg) != ["STATUS"]:
                break
        check(msg.get(key) == "1", "expected %s=1, got %r", key, msg)
        return msg


class ServiceDaemon(Daemon):
    """mailtlsd started under a wrapper command and/or a journal stream."""

    def __init__(self, binary, workdir, name, env=None, wrapper=(),
                 journal=False):
        super().__init__(binary, workdir, name, env)
        self.wrapper = list(wrapper)
        self.journal = journal

    def start(self, ready=LOG_REASONS["ready"], ready_timeout=15):
        """Start; wait for a log line matching ready (None: do not wait)."""
        r, w = os.pipe()
        env = dict(self.env)
        if self.journal:
            st = os.fstat(w)
            env["JOURNAL_STREAM"] = "%d:%d" % (st.st_dev, st.st_ino)
        try:
            self.proc = subprocess.Popen(
                self.wrapper + [self.binary, "-f", "-c", self.conf_path],
                stdin=subprocess.DEVNULL, stdout=w, stderr=w, env=env,
                cwd=self.workdir)
        finally:
            os.close(w)
        self.proc.stdout = os.fdopen(r, "rb")
        self.reader = threading.Thread(target=self._read_log, daemon=True)
        self.reader.start()
        if ready:
            self.wait_log(ready, timeout=ready_timeout,
                          what="the daemon to start")
        return self


def service_daemon(t, services, start=True, **kw):
    """A ServiceDaemon for services, checked at teardown like t.daemon()."""
    global_opts = kw.pop("global_opts", {})
    d = ServiceDaemon(t.binary, t.tmp, "mailtlsd%d" % len(t.daemons), **kw)
    t.daemons.append(d)
    d.write_config(t.config(services, **global_opts))
    t.stack.callback(t._finish_daemon, d)
    if start:
        d.start()
    return d


def session(t, port):
    """A relayed IMAP session to the echo server, checked by one NOOP."""
    c = t.connect(port)
    c.expect_line(GREETING["imap"])
    noop(c, "imap", b"hello")
    return c


def socket_activate(t, addresses, env=None):
    """The systemd-socket-activate command line passing addresses."""
    tool = shutil.which("systemd-socket-activate")
    if tool is None:
        raise Skip("systemd-socket-activate not installed (package systemd)")
    argv = [tool]
    for a in addresses:
        argv += ["-l", a]
    for name in SANITIZER_ENV:
        if name in os.environ:
            argv += ["-E", "%s=%s" % (name, os.environ[name])]
    for name, value in (env or {}).items():
        argv += ["-E", "%s=%s" % (name, value)]
    return argv


def proc_status(pid):
    """/proc/PID/status as a dict of its fields."""
    with open("/proc/%d/status" % pid) as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f
                    if ":\t" in line)


def running(pid):
    """Whether pid is a live process (not gone, not a zombie)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# ------------------------------------------------------------ notify

@case(params={"path": {"abstract": False}, "abstract": {"abstract": True}})
def test_notify_ready_reload_stop(t, abstract):
    """READY=1 once serving, RELOADING/READY around SIGHUP, STOPPING=1."""
    ns = NotifySocket(t, abstract)
    srv = t.server()
    svc = t.service(srv)
    d = t.daemon(svc, env={"NOTIFY_SOCKET": ns.address})
    msg = ns.expect("READY")
    check("serving 1 service" in msg.get("STATUS", ""), "STATUS %r", msg)
    old = session(t, svc.port)

    svc.opts["idle_timeout"] = 600
    mark = d.reload(t.config([svc]))
    msg = ns.expect("RELOADING")
    check(msg.get("MONOTONIC_USEC", "").isdigit(), "no MONOTONIC_USEC: %r",
          msg)
    msg = ns.expect("READY")
    check("fail" not in msg.get("STATUS", ""), "STATUS %r", msg)
    d.wait_log(LOG_REASONS["reloaded"], since=mark)

    mark = d.reload(t.config([svc]) + "no_such_key = 1\n")
    ns.expect("RELOADING")
    msg = ns.expect("READY")
    check("reload failed" in msg.get("STATUS", ""), "STATUS %r", msg)
    d.wait_log(r"reload failed", since=mark)
    noop(old, "imap", b"after-reloads")

    d.stopped_by_test = True
    d.signal(signal.SIGTERM)
    msg = ns.expect("STOPPING")
    check("draining 1 session" in msg.get("STATUS", ""), "STATUS %r", msg)
    old.close()
    rc = d.wait_exit(10)
    check(rc == 0, "exit status %s after SIGTERM", rc)
    extra = ns.pending()
    check(not extra, "unexpected notifications: %r", extra)


@case(params={"missing": {"value": "/nonexistent/notify.sock"},
              "relative": {"value": "notify.sock"}})
def test_notify_socket_unusable(t, value):
    """An unusable NOTIFY_SOCKET is logged; the daemon serves anyway."""
    srv = t.server()
    svc = t.service(srv)
    d = t.daemon(svc, env={"NOTIFY_SOCKET": value})
    d.wait_log(r"cannot notify|not notifying",
               what="a warning about NOTIFY_SOCKET")
    session(t, svc.port)


# ------------------------------------------------- socket activation

@case()
def test_socket_activation(t):
    """Passed sockets are adopted by address, kept on reload; others bound.

    systemd-socket-activate binds A's address and an address no service
    has, and starts mailtlsd only at the first connection: that client was
    accepted by the passed socket before the daemon existed.
    """
    srv = t.server()
    a = t.service(srv, name="a")
    b = t.service(srv, name="b")
    stray = t.ports.take()
    ns = NotifySocket(t, abstract=True)
    wrapper = socket_activate(t, ["127.0.0.1:%d" % a.port,
                                  "127.0.0.1:%d" % stray],
                              env={"NOTIFY_SOCKET": ns.address})
    d = service_daemon(t, [a, b], wrapper=wrapper, start=False)
    d.start(ready=r"Listening on 127\.0\.0\.1:%d" % stray)
    first = t.connect(a.port)
    d.wait_log(LOG_REASONS["ready"], timeout=15, what="the daemon to start")
    ns.expect("READY")
    first.expect_line(GREETING["imap"])
    noop(first, "imap", b"first")

    d.wait_log(r"using socket passed by systemd for 127\.0\.0\.1:%d$"
               % a.port)
    d.wait_log(r"socket passed by systemd for 127\.0\.0\.1:%d matches no "
               r"listen address" % stray)
    check(d.find_log(r"passed by systemd for 127\.0\.0\.1:%d" % b.port)
          is None, "b's address was not passed, yet the log says it was")
    session(t, b.port)
    check(connect_refused(stray), "the stray passed socket is still open")

    mark = d.reload(t.config([a, b]))
    d.wait_log(r"reloaded.*\(2 kept\)", since=mark, timeout=10)
    session(t, a.port)
    noop(first, "imap", b"after-reload")


@case()
def test_listen_fds_for_another_process(t):
    """LISTEN_FDS meant for another pid is ignored: addresses are bound."""
    srv = t.server()
    svc = t.service(srv)
    d = t.daemon(svc, env={"LISTEN_PID": "1", "LISTEN_FDS": "1"})
    session(t, svc.port)
    check(d.find_log(r"passed by systemd") is None,
          "the daemon took sockets meant for another process")


# --------------------------------------------------------------- -d

@case()
def test_detach_writes_pid_file(t):
    """-d returns once the daemon serves; pid_file holds the daemon's pid."""
    srv = t.server()
    svc = t.service(srv)
    pid_file = os.path.join(t.tmp, "mailtlsd.pid")
    conf = os.path.join(t.tmp, "detach.conf")
    with open(conf, "w") as f:
        f.write(t.config([svc], pid_file=pid_file))
    p = subprocess.run([t.binary, "-d", "-c", conf], capture_output=True,
                       stdin=subprocess.DEVNULL, timeout=15)
    check(p.returncode == 0, "mailtlsd -d exited %s: %r", p.returncode,
          p.stderr[-500:])
    with open(pid_file) as f:
        pid = int(f.read().strip())
    t.stack.callback(_kill_detached, pid)
    check(running(pid), "pid %d from pid_file is not running", pid)
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        argv = f.read().split(b"\0")
    check(argv[0] == t.binary.encode() and b"-d" in argv,
          "pid %d is not the daemon: %r", pid, argv)
    check(os.getsid(pid) != os.getsid(0),
          "the daemon did not leave the caller's session")
    c = session(t, svc.port)
    c.close()
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not running(pid), 10, "the daemon to exit")
    check(not os.path.exists(pid_file), "pid_file left behind at exit")


@case()
def test_detach_failure_exit_status(t):
    """-d exits 1 when start-up fails after the fork (pid_file unwritable)."""
    srv = t.server()
    svc = t.service(srv)
    conf = os.path.join(t.tmp, "detach.conf")
    with open(conf, "w") as f:
        f.write(t.config([svc], pid_file=os.path.join(t.tmp, "no", "pid")))
    p = subprocess.run([t.binary, "-d", "-c", conf], capture_output=True,
                       stdin=subprocess.DEVNULL, timeout=15)
    check(p.returncode == 1, "mailtlsd -d exited %s", p.returncode)
    wait_until(lambda: port_is_free("127.0.0.1", svc.port), 5,
               "the failed daemon to release its port")


def start_detached(t, svc, pid_file, name="detach"):
    """Run mailtlsd -d on a config for svc with pid_file; its exit status."""
    conf = os.path.join(t.tmp, name + ".conf")
    with open(conf, "w") as f:
        f.write(t.config([svc], pid_file=pid_file))
    return subprocess.run([t.binary, "-d", "-c", conf], capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=15).returncode


def detached_pid(t, pid_file):
    """The pid in pid_file, killed at teardown if still running."""
    with open(pid_file) as f:
        pid = int(f.read().strip())
    t.stack.callback(_kill_detached, pid)
    return pid


@case()
def test_pid_file_symlink_refused(t):
    """A symbolic link where pid_file should be (planted by whoever can
    write to its directory) is refused: the start fails and the file it
    points to is untouched."""
    srv = t.server()
    svc = t.service(srv)
    victim = os.path.join(t.tmp, "victim")
    with open(victim, "w") as f:
        f.write("precious\n")
    pid_file = os.path.join(t.tmp, "mailtlsd.pid")
    os.symlink(victim, pid_file)
    rc = start_detached(t, svc, pid_file)
    check(rc == 1, "mailtlsd -d exited %s with a symlink as pid_file", rc)
    with open(victim) as f:
        check(f.read() == "precious\n", "the link's target was written")
    wait_until(lambda: port_is_free("127.0.0.1", svc.port), 5,
               "the failed daemon to release its port")


@case()
def test_pid_file_stale_and_locked(t):
    """A pid_file left by a daemon that is gone is taken over; one held by
    a running mailtlsd makes a second one refuse to start."""
    srv = t.server()
    svc = t.service(srv)
    pid_file = os.path.join(t.tmp, "mailtlsd.pid")
    with open(pid_file, "w") as f:
        f.write("999999\n")                # stale
    check(start_detached(t, svc, pid_file) == 0, "the first start failed")
    pid = detached_pid(t, pid_file)
    check(running(pid), "pid %d from pid_file is not running", pid)
    other = t.service(srv, name="other")
    rc = start_detached(t, other, pid_file, name="second")
    check(rc == 1, "a second mailtlsd on the same pid_file exited %s", rc)
    check(detached_pid(t, pid_file) == pid, "the second start changed "
          "the pid_file")
    check(running(pid), "the first daemon is gone")
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not running(pid), 10, "the daemon to exit")
    check(not os.path.exists(pid_file), "pid_file left behind at exit")


def _kill_detached(pid):
    if running(pid):
        os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------ user =

def nobody():
    """(uid, gid, name) of the unprivileged test user, or Skip."""
    if os.geteuid() != 0:
        raise Skip("dropping privileges needs the tests to run as root")
    try:
        pw = pwd.getpwnam("nobody")
    except KeyError:
        raise Skip("no user nobody")
    return pw.pw_uid, pw.pw_gid, pw.pw_name


def free_low_port(first):
    """A free loopback port below 1024, or Skip; tests that may run at the
    same time start at different ports."""
    for port in range(first, 600, -7):
        if port_is_free("127.0.0.1", port):
            return port
    raise Skip("no free port below 1024")


@case()
def test_user_drops_privileges(t):
    """user = nobody: binds a port below 1024 as root, then serves as nobody.

    The notification socket belongs to root and is not writable by nobody:
    READY=1 arrives only because the daemon connected to it before the
    drop.  At READY the drop is complete.
    """
    uid, gid, name = nobody()
    groups = sorted(g.gr_gid for g in grp.getgrall() if name in g.gr_mem)
    srv = t.server()
    svc = t.service(srv)
    svc.port = free_low_port(987)
    svc.opts["listen"] = "127.0.0.1:%d" % svc.port
    ns = NotifySocket(t)
    os.chmod(ns.address, 0o700)
    d = t.daemon(svc, user=name, env={"NOTIFY_SOCKET": ns.address})
    ns.expect("READY")
    st = proc_status(d.pid)
    check(st["Uid"].split() == [str(uid)] * 4, "Uid: %s", st["Uid"])
    check(st["Gid"].split() == [str(gid)] * 4, "Gid: %s", st["Gid"])
    check(sorted(int(g) for g in st["Groups"].split()) ==
          sorted(set(groups + [gid])), "Groups: %s", st["Groups"])
    check(int(st["CapEff"], 16) == 0 and int(st["CapPrm"], 16) == 0,
          "capabilities left: %s / %s", st["CapEff"], st["CapPrm"])
    d.wait_log(r"running as user %s" % name)
    session(t, svc.port)


def world_reachable(path):
    """Whether every directory above path is searchable by anyone."""
    d = os.path.dirname(os.path.abspath(path))
    while True:
        if not os.stat(d).st_mode & 0o001:
            return False
        if d == "/":
            return True
        d = os.path.dirname(d)


@case()
def test_unit_privileges(t):
    """What mailtlsd.service grants is enough: started as an unprivileged
    user with only CAP_NET_BIND_SERVICE (ambient, bounding set) and
    no_new_privs, with no user = in the config, it binds a port below
    1024 and serves."""
    uid, gid, _ = nobody()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise Skip("setpriv not installed (package util-linux)")
    if not world_reachable(t.binary):
        raise Skip("%s is not reachable for an unprivileged user" % t.binary)
    home = tempfile.mkdtemp(prefix="mailtlsd-unit-")
    t.stack.callback(shutil.rmtree, home, True)
    os.chmod(home, 0o755)
    ca = os.path.join(home, "ca.crt")
    shutil.copyfile(t.certs.ca, ca)
    os.chmod(ca, 0o644)
    srv = t.server()
    svc = t.service(srv, ca_file=ca)
    svc.port = free_low_port(986)
    svc.opts["listen"] = "127.0.0.1:%d" % svc.port
    wrapper = [setpriv, "--reuid=%d" % uid, "--regid=%d" % gid,
               "--clear-groups", "--no-new-privs",
               "--inh-caps=-all,+net_bind_service",
               "--ambient-caps=-all,+net_bind_service",
               "--bounding-set=-all,+net_bind_service"]
    d = ServiceDaemon(t.binary, home, "unit", wrapper=wrapper)
    t.daemons.append(d)
    # The control socket in a directory of the user's, as systemd's
    # RuntimeDirectory= makes it.
    run = os.path.join(home, "run")
    os.mkdir(run, 0o750)
    os.chown(run, uid, gid)
    d.write_config(t.config([svc], control_socket=os.path.join(run,
                                                               "control")))
    os.chmod(d.conf_path, 0o644)
    t.stack.callback(t._finish_daemon, d)
    d.start()
    st = proc_status(d.pid)
    check(st["Uid"].split() == [str(uid)] * 4, "Uid: %s", st["Uid"])
    check(int(st["CapEff"], 16) == 1 << 10 and st["NoNewPrivs"] == "1",
          "CapEff %s NoNewPrivs %s", st["CapEff"], st["NoNewPrivs"])
    session(t, svc.port)


@case()
def test_unit_memory_ceiling(t):
    """mailtlsd.service caps the service's memory: MemoryHigh below
    MemoryMax, MemoryMax at least 768 MiB (1024 sessions at 0.75 MiB)."""
    unit = os.path.join(os.path.dirname(__file__), "..", "..", "systemd",
                        "mailtlsd.service.in")
    with open(unit, encoding="utf-8") as f:
        text = f.read()
    size = {}
    for key in ("MemoryHigh", "MemoryMax"):
        m = re.search(r"^%s=(\d+)([MG])$" % key, text, re.M)
        check(m is not None, "no %s= in the unit", key)
        size[key] = int(m.group(1)) << (20 if m.group(2) == "M" else 30)
    check(size["MemoryHigh"] < size["MemoryMax"], "MemoryHigh %d is not "
          "below MemoryMax %d", size["MemoryHigh"], size["MemoryMax"])
    check(size["MemoryMax"] >= 768 << 20, "MemoryMax %d is below what "
          "max_sessions = 1024 may need", size["MemoryMax"])


@case()
def test_root_without_user_warns(t):
    """Started as root without user = and not by systemd, mailtlsd warns
    that it runs as root; with INVOCATION_ID, which systemd sets for a
    service, it does not."""
    if os.geteuid() != 0:
        raise Skip("not running as root")
    if os.environ.get("INVOCATION_ID"):
        raise Skip("the tests run under systemd")
    srv = t.server()
    d = t.daemon(t.service(srv))
    d.wait_log(r"running as root without user =", what="the warning")
    quiet = t.daemon(t.service(srv), env={"INVOCATION_ID": "0123abcd"},
                     name="under-systemd")
    check(quiet.find_log(r"running as root without user") is None,
          "warned under systemd: %r",
          quiet.find_log(r"running as root without user"))


@case()
def test_user_unknown(t):
    """user = a user that does not exist: exit 1 with the reason."""
    srv = t.server()
    svc = t.service(srv)
    conf = os.path.join(t.tmp, "user.conf")
    with open(conf, "w") as f:
        f.write(t.config([svc], user="no-such-user-mailtlsd"))
    p = subprocess.run([t.binary, "-f", "-c", conf], capture_output=True,
                       stdin=subprocess.DEVNULL, timeout=15)
    check(p.returncode == 1, "exit status %s", p.returncode)
    check(b"no-such-user-mailtlsd: no such user" in p.stderr,
          "stderr: %r", p.stderr[-300:])
    # -t finds it too, rather than passing a file the start refuses.
    p = subprocess.run([t.binary, "-t", "-c", conf], capture_output=True,
                       stdin=subprocess.DEVNULL, timeout=15)
    check(p.returncode == 1, "-t: exit status %s", p.returncode)
    check(b"user no-such-user-mailtlsd: no such user" in p.stderr,
          "-t: stderr: %r", p.stderr[-300:])


@case()
def test_detach_relative_config_reloads(t):
    """-d with a relative -c path: the daemon changes to / but a reload
    still reads the same file."""
    srv = t.server()
    svc = t.service(srv)
    pid_file = os.path.join(t.tmp, "mailtlsd.pid")
    with open(os.path.join(t.tmp, "rel.conf"), "w") as f:
        f.write(t.config([svc], pid_file=pid_file))
    p = subprocess.run([t.binary, "-d", "-c", "rel.conf"], cwd=t.tmp,
                       capture_output=True, stdin=subprocess.DEVNULL,
                       timeout=15)
    check(p.returncode == 0, "mailtlsd -d exited %s", p.returncode)
    pid = detached_pid(t, pid_file)
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        check(b"rel.conf" in f.read(), "pid %d is not the daemon", pid)
    # A reload that cannot read the file keeps the old configuration: add
    # a service, reload, and see it served.
    other = t.service(srv, name="other")
    with open(os.path.join(t.tmp, "rel.conf"), "w") as f:
        f.write(t.config([svc, other], pid_file=pid_file))
    os.kill(pid, signal.SIGHUP)
    try:
        wait_until(lambda: not port_is_free("127.0.0.1", other.port), 20,
                   "the reloaded configuration's new listen address")
    except AssertionError as e:
        raise AssertionError("%s (the daemon is %s)" % (
            e, "running" if running(pid) else "gone"))
    session(t, other.port).close()
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not running(pid), 10, "the daemon to exit")


# ------------------------------------------------------------ logging

@case()
def test_journal_priority_prefixes(t):
    """With stderr on the journal every line has a <N> priority prefix,
    session lines a session id, and no password or mail byte is logged."""
    srv = t.server()
    svc = t.service(srv)
    d = service_daemon(t, [svc], journal=True)
    c = session(t, svc.port)
    c.send(b"a2 LOGIN alice " + SECRET + b"\r\n")
    c.line()
    noop(c, "imap", b"mail-content-" + SECRET)
    c.close()
    d.wait_log(r"closed:", what="the session to end")
    lines = d.log()
    bad = [l for l in lines if not re.match(r"<[0-7]>\S", l)]
    check(not bad, "lines without a priority prefix: %r", bad[:3])
    check(any(l.startswith("<6>ready:") for l in lines),
          "no <6>ready line: %r", lines[:5])
    sess = [l for l in lines if "client 127.0.0.1" in l or "closed:" in l]
    check(sess and all(re.match(r"<\d>\[svc#\d+\] ", l) for l in sess),
          "session lines without a session id: %r", sess)
    check(not any(SECRET.decode() in l for l in lines),
          "the password or mail content reached the log")


@case()
def test_journal_stream_of_another_process(t):
    """A JOURNAL_STREAM that is not our stderr is ignored: plain lines."""
    srv = t.server()
    svc = t.service(srv)
    d = t.daemon(svc, env={"JOURNAL_STREAM": "1:1"})
    check(all(l.startswith("mailtlsd: ") for l in d.log()),
          "lines with journal prefixes: %r", d.log()[:3])
