"""``mappa-gateway agencies add|list|show|suspend|reinstate|rotate-keys|set-tls``.

Stored text is printed through :func:`gateway.labels.visible`: a control character, a
bidirectional control or a zero-width character stored before onboarding refused them is written
as an escape (``\\x1b``, ``\\u202e``), so it can neither act on the operator's terminal, forge a
line, nor reorder or disguise a name."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import re
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from gateway import agencies
from gateway.domain import KNOWN_SCOPES, AgencyType, Role
from gateway.labels import visible
from gateway.settings import get_settings
from gateway.store import Database

__all__ = ["parse_duration", "register"]

T = TypeVar("T")
#: What ``agencies add --jwks-uri`` warns of (docs/authentication.md, section 1): the keys at a
#: jwks_uri authenticate the agency, but sealing reads an agency's keys from the store alone.
JWKS_URI_WARNING = (
    "warning: {agency} is registered with a jwks_uri. The keys published there authenticate it "
    "at the token endpoint, but case data is sealed and opened with registered keys only, and "
    "it has none: its case API reads fail (503 recipient_key_unavailable), its writes are "
    "refused (400 unreadable_body), and nothing can be sealed to it (another agency's write "
    "that pushes to it fails with 503 recipient_key_unavailable, or its notice is held). An "
    "agency that exchanges case data needs its JWKS registered (--jwks)."
)
_DURATION = re.compile(r"^([0-9]{1,6})([smhd])$")  # [0-9]: \d matches any script's digits
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> dt.timedelta:
    """``90s``, ``15m``, ``24h``, ``7d``."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise argparse.ArgumentTypeError("durations look like 90s, 15m, 24h or 7d")
    return dt.timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def _read_jwks(path: str) -> dict[str, Any]:
    data = Path(path).read_text(encoding="utf-8")
    if len(data) > 256_000:
        raise agencies.AgencyError("the JWKS file is too large")
    try:
        document = json.loads(data)
    except ValueError as exc:
        raise agencies.AgencyError("the JWKS file is not JSON") from exc
    if not isinstance(document, dict):
        raise agencies.AgencyError("the JWKS file is not a JSON object")
    return document


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("agencies", help="Onboard and manage agency identities")
    sub = parser.add_subparsers(dest="agencies_command", required=True, metavar="ACTION")

    add = sub.add_parser("add", help="Register an agency system (an OAuth client)")
    add.add_argument("--id", required=True, dest="agency_id")
    add.add_argument("--name", required=True)
    add.add_argument("--type", required=True, choices=[t.value for t in AgencyType])
    add.add_argument("--role", required=True, choices=[r.value for r in Role])
    add.add_argument("--area", required=True)
    add.add_argument(
        "--scope",
        action="append",
        default=[],
        dest="scopes",
        help=f"a scope to grant, repeatable: {', '.join(KNOWN_SCOPES)} (any other is refused)",
    )
    keys = add.add_mutually_exclusive_group(required=True)
    keys.add_argument("--jwks", help="a file holding the agency's public JWKS")
    keys.add_argument("--jwks-uri", help="an https URL the gateway fetches the JWKS from")
    add.set_defaults(func=_add)

    listing = sub.add_parser("list", help="List registered agencies")
    listing.set_defaults(func=_list)

    show = sub.add_parser("show", help="Show one agency and its keys")
    show.add_argument("agency_id")
    show.set_defaults(func=_show)

    suspend = sub.add_parser("suspend", help="Suspend an agency (refused from its next request)")
    suspend.add_argument("agency_id")
    suspend.set_defaults(func=_suspend)

    reinstate = sub.add_parser("reinstate", help="Lift a suspension")
    reinstate.add_argument("agency_id")
    reinstate.set_defaults(func=_reinstate)

    rotate = sub.add_parser("rotate-keys", help="Register new keys; old ones end after overlap")
    rotate.add_argument("agency_id")
    rotate.add_argument("--jwks", required=True, help="a file holding the new public JWKS")
    rotate.add_argument("--overlap", type=parse_duration, default=dt.timedelta(hours=24))
    rotate.set_defaults(func=_rotate)

    tls = sub.add_parser(
        "set-tls",
        help="Open RFC 8705 tls_client_auth to an agency (its certificate subject and CA)",
        description="The agency may then authenticate with the client certificate its proxy "
        "forwards (MAPPA_TRUSTED_PROXIES), beside private_key_jwt. --clear closes it again.",
    )
    tls.add_argument("agency_id")
    what = tls.add_mutually_exclusive_group(required=True)
    what.add_argument("--subject-dn", help="the certificate's subject, RFC 4514: 'CN=...,O=...'")
    what.add_argument("--clear", action="store_true", help="close the method for this agency")
    tls.add_argument("--ca", help="a PEM file of the CA certificate(s) that issue it")
    tls.set_defaults(func=_set_tls)


def _run(work: Callable[[Database], Awaitable[T]]) -> T:
    async def main() -> T:
        db = Database(get_settings().database_url)
        try:
            return await work(db)
        finally:
            await db.dispose()

    return asyncio.run(main())


def _shown_url(url: str) -> str:
    """A stored URL as printed: without the credentials (``user:pw@``) a row stored before
    registration refused them may hold."""
    parts = urlsplit(url)
    if "@" in parts.netloc:
        url = urlunsplit(
            parts._replace(netloc="[credentials removed]@" + parts.netloc.rpartition("@")[2])
        )
    return visible(url)


def _print(view: agencies.AgencyView) -> None:
    print(
        f"{visible(view.id)}  {view.status}  {view.agency_type}/{view.role}  "
        f"area={visible(view.area)}"
    )
    print(f"  name: {visible(view.name)}")
    print(f"  scopes: {' '.join(view.scopes) or '-'}")
    if view.jwks_uri:
        print(f"  jwks_uri: {_shown_url(view.jwks_uri)}")
    if view.tls_subject_dn:
        print(f"  tls_client_auth: {visible(view.tls_subject_dn)}")
    for key in view.keys:
        until = key.not_after.isoformat() if key.not_after else "current"
        print(f"  key {visible(key.kid)}  {key.use}  {visible(key.alg or '-')}  until {until}")


def _guarded(action: Callable[[], None]) -> int:
    try:
        action()
    except (agencies.AgencyError, OSError) as exc:
        print(f"mappa-gateway agencies: {exc}", file=sys.stderr)
        return 1
    return 0


def _add(args: argparse.Namespace) -> int:
    def action() -> None:
        jwks = _read_jwks(args.jwks) if args.jwks else None
        view = _run(
            lambda db: agencies.add_agency(
                db,
                agency_id=args.agency_id,
                name=args.name,
                agency_type=args.type,
                role=args.role,
                area=args.area,
                scopes=args.scopes,
                jwks=jwks,
                jwks_uri=args.jwks_uri,
                development=get_settings().profile == "development",
            )
        )
        _print(view)
        if view.jwks_uri:
            print(JWKS_URI_WARNING.format(agency=visible(view.id)), file=sys.stderr)

    return _guarded(action)


def _list(args: argparse.Namespace) -> int:
    def action() -> None:
        for view in _run(agencies.list_agencies):
            fields = (view.id, view.status, view.agency_type, view.role, view.area)
            print("\t".join(visible(field) for field in fields))

    return _guarded(action)


def _show(args: argparse.Namespace) -> int:
    return _guarded(lambda: _print(_run(lambda db: agencies.get_agency(db, args.agency_id))))


def _suspend(args: argparse.Namespace) -> int:
    return _guarded(lambda: _print(_run(lambda db: agencies.suspend_agency(db, args.agency_id))))


def _reinstate(args: argparse.Namespace) -> int:
    return _guarded(lambda: _print(_run(lambda db: agencies.reinstate_agency(db, args.agency_id))))


def _release_held(agency_id: str) -> None:
    """Send the owner notifications held for want of a key, now that the agency has one."""
    from gateway.cases.held_notifications import release_with_settings

    sent = _run(lambda db: release_with_settings(get_settings(), db, agency_id))
    if sent is None:
        print("  held owner notifications: sent by the running gateway (keys not available here)")
    elif sent:
        print(f"  held owner notifications sent: {sent}")


def _rotate(args: argparse.Namespace) -> int:
    def action() -> None:
        jwks = _read_jwks(args.jwks)
        view = _run(lambda db: agencies.rotate_agency_keys(db, args.agency_id, jwks, args.overlap))
        _print(view)
        _release_held(args.agency_id)

    return _guarded(action)


def _set_tls(args: argparse.Namespace) -> int:
    def action() -> None:
        if args.clear and args.ca:
            raise agencies.AgencyError("--clear takes no --ca")
        if not args.clear and not args.ca:
            raise agencies.AgencyError("--subject-dn needs --ca, the PEM of the issuing CA")
        try:
            ca_pem = None if args.clear else Path(args.ca).read_text(encoding="ascii")
        except UnicodeDecodeError as exc:
            raise agencies.AgencyError("the CA file is not PEM (ASCII)") from exc
        view = _run(
            lambda db: agencies.set_tls_client_auth(
                db, args.agency_id, subject_dn=args.subject_dn, ca_pem=ca_pem
            )
        )
        _print(view)

    return _guarded(action)
