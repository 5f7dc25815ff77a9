"""``keys`` operator commands, mounted by the gateway CLI as ``mappa-gateway keys ...``.

::

    keys list [--json]                          every key, its status and schedule
    keys rotate PURPOSE [--overlap-hours N]     new current key; the old one verifies N hours more
                                                (payload-signing: at least 168, its default)
    keys retire PURPOSE [--] KID                retire one key now (after a compromise)
    keys destroy PURPOSE [--] KID... | --retired  destroy retired keys' private halves (the
                                                public half stays); --retired: all retired
    keys jwks                                   the public JWKS the gateway publishes
    keys rewrap --new-kek-file F | --to-configured  reseal every private key and the
                                                blind-index secret under a new KEK (all or nothing)
    keys init-blind-index                       create the blind-index secret of a NEW
                                                installation (never replaces one)
    keys seal-metadata [--reseal KID]           seal the metadata (status, dates) of key files
                                                written before metadata seals (an upgrade)
    keys init                                   the first keys of a new installation
                                                (refused where keys exist)
    keys init-dev --profile development         create missing development keys (refused
                                                when MAPPA_PROFILE is another profile)

Each takes ``--keys-dir`` (else ``MAPPA_KEYS_DIR``) and ``--kek-file`` (else the KEK the gateway's
settings name, read from the same variables by :mod:`keys.kek_config`: an HSM over PKCS#11
``MAPPA_KEK_PKCS11_*``, Vault transit ``MAPPA_KEK_VAULT_*``, a base64 KEK in ``MAPPA_KEK``, else
``MAPPA_KEK_FILE``; KEK files in ``MAPPA_PREVIOUS_KEK_FILES`` also open what they wrapped).
``keys rewrap`` moves the key directory only: it prints the steps left (the stored case data).
Output never holds key material. Exit codes: 0 done,
1 a keys error (its code and reason on stderr), 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from .blind_index import init_blind_index
from .envelope import Envelope
from .errors import KekUnavailable, KeysError, ProfileRefused
from .kek import kek_from_file
from .kek_config import KekConfig, open_envelope
from .provision import generate_development_keys, generate_keys
from .repository import DEVELOPMENT, FileKeyRepository
from .ring import DEFAULT_OVERLAP, MIN_OVERLAP, Purpose, utcnow

__all__ = ["DEFAULT_OVERLAP", "MIN_OVERLAP", "key_directory", "main", "register"]

Handler = Callable[[argparse.Namespace], int]


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--keys-dir", help="key directory (default: $MAPPA_KEYS_DIR)")
    common.add_argument(
        "--kek-file",
        help="file holding the base64 KEK (default: the gateway's KEK source: the PKCS#11 or "
        "Vault settings, else $MAPPA_KEK, else $MAPPA_KEK_FILE)",
    )
    return common


def register(subparsers: Any) -> None:
    """Add the ``keys`` command family to an argparse subparsers object."""
    common = _common()
    keys = subparsers.add_parser(
        "keys",
        help="key rings: list, rotate, retire, destroy, publish, rewrap",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = keys.add_subparsers(dest="keys_command", required=True, metavar="KEYS_COMMAND")

    listing = verbs.add_parser("list", parents=[common], help="list keys and their status")
    listing.add_argument("--json", action="store_true", help="one JSON document")
    listing.set_defaults(func=_with_repository(_list))

    rotate = verbs.add_parser("rotate", parents=[common], help="rotate a purpose's keys")
    rotate.add_argument("purpose", choices=[p.value for p in Purpose])
    rotate.add_argument(
        "--overlap-hours",
        type=float,
        default=None,
        help="hours the old key still verifies and decrypts (default 24; payload-signing: at "
        "least 168, the push window, and 168 by default)",
    )
    rotate.set_defaults(func=_with_repository(_rotate))

    retire = verbs.add_parser(
        "retire",
        parents=[common],
        help="retire one key now",
        epilog="A kid is a JWK thumbprint and may begin with '-': put it after '--', "
        "as in: keys retire token-signing -- -Xy3...",
    )
    retire.add_argument("purpose", choices=[p.value for p in Purpose])
    retire.add_argument("kid", help="the key's kid (after '--' if it begins with '-')")
    retire.set_defaults(func=_with_repository(_retire))

    destroy = verbs.add_parser(
        "destroy",
        parents=[common],
        help="destroy retired keys' private halves",
        epilog="Only a retired key's can be (retire it first); its public half stays. Backups "
        "still hold it: see keys/README.md. Put the kids after '--' (one may begin with '-').",
    )
    destroy.add_argument(
        "purpose", nargs="?", choices=[p.value for p in Purpose], help="omit with --retired"
    )
    destroy.add_argument("kids", nargs="*", metavar="KID", help="the keys' kids")
    destroy.add_argument(
        "--retired", action="store_true", help="every retired key of every purpose"
    )
    destroy.set_defaults(func=_with_repository(_destroy))

    jwks = verbs.add_parser("jwks", parents=[common], help="print the public JWKS")
    jwks.set_defaults(func=_with_repository(_jwks))

    rewrap = verbs.add_parser("rewrap", parents=[common], help="reseal keys under a new KEK")
    target = rewrap.add_mutually_exclusive_group(required=True)
    target.add_argument("--new-kek-file", help="file holding the new base64 KEK")
    target.add_argument(
        "--to-configured",
        action="store_true",
        help="to the KEK the settings name (an HSM or Vault key, or a file); the old one is "
        "read from MAPPA_PREVIOUS_KEKS or MAPPA_PREVIOUS_KEK_FILES",
    )
    rewrap.set_defaults(func=lambda args: _run(args, lambda: _rewrap(args)))

    blind = verbs.add_parser(
        "init-blind-index",
        parents=[common],
        help="create the blind-index secret of a new installation",
        description="Create <keys dir>/blind-index.json, the secret of the blind indexes of "
        "PNC ids, CRNs and ViSOR references, if the directory has none; an existing one is "
        "checked and left as it is. For a new installation only: if the file was lost, restore "
        "it from the key directory's backup, since a new secret matches no stored index.",
    )
    blind.set_defaults(func=_init_blind_index)

    seal = verbs.add_parser(
        "seal-metadata",
        parents=[common],
        help="seal the metadata of key files written before metadata seals",
        description="Seal the metadata (status, created_at, retire_after, ...) of every key file "
        "that has no seal: the upgrade of a key directory written before metadata seals, which "
        "the gateway refuses until it is done. A seal trusts the metadata as it stands: check "
        "it first (keys list on the older version) and compare the keys this prints with your "
        "records. Files already sealed are left alone; --reseal KID also reseals that key, for "
        "a file an older version rotated or retired after the upgrade (its seal no longer "
        "matches). Each file sealed must still hold a key that opens for its purpose, kid and "
        "alg; all or nothing.",
    )
    seal.add_argument(
        "--reseal",
        action="append",
        default=[],
        metavar="KID",
        help="also reseal this key's file (repeatable; --reseal=KID if the kid begins with '-')",
    )
    seal.set_defaults(func=_with_repository(_seal_metadata))

    first = verbs.add_parser(
        "init",
        parents=[common],
        help="create the first keys of a new installation",
        description="Create a current key of every purpose, and the blind-index secret if there "
        "is none, in a key directory that holds no key: the production keys of a new "
        "installation. Refused, writing nothing, where keys exist (rotate them instead), in "
        "a directory made for development, or in the development profile (keys init-dev and "
        "make run make development keys).",
    )
    first.set_defaults(func=_init)

    init = verbs.add_parser("init-dev", parents=[common], help="create development keys")
    init.add_argument("--profile", required=True, help='must be "development"')
    init.set_defaults(func=_init_dev)


def key_directory(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[str, Envelope]:
    """The key directory and KEK envelope a keys command opens (gateway.key_audit's too)."""
    directory = args.keys_dir or env.get("MAPPA_KEYS_DIR")
    if not directory:
        raise _UsageError("no key directory: pass --keys-dir or set MAPPA_KEYS_DIR")
    if args.kek_file:  # that file for the configured KEK; the previous KEKs kept
        env = {k: v for k, v in env.items() if k.startswith("MAPPA_PREVIOUS_")}
        env["MAPPA_KEK_FILE"] = args.kek_file
    config = KekConfig.from_env(env)
    try:
        config.source  # noqa: B018 - raises when no source, or an ambiguous one, is named
    except KekUnavailable as exc:
        raise _UsageError(f"{exc.reason} (or pass --kek-file)") from exc
    return directory, open_envelope(config)


class _UsageError(Exception):
    pass


def _run(args: argparse.Namespace, body: Callable[[], int]) -> int:
    del args
    try:
        return body()
    except _UsageError as exc:
        print(f"keys: {exc}", file=sys.stderr)
        return 2
    except KekUnavailable as exc:
        print(f"keys: {exc.code}: {exc.reason}", file=sys.stderr)
        return 2
    except KeysError as exc:
        print(f"keys: {exc.code}: {exc.reason}", file=sys.stderr)
        return 1


def _with_repository(action: Callable[[argparse.Namespace, FileKeyRepository], int]) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        def body() -> int:
            directory, kek = key_directory(args, os.environ)
            return action(args, FileKeyRepository(directory, kek, profile=_profile()))

        return _run(args, body)

    return handler


def _list(args: argparse.Namespace, repository: FileKeyRepository) -> int:
    now = utcnow()
    rows = [info.as_dict(now) for info in repository.list()]
    if args.json:
        print(json.dumps({"keys": rows}, indent=2))
        return 0
    print(f"{'PURPOSE':<20} {'KID':<44} {'ALG':<15} {'STATUS':<9} {'CREATED':<26} RETIRE_AFTER")
    for row in rows:
        status = "destroyed" if row["destroyed_at"] else row["status"]
        print(
            f"{row['purpose']:<20} {row['kid']:<44} {row['alg']:<15} {status:<9} "
            f"{row['created_at'][:19]:<26} {row['retire_after'] or '-'}"
        )
    return 0


def _hours(span: timedelta) -> str:
    return f"{span.total_seconds() / 3600:g}"


def _overlap(purpose: Purpose, hours: float | None) -> timedelta:
    """The overlap asked for, else the default; refused below the purpose's minimum."""
    least = MIN_OVERLAP.get(purpose, timedelta(0))
    if hours is None:
        return max(DEFAULT_OVERLAP, least)
    if not math.isfinite(hours):
        raise _UsageError("--overlap-hours must be a number of hours")
    overlap = timedelta(hours=hours)
    if overlap < least:
        raise _UsageError(
            f"{purpose.value} needs an overlap of at least {_hours(least)} hours (the default): "
            f"a push is signed once, when it is queued, and may be delivered up to "
            f"{_hours(least)} hours later, and partners refuse one signed by a key the gateway "
            f"no longer publishes. After a compromise, rotate with the default overlap, then "
            f"retire the compromised key at once: keys retire {purpose.value} -- KID (what is "
            f"still queued signed by it is then refused, as it should be)"
        )
    return overlap


def _rotate(args: argparse.Namespace, repository: FileKeyRepository) -> int:
    purpose = Purpose(args.purpose)
    overlap = _overlap(purpose, args.overlap_hours)
    for info in repository.rotate(purpose, overlap):
        print(f"rotated {info.purpose.value}: new current {info.alg} key {info.kid}")
    print(f"previous keys verify and decrypt for {_hours(overlap)} more hours")
    return 0


def _retire(args: argparse.Namespace, repository: FileKeyRepository) -> int:
    info = repository.retire(Purpose(args.purpose), args.kid)
    print(f"retired {info.purpose.value} key {info.kid}")
    return 0


def _destroy(args: argparse.Namespace, repository: FileKeyRepository) -> int:
    if args.retired == bool(args.purpose or args.kids) or (args.purpose and not args.kids):
        print("keys destroy: name PURPOSE and its KIDs, or --retired alone", file=sys.stderr)
        return 2
    done = 0  # said as each purpose is done: a later one failing leaves the earlier ones said
    for purpose in list(Purpose) if args.retired else [Purpose(args.purpose)]:
        for i in repository.destroy(purpose, None if args.retired else args.kids):
            print(f"destroyed the private half of {i.purpose.value} key {i.kid}", flush=True)
            done += 1
    print(f"{done} private half(s) destroyed" + ("" if done else ": none retired, or all done"))
    return 0


def _jwks(_: argparse.Namespace, repository: FileKeyRepository) -> int:
    print(json.dumps(repository.jwks(), indent=2))
    return 0


def _rewrap(args: argparse.Namespace) -> int:
    directory, envelope = key_directory(args, os.environ)
    new_kek = envelope.kek if args.to_configured else kek_from_file(args.new_kek_file)
    count = FileKeyRepository(directory, envelope, profile=_profile()).rewrap(new_kek)
    print(
        f"rewrapped {count} file(s) (private keys, blind-index secret) under KEK "
        f"{new_kek.kek_id}; all open under it"
    )
    settings = (
        "restart every replica with these settings (the old KEK in MAPPA_PREVIOUS_KEKS)"
        if args.to_configured
        else f"set MAPPA_KEK_FILE={args.new_kek_file}, the old KEK file in "
        "MAPPA_PREVIOUS_KEK_FILES, restart every replica"
    )
    print(
        "NOT DONE YET: the stored case data is still under the old KEK. Next (keys/README.md, "
        f"'Rotating the KEK'):\n  1. {settings};\n"
        "  2. mappa-gateway db rewrap-case-data, until it reports nothing left under "
        "another KEK;\n"
        "  3. remove the old KEK from the previous KEKs, restart, then destroy the old KEK"
    )
    return 0


def _seal_metadata(args: argparse.Namespace, repository: FileKeyRepository) -> int:
    now = utcnow()
    sealed = repository.seal_metadata(reseal=args.reseal)
    for info in sealed:
        row = info.as_dict(now)
        print(
            f"sealed {row['purpose']} {row['alg']} key {row['kid']}: {row['status']}, "
            f"created {row['created_at'][:19]}, retire after {row['retire_after'] or '-'}"
        )
    if sealed:
        print(f"{len(sealed)} key file(s) sealed: check the keys above against your records")
    else:
        print("every key file's metadata was already sealed")
    return 0


def _init_blind_index(args: argparse.Namespace) -> int:
    def body() -> int:
        directory, kek = key_directory(args, os.environ)
        if init_blind_index(directory, kek):
            print(f"blind-index secret created in {directory}: back it up with the key directory")
        else:
            print(f"blind-index secret already in {directory}: left as it is")
        return 0

    return _run(args, body)


def _profile() -> str | None:
    """The gateway's profile (``MAPPA_PROFILE``; ``mappa-gateway`` sets it from its settings):
    development keys are refused outside ``development``."""
    return os.environ.get("MAPPA_PROFILE") or None


def _init(args: argparse.Namespace) -> int:
    def body() -> int:
        if _profile() == DEVELOPMENT:  # its keys would be development keys, refused elsewhere
            raise _UsageError(
                "keys init makes production keys: set MAPPA_PROFILE to test or production "
                "(in development, keys init-dev or make run makes the keys)"
            )
        directory, kek = key_directory(args, os.environ)
        repository = generate_keys(directory, kek, profile=_profile())
        print(f"keys ready in {directory}: {len(repository.list())} key(s); back them up")
        return 0

    return _run(args, body)


def _init_dev(args: argparse.Namespace) -> int:
    def body() -> int:
        configured = _profile() or args.profile
        if configured != args.profile:
            raise ProfileRefused(f"development keys refused in profile {configured[:40]!r}")
        directory, kek = key_directory(args, os.environ)
        repository = generate_development_keys(directory, kek, args.profile)
        print(f"development keys ready in {directory}: {len(repository.list())} key(s)")
        return 0

    return _run(args, body)


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point (``python -m keys.cli keys list``), for tests and rescue."""
    parser = argparse.ArgumentParser(prog="keys")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
