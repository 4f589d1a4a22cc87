"""A 1 GiB bundle goes through the agent (a process of its own) without its memory growing past 100 MB."""
import hashlib
import re
import sys
import threading
import zipfile

import httpx
import psutil
import pytest

GIB = 1024**3
CHUNK = 1024 * 1024
RSS_GROWTH_LIMIT = 100 * 1024 * 1024


def write_zero_bundle(path, size: int, private_key, tools) -> None:
    """A zip with a stored (uncompressed) rootfs.ext4 of `size` zero bytes, hashed and signed."""
    zeros = bytes(CHUNK)
    digest = hashlib.sha256()
    for _ in range(size // CHUNK):
        digest.update(zeros)
    hash_text = digest.hexdigest().encode()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        info = zipfile.ZipInfo("rootfs.ext4")
        info.file_size = size
        with archive.open(info, "w") as member:
            for _ in range(size // CHUNK):
                member.write(zeros)
        archive.writestr("rootfs.ext4.hash", hash_text)
        archive.writestr("rootfs.ext4.hash.sig", tools.sign(private_key, hash_text))
        archive.writestr("VERSION.json", '{"robot_type": "OT-2 Standard"}')


def multipart_body(path, boundary: str):
    yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"ot2-system.zip\"; filename=\"big.zip\"\r\n"
           "Content-Type: application/zip\r\n\r\n").encode()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            yield chunk
    yield f"\r\n--{boundary}--\r\n".encode()


class RssSampler(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak = self.process.memory_info().rss
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.02):
            self.peak = max(self.peak, self.process.memory_info().rss)


@pytest.mark.slow
def test_one_gib_bundle_streams_in_bounded_memory(tmp_path, spawn, rsa_key, tools):
    key_file = tmp_path / "signing.pub.pem"
    key_file.write_bytes(tools.public_pem(rsa_key))
    bundle_path = tmp_path / "big.zip"
    write_zero_bundle(bundle_path, GIB, rsa_key, tools)
    agent = spawn([sys.executable, "-m", "benchbus_update.service"], segment="update", env={
        "BENCHBUS_UPDATE_SLOT_DIR": str(tmp_path / "slots"),
        "BENCHBUS_UPDATE_STATE_DIR": str(tmp_path / "state"),
        "BENCHBUS_UPDATE_PUBLIC_KEY_FILE": str(key_file),
        "BENCHBUS_UPDATE_AUTHORIZED_KEYS": str(tmp_path / "authorized_keys"),
        "BENCHBUS_UPDATE_HTTP_PORT": "0",  # it binds a free port itself: one picked here could be taken first
        "BENCHBUS_UPDATE_RESTART_COMMAND": "null",
    })
    port = int(re.search(r"update server on http://[^ ]+:(\d+)/", agent.log()).group(1))
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
        http.get("/server/update/health").raise_for_status()  # everything imported and warm
        sampler = RssSampler(agent.pid)
        baseline = sampler.peak
        sampler.start()
        token = http.post("/server/update/begin").json()["token"]
        boundary = "benchbus-big-upload"
        response = http.post(f"/server/update/{token}/file", content=multipart_body(bundle_path, boundary),
                             headers={"content-type": f"multipart/form-data; boundary={boundary}"})
        assert response.status_code == 201, response.text
        status = tools.wait_stage(http, token, timeout=120)
        sampler.stop.set()
        sampler.join()
    assert status["stage"] == "done", status
    assert (tmp_path / "slots" / "slot-b.img").stat().st_size == GIB
    growth = sampler.peak - baseline
    print(f"agent RSS: {baseline / 2**20:.1f} MiB before, {sampler.peak / 2**20:.1f} MiB peak, "
          f"growth {growth / 2**20:.1f} MiB")
    assert growth < RSS_GROWTH_LIMIT, f"the agent's RSS grew by {growth / 2**20:.0f} MiB for a 1 GiB bundle"
    assert sampler.peak < RSS_GROWTH_LIMIT, f"the agent's RSS peaked at {sampler.peak / 2**20:.0f} MiB"
