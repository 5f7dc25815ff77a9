"""``mappa-gateway demo adapters``: the four demo agencies' adapters and stand-in systems.

Each demo agency (``gateway.demo.DEMO_AGENCIES``) gets its adapter, a stand-in system (a JSON
store under ``var/demo/standins/``, seeded with a family record in the ICS and a property in the
housing system) and a receiver on ``127.0.0.1`` at the port ``demo init`` registered as its
endpoint. Deliveries print one line each (ids, kinds and actions only).

The receivers serve https, as any partner's endpoint must: ``demo init`` makes each demo agency
its own development CA (:class:`keys.DevelopmentCA`, for the loopback only) and a server
certificate under ``var/demo/agencies/<id>/tls/`` (:func:`ensure_demo_tls`), and registers the
CA with the agency's endpoint, so the relay's per-partner TLS context trusts that CA alone.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from adapters.childrens_services import ChildrensServicesAdapter
from adapters.housing import HousingAdapter
from adapters.identity import AgencyIdentity
from adapters.police import PoliceAdapter
from adapters.probation import ProbationAdapter
from adapters.receiver import Receiver, SeenDeliveries, serve, stop_on_signals
from adapters.sdk import Adapter, Delivery, Receipt
from adapters.standin import JsonStore
from keys import DevelopmentCA, KeyInvalid, certificate_expires
from keys.x509 import CA_FILE, CERTIFICATE_FILE, PRIVATE_KEY_FILE

__all__ = [
    "DEMO_PORTS",
    "demo_endpoint",
    "demo_receiver",
    "demo_tls_dir",
    "ensure_demo_tls",
    "run_demo_adapters",
    "standin_path",
]

#: Agency id -> (adapter, port).
DEMO_PORTS: dict[str, tuple[str, int]] = {
    "barnet-police": ("police", 8101),
    "barnet-probation": ("probation", 8102),
    "barnet-childrens-services": ("childrens_services", 8103),
    "barnet-housing": ("housing", 8104),
}

_SEED: dict[str, dict[str, Any]] = {
    "childrens_services": {
        "ics_records": {
            "FAM-20931": {
                "ref": "FAM-20931",
                "team_contact": "Barnet Conference & Review Team",
                "people": [{"family_name": "Demo", "date_of_birth": "2016-09-01"}],
                "alerts": [],
            }
        }
    },
    "housing": {
        "properties": {
            "200004512345": {
                "uprn": "200004512345",
                "address": "1 Demo Close, Barnet",
                "markers": [],
            }
        }
    },
}


#: A demo certificate is renewed by ``demo init`` when it has less than this left.
_RENEW_BEFORE = dt.timedelta(days=7)


def demo_endpoint(agency_id: str) -> str | None:
    found = DEMO_PORTS.get(agency_id)
    return f"https://127.0.0.1:{found[1]}/mappa/deliveries" if found else None


def demo_tls_dir(demo_dir: Path, agency_id: str) -> Path:
    """Where a demo agency's CA certificate, server certificate and server key are kept."""
    return demo_dir / "agencies" / agency_id / "tls"


def ensure_demo_tls(demo_dir: Path, agency_id: str, *, now: dt.datetime | None = None) -> str:
    """The agency's demo CA certificate (PEM), with a server certificate for the loopback signed
    by it; both made afresh when missing, unreadable or within a week of expiry (the CA's key
    is dropped once the server certificate is issued: a renewal is a new CA)."""
    at = now or dt.datetime.now(dt.UTC)
    folder = demo_tls_dir(demo_dir, agency_id)
    paths = [folder / name for name in (CA_FILE, CERTIFICATE_FILE, PRIVATE_KEY_FILE)]
    if all(path.exists() for path in paths):
        ca_pem = paths[0].read_text(encoding="ascii")
        try:
            expires = min(
                certificate_expires(ca_pem),
                certificate_expires(paths[1].read_text(encoding="ascii")),
            )
        except (KeyInvalid, UnicodeDecodeError):
            expires = at
        if expires - at > _RENEW_BEFORE:
            return ca_pem
    ca = DevelopmentCA.generate(f"{agency_id} demo CA", now=at)
    ca.issue_server(name=f"{agency_id} demo receiver", now=at).save(folder)
    ca.save(folder)
    return ca.certificate_pem


def _adapter(name: str, store: JsonStore, identity: AgencyIdentity) -> Adapter:
    if name == "police":
        return PoliceAdapter(store, idempotency_secret=identity.idempotency_secret())
    if name == "probation":
        return ProbationAdapter(store)
    if name == "childrens_services":
        return ChildrensServicesAdapter(store)
    return HousingAdapter(store)


def _print(agency_id: str) -> Any:
    def show(delivery: Delivery, receipt: Receipt) -> None:
        refs = ",".join(receipt.references) or "-"
        print(f"[{agency_id}] {delivery.kind} {delivery.message_id}: {receipt.action} ({refs})")

    return show


def standin_path(demo_dir: Path, agency_id: str) -> Path:
    """The demo agency's stand-in system (a JSON store)."""
    return demo_dir / "standins" / f"{DEMO_PORTS[agency_id][0]}.json"


def demo_receiver(demo_dir: Path, agency_id: str, issuer: str) -> Receiver:
    """The demo agency's receiver: its adapter on its stand-in system (seeded when new), and
    the ids it applied kept beside it, so that a restart of the demo refuses a replay."""
    name = DEMO_PORTS[agency_id][0]
    identity = AgencyIdentity.load(demo_dir / "agencies" / agency_id)
    path = standin_path(demo_dir, agency_id)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = JsonStore(path)
    for collection, records in _SEED.get(name, {}).items():
        for key, value in records.items():
            if store.get(collection, key) is None:
                store.put(collection, key, value)
    return Receiver(
        identity,
        _adapter(name, store, identity),
        issuer,
        jwks_url=issuer.rstrip("/") + "/.well-known/jwks.json",
        on_receipt=_print(agency_id),
        list_received=True,  # the demo's GET /mappa/received; never in production
        # the signed message ids already applied, kept across restarts (replays refused)
        seen=SeenDeliveries(path.parent / f"{name}-seen-deliveries.sqlite3"),
    )


async def run_demo_adapters(
    demo_dir: Path,
    issuer: str,
    *,
    ports: Mapping[str, int] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve the four receivers until SIGINT/SIGTERM, or until ``stop`` is set when given (then
    no signal handler is installed). ``ports`` overrides :data:`DEMO_PORTS` per agency (a test
    runs the demo on free ports and registers those endpoints)."""
    for agency_id in DEMO_PORTS:
        tls = demo_tls_dir(demo_dir, agency_id)
        if not (tls / CERTIFICATE_FILE).exists() or not (tls / PRIVATE_KEY_FILE).exists():
            raise FileNotFoundError(f"no TLS certificate in {tls}: run mappa-gateway demo init")
    if stop is None:
        stop = stop_on_signals()
    tasks = []
    for agency_id, (name, default_port) in DEMO_PORTS.items():
        port = (ports or {}).get(agency_id, default_port)
        receiver = demo_receiver(demo_dir, agency_id, issuer)
        path = standin_path(demo_dir, agency_id)
        tls = demo_tls_dir(demo_dir, agency_id)
        tasks.append(
            asyncio.create_task(
                serve(
                    receiver,
                    port,
                    ssl_certfile=str(tls / CERTIFICATE_FILE),
                    ssl_keyfile=str(tls / PRIVATE_KEY_FILE),
                    stop=stop,
                )
            )
        )
        print(f"{agency_id:28} {name:20} https://127.0.0.1:{port}  stand-in {path}")
    print("waiting for deliveries (Ctrl-C to stop)")
    await asyncio.gather(*tasks)
    print(json.dumps({"stopped": list(DEMO_PORTS)}))
