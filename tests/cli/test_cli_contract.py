"""What the command line takes from the contract alone: `commands`, example payloads, timeouts, completion."""
from __future__ import annotations

import json
import shlex
import subprocess

import pytest

from benchbus import catalogue
from benchbus_schemas import registry


def every_command():
    return [spec for spec in registry.specs() if spec.kind == "cmd"]


@pytest.mark.parametrize("spec", every_command(), ids=lambda s: f"{s.service}/{s.name}")
def test_every_example_payload_is_accepted_by_its_model(spec):
    spec.model.model_validate(catalogue.example_request(spec))


def test_timeouts_come_from_the_declaration():
    assert catalogue.timeout_s("smoothie", "home") >= 60  # a home may take a minute
    assert catalogue.timeout_s("demo", "echo") == catalogue.DEFAULT_TIMEOUT_S
    assert catalogue.timeout_s("nobody", "nothing") == catalogue.DEFAULT_TIMEOUT_S
    echo = catalogue.command("demo", "echo")
    with pytest.raises(ValueError, match="timeout_s"):
        registry.command("demo", "never_declared", echo.model, echo.result, "A command with no time.", timeout_s=0)
    assert catalogue.command("demo", "never_declared") is None


def test_commands_lists_each_command_with_its_summary_and_a_runnable_example(cli):
    run = cli("commands", "demo", bus=False)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "demo:"
    echo = next(i for i, line in enumerate(lines) if line.split()[:1] == ["echo"])
    assert "Echo the text back, with the count." in lines[echo]
    example = shlex.split(lines[echo + 1].strip())
    assert example[:4] == ["benchbus", "call", "demo", "echo"]
    assert catalogue.command("demo", "echo").model.model_validate(json.loads(example[4]))
    sleep = next(line for line in lines if line.split()[:1] == ["sleep"])
    assert "[waits up to 35 s]" in sleep


def test_commands_without_a_service_lists_every_declared_service(cli):
    run = cli("commands", bus=False)
    headers = [line[:-1] for line in run.stdout.splitlines() if line and not line.startswith(" ")]
    assert headers == [s for s in catalogue.services() if catalogue.commands(s)]


def test_commands_of_an_unknown_service_names_it(cli):
    run = cli("commands", "smothie", bus=False)
    assert run.returncode == 2
    assert "'smothie'" in run.stderr and "Did you mean smoothie?" in run.stderr


@pytest.fixture
def complete_in_bash(user_shell):
    return lambda words, shell="bash": _complete_in_bash(user_shell(), words, shell)


def _complete_in_bash(env: dict[str, str], words: list[str], shell: str) -> list[str]:
    """In a real bash, load the script as the README says, then ask its function as a TAB press would."""
    quoted = " ".join(shlex.quote(w) for w in ["benchbus", *words])
    program = f"""
eval "$(benchbus completion {shell})"
COMP_WORDS=({quoted}); COMP_CWORD={len(words)}
_benchbus_complete
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, env=env, timeout=30)
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if line]


def test_bash_completion_offers_verbs_services_commands_and_an_example(complete_in_bash):
    assert complete_in_bash(["st"]) == ["status"]
    assert "call" in complete_in_bash([""]) and "_complete" not in complete_in_bash([""])
    assert complete_in_bash(["call", "smo"]) == ["smoothie"]
    assert complete_in_bash(["call", "smoothie", "ho"]) == ["home", "homed"]
    assert complete_in_bash(["call", "--broker", "h:1", "demo", "e"]) == ["echo"]
    assert complete_in_bash(["call", "demo", "echo", ""]) == ["'{\"text\": \"example\"}'"]
    assert complete_in_bash(["watch", "--se"]) == ["--seconds"]
    assert complete_in_bash(["completion", ""]) == ["bash", "zsh"]


def test_zsh_completion_goes_through_bashcompinit(cli):
    run = cli("completion", "zsh", bus=False)
    assert "bashcompinit" in run.stdout and "complete -o default -F _benchbus_complete benchbus" in run.stdout
