"""Update throughput: a signed bundle from HTTP upload to `done` (verified on the slot), ours against its floor.

Ours: the agent as its own process (file-backed slots), the bundle POSTed as multipart, timed from `begin` to
stage `done`; the agent's peak RSS is sampled throughout. The floor: the same disk work done directly in one Python
loop - write the upload to a file, SHA-256 it, copy it to the slot, fsync, drop the cache and hash it back - with no
HTTP, no multipart parsing, no zip, no signature. The ratio says what the service costs on top of the bytes.

    .venv/bin/python bench/update_stream.py [--mib 512]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import httpx
import psutil
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from benchbus.testing.broker import MosquittoProcess, free_port

CHUNK = 1024 * 1024


def make_bundle(path: Path, mib: int, key) -> None:
    block = os.urandom(CHUNK)  # random, so no layer can take a short cut on zeros
    digest = hashlib.sha256()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        info = zipfile.ZipInfo("rootfs.ext4")
        info.file_size = mib * CHUNK
        with archive.open(info, "w") as member:
            for _ in range(mib):
                member.write(block)
                digest.update(block)
        hash_text = digest.hexdigest().encode()
        archive.writestr("rootfs.ext4.hash", hash_text)
        archive.writestr("rootfs.ext4.hash.sig", key.sign(hash_text, padding.PKCS1v15(), hashes.SHA256()))


def body(path: Path, boundary: str):
    yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"ot2-system.zip\"; filename=\"b.zip\"\r\n"
           "\r\n").encode()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            yield chunk
    yield f"\r\n--{boundary}--\r\n".encode()


def ours(folder: Path, bundle: Path, key_file: Path) -> tuple[float, float]:
    broker = MosquittoProcess()
    broker.start()
    port = free_port()
    env = dict(os.environ, BENCHBUS_DEVICE="bench", BENCHBUS_BROKER_HOST=broker.host,
               BENCHBUS_BROKER_PORT=str(broker.port), BENCHBUS_UPDATE_SLOT_DIR=str(folder / "slots"),
               BENCHBUS_UPDATE_STATE_DIR=str(folder / "state"), BENCHBUS_UPDATE_PUBLIC_KEY_FILE=str(key_file),
               BENCHBUS_UPDATE_AUTHORIZED_KEYS=str(folder / "ak"), BENCHBUS_UPDATE_HTTP_PORT=str(port),
               BENCHBUS_UPDATE_RESTART_COMMAND="null")
    agent = subprocess.Popen([sys.executable, "-m", "benchbus_update.service"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300) as http:
            for _ in range(200):
                try:
                    http.get("/server/update/health")
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            process = psutil.Process(agent.pid)
            peak = [process.memory_info().rss]
            done = threading.Event()

            def sample():
                while not done.wait(0.02):
                    peak[0] = max(peak[0], process.memory_info().rss)
            threading.Thread(target=sample, daemon=True).start()
            started = time.perf_counter()
            token = http.post("/server/update/begin").json()["token"]
            http.post(f"/server/update/{token}/file", content=body(bundle, "bb"),
                      headers={"content-type": "multipart/form-data; boundary=bb"}).raise_for_status()
            while (stage := http.get(f"/server/update/{token}/status").json()["stage"]) not in ("done", "error"):
                time.sleep(0.01)
            elapsed = time.perf_counter() - started
            done.set()
            if stage != "done":
                raise SystemExit(f"the agent refused the bundle: {http.get(f'/server/update/{token}/status').json()}")
            return elapsed, peak[0] / 2**20
    finally:
        agent.terminate()
        agent.wait(10)
        broker.close()


def floor(folder: Path, bundle: Path) -> float:
    received, slot = folder / "floor-received", folder / "floor-slot"
    started = time.perf_counter()
    with open(bundle, "rb") as source, open(received, "wb") as target:
        while chunk := source.read(CHUNK):
            target.write(chunk)
    digest = hashlib.sha256()
    with open(received, "rb") as source, open(slot, "wb") as target:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
        source.seek(0)
        while chunk := source.read(CHUNK):
            target.write(chunk)
        target.flush()
        os.fsync(target.fileno())
        os.posix_fadvise(target.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    again = hashlib.sha256()
    with open(slot, "rb") as source:
        while chunk := source.read(CHUNK):
            again.update(chunk)
    elapsed = time.perf_counter() - started
    assert again.digest() == digest.digest()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=512)
    args = parser.parse_args()
    key = rsa.generate_private_key(65537, 3072)
    with tempfile.TemporaryDirectory(prefix="bench-update-") as tmp:
        folder = Path(tmp)
        key_file = folder / "key.pub.pem"
        key_file.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                           serialization.PublicFormat.SubjectPublicKeyInfo))
        bundle = folder / "bundle.zip"
        make_bundle(bundle, args.mib, key)
        floor_s = floor(folder, bundle)
        ours_s, peak_rss = ours(folder, bundle, key_file)
    ratio = ours_s / floor_s
    print(f"bundle {args.mib} MiB: ours {ours_s:.2f} s ({args.mib / ours_s:.0f} MiB/s, agent peak RSS "
          f"{peak_rss:.0f} MiB); floor {floor_s:.2f} s ({args.mib / floor_s:.0f} MiB/s); ratio {ratio:.2f}")
    print(json.dumps({"bundle_mib": args.mib, "ours_s": round(ours_s, 3), "floor_s": round(floor_s, 3),
                      "ratio": round(ratio, 3), "ours_mib_per_s": round(args.mib / ours_s, 1),
                      "agent_peak_rss_mib": round(peak_rss, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
