-- Roles and databases of the compose stack, run once by PostgreSQL's entrypoint as superuser.
-- Passwords arrive as psql variables from the environment; none is written here.
--   marketpulse     writes its own schema `marketpulse` only (owns nothing else)
--   dagster         owns the `dagster` database: Dagster's run, event-log and schedule storage
--   grafana_reader  reads the pipeline's tables, views and functions; cannot write
\set ON_ERROR_STOP on

CREATE ROLE marketpulse LOGIN PASSWORD :'marketpulse_password';
CREATE ROLE dagster LOGIN PASSWORD :'dagster_password';
CREATE ROLE grafana_reader LOGIN PASSWORD :'grafana_password';

CREATE DATABASE dagster OWNER dagster;
CREATE DATABASE marketpulse;

\connect marketpulse
REVOKE ALL ON DATABASE marketpulse FROM PUBLIC;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE marketpulse TO marketpulse;
GRANT CONNECT ON DATABASE marketpulse TO grafana_reader;

CREATE SCHEMA marketpulse AUTHORIZATION marketpulse;
ALTER ROLE marketpulse IN DATABASE marketpulse SET search_path = marketpulse, public;

GRANT USAGE ON SCHEMA marketpulse TO grafana_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE marketpulse IN SCHEMA marketpulse
    GRANT SELECT ON TABLES TO grafana_reader;
ALTER ROLE grafana_reader IN DATABASE marketpulse SET search_path = marketpulse, public;
ALTER ROLE grafana_reader SET default_transaction_read_only = on;
