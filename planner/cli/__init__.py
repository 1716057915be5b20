"""Command-line interface (`planner ...`). Every command that reports figures takes `--json`.

Each module below registers its commands on `planner.cli.app.app`; importing them here wires the CLI together.
"""

from planner.cli import capacity, catalog, evaluate, hardware, policy, predictors, runs, serve, simulate  # noqa: F401  (register commands)
from planner.cli.app import app

__all__ = ["app"]
