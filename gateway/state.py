"""What one gateway process holds while it runs: the database and the key rings."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gateway.settings import Settings
from gateway.store import Database

if TYPE_CHECKING:
    from gateway.audit.service import AuditService
    from gateway.cases.held_notifications import HeldReleaser
    from gateway.delivery.relay import Relay
    from gateway.flow.group_commit import GroupCommitter
    from gateway.flow.seal import Sealer
    from gateway.http.metrics import GatewayMetrics
    from gateway.http.ratelimit import RateLimiter
    from gateway.oauth.jwks import JwksFetcher
    from gateway.oauth.replay import JtiPurger
    from gateway.oauth.server import GatewayAuthorizationServer
    from gateway.oauth.signing import TokenSigner
    from gateway.store.sealed import CaseSealer

__all__ = ["GatewayState"]


@dataclass
class GatewayState:
    settings: Settings
    db: Database
    loaded_key_purposes: set[str] = field(default_factory=set)
    #: The access-token signing key (gateway/oauth/signing.py), loaded in the lifespan.
    token_signer: TokenSigner | None = None
    #: Fetches and caches agency JWKS from their registered ``jwks_uri``.
    jwks_fetcher: JwksFetcher | None = None
    #: Authlib's server core with the gateway's grant and client authentication.
    authorization_server: GatewayAuthorizationServer | None = None
    #: Purges spent jtis past their expiry in the background (gateway/oauth/replay.py).
    jti_purger: JtiPurger | None = None
    #: The audit log's keys and background sequencer (gateway/audit/service.py).
    audit: AuditService | None = None
    #: Prometheus metrics of this process (gateway/http/metrics.py).
    metrics: GatewayMetrics | None = None
    #: Opens inbound application/jose bodies and seals answers (gateway/flow/seal.py).
    sealer: Sealer | None = None
    #: Seals case-data columns at rest and computes blind indexes (gateway/store/sealed.py).
    case_sealer: CaseSealer | None = None
    #: Commits the small writes of concurrent requests together (gateway/flow/group_commit.py).
    commits: GroupCommitter | None = None
    #: Per-agency quota for protected calls, and per-address quota for the token endpoint.
    call_limiter: RateLimiter | None = None
    token_limiter: RateLimiter | None = None
    #: The outbox relay running in this process (gateway/delivery), if any.
    relay: Relay | None = None
    #: Sends held owner notifications once their owner has a usable key (beside the relay).
    held_releaser: HeldReleaser | None = None
    #: The clock every time-dependent check reads (tests replace it).
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))

    def keys_ready(self) -> bool:
        """Token signing and payload keys are loaded (what /readyz reports)."""
        return {"oauth_token_signing", "payload"} <= self.loaded_key_purposes
