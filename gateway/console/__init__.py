"""The IG officer's console: accounts now; search, proofs and exports with the audit log."""

from gateway.console.accounts import add_officer, verify_officer

__all__ = ["add_officer", "verify_officer"]
