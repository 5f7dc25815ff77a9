"""The gateway's own key changes, in the tamper-evident audit log.

``keys/`` knows nothing of the database: ``mappa-gateway keys rotate``, ``retire``,
``destroy``, ``rewrap``, ``seal-metadata``, ``init`` and ``init-blind-index`` change the key
directory alone. When one of them succeeds under ``mappa-gateway``, :func:`record_key_change`
adds an ``administration`` entry (``reason_code`` ``keys_<verb>``) naming what the operator
asked (the purpose, the kids, the overlap, the new KEK's id) and the keys of the purposes it
touched as they stand afterwards: the public metadata ``keys list`` prints (purpose, kid,
algorithm, status, dates), never key material. So an IG officer reading the log sees when a key
was rotated in, retired after a compromise or destroyed, beside the tokens and bodies that name
its kid.

A change that cannot be recorded (no database yet, as for ``keys init`` on a new installation
before ``db upgrade``; the database down) is not undone: the command still exits 0, having
changed the keys, and says on stderr that the change is not in the audit log, so that the
operator records it by hand. Exiting otherwise would invite running the change twice.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
from typing import Any, Final

from gateway.flow.audit import AuditEvent, Operation, Outcome, record
from gateway.settings import Settings
from gateway.store import Database
from keys import FileKeyRepository, Purpose, kek_from_file
from keys.cli import key_directory

__all__ = ["RECORDED_VERBS", "record_key_change"]

#: The keys verbs that change the key directory, and so are recorded.
RECORDED_VERBS: Final = frozenset(
    {"rotate", "retire", "destroy", "rewrap", "seal-metadata", "init", "init-blind-index"}
)


def _asked(args: argparse.Namespace) -> dict[str, Any]:
    """What the operator asked, from the command line (no secret is ever an argument)."""
    asked: dict[str, Any] = {}
    if getattr(args, "purpose", None):
        asked["purpose"] = args.purpose
    kids = list(getattr(args, "kids", None) or ()) or (
        [args.kid] if getattr(args, "kid", None) else []
    )
    if kids:
        asked["kids"] = [str(kid)[:64] for kid in kids]
    for name in ("overlap_hours", "retired", "to_configured", "reseal"):
        value = getattr(args, name, None)
        if value not in (None, False, [], ()):
            asked[name] = value
    if getattr(args, "new_kek_file", None):
        asked["new_kek_id"] = kek_from_file(args.new_kek_file).kek_id
    return asked


def _keys_after(args: argparse.Namespace) -> list[dict[str, Any]] | None:
    """The public metadata of the keys of the purposes the command touched, read as the keys
    command read them (None when the directory no longer opens so: after a rewrap to a KEK
    file the settings do not name yet)."""
    purposes = [Purpose(args.purpose)] if getattr(args, "purpose", None) else list(Purpose)
    try:
        repository = FileKeyRepository(*key_directory(args, os.environ))
        now = dt.datetime.now(dt.UTC)
        return [info.as_dict(now) for info in repository.list() if info.purpose in purposes]
    except Exception:  # the command succeeded; only reading the keys back failed
        return None


async def _record(settings: Settings, verb: str, detail: dict[str, Any]) -> None:
    db = Database(settings.database_url)
    try:
        async with db.write() as session:
            record(
                session,
                AuditEvent(
                    occurred_at=dt.datetime.now(dt.UTC),
                    operation=Operation.ADMINISTRATION,
                    outcome=Outcome.ALLOWED,
                    reason_code=f"keys_{verb.replace('-', '_')}",
                    detail={"action": f"keys_{verb.replace('-', '_')}", "via": "cli", **detail},
                ),
            )
    finally:
        await db.dispose()


def record_key_change(settings: Settings, args: argparse.Namespace) -> None:
    """Record the keys command that just succeeded (see the module's doc); never raises."""
    verb = str(args.keys_command)
    try:
        detail: dict[str, Any] = {**_asked(args)}
        if verb != "rewrap":
            detail["keys"] = _keys_after(args)
        asyncio.run(_record(settings, verb, detail))
    except Exception as exc:  # the keys changed all the same: say so, loudly
        print(
            f"mappa-gateway: the keys changed, but the change is NOT in the audit log "
            f"({type(exc).__name__}): record 'keys {verb}' by hand, with what it printed",
            file=sys.stderr,
        )
