"""The documentation a newcomer reads: it stays inside the repository and names commands that exist."""
from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest

from benchbus import catalogue
from benchbus_schemas import roles

REPO = Path(__file__).resolve().parents[2]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted(REPO.glob("services/*/README.md"))]
BROKER_USERS = set(roles.users_text().split())  # the broker's users (roles.py), named in the docs beside the scripts


def console_scripts() -> set[str]:
    names = set()
    for project in REPO.glob("services/*/pyproject.toml"):
        names |= set(tomllib.loads(project.read_text())["project"].get("scripts", {}))
    return names


def test_the_documents_exist():
    assert {"architecture.md", "operating.md", "adding-a-service.md"} <= {p.name for p in DOCUMENTS}
    assert "Apache License" in (REPO / "LICENSE").read_text() and "Version 2.0" in (REPO / "LICENSE").read_text()


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_links_stay_inside_the_repository_and_resolve(document):
    text = document.read_text()
    assert "../shared" not in text
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        resolved = (document.parent / target).resolve()
        assert resolved.is_relative_to(REPO), f"{target} leaves the repository"
        assert resolved.exists(), f"{target} does not exist"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_commands_named_are_console_scripts(document):
    named = set(re.findall(r"`(benchbus-[a-z-]+)(?:[ `])", document.read_text()))
    assert named - console_scripts() - BROKER_USERS == set()


def documented_calls() -> list[tuple[str, list[str]]]:
    """Every `benchbus call ...` line of a shell example in the documents (lines built from shell variables aside)."""
    calls = []
    for document in DOCUMENTS:
        for line in document.read_text().splitlines():
            command = line.split("  #")[0].strip()
            if command.startswith("benchbus call ") and "$" not in command:
                calls.append((f"{document.name}: {command}", shlex.split(command)[2:]))
    return calls


@pytest.mark.parametrize("where, words", documented_calls(), ids=[c[0] for c in documented_calls()])
def test_documented_calls_name_declared_commands_with_valid_payloads(where, words):
    spec = catalogue.command(words[0], words[1])
    assert spec is not None, f"{where}: {words[0]}/{words[1]} is not declared in bus-schemas"
    payload = json.loads(words[2]) if len(words) > 2 and not words[2].startswith("-") else {}
    spec.model.model_validate(payload)
