"""MAPPA information-sharing gateway.

One API between the agencies of a MAPPA area (s.325 Criminal Justice Act 2003): it authenticates
each agency's case system, refuses anything without a lawful basis, applies need-to-know and
redaction, seals payloads end to end and audits every disclosure and refusal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["__version__", "create_app"]

__version__ = "0.1.0"

if TYPE_CHECKING:
    from gateway.app import create_app
else:

    def __getattr__(name: str) -> Any:
        # Lazy, so that `gateway.audit` and the CLI import without pulling in the web stack.
        if name == "create_app":
            from gateway.app import create_app

            return create_app
        raise AttributeError(name)
