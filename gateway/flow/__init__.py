"""The request flow, one module per stage: authenticate, lawful basis, need-to-know, redact,
seal, audit, deliver."""
