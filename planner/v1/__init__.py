"""Generated gRPC stubs of the planner.v1 API (scripts/gen_protos.sh); do not edit."""
