"""The root typer application; command modules attach their commands and sub-apps to it."""

import typer

app = typer.Typer(
    name="planner",
    help="Cost-aware compute allocation planner for LLM inference.",
    no_args_is_help=True,
    add_completion=False,
)
