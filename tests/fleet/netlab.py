"""Real hosts on one machine: a central network namespace and device namespaces, each linked by its own veth pair.

    host (test process) 10.N.0.1 <-veth-> 10.N.0.2 central
    central 10.N.<i>.1 <-veth-> 10.N.<i>.2 device i

Each device reaches the central broker at 10.N.<i>.1; the test process reaches it at 10.N.0.2. N is one no host
interface uses yet: two labs at once on one machine (two test runs) would otherwise both route one subnet from the
host, whose clients then reached the other lab's central broker (seen: a fleet page showing another lab's rigs).
Cutting a device's link is `ip link set down` on the device's end (its own loopback, broker and services keep
running). Everything is removed again by `close()`, also after a failed test.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path


def cannot_run_reason() -> str | None:
    """Why namespaces cannot be built here (None when they can): said in the CI log by the skip."""
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN); run as root or in a privileged container"
    if shutil.which("ip") is None:
        return "the `ip` command is missing (Debian package iproute2)"
    probe = f"bbprobe{os.getpid()}"
    result = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if result.returncode != 0:
        return f"`ip netns add` failed: {result.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def unused_octet() -> int:
    """A second octet N whose 10.N.0.0/16 no host interface uses, starting from one of this process's own."""
    taken = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True).stdout
    start = 64 + os.getpid() % 128
    for octet in [*range(start, 250), *range(64, start)]:
        if f" 10.{octet}." not in taken:
            return octet
    raise RuntimeError("no free 10.N.0.0/16 for the lab's links")


def sh(*args: str) -> None:
    result = subprocess.run(list(args), capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {result.stderr.strip()}")


@dataclass
class NetLab:
    devices: list[str]
    tag: str = field(default_factory=lambda: f"{os.getpid() % 10000}")
    namespaces: list[str] = field(default_factory=list)
    host_links: list[str] = field(default_factory=list)
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def central(self) -> str:
        return f"bbc{self.tag}"

    def ns(self, device: str) -> str:
        return f"bbd{self.devices.index(device) + 1}-{self.tag}"

    def device_link(self, device: str) -> str:
        return f"bbd{self.devices.index(device) + 1}x{self.tag}"  # the device's end of its link (<= 15 chars)

    octet: int = field(default_factory=unused_octet)

    @property
    def central_for_host(self) -> str:
        return f"10.{self.octet}.0.2"

    def central_for(self, device: str) -> str:
        return f"10.{self.octet}.{self.devices.index(device) + 1}.1"

    def build(self) -> None:
        for namespace in [self.central] + [self.ns(d) for d in self.devices]:
            sh("ip", "netns", "add", namespace)
            self.namespaces.append(namespace)
            sh("ip", "-n", namespace, "link", "set", "lo", "up")
        host_end, central_end = f"bbh{self.tag}", f"bbhc{self.tag}"
        sh("ip", "link", "add", host_end, "type", "veth", "peer", "name", central_end, "netns", self.central)
        self.host_links.append(host_end)
        sh("ip", "addr", "add", f"10.{self.octet}.0.1/24", "dev", host_end)
        sh("ip", "link", "set", host_end, "up")
        sh("ip", "-n", self.central, "addr", "add", f"10.{self.octet}.0.2/24", "dev", central_end)
        sh("ip", "-n", self.central, "link", "set", central_end, "up")
        for i, device in enumerate(self.devices, start=1):
            central_end, device_end = f"bbc{i}x{self.tag}", self.device_link(device)
            sh("ip", "-n", self.central, "link", "add", central_end, "type", "veth", "peer", "name", device_end,
               "netns", self.ns(device))
            sh("ip", "-n", self.central, "addr", "add", f"10.{self.octet}.{i}.1/24", "dev", central_end)
            sh("ip", "-n", self.central, "link", "set", central_end, "up")
            sh("ip", "-n", self.ns(device), "addr", "add", f"10.{self.octet}.{i}.2/24", "dev", device_end)
            sh("ip", "-n", self.ns(device), "link", "set", device_end, "up")

    def set_link(self, device: str, up: bool) -> None:
        sh("ip", "-n", self.ns(device), "link", "set", self.device_link(device), "up" if up else "down")

    def spawn(self, namespace: str, argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
        """A process inside a namespace, its output in `log` (read it when something fails)."""
        with log.open("ab") as out:
            process = subprocess.Popen(["ip", "netns", "exec", namespace, *argv], stdout=out, stderr=subprocess.STDOUT,
                                       env={**os.environ, **(env or {})})
        self.processes.append(process)
        return process

    def close(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for link in self.host_links:
            subprocess.run(["ip", "link", "del", link], capture_output=True)
        for namespace in self.namespaces:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
