"""The edge's quota tests use the agency-authentication fixtures."""

from tests.gateway.oauth.conftest import (  # noqa: F401
    clock,
    gateway_state,
    housing,
    http,
    ledger,
    oauth_app,
    oauth_settings,
    police,
)
