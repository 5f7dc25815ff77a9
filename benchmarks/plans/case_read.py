"""The full read path: housing, involved through a level 2 meeting, reads the nominal.

Token + DPoP proof, lawful basis, need-to-know (with its involvements), redaction, the answer
signed by the gateway and encrypted to housing, and the durable audit entry.
"""

from benchmarks.plans.agency import factory

request_factory = factory("reader", "GET", None)
