"""The demo, end to end, over real HTTP on 127.0.0.1: what `make run` shows a newcomer.

`mappa-gateway demo init` onboards Barnet's police, probation, children's services and housing
(and an IG officer) into a fresh SQLite database, with a development CA and a server certificate
per agency; `mappa-gateway serve` runs the gateway (and its relay, with no plain-http allowance)
on a free port; the four demo adapters' receivers and stand-in systems serve https on free ports
registered as the agencies' push endpoints, each with its agency's CA, so every push is over TLS
trusting that partner's CA alone. Each agency then acts through its own `GatewayClient` and demo
keys:

1. police refer the subject (MAPPA A, mapped from a police nominal by the police adapter);
2. probation set level 2 (nDelius `M2`, mapped by the probation adapter); police hear of it;
3. a level 2 meeting is held and its minutes circulated to the participants;
4. children's services receive a hazard flag through their adapter: the ICS stand-in shows
   `HZD` on the family's record, with no offence and no third-party text anywhere in it;
5. housing receive a property warning marker: `PWM` on the property, nothing else;
6. the IG officer verifies the log (`mappa-gateway audit verify`) and, signed in to the console,
   finds every one of those steps in `GET /v1/audit/entries`.

Every wait is a poll with a deadline; nothing listens beyond 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.client import ContextHeaders, GatewayClient, GatewayResponseError, Opened
from adapters.demo import DEMO_PORTS, demo_tls_dir, run_demo_adapters
from adapters.identity import AgencyIdentity
from adapters.police import PoliceAdapter
from adapters.probation import ProbationAdapter, level_from
from adapters.standin import JsonStore
from gateway.delivery.push import partner_ssl_context

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
POLICE = "barnet-police"
PROBATION = "barnet-probation"
CS = "barnet-childrens-services"
HOUSING = "barnet-housing"
FAMILY_REF = "FAM-20931"  # seeded in the ICS stand-in by the demo
UPRN = "200004512345"  # seeded in the housing stand-in by the demo
BASIS = "CJA2003-s325-4"
PURPOSE = "risk-management"

# Personal data, offence detail and third-party content: searched for in the stand-ins.
FAMILY_NAME = "Quillington"
DATE_OF_BIRTH = "1981-02-09"
HOME = "7 Larkspur Mews, Barnet EN4 9QQ"
REASONS = "Released on licence; convicted of indecent assault on a child; intends to contact family"
OFFENCE = "Indecent assault on a female under 14, Snaresbrook Crown Court 2011"
NEIGHBOUR = "Mr Aurelio Fennimore-Blake of 9 Larkspur Mews"
NEIGHBOUR_TEXT = "Neighbour saw him waiting by the primary school gates on Tuesday afternoons"
NEEDLES = (FAMILY_NAME, DATE_OF_BIRTH, HOME, REASONS, OFFENCE, NEIGHBOUR, NEIGHBOUR_TEXT)


def _free_ports(count: int) -> list[int]:
    """``count`` distinct free ports on 127.0.0.1 (held open together while chosen)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def _environment(var: Path, port: int) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("MAPPA_UNSAFE_")}
    return {
        **inherited,
        "MAPPA_PROFILE": "development",
        "MAPPA_DATABASE_URL": f"sqlite+aiosqlite:///{var / 'mappa.db'}",
        "MAPPA_KEYS_DIR": str(var / "keys"),
        "MAPPA_KEK_FILE": str(var / "kek.bin"),
        "MAPPA_ISSUER": f"http://127.0.0.1:{port}",
        "MAPPA_LOG_LEVEL": "warning",
        "MAPPA_AUDIT_SEQUENCE_INTERVAL_SECONDS": "0.2",
        "MAPPA_RELAY_INTERVAL_SECONDS": "0.1",
        "MAPPA_RELAY_BACKOFF_BASE_SECONDS": "0.2",
        "MAPPA_RELAY_BACKOFF_CAP_SECONDS": "1",
    }


def _registered_endpoints(var: Path) -> dict[str, tuple[str, str]]:
    """Each agency's registered push endpoint and CA, as the gateway's database holds them."""
    db = sqlite3.connect(var / "mappa.db")
    try:
        rows = db.execute("SELECT id, endpoint_url, endpoint_ca_pem FROM agencies").fetchall()
    finally:
        db.close()
    return {agency_id: (url, ca) for agency_id, url, ca in rows}


async def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``mappa-gateway <args>`` from this checkout, in a thread (the receivers keep serving)."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gateway.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def _until(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool], what: str, within: float = 30
) -> None:
    """Poll ``check`` until it holds, or fail naming ``what`` after ``within`` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def _gateway(env: dict[str, str], issuer: str) -> AsyncIterator[None]:
    """``mappa-gateway serve`` (with its relay and sequencer) until the block ends."""
    port = issuer.rsplit(":", 1)[1]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "gateway.cli", "serve", "--host", "127.0.0.1", "--port", port),
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient(timeout=2) as http:

            async def ready() -> bool:
                if process.returncode is not None:
                    raise AssertionError(f"the gateway exited with {process.returncode}")
                try:
                    return (await http.get(f"{issuer}/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await _until(ready, "the gateway to be ready", within=60)
        yield
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=20)
            except TimeoutError:
                process.kill()
                await asyncio.wait_for(process.wait(), timeout=10)


@contextlib.asynccontextmanager
async def _receivers(demo: Path, issuer: str, ports: dict[str, int]) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(run_demo_adapters(demo, issuer, ports=ports, stop=stop))
    try:
        for agency_id, port in ports.items():
            ca_pem = (demo_tls_dir(demo, agency_id) / "ca.pem").read_text()
            # Only over TLS, vouched for by the agency's own CA.
            async with httpx.AsyncClient(timeout=2, verify=partner_ssl_context(ca_pem)) as http:

                async def listening(port: int = port) -> bool:
                    if task.done():
                        task.result()  # raises what stopped them
                    try:
                        await http.get(f"https://127.0.0.1:{port}/mappa/received")
                    except httpx.TransportError:
                        return False
                    return True

                await _until(listening, f"the demo receiver on {port}")
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=20)


def _store_text(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.exists() else ""


async def _post(
    client: GatewayClient, context: ContextHeaders, path: str, body: dict[str, Any], key: str
) -> dict[str, Any]:
    try:
        answer = await client.call("POST", path, context, body=body, idempotency_key=key)
    except GatewayResponseError as exc:
        raise AssertionError(f"POST {path}: {exc.status} {exc.problem}") from exc
    assert isinstance(answer, Opened), answer
    return answer.body


async def _sign_in(http: httpx.AsyncClient, issuer: str, password_file: Path) -> str:
    """The IG officer's console session cookie (set Secure; sent by hand over the loopback)."""
    text = await asyncio.to_thread(password_file.read_text, encoding="utf-8")
    lines = dict(line.split(": ", 1) for line in text.splitlines())
    page = await http.get(f"{issuer}/console/login")
    assert page.status_code == 200, page.status_code
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf is not None
    login_cookie = "; ".join(f"{k}={v}" for k, v in page.cookies.items())
    signed_in = await http.post(
        f"{issuer}/console/login",
        data={
            "officer_id": lines["officer"],
            "password": lines["password"],
            "csrf_token": csrf.group(1),
        },
        headers={"Cookie": login_cookie},
    )
    assert signed_in.status_code == 303, signed_in.text
    session = [f"{k}={v}" for k, v in signed_in.cookies.items() if "console" in k]
    assert session, "no console session cookie"
    return "; ".join(session)


async def test_demo_flow_end_to_end_over_real_http(tmp_path: Path) -> None:
    """Referral, level change, level 2 meeting, HZD in the ICS, PWM in housing, and the IG
    officer sees every step in a verified audit log."""
    gateway_port, *adapter_ports = _free_ports(1 + len(DEMO_PORTS))
    ports = dict(zip(DEMO_PORTS, adapter_ports, strict=True))
    issuer = f"http://127.0.0.1:{gateway_port}"
    var = tmp_path / "var"
    env = _environment(var, gateway_port)
    demo = var / "demo"

    assert not any(name.startswith("MAPPA_UNSAFE_") for name in env)
    initialised = await _cli(env, "demo", "init")
    assert initialised.returncode == 0, initialised.stderr
    # demo init registered each agency's receiver over https with the agency's own CA.
    for agency_id, (url, ca_pem) in _registered_endpoints(var).items():
        assert url == f"https://127.0.0.1:{DEMO_PORTS[agency_id][1]}/mappa/deliveries"
        assert ca_pem == (demo_tls_dir(demo, agency_id) / "ca.pem").read_text()
    # The test's receivers listen on free ports: the same CAs, registered by hand.
    for agency_id, port in ports.items():
        registered = await _cli(
            env,
            *("partner", "endpoint", agency_id, f"https://127.0.0.1:{port}/mappa/deliveries"),
            *("--ca-file", str(demo_tls_dir(demo, agency_id) / "ca.pem")),
        )
        assert registered.returncode == 0, registered.stderr
    endpoints = _registered_endpoints(var)
    assert all(url.startswith("https://") for url, _ in endpoints.values()), endpoints
    assert len({ca for _, ca in endpoints.values()}) == len(DEMO_PORTS)  # a CA per partner

    standins = demo / "standins"
    ics = standins / "childrens_services.json"
    housing = standins / "housing.json"
    police_system = standins / "police.json"
    async with (
        _receivers(demo, issuer, ports),
        _gateway(env, issuer),
        httpx.AsyncClient(timeout=30, follow_redirects=False) as http,
    ):
        clients = {
            agency_id: GatewayClient(
                AgencyIdentity.load(demo / "agencies" / agency_id), issuer, http
            )
            for agency_id in DEMO_PORTS
        }
        police_ctx = ContextHeaders(BASIS, PURPOSE, "DC-4471")
        probation_ctx = ContextHeaders(BASIS, PURPOSE, "PO-1180")
        today = dt.date.today()

        # 1. Police refer: the police system's nominal, mapped by the police adapter (MAPPA A).
        police_nominal = {
            "pnc_id": "11/0456123K",
            "visor_ref": "VR-0099812",
            "person": {"surname": FAMILY_NAME, "forenames": "Vernon", "dob": DATE_OF_BIRTH},
            "address": HOME,
            "mappa_category": 1,
            "referral_reason": REASONS,
            "rosh": [{"group": "CHILD", "level": "VH"}, {"group": "PUBLIC", "level": "M"}],
            "warning_markers": [],
            "officer": {"name": "DC Example", "contact": "Barnet Jigsaw team, 020 7946 0000"},
        }
        police_adapter = PoliceAdapter(
            idempotency_secret=clients[POLICE].identity.idempotency_secret()
        )
        [referral] = police_adapter.to_contract(police_nominal)
        assert (referral.method, referral.path) == ("POST", "/v1/referrals")
        referred = await _post(
            clients[POLICE], police_ctx, referral.path, referral.body, str(referral.idempotency_key)
        )
        nominal_id = referred["nominal_id"]
        assert referred["status"] == "received"

        # 2. Probation set the level from nDelius: MAPP registration, level code M2, on the
        # nominal the gateway finds by the PNC id nDelius holds (it does not know this CRN).
        offender = {
            "crn": "X903311",
            "pnc": police_nominal["pnc_id"],
            "registrations": [
                {
                    "id": "R-2201",
                    "type": "MAPP",
                    "category": "M1",
                    "level": "M2",
                    "date": "2026-11-01",
                }
            ],
        }
        [registration] = ProbationAdapter().to_contract(offender)
        assert registration.body["level"] == level_from("M2") == 2
        changed = await clients[PROBATION].send(registration, probation_ctx)
        assert isinstance(changed, Opened), changed
        assert (changed.body["id"], changed.body["level"]) == (nominal_id, 2)

        # Police, the lead agency, hear of it through their adapter.
        def police_told() -> bool:
            record = (
                JsonStore(police_system).get("nominals", nominal_id)
                if police_system.exists()
                else None
            )
            return record is not None and record.get("mappa_level") == 2

        await _until(police_told, "the level change in the police system")

        # 3. The level 2 meeting, police in the chair, and its minutes to the participants.
        meeting = await _post(
            clients[POLICE],
            police_ctx,
            "/v1/meetings",
            {
                "nominal_id": nominal_id,
                "meeting_type": "level_2",
                "held_on": today.isoformat(),
                "chair_officer": "DI-0412",
                "participants": [
                    {"agency_id": PROBATION, "participation": "attended"},
                    {"agency_id": CS, "participation": "attended"},
                    {"agency_id": HOUSING, "participation": "attended"},
                ],
                "confidentiality_statement_signed": True,
            },
            "demo-meeting-1",
        )
        minutes = await _post(
            clients[POLICE],
            police_ctx,
            f"/v1/meetings/{meeting['id']}/minutes",
            {
                "discussion": [
                    {"id": "d1", "text": f"Index offence: {OFFENCE}", "source": "s1"},
                    {"id": "d2", "text": NEIGHBOUR_TEXT, "source": "s2"},
                ],
                "sources": [
                    {"id": "s1", "kind": "agency", "description": "Police", "third_party": False},
                    {
                        "id": "s2",
                        "kind": "neighbour",
                        "description": NEIGHBOUR,
                        "third_party": True,
                    },
                ],
                "conclusions": [{"id": "k1", "text": "Manage at level 2; flag the household"}],
                "risk_management_plan": "Exclusion zone around the school; weekly reporting",
            },
            "demo-minutes-1",
        )
        assert minutes["status"] == "circulated"

        # 4. The hazard flag: HZD on the family's ICS record, through the adapter, no details.
        flagged = await _post(
            clients[POLICE],
            police_ctx,
            "/v1/hazard-flags",
            {
                "nominal_id": nominal_id,
                "recipient_agency_id": CS,
                "child_or_family_ref": FAMILY_REF,
                "relationship": "father",
                "contact": {"role": "mappa_unit", "telephone": "020 8359 0000"},
                "review_date": (today + dt.timedelta(days=90)).isoformat(),
            },
            "demo-flag-1",
        )

        def hzd_written() -> bool:
            family = JsonStore(ics).get("ics_records", FAMILY_REF) or {}
            return any(alert.get("code") == "HZD" for alert in family.get("alerts", []))

        await _until(hzd_written, "the HZD alert in the ICS stand-in")
        [alert] = (JsonStore(ics).get("ics_records", FAMILY_REF) or {})["alerts"]
        assert set(alert) == {
            "code",
            "relationship",
            "contact",
            "review_date",
            "message_id",
            "raised_on",
        }
        assert (alert["code"], alert["relationship"]) == ("HZD", "father")

        # 5. The property warning marker: PWM on the property in the housing system.
        marked = await _post(
            clients[POLICE],
            police_ctx,
            "/v1/warning-markers",
            {
                "nominal_id": nominal_id,
                "recipient_agency_id": HOUSING,
                "uprn": UPRN,
                "marker": "PWM",
                "contact": {"role": "mappa_unit", "telephone": "020 8359 0000"},
                "review_date": (today + dt.timedelta(days=90)).isoformat(),
            },
            "demo-marker-1",
        )

        def pwm_written() -> bool:
            prop = JsonStore(housing).get("properties", UPRN) or {}
            return any(marker.get("code") == "PWM" for marker in prop.get("markers", []))

        await _until(pwm_written, "the PWM marker in the housing stand-in")
        [pwm] = (JsonStore(housing).get("properties", UPRN) or {})["markers"]
        assert set(pwm) == {"code", "contact", "review_date", "marker_id", "message_id"}

        # Neither stand-in holds anything about the person, the offence or the neighbour
        # (children's services and housing also received the minutes: filed, not copied).
        for path in (ics, housing):
            text = _store_text(path)
            for needle in NEEDLES:
                assert needle not in text, (path.name, needle)

        # The housing adapter's own client meets the contract against the running gateway.
        checked = await _cli(
            env, "conformance", "--adapter", str(demo / "agencies" / HOUSING), "--issuer", issuer
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "5 passed, 0 failed" in checked.stdout, checked.stdout

        # No Idempotency-Key the gateway remembers carries the PNC id, in any spelling.
        db = sqlite3.connect(var / "mappa.db")
        try:
            remembered = [key for (key,) in db.execute("SELECT key FROM idempotency_keys")]
        finally:
            db.close()
        assert any(key.startswith("police-referral-") for key in remembered), remembered
        assert not [key for key in remembered if "0456123" in key], remembered

        # 6. The IG officer: the log verifies, and every step is in it.
        verified = await _cli(env, "audit", "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert verified.stdout.startswith("audit log verified"), verified.stdout
        cookie = await _sign_in(http, issuer, demo / "ig-officer.txt")
        found = await http.get(
            f"{issuer}/v1/audit/entries",
            params={"nominal": nominal_id, "limit": "500"},
            headers={"Cookie": cookie},
        )
        assert found.status_code == 200, found.text
        entries = found.json()["entries"]
        steps = {
            (e["operation"], e["agency_id"], e["detail"].get("resource"), tuple(e["recipients"]))
            for e in entries
            if e["outcome"] == "allowed"
        }
        refs = {ref for e in entries for ref in e["record_refs"]}

        def step(operation: str, agency: str, resource: str | None, *to: str) -> bool:
            return (operation, agency, resource, to) in steps

        assert any(e["operation"] == "collection" and e["agency_id"] == POLICE for e in entries)
        assert any(
            e["operation"] == "alteration"
            and e["agency_id"] == PROBATION
            and e["detail"].get("change") == "level"
            for e in entries
        )
        assert step("disclosure", PROBATION, "level_change", POLICE)
        assert meeting["id"] in refs and minutes["id"] in refs
        for participant in (PROBATION, CS, HOUSING):
            assert step("disclosure", POLICE, "minutes", participant), participant
        assert step("disclosure", POLICE, "hazard_flag", CS) and flagged["id"] in refs
        assert step("disclosure", POLICE, "warning_marker", HOUSING) and marked["id"] in refs
        for entry in entries:
            assert entry["nominal_ref"] == nominal_id
            text = json.dumps(entry)
            for needle in NEEDLES:
                assert needle not in text, needle
