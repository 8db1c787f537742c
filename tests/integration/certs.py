"""Throwaway PKI for the integration tests, generated with the openssl CLI.

generate(dir) makes, once per test run, a test CA and every certificate the
scenarios need (good, wrong name, expired, not yet valid, self-signed, signed
by an unknown CA, a client certificate) plus the SPKI pins, and returns their
paths as a Certs object.  No private key is ever committed: everything lives
in the run's temporary directory.
"""

import base64
import datetime
import hashlib
import json
import os
import subprocess
from dataclasses import asdict, dataclass

SERVER_NAME = "mail.test"
OTHER_NAME = "other.test"

REQ_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[self_signed]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:mail.test
"""

CA_CNF = """\
[ca]
default_ca = testca
[testca]
dir = {dir}
database = {dir}/index.txt
new_certs_dir = {dir}/newcerts
serial = {dir}/serial
default_md = sha256
default_days = 825
policy = policy_any
unique_subject = no
copy_extensions = none
email_in_dn = no
[policy_any]
commonName = supplied
"""

EXT_CNF = """\
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:{name}
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
"""


@dataclass
class Certs:
    """Paths of everything generated (all absolute) and the pins."""
    dir: str
    ca: str                 # the CA the daemon trusts (ca_file)
    ca_key: str
    key: str                # key of good / wrong_name / expired / not_yet
    good: str               # mail.test, signed by ca
    wrong_name: str         # other.test, signed by ca
    expired: str            # mail.test, validity 2020-2021
    not_yet_valid: str      # mail.test, validity 2040-2041
    other_key: str          # key of self_signed / unknown_ca
    self_signed: str        # mail.test, self-signed
    unknown_ca: str         # mail.test, signed by a CA nobody trusts
    client: str             # client certificate signed by ca
    client_key: str
    sha1_signed: str        # mail.test, signed by ca with SHA-1
    weak_key: str           # a 1024-bit RSA key
    weak_rsa: str           # mail.test, signed by ca, 1024-bit key
    two_names: str          # mail.test and other.test, signed by ca, key
    expiring: str           # mail.test, signed by ca, ends 3 days after
                            # the run started
    idp: str                # 127.0.0.1 and localhost (the fake OAuth2
                            # server's HTTPS), signed by ca, key
    pin_good: str           # base64 SHA-256 of good's SPKI
    pin_other: str          # the same for other_key

    def save(self, path):
        with open(path, "w") as f:
            json.dump(asdict(self), f)

    @classmethod
    def load(cls, path):
        with open(path) as f:
            return cls(**json.load(f))


def _openssl(*args, cwd=None):
    """Run one openssl command; raise with its stderr when it fails."""
    p = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True,
                       timeout=60)
    if p.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" %
                           (" ".join(args), p.stderr.decode(errors="replace")))
    return p.stdout


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def _new_key(path, bits=2048):
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt",
             "rsa_keygen_bits:%d" % bits, "-out", path)
    return path


def _new_ca(d, name, req_cnf):
    """A self-signed CA in directory d, set up for `openssl ca`."""
    os.makedirs(os.path.join(d, "newcerts"))
    _write(os.path.join(d, "index.txt"), "")
    _write(os.path.join(d, "serial"), "1000\n")
    _write(os.path.join(d, "ca.cnf"), CA_CNF.format(dir=d))
    key = _new_key(os.path.join(d, "ca.key"))
    crt = os.path.join(d, "ca.crt")
    _openssl("req", "-x509", "-new", "-config", req_cnf, "-extensions",
             "v3_ca", "-key", key, "-sha256", "-days", "3650",
             "-subj", "/CN=" + name, "-out", crt)
    return crt, key


def _issue(ca_dir, key, subject_cn, out, section, ext_name,
           start=None, end=None, md="sha256"):
    """Sign a certificate for key with the CA in ca_dir."""
    csr = out + ".csr"
    ext = _write(out + ".ext", EXT_CNF.format(name=ext_name))
    _openssl("req", "-new", "-config", os.path.join(ca_dir, "..", "req.cnf"),
             "-key", key, "-subj", "/CN=" + subject_cn, "-out", csr)
    dates = []
    if start:
        dates += ["-startdate", start]
    if end:
        dates += ["-enddate", end]
    _openssl("ca", "-batch", "-config", os.path.join(ca_dir, "ca.cnf"),
             "-cert", os.path.join(ca_dir, "ca.crt"),
             "-keyfile", os.path.join(ca_dir, "ca.key"),
             "-in", csr, "-out", out, "-notext",
             "-extfile", ext, "-extensions", section, "-md", md, *dates)
    return out


def _asn1_time(days):
    """Now plus days, as `openssl ca -startdate/-enddate` takes it."""
    when = datetime.datetime.now(datetime.timezone.utc) + \
        datetime.timedelta(days=days)
    return when.strftime("%Y%m%d%H%M%SZ")


def spki_pin(cert_path):
    """Base64 SHA-256 of the certificate's DER SubjectPublicKeyInfo."""
    pub = _openssl("x509", "-in", cert_path, "-pubkey", "-noout")
    p = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"],
                       input=pub, capture_output=True, timeout=60, check=True)
    return base64.b64encode(hashlib.sha256(p.stdout).digest()).decode()


def generate(d):
    """Create every test certificate under directory d; return Certs."""
    d = os.path.abspath(d)
    os.makedirs(d, exist_ok=True)
    req_cnf = _write(os.path.join(d, "req.cnf"), REQ_CNF)
    ca, ca_key = _new_ca(os.path.join(d, "ca"), "mailtlsd test CA", req_cnf)
    ca2, _ = _new_ca(os.path.join(d, "ca2"), "unknown test CA", req_cnf)
    ca_dir, ca2_dir = os.path.dirname(ca), os.path.dirname(ca2)
    key = _new_key(os.path.join(d, "server.key"))
    other_key = _new_key(os.path.join(d, "other.key"))
    client_key = _new_key(os.path.join(d, "client.key"))
    weak_key = _new_key(os.path.join(d, "weak.key"), bits=1024)

    def leaf(name, **kw):
        return _issue(ca_dir, key, kw.pop("cn", SERVER_NAME),
                      os.path.join(d, name + ".crt"), "server",
                      kw.pop("san", SERVER_NAME), **kw)

    self_signed = os.path.join(d, "self_signed.crt")
    _openssl("req", "-x509", "-new", "-config", req_cnf, "-extensions",
             "self_signed", "-key", other_key, "-sha256", "-days", "825",
             "-subj", "/CN=" + SERVER_NAME, "-out", self_signed)
    good = leaf("good")
    certs = Certs(
        dir=d, ca=ca, ca_key=ca_key, key=key, good=good,
        wrong_name=leaf("wrong_name", cn=OTHER_NAME, san=OTHER_NAME),
        expired=leaf("expired", start="20200101000000Z",
                     end="20210101000000Z"),
        not_yet_valid=leaf("not_yet_valid", start="20400101000000Z",
                           end="20410101000000Z"),
        other_key=other_key, self_signed=self_signed,
        unknown_ca=_issue(ca2_dir, other_key, SERVER_NAME,
                          os.path.join(d, "unknown_ca.crt"), "server",
                          SERVER_NAME),
        client=_issue(ca_dir, client_key, "mailtlsd test client",
                      os.path.join(d, "client.crt"), "client", SERVER_NAME),
        client_key=client_key,
        sha1_signed=leaf("sha1_signed", md="sha1"),
        weak_key=weak_key,
        weak_rsa=_issue(ca_dir, weak_key, SERVER_NAME,
                        os.path.join(d, "weak_rsa.crt"), "server",
                        SERVER_NAME),
        two_names=leaf("two_names",
                       san="%s, DNS:%s" % (SERVER_NAME, OTHER_NAME)),
        expiring=leaf("expiring", start=_asn1_time(days=-1),
                      end=_asn1_time(days=3)),
        idp=leaf("idp", cn="127.0.0.1", san="localhost, IP:127.0.0.1"),
        pin_good=spki_pin(good), pin_other=spki_pin(self_signed))
    return certs


if __name__ == "__main__":
    import sys
    import time
    t0 = time.monotonic()
    c = generate(sys.argv[1])
    print(json.dumps(asdict(c), indent=1))
    print("took %.2fs" % (time.monotonic() - t0))
