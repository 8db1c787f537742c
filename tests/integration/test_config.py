"""Configuration checking with `mailtlsd -t`: a good-and-bad config table.

Good configs must print "configuration OK" and exit 0; bad ones exit 1 and
report every error as FILE:LINE: message on stderr.  Configs are written
with a marker comment "# <-" on the line the error must point at.  The
[oauth2:NAME] sections have their own table, whose errors must also say
what is wrong (a regex on the message).
"""

import os
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


def write(t, name, text, mode=None):
    """Fill in the placeholders, strip "# <-" markers; return (path, line).
    {secret} is a client secret file (mode 0600)."""
    text = text.format(ca=t.certs.ca, pin=t.certs.pin_good,
                       pin2=t.certs.pin_other, secret=secret_file(t))
    lines = text.splitlines()
    marked = [i + 1 for i, l in enumerate(lines) if "# <-" in l]
    text = "\n".join(l.split("  # <-")[0] for l in lines) + "\n"
    path = "%s/%s.conf" % (t.tmp, name)
    with open(path, "w") as f:
        f.write(text)
    if mode is not None:
        os.chmod(path, mode)
    return path, (marked[0] if marked else None)


def secret_file(t):
    """An app's client secret in a file only its owner reads."""
    path = os.path.join(t.tmp, "app.secret")
    if not os.path.exists(path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("app-secret-value\n")
    return path


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


# ------------------------------------------------------- [oauth2:NAME]

OA_SERVICE = SERVICE + "oauth2 = m365\n"
OA_MICROSOFT = ("[oauth2:m365]\nprovider = microsoft\n"
                "client_id = 00000000-1111-2222-3333-444444444444\n")
OA_GOOGLE = ("[oauth2:m365]\nprovider = google\n"
             "client_id = 1234-abc.apps.googleusercontent.com\n")
OA_GENERIC = ("[oauth2:m365]\nprovider = generic\nclient_id = app\n"
              "flow = device\n"
              "device_url = https://idp.test/device\n"
              "token_url = https://idp.test/token\n"
              "scope = https://idp.test/mail offline_access\n")

OAUTH2_GOOD = {
    "microsoft_device": HEAD + OA_SERVICE + OA_MICROSOFT,
    "microsoft_device_tenant": HEAD + OA_SERVICE + OA_MICROSOFT +
                               "tenant = contoso.onmicrosoft.com\n"
                               "flow = device\n",
    "microsoft_client_credentials": HEAD + OA_SERVICE + OA_MICROSOFT +
                                    "flow = client_credentials\n"
                                    "tenant = contoso.onmicrosoft.com\n"
                                    "client_secret_file = {secret}\n",
    "microsoft_browser": HEAD + OA_SERVICE + OA_MICROSOFT +
                         "flow = browser\n"
                         "redirect_listen = 127.0.0.1:8400\n",
    "google_browser": HEAD + OA_SERVICE + OA_GOOGLE +
                      "client_secret_file = {secret}\n",
    "google_browser_ipv6_redirect": HEAD + OA_SERVICE + OA_GOOGLE +
                                    "client_secret_file = {secret}\n"
                                    "flow = browser\n"
                                    "redirect_listen = [::1]:8400\n",
    "generic_device": HEAD + OA_SERVICE + OA_GENERIC,
    "generic_client_credentials": HEAD + OA_SERVICE +
                                  "[oauth2:m365]\nprovider = generic\n"
                                  "client_id = app\n"
                                  "flow = client_credentials\n"
                                  "token_url = https://idp.test/token\n"
                                  "scope = mail\n"
                                  "client_secret_file = {secret}\n",
    "tuning_bounds": HEAD + OA_SERVICE + OA_MICROSOFT +
                     "http_timeout = 5\nca_file = {ca}\n"
                     "kdf_memory = 8\nkdf_passes = 10\n",
    "kdf_memory_max": HEAD + OA_SERVICE + OA_MICROSOFT +
                      "kdf_memory = 1024\nkdf_passes = 1\n",
    "two_services_one_section": HEAD + OA_SERVICE +
                                "[smtp]\nlisten = 127.0.0.1:10587\n"
                                "remote = mail.test:587\n"
                                "ca_file = {ca}\noauth2 = m365\n" +
                                OA_MICROSOFT,
}

# name: (config, regex the error message must match); "# <-" marks the
# line the error must point at.
OAUTH2_BAD = {
    "google_device": (HEAD + OA_SERVICE + OA_GOOGLE +
                      "client_secret_file = {secret}\n"
                      "flow = device  # <-\n",
                      r"device.*(mail\.google\.com|Google)"),
    "missing_client_id": (HEAD + OA_SERVICE +
                          "[oauth2:m365]  # <-\nprovider = microsoft\n",
                          r"client_id"),
    "missing_provider": (HEAD + OA_SERVICE +
                         "[oauth2:m365]  # <-\nclient_id = x\n",
                         r"provider"),
    "client_credentials_without_secret": (
        HEAD + OA_SERVICE + OA_MICROSOFT.replace(
            "[oauth2:m365]", "[oauth2:m365]  # <-") +
        "flow = client_credentials\ntenant = contoso.onmicrosoft.com\n",
        r"secret"),
    "google_without_secret": (HEAD + OA_SERVICE + OA_GOOGLE.replace(
        "[oauth2:m365]", "[oauth2:m365]  # <-"), r"secret"),
    "client_credentials_common_tenant": (
        HEAD + OA_SERVICE + OA_MICROSOFT + "client_secret_file = {secret}\n"
        "flow = client_credentials  # <-\n", r"tenant"),
    "unknown_provider": (HEAD + OA_SERVICE + "[oauth2:m365]\n"
                         "provider = yahoo  # <-\nclient_id = x\n",
                         r"provider|yahoo"),
    "unknown_flow": (HEAD + OA_SERVICE + OA_MICROSOFT +
                     "flow = telepathy  # <-\n", r"flow|telepathy"),
    "missing_section": (HEAD + SERVICE + "oauth2 = nosuch  # <-\n",
                        r"nosuch"),
    "http_token_url": (HEAD + OA_SERVICE + OA_MICROSOFT +
                       "token_url = http://idp.test/token  # <-\n",
                       r"https"),
    "http_device_url": (HEAD + OA_SERVICE + OA_MICROSOFT +
                        "device_url = http://idp.test/device  # <-\n",
                        r"https"),
    "http_authorize_url": (HEAD + OA_SERVICE + OA_GOOGLE +
                           "client_secret_file = {secret}\n"
                           "authorize_url = http://idp.test/auth  # <-\n",
                           r"https"),
    "redirect_not_loopback": (HEAD + OA_SERVICE + OA_GOOGLE +
                              "client_secret_file = {secret}\n"
                              "redirect_listen = 0.0.0.0:8400  # <-\n",
                              r"loopback"),
    "kdf_memory_too_small": (HEAD + OA_SERVICE + OA_MICROSOFT +
                             "kdf_memory = 4  # <-\n", r"kdf_memory"),
    "kdf_memory_too_large": (HEAD + OA_SERVICE + OA_MICROSOFT +
                             "kdf_memory = 2048  # <-\n", r"kdf_memory"),
    "kdf_passes_zero": (HEAD + OA_SERVICE + OA_MICROSOFT +
                        "kdf_passes = 0  # <-\n", r"kdf_passes"),
    "kdf_passes_too_many": (HEAD + OA_SERVICE + OA_MICROSOFT +
                            "kdf_passes = 11  # <-\n", r"kdf_passes"),
    "generic_without_scope": (HEAD + OA_SERVICE +
                              "[oauth2:m365]  # <-\nprovider = generic\n"
                              "client_id = app\nflow = device\n"
                              "device_url = https://idp.test/device\n"
                              "token_url = https://idp.test/token\n",
                              r"scope"),
    "generic_without_flow": (HEAD + OA_SERVICE + OA_GENERIC.replace(
        "[oauth2:m365]", "[oauth2:m365]  # <-").replace(
        "flow = device\n", ""), r"flow"),
    "generic_device_without_device_url": (
        HEAD + OA_SERVICE + OA_GENERIC.replace(
            "[oauth2:m365]", "[oauth2:m365]  # <-").replace(
            "device_url = https://idp.test/device\n", ""), r"device_url"),
    "bad_section_name": (HEAD + SERVICE + "[oauth2:bad name!]  # <-\n"
                         "provider = microsoft\nclient_id = x\n",
                         r"oauth2 section name"),
    "secret_inline_and_file": (HEAD + OA_SERVICE + OA_MICROSOFT +
                               "client_secret_file = {secret}\n"
                               "client_secret = abc  # <-\n",
                               r"client_secret"),
}


@case(params={k: {"name": k} for k in OAUTH2_GOOD})
def test_oauth2_good_config(t, name):
    path, _ = write(t, name, OAUTH2_GOOD[name], mode=0o600)
    rc, out, err = check_config(t.binary, path)
    check(rc == 0, "exit %s for a good config; stderr: %s", rc, err.strip())
    check("configuration OK" in out + err, "no 'configuration OK' in %r",
          out + err)


@case(params={k: {"name": k} for k in OAUTH2_BAD})
def test_oauth2_bad_config(t, name):
    text, words = OAUTH2_BAD[name]
    path, line = write(t, name, text, mode=0o600)
    rc, out, err = check_config(t.binary, path)
    check(rc == 1, "exit %s for a bad config (want 1); output: %s", rc,
          (out + err).strip())
    found = error_lines(path, err)
    check(line in found, "error reported at line(s) %s, want %d: %r",
          found, line, err)
    msg = re.search(r"^%s:%d: (.*)$" % (re.escape(path), line), err, re.M)
    check(re.search(words, msg.group(1), re.I) and
          "unknown key" not in msg.group(1), "the error %r does not say "
          "/%s/", msg.group(1), words)
    check("configuration OK" not in out + err, "bad config called OK")


@case(params={"0644": {"mode": 0o644}, "0640": {"mode": 0o640},
              "0600": {"mode": 0o600}})
def test_oauth2_inline_secret_file_mode(t, mode):
    """An inline client_secret only in a file no other user can read."""
    text = HEAD + OA_SERVICE + OA_MICROSOFT + \
        "flow = client_credentials\ntenant = contoso.onmicrosoft.com\n" \
        "client_secret = inline-app-secret  # <-\n"
    path, line = write(t, "inline", text, mode=mode)
    rc, out, err = check_config(t.binary, path)
    if mode & 0o077 == 0:
        check(rc == 0 and "configuration OK" in out + err,
              "mode %04o refused: %s", mode, err.strip())
        return
    check(rc == 1, "inline secret in a mode %04o file accepted", mode)
    msg = re.search(r"^%s:%d: (.*)$" % (re.escape(path), line), err, re.M)
    check(msg and re.search(r"other users|mode|chmod|readable",
                            msg.group(1), re.I),
          "no error at line %d saying who can read it: %r", line, err)
    check("inline-app-secret" not in out + err, "the secret was printed")


@case(params={"missing": {"mode": None}, "0644": {"mode": 0o644},
              "0640": {"mode": 0o640}, "0600": {"mode": 0o600}})
def test_oauth2_secret_file(t, mode):
    """-t reads client_secret_file as the daemon will: a file that is
    missing or that every user can read is an error, naming the file."""
    secret = os.path.join(t.tmp, "checked.secret")
    if mode is not None:
        with open(secret, "w") as f:
            f.write("file-app-secret\n")
        os.chmod(secret, mode)
    text = HEAD + OA_SERVICE + OA_MICROSOFT + \
        "flow = client_credentials\ntenant = contoso.onmicrosoft.com\n" \
        "client_secret_file = %s\n" % secret
    path, _ = write(t, "secretfile", text, mode=0o600)
    rc, out, err = check_config(t.binary, path)
    if mode is not None and mode & 0o007 == 0:
        check(rc == 0 and "configuration OK" in out + err,
              "mode %04o refused: %s", mode, err.strip())
        return
    check(rc == 1, "a %s secret file accepted: %r",
          "missing" if mode is None else "mode %04o" % mode, out + err)
    check(secret in err and re.search(
        r"No such file|every user", err), "the error does not say what is "
        "wrong with %s: %r", secret, err)
    check("file-app-secret" not in out + err, "the secret was printed")


@case()
def test_oauth2_unused_section_warns(t):
    """A section no service names is a warning, not an error."""
    path, _ = write(t, "unused", HEAD + SERVICE + OA_MICROSOFT, mode=0o600)
    rc, out, err = check_config(t.binary, path)
    check(rc == 0, "exit %s; stderr: %s", rc, err.strip())
    check(re.search(r"m365.*(no effect|not used|unused|no service)",
                    out + err, re.I), "no warning about [oauth2:m365]: %r",
          out + err)
