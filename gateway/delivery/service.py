"""The relay in a running gateway: started by the app's lifespan, stopped cleanly with it.

Beside it runs the release of held owner notifications
(:class:`gateway.cases.held_notifications.HeldReleaser`): an owner that registers a key, or
publishes one at its ``jwks_uri``, receives what was held for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.delivery.relay import Relay, relay_config
from gateway.logs import get_logger

if TYPE_CHECKING:
    from gateway.state import GatewayState

__all__ = ["install_delivery", "shutdown_delivery"]

log = get_logger("gateway.delivery")


def install_delivery(state: GatewayState) -> None:
    """Start a relay in this process unless ``relay_interval_seconds`` is 0."""
    settings = state.settings
    if settings.relay_interval_seconds <= 0:
        return
    if settings.unsafe_relay_plain_http_loopback:
        log.warning("unsafe_relay_plain_http_loopback_enabled")
    state.relay = Relay(
        state.db, relay_config(settings), metrics=state.metrics, clock=lambda: state.clock()
    )
    state.relay.start()
    if state.sealer is not None and state.case_sealer is not None:
        from gateway.cases.held_notifications import HeldReleaser

        releaser = HeldReleaser(
            state.db,
            state.sealer,
            state.case_sealer,
            jwks_fetcher=state.jwks_fetcher,
            clock=lambda: state.clock(),
        )
        state.held_releaser = releaser
        releaser.start()


async def shutdown_delivery(state: GatewayState) -> None:
    if state.held_releaser is not None:
        await state.held_releaser.stop()
        state.held_releaser = None
    if state.relay is not None:
        await state.relay.stop()
        state.relay = None
