#!/bin/sh
# PostgreSQL entrypoint hook (first start only): create MarketPulse's roles and databases.
set -eu
psql --username "$POSTGRES_USER" --dbname postgres \
  --set marketpulse_password="$MARKETPULSE_DB_PASSWORD" \
  --set dagster_password="$DAGSTER_DB_PASSWORD" \
  --set grafana_password="$GRAFANA_DB_PASSWORD" \
  --file /opt/marketpulse/roles.sql
# The REST API's reader: USAGE on the schema and SELECT on its tables (as grafana_reader has),
# every transaction read-only. The API's feedback writes go through the pipeline's role.
psql --username "$POSTGRES_USER" --dbname marketpulse \
  --set ON_ERROR_STOP=on --set api_password="$API_READER_DB_PASSWORD" <<'SQL'
CREATE ROLE api_reader LOGIN PASSWORD :'api_password';
GRANT CONNECT ON DATABASE marketpulse TO api_reader;
GRANT USAGE ON SCHEMA marketpulse TO api_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE marketpulse IN SCHEMA marketpulse
    GRANT SELECT ON TABLES TO api_reader;
ALTER ROLE api_reader IN DATABASE marketpulse SET search_path = marketpulse, public;
ALTER ROLE api_reader SET default_transaction_read_only = on;
SQL
