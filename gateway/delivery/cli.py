"""``mappa-gateway relay`` and ``mappa-gateway outbox list|retry|purge``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import Any

from gateway.settings import get_settings

__all__ = ["register"]


def register(subparsers: Any) -> None:
    relay = subparsers.add_parser(
        "relay", help="Run the outbox relay alone (beside gateways started with interval 0)"
    )
    relay.add_argument("--once", action="store_true", help="One sweep, wait for it, exit")
    relay.add_argument("--no-migrate", action="store_true")
    relay.set_defaults(func=_relay)

    outbox = subparsers.add_parser("outbox", help="The delivery outbox (operators)")
    sub = outbox.add_subparsers(dest="outbox_command", required=True, metavar="ACTION")
    listing = sub.add_parser("list", help="Messages (never their bodies)")
    listing.add_argument("--status", choices=["pending", "leased", "delivered", "dead"])
    listing.add_argument("--agency")
    listing.add_argument("--limit", type=int, default=100)
    listing.set_defaults(func=_list)
    retry = sub.add_parser("retry", help="Dead letters back to pending")
    retry.add_argument("ids", nargs="*", help="Message ids (default: every dead letter)")
    retry.add_argument("--agency")
    retry.set_defaults(func=_retry)
    purge = sub.add_parser("purge", help="Delete delivered and dead messages older than N days")
    purge.add_argument("--older-than-days", type=int, required=True)
    purge.set_defaults(func=_purge)


async def _run_relay(once: bool) -> None:
    from gateway.delivery.relay import Relay, relay_config
    from gateway.http.metrics import GatewayMetrics
    from gateway.logs import configure_logging
    from gateway.store import Database

    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    db = Database(settings.database_url, pool_size=settings.db_pool_size)
    config = relay_config(settings)
    if config.interval <= 0:
        from dataclasses import replace

        config = replace(config, interval=1.0)
    relay = Relay(db, config, metrics=GatewayMetrics())
    try:
        if once:
            await relay.sweep()
            await relay.drain()
        else:
            relay.start()
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError):
                    loop.add_signal_handler(sig, stop.set)
            await stop.wait()
    finally:
        await relay.stop()
        await db.dispose()


def _relay(args: argparse.Namespace) -> int:
    if not args.no_migrate:
        from gateway.store import upgrade

        upgrade(get_settings().database_url)
    asyncio.run(_run_relay(args.once))
    return 0


def _db() -> Any:
    from gateway.store import Database

    return Database(get_settings().database_url)


def _list(args: argparse.Namespace) -> int:
    from gateway.delivery.operations import list_outbox

    async def run() -> list[Any]:
        db = _db()
        try:
            return await list_outbox(
                db, status=args.status, agency_id=args.agency, limit=args.limit
            )
        finally:
            await db.dispose()

    rows = asyncio.run(run())
    print(f"{'id':36}  {'recipient':24} {'kind':18} {'status':9} {'tries':>5}  last error")
    for r in rows:
        print(
            f"{r.id:36}  {r.recipient_agency_id[:24]:24} {r.kind[:18]:18} {r.status:9} "
            f"{r.attempts:5}  {r.last_error_code or '-'}"
        )
    return 0


def _retry(args: argparse.Namespace) -> int:
    from gateway.delivery.operations import retry

    async def run() -> int:
        db = _db()
        try:
            return await retry(db, message_ids=args.ids or None, agency_id=args.agency)
        finally:
            await db.dispose()

    print(f"{asyncio.run(run())} dead letter(s) queued again")
    return 0


def _purge(args: argparse.Namespace) -> int:
    from gateway.delivery.operations import purge

    async def run() -> int:
        db = _db()
        try:
            return await purge(db, older_than_days=args.older_than_days)
        finally:
            await db.dispose()

    try:
        count = asyncio.run(run())
    except ValueError as exc:
        print(f"mappa-gateway: {exc}", file=sys.stderr)
        return 2
    print(f"{count} message(s) purged")
    return 0
