"""``mappa-gateway ig``: information governance officer accounts for the console.

``add-officer`` creates an account (a local argon2id password, an OIDC identity, or both) with
its review scope (`gateway.console.scope`): ``--area CODE`` (repeatable) or ``--national``;
neither leaves the officer reading nothing until ``set-scope`` gives one. ``set-scope``
replaces an officer's scope; ``list-officers`` shows every account and its scope. Each change
is recorded in the audit log (`gateway.console.accounts`). Stored text is printed through
:func:`gateway.labels.visible`.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from gateway.settings import get_settings

__all__ = ["register"]

_NO_SCOPE_NOTE = (
    "no review scope: the officer reads no audit entry until "
    "`mappa-gateway ig set-scope OFFICER --area CODE` (or --national) sets one"
)


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
    _scope_arguments(add, required=False)
    add.set_defaults(func=_add_officer)

    scope = sub.add_parser(
        "set-scope",
        help="Set the MAPPA areas whose audit entries an IG officer reads",
        description="Replaces the officer's review scope; it holds from the officer's next "
        "page, in every session. Recorded in the audit log.",
    )
    scope.add_argument("officer_id")
    _scope_arguments(scope, required=True)
    scope.set_defaults(func=_set_scope)

    listing = sub.add_parser("list-officers", help="List IG officer accounts and their scopes")
    listing.set_defaults(func=_list_officers)


def _scope_arguments(parser: argparse.ArgumentParser, *, required: bool) -> None:
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument(
        "--area",
        action="append",
        dest="areas",
        metavar="CODE",
        help="a MAPPA area the officer reviews, repeatable: the area code its agencies are "
        "registered with (mappa-gateway agencies list)",
    )
    group.add_argument(
        "--national",
        action="store_true",
        help="every area's entries, and those of no area (console, administration): for the "
        "IG function that answers for the whole gateway",
    )
    if required:
        group.add_argument(
            "--none", action="store_true", help="no area: the officer reads no audit entry"
        )


def _password(args: argparse.Namespace) -> str | None:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        return None
    return first


def _write(work: Callable[[AsyncSession], Awaitable[str]]) -> int:
    """Run ``work`` in one write transaction; print its message, or the refusal (exit 2)."""
    from gateway.errors import GatewayError
    from gateway.store import Database

    async def run() -> int:
        db = Database(get_settings().database_url)
        try:
            async with db.write() as session:
                message = await work(session)
        except GatewayError as exc:
            print(f"mappa-gateway ig: {exc.detail or exc.title}", file=sys.stderr)
            return 2
        finally:
            await db.dispose()
        print(message)
        return 0

    return asyncio.run(run())


def _add_officer(args: argparse.Namespace) -> int:
    from gateway.console.accounts import add_officer
    from gateway.console.scope import known_scope

    oidc = tuple(args.oidc_subject) if args.oidc_subject else None
    password = _password(args) if oidc is None or args.password_stdin else None
    if password is None and oidc is None:
        print("mappa-gateway ig: the passwords differ", file=sys.stderr)
        return 2

    async def work(session: AsyncSession) -> str:
        scope = await known_scope(session, national=args.national, areas=args.areas or ())
        await add_officer(session, args.officer_id, args.name, password, oidc=oidc, scope=scope)
        note = f"; {_NO_SCOPE_NOTE}" if scope.sees_nothing else ""
        return f"IG officer {args.officer_id} created, scope: {scope.describe()}{note}"

    return _write(work)


def _set_scope(args: argparse.Namespace) -> int:
    from gateway.console.accounts import set_scope
    from gateway.console.scope import known_scope

    async def work(session: AsyncSession) -> str:
        scope = await known_scope(session, national=args.national, areas=args.areas or ())
        previous, now = await set_scope(session, args.officer_id, scope)
        note = f"; {_NO_SCOPE_NOTE}" if now.sees_nothing else ""
        return (
            f"IG officer {args.officer_id} scope: {now.describe()} "
            f"(was: {previous.describe()}){note}"
        )

    return _write(work)


def _list_officers(args: argparse.Namespace) -> int:
    from gateway.console.accounts import list_officers, sign_in_methods
    from gateway.console.scope import ReviewScope
    from gateway.labels import visible

    async def work(session: AsyncSession) -> str:
        lines = []
        for officer in await list_officers(session):
            fields = (
                officer.id,
                "active" if officer.active else "inactive",
                "+".join(sign_in_methods(officer)) or "-",
                f"scope={ReviewScope.of(officer).describe()}",
                officer.display_name,
            )
            lines.append("\t".join(visible(field) for field in fields))
        return "\n".join(lines) if lines else "no IG officer accounts"

    return _write(work)
