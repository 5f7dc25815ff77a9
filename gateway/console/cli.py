"""``mappa-gateway ig``: local information governance officer accounts for the console."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from typing import Any

from gateway.settings import get_settings

__all__ = ["register"]


def register(subparsers: Any) -> None:
    ig = subparsers.add_parser("ig", help="Information governance officer accounts")
    sub = ig.add_subparsers(dest="ig_command", required=True, metavar="ACTION")
    add = sub.add_parser(
        "add-officer", help="Create an IG officer account: OIDC, a local argon2id password, or both"
    )
    add.add_argument("officer_id", help="lower-case letters, digits, '.', '_' or '-'")
    add.add_argument("--name", required=True, help="display name")
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input instead of prompting",
    )
    add.add_argument(
        "--oidc-subject",
        nargs=2,
        metavar=("ISSUER", "SUBJECT"),
        help="the officer's identity at the OIDC provider (its issuer URL and the 'sub' claim); "
        "without --password-stdin the officer then has no local password",
    )
    add.set_defaults(func=_add_officer)


def _password(args: argparse.Namespace) -> str | None:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        return None
    return first


def _add_officer(args: argparse.Namespace) -> int:
    from gateway.console.accounts import add_officer
    from gateway.errors import GatewayError
    from gateway.store import Database

    oidc = tuple(args.oidc_subject) if args.oidc_subject else None
    password = _password(args) if oidc is None or args.password_stdin else None
    if password is None and oidc is None:
        print("mappa-gateway ig: the passwords differ", file=sys.stderr)
        return 2
    settings = get_settings()

    async def run() -> int:
        db = Database(settings.database_url)
        try:
            async with db.write() as session:
                await add_officer(session, args.officer_id, args.name, password, oidc=oidc)
        except GatewayError as exc:
            print(f"mappa-gateway ig: {exc.detail or exc.title}", file=sys.stderr)
            return 2
        finally:
            await db.dispose()
        print(f"IG officer {args.officer_id} created")
        return 0

    return asyncio.run(run())
