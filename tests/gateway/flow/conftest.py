"""The authenticate stage's tests share the agency-authentication fixtures."""

from tests.gateway.oauth.conftest import (  # noqa: F401
    _migrated_template,
    clock,
    gateway_keys,
    gateway_state,
    housing,
    http,
    ledger,
    oauth_app,
    oauth_settings,
    police,
    sqlite_url,
)
