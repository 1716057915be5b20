"""CLI commands: predictors (filled in by its owner)."""

from planner.cli.app import app  # noqa: F401
