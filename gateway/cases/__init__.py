"""The case API's operations: one top-level function per operation, reading as the flow's stages.

Each operation is the request flow of ``gateway/flow/`` spelled out for one resource: the scope
and the lawful basis (before any data is read), the body opened and validated (writes), the
need-to-know decision (404 exactly as for an id that does not exist), redaction for the recipient,
the answer or push sealed to the recipient's key, and the audit entry committed in the same
transaction as whatever the act stores or releases. Routes in :mod:`gateway.routes.cases` only
call these.

- :mod:`.referrals`: MAPPA A referrals (and non-MAPPA referrals of non-offenders);
- :mod:`.nominals`: read a nominal; category, level, screening and deregistration (RA only);
- :mod:`.records`: information records on a nominal;
- :mod:`.meetings`: meetings, participants, minutes and actions;
- :mod:`.reports`: written reports for a meeting from agencies invited that cannot attend;
- :mod:`.disclosures`: onward-disclosure requests and the chair's decision;
- :mod:`.hazard_flags`: the children's services ``HZD`` flag;
- :mod:`.markers`: the housing property warning marker (``PWM``);
- :mod:`.notifications`: owners told when another agency reads or receives their records;
- :mod:`.level_changes`: the agencies involved told of a change of level;
- :mod:`.level1`: the monthly level 1 list.
"""
