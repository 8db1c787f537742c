"""Configuration checking with `mailtlsd -t`: a good-and-bad config table.

Good configs must print "configuration OK" and exit 0; bad ones exit 1 and
report every error as FILE:LINE: message on stderr.  Configs are written
with a marker comment "# <-" on the line the error must point at.
"""

import re
import subprocess

from daemon import assert_no_sanitizer_report, check_config
from harness import case, check

HEAD = """\
[global]
log_level = info
max_sessions = 10
"""

SERVICE = """\
[imap]
listen = 127.0.0.1:10143
remote = mail.test:993
server_name = mail.test
ca_file = {ca}
"""

GOOD = {
    "minimal": HEAD + SERVICE,
    "defaults_from_port": HEAD + "[pop]\nlisten = 127.0.0.1:10110\n"
                          "remote = mail.test:995\nca_file = {ca}\n",
    "explicit_protocol": HEAD + "[x]\nlisten = 127.0.0.1:10025\n"
                         "remote = 127.0.0.1:12345\nprotocol = smtp\n"
                         "server_name = mail.test\n"
                         "tls = implicit\nca_file = {ca}\n",
    "comments_ipv6_repeat": "# comment\n; also a comment\n" + HEAD + SERVICE
                            + "listen = [::1]:10143\n"
                            "pin_sha256 = {pin}\npin_sha256 = {pin2}\n",
    "all_timeouts": HEAD + SERVICE + "connect_timeout = 1\n"
                    "handshake_timeout = 1\nidle_timeout = 1\n"
                    "shutdown_timeout = 1\nverify = no\nmin_tls = 1.2\n",
    "global_ca_default": "[global]\nca_file = {ca}\n"
                         "[imap]\nlisten = 127.0.0.1:10143\n"
                         "remote = mail.test:993\n",
    "remote_clients_allowed": HEAD + SERVICE.replace("127.0.0.1:10143",
                                                     "0.0.0.0:10143")
                              + "allow_remote_clients = yes\n",
}

# Each bad config has one error, on the line marked "# <-" (no marker: the
# line is not pinned down by the contract, any FILE:LINE is accepted).
BAD = {
    "unknown_key": HEAD + SERVICE + "colour = blue  # <-\n",
    "unknown_global_key": "[global]\nfrobnicate = yes  # <-\n" + SERVICE,
    "bad_protocol": HEAD + SERVICE + "protocol = gopher  # <-\n",
    "bad_tls": HEAD + SERVICE + "tls = sometimes  # <-\n",
    "bad_verify": HEAD + SERVICE + "verify = maybe  # <-\n",
    "bad_min_tls": HEAD + SERVICE + "min_tls = 1.1  # <-\n",
    "bad_log_level": "[global]\nlog_level = chatty  # <-\n" + SERVICE,
    "bad_max_sessions": "[global]\nmax_sessions = lots  # <-\n" + SERVICE,
    "bad_timeout": HEAD + SERVICE + "connect_timeout = -3  # <-\n",
    "bad_listen_port": HEAD + SERVICE + "listen = 127.0.0.1:99999  # <-\n",
    "bad_listen_addr": HEAD + SERVICE + "listen = nowhere:143  # <-\n",
    "bad_pin": HEAD + SERVICE + "pin_sha256 = not-base64!  # <-\n",
    "no_equals": HEAD + SERVICE + "this line has no equals sign  # <-\n",
    "non_loopback_listen": HEAD + SERVICE.replace(
        "listen = 127.0.0.1:10143", "listen = 0.0.0.0:10143  # <-"),
    "duplicate_service": HEAD + SERVICE + "\n[imap]  # <-\n"
                         "listen = 127.0.0.1:10144\nremote = mail.test:993\n",
    "missing_remote": HEAD + "[imap]\nlisten = 127.0.0.1:10143\n",
    "missing_listen": HEAD + "[imap]\nremote = mail.test:993\n",
    "port_without_protocol": HEAD + "[x]\nlisten = 127.0.0.1:10143\n"
                             "remote = mail.test:12345\n",
}


def write(t, name, text):
    """Fill in the placeholders, strip "# <-" markers; return (path, line)."""
    text = text.format(ca=t.certs.ca, pin=t.certs.pin_good,
                       pin2=t.certs.pin_other)
    lines = text.splitlines()
    marked = [i + 1 for i, l in enumerate(lines) if "# <-" in l]
    text = "\n".join(l.split("  # <-")[0] for l in lines) + "\n"
    path = "%s/%s.conf" % (t.tmp, name)
    with open(path, "w") as f:
        f.write(text)
    return path, (marked[0] if marked else None)


def error_lines(path, stderr):
    """The line numbers of every FILE:LINE: message on stderr."""
    rx = re.compile(r"^%s:(\d+): \S" % re.escape(path), re.M)
    return [int(n) for n in rx.findall(stderr)]


@case(params={k: {"name": k} for k in GOOD})
def test_good_config(t, name):
    path, _ = write(t, name, GOOD[name])
    rc, out, err = check_config(t.binary, path)
    check(rc == 0, "exit %s for a good config; stderr: %s", rc, err.strip())
    check("configuration OK" in out + err, "no 'configuration OK' in %r",
          out + err)


@case(params={k: {"name": k} for k in BAD})
def test_bad_config(t, name):
    path, line = write(t, name, BAD[name])
    rc, out, err = check_config(t.binary, path)
    check(rc == 1, "exit %s for a bad config (want 1); output: %s", rc,
          (out + err).strip())
    found = error_lines(path, err)
    check(found, "no '%s:LINE: message' on stderr: %r", path, err)
    if line is not None:
        check(line in found, "error reported at line(s) %s, want %d: %r",
              found, line, err)
    check("configuration OK" not in out + err, "bad config called OK")


@case()
def test_bad_config_reports_every_error(t):
    """Several errors in one file: each one is reported with its line."""
    text = (HEAD + SERVICE + "colour = blue  # <-\n" + "verify = maybe\n"
            + "[pop]\nlisten = 127.0.0.1:10110\nremote = mail.test:995\n"
            + "protocol = gopher\n" + "connect_timeout = soon\n")
    path, first = write(t, "several", text)
    want = [first, first + 1, first + 5, first + 6]
    rc, out, err = check_config(t.binary, path)
    check(rc == 1, "exit %s, want 1", rc)
    found = error_lines(path, err)
    missing = [n for n in want if n not in found]
    check(not missing, "errors at lines %s not reported; stderr: %r",
          missing, err)


@case()
def test_start_with_bad_config_fails(t):
    """Starting (not just -t) with a bad config exits non-zero, says why."""
    path, line = write(t, "bad", BAD["unknown_key"])
    p = subprocess.run([t.binary, "-f", "-c", path], capture_output=True,
                       timeout=10, stdin=subprocess.DEVNULL)
    err = p.stderr.decode(errors="replace")
    assert_no_sanitizer_report(err)
    check(p.returncode != 0, "daemon started with a bad config")
    check(line in error_lines(path, err), "no %s:%d: error in %r", path,
          line, err)
