#!/bin/sh
# PostgreSQL entrypoint hook (first start only): create MarketPulse's roles and databases.
set -eu
psql --username "$POSTGRES_USER" --dbname postgres \
  --set marketpulse_password="$MARKETPULSE_DB_PASSWORD" \
  --set dagster_password="$DAGSTER_DB_PASSWORD" \
  --set grafana_password="$GRAFANA_DB_PASSWORD" \
  --file /opt/marketpulse/roles.sql
