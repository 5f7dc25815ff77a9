"""``mappa-gateway demo adapters``: the four demo agencies' adapters and stand-in systems.

Each demo agency (``gateway.demo.DEMO_AGENCIES``) gets its adapter, a stand-in system (a JSON
store under ``var/demo/standins/``, seeded with a family record in the ICS and a property in the
housing system) and a receiver on ``127.0.0.1`` at the port ``demo init`` registered as its
endpoint. Deliveries print one line each (ids, kinds and actions only). Development only: the
demo endpoints are plain http on the loopback, which the relay uses only with
``MAPPA_UNSAFE_RELAY_PLAIN_HTTP_LOOPBACK=true``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from adapters.childrens_services import ChildrensServicesAdapter
from adapters.housing import HousingAdapter
from adapters.identity import AgencyIdentity
from adapters.police import PoliceAdapter
from adapters.probation import ProbationAdapter
from adapters.receiver import Receiver, serve
from adapters.sdk import Adapter, Delivery, Receipt
from adapters.standin import JsonStore

__all__ = ["DEMO_PORTS", "demo_endpoint", "run_demo_adapters"]

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


def demo_endpoint(agency_id: str) -> str | None:
    found = DEMO_PORTS.get(agency_id)
    return f"http://127.0.0.1:{found[1]}/mappa/deliveries" if found else None


def _adapter(name: str, store: JsonStore) -> Adapter:
    if name == "police":
        return PoliceAdapter(store)
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
    standins = demo_dir / "standins"
    standins.mkdir(parents=True, exist_ok=True, mode=0o700)
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
    tasks = []
    for agency_id, (name, default_port) in DEMO_PORTS.items():
        port = (ports or {}).get(agency_id, default_port)
        identity = AgencyIdentity.load(demo_dir / "agencies" / agency_id)
        path = standins / f"{name}.json"
        store = JsonStore(path)
        for collection, records in _SEED.get(name, {}).items():
            for key, value in records.items():
                if store.get(collection, key) is None:
                    store.put(collection, key, value)
        receiver = Receiver(
            identity,
            _adapter(name, store),
            issuer,
            jwks_url=issuer.rstrip("/") + "/.well-known/jwks.json",
            on_receipt=_print(agency_id),
        )
        tasks.append(asyncio.create_task(serve(receiver, port, stop=stop)))
        print(f"{agency_id:28} {name:20} http://127.0.0.1:{port}  stand-in {path}")
    print("waiting for deliveries (Ctrl-C to stop)")
    await asyncio.gather(*tasks)
    print(json.dumps({"stopped": list(DEMO_PORTS)}))
