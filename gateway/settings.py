"""Configuration, from the environment (prefix ``MAPPA_``) or a ``.env`` file.

Settings fail closed: outside the ``development`` profile the gateway refuses to start with an
``http`` issuer or a generated development key directory, and the ``production`` profile also
refuses an inline KEK (``MAPPA_KEK``) and SQLite. A KEK source that is incomplete or ambiguous
(two of HSM, Vault, inline) is refused in every profile. Load them with :func:`get_settings`
(cached), never at import time.
"""

from __future__ import annotations

import functools
import ipaddress
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic.networks import IPvAnyAddress
from pydantic_settings import BaseSettings, SettingsConfigDict

from keys import DEVELOPMENT_MARKER, holds_development_keys
from keys.errors import KekUnavailable
from keys.kek_config import KekConfig, SecretFileRefused, previous_kek_configs, read_secret_file

__all__ = ["DEV_KEYS_MARKER", "Profile", "Settings", "SettingsError", "get_settings"]

Profile = Literal["development", "test", "production"]

#: A file that ``keys`` writes into a key directory generated for development.
DEV_KEYS_MARKER = DEVELOPMENT_MARKER


#: Read from the working directory, under the environment, in development and tests (refused in
#: production: see ``Settings._fail_closed``).
ENV_FILE = ".env"


class SettingsError(ValueError):
    """The configuration is unsafe for the chosen profile."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MAPPA_", env_file=ENV_FILE, extra="ignore", frozen=True
    )

    profile: Profile = "development"
    #: SQLAlchemy async URL. ``sqlite+aiosqlite:///path`` (default) or
    #: ``postgresql+psycopg://user@host:5432/db``.
    database_url: str = "sqlite+aiosqlite:///var/mappa.db"
    #: The issuer identifier: the gateway's public base URL, also the ``aud`` of client assertions.
    issuer: str = "http://127.0.0.1:8000"
    keys_dir: Path = Path("var/keys")
    #: Where the key-encryption key comes from in development (a file of 32 random bytes).
    kek_file: Path | None = Path("var/kek.bin")
    #: Or inline, base64 (development and tests only: the production profile refuses it).
    kek: SecretStr | None = None
    #: Production: the KEK as an AES-256 key in an HSM over PKCS#11 (the module's path, the
    #: token's and the key's labels, a file holding the user PIN, mode 0600). Wins over
    #: ``kek_file``. See keys/kek_config.py, shared with the keys CLI.
    kek_pkcs11_module: str | None = None
    kek_pkcs11_token_label: str | None = None
    kek_pkcs11_key_label: str | None = None
    kek_pkcs11_pin_file: Path | None = None
    #: Or a Vault transit key (Vault's address, the transit key's name, a file holding the
    #: token, mode 0600, and the transit mount). Wins over ``kek_file``.
    kek_vault_addr: str | None = None
    kek_vault_key: str | None = None
    kek_vault_token_file: Path | None = None
    kek_vault_mount: str = "transit"
    #: KEK files kept for reading only while a KEK rotation moves the stored data to the current
    #: KEK (keys/README.md, "Rotating the KEK"); new data is always sealed under the current KEK.
    #: A JSON list in the environment: ``MAPPA_PREVIOUS_KEK_FILES='["/etc/mappa/kek-old"]'``.
    previous_kek_files: tuple[Path, ...] = ()
    #: Previous KEKs of any source, one object each of the variables naming it (a file, an HSM
    #: key or a Vault key), for a rotation to or from an HSM or Vault, as JSON text (read by
    #: keys/kek_config.py, as the keys CLI reads it): ``MAPPA_PREVIOUS_KEKS=
    #: '[{"MAPPA_KEK_PKCS11_MODULE": "...", "MAPPA_KEK_PKCS11_TOKEN_LABEL": "...",
    #: "MAPPA_KEK_PKCS11_KEY_LABEL": "kek-2025", "MAPPA_KEK_PKCS11_PIN_FILE": "..."}]'``.
    previous_keks: str = ""
    #: How long this process uses its key rings before it reads ``keys_dir`` again: for up to
    #: this long after a rotation or retirement made elsewhere (the keys CLI, another replica)
    #: it still signs with the old key, and still accepts a key just retired. A kid it does not
    #: know yet is looked up at once (rate-limited) anyway.
    key_refresh_seconds: float = Field(default=30.0, gt=0, le=3600)

    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_json_depth: int = Field(default=32, ge=2, le=256)
    max_header_bytes: int = Field(default=16_384, ge=1024)
    #: uvicorn's HTTP/1.1 parser under ``serve``. h11 refuses a header block past
    #: ``max_header_bytes`` while it arrives; httptools (faster by about 0.08 ms of CPU a
    #: request) buffers one of any size before the gateway can refuse it, so choose it only
    #: behind a proxy that bounds request headers itself (benchmarks/oversized.py).
    http_parser: Literal["h11", "httptools"] = "h11"
    db_pool_size: int = Field(default=10, ge=1)
    #: Freeze what start-up built out of the garbage collector's reach (gateway/app.py); off
    #: where many apps start in one process and should be collected again (the test suite).
    freeze_heap_at_start: bool = True
    #: Protected calls per second per agency (per process), and the burst allowed above it.
    rate_limit_per_second: float = Field(default=100.0, gt=0)
    rate_limit_burst: int = Field(default=200, ge=1)
    #: Token requests per second per peer address (per process), and their burst.
    token_rate_limit_per_second: float = Field(default=10.0, gt=0)
    token_rate_limit_burst: int = Field(default=50, ge=1)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_json: bool = True

    # -- Agency authentication (gateway/oauth, gateway/flow/authenticate.py) --
    #: Lifetime of an access token (RFC 9068 at+jwt, DPoP-bound); FAPI 2.0 caps it here at 5 min.
    access_token_lifetime_seconds: int = Field(default=300, ge=30, le=300)
    #: Clock skew tolerated on ``exp`` of tokens, assertions and DPoP proofs.
    clock_leeway_seconds: int = Field(default=5, ge=0, le=30)
    #: How far in the future ``iat``/``nbf`` of an assertion or proof may be (FAPI 2.0: 60 s).
    max_future_skew_seconds: int = Field(default=60, ge=0, le=60)
    #: The latest ``exp`` a client assertion may carry, counted from now.
    assertion_max_lifetime_seconds: int = Field(default=300, ge=30, le=600)
    #: How old (by ``iat``) a DPoP proof may be.
    dpop_max_age_seconds: int = Field(default=60, ge=5, le=300)
    #: Addresses (or networks, ``10.0.0.0/24``) of TLS-terminating proxies whose RFC 9440
    #: ``Client-Cert`` header is believed, for RFC 8705 ``tls_client_auth`` and certificate-bound
    #: tokens; the header from anyone else is ignored. Empty: the method is off. The last
    #: ``X-Forwarded-For`` address such a proxy appends is also the client's address for the
    #: per-address limits (token endpoint, console sign-in). A JSON list in the environment:
    #: ``MAPPA_TRUSTED_PROXIES='["10.0.0.5"]'``.
    trusted_proxies: tuple[str, ...] = ()
    #: Addresses or networks that may read ``/metrics`` (the socket's peer; others get 404):
    #: the Prometheus scraper's. Loopback by default.
    metrics_allowed: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    #: Agency JWKS fetched from a registered ``jwks_uri``: size cap, cache time, timeout, CA file.
    #: The cache time bounds how long a key the agency removed there still authenticates on a
    #: replica (docs/authentication.md): five minutes at the most.
    jwks_max_bytes: int = Field(default=65_536, ge=1024, le=1_048_576)
    jwks_cache_seconds: int = Field(default=300, ge=10, le=300)
    jwks_fetch_timeout_seconds: float = Field(default=5.0, gt=0, le=30)
    jwks_ca_file: Path | None = None

    # -- Audit log and IG console (gateway/audit, gateway/console) --
    #: How often the background sequencer integrates new audit entries and signs a checkpoint;
    #: 0 turns it off in this process (``mappa-gateway audit sequence`` then does it).
    audit_sequence_interval_seconds: float = Field(default=1.0, ge=0, le=3600)
    #: Most entries integrated in one sequencer transaction (it loops until none is left).
    audit_sequence_batch: int = Field(default=5000, ge=1, le=100_000)
    #: The log's origin line and key name in checkpoints; by default ``<issuer host>/mappa-audit``.
    audit_origin: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._:/-]{1,200}$")
    #: The checkpoint witness (gateway/audit/witness.py): the file where the sequencer keeps the
    #: last checkpoint it signed, outside the database, and which every new checkpoint must
    #: extend. Put it where the database's administrators cannot write. Default: a file under
    #: ``<keys_dir>/audit-checkpoints/`` named for the log's origin and database.
    audit_checkpoint_file: Path | None = None
    #: A console session ends after this long without a request, and after the maximum anyway.
    console_session_idle_seconds: int = Field(default=900, ge=60, le=86_400)
    console_session_max_seconds: int = Field(default=28_800, ge=300, le=86_400)
    #: Console sign-in throttling: this many failed sign-ins for one officer id within the
    #: window lock it for the rest of the window (counted from the audit log, so every replica
    #: agrees); and sign-in attempts per minute per client address (per process), with a burst.
    console_login_max_failures: int = Field(default=5, ge=1, le=100)
    console_login_window_seconds: int = Field(default=900, ge=60, le=86_400)
    console_login_per_address_per_minute: float = Field(default=10.0, gt=0, le=6000)
    console_login_address_burst: int = Field(default=10, ge=1, le=1000)
    #: Local argon2 password sign-in; turn it off where OIDC is the way IG officers sign in.
    console_password_login: bool = True
    #: OIDC sign-in for the console (gateway/console/oidc.py): the identity provider's issuer
    #: (discovery at ``<issuer>/.well-known/openid-configuration``), the gateway's client there,
    #: a CA file for its TLS (default: the system's), and how long to wait for it.
    console_oidc_issuer: str | None = None
    console_oidc_client_id: str | None = None
    console_oidc_client_secret: SecretStr | None = None
    #: Or a file holding it (mode 0600), read at start, as the HSM PIN and the Vault token are.
    console_oidc_client_secret_file: Path | None = None
    console_oidc_ca_file: Path | None = None
    console_oidc_timeout_seconds: float = Field(default=5.0, gt=0, le=30)
    #: Development only: an OIDC provider over plain http on a loopback address.
    unsafe_console_oidc_plain_http_loopback: bool = False

    # -- Delivery: the outbox relay (gateway/delivery) --
    #: Seconds between relay sweeps inside ``serve``; 0 runs no relay in the API process
    #: (``mappa-gateway relay`` then does it).
    relay_interval_seconds: float = Field(default=1.0, ge=0, le=3600)
    #: How long a leased row stays with one relay before another may take it (> total timeout).
    relay_lease_seconds: float = Field(default=60.0, ge=5, le=3600)
    relay_max_attempts: int = Field(default=12, ge=1, le=100)
    relay_backoff_base_seconds: float = Field(default=2.0, gt=0, le=600)
    relay_backoff_cap_seconds: float = Field(default=900.0, gt=0, le=86_400)
    relay_breaker_threshold: int = Field(default=5, ge=1, le=1000)
    relay_breaker_cooldown_seconds: float = Field(default=30.0, gt=0, le=3600)
    relay_max_in_flight: int = Field(default=64, ge=1, le=10_000)
    relay_partner_concurrency: int = Field(default=4, ge=1, le=100)
    relay_connect_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    relay_read_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    relay_total_timeout_seconds: float = Field(default=20.0, gt=0, le=300)
    relay_max_response_bytes: int = Field(default=65_536, ge=1024, le=10_485_760)
    #: Client certificate (and key) the relay presents to partners that ask for mutual TLS.
    relay_client_cert_file: Path | None = None
    relay_client_key_file: Path | None = None
    #: The Prometheus listener of ``mappa-gateway relay`` run alone: its metrics only, to the
    #: ``metrics_allowed`` addresses. 0 (the default): none. ``serve`` never opens it (the relay
    #: it runs counts into its own ``/metrics``). On the loopback unless set to a private
    #: address the scraper reaches; never a public one.
    relay_metrics_port: int = Field(default=0, ge=0, le=65_535)
    relay_metrics_host: IPvAnyAddress = ipaddress.IPv4Address("127.0.0.1")
    #: Development only: push over plain http to loopback endpoints (the demo's stand-ins).
    unsafe_relay_plain_http_loopback: bool = False

    @field_validator("trusted_proxies", "metrics_allowed")
    @classmethod
    def _addresses(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError as exc:
                raise ValueError(
                    f"{info.field_name}: not an address or network: {entry!r}"
                ) from exc
        return value

    @model_validator(mode="after")
    def _fail_closed(self) -> Settings:
        if self.console_oidc_client_secret and self.console_oidc_client_secret_file:
            raise SettingsError(
                "console_oidc_client_secret and _client_secret_file are both set: choose one"
            )
        if self.console_oidc_issuer and not (
            self.console_oidc_client_id
            and (self.console_oidc_client_secret or self.console_oidc_client_secret_file)
        ):
            raise SettingsError(
                "console OIDC needs console_oidc_client_id and _client_secret (or _secret_file)"
            )
        if self.console_oidc_issuer and not self.console_oidc_issuer.startswith("https://"):
            loopback = urlsplit(self.console_oidc_issuer).hostname in ("127.0.0.1", "::1")
            if not (self.unsafe_console_oidc_plain_http_loopback and loopback):
                raise SettingsError("console_oidc_issuer must be an https URL")
        try:
            self.kek_config.source  # noqa: B018 - raises on an incomplete or ambiguous source
        except KekUnavailable as exc:
            raise SettingsError(exc.reason) from exc
        if self.profile == "development":
            return self
        problems = []
        if self.profile == "production" and self.kek is not None:
            problems.append("production refuses an inline KEK (MAPPA_KEK): use an HSM or Vault")
        if self.unsafe_console_oidc_plain_http_loopback:
            problems.append("unsafe_console_oidc_plain_http_loopback is for development only")
        if not self.issuer.startswith("https://"):
            problems.append("issuer must be an https URL outside development")
        if holds_development_keys(self.keys_dir):  # the marker, or a development key's file
            problems.append(f"{self.keys_dir} holds generated development keys")
        if self.unsafe_relay_plain_http_loopback:
            problems.append("unsafe_relay_plain_http_loopback is for development only")
        if self.profile == "production" and self.database_url.startswith("sqlite"):
            problems.append("production needs PostgreSQL (MAPPA_DATABASE_URL)")
        if self.profile == "production" and Path(ENV_FILE).exists():
            # pydantic-settings reads it under the environment, silently: in production the
            # settings come from the environment (the unit's EnvironmentFile) alone.
            problems.append(
                f"production takes its settings from the environment only: a {ENV_FILE} file "
                f"in the working directory ({Path.cwd()}) would be read too; remove it"
            )
        if problems:
            raise SettingsError("; ".join(problems))
        return self

    def console_oidc_secret(self) -> str | None:
        """The console's OIDC client secret, inline or read from its file (SettingsError when
        that file cannot be used)."""
        if self.console_oidc_client_secret is not None:
            return self.console_oidc_client_secret.get_secret_value()
        if self.console_oidc_client_secret_file is None:
            return None
        try:
            return read_secret_file(self.console_oidc_client_secret_file, "console OIDC secret")
        except SecretFileRefused as exc:
            raise SettingsError(str(exc)) from exc

    @property
    def kek_config(self) -> KekConfig:
        """The KEK's source, as the keys CLI describes it too (keys/kek_config.py)."""
        return KekConfig(
            file=self.kek_file,
            inline=self.kek.get_secret_value() if self.kek is not None else None,
            pkcs11_module=self.kek_pkcs11_module,
            pkcs11_token_label=self.kek_pkcs11_token_label,
            pkcs11_key_label=self.kek_pkcs11_key_label,
            pkcs11_pin_file=self.kek_pkcs11_pin_file,
            vault_addr=self.kek_vault_addr,
            vault_key=self.kek_vault_key,
            vault_token_file=self.kek_vault_token_file,
            vault_mount=self.kek_vault_mount,
            previous_files=self.previous_kek_files,
            previous=previous_kek_configs(self.previous_keks),
        )

    @property
    def token_endpoint(self) -> str:
        return self.issuer.rstrip("/") + "/oauth/token"

    @property
    def api_audience(self) -> str:
        """The ``aud`` of access tokens: the gateway's data API, distinct from the issuer."""
        return self.issuer.rstrip("/") + "/v1"

    @property
    def audit_log_origin(self) -> str:
        """The audit log's origin: ``audit_origin``, or ``<issuer host>/mappa-audit``."""
        if self.audit_origin:
            return self.audit_origin
        return urlsplit(self.issuer).netloc + "/mappa-audit"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
