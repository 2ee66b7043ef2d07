#!/usr/bin/env bash
# Idempotent set-up for `npm run bench`: a pinned ansible-core from PyPI in its own virtualenv in
# the same cache as the project's other tools. Fast when it is already there.
set -euo pipefail

ANSIBLE_CORE_VERSION="2.19.14"   # controller needs Python >= 3.11

cache="${REFIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/refit}"
venv="$cache/ansible-core-$ANSIBLE_CORE_VERSION"
bin="$cache/bin"
say() { printf 'setup-bench: %s\n' "$*" >&2; }

python="${REFIT_BENCH_PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
  say "ansible-core $ANSIBLE_CORE_VERSION needs Python 3.11 or newer; $("$python" --version 2>&1 || echo "no $python") found (set REFIT_BENCH_PYTHON)"
  exit 1
fi

if [ ! -x "$venv/bin/ansible-playbook" ] || ! "$venv/bin/ansible-playbook" --version 2>/dev/null | grep -q "core $ANSIBLE_CORE_VERSION"; then
  say "installing ansible-core $ANSIBLE_CORE_VERSION (PyPI) into $venv"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "ansible-core==$ANSIBLE_CORE_VERSION"
fi
mkdir -p "$bin"
ln -sfn "$venv/bin/ansible-playbook" "$bin/ansible-playbook"
say "ready (ansible-playbook $ANSIBLE_CORE_VERSION in $bin)"
