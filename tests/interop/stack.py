"""The servers of the interop suite: a throwaway CA, Dovecot, Postfix and
mailtlsd, all in one temporary run directory, started and torn down here.

Everything a run creates lives in RUNDIR (a fresh temporary directory): the
CA and the server key (made with the openssl command, never committed), the
configurations rendered from conf/*.in, the mailboxes, the Postfix queue,
every log and every socket. Nothing is written to /etc. The pointer file
STALE_POINTER names the run directory of a run in progress, so that a run
killed without its teardown (SIGKILL) is cleaned up by the next one.
"""

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CONF = os.path.join(HERE, "conf")

SERVER_ADDR = "127.0.0.2"       # Dovecot and Postfix listen here
CLIENT_ADDR = "127.0.0.1"       # mailtlsd listens here
MAIL_DOMAIN = "interop.test"
SERVER_NAME = "mail." + MAIL_DOMAIN
USER = "interop"
PASSWORD = "Interop-pw-4711"
ADDRESS = USER + "@" + MAIL_DOMAIN

STALE_POINTER = os.path.join(tempfile.gettempdir(), "mailtlsd-interop.running")


class StackError(Exception):
    pass


def _run(cmd, timeout=60):
    """Runs cmd, returns its output; raises StackError when it fails.
    The output goes through a file, not a pipe: a daemon that forks keeps
    its inherited standard output open."""
    with tempfile.TemporaryFile() as out:
        try:
            p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out,
                               stderr=subprocess.STDOUT, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise StackError("%s did not finish within %d s"
                             % (" ".join(cmd), timeout))
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    if p.returncode != 0:
        raise StackError("%s exited %d:\n%s" % (" ".join(cmd), p.returncode,
                                               text.strip()))
    return text


def _run_tty(cmd, timeout=60):
    """Like _run, with standard output and error on a pseudo-terminal:
    the postfix command writes its messages to stderr only when that is a
    terminal (otherwise only to syslog, which may not exist here)."""
    import pty
    master, slave = pty.openpty()
    try:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=slave,
                             stderr=slave)
        os.close(slave)
        slave = -1
        chunks = []
        deadline = time.monotonic() + timeout
        os.set_blocking(master, False)
        while True:
            try:
                data = os.read(master, 65536)
                if not data:
                    break
                chunks.append(data)
                continue
            except BlockingIOError:
                pass
            except OSError:       # EIO: every writer has closed the tty
                break
            if p.poll() is not None:
                break
            if time.monotonic() > deadline:
                p.kill()
                p.wait()
                raise StackError("%s did not finish within %d s"
                                 % (" ".join(cmd), timeout))
            time.sleep(0.05)
        rc = p.wait()
        try:
            while True:
                data = os.read(master, 65536)
                if not data:
                    break
                chunks.append(data)
        except OSError:
            pass
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    text = b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")
    if rc != 0:
        raise StackError("%s exited %d:\n%s" % (" ".join(cmd), rc,
                                               text.strip()))
    return text


def port_is_free(addr, port):
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def listening(addr, port):
    """Whether a TCP socket listens on addr:port (IPv4), from /proc/net/tcp:
    no connection is made, so the server logs nothing."""
    want = "%s:%04X" % ("".join("%02X" % int(b) for b in
                                reversed(addr.split("."))), port)
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[1] == want and fields[3] == "0A":
                    return True
    except OSError:
        pass
    return False


def wait_port(addr, port, timeout=20.0, what=""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if listening(addr, port):
            return
        time.sleep(0.1)
    raise StackError("%s did not listen on %s:%d within %.0f s"
                     % (what or "server", addr, port, timeout))


def tail(path, n=40):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError as e:
        return "(%s)" % e
    return "\n".join(lines[-n:])


class Stack:
    def __init__(self, mailtlsd, port_base, mail_user, log_level="info",
                 keep=False, extra_global=()):
        self.mailtlsd = mailtlsd
        self.extra_global = list(extra_global)
        self.mail_user = mail_user
        self.log_level = log_level
        self.keep = keep
        b = port_base
        self.ports = {
            # the servers, on SERVER_ADDR
            "IMAP_PORT": b, "IMAPS_PORT": b + 1,
            "POP3_PORT": b + 2, "POP3S_PORT": b + 3,
            "SUBMISSION_PORT": b + 4, "SUBMISSIONS_PORT": b + 5,
            # mailtlsd, on CLIENT_ADDR
            "L_IMAP_IMPLICIT": b + 10, "L_IMAP_STARTTLS": b + 11,
            "L_POP3_IMPLICIT": b + 12, "L_POP3_STARTTLS": b + 13,
            "L_SMTP_IMPLICIT": b + 14, "L_SMTP_STARTTLS": b + 15,
            # mailtlsd with local_tls toward the client
            "L_IMAP_LOCAL_STARTTLS": b + 16, "L_IMAP_LOCAL_IMPLICIT": b + 17,
            "L_POP3_LOCAL_STARTTLS": b + 18, "L_POP3_LOCAL_IMPLICIT": b + 19,
            "L_SMTP_LOCAL_STARTTLS": b + 20, "L_SMTP_LOCAL_IMPLICIT": b + 21,
        }
        self.rundir = None
        self.mailtlsd_proc = None
        self.mailtlsd_log = None
        self.started = []          # names of what is up, for teardown
        self.teardown_problems = []

    # -- where a mail client connects -------------------------------------
    def port(self, proto, mode):
        """mode: implicit or starttls (toward the server, plaintext toward
        the client), or local-starttls, local-implicit (local_tls)."""
        return self.ports["L_%s_%s" % (proto.upper(),
                                       mode.upper().replace("-", "_"))]

    @property
    def local_cert(self):
        """The certificate mailtlsd generates for the local_tls services:
        what a client is told to trust."""
        return self.path("state", "local.crt")

    # -- paths -------------------------------------------------------------
    def path(self, *parts):
        return os.path.join(self.rundir, *parts)

    @property
    def dovecot_conf(self):
        return self.path("dovecot", "dovecot.conf")

    @property
    def postfix_dir(self):
        return self.path("postfix", "etc")

    @property
    def dovecot_log(self):
        return self.path("dovecot", "dovecot.log")

    @property
    def postfix_log(self):
        return self.path("postfix", "postfix.log")

    # -- setup -------------------------------------------------------------
    def start(self):
        if os.geteuid() != 0:
            raise StackError("the interop suite runs Postfix and Dovecot and "
                             "must run as root (CI does)")
        for tool in ("dovecot", "doveadm", "postfix", "openssl"):
            if not shutil.which(tool):
                raise StackError("%s is not installed: run "
                                 "tests/interop/setup.sh first" % tool)
        try:
            pw = pwd.getpwnam(self.mail_user)
        except KeyError:
            raise StackError("the mail user %r does not exist: run "
                             "tests/interop/setup.sh first" % self.mail_user)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        if self.uid == 0:
            raise StackError("the mail user must not be root")

        cleanup_stale()
        busy = []
        for name, p in sorted(self.ports.items()):
            addr = CLIENT_ADDR if name.startswith("L_") else SERVER_ADDR
            if not port_is_free(addr, p):
                busy.append("%s:%d" % (addr, p))
        if busy:
            raise StackError("ports in use: %s (set INTEROP_PORT_BASE to "
                             "move the suite)" % ", ".join(busy))

        parent = tempfile.gettempdir()
        p = parent
        while p != os.path.dirname(p):
            if not os.stat(p).st_mode & 0o001:
                raise StackError("%s is not searchable by other users, as "
                                 "Postfix and Dovecot's unprivileged processes "
                                 "need: set TMPDIR=/tmp" % p)
            p = os.path.dirname(p)
        self.rundir = tempfile.mkdtemp(prefix="mailtlsd-interop.", dir=parent)
        # Postfix (user postfix) and Dovecot's unprivileged processes must
        # reach the sockets and files below it.
        os.chmod(self.rundir, 0o755)
        with open(STALE_POINTER, "w") as f:
            f.write("%s %d\n" % (self.rundir, os.getpid()))
        for d in ("pki", "dovecot", "sockets", "postfix/etc", "clients",
                  "home"):
            os.makedirs(self.path(d), mode=0o755, exist_ok=True)
        os.makedirs(self.path("mail"), mode=0o700)
        os.chown(self.path("mail"), self.uid, self.gid)
        self.vars = dict(self.ports, RUNDIR=self.rundir,
                         SERVER_ADDR=SERVER_ADDR, SERVER_NAME=SERVER_NAME,
                         MAIL_DOMAIN=MAIL_DOMAIN, MAIL_UID=str(self.uid),
                         MAIL_GID=str(self.gid), LOG_LEVEL=self.log_level,
                         EXTRA_GLOBAL="\n".join(self.extra_global))
        self.make_pki()
        self.start_dovecot()
        self.start_postfix()
        self.start_mailtlsd()

    def render(self, template, dest, mode=0o644):
        with open(os.path.join(CONF, template)) as f:
            text = f.read()
        for k, v in self.vars.items():
            text = text.replace("@%s@" % k, str(v))
        leftover = re.findall(r"@[A-Z][A-Z_0-9]*@", text)
        if leftover:
            raise StackError("%s: unreplaced %s" % (template, leftover))
        with open(dest, "w") as f:
            f.write(text)
        os.chmod(dest, mode)
        return dest

    def make_pki(self):
        d = self.path("pki")
        ext = os.path.join(d, "server.ext")
        with open(ext, "w") as f:
            f.write("basicConstraints = critical, CA:FALSE\n"
                    "keyUsage = critical, digitalSignature\n"
                    "extendedKeyUsage = serverAuth\n"
                    "subjectAltName = DNS:%s\n"
                    "authorityKeyIdentifier = keyid\n" % SERVER_NAME)
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
              "-nodes"]
        _run(["openssl", "req", "-x509", "-new"] + ec +
             ["-keyout", os.path.join(d, "ca.key"),
              "-out", os.path.join(d, "ca.crt"), "-days", "2", "-sha256",
              "-subj", "/CN=mailtlsd interop throwaway CA",
              "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        _run(["openssl", "req", "-new"] + ec +
             ["-keyout", os.path.join(d, "server.key"),
              "-out", os.path.join(d, "server.csr"),
              "-subj", "/CN=" + SERVER_NAME])
        _run(["openssl", "x509", "-req", "-in", os.path.join(d, "server.csr"),
              "-CA", os.path.join(d, "ca.crt"),
              "-CAkey", os.path.join(d, "ca.key"), "-set_serial", "2",
              "-days", "2", "-sha256", "-extfile", ext,
              "-out", os.path.join(d, "server.crt")])
        for k in ("ca.key", "server.key"):
            os.chmod(os.path.join(d, k), 0o600)

    # -- Dovecot -------------------------------------------------------------
    def start_dovecot(self):
        with open(self.path("dovecot", "users"), "w") as f:
            f.write("%s:{PLAIN}%s::::::\n" % (USER, PASSWORD))
        os.chmod(self.path("dovecot", "users"), 0o644)
        self.render("dovecot.conf.in", self.dovecot_conf)
        _run(["doveconf", "-c", self.dovecot_conf, "-n"])   # syntax check
        self.started.append("dovecot")
        _run(["dovecot", "-c", self.dovecot_conf])
        for name in ("IMAP_PORT", "IMAPS_PORT", "POP3_PORT", "POP3S_PORT"):
            wait_port(SERVER_ADDR, self.ports[name], what="Dovecot")

    def stop_dovecot(self):
        pidfile = self.path("dovecot", "run", "master.pid")
        pid = _read_pid(pidfile)
        subprocess.run(["dovecot", "-c", self.dovecot_conf, "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=30)
        if pid and not _wait_gone(pid, 15):
            self.teardown_problems.append("Dovecot master %d did not stop; "
                                          "killed" % pid)
            _kill(pid, signal.SIGKILL)

    # -- Postfix -------------------------------------------------------------
    def start_postfix(self):
        self.render("main.cf.in", os.path.join(self.postfix_dir, "main.cf"))
        self.render("master.cf.in",
                    os.path.join(self.postfix_dir, "master.cf"))
        for d in ("queue", "data"):
            os.makedirs(self.path("postfix", d), mode=0o755)
        os.chown(self.path("postfix", "data"),
                 pwd.getpwnam("postfix").pw_uid, -1)
        # `postfix check` (run by start) creates the queue's subdirectories
        # with the right owners and modes.
        self.started.append("postfix")
        _run_tty(["postfix", "-c", self.postfix_dir, "start"])
        for name in ("SUBMISSION_PORT", "SUBMISSIONS_PORT"):
            wait_port(SERVER_ADDR, self.ports[name], what="Postfix")

    def stop_postfix(self):
        pid = _read_pid(self.path("postfix", "queue", "pid", "master.pid"))
        subprocess.run(["postfix", "-c", self.postfix_dir, "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=60)
        if pid and not _wait_gone(pid, 15):
            self.teardown_problems.append("Postfix master %d did not stop; "
                                          "killed" % pid)
            _kill(pid, signal.SIGKILL)

    # -- mailtlsd ------------------------------------------------------------
    def start_mailtlsd(self):
        conf = self.render("mailtlsd.conf.in", self.path("mailtlsd.conf"))
        out = _run([self.mailtlsd, "-t", "-c", conf])
        if "configuration OK" not in out:
            raise StackError("mailtlsd -t: " + out)
        self.mailtlsd_log = self.path("mailtlsd.log")
        logf = open(self.mailtlsd_log, "wb")
        self.started.append("mailtlsd")
        self.mailtlsd_proc = subprocess.Popen(
            [self.mailtlsd, "-f", "-c", conf], stdin=subprocess.DEVNULL,
            stdout=logf, stderr=subprocess.STDOUT)
        logf.close()
        with open(self.path("mailtlsd.pid"), "w") as f:
            f.write("%d\n" % self.mailtlsd_proc.pid)
        # Ready once it says so (connecting to probe would start sessions).
        deadline = time.monotonic() + 20
        while "ready:" not in tail(self.mailtlsd_log, 5):
            if self.mailtlsd_proc.poll() is not None:
                raise StackError("mailtlsd exited %d:\n%s" % (
                    self.mailtlsd_proc.returncode, tail(self.mailtlsd_log)))
            if time.monotonic() > deadline:
                raise StackError("mailtlsd not ready within 20 s:\n"
                                 + tail(self.mailtlsd_log))
            time.sleep(0.05)

    def stop_mailtlsd(self):
        """SIGTERM; the daemon must exit 0 once its sessions have drained."""
        p = self.mailtlsd_proc
        if p is None:
            return
        if p.poll() is not None:
            self.teardown_problems.append(
                "mailtlsd had exited (status %d) before the teardown"
                % p.returncode)
            return
        p.send_signal(signal.SIGTERM)
        try:
            rc = p.wait(45)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            self.teardown_problems.append("mailtlsd did not exit within "
                                          "45 s of SIGTERM; killed")
            return
        if rc != 0:
            self.teardown_problems.append("mailtlsd exited %d on SIGTERM" % rc)

    # -- teardown ------------------------------------------------------------
    def stop(self):
        """Stops whatever was started, in reverse order; never raises."""
        steps = {"mailtlsd": self.stop_mailtlsd, "postfix": self.stop_postfix,
                 "dovecot": self.stop_dovecot}
        for name in reversed(self.started):
            try:
                steps[name]()
            except Exception as e:   # keep tearing down the rest
                self.teardown_problems.append("stopping %s: %s" % (name, e))
        self.started = []

    def remove(self):
        if self.rundir and not self.keep:
            shutil.rmtree(self.rundir, ignore_errors=True)
        try:
            with open(STALE_POINTER) as f:
                if f.read().split()[:1] == [self.rundir]:
                    os.unlink(STALE_POINTER)
        except OSError:
            pass

    # -- server-side helpers -------------------------------------------------
    def doveadm(self, *args):
        return _run(["doveadm", "-c", self.dovecot_conf] + list(args))

    def mailbox_count(self, mailbox, query=("ALL",)):
        out = self.doveadm("search", "-u", USER, "mailbox", mailbox, *query)
        return len([ln for ln in out.splitlines() if ln.strip()])


def _read_pid(path):
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours counts as gone
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _wait_gone(pid, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return not _alive(pid)


def _kill(pid, sig):
    try:
        os.kill(pid, sig)
    except OSError:
        pass


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def cleanup_stale():
    """Tear down what a previous run that was killed left running: only
    the processes of the run directory that STALE_POINTER names."""
    try:
        with open(STALE_POINTER) as f:
            words = f.read().split()
    except OSError:
        return
    rundir = words[0] if words else ""
    owner = int(words[1]) if len(words) > 1 and words[1].isdigit() else None
    if owner and owner != os.getpid() and _alive(owner):
        raise StackError("another interop run (pid %d, %s) is in progress"
                         % (owner, rundir))
    if not rundir.startswith(os.path.join(tempfile.gettempdir(),
                                          "mailtlsd-interop.")):
        os.unlink(STALE_POINTER)
        return
    if os.path.isdir(rundir):
        for pidfile in ("mailtlsd.pid", "idp/idp.pid"):
            # the OAuth2 part also runs an authorisation server (node)
            pid = _read_pid(os.path.join(rundir, pidfile))
            if pid and rundir in _cmdline(pid):
                _kill(pid, signal.SIGKILL)
        pf = os.path.join(rundir, "postfix", "etc")
        if os.path.exists(os.path.join(pf, "main.cf")):
            subprocess.run(["postfix", "-c", pf, "abort"],
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=60)
        dc = os.path.join(rundir, "dovecot", "dovecot.conf")
        if os.path.exists(dc):
            subprocess.run(["dovecot", "-c", dc, "stop"],
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=30)
        print("cleaned up after an interrupted run in %s" % rundir,
              flush=True)
        shutil.rmtree(rundir, ignore_errors=True)
    os.unlink(STALE_POINTER)
