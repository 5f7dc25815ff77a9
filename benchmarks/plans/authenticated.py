"""Authentication alone: GET /v1/whoami with a DPoP-bound token and a fresh proof.

The token (remembered once verified), the proof's signature and claims, the context headers, and
the proof's jti spent in the replay store (one commit): what every API call pays before its own
work. Read beside the full read path, it says how much of that path is authentication.
"""

from benchmarks.plans.agency import factory

request_factory = factory("reader", "GET", None)
