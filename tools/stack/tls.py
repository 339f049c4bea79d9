"""The secure profile's certificates, made once per stack folder with openssl: a CA, and one server
certificate for 127.0.0.1 and localhost that Kafka, Cassandra and Redis all present (PEM for Redis,
a PKCS12 keystore for the JVMs). Clients trust ``ca.pem``.

Files in ``<stack>/tls/``: ca.pem, ca.key, server.pem, server.key, server.p12, keystore.password
(the private keys and the keystore password are 0600)."""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tools.stack.maven import InstallError

DAYS = 825
SAN = "IP:127.0.0.1,DNS:localhost"


@dataclass(frozen=True)
class TlsFiles:
    dir: Path

    @property
    def ca(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def cert(self) -> Path:
        return self.dir / "server.pem"

    @property
    def key(self) -> Path:
        return self.dir / "server.key"

    @property
    def keystore(self) -> Path:
        return self.dir / "server.p12"

    @property
    def keystore_password_file(self) -> Path:
        return self.dir / "keystore.password"

    def keystore_password(self) -> str:
        return self.keystore_password_file.read_text().strip()

    def complete(self) -> bool:
        return all(p.exists() for p in (self.ca, self.cert, self.key, self.keystore, self.keystore_password_file))


def ensure(tls_dir: Path) -> tuple[TlsFiles, bool]:
    """The certificates of ``tls_dir``, made when any is missing; returns them and whether they were made."""
    files = TlsFiles(tls_dir)
    if files.complete():
        return files, False
    if shutil.which("openssl") is None:
        raise InstallError("openssl not found: install it (apt-get install openssl)")
    tls_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(tls_dir, 0o700)
    write_secret(files.keystore_password_file, secrets.token_urlsafe(24))
    ext = tls_dir / "server.ext"
    ext.write_text(f"subjectAltName={SAN}\nbasicConstraints=CA:FALSE\n"
                   "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n")
    csr = tls_dir / "server.csr"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", files.ca_key, "-out", files.ca,
             "-days", str(DAYS), "-subj", "/CN=download-ledger local CA",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", files.key, "-out", csr, "-subj", "/CN=localhost")
    _openssl("x509", "-req", "-in", csr, "-CA", files.ca, "-CAkey", files.ca_key, "-CAcreateserial",
             "-out", files.cert, "-days", str(DAYS), "-sha256", "-extfile", ext)
    _openssl("pkcs12", "-export", "-in", files.cert, "-inkey", files.key, "-certfile", files.ca, "-name", "server",
             "-out", files.keystore, "-passout", f"file:{files.keystore_password_file}")
    for private in (files.ca_key, files.key, files.keystore):
        os.chmod(private, 0o600)
    csr.unlink(missing_ok=True)
    return files, True


def write_secret(path: Path, value: str) -> None:
    """Write ``value`` to a file only its owner can read (created 0600, never world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    os.chmod(path, 0o600)


def _openssl(*args) -> None:
    result = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise InstallError(f"openssl {args[0]} failed: {result.stderr.strip().splitlines()[-1:]}")
