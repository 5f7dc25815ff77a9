"""``mappa-gateway``: the one entry point for operators.

Each command family lives beside what it manages and registers itself here through
``register(subparsers)``; :data:`COMMAND_MODULES` lists them.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

import pydantic_settings
from pydantic import ValidationError

from gateway.key_audit import RECORDED_VERBS, record_key_change
from gateway.settings import get_settings

__all__ = ["COMMAND_MODULES", "build_parser", "main"]

#: Modules that add subcommands; each has ``register(subparsers) -> None``.
COMMAND_MODULES: tuple[str, ...] = (
    "gateway.commands",
    "keys.cli",
    "gateway.agency_commands",
    "gateway.audit.cli",
    "gateway.console.cli",
    "gateway.delivery.cli",
    "gateway.cases.explain",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mappa-gateway",
        description="MAPPA information-sharing gateway: serve, migrate, onboard, verify.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = get_settings()
    except ValidationError as exc:
        reasons = "; ".join(str(err["msg"]).removeprefix("Value error, ") for err in exc.errors())
        print(f"mappa-gateway: refusing to start: {reasons}", file=sys.stderr)
        return 2
    except pydantic_settings.SettingsError as exc:  # a variable that is not the JSON it must be
        print(f"mappa-gateway: refusing to start: {exc}", file=sys.stderr)  # names, no value
        return 2
    # The keys commands read their directory and KEK from the environment: default them to the
    # gateway's own settings (a .env file among them), so `mappa-gateway keys list` opens the
    # KEK the gateway opens (keys/kek_config.py reads these variables back).
    os.environ.setdefault("MAPPA_KEYS_DIR", str(settings.keys_dir))
    os.environ.setdefault("MAPPA_PROFILE", settings.profile)  # development keys only there
    for name, value in settings.kek_config.to_env().items():
        os.environ.setdefault(name, value)
    result: int = args.func(args)
    if result == 0 and args.command == "keys" and args.keys_command in RECORDED_VERBS:
        record_key_change(settings, args)  # in the audit log (gateway.key_audit)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
