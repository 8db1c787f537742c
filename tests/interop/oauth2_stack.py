"""The servers of the interop suite's OAuth2 part: an OAuth2 authorisation
server (oauth2-mock-server from npm, wrapped by oauth2-idp.js), a Dovecot
that takes only OAuth2 bearer tokens (XOAUTH2, OAUTHBEARER; passdb oauth2
with local validation of the RS256 JWTs), a Postfix whose SMTP AUTH goes to
that Dovecot, and mailtlsd with [oauth2:NAME] sections in front of them.

Everything lives in a fresh run directory, as in stack.py: two throwaway
CAs (one for the mail servers, one for the authorisation server, so that
mailtlsd must use the section's ca_file), the configurations rendered from
conf/*.in, the mailboxes, every log and socket. Ports (BASE is
INTEROP_PORT_BASE, 19100 by default):

    BASE+30..35  Dovecot IMAP, IMAPS, POP3, POP3S; Postfix submission,
                 submissions (on 127.0.0.2)
    BASE+36      the authorisation server, HTTPS (127.0.0.1)
    BASE+37      its control API, plain HTTP (127.0.0.1), for the test only
    BASE+38      mailtlsd's redirect_listen for the browser flow
    BASE+40..57  mailtlsd: FLOW-PROTO-MODE services (127.0.0.1)
"""

import hashlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import stack as S

FLOWS = ("device", "browser", "app")       # app: client_credentials
PROTOS = ("imap", "pop3", "smtp")
MODES = ("implicit", "starttls")
IDP_ADDR = "127.0.0.1"
KID = "interop-rs256"
USER_SCOPE = "interop.mail offline_access"
APP_SCOPE = "interop.mail/.default"
CLIENT_IDS = {"device": "mailtlsd-device", "browser": "mailtlsd-browser",
              "app": "mailtlsd-app"}
SECTIONS = {"device": "idp-device", "browser": "idp-browser",
            "app": "idp-app"}
FLOW_KEY = {"device": "device", "browser": "browser",
            "app": "client_credentials"}
SERVER_PORT = {("imap", "implicit"): "IMAPS_PORT",
               ("imap", "starttls"): "IMAP_PORT",
               ("pop3", "implicit"): "POP3S_PORT",
               ("pop3", "starttls"): "POP3_PORT",
               ("smtp", "implicit"): "SUBMISSIONS_PORT",
               ("smtp", "starttls"): "SUBMISSION_PORT"}


class OAuth2Stack(S.Stack):
    def __init__(self, mailtlsd, port_base, mail_user, node_dir,
                 keep=False, extra_global=()):
        super().__init__(mailtlsd, port_base, mail_user, log_level="debug",
                         keep=keep, extra_global=extra_global)
        b = port_base + 30
        self.node_dir = node_dir
        self.ports = {
            "IMAP_PORT": b, "IMAPS_PORT": b + 1,
            "POP3_PORT": b + 2, "POP3S_PORT": b + 3,
            "SUBMISSION_PORT": b + 4, "SUBMISSIONS_PORT": b + 5,
            "IDP_PORT": b + 6, "IDP_CONTROL_PORT": b + 7,
            "REDIRECT_PORT": b + 8,
        }
        n = b + 10
        for flow in FLOWS:
            for proto in PROTOS:
                for mode in MODES:
                    self.ports[self._svc_key(flow, proto, mode)] = n
                    n += 1
        self.idp_proc = None
        self.mailtlsd_runs = 0
        self.app_secret = None

    @staticmethod
    def _svc_key(flow, proto, mode):
        return "L_%s_%s_%s" % (flow.upper(), proto.upper(), mode.upper())

    @staticmethod
    def service_name(flow, proto, mode):
        return "%s-%s-%s" % (flow, proto, mode)

    def port(self, flow, proto, mode):
        return self.ports[self._svc_key(flow, proto, mode)]

    # -- where things are ----------------------------------------------------
    @property
    def idp_url(self):
        return "https://%s:%d" % (IDP_ADDR, self.ports["IDP_PORT"])

    @property
    def control_url(self):
        return "http://%s:%d" % (IDP_ADDR, self.ports["IDP_CONTROL_PORT"])

    @property
    def idp_ca(self):
        return self.path("pki", "idp-ca.crt")

    @property
    def idp_log(self):
        return self.path("idp", "idp.log")

    @property
    def token_dir(self):
        return self.path("state", "oauth2")

    def mailtlsd_logs(self):
        return [self.path("mailtlsd-%d.log" % i)
                for i in range(1, self.mailtlsd_runs + 1)]

    # -- setup ---------------------------------------------------------------
    def start(self, with_mailtlsd=True):
        """The CAs, the authorisation server, Dovecot and Postfix; then
        mailtlsd unless with_mailtlsd is false (StackError from it is
        raised after the servers are up, so the caller can still use
        them)."""
        if os.geteuid() != 0:
            raise S.StackError("the interop suite runs Postfix and Dovecot "
                               "and must run as root (CI does)")
        for tool in ("dovecot", "doveadm", "postfix", "openssl", "node"):
            if not shutil.which(tool):
                raise S.StackError("%s is not installed: run "
                                   "tests/interop/setup.sh first" % tool)
        if not os.path.isdir(os.path.join(self.node_dir, "node_modules",
                                          "oauth2-mock-server")):
            raise S.StackError("oauth2-mock-server is not installed in %s: "
                               "run tests/interop/setup.sh first"
                               % self.node_dir)
        try:
            pw = pwd.getpwnam(self.mail_user)
        except KeyError:
            raise S.StackError("the mail user %r does not exist: run "
                               "tests/interop/setup.sh first"
                               % self.mail_user)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid

        S.cleanup_stale()
        busy = []
        for name, p in sorted(self.ports.items()):
            addr = S.SERVER_ADDR if name in SERVER_PORT.values() \
                else S.CLIENT_ADDR
            if not S.port_is_free(addr, p):
                busy.append("%s:%d" % (addr, p))
        if busy:
            raise S.StackError("ports in use: %s (set INTEROP_PORT_BASE to "
                               "move the suite)" % ", ".join(busy))
        self.rundir = tempfile.mkdtemp(prefix="mailtlsd-interop.oauth2-",
                                       dir=tempfile.gettempdir())
        os.chmod(self.rundir, 0o755)
        with open(S.STALE_POINTER, "w") as f:
            f.write("%s %d\n" % (self.rundir, os.getpid()))
        for d in ("pki", "dovecot", "dovecot/keys", "sockets", "postfix/etc",
                  "clients", "idp", "home"):
            os.makedirs(self.path(d), mode=0o755, exist_ok=True)
        os.makedirs(self.path("mail"), mode=0o700)
        os.chown(self.path("mail"), self.uid, self.gid)
        self.vars = dict(self.ports, RUNDIR=self.rundir,
                         SERVER_ADDR=S.SERVER_ADDR,
                         SERVER_NAME=S.SERVER_NAME,
                         MAIL_DOMAIN=S.MAIL_DOMAIN, MAIL_UID=str(self.uid),
                         MAIL_GID=str(self.gid), LOG_LEVEL=self.log_level,
                         IDP_ISSUER=self.idp_url, AUTH_DEBUG="yes",
                         EXTRA_GLOBAL="")
        self.make_pki()
        self.make_idp_pki()
        self.start_idp()
        self.start_dovecot()
        self.start_postfix()
        if with_mailtlsd:
            self.start_mailtlsd()

    def make_idp_pki(self):
        """A second throwaway CA and the authorisation server's
        certificate, for 127.0.0.1 (the URLs mailtlsd is given) and
        localhost."""
        d = self.path("pki")
        ext = os.path.join(d, "idp.ext")
        with open(ext, "w") as f:
            f.write("basicConstraints = critical, CA:FALSE\n"
                    "keyUsage = critical, digitalSignature\n"
                    "extendedKeyUsage = serverAuth\n"
                    "subjectAltName = IP:%s, DNS:localhost\n"
                    "authorityKeyIdentifier = keyid\n" % IDP_ADDR)
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
              "-nodes"]
        S._run(["openssl", "req", "-x509", "-new"] + ec +
               ["-keyout", os.path.join(d, "idp-ca.key"),
                "-out", self.idp_ca, "-days", "2", "-sha256",
                "-subj", "/CN=mailtlsd interop OAuth2 throwaway CA",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        S._run(["openssl", "req", "-new"] + ec +
               ["-keyout", os.path.join(d, "idp.key"),
                "-out", os.path.join(d, "idp.csr"),
                "-subj", "/CN=idp.interop.test"])
        S._run(["openssl", "x509", "-req",
                "-in", os.path.join(d, "idp.csr"), "-CA", self.idp_ca,
                "-CAkey", os.path.join(d, "idp-ca.key"), "-set_serial", "3",
                "-days", "2", "-sha256", "-extfile", ext,
                "-out", os.path.join(d, "idp.crt")])
        for k in ("idp-ca.key", "idp.key"):
            os.chmod(os.path.join(d, k), 0o600)

    # -- the authorisation server --------------------------------------------
    def start_idp(self):
        self.app_secret = "app-secret-" + os.urandom(12).hex()
        secret_file = self.path("idp", "app.secret")
        with open(secret_file, "w") as f:
            f.write(self.app_secret + "\n")
        os.chmod(secret_file, 0o600)
        conf = {
            "host": IDP_ADDR, "port": self.ports["IDP_PORT"],
            "control_port": self.ports["IDP_CONTROL_PORT"],
            "tls_key": self.path("pki", "idp.key"),
            "tls_cert": self.path("pki", "idp.crt"),
            "key_dict_dir": self.path("dovecot", "keys"),
            "kid": KID, "mail_domain": S.MAIL_DOMAIN,
            "audience": "https://" + S.SERVER_NAME,
            "pidfile": self.path("idp", "idp.pid"),
            "clients": {
                CLIENT_IDS["device"]: {"flows": ["device"]},
                CLIENT_IDS["browser"]: {"flows": ["browser"]},
                CLIENT_IDS["app"]: {"flows": ["client_credentials"],
                                    "secret": self.app_secret},
            },
        }
        conf_path = self.path("idp", "config.json")
        with open(conf_path, "w") as f:
            json.dump(conf, f, indent=1)
        env = dict(os.environ,
                   NODE_PATH=os.path.join(self.node_dir, "node_modules"))
        logf = open(self.idp_log, "wb")
        self.started.append("idp")
        self.idp_proc = subprocess.Popen(
            ["node", os.path.join(S.HERE, "oauth2-idp.js"), conf_path],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
            env=env)
        logf.close()
        deadline = time.monotonic() + 30
        while "oauth2-idp: ready" not in S.tail(self.idp_log, 5):
            if self.idp_proc.poll() is not None:
                raise S.StackError("oauth2-idp.js exited %d:\n%s" % (
                    self.idp_proc.returncode, S.tail(self.idp_log)))
            if time.monotonic() > deadline:
                raise S.StackError("oauth2-idp.js not ready within 30 s:\n"
                                   + S.tail(self.idp_log))
            time.sleep(0.05)

    def stop_idp(self):
        p = self.idp_proc
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            self.teardown_problems.append("oauth2-idp.js did not exit on "
                                          "SIGTERM; killed")

    # -- the control API ----------------------------------------------------
    def control(self, path, body=None, timeout=70):
        """GET (body None) or POST a JSON body to the control API."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.control_url + path, data=data,
            headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.loads(r.read().decode())
        except urllib.error.HTTPError as e:
            raise S.StackError("control %s: HTTP %d %s" % (
                path, e.code, e.read().decode("utf-8", "replace")))

    def events(self, since=0, timeout=0, **match):
        q = dict(match, since=since, timeout=timeout)
        qs = "&".join("%s=%s" % (k, urllib.request.quote(str(v)))
                      for k, v in q.items())
        return self.control("/events?" + qs, timeout=timeout + 10)

    def last_event(self):
        return self.events()["last"]

    # -- Dovecot and Postfix --------------------------------------------------
    def start_dovecot(self):
        self.render("dovecot-oauth2-user.conf.ext.in",
                    self.path("dovecot", "oauth2-user.conf.ext"))
        self.render("dovecot-oauth2-app.conf.ext.in",
                    self.path("dovecot", "oauth2-app.conf.ext"))
        self.render("dovecot-oauth2.conf.in", self.dovecot_conf)
        S._run(["doveconf", "-c", self.dovecot_conf, "-n"])
        self.started.append("dovecot")
        S._run(["dovecot", "-c", self.dovecot_conf])
        for name in ("IMAP_PORT", "IMAPS_PORT", "POP3_PORT", "POP3S_PORT"):
            S.wait_port(S.SERVER_ADDR, self.ports[name], what="Dovecot")

    def start_postfix(self):
        self.render("main.cf.in", os.path.join(self.postfix_dir, "main.cf"))
        self.render("master-oauth2.cf.in",
                    os.path.join(self.postfix_dir, "master.cf"))
        for d in ("queue", "data"):
            os.makedirs(self.path("postfix", d), mode=0o755)
        os.chown(self.path("postfix", "data"),
                 pwd.getpwnam("postfix").pw_uid, -1)
        self.started.append("postfix")
        S._run_tty(["postfix", "-c", self.postfix_dir, "start"])
        for name in ("SUBMISSION_PORT", "SUBMISSIONS_PORT"):
            S.wait_port(S.SERVER_ADDR, self.ports[name], what="Postfix")

    # -- mailtlsd -------------------------------------------------------------
    def mailtlsd_conf_text(self):
        idp, ca = self.idp_url, self.idp_ca
        out = ["# mailtlsd for the OAuth2 part of the interop suite "
               "(written by oauth2_stack.py)",
               "[global]",
               "ca_file   = %s" % self.path("pki", "ca.crt"),
               "state_dir = %s" % self.path("state"),
               "log_level = %s" % self.log_level,
               "shutdown_timeout = 10"] + self.extra_global + [""]
        common = ["provider  = generic", "ca_file   = %s" % ca,
                  "token_url = %s/token" % idp, "kdf_memory = 8",
                  "kdf_passes = 1", "http_timeout = 10"]
        out += ["[oauth2:%s]" % SECTIONS["device"], "flow      = device",
                "client_id = %s" % CLIENT_IDS["device"],
                "device_url = %s/device" % idp,
                "scope     = %s" % USER_SCOPE] + common + [""]
        out += ["[oauth2:%s]" % SECTIONS["browser"], "flow      = browser",
                "client_id = %s" % CLIENT_IDS["browser"],
                "authorize_url = %s/authorize" % idp,
                "redirect_listen = 127.0.0.1:%d" % self.ports["REDIRECT_PORT"],
                "scope     = %s" % USER_SCOPE] + common + [""]
        out += ["[oauth2:%s]" % SECTIONS["app"],
                "flow      = client_credentials",
                "client_id = %s" % CLIENT_IDS["app"],
                "client_secret_file = %s" % self.path("idp", "app.secret"),
                "scope     = %s" % APP_SCOPE] + common + [""]
        for flow in FLOWS:
            for proto in PROTOS:
                for mode in MODES:
                    out += [
                        "[%s]" % self.service_name(flow, proto, mode),
                        "listen      = 127.0.0.1:%d"
                        % self.port(flow, proto, mode),
                        "remote      = %s:%d" % (
                            S.SERVER_ADDR,
                            self.ports[SERVER_PORT[(proto, mode)]]),
                        "protocol    = %s" % proto,
                        "tls         = %s" % mode,
                        "server_name = %s" % S.SERVER_NAME,
                        "oauth2      = %s" % SECTIONS[flow]]
                    if proto == "smtp":
                        out.append("ehlo_name   = mailtlsd.%s"
                                   % S.MAIL_DOMAIN)
                    out.append("")
        return "\n".join(out)

    def start_mailtlsd(self):
        """Starts (or, after stop_mailtlsd, starts again) mailtlsd; each
        run logs to its own mailtlsd-N.log."""
        conf = self.path("mailtlsd.conf")
        if not os.path.exists(conf):
            with open(conf, "w") as f:
                f.write(self.mailtlsd_conf_text())
            os.chmod(conf, 0o600)
        out = S._run([self.mailtlsd, "-t", "-c", conf])
        if "configuration OK" not in out:
            raise S.StackError("mailtlsd -t: " + out)
        self.mailtlsd_runs += 1
        self.mailtlsd_log = self.path("mailtlsd-%d.log" % self.mailtlsd_runs)
        logf = open(self.mailtlsd_log, "wb")
        if "mailtlsd" not in self.started:
            self.started.append("mailtlsd")
        self.mailtlsd_proc = subprocess.Popen(
            [self.mailtlsd, "-f", "-c", conf], stdin=subprocess.DEVNULL,
            stdout=logf, stderr=subprocess.STDOUT)
        logf.close()
        with open(self.path("mailtlsd.pid"), "w") as f:
            f.write("%d\n" % self.mailtlsd_proc.pid)
        deadline = time.monotonic() + 20
        while "ready:" not in S.tail(self.mailtlsd_log, 5):
            if self.mailtlsd_proc.poll() is not None:
                raise S.StackError("mailtlsd exited %d:\n%s" % (
                    self.mailtlsd_proc.returncode, S.tail(self.mailtlsd_log)))
            if time.monotonic() > deadline:
                raise S.StackError("mailtlsd not ready within 20 s:\n"
                                   + S.tail(self.mailtlsd_log))
            time.sleep(0.05)

    def restart_mailtlsd(self):
        problems = len(self.teardown_problems)
        self.stop_mailtlsd()
        if len(self.teardown_problems) > problems:
            raise S.StackError("; ".join(self.teardown_problems[problems:]))
        self.mailtlsd_proc = None
        self.start_mailtlsd()

    # -- teardown -------------------------------------------------------------
    def stop(self):
        steps = {"mailtlsd": self.stop_mailtlsd, "postfix": self.stop_postfix,
                 "dovecot": self.stop_dovecot, "idp": self.stop_idp}
        for name in reversed(self.started):
            try:
                steps[name]()
            except Exception as e:
                self.teardown_problems.append("stopping %s: %s" % (name, e))
        self.started = []

    # -- evidence -------------------------------------------------------------
    def token_files(self):
        """{SECTION/USER: sha256 of the bytes} of every token file under
        state_dir/oauth2 (mailtlsd's temporary files, ".tmp.*", left
        out)."""
        out = {}
        for d, _dirs, names in os.walk(self.token_dir):
            for n in names:
                if n.startswith(".tmp."):
                    continue
                p = os.path.join(d, n)
                try:
                    with open(p, "rb") as f:
                        out[os.path.relpath(p, self.token_dir)] = \
                            hashlib.sha256(f.read()).hexdigest()
                except OSError:
                    pass
        return out

    def mailbox_count(self, user, mailbox="INBOX", query=("ALL",)):
        out = self.doveadm("search", "-u", user, "mailbox", mailbox, *query)
        return len([ln for ln in out.splitlines() if ln.strip()])
