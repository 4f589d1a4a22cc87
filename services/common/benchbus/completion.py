"""Shell completion: a small shell function that asks `benchbus _complete WORDS...` for the candidates.

The candidates come from the parser (verbs, options) and the contract (services, their commands, an example
payload), so the script never goes stale when a service gains a command, and completing needs no broker.
"""
from __future__ import annotations

import argparse
import json

from . import catalogue

SHELLS = ("bash", "zsh")
HIDDEN_VERB = "_complete"

_BASH = r"""# benchbus completion for bash. Load it with:  eval "$(benchbus completion bash)"
# (or save it as ~/.local/share/bash-completion/completions/benchbus)
_benchbus_complete() {
    local program="${COMP_WORDS[0]/#\~/$HOME}"
    local IFS=$'\n'
    COMPREPLY=($("$program" _complete "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))
}
complete -o default -F _benchbus_complete benchbus
"""

_ZSH_PREFIX = """# benchbus completion for zsh (through bash's): eval "$(benchbus completion zsh)"
autoload -U +X bashcompinit && bashcompinit
"""


def script(shell: str) -> str:
    if shell not in SHELLS:
        raise ValueError(f"no completion for {shell!r}; shells: {', '.join(SHELLS)}")
    return _BASH if shell == "bash" else _ZSH_PREFIX + _BASH


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options_taking_values(verb_parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in verb_parser._actions if action.nargs != 0 for option in action.option_strings}


def candidates(parser: argparse.ArgumentParser, words: list[str]) -> list[str]:
    """What may follow: `words` are the command line after `benchbus`, the last one the word being completed."""
    *before, current = words or [""]
    verbs = _subparsers(parser)
    verb_parser = verbs.get(next((w for w in before if not w.startswith("-")), ""))
    if verb_parser is None:
        return [verb for verb in verbs if verb.startswith(current) and not verb.startswith("_")]
    takes_value = _options_taking_values(verb_parser)
    positional: list[str] = []
    skip_value = False
    for word in before:
        if skip_value:
            skip_value = False
        elif word.startswith("-"):
            skip_value = word in takes_value
        else:
            positional.append(word)
    if skip_value:
        return []  # the value of --broker, --timeout, ...: nothing to offer
    if current.startswith("-"):
        options = [o for action in verb_parser._actions for o in action.option_strings if o.startswith("--")]
        return [option for option in options if option.startswith(current)]
    return [c for c in _positional(positional[0], positional[1:]) if c.startswith(current)]


def _positional(verb: str, arguments: list[str]) -> list[str]:
    if verb in ("call", "commands", "health") and not arguments:
        return catalogue.services()
    if verb == "call" and len(arguments) == 1:
        return [spec.name for spec in catalogue.commands(arguments[0])]
    if verb == "call" and len(arguments) == 2:
        spec = catalogue.command(arguments[0], arguments[1])
        return [] if spec is None else [f"'{json.dumps(catalogue.example_request(spec))}'"]
    if verb == "completion" and not arguments:
        return list(SHELLS)
    return []
