"""`benchbus-update-bundle`: make a signing key pair, or a signed bundle from a root filesystem image.

    benchbus-update-bundle keygen DIR [--ed25519]          DIR/signing-key.pem (private), DIR/signing-key.pub.pem
    benchbus-update-bundle make ROOTFS KEY OUT [--version JSON] [--deflate]

For development and tests; a release is signed on the build machine with the production key.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from . import bundle
from .slots import atomic_write


def generate_key_pair(folder: Path, use_ed25519: bool = False, bits: int = 3072) -> tuple[Path, Path]:
    key = ed25519.Ed25519PrivateKey.generate() if use_ed25519 else rsa.generate_private_key(65537, bits)
    private = folder / "signing-key.pem"
    public = folder / "signing-key.pub.pem"
    atomic_write(private, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()), mode=0o600)
    atomic_write(public, key.public_key().public_bytes(serialization.Encoding.PEM,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo), mode=0o644)
    return private, public


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchbus-update-bundle", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    keygen = commands.add_parser("keygen", help="write a signing key pair into a folder")
    keygen.add_argument("folder", type=Path)
    keygen.add_argument("--ed25519", action="store_true", help="Ed25519 instead of RSA-3072")
    make = commands.add_parser("make", help="write a signed bundle")
    make.add_argument("rootfs", type=Path)
    make.add_argument("key", type=Path, help="the private key (PEM)")
    make.add_argument("out", type=Path)
    make.add_argument("--version", type=json.loads, default=None, help="VERSION.json content, as JSON")
    make.add_argument("--deflate", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "keygen":
        args.folder.mkdir(parents=True, exist_ok=True)
        private, public = generate_key_pair(args.folder, args.ed25519)
        print(f"private key {private}\npublic key  {public}")
        return 0
    key = serialization.load_pem_private_key(args.key.read_bytes(), password=None)
    digest = bundle.write_bundle(args.out, args.rootfs, key, args.version, compress=args.deflate)
    print(f"{args.out}: rootfs.ext4 sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
