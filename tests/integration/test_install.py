"""make install / make uninstall into a temporary DESTDIR, and the units.

Each test runs `make install` from the source tree with the daemon under
test as the installed binary (BUILD is the directory of $MAILTLSD, never
rebuilt here), then checks the installed tree: files, modes, the paths
substituted into the unit, the configuration that a second install must
keep, and what uninstall leaves.  The unit checks run `systemd-analyze`
offline on an installed tree when it is available.
"""

import os
import re
import shutil
import stat
import subprocess

from harness import Skip, case, check

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MAX_EXPOSURE = 2.0              # systemd-analyze security, the bar


def make(t, *targets, **variables):
    """Run make in the source tree; returns its output (text)."""
    build = os.path.relpath(os.path.dirname(t.binary), ROOT)
    if build.startswith(".."):
        raise Skip("$MAILTLSD is outside the source tree")
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    argv = ["make", "--no-print-directory", "-C", ROOT,
            "-o", os.path.join(build, "mailtlsd"), "BUILD=" + build]
    argv += ["%s=%s" % kv for kv in sorted(variables.items())]
    p = subprocess.run(argv + list(targets), capture_output=True, env=env,
                       stdin=subprocess.DEVNULL, timeout=60)
    out = (p.stdout + p.stderr).decode(errors="replace")
    check(p.returncode == 0, "make %s failed:\n%s", " ".join(targets),
          out[-1500:])
    return out


def tree(root):
    """{relative path: mode} of every file under root."""
    found = {}
    for d, _, files in os.walk(root):
        for name in files:
            path = os.path.join(d, name)
            found[os.path.relpath(path, root)] = \
                stat.S_IMODE(os.lstat(path).st_mode)
    return found


def read(path):
    with open(path) as f:
        return f.read()


def expected_files(prefix="usr/local", sysconf="etc", unitdir=None):
    unitdir = unitdir or prefix + "/lib/systemd/system"
    return {
        prefix + "/sbin/mailtlsd": 0o755,
        prefix + "/share/man/man8/mailtlsd.8": 0o644,
        prefix + "/share/man/man5/mailtlsd.conf.5": 0o644,
        sysconf + "/mailtlsd/mailtlsd.conf": 0o644,
        unitdir + "/mailtlsd.service": 0o644,
        unitdir + "/mailtlsd.socket": 0o644,
    }


@case()
def test_install_tree(t):
    """The default layout, with the installed paths in the unit."""
    dest = os.path.join(t.tmp, "dest")
    make(t, "install", DESTDIR=dest)
    got = tree(dest)
    want = expected_files()
    check(got == want, "installed tree differs:\n got  %r\n want %r",
          sorted(got.items()), sorted(want.items()))
    for src, inst in (("conf/mailtlsd.conf", "etc/mailtlsd/mailtlsd.conf"),
                      ("systemd/mailtlsd.socket",
                       "usr/local/lib/systemd/system/mailtlsd.socket"),
                      ("man/mailtlsd.8", "usr/local/share/man/man8/"
                       "mailtlsd.8")):
        check(read(os.path.join(ROOT, src)) == read(os.path.join(dest, inst)),
              "%s is not a copy of %s", inst, src)
    unit = read(os.path.join(dest, "usr/local/lib/systemd/system/"
                                   "mailtlsd.service"))
    check(not re.search(r"@[A-Z_]+@", unit), "a placeholder is left in "
          "the unit: %r", re.findall(r"^.*@[A-Z_]+@.*$", unit, re.M))
    check("\nExecStart=/usr/local/sbin/mailtlsd -f -c "
          "/etc/mailtlsd/mailtlsd.conf\n" in unit, "ExecStart: %r",
          re.findall(r"^Exec.*$", unit, re.M))
    p = subprocess.run([os.path.join(dest, "usr/local/sbin/mailtlsd"), "-V"],
                       capture_output=True, timeout=10)
    check(p.returncode == 0 and p.stdout.startswith(b"mailtlsd "),
          "installed binary -V: %s %r", p.returncode, p.stdout)


@case()
def test_install_keeps_config(t):
    """A second install keeps a modified config; uninstall leaves it."""
    dest = os.path.join(t.tmp, "dest")
    conf = os.path.join(dest, "etc/mailtlsd/mailtlsd.conf")
    make(t, "install", DESTDIR=dest, PREFIX="/usr")
    with open(conf, "a") as f:
        f.write("# changed by the administrator\n")
    mine = read(conf)
    os.chmod(conf, 0o640)
    out = make(t, "install", DESTDIR=dest, PREFIX="/usr")
    check("keeping the existing" in out, "install did not say it kept the "
          "config:\n%s", out[-800:])
    check(read(conf) == mine, "a second install overwrote the config")
    check(stat.S_IMODE(os.stat(conf).st_mode) == 0o640,
          "a second install changed the config's mode")
    make(t, "uninstall", DESTDIR=dest, PREFIX="/usr")
    check(tree(dest) == {"etc/mailtlsd/mailtlsd.conf": 0o640},
          "uninstall left or removed the wrong files: %r", tree(dest))
    check(read(conf) == mine, "uninstall changed the config")


@case()
def test_install_custom_dirs(t):
    """PREFIX, SYSCONFDIR and UNITDIR are honoured, in the unit too."""
    dest = os.path.join(t.tmp, "dest")
    make(t, "install", DESTDIR=dest, PREFIX="/opt/mt",
         SYSCONFDIR="/opt/mt/etc", UNITDIR="/opt/units")
    got = tree(dest)
    want = expected_files("opt/mt", "opt/mt/etc", "opt/units")
    check(got == want, "installed tree differs:\n got  %r\n want %r",
          sorted(got), sorted(want))
    unit = read(os.path.join(dest, "opt/units/mailtlsd.service"))
    check("ExecStart=/opt/mt/sbin/mailtlsd -f -c "
          "/opt/mt/etc/mailtlsd/mailtlsd.conf\n" in unit and
          "ExecReload=/opt/mt/sbin/mailtlsd -t -c "
          "/opt/mt/etc/mailtlsd/mailtlsd.conf\n" in unit,
          "paths in the unit: %r", re.findall(r"^Exec.*$", unit, re.M))


@case()
def test_installed_config_checks(t):
    """The installed sample configuration passes `mailtlsd -t` as is."""
    if not os.path.exists("/etc/ssl/certs/ca-certificates.crt"):
        raise Skip("no /etc/ssl/certs/ca-certificates.crt (ca-certificates)")
    dest = os.path.join(t.tmp, "dest")
    make(t, "install", DESTDIR=dest, PREFIX="/usr")
    p = subprocess.run([os.path.join(dest, "usr/sbin/mailtlsd"), "-t", "-c",
                        os.path.join(dest, "etc/mailtlsd/mailtlsd.conf")],
                       capture_output=True, timeout=20)
    check(p.returncode == 0 and p.stdout == b"configuration OK\n",
          "mailtlsd -t: %s %r %r", p.returncode, p.stdout, p.stderr[-500:])


@case()
def test_socket_unit_matches_sample_config(t):
    """mailtlsd.socket listens on exactly the sample config's addresses."""
    unit = read(os.path.join(ROOT, "systemd/mailtlsd.socket"))
    conf = read(os.path.join(ROOT, "conf/mailtlsd.conf"))
    streams = re.findall(r"^ListenStream=(\S+)\s*$", unit, re.M)
    listens = re.findall(r"^listen\s*=\s*(\S+)", conf, re.M)
    check(streams and sorted(streams) == sorted(listens),
          "mailtlsd.socket %r, conf/mailtlsd.conf %r", sorted(streams),
          sorted(listens))


def installed_units(t):
    """Install under an absolute PREFIX so that the unit's paths exist."""
    if shutil.which("systemd-analyze") is None:
        raise Skip("systemd-analyze not installed (package systemd)")
    root = os.path.join(t.tmp, "root")
    make(t, "install", PREFIX=root + "/usr", SYSCONFDIR=root + "/etc")
    return root, os.path.join(root, "usr/lib/systemd/system")


@case()
def test_units_verify(t):
    """`systemd-analyze verify` finds nothing to say about either unit."""
    root, units = installed_units(t)
    env = dict(os.environ, MANPATH=os.path.join(root, "usr/share/man") + ":")
    p = subprocess.run(["systemd-analyze", "verify",
                        os.path.join(units, "mailtlsd.service"),
                        os.path.join(units, "mailtlsd.socket")],
                       capture_output=True, env=env, timeout=60)
    out = (p.stdout + p.stderr).decode(errors="replace")
    check(p.returncode == 0 and not out.strip(), "verify: %s\n%s",
          p.returncode, out)


@case()
def test_units_security_exposure(t):
    """`systemd-analyze security` rates the service 2.0 or lower."""
    _, units = installed_units(t)
    p = subprocess.run(["systemd-analyze", "security", "--offline=true",
                        "--no-pager",
                        os.path.join(units, "mailtlsd.service")],
                       capture_output=True, timeout=60)
    out = p.stdout.decode(errors="replace")
    m = re.search(r"Overall exposure level for mailtlsd\.service: "
                  r"([0-9.]+)", out)
    check(m is not None, "no exposure level in:\n%s%s", out[-500:],
          p.stderr.decode(errors="replace")[-500:])
    check(float(m.group(1)) <= MAX_EXPOSURE, "exposure %s > %s:\n%s",
          m.group(1), MAX_EXPOSURE,
          "\n".join(l for l in out.splitlines() if l.startswith("\u2717")))
