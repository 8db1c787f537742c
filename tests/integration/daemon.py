"""Running mailtlsd under test: config files, start, log, signals, stop.

Daemon starts `$MAILTLSD -f -c FILE`, collects its stderr (and stdout) line
by line in a reader thread, and lets tests wait for a log line instead of
sleeping.  config_text() renders a [global] section and service sections
from dicts (list values become repeated keys).
"""

import os
import re
import signal
import subprocess
import threading
import time

from expectations import LOG_REASONS, SANITIZER


def config_text(global_opts, services):
    """INI text for {key: value} globals and [(name, {key: value})]."""
    out = ["# written by the mailtlsd integration tests", "[global]"]
    out += _keys(global_opts)
    for name, opts in services:
        out += ["", "[%s]" % name] + _keys(opts)
    return "\n".join(out) + "\n"


def _keys(opts):
    lines = []
    for key, value in opts.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        lines += ["%s = %s" % (key, v) for v in values if v is not None]
    return lines


def check_config(binary, path, timeout=10):
    """Run `mailtlsd -t -c path`; return (rc, stdout, stderr) as text."""
    p = subprocess.run([binary, "-t", "-c", path], capture_output=True,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    out, err = (p.stdout.decode(errors="replace"),
                p.stderr.decode(errors="replace"))
    assert_no_sanitizer_report(out + err)
    return p.returncode, out, err


def assert_no_sanitizer_report(text):
    """Fail on AddressSanitizer / UBSan output (ASan/UBSan builds)."""
    m = re.search(r"^.*(%s).*$" % SANITIZER, text, re.M)
    if m:
        raise AssertionError("sanitizer report: " + m.group(0))


class Daemon:
    """One mailtlsd process in the foreground, its log captured."""

    def __init__(self, binary, workdir, name="mailtlsd", env=None):
        self.binary = binary
        self.workdir = workdir
        self.name = name
        self.env = dict(os.environ, **(env or {}))
        self.proc = None
        self.lines = []
        self.cond = threading.Condition()
        self.reader = None
        self.log_path = os.path.join(workdir, name + ".log")
        self.conf_path = os.path.join(workdir, name + ".conf")
        self.stopped_by_test = False

    def write_config(self, text):
        """(Re)write the configuration file; returns its path."""
        tmp = self.conf_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.conf_path)
        return self.conf_path

    def start(self, ready_timeout=15):
        """Start with the current config file; wait for the "ready" line."""
        self.proc = subprocess.Popen(
            [self.binary, "-f", "-c", self.conf_path],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, env=self.env, cwd=self.workdir)
        self.reader = threading.Thread(target=self._read_log, daemon=True)
        self.reader.start()
        try:
            self.wait_log(LOG_REASONS["ready"], timeout=ready_timeout,
                          what="the daemon to log that it is ready")
        except AssertionError:
            if self.proc.poll() is not None:
                self.wait_exit(5)
                raise AssertionError("daemon exited with %s at start-up:\n%s"
                                     % (self.proc.returncode,
                                        self.tail(20)))
            raise
        return self

    def _read_log(self):
        with open(self.log_path, "w") as logf:
            for raw in self.proc.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                logf.write(line + "\n")
                logf.flush()
                with self.cond:
                    self.lines.append(line)
                    self.cond.notify_all()
        with self.cond:
            self.lines.append(None)     # end of log marker, removed below
            self.cond.notify_all()

    @property
    def pid(self):
        return self.proc.pid

    # -- log --
    def mark(self):
        """A position in the log; pass it as since= to look only after it."""
        with self.cond:
            return len(self._text_lines())

    def _text_lines(self):
        return [l for l in self.lines if l is not None]

    def log(self, since=0):
        with self.cond:
            return self._text_lines()[since:]

    def tail(self, n=30):
        return "\n".join(self.log()[-n:])

    def find_log(self, pattern, since=0):
        rx = re.compile(pattern, re.I)
        for line in self.log(since):
            if rx.search(line):
                return line
        return None

    def wait_log(self, pattern, since=0, timeout=5, what=None):
        """Wait for a log line matching pattern (case-insensitive)."""
        rx = re.compile(pattern, re.I)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self._text_lines()[since:]:
                    if rx.search(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (self.lines and self.lines[-1] is None):
                    break
                self.cond.wait(left)
        raise AssertionError("no log line matching /%s/ within %ss%s; log "
                             "tail:\n%s" % (pattern, timeout,
                                            " (waiting for %s)" % what
                                            if what else "", self.tail(15)))

    def sanitizer_report(self):
        """Sanitizer / UBSan lines found in the output, if any."""
        rx = re.compile(SANITIZER)
        return [l for l in self.log() if rx.search(l)]

    # -- process --
    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def reload(self, text=None):
        """Optionally rewrite the config, then SIGHUP; returns a log mark."""
        if text is not None:
            self.write_config(text)
        m = self.mark()
        self.signal(signal.SIGHUP)
        return m

    def wait_exit(self, timeout):
        """Wait for the process to exit; its status, or None on timeout."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        if self.reader:
            self.reader.join(5)
        return rc

    def stop(self, timeout=10):
        """SIGTERM and wait; returns the exit status (None if it hung)."""
        if self.alive():
            self.signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def kill(self):
        if self.alive():
            self.proc.kill()
        self.wait_exit(5)

    def rss_kib(self):
        """Resident set size from /proc/PID/status, in KiB."""
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS for pid %d" % self.pid)
