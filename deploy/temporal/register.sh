#!/bin/sh
# One-shot registration against a running Temporal frontend (temporalio/admin-tools): the namespace
# refit uses and the search attributes its workflows set. Safe to re-run.
#
#   TEMPORAL_ADDRESS          frontend, e.g. temporal:7233
#   REFIT_TEMPORAL_NAMESPACE  namespace (default: default), as the controller's REFIT_TEMPORAL_NAMESPACE
#   REFIT_RETENTION           how long closed workflows are kept (default: 720h)
#   REFIT_SEARCH_ATTRIBUTES   "Name=Type ..." — must match SEARCH_ATTRIBUTE_TYPES in schemas/names.ts
set -eu

: "${TEMPORAL_ADDRESS:?TEMPORAL_ADDRESS is required}"
: "${REFIT_SEARCH_ATTRIBUTES:?REFIT_SEARCH_ATTRIBUTES is required}"
NAMESPACE="${REFIT_TEMPORAL_NAMESPACE:-default}"
RETENTION="${REFIT_RETENTION:-720h}"
export TEMPORAL_ADDRESS

echo "waiting for Temporal at $TEMPORAL_ADDRESS"
i=0
until temporal operator cluster health >/dev/null 2>&1; do
  i=$((i + 1))
  [ "$i" -lt 90 ] || { echo "Temporal did not become healthy" >&2; exit 1; }
  sleep 2
done

if temporal operator namespace describe --namespace "$NAMESPACE" >/dev/null 2>&1; then
  echo "namespace $NAMESPACE exists"
else
  temporal operator namespace create --namespace "$NAMESPACE" --retention "$RETENTION"
  echo "namespace $NAMESPACE created"
fi

# A namespace just created may take a moment to be visible to every frontend.
i=0
until existing="$(temporal operator search-attribute list --namespace "$NAMESPACE" 2>/dev/null)"; do
  i=$((i + 1))
  [ "$i" -lt 30 ] || { echo "cannot list search attributes of $NAMESPACE" >&2; exit 1; }
  sleep 2
done

for pair in $REFIT_SEARCH_ATTRIBUTES; do
  name="${pair%%=*}"
  type="${pair#*=}"
  if printf '%s\n' "$existing" | grep -Eq "^[[:space:]]*$name[[:space:]]+$type[[:space:]]*\$"; then
    echo "search attribute $name ($type) exists"
  else
    temporal operator search-attribute create --namespace "$NAMESPACE" --name "$name" --type "$type"
    echo "search attribute $name ($type) registered"
  fi
done
