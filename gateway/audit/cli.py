"""``mappa-gateway audit``: sequence, verify, export, and save the latest checkpoint.

- ``audit sequence``: integrate every unsequenced entry and sign a checkpoint, once (the app does
  this in the background; this is for operators and for gateways run with the interval at 0).
  Exit status 1, with the reason code, when the sequencer refuses because the log no longer
  matches its signed checkpoint or the checkpoint witness (`gateway.audit.sequencer`).
- ``audit checkpoint [--out FILE]``: print or save the latest signed checkpoint. Saved somewhere
  the database's administrators cannot write, it is what later verifications are checked against.
- ``audit verify [--export FILE] [--checkpoint FILE] [--verifier-key KEY]``: recompute every leaf
  and the tree head, from the database (default) or from an export pack, offline, against the
  given checkpoint (default: the latest in the database or the pack) and name the first bad
  entry. The database is also held to the checkpoint witness (`gateway.audit.witness`) when
  its file exists. A pack is verified with the keys given, or without them with this gateway's
  own checkpoint key where its key directory is, never with the keys inside the pack (anyone
  can sign a pack with a key of their own): with neither, nothing is verified (exit 2). Exit
  status 0 when the log verifies, 1 when it does not, 2 when it cannot be checked.
- ``audit resign-head [--checkpoint FILE]``: after the checkpoint key was retired at once (a
  compromise), sign the log's latest head again with the new current key, once every entry has
  been re-hashed into that head and the head held to the checkpoint witness and to ``FILE``, a
  checkpoint saved before the compromise (`gateway.audit.resign`); records an ``administration``
  entry. Run on each host that keeps a witness file. Exit status 0 when the head is the current
  key's and the witness holds it, 1 when a check refuses (nothing signed) or the witness cannot
  be written, 2 when it cannot be run.
- ``audit export --out FILE [--area CODE ... [--since CHECKPOINT]]``: write the verifiable
  export pack (`gateway.audit.export`), or with ``--area`` the scoped pack of those areas'
  entries, each with its inclusion proof (`gateway.audit.scoped`), which ``audit verify
  --export`` reads too; ``--since`` a checkpoint saved earlier (only its tree size is read
  here) puts in the pack the consistency proof from its tree, so that ``audit verify --export
  PACK --checkpoint CHECKPOINT`` holds the scoped pack to it.
- ``audit origin ENTRY_ID [--jws-out FILE]``: the agency's signed JWS of the write that entry
  records, verified against the agency's key registered at the time (`gateway.audit.origin`);
  prints the checks (never the JWS), writes the JWS to ``FILE`` (mode 0600) if asked. The
  consultation is audited. Exit status 0 when every check holds, 1 when one fails, 2 when there
  is no evidence or it cannot be read.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from gateway.audit.checkpoint import (
    CheckpointVerifier,
    VerifierKey,
    parse_checkpoint,
    parse_signed_note,
    parse_verifier_key,
)
from gateway.audit.errors import CheckpointError
from gateway.audit.export import ExportError, read_export, verify_database, verify_export
from gateway.audit.log import iter_log, latest_checkpoint_note
from gateway.audit.scoped import (
    NOT_PROVEN,
    UnprovableError,
    is_scoped_pack,
    verify_scoped_export,
)
from gateway.audit.service import AuditKeysUnavailable, open_audit_keys
from gateway.audit.verify import VerificationReport
from gateway.audit.witness import read_witness
from gateway.errors import AuditLogInconsistent, InvalidParameter, ValidationFailed
from gateway.settings import get_settings

__all__ = ["register"]


def register(subparsers: Any) -> None:
    audit = subparsers.add_parser("audit", help="The tamper-evident audit log")
    sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")

    sequence = sub.add_parser("sequence", help="Integrate new entries and sign a checkpoint, once")
    sequence.set_defaults(func=_sequence)

    checkpoint = sub.add_parser("checkpoint", help="Print or save the latest signed checkpoint")
    checkpoint.add_argument("--out", type=Path, help="write it to this file")
    checkpoint.set_defaults(func=_checkpoint)

    verify = sub.add_parser("verify", help="Verify the log and name the first bad entry")
    verify.add_argument("--export", type=Path, help="verify this export pack instead (offline)")
    verify.add_argument("--checkpoint", type=Path, help="a saved signed checkpoint to hold to")
    verify.add_argument(
        "--verifier-key",
        action="append",
        default=[],
        help="a note verifier key (text or a file holding it); repeatable",
    )
    verify.set_defaults(func=_verify)

    resign = sub.add_parser(
        "resign-head",
        help="Sign the checked head again with the current checkpoint key (after a retirement)",
    )
    resign.add_argument(
        "--checkpoint",
        type=Path,
        help="a checkpoint saved before the old key was compromised, to hold the log to",
    )
    resign.add_argument("--officer", default=None, help="who does it (default: the OS user)")
    resign.set_defaults(func=_resign_head)

    export = sub.add_parser("export", help="Write the verifiable export pack")
    export.add_argument("--out", type=Path, required=True)
    export.add_argument(
        "--area",
        action="append",
        default=[],
        help="only this MAPPA area's entries, each with its inclusion proof; repeatable",
    )
    export.add_argument(
        "--since",
        type=Path,
        metavar="CHECKPOINT",
        help="with --area: a checkpoint saved earlier; the pack proves its tree extends that one",
    )
    export.set_defaults(func=_export)

    origin = sub.add_parser(
        "origin", help="Retrieve and verify the agency's signed JWS of a write (evidence)"
    )
    origin.add_argument("entry_id", help="the write's audit entry id")
    origin.add_argument("--jws-out", type=Path, help="write the JWS to this file (mode 0600)")
    origin.add_argument("--officer", default=None, help="who asks (default: the OS user)")
    origin.set_defaults(func=_origin)


def _fail(message: str) -> int:
    print(f"mappa-gateway audit: {message}", file=sys.stderr)
    return 2


def _sequence(args: argparse.Namespace) -> int:
    from gateway.audit.sequencer import ALERT_NUMBERS, sequence
    from gateway.errors import AuditLogInconsistent
    from gateway.store import Database

    settings = get_settings()
    try:
        service = open_audit_keys(settings)
    except AuditKeysUnavailable as exc:
        return _fail(str(exc))

    async def run() -> int:
        db = Database(settings.database_url)
        try:
            result = await sequence(
                db,
                service.signer,
                service.origin,
                batch=settings.audit_sequence_batch,
                witness=service.witness,
            )
        except AuditLogInconsistent as exc:
            reason = exc.diagnostics.get("reason", exc.code)
            numbers = ", ".join(
                f"{key} {value}" for key, value in exc.diagnostics.items() if key in ALERT_NUMBERS
            )
            print(
                f"audit log REFUSED to sequence: {exc.code}: {reason}"
                + (f" ({numbers})" if numbers else "")
                + "; nothing was signed. Verify the log (`mappa-gateway audit verify "
                "--checkpoint <a saved checkpoint>`) and treat this as a security incident.",
                file=sys.stderr,
            )
            return 1
        finally:
            await db.dispose()
        print(f"audit log: {result.appended} new entries sequenced; tree size {result.tree_size}")
        return 0

    return asyncio.run(run())


def _resign_head(args: argparse.Namespace) -> int:
    import getpass

    from gateway.audit.resign import resign_head
    from gateway.audit.sequencer import ALERT_NUMBERS
    from gateway.errors import AuditLogInconsistent, GatewayError
    from gateway.store import Database

    settings = get_settings()
    try:
        saved = _small_text(args.checkpoint) if args.checkpoint else None
    except (OSError, ValueError) as exc:
        return _fail(f"cannot read the checkpoint: {exc}")
    try:
        service = open_audit_keys(settings)
    except AuditKeysUnavailable as exc:
        return _fail(str(exc))
    officer = args.officer or f"cli:{getpass.getuser()}"

    async def run() -> int:
        db = Database(settings.database_url)
        try:
            done = await resign_head(
                db,
                service.signer,
                service.origin,
                witness=service.witness,
                officer=officer,
                saved=saved,
            )
        except AuditLogInconsistent as exc:
            diagnostics = exc.diagnostics
            shown = (*ALERT_NUMBERS, "against", "problem", "code")
            numbers = ", ".join(
                f"{key} {diagnostics[key]}"
                for key in shown
                if key in diagnostics and diagnostics[key] is not None
            )
            print(
                f"audit head NOT re-signed: {diagnostics.get('reason', exc.code)}"
                + (f" ({numbers})" if numbers else "")
                + "; nothing was signed. Verify the log (`mappa-gateway audit verify`) and keep "
                "the evidence.",
                file=sys.stderr,
            )
            return 1
        except GatewayError as exc:
            return _fail(f"cannot re-sign the head: {exc.code}")
        finally:
            await db.dispose()
        what = "re-signed" if done.resigned else "already signed"
        was = ", ".join(done.from_kids) or "no key of the ring"
        print(
            f"audit head of tree size {done.tree_size}, root {done.root_hash.hex()}: {what} by "
            f"checkpoint key {done.kid}" + (f" (was {was})" if done.resigned else "")
        )
        if not done.witness_written:
            where = service.witness.path if service.witness is not None else "file"
            print(
                f"audit head: the checkpoint witness {where} could not be written; "
                "the sequencer will refuse until it holds the head",
                file=sys.stderr,
            )
            return 1
        return 0

    return asyncio.run(run())


def _checkpoint(args: argparse.Namespace) -> int:
    stored = latest_checkpoint_note(get_settings().database_url)
    if stored is None:
        return _fail("no checkpoint yet: run `mappa-gateway audit sequence`")
    size, note = stored
    if args.out is not None:
        args.out.write_text(note, encoding="utf-8")
        print(f"checkpoint of tree size {size} saved to {args.out}")
    else:
        sys.stdout.write(note)
    return 0


#: The most a checkpoint or verifier-key file given on the command line is read of.
_SMALL_FILE = 65_536


def _small_text(path: Path) -> str:
    """A checkpoint's or key's file, as UTF-8 text, refused (``ValueError``) if it is larger
    than any such file (a device, a log file given by mistake) or is not UTF-8."""
    with path.open("rb") as handle:
        raw = handle.read(_SMALL_FILE + 1)
    if len(raw) > _SMALL_FILE:
        raise ValueError(f"{path} is larger than {_SMALL_FILE} bytes: no checkpoint or key")
    return raw.decode("utf-8")


def _verifier_keys(values: Iterable[str]) -> list[VerifierKey]:
    keys: list[VerifierKey] = []
    for value in values:
        path = Path(value)
        texts = _small_text(path).split() if path.is_file() else [value]
        keys.extend(parse_verifier_key(text) for text in texts)
    return keys


def _entry_id_at(entries: Iterable[Mapping[str, Any]], seq: int | None) -> str | None:
    if seq is None:
        return None
    for position, entry in enumerate(entries):
        if position == seq:
            value = entry.get("entry_id")
            return value if isinstance(value, str) else None
    return None


def _report(report: VerificationReport, entry_id: str | None, elapsed: float) -> int:
    covered = (
        f"; checkpoint of size {report.checkpoint.size} verified"
        if report.checkpoint is not None
        else ""
    )
    if report.witness is not None:
        covered += f"; checkpoint witness of size {report.witness.size} extended"
    if report.ok:
        print(
            f"audit log verified: {report.tree_size} entries, root "
            f"{report.root_hash.hex()}{covered} ({elapsed:.2f} s)"
        )
        return 0
    assert report.problem is not None
    where = f" at entry seq {report.seq}" if report.seq is not None else ""
    if entry_id:
        where += f" (entry_id {entry_id})"
    print(f"audit log FAILED verification: {report.problem.value}{where}: {report.detail}")
    print(f"  entries before the first bad one: {report.tree_size}")
    return 1


_NO_TRUSTED_KEY = (
    "export pack NOT verified: no trusted verifier key. The keys inside a pack are its "
    "author's word about itself, and anyone can sign a pack with a key of their own. Pass the "
    "gateway's key, obtained apart from the pack (/v1/audit/verifier-key, or from the IG "
    "officer who sent it), with --verifier-key"
)


def _own_verifier_keys() -> list[VerifierKey] | str:
    """The verifier keys of the gateway whose key directory is on this machine, or why there
    are none (the message for exit 2). Keys are never generated here: a directory that does not
    exist is no gateway's."""
    try:
        settings = get_settings()
    except ValueError as exc:  # the gateway's settings do not load here (pydantic's error)
        return f"{_NO_TRUSTED_KEY} (the gateway's settings: {type(exc).__name__})"
    if not Path(settings.keys_dir).is_dir():
        return f"{_NO_TRUSTED_KEY} (no gateway key directory here: {settings.keys_dir})"
    try:
        return list(open_audit_keys(settings).verifier_keys())
    except AuditKeysUnavailable as exc:
        return f"{_NO_TRUSTED_KEY} (this gateway's checkpoint key: {exc})"


def _verify(args: argparse.Namespace) -> int:
    try:
        keys = _verifier_keys(args.verifier_key)
        note = _small_text(args.checkpoint) if args.checkpoint else None
    except (OSError, ValueError, CheckpointError) as exc:
        return _fail(f"cannot read the checkpoint or verifier key: {exc}")
    started = time.perf_counter()
    if args.export is not None:
        if not keys:
            trusted = _own_verifier_keys()
            if isinstance(trusted, str):
                return _fail(trusted)
            keys = trusted
            print("verifier key: this gateway's own checkpoint key, not the pack's")
        try:
            if is_scoped_pack(args.export):
                return _scoped_report(args.export, keys, note, started)
            report = verify_export(args.export, checkpoint=note, verifier_keys=keys)
            with read_export(args.export) as (_, entries):
                entry_id = _entry_id_at(entries, report.seq)
        except (OSError, ExportError, CheckpointError) as exc:
            return _fail(f"cannot read the export pack: {exc}")
        return _report(report, entry_id, time.perf_counter() - started)
    settings = get_settings()
    try:
        service = open_audit_keys(settings) if not keys else None
    except AuditKeysUnavailable as exc:
        return _fail(f"{exc}; pass --verifier-key to verify without the key repository")
    if service is not None:
        verifier = service.verifier()
    else:
        from keys import ed25519_verify

        verifier = CheckpointVerifier(tuple(keys), ed25519_verify, settings.audit_log_origin)
    witness = read_witness(settings)
    if witness.error is not None:
        print(f"note: the checkpoint witness {witness.path} cannot be read: {witness.error}")
    report = verify_database(settings.database_url, verifier, checkpoint=note, witness=witness.note)
    with contextlib.closing(iter_log(settings.database_url)) as entries:
        entry_id = _entry_id_at(entries, report.seq)
    return _report(report, entry_id, time.perf_counter() - started)


def _scoped_report(path: Path, keys: list[VerifierKey], note: str | None, started: float) -> int:
    """``audit verify --export`` of a scoped pack: each entry proved in the signed tree."""
    try:
        scoped = verify_scoped_export(path, verifier_keys=keys, checkpoint=note)
    except UnprovableError as exc:
        return _fail(f"the scoped pack cannot be held to your checkpoint: {exc}")
    if not scoped.ok:
        report = scoped.report
        assert report.problem is not None
        where = f" at entry seq {report.seq}" if report.seq is not None else ""
        problem = f"{report.problem.value}{where}: {report.detail}"
        print(f"scoped export pack FAILED verification: {problem}")
        print(f"  entries proved before it: {scoped.entries}")
        return 1
    signed = scoped.report.checkpoint
    assert signed is not None  # a report without a problem holds the verified checkpoint
    print(
        f"scoped export pack verified: {scoped.entries} entries of {', '.join(scoped.areas)}, "
        f"each proved in the signed tree of {signed.size} entries, root "
        f"{signed.root_hash.hex()} ({time.perf_counter() - started:.2f} s)"
    )
    if note is not None:
        print("  the pack's tree extends the tree of your saved checkpoint")
    print(f"  note: {NOT_PROVEN}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from gateway.audit.export import write_export

    settings = get_settings()
    try:
        service = open_audit_keys(settings)
    except AuditKeysUnavailable as exc:
        return _fail(str(exc))
    if args.since is not None and not args.area:
        return _fail(
            "--since is for a scoped pack (--area): the full pack holds every entry; hold it to "
            "your checkpoint with `audit verify --export PACK --checkpoint FILE`"
        )
    if args.area:
        since = None
        if args.since is not None:
            try:  # only its size is taken: `audit verify` checks its signature, with the pack
                note = parse_signed_note(_small_text(args.since)).text
                since = parse_checkpoint(note).size
            except (OSError, ValueError, CheckpointError) as exc:
                return _fail(f"the file given with --since is no checkpoint: {exc}")
        try:
            size, count = asyncio.run(
                _write_scoped(args.out, args.area, service.verifier_keys(), since)
            )
        except BaseException as exc:  # no part of a pack is left behind, whatever stopped it
            args.out.unlink(missing_ok=True)
            failed = ExportError | ValidationFailed | AuditLogInconsistent | InvalidParameter
            if not isinstance(exc, failed):
                raise
            return _fail(str(exc))
        print(
            f"scoped export pack of {count} entries, each proved in the tree of {size}, "
            f"written to {args.out}"
        )
        return 0
    try:
        with args.out.open("w", encoding="utf-8") as out:
            header = write_export(settings.database_url, out, verifier_keys=service.verifier_keys())
    except ExportError as exc:
        args.out.unlink(missing_ok=True)
        return _fail(str(exc))
    print(f"export pack of {header.tree_size} entries written to {args.out}")
    return 0


async def _write_scoped(
    out: Path, areas: list[str], keys: Iterable[VerifierKey], since: int | None
) -> tuple[int, int]:
    """Write the scoped pack of ``areas`` (each the area of a registered agency) to ``out``,
    with the consistency proof from the tree of ``since`` entries if given; the tree size it is
    proved in, and how many entries it holds."""
    import datetime as dt

    from gateway.audit.scoped import scoped_chunks, scoped_header
    from gateway.audit.subtrees import SubtreeCache
    from gateway.console.scope import known_scope
    from gateway.store import Database

    db = Database(get_settings().database_url)
    try:
        async with db.read() as session:
            scope = await known_scope(session, areas=areas)
        cache = SubtreeCache()
        header, checkpoint = await scoped_header(
            db,
            areas=scope.areas,
            verifier_keys=list(keys),
            now=dt.datetime.now(dt.UTC),
            since=since,
            cache=cache,
        )
        lines = 0
        with out.open("wb") as handle:
            async for chunk in scoped_chunks(db, header, checkpoint, cache=cache):
                handle.write(chunk)
                lines += chunk.count(b"\n")
        return header.tree_size, lines - 2  # not the header, nor the last line
    finally:
        await db.dispose()


def _origin(args: argparse.Namespace) -> int:
    import getpass
    import json
    import os

    from gateway.audit.commit import record_alone
    from gateway.audit.origin import load_origin
    from gateway.errors import GatewayError
    from gateway.flow.audit import AuditEvent, Operation, Outcome
    from gateway.keyring import KeyRepositoryUnavailable
    from gateway.store import Database
    from gateway.store.sealed import open_case_sealer

    settings = get_settings()
    try:
        sealer = open_case_sealer(settings)
    except KeyRepositoryUnavailable as exc:
        return _fail(str(exc))
    officer = args.officer or f"cli:{getpass.getuser()}"

    async def run() -> int:
        db = Database(settings.database_url)
        try:
            async with db.read() as session:
                report = await load_origin(session, sealer, args.entry_id, issuer=settings.issuer)
            event = AuditEvent(
                operation=Operation.CONSULTATION,
                outcome=Outcome.ALLOWED if report is not None else Outcome.REFUSED,
                officer_id=officer,
                record_refs=(args.entry_id[:64],),
                rule=None if report is not None else "origin-evidence-exists",
                reason_code=None if report is not None else "not_found",
                detail={
                    "resource": "origin_evidence",
                    "action": "retrieve",
                    "via": "cli",
                    **({"verified": report.verified} if report is not None else {}),
                },
            )
            await record_alone(db, event)
        except GatewayError as exc:
            return _fail(f"cannot read the evidence: {exc.code}")
        finally:
            await db.dispose()
        if report is None:
            return _fail(f"no evidence of origin is kept for entry {args.entry_id[:64]!r}")
        print(json.dumps(report.summary(), indent=2, sort_keys=True))
        if args.jws_out is not None:
            fd = os.open(args.jws_out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.write(report.jws + "\n")
        return 0 if report.verified else 1

    return asyncio.run(run())
