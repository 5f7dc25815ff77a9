"""Every ``mappa-gateway`` command and option, and every ``MAPPA_`` name, that deploy/ mentions
exists in the code."""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from gateway.cli import build_parser
from gateway.settings import Settings
from keys.kek_config import KekConfig
from tests.deploy.support import REPO, VENV_BIN, deploy_files

#: The command, alone or as the installed script (``.../bin/mappa-gateway``), not a path.
_COMMAND = re.compile(r"(?:(?<=bin/)|(?<![\w./-]))mappa-gateway[ \t]+(.*)")
_CODE_SPAN = re.compile(r"`([^`]+)`")
_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _candidates(path: Path) -> list[str]:
    """The places in a file where a command may be written: in Markdown its code spans
    (whitespace collapsed) and the lines of its code blocks; elsewhere every line. Lines
    continued with a backslash are joined."""
    text = path.read_text().replace("\\\n", " ")
    if path.suffix != ".md":
        return text.splitlines()
    blocks = [line for block in _FENCE.findall(text) for line in block.splitlines()]
    prose = _FENCE.sub("", text)
    spans = [" ".join(span.split()) for span in _CODE_SPAN.findall(prose)]
    return blocks + spans


def _commands() -> list[tuple[str, list[str]]]:
    """(where, the words after ``mappa-gateway``) for every command written in deploy/."""
    found = []
    for path in deploy_files():
        for candidate in _candidates(path):
            for match in _COMMAND.finditer(candidate):
                rest = match.group(1).split("`", 1)[0]
                lexer = shlex.shlex(rest, posix=True, punctuation_chars=";&|()")
                lexer.whitespace_split = True
                try:
                    words = list(lexer)
                except ValueError:  # an unbalanced quote cut by a line end: plain words
                    words = rest.split()
                cut = next((i for i, w in enumerate(words) if set(w) <= set(";&|()")), None)
                found.append((f"{path.relative_to(REPO)}: {candidate.strip()}", words[:cut]))
    return found


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _resolve(words: list[str]) -> tuple[list[str], list[str]]:
    """The command path the words name and the problems with them (an unknown command or
    option)."""
    parser, path, problems = build_parser(), [], []
    rest = list(words)
    while rest and (choices := _subparsers(parser)):
        word = rest[0]
        if word.startswith("-"):
            break
        if word not in choices:
            problems.append(f"no command {' '.join([*path, word])!r}")
            return path, problems
        parser = choices[word]
        path.append(rest.pop(0))
    if not path:
        problems.append("no command at all")
    for word in rest:
        if word == "--":
            break
        if word.startswith("-") and word.split("=", 1)[0] not in parser._option_string_actions:
            problems.append(f"{' '.join(path)}: no option {word!r}")
    return path, problems


def test_deploy_names_commands() -> None:
    """The parse below finds the commands the deployment relies on (so the checks are not
    vacuous)."""
    paths = {" ".join(_resolve(words)[0]) for _, words in _commands()}
    for needed in ("serve", "relay", "db upgrade", "keys init", "audit checkpoint"):
        assert needed in paths


def test_every_command_and_option_written_in_deploy_exists() -> None:
    problems = [
        f"{where}: {problem}" for where, words in _commands() for problem in _resolve(words)[1]
    ]
    assert not problems, "\n".join(problems)


def test_every_command_path_answers_help() -> None:
    """Each command path named in deploy/ is accepted by the ``mappa-gateway`` entry point
    (``--help`` of each, in one interpreter: the script's own ``main``)."""
    paths = sorted({tuple(_resolve(words)[0]) for _, words in _commands()})
    assert paths
    program = (
        "import sys, json\n"
        "from gateway.cli import main\n"
        "for path in json.loads(sys.argv[1]):\n"
        "    try:\n"
        "        main([*path, '--help'])\n"
        "    except SystemExit as exc:\n"
        "        print('EXIT', ' '.join(path), exc.code, flush=True)\n"
    )
    shown = subprocess.run(
        [str(VENV_BIN / "python"), "-c", program, json.dumps(paths)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert shown.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.split())
    for path in paths:
        assert f"usage: mappa-gateway {' '.join(path)}" in text, path
        assert f"EXIT {' '.join(path)} 0" in text, path


def _setting_names() -> set[str]:
    names = {f"MAPPA_{name.upper()}" for name in Settings.model_fields}
    # The keys CLI reads the KEK's variables itself (keys/kek_config.py): the same names.
    names |= set(KekConfig(vault_addr="https://v", previous_files=(Path("p"),)).to_env())
    return names


@pytest.mark.parametrize("path", deploy_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_mappa_name_is_a_setting(path: Path) -> None:
    known = _setting_names()
    unknown = sorted(set(re.findall(r"\bMAPPA_[A-Z0-9_]*[A-Z0-9]\b", path.read_text())) - known)
    assert not unknown, unknown
