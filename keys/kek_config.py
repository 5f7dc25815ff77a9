"""Where the key-encryption key comes from: one description, one way to open it.

The gateway (from its settings) and the keys CLI (from the environment) both describe the KEK as
a :class:`KekConfig` and open it with :func:`open_kek`, so they cannot disagree about which KEK
is in use. A configuration names exactly one source:

* an HSM key over PKCS#11 (``MAPPA_KEK_PKCS11_MODULE``, ``_TOKEN_LABEL``, ``_KEY_LABEL``,
  ``_PIN_FILE``): :class:`keys.hsm.Pkcs11Kek`;
* a Vault transit key (``MAPPA_KEK_VAULT_ADDR``, ``_KEY``, ``_TOKEN_FILE``, ``_MOUNT``):
  :class:`keys.vault.VaultTransitKek`;
* an inline base64 key (``MAPPA_KEK``; development and tests only, the production profile
  refuses it);
* a base64 key in a file (``MAPPA_KEK_FILE``).

An HSM or Vault source wins over the file (the gateway always has a default file); two of HSM,
Vault and an inline key at once are refused. KEKs kept for reading only while a KEK rotation
moves the stored data (keys/README.md, "Rotating the KEK") are named by
``MAPPA_PREVIOUS_KEKS``, a JSON list with one object per KEK whose members are the variables
above that name it (a file, an HSM key or a Vault key: the current KEK's variables, moved there
when the settings name a new one), and by ``MAPPA_PREVIOUS_KEK_FILES`` (a JSON list of KEK
files, the older form): :func:`open_envelope` opens blobs under them and seals under the
current KEK alone. The PIN and the Vault token are read from files, which, like a KEK
file, must not be open to group or others.
"""

from __future__ import annotations

import ipaddress
import json
import os
import stat
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .envelope import Envelope
from .errors import EnvelopeRejected, KekUnavailable
from .kek import KekSource, kek_from_env, kek_from_file

__all__ = [
    "KekConfig",
    "KekSourceKind",
    "SecretFileRefused",
    "open_envelope",
    "open_kek",
    "open_previous_keks",
    "previous_kek_configs",
    "read_secret_file",
]

KekSourceKind = Literal["pkcs11", "vault", "inline", "file"]


@dataclass(frozen=True)
class KekConfig:
    """The KEK's source and the previous KEKs kept for reading (see the module's docstring)."""

    file: Path | None = None
    inline: str | None = field(default=None, repr=False)
    pkcs11_module: str | None = None
    pkcs11_token_label: str | None = None
    pkcs11_key_label: str | None = None
    pkcs11_pin_file: Path | None = None
    vault_addr: str | None = None
    vault_key: str | None = None
    vault_token_file: Path | None = None
    vault_mount: str = "transit"
    previous_files: tuple[Path, ...] = ()
    #: Previous KEKs of any source (``MAPPA_PREVIOUS_KEKS``, :func:`previous_kek_configs`).
    previous: tuple[KekConfig, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> KekConfig:
        """The configuration the gateway's settings would give for these variables."""

        def path(name: str) -> Path | None:
            value = env.get(name)
            return Path(value) if value else None

        listed = _json_list(env.get("MAPPA_PREVIOUS_KEK_FILES", ""), "MAPPA_PREVIOUS_KEK_FILES")
        if not all(isinstance(p, str) for p in listed):
            raise KekUnavailable("MAPPA_PREVIOUS_KEK_FILES must be a JSON list of paths")
        previous = tuple(Path(str(p)) for p in listed)
        return cls(
            file=path("MAPPA_KEK_FILE"),
            inline=env.get("MAPPA_KEK") or None,
            pkcs11_module=env.get("MAPPA_KEK_PKCS11_MODULE") or None,
            pkcs11_token_label=env.get("MAPPA_KEK_PKCS11_TOKEN_LABEL") or None,
            pkcs11_key_label=env.get("MAPPA_KEK_PKCS11_KEY_LABEL") or None,
            pkcs11_pin_file=path("MAPPA_KEK_PKCS11_PIN_FILE"),
            vault_addr=env.get("MAPPA_KEK_VAULT_ADDR") or None,
            vault_key=env.get("MAPPA_KEK_VAULT_KEY") or None,
            vault_token_file=path("MAPPA_KEK_VAULT_TOKEN_FILE"),
            vault_mount=env.get("MAPPA_KEK_VAULT_MOUNT") or "transit",
            previous_files=previous,
            previous=previous_kek_configs(env.get("MAPPA_PREVIOUS_KEKS", "")),
        )

    def to_env(self) -> dict[str, str]:
        """The variables :meth:`from_env` reads back as this configuration."""
        named = {
            "MAPPA_KEK_FILE": self.file,
            "MAPPA_KEK": self.inline,
            "MAPPA_KEK_PKCS11_MODULE": self.pkcs11_module,
            "MAPPA_KEK_PKCS11_TOKEN_LABEL": self.pkcs11_token_label,
            "MAPPA_KEK_PKCS11_KEY_LABEL": self.pkcs11_key_label,
            "MAPPA_KEK_PKCS11_PIN_FILE": self.pkcs11_pin_file,
            "MAPPA_KEK_VAULT_ADDR": self.vault_addr,
            "MAPPA_KEK_VAULT_KEY": self.vault_key,
            "MAPPA_KEK_VAULT_TOKEN_FILE": self.vault_token_file,
        }
        env = {name: str(value) for name, value in named.items() if value is not None}
        if self.vault_addr is not None:
            env["MAPPA_KEK_VAULT_MOUNT"] = self.vault_mount
        if self.previous_files:
            env["MAPPA_PREVIOUS_KEK_FILES"] = json.dumps([str(p) for p in self.previous_files])
        if self.previous:
            env["MAPPA_PREVIOUS_KEKS"] = json.dumps([p.to_env() for p in self.previous])
        return env

    @property
    def source(self) -> KekSourceKind:
        """Which source this names; an incomplete or ambiguous one raises KekUnavailable."""
        chosen = [
            name
            for name, present in (
                ("MAPPA_KEK_PKCS11_MODULE", self.pkcs11_module),
                ("MAPPA_KEK_VAULT_ADDR", self.vault_addr),
                ("MAPPA_KEK", self.inline),
            )
            if present
        ]
        if len(chosen) > 1:
            raise KekUnavailable(f"more than one KEK source: {', '.join(chosen)}; keep one")
        if self.pkcs11_module:
            _require(
                "MAPPA_KEK_PKCS11_",
                TOKEN_LABEL=self.pkcs11_token_label,
                KEY_LABEL=self.pkcs11_key_label,
                PIN_FILE=self.pkcs11_pin_file,
            )
            return "pkcs11"
        if self.vault_addr:
            _require("MAPPA_KEK_VAULT_", KEY=self.vault_key, TOKEN_FILE=self.vault_token_file)
            _vault_address(self.vault_addr)
            return "vault"
        if self.inline:
            return "inline"
        if self.file is not None:
            return "file"
        raise KekUnavailable(
            "no KEK configured: MAPPA_KEK_FILE, MAPPA_KEK, MAPPA_KEK_PKCS11_* or MAPPA_KEK_VAULT_*"
        )


#: What one entry of ``MAPPA_PREVIOUS_KEKS`` may set: one KEK's source, never an inline key.
_PREVIOUS_NAMES = frozenset(
    {
        "MAPPA_KEK_FILE",
        "MAPPA_KEK_PKCS11_MODULE",
        "MAPPA_KEK_PKCS11_TOKEN_LABEL",
        "MAPPA_KEK_PKCS11_KEY_LABEL",
        "MAPPA_KEK_PKCS11_PIN_FILE",
        "MAPPA_KEK_VAULT_ADDR",
        "MAPPA_KEK_VAULT_KEY",
        "MAPPA_KEK_VAULT_TOKEN_FILE",
        "MAPPA_KEK_VAULT_MOUNT",
    }
)


def _json_list(raw: str, name: str) -> list[object]:
    if not raw.strip():
        return []
    try:
        listed = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise KekUnavailable(f"{name} must be a JSON list") from exc
    if not isinstance(listed, list):
        raise KekUnavailable(f"{name} must be a JSON list")
    return listed


def previous_kek_configs(raw: str) -> tuple[KekConfig, ...]:
    """The previous KEKs ``MAPPA_PREVIOUS_KEKS`` (JSON text) names: each entry an object of the
    variables that name one KEK (a file, an HSM key or a Vault key), complete and naming one
    source; a mistake raises KekUnavailable naming the entry, never its values."""
    configs = []
    for index, entry in enumerate(_json_list(raw, "MAPPA_PREVIOUS_KEKS")):
        where = f"MAPPA_PREVIOUS_KEKS[{index}]"
        if not isinstance(entry, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in entry.items()
        ):
            raise KekUnavailable(f"{where} must be an object of variable names and text values")
        unknown = sorted(set(entry) - _PREVIOUS_NAMES)
        if unknown:
            raise KekUnavailable(
                f"{where}: {unknown[0][:40]!r} is not a variable naming a KEK file, HSM key or "
                "Vault key"
            )
        families = {_family(name) for name in entry}
        if len(families) > 1:
            raise KekUnavailable(f"{where} mixes {' and '.join(sorted(families))}: one KEK each")
        empty = sorted(name for name, value in entry.items() if not value.strip())
        if empty:
            raise KekUnavailable(f"{where}: {empty[0]} is empty")
        config = KekConfig.from_env(entry)
        try:
            config.source  # noqa: B018 - raises on an incomplete source
        except KekUnavailable as exc:
            raise KekUnavailable(f"{where}: {exc.reason}") from exc
        configs.append(config)
    return tuple(configs)


def _family(name: str) -> str:
    """Which source a KEK variable belongs to: a file, an HSM key or a Vault key."""
    return "an HSM key" if "PKCS11" in name else "a Vault key" if "VAULT" in name else "a file"


def _vault_address(address: str) -> None:
    """Vault is called with its token, and answers with wrapped data keys: over https, or plain
    http to this machine only (a development Vault on the loopback)."""
    try:
        parts = urllib.parse.urlsplit(address)
        host = (parts.hostname or "").lower()
    except ValueError as exc:
        raise KekUnavailable("MAPPA_KEK_VAULT_ADDR is not a URL") from exc
    if parts.username is not None or parts.password is not None or not host:
        raise KekUnavailable("MAPPA_KEK_VAULT_ADDR must be a URL with a host and no credentials")
    if parts.scheme == "https":
        return
    loopback = host == "localhost"
    if not loopback:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
    if parts.scheme != "http" or not loopback:
        raise KekUnavailable(
            "MAPPA_KEK_VAULT_ADDR must be https (plain http only to this machine's Vault)"
        )


def _require(prefix: str, **values: object) -> None:
    missing = [prefix + name for name, value in values.items() if not value]
    if missing:
        raise KekUnavailable(f"incomplete KEK source: set {', '.join(missing)}")


class SecretFileRefused(ValueError):
    """A file meant to hold one secret (a PIN, a token, a client secret) cannot be used."""


def read_secret_file(path: Path, what: str) -> str:
    """The secret in ``path`` (surrounding whitespace removed): readable, not empty, and of a
    mode that lets neither group nor others in; else `SecretFileRefused`, naming ``what``."""
    try:
        info = path.stat()
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretFileRefused(f"{what} unreadable: {type(exc).__name__}") from exc
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise SecretFileRefused(
            f"{what} mode {stat.S_IMODE(info.st_mode):o} lets group or others in; chmod 600"
        )
    if not text:
        raise SecretFileRefused(f"{what} is empty")
    return text


def _secret_file(path: Path, what: str) -> str:
    try:
        return read_secret_file(path, what)
    except SecretFileRefused as exc:
        raise KekUnavailable(str(exc)) from exc


def open_kek(config: KekConfig) -> KekSource:
    """The KEK this configuration names (the one KEK new data is sealed under)."""
    source = config.source
    if source == "pkcs11":
        from .hsm import Pkcs11Kek

        assert config.pkcs11_module and config.pkcs11_token_label and config.pkcs11_key_label
        assert config.pkcs11_pin_file is not None
        return Pkcs11Kek(
            config.pkcs11_module,
            token_label=config.pkcs11_token_label,
            key_label=config.pkcs11_key_label,
            user_pin=_secret_file(config.pkcs11_pin_file, "PKCS#11 PIN file"),
        )
    if source == "vault":
        from .vault import VaultTransitKek

        assert config.vault_addr and config.vault_key and config.vault_token_file is not None
        return VaultTransitKek.connect(
            config.vault_addr,
            _secret_file(config.vault_token_file, "Vault token file"),
            config.vault_key,
            mount_point=config.vault_mount,
        )
    if source == "inline":
        return kek_from_env("MAPPA_KEK", environ={"MAPPA_KEK": config.inline or ""})
    assert config.file is not None
    return kek_from_file(config.file)


def open_previous_keks(config: KekConfig) -> list[KekSource]:
    """The previous KEKs (for reading only, during a rotation): the files, then the others."""
    return [kek_from_file(path) for path in config.previous_files] + [
        open_kek(previous) for previous in config.previous
    ]


def open_envelope(config: KekConfig, kek: KekSource | None = None) -> Envelope:
    """An envelope sealing under the current KEK (``kek`` if already open) and opening blobs
    under it or any previous KEK.

    A blob names its KEK by id alone, and an HSM's or Vault's id is its token and key label, or
    its mount and key name: a new HSM or Vault holding a key of the same name as the old one
    would give two KEKs one id, and the old one would silently stand for the new (a rewrap then
    leaves every value where it is, and says it is done). So two KEKs of one id must be one key
    (a wrap by one opens under the other, and the second is dropped); else KekUnavailable."""
    current = kek if kek is not None else open_kek(config)
    known = {current.kek_id: current}
    previous = []
    for old in open_previous_keks(config):
        same = known.setdefault(old.kek_id, old)
        if same is old:
            previous.append(old)
        elif not _one_key(same, old):
            raise KekUnavailable(
                f"two different KEKs have the id {old.kek_id[:80]!r}: give the new key another "
                "name (its key label, or its Vault key name) than the old one"
            )
    return Envelope(current, previous=previous)


def _one_key(first: KekSource, second: KekSource) -> bool:
    """Whether a data key wrapped by ``first`` opens under ``second``."""
    probe, aad = os.urandom(32), b"mappa-kek-identity-probe"
    try:
        return second.unwrap(first.wrap(probe, aad), aad) == probe
    except EnvelopeRejected:
        return False
