#!/usr/bin/env bash
# The whole test suite: lint, format, types, then pytest. CI runs exactly this (via README).
#
# pytest runs in a private network namespace whose only interface is loopback (when this user
# may create one: root, as in CI), so no test can gather on or send to the machine's other
# interfaces; Chromium then offers loopback candidates. Elsewhere it runs as is, with a warning.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
ruff check bridge signalling web tests benchmarks scripts
ruff format --check bridge signalling web tests benchmarks scripts
mypy
if unshare --net true 2>/dev/null; then
  exec unshare --net sh -c 'ip link set lo up && exec python -m pytest "$@"' pytest "$@"
fi
echo "check.sh: cannot make a loopback-only network namespace; running pytest on the host" >&2
exec python -m pytest "$@"
