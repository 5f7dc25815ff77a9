"""``mappa-gateway relay`` and ``mappa-gateway outbox list|retry|purge``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from gateway.settings import get_settings

__all__ = ["register"]


def register(subparsers: Any) -> None:
    relay = subparsers.add_parser(
        "relay", help="Run the outbox relay alone (beside gateways started with interval 0)"
    )
    relay.add_argument(
        "--once", action="store_true", help="One sweep, wait for it, exit (no metrics listener)"
    )
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

    partner = subparsers.add_parser("partner", help="Partner onboarding kit")
    psub = partner.add_subparsers(dest="partner_command", required=True, metavar="ACTION")
    init = psub.add_parser("init", help="Keys, JWKS, adapter config and registration request")
    init.add_argument("directory")
    init.add_argument("--agency-id", required=True)
    init.add_argument("--name", required=True)
    init.add_argument("--type", dest="agency_type", required=True)
    init.add_argument("--role", default="duty_to_cooperate")
    init.add_argument("--area", required=True)
    init.add_argument("--issuer", help="The gateway's issuer URL (default: this gateway's)")
    init.add_argument("--endpoint-url")
    init.set_defaults(func=_partner_init)
    endpoint = psub.add_parser("endpoint", help="Register (or remove) an agency's push endpoint")
    endpoint.add_argument("agency_id")
    endpoint.add_argument("url", nargs="?", help="https URL; omit with --remove")
    endpoint.add_argument("--ca-file", help="PEM of the CA that issues the endpoint certificate")
    endpoint.add_argument("--remove", action="store_true")
    endpoint.set_defaults(func=_partner_endpoint)

    conformance = subparsers.add_parser(
        "conformance",
        help="Run a partner's webhook endpoint, or its adapter client, against the contract",
    )
    conformance.add_argument("agency_id", nargs="?", help="The agency whose webhook to check")
    conformance.add_argument(
        "--adapter",
        metavar="DIR",
        help="Check the adapter side instead: the folder `partner init` wrote (its keys and "
        "adapter.toml) against the running gateway named there",
    )
    conformance.add_argument("--issuer", help="With --adapter: the gateway (default: the kit's)")
    conformance.add_argument("--gateway-ca-file", help="With --adapter: CA of the gateway's TLS")
    conformance.add_argument("--url", help="Default: the agency's registered endpoint")
    conformance.add_argument("--ca-file", help="Default: the agency's registered CA")
    conformance.set_defaults(func=_conformance)


async def _run_relay(once: bool) -> int:
    from adapters.receiver import stop_on_signals
    from gateway.delivery.metrics import RelayMetrics
    from gateway.delivery.metrics_listener import MetricsListener
    from gateway.delivery.relay import Relay, relay_config
    from gateway.logs import configure_logging
    from gateway.store import Database

    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    db = Database(settings.database_url, pool_size=settings.db_pool_size)
    config = relay_config(settings)
    if config.interval <= 0:
        from dataclasses import replace

        config = replace(config, interval=1.0)
    metrics = RelayMetrics()
    relay = Relay(db, config, metrics=metrics)
    listener: MetricsListener | None = None
    try:
        if once:
            await relay.sweep()
            await relay.drain()
            return 0
        if settings.relay_metrics_port:
            listener = MetricsListener(metrics, db, allowed=settings.metrics_allowed)
            host, port = str(settings.relay_metrics_host), settings.relay_metrics_port
            try:
                await listener.start(host, port)
            except OSError as exc:  # a relay its operator cannot see does not start
                print(
                    f"mappa-gateway: refusing to start: no metrics listener on {host}:{port} "
                    f"(MAPPA_RELAY_METRICS_HOST, MAPPA_RELAY_METRICS_PORT): {exc.strerror or exc}",
                    file=sys.stderr,
                )
                return 2
        relay.start()
        await stop_on_signals().wait()
        return 0
    finally:
        await relay.stop()
        if listener is not None:
            await listener.stop()
        await db.dispose()


def _relay(args: argparse.Namespace) -> int:
    if not args.no_migrate:
        from gateway.store import upgrade

        upgrade(get_settings().database_url)
    return asyncio.run(_run_relay(args.once))


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
    from gateway.delivery.operations import Retried, retry

    async def run() -> Retried:
        db = _db()
        try:
            return await retry(db, message_ids=args.ids or None, agency_id=args.agency)
        finally:
            await db.dispose()

    done = asyncio.run(run())
    print(f"{done.queued} dead letter(s) queued again")
    if done.left:
        print(
            f"{done.left} left dead: written too long ago to go (7 days, less an hour) or sealed "
            "to a key their recipient "
            "retired, no retry can deliver them; have the acts issued again "
            "(outbox list --status dead shows them)"
        )
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


def _partner_init(args: argparse.Namespace) -> int:
    from adapters.kit import partner_init

    issuer = args.issuer or get_settings().issuer
    try:
        kit = partner_init(
            args.directory,
            agency_id=args.agency_id,
            name=args.name,
            agency_type=args.agency_type,
            role=args.role,
            area=args.area,
            issuer=issuer,
            endpoint_url=args.endpoint_url,
        )
    except FileExistsError as exc:
        print(f"mappa-gateway: refusing to overwrite {exc.filename}", file=sys.stderr)
        return 2
    print(f"private keys (keep them here, mode 0600): {kit.private_jwks}")
    print(f"public JWKS:            {kit.public_jwks}")
    print(f"adapter configuration:  {kit.config}")
    print(f"send to the operator:   {kit.registration}")
    return 0


def _partner_endpoint(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gateway.delivery.endpoints import EndpointError, set_endpoint

    if args.remove == bool(args.url):
        print("mappa-gateway: give a URL, or --remove", file=sys.stderr)
        return 2
    ca = Path(args.ca_file).read_text(encoding="ascii") if args.ca_file else None

    async def run() -> None:
        db = _db()
        try:
            await set_endpoint(
                db,
                args.agency_id,
                url=None if args.remove else args.url,
                ca_pem=ca,
                development=get_settings().profile == "development",
            )
        finally:
            await db.dispose()

    try:
        asyncio.run(run())
    except EndpointError as exc:
        print(f"mappa-gateway: {exc}", file=sys.stderr)
        return 2
    print(f"{args.agency_id}: endpoint {'removed' if args.remove else 'set'}")
    return 0


def _report(checks: list[Any]) -> int:
    for check in checks:
        print(f"{'PASS' if check.passed else 'FAIL'}  {check.name:34} {check.detail}")
    failed = sum(not c.passed for c in checks)
    print(f"{len(checks) - failed} passed, {failed} failed")
    return 1 if failed else 0


def _adapter_conformance(args: argparse.Namespace) -> int:
    import tomllib
    from pathlib import Path

    from adapters.gateway_keys import check_jwks_url
    from adapters.identity import AgencyIdentity
    from gateway.delivery.adapter_conformance import run_adapter_conformance

    folder = Path(args.adapter)
    toml = folder / "adapter.toml"
    try:
        config = tomllib.loads(toml.read_text(encoding="utf-8")) if toml.exists() else {}
        identity = AgencyIdentity.load(folder)
    except (OSError, ValueError, KeyError) as exc:
        print(f"mappa-gateway: cannot read the adapter kit in {folder}: {exc}", file=sys.stderr)
        return 2
    issuer = args.issuer or str(config.get("gateway_issuer") or "")
    if not issuer:
        print("mappa-gateway: no gateway issuer: give --issuer", file=sys.stderr)
        return 2
    try:  # the client takes the gateway's keys from an https issuer only (loopback: http)
        check_jwks_url(f"{issuer.rstrip('/')}/.well-known/jwks.json")
    except ValueError as exc:
        print(f"mappa-gateway: the gateway issuer is refused: {exc}", file=sys.stderr)
        return 2
    verify: str | bool = args.gateway_ca_file or True
    checks = asyncio.run(run_adapter_conformance(identity, issuer, verify=verify))
    print(f"adapter of {identity.agency_id} against {issuer}")
    return _report(checks)


def _conformance(args: argparse.Namespace) -> int:
    if args.adapter:
        return _adapter_conformance(args)
    if not args.agency_id:
        print("mappa-gateway: give an agency id (webhook) or --adapter DIR", file=sys.stderr)
        return 2
    return _webhook_conformance(args)


def _webhook_conformance(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gateway.delivery.conformance import run_conformance
    from gateway.flow.seal import Sealer, agency_public_jwks
    from gateway.keyring import open_key_repository
    from gateway.store.models import Agency

    settings = get_settings()
    sealer = Sealer(
        open_key_repository(settings),
        issuer=settings.issuer,
        max_json_depth=settings.max_json_depth,
    )

    ca_file = Path(args.ca_file).read_text(encoding="ascii") if args.ca_file else None

    async def run() -> tuple[list[Any], str | None]:
        import datetime as dt

        db = _db()
        try:
            async with db.read() as session:
                agency = await session.get(Agency, args.agency_id)
                if agency is None:
                    return [], f"no agency {args.agency_id!r}"
                keys = await agency_public_jwks(
                    session, args.agency_id, "enc", dt.datetime.now(dt.UTC)
                )
                url = args.url or agency.endpoint_url
                ca = ca_file or agency.endpoint_ca_pem
        finally:
            await db.dispose()
        if not url:
            return [], "no endpoint: give --url"
        if not keys:
            return [], "the agency has no current encryption key"
        from gateway.delivery.relay import relay_config

        checks = await run_conformance(
            agency_id=args.agency_id,
            url=url,
            ca_pem=ca,
            recipient_keys=keys,
            sealer=sealer,
            config=relay_config(settings).push,
        )
        return checks, None

    checks, problem = asyncio.run(run())
    if problem:
        print(f"mappa-gateway: {problem}", file=sys.stderr)
        return 2
    return _report(checks)
