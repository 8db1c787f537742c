"""Throwaway PKI for the benchmark, made with the openssl command.

A root CA, an intermediate CA and a server certificate for mail.test, all
ECDSA P-256 (or RSA 2048 with key_type="rsa").  The server presents its
certificate and the intermediate, as public mail servers do, so both proxies
verify a chain of two signatures plus the handshake signature.  Nothing is
kept: the files live in the run's temporary directory.
"""

import os
import subprocess
from dataclasses import dataclass

SERVER_NAME = "mail.test"

EXTENSIONS = """\
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:{name}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


@dataclass
class Pki:
    ca: str         # the trust anchor both proxies are given (CAfile)
    chain: str      # server certificate followed by the intermediate
    key: str        # the server's private key
    key_type: str


def _openssl(*args):
    p = subprocess.run(["openssl", *args], capture_output=True, timeout=60)
    if p.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" %
                           (args[0], p.stderr.decode(errors="replace")))


def _key(path, key_type):
    if key_type == "rsa":
        _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt",
                 "rsa_keygen_bits:2048", "-out", path)
    else:
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt",
                 "ec_paramgen_curve:P-256", "-out", path)
    return path


def _sign(d, name, subject, issuer_crt, issuer_key, section, ext_file,
          key_type):
    """Make d/name.key and d/name.crt signed by the issuer."""
    key = _key(os.path.join(d, name + ".key"), key_type)
    csr = os.path.join(d, name + ".csr")
    crt = os.path.join(d, name + ".crt")
    _openssl("req", "-new", "-key", key, "-subj", "/CN=" + subject,
             "-out", csr)
    _openssl("x509", "-req", "-in", csr, "-CA", issuer_crt, "-CAkey",
             issuer_key, "-CAcreateserial", "-days", "30", "-sha256",
             "-extfile", ext_file, "-extensions", section, "-out", crt)
    return crt, key


def generate(d, key_type="ecdsa"):
    """Create the PKI in directory d; return a Pki."""
    os.makedirs(d, exist_ok=True)
    ext = os.path.join(d, "ext.cnf")
    with open(ext, "w") as f:
        f.write(EXTENSIONS.format(name=SERVER_NAME))
    root_key = _key(os.path.join(d, "root.key"), key_type)
    root = os.path.join(d, "root.crt")
    _openssl("req", "-x509", "-new", "-key", root_key, "-sha256",
             "-days", "30", "-subj", "/CN=mailtlsd bench root CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-out", root)
    inter, inter_key = _sign(d, "intermediate", "mailtlsd bench CA 1", root,
                             root_key, "ca", ext, key_type)
    leaf, leaf_key = _sign(d, "server", SERVER_NAME, inter, inter_key,
                           "server", ext, key_type)
    chain = os.path.join(d, "server-chain.pem")
    with open(chain, "w") as out:
        for path in (leaf, inter):
            with open(path) as f:
                out.write(f.read())
    return Pki(ca=root, chain=chain, key=leaf_key, key_type=key_type)


if __name__ == "__main__":
    import sys
    print(generate(sys.argv[1], *(sys.argv[2:3] or ["ecdsa"])))
