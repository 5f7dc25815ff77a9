-- The gateway's database and its two roles. Run once, as a superuser, with psql:
--
--   sudo -u postgres psql -f 01-create.sql      (on the database host)
--
-- The names can be changed with psql variables (-v db=... -v owner=... -v app=...); the
-- defaults are mappa, mappa_owner and mappa_app.
--
--   mappa_owner  owns the schema: `mappa-gateway db upgrade` runs as it (migrations), and
--                nothing else does. Log in as it only to migrate.
--   mappa_app    the gateway, the relay and the operators' other `mappa-gateway` commands:
--                reads and writes rows, cannot create, alter or drop anything, and (after
--                02-grants.sql) cannot delete audit entries or checkpoints.
--
-- Neither is a superuser, may create roles or databases, or bypasses row security. Give each a
-- password afterwards (psql: \password mappa_app), or use client certificates (pg_hba.conf).

\set ON_ERROR_STOP on
\if :{?db}
\else
  \set db mappa
\endif
\if :{?owner}
\else
  \set owner mappa_owner
\endif
\if :{?app}
\else
  \set app mappa_app
\endif

CREATE ROLE :"owner" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS;
CREATE ROLE :"app" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS;

CREATE DATABASE :"db" OWNER :"owner" ENCODING 'UTF8' TEMPLATE template0;
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"db" TO :"app";

-- Audit durability: the gateway answers only once the audit entry of a disclosure is
-- committed, so a commit must be on disk (and, with a synchronous standby, there too) when it
-- returns. Whatever postgresql.conf says, this database commits synchronously.
ALTER DATABASE :"db" SET synchronous_commit = on;

\connect :"db"

-- Nobody but the owner creates objects, and nothing lives in public.
REVOKE ALL ON SCHEMA public FROM PUBLIC;
CREATE SCHEMA mappa AUTHORIZATION :"owner";
REVOKE ALL ON SCHEMA mappa FROM PUBLIC;
GRANT USAGE ON SCHEMA mappa TO :"app";

ALTER ROLE :"owner" IN DATABASE :"db" SET search_path = mappa;
ALTER ROLE :"app" IN DATABASE :"db" SET search_path = mappa;
-- A transaction left open by a hung client would hold row locks (and the audit sequencer's
-- turn); none of the gateway's stays idle for a minute.
ALTER ROLE :"app" IN DATABASE :"db" SET idle_in_transaction_session_timeout = '60s';

-- Tables and sequences the owner's migrations create are usable by the application at once.
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA mappa
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"app";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA mappa
    GRANT USAGE, SELECT ON SEQUENCES TO :"app";
