#!/usr/bin/env bash
# One command to set up and run the planner's gRPC service on an embedded SQLite database seeded with the
# demo history. Environment: PLANNER_ADDRESS (default 127.0.0.1:50051), PLANNER_DATABASE_URL
# (default sqlite:///var/planner.db); any other PLANNER_* setting (see README) is honoured.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/planner serve --demo "$@"
