"""Production KEK sources: PKCS#11 against SoftHSM2, and Vault transit against a stand-in client.

SoftHSM2 comes from Debian's ``softhsm2`` package (CI: ``apt-get install -y softhsm2``); the HSM
tests skip, saying so, only when its library is absent. No Vault server is reachable here, so
the Vault tests use a client that implements transit's encrypt/decrypt with AES-GCM locally.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import ValidationError

from gateway.keyring import KeyRepositoryUnavailable, open_kek
from gateway.settings import Settings
from gateway.store.sealed import open_case_sealer
from keys import (
    Envelope,
    EnvelopeRejected,
    FileKeyRepository,
    KekSource,
    KekUnavailable,
    KeyStoreError,
    LocalKek,
    Purpose,
    blob_kek_id,
    generate_kek_file,
    load_blind_index,
    rewrap,
)
from keys.cli import main as keys_main
from keys.hsm import Pkcs11Kek
from keys.kek_config import KekConfig
from keys.vault import VaultTransitKek

AAD = b"records:42:v1"


def test_pkcs11_kek_round_trips_an_envelope(softhsm: dict[str, str]) -> None:
    """A record sealed under the HSM KEK opens again; the HSM key is a KekSource."""
    kek = Pkcs11Kek(**softhsm, key_label="kek-1")
    assert isinstance(kek, KekSource)
    envelope = Envelope(kek)
    blob = envelope.seal(b"MAPPA minutes", AAD)
    assert envelope.unseal(blob, AAD) == b"MAPPA minutes"
    assert kek.kek_id == "pkcs11:mappa-test/kek-1"


def test_pkcs11_kek_refuses_wrong_aad_and_tampering(softhsm: dict[str, str]) -> None:
    """The HSM's GCM tag binds the wrapped data key to the envelope's AAD."""
    kek = Pkcs11Kek(**softhsm, key_label="kek-1")
    wrapped = kek.wrap(os.urandom(32), b"dek-aad")
    with pytest.raises(EnvelopeRejected):
        kek.unwrap(wrapped, b"other-aad")
    tampered = bytearray(wrapped)
    tampered[20] ^= 1
    with pytest.raises(EnvelopeRejected):
        kek.unwrap(bytes(tampered), b"dek-aad")


def test_rewrap_from_local_kek_to_hsm_and_between_hsm_keys(softhsm: dict[str, str]) -> None:
    """A development blob moves under the HSM KEK, then to another HSM key, unread."""
    local = LocalKek(os.urandom(32))
    first = Pkcs11Kek(**softhsm, key_label="kek-1")
    second = Pkcs11Kek(**softhsm, key_label="kek-2")
    blob = Envelope(local).seal(b"referral", AAD)
    moved = rewrap(rewrap(blob, local, first), first, second)
    assert Envelope(second).unseal(moved, AAD) == b"referral"


def test_pkcs11_unknown_key_or_bad_pin_is_kek_unavailable(softhsm: dict[str, str]) -> None:
    """Configuration mistakes surface as kek_unavailable, not as PKCS#11 exceptions."""
    with pytest.raises(KekUnavailable):
        Pkcs11Kek(**softhsm, key_label="absent")
    with pytest.raises(KekUnavailable):
        Pkcs11Kek(**{**softhsm, "user_pin": "0000"}, key_label="kek-1")


class FakeTransit:
    """Speaks hvac's transit encrypt_data/decrypt_data, with AES-GCM held locally."""

    def __init__(self) -> None:
        self.key = AESGCM(os.urandom(32))
        self.calls = 0

    def encrypt_data(self, *, name: str, plaintext: str, associated_data: str, **_: Any) -> Any:
        self.calls += 1
        nonce = os.urandom(12)
        body = self.key.encrypt(
            nonce, base64.b64decode(plaintext), base64.b64decode(associated_data)
        )
        return {"data": {"ciphertext": "vault:v1:" + base64.b64encode(nonce + body).decode()}}

    def decrypt_data(self, *, name: str, ciphertext: str, associated_data: str, **_: Any) -> Any:
        self.calls += 1
        raw = base64.b64decode(ciphertext.removeprefix("vault:v1:"))
        try:
            plain = self.key.decrypt(raw[:12], raw[12:], base64.b64decode(associated_data))
        except Exception as exc:
            raise RuntimeError("hvac.exceptions.InvalidRequest stand-in") from exc
        return {"data": {"plaintext": base64.b64encode(plain).decode()}}


class FakeClient:
    def __init__(self) -> None:
        self.secrets = type("Secrets", (), {"transit": FakeTransit()})()


def test_vault_transit_kek_round_trips_an_envelope() -> None:
    """Data keys go to transit with the AAD and come back as vault:v1 ciphertext."""
    client = FakeClient()
    kek = VaultTransitKek(client, "mappa-kek")
    assert isinstance(kek, KekSource) and kek.kek_id == "vault:transit/mappa-kek"
    envelope = Envelope(kek)
    blob = envelope.seal(b"case note", AAD)
    assert b"vault:v1:" in blob
    assert envelope.unseal(blob, AAD) == b"case note"
    assert client.secrets.transit.calls == 2


def test_vault_transit_refusals_are_envelope_rejected() -> None:
    """A wrong AAD (Vault's error) or a non-transit wrapped key refuses to open."""
    kek = VaultTransitKek(FakeClient(), "mappa-kek")
    wrapped = kek.wrap(os.urandom(32), b"a")
    with pytest.raises(EnvelopeRejected):
        kek.unwrap(wrapped, b"b")
    with pytest.raises(EnvelopeRejected):
        kek.unwrap(b"not-vault", b"a")


def test_vault_outage_on_wrap_is_kek_unavailable() -> None:
    """If Vault cannot be reached, sealing fails closed with kek_unavailable."""

    class Down:
        def encrypt_data(self, **_: Any) -> Any:
            raise ConnectionError("vault down")

    client = FakeClient()
    client.secrets.transit = Down()
    with pytest.raises(KekUnavailable):
        Envelope(VaultTransitKek(client, "k")).seal(b"x", AAD)


def _key_directory_round_trip(kek: KekSource, directory: Path) -> None:
    """A key directory under ``kek``: keys and metadata seals open in a fresh process, a re-read
    unseals nothing, and a retired key edited back to current is refused."""
    repository = FileKeyRepository(directory, kek)
    for purpose in Purpose:
        repository.ensure(purpose)
    repository.retire(Purpose.TOKEN_SIGNING, repository.ring(Purpose.TOKEN_SIGNING).current().kid)
    fresh = FileKeyRepository(directory, kek)
    assert len(fresh.list()) == 5
    fresh.reload()
    assert len(fresh.list()) == 5
    (path,) = (directory / "token-signing").glob("*.json")
    record = json.loads(path.read_text())
    record["status"] = "current"
    path.write_text(json.dumps(record))
    with pytest.raises(KeyStoreError, match="does not match its seal"):
        FileKeyRepository(directory, kek).ring(Purpose.TOKEN_SIGNING)


def test_key_directory_under_an_hsm_kek(softhsm: dict[str, str], tmp_path: Path) -> None:
    """Private keys and metadata seals go through the HSM KEK like any envelope."""
    _key_directory_round_trip(Pkcs11Kek(**softhsm, key_label="kek-1"), tmp_path / "keys")


def test_key_directory_under_a_vault_kek_costs_two_calls_per_key_once(tmp_path: Path) -> None:
    """Under Vault transit each key file costs two encrypts when written (key, metadata seal)
    and two decrypts when first read by a process; a re-read costs no call."""
    client = FakeClient()
    transit = client.secrets.transit
    kek = VaultTransitKek(client, "mappa-kek")
    repository = FileKeyRepository(tmp_path / "keys", kek)
    for purpose in Purpose:
        repository.ensure(purpose)
    assert transit.calls == 10
    fresh = FileKeyRepository(tmp_path / "keys", kek)
    fresh.list()
    assert transit.calls == 20
    fresh.reload()
    fresh.list()
    repository.list()
    assert transit.calls == 20
    _key_directory_round_trip(kek, tmp_path / "other")


# -- The gateway and the keys CLI configured with an HSM or Vault KEK (keys/kek_config.py) ----


def _secret_file(path: Path, text: str) -> Path:
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def _configured_alike(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The keys CLI, given the gateway's KEK settings as variables, makes the blind-index
    secret; the gateway's case sealer opens it and seals under the same KEK."""
    for name in ("MAPPA_KEK", "MAPPA_KEK_FILE", "MAPPA_PREVIOUS_KEK_FILES"):
        monkeypatch.delenv(name, raising=False)
    for name, value in settings.kek_config.to_env().items():
        if name != "MAPPA_KEK_FILE":
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("MAPPA_KEYS_DIR", str(settings.keys_dir))
    assert keys_main(["keys", "init-blind-index"]) == 0
    kek = open_kek(settings)
    sealer = open_case_sealer(settings)
    blob = sealer.seal("nominals", "n-1", "details_sealed", {"names": {"family_name": "SMITH"}})
    assert blob_kek_id(blob) == kek.kek_id
    assert sealer.unseal("nominals", "n-1", "details_sealed", blob)["names"]
    with pytest.raises(KekUnavailable):  # the secret is under that KEK, not some other one
        load_blind_index(settings.keys_dir, LocalKek(os.urandom(32)))


def test_gateway_and_keys_cli_use_an_hsm_kek_from_settings(
    softhsm: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(
        profile="test",
        issuer="https://gateway.test",
        database_url="sqlite+aiosqlite:///unused.db",
        keys_dir=tmp_path / "keys",
        kek_pkcs11_module=softhsm["library_path"],
        kek_pkcs11_token_label=softhsm["token_label"],
        kek_pkcs11_key_label="kek-2",
        kek_pkcs11_pin_file=_secret_file(tmp_path / "pin", softhsm["user_pin"]),
    )
    (tmp_path / "keys").mkdir()
    assert isinstance(open_kek(settings), Pkcs11Kek)
    assert open_kek(settings).kek_id == "pkcs11:mappa-test/kek-2"
    _configured_alike(settings, monkeypatch)


class _Hvac:
    """Stands in for the ``hvac`` module: a client whose transit is a FakeTransit."""

    def __init__(self) -> None:
        self.transit = FakeTransit()
        transit = self.transit

        class Client:
            def __init__(self, *, url: str, token: str) -> None:
                self.url, self.token = url, token
                self.secrets = type("Secrets", (), {"transit": transit})()

            def is_authenticated(self) -> bool:
                return self.token == "s.gateway"

        self.Client = Client


def test_gateway_and_keys_cli_use_a_vault_kek_from_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hvac = _Hvac()
    monkeypatch.setitem(sys.modules, "hvac", hvac)
    settings = Settings(
        profile="test",
        issuer="https://gateway.test",
        database_url="sqlite+aiosqlite:///unused.db",
        keys_dir=tmp_path / "keys",
        kek_vault_addr="https://vault.test:8200",
        kek_vault_key="mappa-kek",
        kek_vault_token_file=_secret_file(tmp_path / "token", "s.gateway"),
    )
    (tmp_path / "keys").mkdir()
    assert open_kek(settings).kek_id == "vault:transit/mappa-kek"
    _configured_alike(settings, monkeypatch)
    assert hvac.transit.calls > 0
    refused = settings.model_copy(
        update={"kek_vault_token_file": _secret_file(tmp_path / "bad", "s.other")}
    )
    with pytest.raises(KeyRepositoryUnavailable):
        open_kek(refused)


def test_kek_source_settings_fail_closed(tmp_path: Path) -> None:
    """Production refuses an inline KEK; an ambiguous or incomplete source, or a PIN file open
    to others, is refused in any profile."""
    inline = base64.b64encode(os.urandom(32)).decode()
    production = {
        "profile": "production",
        "issuer": "https://gateway.example",
        "database_url": "postgresql+psycopg://gw@127.0.0.1:5432/gw",
        "keys_dir": tmp_path / "keys",
    }
    with pytest.raises(ValidationError, match="inline KEK"):
        Settings(**production, kek=inline)
    hsm = {"kek_pkcs11_module": "/usr/lib/softhsm/libsofthsm2.so"}
    with pytest.raises(ValidationError, match="incomplete KEK source"):
        Settings(**production, **hsm)
    with pytest.raises(ValidationError, match="more than one KEK source"):
        Settings(profile="development", kek=inline, kek_vault_addr="https://vault.test", **hsm)
    pin = tmp_path / "pin"
    pin.write_text("1234\n")
    pin.chmod(0o644)
    settings = Settings(
        profile="development",
        kek_pkcs11_module="/nonexistent/libpkcs11.so",
        kek_pkcs11_token_label="t",
        kek_pkcs11_key_label="k",
        kek_pkcs11_pin_file=pin,
    )
    with pytest.raises(KeyRepositoryUnavailable, match="PIN file mode 644"):
        open_kek(settings)


@pytest.mark.parametrize(
    "address",
    [
        "http://vault.example:8200",  # the Vault token, and the wrapped data keys, in clear
        "http://10.0.0.7:8200",
        "https://user:secret@vault.example:8200",
        "vault.example:8200",
    ],
)
def test_a_vault_kek_is_reached_over_https_only(address: str) -> None:
    """Vault is sent its token and answers with data keys: plain http only to this machine."""
    config = KekConfig(vault_addr=address, vault_key="k", vault_token_file=Path("/nonexistent"))
    with pytest.raises(KekUnavailable, match="MAPPA_KEK_VAULT_ADDR"):
        config.source


@pytest.mark.parametrize(
    "address", ["https://vault.example:8200", "http://127.0.0.1:8200", "http://localhost:8200"]
)
def test_vault_over_https_or_on_this_machine_is_a_vault_source(address: str) -> None:
    config = KekConfig(vault_addr=address, vault_key="k", vault_token_file=Path("/nonexistent"))
    assert config.source == "vault"


def test_previous_keks_name_any_source_by_its_variables() -> None:
    """MAPPA_PREVIOUS_KEKS: one object per KEK, of the variables that named it (a file, an HSM
    key, a Vault key), read as the current KEK's are, and written back by to_env."""
    hsm = {
        "MAPPA_KEK_PKCS11_MODULE": "/usr/lib/softhsm/libsofthsm2.so",
        "MAPPA_KEK_PKCS11_TOKEN_LABEL": "mappa",
        "MAPPA_KEK_PKCS11_KEY_LABEL": "kek-2025",
        "MAPPA_KEK_PKCS11_PIN_FILE": "/etc/mappa/pin",
    }
    vault = {
        "MAPPA_KEK_VAULT_ADDR": "https://vault.example:8200",
        "MAPPA_KEK_VAULT_KEY": "mappa-kek-2025",
        "MAPPA_KEK_VAULT_TOKEN_FILE": "/etc/mappa/vault-token",
        "MAPPA_KEK_VAULT_MOUNT": "transit-old",
    }
    env = {
        "MAPPA_KEK_FILE": "/etc/mappa/kek",
        "MAPPA_PREVIOUS_KEKS": json.dumps([{"MAPPA_KEK_FILE": "/etc/mappa/kek-old"}, hsm, vault]),
    }
    config = KekConfig.from_env(env)
    assert [p.source for p in config.previous] == ["file", "pkcs11", "vault"]
    assert config.previous[1].pkcs11_key_label == "kek-2025"
    assert config.previous[2].vault_mount == "transit-old"
    assert KekConfig.from_env(config.to_env()) == config
    settings = Settings(profile="development", previous_keks=json.dumps([hsm, vault]))
    assert settings.kek_config.previous == config.previous[1:]


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("not json", "must be a JSON list"),
        ('{"MAPPA_KEK_FILE": "/k"}', "must be a JSON list"),
        ('["/etc/mappa/kek-old"]', "[0] must be an object"),
        ('[{"MAPPA_KEK_FILE": 7}]', "[0] must be an object"),
        ('[{"MAPPA_KEK": "c2VjcmV0"}]', "'MAPPA_KEK' is not a variable"),  # inline: never
        ('[{"MAPPA_PREVIOUS_KEKS": "[]"}]', "'MAPPA_PREVIOUS_KEKS' is not a variable"),
        ('[{"MAPPA_KEK_PKCS11_PIN": "1234"}]', "'MAPPA_KEK_PKCS11_PIN' is not a variable"),
        ("[{}]", "[0]: no KEK configured"),
        ('[{"MAPPA_KEK_FILE": "/k", "MAPPA_KEK_PKCS11_KEY_LABEL": "kek"}]', "[0] mixes"),
        ('[{"MAPPA_KEK_PKCS11_MODULE": " "}]', "[0]: MAPPA_KEK_PKCS11_MODULE is empty"),
        ("[" * 100_000 + "]" * 100_000, "must be a JSON list"),  # nested past the parser
        (
            '[{"MAPPA_KEK_VAULT_ADDR": "http://[::1", "MAPPA_KEK_VAULT_KEY": "k", '
            '"MAPPA_KEK_VAULT_TOKEN_FILE": "/t"}]',
            "[0]: MAPPA_KEK_VAULT_ADDR is not a URL",
        ),
        ('[{"MAPPA_KEK_PKCS11_MODULE": "/lib.so"}]', "[0]: incomplete KEK source"),
        (
            '[{"MAPPA_KEK_FILE": "/k"}, {"MAPPA_KEK_FILE": "/k2", "MAPPA_KEK_VAULT_ADDR": '
            '"https://v", "MAPPA_KEK_VAULT_KEY": "k", "MAPPA_KEK_VAULT_TOKEN_FILE": "/t"}]',
            "[1] mixes a Vault key and a file: one KEK each",
        ),
        (
            '[{"MAPPA_KEK_VAULT_ADDR": "http://vault.example", "MAPPA_KEK_VAULT_KEY": "k", '
            '"MAPPA_KEK_VAULT_TOKEN_FILE": "/t"}]',
            "[0]: MAPPA_KEK_VAULT_ADDR must be https",
        ),
    ],
)
def test_a_previous_kek_named_wrong_is_refused_before_anything_opens(
    value: str, says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each mistake is refused by the settings (the gateway does not start) and by the keys CLI
    (exit 2), naming the entry and never a value; the PIN given in the wrong place is not
    echoed."""
    with pytest.raises(KekUnavailable) as caught:
        KekConfig.from_env({"MAPPA_KEK_FILE": "/k", "MAPPA_PREVIOUS_KEKS": value})
    assert says in caught.value.reason and "1234" not in caught.value.reason
    assert "c2VjcmV0" not in caught.value.reason
    monkeypatch.setenv("MAPPA_PREVIOUS_KEKS", value)
    with pytest.raises(ValidationError):
        Settings(profile="development")
    kek = tmp_path / "kek"
    generate_kek_file(kek)
    assert keys_main(["keys", "list", "--keys-dir", str(tmp_path), "--kek-file", str(kek)]) == 2
