"""A test CA and its certificates, made with the `openssl` command line (Debian's openssl package)."""
from __future__ import annotations

import subprocess
from pathlib import Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


class TestCA:
    """A CA in `root/<name>/`: `issue()` signs a certificate (CN, and SANs for a server) with it."""

    __test__ = False  # not a pytest class

    def __init__(self, root: Path, name: str):
        self.dir = root / name
        self.dir.mkdir(parents=True)
        self.cert, self.key = self.dir / "ca.crt", self.dir / "ca.key"
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                 "-subj", f"/CN={name} test CA", "-keyout", str(self.key), "-out", str(self.cert))

    def issue(self, cn: str, sans: tuple[str, ...] = ()) -> tuple[Path, Path]:
        """(certificate, key) for `cn`, signed by this CA; sans like "IP:127.0.0.1", "DNS:localhost"."""
        key, csr, cert = self.dir / f"{cn}.key", self.dir / f"{cn}.csr", self.dir / f"{cn}.crt"
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", f"/CN={cn}",
                 "-keyout", str(key), "-out", str(csr))
        extensions = self.dir / f"{cn}.ext"
        extensions.write_text("basicConstraints=CA:FALSE\n" + (f"subjectAltName={','.join(sans)}\n" if sans else ""))
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key), "-CAcreateserial",
                 "-days", "2", "-extfile", str(extensions), "-out", str(cert))
        key.chmod(0o600)
        return cert, key
