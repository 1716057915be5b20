#!/usr/bin/env bash
# Regenerate the committed Python stubs of the planner.v1 API (messages, services, mypy .pyi) from protos/
# Usage: scripts/gen_protos.sh [OUT_DIR]   (default: the repository root, so modules land in planner/v1/)
# tests/planner/test_protos.py regenerates into a temporary directory and fails if the committed stubs differ.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-.}"
mkdir -p "$out/planner/v1"
python -m grpc_tools.protoc -Iprotos \
  --python_out="$out" --grpc_python_out="$out" --mypy_out="$out" \
  protos/planner/v1/*.proto
# planner.v1 is a regular package (the generated modules import each other as planner.v1.<name>_pb2).
init="$out/planner/v1/__init__.py"
if [ ! -f "$init" ]; then
  printf '"""Generated gRPC stubs of the planner.v1 API (scripts/gen_protos.sh); do not edit."""\n' >"$init"
fi
