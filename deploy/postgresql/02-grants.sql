-- The application role's privileges on the migrated schema. Run as the owner role after every
-- `mappa-gateway db upgrade` (it is idempotent):
--
--   psql -h db.mappa.example.org -U mappa_owner -d mappa -f deploy/postgresql/02-grants.sql
--
-- with the same -v app=... as 01-create.sql if the names were changed.
--
-- The application reads and writes rows; it never deletes an audit entry or a checkpoint (the
-- tamper-evident log is append-only; the sequencer only fills in an entry's place in the tree),
-- so its role cannot either: a compromised gateway host cannot quietly remove the record of
-- what it disclosed (and a removal through another role is caught by `audit verify` and the
-- checkpoint witness).

\set ON_ERROR_STOP on
\if :{?app}
\else
  \set app mappa_app
\endif

GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA mappa TO :"app";
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA mappa TO :"app";
REVOKE DELETE, TRUNCATE ON mappa.audit_entries, mappa.audit_checkpoints FROM :"app";
-- The log's index of the nominals of level 1 list pages, which tells an erasure whom to notify,
-- is only ever added to.
REVOKE UPDATE, DELETE, TRUNCATE ON mappa.audit_entry_nominals FROM :"app";
-- The migrations' own bookkeeping is the owner's.
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON mappa.alembic_version FROM :"app";
