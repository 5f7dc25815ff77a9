"""The agency side of the gateway: identities, the client, the adapter SDK and adapters."""

from adapters.identity import AgencyIdentity

__all__ = ["AgencyIdentity"]
