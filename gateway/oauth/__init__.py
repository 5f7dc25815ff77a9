"""Agency authentication: the gateway's OAuth 2.0 authorization server (FAPI 2.0 grade).

::

    jose.py        strict compact-JWS parsing: size, header allow-list, pinned algorithms
    jwks.py        agency public keys: checking a JWKS, fetching one from a registered jwks_uri
    clients.py     an agency as an OAuth client: the snapshot authentication works on
    assertion.py   private_key_jwt client assertions (RFC 7523, FAPI 2.0)
    dpop.py        DPoP proofs (RFC 9449)
    signing.py     the gateway's access-token signing key
    tokens.py      RFC 9068 at+jwt access tokens: issue and verify
    replay.py      the durable, shared jti replay store, and its purge in the background
    server.py      Authlib's server core with the gateway's grant and client authentication
    endpoint.py    POST /oauth/token: the async shell (preload, worker thread, commit, audit)

Protected resources use :func:`gateway.flow.authenticate.authenticate`, which builds on these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.logs import get_logger
from gateway.oauth import replay
from gateway.oauth.jwks import JwksFetcher
from gateway.oauth.server import GatewayAuthorizationServer
from gateway.oauth.signing import SigningKeyUnavailable, TokenSigner, load_token_signer

if TYPE_CHECKING:
    from gateway.state import GatewayState

__all__ = [
    "GatewayAuthorizationServer",
    "JwksFetcher",
    "TokenSigner",
    "install_oauth",
    "start_jti_purge",
    "stop_jti_purge",
]


log = get_logger("gateway.oauth")


def install_oauth(state: GatewayState, *, signer: TokenSigner | None = None) -> None:
    """Load the signing key and build the server core and the JWKS fetcher into ``state``.

    Without a signing key the production profile refuses to start; other profiles start with
    authentication unavailable (the token endpoint and protected routes answer 503), so that
    a process without keys can still serve health checks.
    """
    settings = state.settings
    if signer is None:
        try:
            signer = load_token_signer(settings)
        except SigningKeyUnavailable as exc:
            if settings.profile == "production":
                raise
            log.warning("token_signing_key_unavailable", reason=str(exc)[:200])
            return
    state.token_signer = signer
    state.loaded_key_purposes.add("oauth_token_signing")
    state.jwks_fetcher = JwksFetcher(
        max_bytes=settings.jwks_max_bytes,
        cache_seconds=settings.jwks_cache_seconds,
        timeout=settings.jwks_fetch_timeout_seconds,
        ca_file=settings.jwks_ca_file,
        allow_http=settings.profile == "development",
    )
    state.authorization_server = GatewayAuthorizationServer(
        settings=settings, signer=state.token_signer
    )


def start_jti_purge(state: GatewayState) -> None:
    """Start purging spent jtis past their expiry in the background, every
    :data:`gateway.oauth.replay.PURGE_INTERVAL` seconds by the state's clock."""
    state.jti_purger = replay.JtiPurger(
        state.db,
        clock=lambda: state.clock(),
        interval=replay.PURGE_INTERVAL,
        batch=replay.PURGE_BATCH,
    )
    state.jti_purger.start()


async def stop_jti_purge(state: GatewayState) -> None:
    if state.jti_purger is not None:
        await state.jti_purger.stop()
        state.jti_purger = None
