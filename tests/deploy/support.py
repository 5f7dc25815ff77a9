"""Reading the files of deploy/ the way their consumers do, and pointing them at test paths."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
ENV_EXAMPLE = DEPLOY / "gateway.env.example"
VENV_BIN = REPO / ".venv" / "bin"
#: Where the examples install the package, and the folders they put the site's files in.
INSTALLED_BIN = "/opt/mappa-gateway/.venv/bin"
SITE_FOLDERS = ("/etc/mappa-gateway/", "/var/lib/mappa-gateway/")


def deploy_files() -> list[Path]:
    """Every file of deploy/."""
    return sorted(path for path in DEPLOY.rglob("*") if path.is_file())


def parse_environment_file(text: str) -> dict[str, str]:
    """NAME=value lines as systemd's EnvironmentFile= reads them: comments and blank lines
    skipped, a value in single quotes taken literally, one in double quotes with backslash
    escapes, an unquoted one as written (trailing blanks removed)."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        name, equals, value = line.partition("=")
        if not equals or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name.strip()):
            raise ValueError(f"line {number}: not NAME=value")
        value = value.lstrip()
        if value.startswith("'"):
            end = value.find("'", 1)
            if end != len(value) - 1:
                raise ValueError(f"line {number}: text after a single-quoted value")
            value = value[1:end]
        elif value.startswith('"'):
            match = re.fullmatch(r'"((?:[^"\\]|\\.)*)"', value)
            if match is None:
                raise ValueError(f"line {number}: unbalanced double quotes")
            value = re.sub(r"\\(.)", r"\1", match.group(1))
        values[name.strip()] = value.rstrip()
    return values


def shell_environment(path: Path) -> dict[str, str]:
    """The variables a POSIX shell gets from ``set -a; . FILE`` (how operators load it)."""
    shown = subprocess.run(
        ["/bin/sh", "-c", 'set -a; . "$1"; env -0', "sh", str(path)],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        check=True,
    ).stdout.decode()
    pairs = (entry.partition("=") for entry in shown.split("\0") if entry)
    return {name: value for name, _, value in pairs}


def relocate(text: str, base: Path) -> str:
    """``text`` with the site's folders moved under ``base`` (``/etc/mappa-gateway/x`` to
    ``base/etc/mappa-gateway/x``)."""
    for folder in SITE_FOLDERS:
        text = text.replace(folder, str(base) + folder)
    return text


def copy_keys(source: Path, target: Path) -> Path:
    """A private copy of a key directory (modes kept: the gateway checks them)."""
    shutil.copytree(source, target)
    return target
