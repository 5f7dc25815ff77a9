"""deploy/gateway.env.example: read alike by systemd and a shell, and accepted by the gateway's
settings under the production profile (which refuses what production must not run with)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.settings import Settings, SettingsError
from tests.deploy.support import ENV_EXAMPLE, parse_environment_file, relocate, shell_environment

#: The names the file may set beside the gateway's own settings.
OTHER_NAMES = {"PGPASSFILE"}


def _settings(values: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The gateway's Settings from exactly these variables (no .env, nothing inherited)."""
    import os

    for name in list(os.environ):
        if name.startswith("MAPPA_"):
            monkeypatch.delenv(name)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return Settings(_env_file=None)  # type: ignore[call-arg]


def _relocated(tmp_path: Path) -> dict[str, str]:
    return parse_environment_file(relocate(ENV_EXAMPLE.read_text(), tmp_path))


def test_systemd_and_a_shell_read_the_file_alike(tmp_path: Path) -> None:
    """Operators load it with ``set -a; . FILE``, systemd with EnvironmentFile=: the same
    values either way (a JSON list or a URL with ``&`` unquoted would differ, or break)."""
    declared = parse_environment_file(ENV_EXAMPLE.read_text())
    shell = shell_environment(ENV_EXAMPLE)
    assert {name: shell.get(name) for name in declared} == declared
    assert declared["MAPPA_TRUSTED_PROXIES"] == '["10.0.1.5"]'
    assert "&sslrootcert=" in declared["MAPPA_DATABASE_URL"]


def test_only_gateway_settings_and_libpq_names(tmp_path: Path) -> None:
    declared = parse_environment_file(ENV_EXAMPLE.read_text())
    others = {name for name in declared if not name.startswith("MAPPA_")}
    assert others <= OTHER_NAMES


def test_the_production_profile_accepts_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = _relocated(tmp_path)
    settings = _settings(values, monkeypatch)
    assert settings.profile == "production"
    assert settings.issuer.startswith("https://")
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert settings.kek_config.source == "vault"
    assert settings.kek is None
    assert settings.trusted_proxies == ("10.0.1.5",)
    assert settings.relay_interval_seconds == 0
    assert (
        settings.audit_checkpoint_file == tmp_path / "var/lib/mappa-gateway/audit/checkpoint.note"
    )
    assert settings.keys_dir == tmp_path / "var/lib/mappa-gateway/keys"
    assert settings.console_oidc_issuer and not settings.console_password_login


def test_the_commented_hsm_alternative_is_accepted_in_place_of_vault(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = relocate(ENV_EXAMPLE.read_text(), tmp_path)
    text = re.sub(r"(?m)^MAPPA_KEK_VAULT_", "#MAPPA_KEK_VAULT_", text)
    text = re.sub(r"(?m)^#(MAPPA_KEK_PKCS11_)", r"\1", text)
    settings = _settings(parse_environment_file(text), monkeypatch)
    assert settings.kek_config.source == "pkcs11"


def test_both_kek_sources_at_once_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Uncommenting the HSM lines without commenting out Vault's: refused, as the file says."""
    text = re.sub(r"(?m)^#(MAPPA_KEK_PKCS11_)", r"\1", relocate(ENV_EXAMPLE.read_text(), tmp_path))
    with pytest.raises(ValueError, match="more than one KEK source"):
        _settings(parse_environment_file(text), monkeypatch)


@pytest.mark.parametrize(
    ("name", "value", "refusal"),
    [
        ("MAPPA_DATABASE_URL", "sqlite+aiosqlite:///var/mappa.db", "PostgreSQL"),
        ("MAPPA_ISSUER", "http://gateway.mappa.example.org", "https"),
        ("MAPPA_KEK", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "inline KEK"),
    ],
)
def test_the_checks_are_live(
    name: str, value: str, refusal: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same file with one production requirement broken is refused: the validation above
    is the production profile's, not a formality."""
    values = _relocated(tmp_path)
    if name == "MAPPA_KEK":  # an inline KEK in place of Vault
        values = {k: v for k, v in values.items() if not k.startswith("MAPPA_KEK_VAULT_")}
    values[name] = value
    with pytest.raises((SettingsError, ValueError), match=refusal):
        _settings(values, monkeypatch)
