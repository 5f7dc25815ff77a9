"""Where the audit package's own errors meet the gateway's: one mapping, tested exhaustively.

The pure modules raise `gateway.audit.errors.AuditError` subclasses and import nothing else from
the gateway. When one escapes into a request (a stored checkpoint or entry that no longer parses),
it is translated here into the gateway error tree, keeping the precise code for the audit.
"""

from __future__ import annotations

from gateway.audit.errors import AuditError
from gateway.errors import AuditLogInconsistent, GatewayError

__all__ = ["gateway_error"]


def gateway_error(exc: AuditError) -> GatewayError:
    """The gateway error for ``exc``: the stored log does not hold together (503)."""
    return AuditLogInconsistent(diagnostics={"reason": exc.code})
