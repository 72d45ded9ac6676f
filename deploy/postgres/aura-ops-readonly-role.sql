-- A read-only PostgreSQL role for aura-ops runbooks: pg_monitor and CONNECT, nothing else.
--
--   psql "$ADMIN_DSN" -X -v role=aura_ops_ro -v dbname=aura \
--        -v ro_password="$(cat /run/secrets/aura-ops-ro)" -f deploy/postgres/aura-ops-readonly-role.sql
--
-- Then give the runbooks a DSN for that role through an environment variable
-- (dsn_env="AURA_DB_DSN"): the password never appears in a parameter, a notebook or a report.
--
-- pg_monitor = pg_read_all_settings + pg_read_all_stats + pg_stat_scan_tables: every session
-- in pg_stat_activity (with its query text), locks, pg_stat_statements, replication state.
-- No table is readable, nothing is writable: the role's transactions are read-only and bounded
-- by statement and lock timeouts, so a diagnostic can never become part of the incident.
-- Mitigations (pg_terminate_backend, CREATE INDEX) need other credentials and go through the
-- approval path of aura_ops.remediate; this role cannot do them.
--
-- Idempotent: run it again to rotate the password or after a PostgreSQL upgrade.
-- Variables: role (default aura_ops_ro), dbname (default: the current database),
-- ro_password (optional; leave it out for certificate or peer authentication).

\set ON_ERROR_STOP on
SET client_min_messages = warning;
\if :{?role}
\else
  \set role aura_ops_ro
\endif
\if :{?dbname}
\else
  SELECT current_database() AS dbname \gset
\endif

SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') AS aura_ops_create_role \gset
\if :aura_ops_create_role
  CREATE ROLE :"role" LOGIN;
\endif

ALTER ROLE :"role" WITH LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
  NOBYPASSRLS CONNECTION LIMIT 3;
\if :{?ro_password}
  ALTER ROLE :"role" WITH PASSWORD :'ro_password';
\endif

GRANT pg_monitor TO :"role";
GRANT CONNECT ON DATABASE :"dbname" TO :"role";

-- every session of this role: read-only, and never waiting long
ALTER ROLE :"role" SET default_transaction_read_only = on;
ALTER ROLE :"role" SET statement_timeout = '5s';
ALTER ROLE :"role" SET lock_timeout = '1s';
ALTER ROLE :"role" SET idle_in_transaction_session_timeout = '30s';

-- PostgreSQL 16+: let diagnostics in when max_connections is exhausted (the incident the
-- database-connections runbook diagnoses). Also set reserved_connections (e.g. 3) in
-- postgresql.conf; it needs a restart.
SELECT current_setting('server_version_num')::int >= 160000 AS aura_ops_pg16 \gset
\if :aura_ops_pg16
  GRANT pg_use_reserved_connections TO :"role";
\endif
