"""The IG console over HTTP: sign-in, CSRF, headers, search, proofs, integrity, exports, audit."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, text

from gateway.audit import entry_leaf_hash
from gateway.audit import log as audit_log
from gateway.audit.export import verify_export
from gateway.console.limits import INTEGRITY_REUSE_SECONDS
from gateway.console.render import csv_cell, literal
from gateway.state import GatewayState
from gateway.store.models import AuditEntry
from tests.gateway.console.conftest import OFFICER, Log, csrf_in, sign_in
from tests.gateway.streaming import download


async def _console_entries(state: GatewayState, action: str) -> list[AuditEntry]:
    async with state.db.read() as session:
        rows = await session.execute(
            select(AuditEntry).where(AuditEntry.operation == "console").order_by(AuditEntry.id)
        )
        return [row for row in rows.scalars() if row.detail.get("action") == action]


async def test_pages_need_a_signed_in_officer(browser: httpx.AsyncClient) -> None:
    """Without a session every console page redirects to the sign-in page."""
    for path in (
        "/console",
        "/console/entries",
        "/console/refusals",
        "/console/integrity",
        "/console/entries/x",
        "/console/export.csv",
        "/console/export.jsonl",
    ):
        response = await browser.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"] in ("/console/login", "/console/entries")


async def test_login_page_has_a_strict_policy_and_no_inline_script(
    browser: httpx.AsyncClient,
) -> None:
    """CSP default-src 'self' without 'unsafe-inline'; scripts only by src from the gateway."""
    response = await browser.get("/console/login")
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "frame-ancestors 'none'" in policy
    scripts = re.findall(r"<script[^>]*>", response.text)
    assert scripts == ['<script src="/console/static/htmx.min.js" defer>']
    assert "<style" not in response.text and " style=" not in response.text
    htmx = await browser.get("/console/static/htmx.min.js")
    assert htmx.status_code == 200 and htmx.text.startswith("var htmx=")


async def test_signing_in_sets_a_host_only_secure_strict_cookie_and_is_audited(
    browser: httpx.AsyncClient, state: GatewayState
) -> None:
    """The session cookie is __Host-, Secure, HttpOnly, SameSite=Strict; the login is audited."""
    response = await sign_in(browser)
    assert response.status_code == 303
    assert response.headers["location"] == "/console/entries"
    cookie = next(
        value
        for name, value in response.headers.multi_items()
        if name == "set-cookie" and value.startswith("__Host-mappa-console=")
    )
    lowered = cookie.lower()
    assert "secure" in lowered and "httponly" in lowered and "samesite=strict" in lowered
    assert "path=/" in lowered and "domain=" not in lowered
    (login,) = await _console_entries(state, "login")
    assert login.officer_id == OFFICER and login.outcome == "allowed"


async def test_wrong_password_is_refused_and_the_attempt_audited_literally(
    browser: httpx.AsyncClient, state: GatewayState
) -> None:
    """A failed sign-in answers 401 with no session; the audit keeps the id as typed."""
    page = await browser.get("/console/login")
    typed = "<b>ig.officer</b>\x07"
    response = await browser.post(
        "/console/login",
        data={"officer_id": typed, "password": "nope", "csrf_token": csrf_in(page.text)},
    )
    assert response.status_code == 401
    assert "__Host-mappa-console=" not in response.headers.get("set-cookie", "")
    (failed,) = await _console_entries(state, "login_failed")
    assert failed.outcome == "refused" and failed.officer_id == typed
    assert (await browser.get("/console/entries")).status_code == 303


@pytest.mark.parametrize(
    ("token", "origin"),
    [
        (None, None),  # no CSRF field at all
        ("forged-token", None),  # a token that is not the double-submitted one
        ("from-page", "https://evil.example"),  # right token, posted from another site
    ],
)
async def test_login_post_without_its_csrf_token_or_from_another_origin_is_refused(
    browser: httpx.AsyncClient, state: GatewayState, token: str | None, origin: str | None
) -> None:
    """The sign-in form is protected too: 403 csrf_rejected, no session, and the refusal
    audited (it was not)."""
    page = await browser.get("/console/login")
    data = {"officer_id": OFFICER, "password": "correct horse battery staple"}
    if token is not None:
        data["csrf_token"] = csrf_in(page.text) if token == "from-page" else token
    headers = {"Origin": origin} if origin else {}
    response = await browser.post("/console/login", data=data, headers=headers)
    assert response.status_code == 403
    assert response.json()["code"] == "csrf_rejected"
    (refusal,) = await _console_entries(state, "csrf_rejected")
    assert (refusal.outcome, refusal.reason_code) == ("refused", "csrf_rejected")
    assert refusal.detail["check"] == ("foreign_origin" if origin else "token")
    assert await _console_entries(state, "login") == []


async def test_csrf_refusals_are_audited_only_up_to_the_address_quota(
    browser: httpx.AsyncClient, state: GatewayState
) -> None:
    """A forged form needs no secret: past the address's sign-in bucket a refusal is still
    403, but no longer written to the audit log."""
    burst = state.settings.console_login_address_burst
    for _ in range(burst + 5):
        response = await browser.post("/console/login", data={"csrf_token": "forged"})
        assert response.status_code == 403
    assert len(await _console_entries(state, "csrf_rejected")) == burst


async def test_a_console_form_with_more_fields_than_any_form_has_is_400(
    officer: httpx.AsyncClient, state: GatewayState
) -> None:
    """Nine fields made parse_qsl raise: a 500 before the CSRF check, unauthenticated."""
    fields = "&".join(f"f{i}=1" for i in range(9))
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    for path in ("/console/login", "/console/logout"):
        response = await officer.post(path, content=fields, headers=headers)
        assert response.status_code == 400, (path, response.text)
        assert response.json()["code"] == "malformed_body"
    assert await _console_entries(state, "logout") == []


async def test_logout_needs_the_session_csrf_token_and_ends_the_session(
    officer: httpx.AsyncClient, state: GatewayState
) -> None:
    """A logout POST without the token is refused; with it the cookie stops working."""
    page = await officer.get("/console/entries")
    refused = await officer.post("/console/logout", data={"csrf_token": "wrong"})
    assert refused.status_code == 403
    (refusal,) = await _console_entries(state, "csrf_rejected")
    assert refusal.officer_id == OFFICER
    token = officer.cookies.get("__Host-mappa-console")
    response = await officer.post("/console/logout", data={"csrf_token": csrf_in(page.text)})
    assert response.status_code == 303
    officer.cookies.set("__Host-mappa-console", str(token), domain="gateway.test")
    assert (await officer.get("/console/entries")).status_code == 303


async def test_search_filters_entries_and_is_audited_with_its_filters(
    officer: httpx.AsyncClient, state: GatewayState, log: Log
) -> None:
    """Filtering by agency and purpose shows only matching rows; the search is audited."""
    response = await officer.get("/console/entries", params={"agency": "agency-1"})
    assert response.status_code == 200
    nominals = set(re.findall(r"N000\d\d", response.text))
    assert nominals == {"N00001", "N00004", "N00007", "N00010", "N00013"}
    (search,) = await _console_entries(state, "search")
    assert search.detail["filters"] == {"agency": "agency-1"}


async def test_htmx_search_answers_with_the_results_fragment_only(
    officer: httpx.AsyncClient, log: Log
) -> None:
    """With HX-Request the page answers the results table alone, for htmx to swap in."""
    response = await officer.get(
        "/console/entries", params={"nominal": "N00003"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    assert "<html" not in response.text and "<table" in response.text
    assert "N00003" in response.text and "N00004" not in response.text


async def test_refusals_view_shows_refused_entries_only(
    officer: httpx.AsyncClient, log: Log
) -> None:
    """The refusals page lists the three refusals with their rule and reason."""
    response = await officer.get("/console/refusals")
    assert sorted(set(re.findall(r"N000\d\d", response.text))) == ["N00012", "N00013", "N00014"]
    assert "not_found_for_caller" in response.text


async def test_invalid_filter_shows_an_error_not_a_crash(officer: httpx.AsyncClient) -> None:
    """A malformed date is a 400 page with the reason, and nothing is searched."""
    response = await officer.get("/console/entries", params={"from": "last tuesday"})
    assert response.status_code == 400
    assert "ISO 8601" in response.text


@pytest.mark.parametrize(
    "limit", ["\u00b2", "\u00b9\u00b2", "\u0661\u0662", "\uff11\uff12", "0001", "9" * 200]
)
async def test_a_limit_not_in_ascii_digits_shows_an_error_not_a_crash(
    officer: httpx.AsyncClient, state: GatewayState, limit: str
) -> None:
    """Digits ``str.isdigit`` passes but ASCII has not (a superscript was a 500), or too many: a
    400 page naming the limit, and nothing is searched or audited as a search."""
    response = await officer.get("/console/entries", params={"limit": limit})
    assert response.status_code == 400
    assert "limit: a whole number" in response.text
    assert await _console_entries(state, "search") == []


async def _entry_id(state: GatewayState, nominal: str) -> str:
    async with state.db.read() as session:
        return str(
            await session.scalar(
                select(AuditEntry.entry_id).where(AuditEntry.nominal_ref == nominal)
            )
        )


async def test_entry_detail_shows_its_inclusion_proof_verified(
    officer: httpx.AsyncClient, state: GatewayState, log: Log
) -> None:
    """The detail page checks the proof on the server against the signed checkpoint."""
    entry_id = await _entry_id(state, "N00005")
    response = await officer.get(f"/console/entries/{entry_id}")
    assert response.status_code == 200
    assert 'class="card proof proof-verified"' in response.text
    assert re.search(r"tree size \d+", response.text)
    (view,) = await _console_entries(state, "view")
    assert view.record_refs == [entry_id]


async def test_entry_edited_in_the_database_shows_its_proof_failed(
    officer: httpx.AsyncClient, state: GatewayState, log: Log
) -> None:
    """After an UPDATE behind the gateway's back the page says FAILED, not verified."""
    entry_id = await _entry_id(state, "N00005")
    async with state.db.write() as session:
        await session.execute(
            text("UPDATE audit_entries SET purpose = 'other' WHERE entry_id = :e"), {"e": entry_id}
        )
    response = await officer.get(f"/console/entries/{entry_id}")
    assert 'class="card proof proof-failed"' in response.text
    assert "no longer matches" in response.text


async def test_entry_not_yet_sequenced_is_shown_as_pending(
    officer: httpx.AsyncClient, state: GatewayState, log: Log
) -> None:
    """An entry written after the last checkpoint is pending, not failed."""
    await log.add(99)
    response = await officer.get(f"/console/entries/{await _entry_id(state, 'N00099')}")
    assert 'class="card proof proof-pending"' in response.text


async def test_markup_and_control_characters_are_shown_literally(
    officer: httpx.AsyncClient, state: GatewayState, log: Log
) -> None:
    """Audit text with markup, control and bidi characters is escaped and made visible."""
    await log.add(50, officer_id='<script>alert("x")</script>\x07\u202e', nominal_ref="N00050")
    await log.sequence()
    listing = await officer.get("/console/entries", params={"nominal": "N00050"})
    detail = await officer.get(f"/console/entries/{await _entry_id(state, 'N00050')}")
    for page in (listing.text, detail.text):
        assert "<script>alert" not in page
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;\\x07\\u202e" in page


def test_literal_filter_makes_invisible_characters_visible() -> None:
    """C0, DEL, C1, bidi controls, zero-width and other format characters, separators,
    private-use and unassigned code points become escapes; other text is unchanged."""
    assert literal("a\x00b\x1b\x7f\x85\u202e\u2066c é") == "a\\x00b\\x1b\\x7f\\x85\\u202e\\u2066c é"
    assert literal("d\u200de\ufefff\u2028g\ue000h\u0378i\U000f0000 Ó 警") == (
        "d\\u200de\\ufefff\\u2028g\\ue000h\\u0378i\\U000f0000 Ó 警"
    )
    assert literal({"subject_dn": "CN=a\u202eb"}) == '{"subject_dn": "CN=a\\u202eb"}'
    assert literal(None) == ""


async def test_a_stored_display_name_and_detail_are_shown_with_invisible_characters_visible(
    officer: httpx.AsyncClient, state: GatewayState, log: Log
) -> None:
    """A display name stored before `ig add-officer` refused them, with a right-to-left
    override and a zero-width joiner, and an audit detail with a paragraph separator and a
    BOM, are shown as escapes, never as the characters that would reorder or hide text."""
    async with state.db.write() as session:
        await session.execute(
            text("UPDATE ig_officers SET display_name = :name WHERE id = :id"),
            {"name": "Ida\u202eecnanrevoG\u200d", "id": OFFICER},
        )
    await log.add(51, nominal_ref="N00051", detail={"subject_dn": "CN=X\u2029\ufeffY"})
    await log.sequence()
    listing = await officer.get("/console/entries", params={"nominal": "N00051"})
    detail = await officer.get(f"/console/entries/{await _entry_id(state, 'N00051')}")
    for page in (listing.text, detail.text):
        assert "Ida\\u202eecnanrevoG\\u200d (ig.officer)" in page
        assert not {"\u202e", "\u200d", "\u2029", "\ufeff"} & set(page)
    assert "CN=X\\u2029\\ufeffY" in detail.text


async def test_integrity_page_runs_the_verifier_and_reports_tampering(
    officer: httpx.AsyncClient, state: GatewayState, log: Log
) -> None:
    """The integrity page says verified, then FAILED naming the entry after an edit."""
    healthy = await officer.get("/console/integrity")
    assert 'class="card proof proof-verified"' in healthy.text
    assert re.search(r"All \d+ sequenced entries recomputed", healthy.text)
    assert "mappa-audit" in healthy.text  # the checkpoint note and the verifier key
    async with state.db.write() as session:
        await session.execute(text("UPDATE audit_entries SET rule = 'x' WHERE seq = 4"))
    now = state.clock()  # an edit in place shows once the verdict is no longer reused
    state.clock = lambda: now + dt.timedelta(seconds=INTEGRITY_REUSE_SECONDS + 1)
    tampered = await officer.get("/console/integrity")
    assert "FAILED" in tampered.text and "edited at entry seq 4" in tampered.text


async def test_integrity_page_holds_the_log_to_the_checkpoint_witness(
    officer: httpx.AsyncClient, state: GatewayState, log: Log
) -> None:
    """Entries and checkpoint rows rolled back together agree with themselves in the database;
    the page still says FAILED, from the witness file the sequencer kept outside it."""
    assert state.audit is not None and state.audit.witness is not None
    for i in range(15, 20):
        await log.add(i)
    await log.sequence()
    async with state.db.read() as session:
        latest = await audit_log.latest_checkpoint(session)
    assert latest is not None
    size, cut = latest.tree_size, latest.tree_size - 5
    healthy = await officer.get("/console/integrity")
    assert 'class="card proof proof-verified"' in healthy.text
    assert f"is of size {size}; the log extends it" in healthy.text
    async with state.db.write() as session:
        await session.execute(text("DELETE FROM audit_entries WHERE seq >= :cut"), {"cut": cut})
        await session.execute(
            text("DELETE FROM audit_checkpoints WHERE tree_size > :cut"), {"cut": cut}
        )
    rolled_back = await officer.get("/console/integrity")
    assert 'class="card proof proof-failed"' in rolled_back.text
    assert (
        f"truncated at entry seq {cut}: checkpoint witness covers {size} entries, "
        f"log holds {cut}" in rolled_back.text
    )


async def test_integrity_page_fails_sequenced_entries_that_no_stored_checkpoint_covers(
    officer: httpx.AsyncClient, state: GatewayState, log: Log
) -> None:
    """Every checkpoint row deleted and an entry rewritten with its leaf hash, on a host without
    the witness file: the page says FAILED, not that the log matches a checkpoint of size 0."""
    assert state.audit is not None and state.audit.witness is not None
    state.audit.witness.path.unlink()
    async with state.db.write() as session:
        await session.execute(text("DELETE FROM audit_checkpoints"))
        await session.execute(text("UPDATE audit_entries SET outcome = 'refused' WHERE seq = 3"))
        row = (await session.scalars(select(AuditEntry).where(AuditEntry.seq == 3))).one()
        row.leaf_hash = entry_leaf_hash(audit_log.entry_fields(row)).hex()
    page = await officer.get("/console/integrity")
    assert 'class="card proof proof-failed"' in page.text
    assert re.search(
        r"uncovered at entry seq 0: \d+ entries from seq 0 sequenced but not", page.text
    )
    assert "signed checkpoint of size 0" not in page.text


async def test_integrity_page_says_when_the_witness_is_missing_or_unreadable(
    officer: httpx.AsyncClient, state: GatewayState, log: Log
) -> None:
    """No file yet: the page says the database's checkpoints alone were used. A file that
    cannot be read: the page says so, rather than a plain verified."""
    assert state.audit is not None and state.audit.witness is not None
    path = state.audit.witness.path
    path.unlink()
    missing = await officer.get("/console/integrity")
    assert "proof-verified" in missing.text
    assert f"No witness file at {path} yet" in missing.text
    path.mkdir()  # a directory where the file should be: unreadable
    unreadable = await officer.get("/console/integrity")
    assert f"The witness file {path} cannot be read" in unreadable.text
    assert "the log was not held to it" in unreadable.text


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1+1", "'+1+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t'=1"),  # read with tab as separator, =1 would be a cell of its own
        ("plain", "plain"),
        (None, ""),
    ],
)
def test_csv_cells_that_would_be_formulas_are_neutralised(value: str | None, cell: str) -> None:
    """Cells starting = + - @ (or tab) get a leading apostrophe (and so does a formula after
    a separator inside: tests/gateway/console/test_console_csv.py)."""
    assert csv_cell(value) == cell


async def test_csv_export_is_filtered_neutralised_and_audited(
    officer: httpx.AsyncClient, state: GatewayState, log: Log
) -> None:
    """The CSV holds the filtered entries, formula-looking text defused, and is audited."""
    await log.add(60, officer_id="=cmd|' /C calc'!A0", agency_id="agency-x")
    response = await officer.get("/console/export.csv", params={"agency": "agency-x"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [row["officer_id"] for row in rows] == ["'=cmd|' /C calc'!A0"]
    (export,) = await _console_entries(state, "export_csv")
    assert export.detail["filters"] == {"agency": "agency-x"}


async def test_export_pack_download_verifies_offline(
    officer: httpx.AsyncClient, state: GatewayState, log: Log, tmp_path: Path
) -> None:
    """The pack from the console verifies with `audit verify --export`'s function."""
    response = await officer.get("/console/export.jsonl")
    assert response.status_code == 200
    pack = tmp_path / "pack.jsonl"
    pack.write_bytes(response.content)
    assert state.audit is not None
    report = verify_export(pack, verifier_keys=state.audit.verifier_keys())
    assert report.ok and report.tree_size >= 15
    assert await _console_entries(state, "export_pack")


async def test_console_session_also_authenticates_the_ig_api(
    officer: httpx.AsyncClient, log: Log
) -> None:
    """The signed-in officer may read /v1/audit/entries with the console session."""
    response = await officer.get("/v1/audit/entries", params={"outcome": "refused"})
    assert response.status_code == 200
    assert len(response.json()["entries"]) == 3


async def test_idle_session_expires(officer: httpx.AsyncClient, state: GatewayState) -> None:
    """After the idle timeout the cookie no longer opens the console."""
    import datetime as dt

    later = dt.datetime.now(dt.UTC) + dt.timedelta(
        seconds=state.settings.console_session_idle_seconds + 1
    )
    state.clock = lambda: later
    assert (await officer.get("/console/entries")).status_code == 303


async def test_console_action_fails_503_when_it_cannot_be_audited(
    officer: httpx.AsyncClient, state: GatewayState, log: Log
) -> None:
    """No audit, no disclosure, in the console too: a search that cannot be recorded is a 503."""
    from sqlalchemy import event

    writer = state.db.writer
    async with writer.connect() as conn:
        pages = (await conn.exec_driver_sql("PRAGMA page_count")).scalar_one()

    @event.listens_for(writer.sync_engine, "connect")
    def cap(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        dbapi_connection.cursor().execute(f"PRAGMA max_page_count={pages}")

    await writer.dispose()
    from gateway.errors import StoreUnavailable  # fill every free page of the file

    # Large rows first, then ever smaller ones into what is left of the last pages, so that
    # not even a small entry fits, however the schema happens to lay out its pages.
    written = 0
    for pad in (4000, 400, 40, 0):
        try:
            for _ in range(10_000):
                await log.add(1000 + written, detail={"pad": "x" * pad})
                written += 1
        except StoreUnavailable:
            pass
    response = await officer.get("/console/entries", params={"nominal": "N00003"})
    assert response.status_code == 503
    assert response.json()["code"] == "audit_unavailable"
    assert "N00003" not in response.text  # the page was never rendered


async def test_export_pack_is_streamed_in_bounded_chunks_and_verifies(
    officer: httpx.AsyncClient, state: GatewayState, log: Log, tmp_path: Path
) -> None:
    """The pack leaves the gateway as many body messages of about 64 KiB, never one whole
    document built in memory; joined, it verifies offline and covers the signed tree."""
    from gateway.flow.audit import AuditEvent, Operation, Outcome, record

    async with state.db.write() as session:
        for i in range(600):
            record(
                session,
                AuditEvent(
                    operation=Operation.CONSULTATION,
                    outcome=Outcome.ALLOWED,
                    agency_id="agency-bulk",
                    nominal_ref=f"N{i:05d}",
                    detail={"pad": "p" * 300},
                ),
            )
    await log.sequence()
    app = officer._transport.app  # type: ignore[attr-defined]
    cookie = f"__Host-mappa-console={officer.cookies.get('__Host-mappa-console')}"
    status, bodies = await download(app, "/console/export.jsonl", cookie)
    assert status == 200
    assert len(bodies) >= 4, [len(b) for b in bodies]
    assert max(len(b) for b in bodies) < 64 * 1024 + 4096
    pack = tmp_path / "streamed.jsonl"
    pack.write_bytes(b"".join(bodies))
    assert state.audit is not None
    report = verify_export(pack, verifier_keys=state.audit.verifier_keys())
    assert report.ok and report.tree_size >= 615
    (export,) = await _console_entries(state, "export_pack")
    assert export.detail["tree_size"] == report.tree_size


async def test_export_pack_before_any_checkpoint_is_503_and_streams_nothing(
    officer: httpx.AsyncClient,
) -> None:
    """Without a signed checkpoint there is nothing verifiable to export: 503, no pack."""
    response = await officer.get("/console/export.jsonl")
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
