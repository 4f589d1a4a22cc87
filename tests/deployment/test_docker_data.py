"""The Docker image and compose file, read where no Docker engine runs: every data folder a volume is mounted on
is made in the image and owned by the service user (a new named volume takes the folder's owner), and no token
string ships as a default."""
import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def dockerfile_commands() -> list[str]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def service_volume_targets() -> dict[str, str]:
    """Both compose files: the lab's central broker runs from the benchbus image too, on its own data volume."""
    targets = {}
    for file in ("docker-compose.yml", "docker-compose.lab.yml"):
        for name, service in yaml.safe_load((REPO / file).read_text())["services"].items():
            if service.get("image", "").startswith("benchbus"):
                for volume in service.get("volumes", []):
                    source, target = volume.split(":")[:2]
                    if not source.startswith("."):  # a named volume, not a file from the repository
                        targets[target] = f"{file}: {name}"
    return targets


def test_every_mounted_data_folder_is_made_in_the_image_and_owned_by_the_service_user():
    commands = dockerfile_commands()
    user = next(c.split()[1] for c in commands if c.startswith("USER "))
    runs = " && ".join(c for c in commands if c.startswith("RUN "))
    made = {folder for words in re.findall(r"mkdir -p ([^&;]+)", runs) for folder in words.split()}
    owned = re.findall(rf"chown -R {user}(?::{user})? (\S+)", runs)
    targets = service_volume_targets()
    assert targets, "no service volumes found"
    for target, service in targets.items():
        assert target in made, f"{service}: {target} is not made in the image"
        assert any(target == root or target.startswith(root.rstrip("/") + "/") for root in owned), \
            f"{service}: {target} is not chowned to {user}"
    # the chown comes after the mkdir, in the same layer or a later one
    assert runs.index("mkdir -p") < runs.index(f"chown -R {user}")


def test_no_default_token_string_in_compose():
    text = (REPO / "docker-compose.yml").read_text()
    assert "change-me" not in text
    gateway = yaml.safe_load(text)["services"]["websocket-gateway"]["environment"]
    assert gateway["BENCHBUS_GATEWAY_TOKEN"] is None  # passed through from .env or the shell when set, else unset
