"""Command-line interface (`planner ...`). Every command that reports figures takes `--json`.

Each module below registers its commands on `planner.cli.app.app`; importing them here wires the CLI together.
"""

from planner.cli import (  # noqa: F401  (register commands)
    capacity,
    catalog,
    evaluate,
    hardware,
    outcomes,
    policy,
    predictors,
    runs,
    serve,
    simulate,
)
from planner.cli.app import app

__all__ = ["app"]
