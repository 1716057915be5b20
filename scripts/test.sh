#!/usr/bin/env bash
# One command to set up and run every check: lint (ruff), types (mypy) and the whole pytest suite, with a
# real PostgreSQL server on loopback for the production store path (installed and started by scripts/postgres.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh dev,postgres,distributed  # ray too: the Ray sweep path is tested, not skipped
export PATH="$PWD/.venv/bin:$PATH"

pg_url="$(scripts/postgres.sh start)"
export PLANNER_TEST_POSTGRES_URL="$pg_url"
export PLANNER_TEST_STRICT=1  # a skipped test (e.g. PostgreSQL left out) fails the run
trap 'scripts/postgres.sh stop >/dev/null 2>&1 || true' EXIT

echo "== ruff"; ruff check .
echo "== mypy"; mypy planner models simulator
echo "== pytest"
set +e
python -m pytest -q -p no:cacheprovider "$@"
rc=$?
set -e
# pytest exits 5 when nothing was collected: that is a failure of this script, not a pass.
exit $rc
