"""Settings fail closed outside development."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.settings import DEV_KEYS_MARKER, Settings, get_settings


def test_development_profile_accepts_the_embedded_defaults() -> None:
    """`make run` works with no configuration at all."""
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.profile == "development"
    assert settings.is_sqlite


def test_production_refuses_http_issuer_sqlite_and_dev_keys(tmp_path: Path) -> None:
    """Production names every unsafe setting and refuses to start."""
    (tmp_path / DEV_KEYS_MARKER).write_text("generated for development")
    with pytest.raises(ValidationError) as caught:
        Settings(profile="production", issuer="http://gateway.example", keys_dir=tmp_path)
    message = str(caught.value)
    assert "https" in message
    assert "development keys" in message
    assert "PostgreSQL" in message


def test_production_with_safe_settings_starts(tmp_path: Path) -> None:
    """An https issuer, PostgreSQL and a production key directory pass."""
    settings = Settings(
        profile="production",
        issuer="https://mappa.example.gov.uk",
        keys_dir=tmp_path,
        database_url="postgresql+psycopg://gateway@db/mappa",
    )
    assert settings.profile == "production"


def test_settings_read_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """MAPPA_* variables configure the gateway; get_settings caches one instance."""
    monkeypatch.setenv("MAPPA_MAX_JSON_DEPTH", "12")
    get_settings.cache_clear()
    try:
        assert get_settings().max_json_depth == 12
        assert get_settings() is get_settings()
    finally:
        get_settings.cache_clear()


def test_settings_are_frozen() -> None:
    """Settings cannot be changed after they are loaded."""
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.profile = "production"  # type: ignore[misc]


def _production(tmp_path: Path) -> Settings:
    return Settings(
        profile="production",
        issuer="https://mappa.example.gov.uk",
        keys_dir=tmp_path / "keys",
        database_url="postgresql+psycopg://gateway@db/mappa",
    )


def test_production_refuses_a_dotenv_file_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stray .env would be read silently under the unit's environment: production refuses to
    start beside one, whatever it holds, and starts once it is gone. Development still reads it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("MAPPA_MAX_JSON_DEPTH=12\n")
    with pytest.raises(ValidationError, match="environment only"):
        _production(tmp_path)
    assert Settings(profile="development").max_json_depth == 12
    (tmp_path / ".env").unlink()
    assert _production(tmp_path).profile == "production"


def test_a_jwks_uri_is_cached_for_five_minutes_at_the_most(monkeypatch: pytest.MonkeyPatch) -> None:
    """A key an agency removes from its jwks_uri keeps authenticating on a replica until that
    replica's cached copy runs out: the cache time has a ceiling, as the docs promise."""
    assert Settings(jwks_cache_seconds=300).jwks_cache_seconds == 300
    with pytest.raises(ValidationError, match="jwks_cache_seconds"):
        Settings(jwks_cache_seconds=301)
    monkeypatch.setenv("MAPPA_JWKS_CACHE_SECONDS", "86400")
    with pytest.raises(ValidationError, match="jwks_cache_seconds"):
        Settings()
