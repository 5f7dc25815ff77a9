"""The full write path: probation shares a record on the nominal.

JWE decrypt and the agency's signature, the strict schema, need-to-know, the record sealed at
rest, the audit entry, the idempotency key, and the record redacted for the lead agency, sealed
to it and written to the outbox, all in one transaction; the answer sealed to probation.
"""

from benchmarks.plans.agency import factory

RECORD = {
    "kind": "case_note",
    "summary": "Curfew check at approved premises",
    "content": [
        {
            "id": "c1",
            "text": "Present at 23:00; compliant; disclosed a new relationship.",
            "source": "s1",
        },
        {
            "id": "c2",
            "text": "Reported by a neighbour to be outside a primary school.",
            "source": "s2",
        },
    ],
    "sources": [
        {"id": "s1", "kind": "agency", "description": "Supervising officer", "third_party": False},
        {"id": "s2", "kind": "neighbour", "description": "A neighbour", "third_party": True},
    ],
    "risk": [{"group": "children", "level": "high"}],
}

request_factory = factory("writer", "POST", RECORD)
