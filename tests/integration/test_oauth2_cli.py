"""mailtlsd -a SECTION USER: authorising an account from a terminal.

The daemon binary runs on a pseudo-terminal (the password is read from
/dev/tty without echo) against the unit tests' fake OAuth2 provider
(tests/unit/fake_provider.py, HTTPS on loopback with a throwaway
certificate): the device flow completes and the tokens are sealed, the
same command with another password leaves them alone, two different
passwords are refused, and without a terminal nothing is asked.
"""

import os
import pty
import select
import subprocess
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
PROVIDER = os.path.join(ROOT, "tests", "unit", "fake_provider.py")


def binary():
    return os.path.abspath(os.environ.get("MAILTLSD") or
                           os.path.join(ROOT, "build", "mailtlsd"))


@pytest.fixture
def provider(tmp_path):
    """The fake provider: (port, its certificate)."""
    certs = tmp_path / "provider"
    certs.mkdir()
    proc = subprocess.Popen(["/usr/bin/python3", PROVIDER, str(certs)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    port = int(proc.stdout.readline())
    yield port, str(certs / "cert.pem")
    proc.stdin.close()
    proc.terminate()
    proc.wait()


@pytest.fixture
def config(tmp_path, provider):
    """A configuration with [oauth2:t] (device flow) and its state_dir."""
    port, ca = provider
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    path = tmp_path / "mailtlsd.conf"
    url = "https://127.0.0.1:%d" % port
    path.write_text(
        "[global]\nstate_dir = %s\nca_file = %s\n\n"
        "[oauth2:t]\nprovider = generic\nclient_id = cid\nflow = device\n"
        "token_url = %s/token\ndevice_url = %s/device\nscope = s1 s2\n\n"
        "[imap]\nlisten = 127.0.0.1:1\nremote = 127.0.0.1:993\n"
        "server_name = mail.test\noauth2 = t\n" % (state, ca, url, url))
    return str(path), state


class Terminal:
    """mailtlsd -a on a pseudo-terminal of its own."""

    def __init__(self, conf, user):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.execv(binary(), [binary(), "-c", conf, "-a", "t", user])
        self.out = ""

    def expect(self, text, seconds=20):
        deadline = time.monotonic() + seconds
        while text not in self.out:
            left = deadline - time.monotonic()
            assert left > 0, "no %r in %r" % (text, self.out)
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    data = os.read(self.fd, 4096)
                except OSError:         # EIO: the child is gone
                    data = b""
                assert data, "ended without %r: %r" % (text, self.out)
                self.out += data.decode("utf-8", "replace")

    def send(self, line):
        os.write(self.fd, line.encode() + b"\n")

    def status(self, seconds=20):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
            try:
                ready, _, _ = select.select([self.fd], [], [], 0.2)
                if ready:
                    self.out += os.read(self.fd, 4096).decode()
            except OSError:
                time.sleep(0.05)
        raise AssertionError("mailtlsd -a did not exit: %r" % self.out)


def token_files(state):
    return [os.path.join(d, f) for d, _, files in os.walk(state / "oauth2")
            for f in files]


@pytest.mark.timeout(90)
def test_device_flow_seals_tokens(config):
    conf, state = config
    term = Terminal(conf, "a@example.com")
    term.expect("Password the mail client will log in with: ")
    term.send("pw-one")
    term.expect("The same password again: ")
    term.send("pw-one")
    term.expect("and enter the code UC-0001")
    assert "https://example.test/device" in term.out
    term.expect("a@example.com is authorised")
    assert term.status() == 0, term.out
    # Never echoed.
    assert "pw-one" not in term.out
    files = token_files(state)
    assert len(files) == 1
    assert os.stat(files[0]).st_mode & 0o777 == 0o600
    before = open(files[0], "rb").read()

    # Another password: the tokens are kept as they are.
    term = Terminal(conf, "a@example.com")
    term.expect("Password the mail client will log in with: ")
    term.send("pw-two")
    term.expect("sealed with another password")
    assert term.status() == 1
    assert open(files[0], "rb").read() == before

    # The same password: authorised again, tokens replaced.
    term = Terminal(conf, "a@example.com")
    term.expect("Password the mail client will log in with: ")
    term.send("pw-one")
    term.expect("authorised already")
    term.expect("and enter the code UC-0002")
    term.expect("a@example.com is authorised")
    assert term.status() == 0, term.out
    assert open(files[0], "rb").read() != before


@pytest.mark.timeout(60)
def test_passwords_differ(config):
    conf, state = config
    term = Terminal(conf, "b@example.com")
    term.expect("Password the mail client will log in with: ")
    term.send("one")
    term.expect("The same password again: ")
    term.send("two")
    term.expect("the two passwords differ")
    assert term.status() == 1
    assert token_files(state) == []


@pytest.mark.timeout(60)
def test_needs_a_terminal(config):
    conf, state = config
    proc = subprocess.run([binary(), "-c", conf, "-a", "t", "c@example.com"],
                          stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, start_new_session=True, timeout=30)
    assert proc.returncode == 1
    assert "asks for the password on a terminal" in proc.stderr
    assert "Password" not in proc.stdout


@pytest.mark.timeout(60)
def test_unknown_section(config):
    conf, _ = config
    proc = subprocess.run([binary(), "-c", conf, "-a", "nope", "c@x"],
                          stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, start_new_session=True, timeout=30)
    assert proc.returncode == 1
    assert "has no [oauth2:nope]" in proc.stderr
