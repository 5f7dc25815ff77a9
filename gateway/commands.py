"""Core commands: ``serve`` and ``db upgrade``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gateway.settings import get_settings

__all__ = ["register"]


def register(subparsers: Any) -> None:
    serve = subparsers.add_parser("serve", help="Run the gateway (HTTP API and console)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument(
        "--no-migrate", action="store_true", help="Do not apply migrations before serving"
    )
    serve.set_defaults(func=_serve)

    demo = subparsers.add_parser("demo", help="The one-machine demonstration")
    demo_sub = demo.add_subparsers(dest="demo_command", required=True, metavar="ACTION")
    demo_init = demo_sub.add_parser(
        "init", help="Migrate, generate development keys, onboard the demo agencies"
    )
    demo_init.set_defaults(func=_demo_init)
    demo_adapters = demo_sub.add_parser(
        "adapters", help="Serve the demo agencies' adapters and stand-in systems on 127.0.0.1"
    )
    demo_adapters.set_defaults(func=_demo_adapters)

    db = subparsers.add_parser("db", help="Database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    upgrade = db_sub.add_parser("upgrade", help="Apply migrations up to a revision")
    upgrade.add_argument("revision", nargs="?", default="head")
    upgrade.set_defaults(func=_db_upgrade)
    rewrap = db_sub.add_parser(
        "rewrap-case-data",
        help="Move every sealed value to the current KEK (after keys rewrap)",
        description="Rewrap every sealed column of every table under the current KEK: only "
        "each value's wrapped data key changes, nothing is decrypted. Values under a previous "
        "KEK open with MAPPA_PREVIOUS_KEKS or MAPPA_PREVIOUS_KEK_FILES; values already under "
        "the current KEK are left alone, so it can be run again (and finishes an interrupted "
        "run). Exit 0 when nothing is left under another KEK (the previous KEK may then be "
        "removed), 1 otherwise. See keys/README.md, 'Rotating the KEK'.",
    )
    rewrap.add_argument(
        "--check", action="store_true", help="only count what is under which KEK; change nothing"
    )
    rewrap.add_argument(
        "--batch-size", type=int, default=500, help="values per transaction (default 500)"
    )
    rewrap.set_defaults(func=_db_rewrap_case_data)


def _db_upgrade(args: argparse.Namespace) -> int:
    from gateway.store import upgrade

    settings = get_settings()
    upgrade(settings.database_url, args.revision)
    print(f"database at revision {args.revision}")
    return 0


def _db_rewrap_case_data(args: argparse.Namespace) -> int:
    import asyncio

    from gateway.keyring import KeyRepositoryUnavailable, open_envelope_for
    from gateway.store import Database
    from gateway.store.rewrap import rewrap_case_data

    settings = get_settings()
    if args.batch_size < 1:
        print("mappa-gateway: --batch-size must be at least 1", file=sys.stderr)
        return 2
    try:
        envelope = open_envelope_for(settings)
    except KeyRepositoryUnavailable as exc:
        print(f"mappa-gateway: {exc}", file=sys.stderr)
        return 2

    async def run() -> list[Any]:
        db = Database(settings.database_url)
        try:
            return await rewrap_case_data(
                db, envelope, batch_size=args.batch_size, check=args.check
            )
        finally:
            await db.dispose()

    reports = asyncio.run(run())
    left_total = 0
    for report in reports:
        left = ", ".join(f"{n} under {kek_id}" for kek_id, n in sorted(report.left.items()))
        left_total += sum(report.left.values()) + report.raced
        print(
            f"{report.name}: {report.rewrapped} rewrapped, {report.current} under the current KEK"
            + (f", {report.raced} changed meanwhile" if report.raced else "")
            + (f"; LEFT: {left}" if left else "")
        )
    if left_total:
        print(
            f"{left_total} value(s) not under the current KEK {envelope.kek_id}: keep the "
            "previous KEK; run again (a KEK not among the previous KEKs, or a damaged value, "
            "needs looking at first)"
        )
        return 1
    print(
        f"every sealed value is under the current KEK {envelope.kek_id}: the previous KEK "
        "may be removed from MAPPA_PREVIOUS_KEKS (or _KEK_FILES), then destroyed"
    )
    return 0


def _demo_init(args: argparse.Namespace) -> int:
    from gateway.demo import DEMO_AGENCIES, DemoRefused, init_demo

    settings = get_settings()
    try:
        created = init_demo(settings)
    except DemoRefused as exc:
        print(f"mappa-gateway: {exc}", file=sys.stderr)
        return 2
    print(f"demo: {len(created)} created ({', '.join(created) or 'all present'})")
    print(f"demo agencies: {', '.join(a.id for a in DEMO_AGENCIES)}; their private keys are in")
    print(f"  {settings.keys_dir.parent / 'demo' / 'agencies'}/<agency>/private-jwks.json")
    print(f"IG officer credentials: {settings.keys_dir.parent / 'demo' / 'ig-officer.txt'}")
    print("demo endpoints: https on 127.0.0.1, each with its own development CA in")
    print(f"  {settings.keys_dir.parent / 'demo' / 'agencies'}/<agency>/tls/ca.pem")
    return 0


def _demo_adapters(args: argparse.Namespace) -> int:
    import asyncio

    from adapters.demo import run_demo_adapters

    settings = get_settings()
    if settings.profile != "development":
        print(
            "mappa-gateway: the demo adapters run in the development profile only", file=sys.stderr
        )
        return 2
    try:
        asyncio.run(run_demo_adapters(settings.keys_dir.parent / "demo", settings.issuer))
    except FileNotFoundError as exc:
        print(f"mappa-gateway: {exc}", file=sys.stderr)
        return 2
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.store import upgrade

    settings = get_settings()
    if not args.no_migrate:
        upgrade(settings.database_url)
    print(f"MAPPA gateway on http://{args.host}:{args.port}  (profile: {settings.profile})")
    print(f"  health      http://{args.host}:{args.port}/readyz")
    print(f"  discovery   http://{args.host}:{args.port}/.well-known/oauth-authorization-server")
    print(f"  API schema  http://{args.host}:{args.port}/openapi.json")
    uvicorn.run(
        "gateway.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        http=settings.http_parser,  # h11 bounds the header block as it arrives; see settings
        h11_max_incomplete_event_size=settings.max_header_bytes,
    )
    return 0
