"""The external contract's bodies: strict pydantic models for what agencies send and receive.

Inbound models forbid unknown fields and coerce nothing silently: a category is ``1``..``4`` or
the nDelius ``M1``..``M4``, a level ``1``..``3`` or ``M1``..``M3``, dates are ISO 8601.
"""

from gateway.contract.referrals import ReferralIn, RiskEntry, SubjectDetails

__all__ = ["ReferralIn", "RiskEntry", "SubjectDetails"]
