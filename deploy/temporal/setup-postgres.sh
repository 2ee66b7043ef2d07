#!/bin/sh
# One-shot schema set-up for Temporal on PostgreSQL (temporalio/admin-tools). Safe to re-run:
# existing databases are kept and update-schema applies only the versions not yet applied.
set -eu

: "${POSTGRES_SEEDS:?POSTGRES_SEEDS is required}"
: "${POSTGRES_USER:?POSTGRES_USER is required}"
: "${POSTGRES_PWD:?POSTGRES_PWD is required}"
DB_PORT="${DB_PORT:-5432}"
SCHEMA_ROOT=/etc/temporal/schema/postgresql/v12

# temporal-sql-tool takes the password from SQL_PASSWORD.
export SQL_PASSWORD="$POSTGRES_PWD"

sql_tool() {
  temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -u "$POSTGRES_USER" -p "$DB_PORT" "$@"
}

create_database() {
  out="$(sql_tool --db "$1" create 2>&1)" && { echo "created database $1"; return 0; }
  case "$out" in
    *"already exists"* | *duplicate_database*) echo "database $1 already exists" ;;
    *) echo "$out" >&2; return 1 ;;
  esac
}

echo "waiting for PostgreSQL at $POSTGRES_SEEDS:$DB_PORT"
i=0
until nc -z -w 2 "$POSTGRES_SEEDS" "$DB_PORT"; do
  i=$((i + 1))
  [ "$i" -lt 60 ] || { echo "PostgreSQL did not answer" >&2; exit 1; }
  sleep 2
done

for pair in "temporal:temporal" "temporal_visibility:visibility"; do
  db="${pair%%:*}"
  dir="${pair#*:}"
  create_database "$db"
  sql_tool --db "$db" setup-schema -v 0.0
  sql_tool --db "$db" update-schema -d "$SCHEMA_ROOT/$dir/versioned"
done
echo "Temporal schema is up to date"
