"""CLI: `planner train` (train a predictor on stored runs, with a progress bar) and
`planner predictors list|promote|rollback|evaluate|recalibrate` (the registry). Every command takes
`--json` and then prints exactly one JSON object. They act on the store directly (running servers poll the
registry and pick up a promotion within `PLANNER_PREDICTOR_POLL_S`, 5 s by default), or, with
`--server HOST:PORT`, through a running server's RPC (`train` then runs in that server's background;
`promote` / `rollback` hot-swap it at once)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from planner.cli.app import JsonOption, UrlOption, app, database_url, fail
from planner.errors import FailedPreconditionError, PlannerError

# The predictors and the store are imported when a command runs, so `planner --help` stays fast.
if TYPE_CHECKING:
    from planner.catalog import Catalog
    from planner.predictors import EvaluationMetrics, TrainConfig, TrainProgress
    from planner.store import Database, PredictorVersion

predictors_app = typer.Typer(
    help="Predictor registry: list, promote, roll back, evaluate, recalibrate.", no_args_is_help=True
)
app.add_typer(predictors_app, name="predictors")


def _open_catalog(url: str | None) -> tuple[Database, Catalog]:
    """The store and the active catalog."""
    from planner.server import initial_catalog
    from planner.settings import load_settings
    from planner.store import Database

    db = Database(database_url(url))
    catalog, _ = initial_catalog(load_settings(), db)
    return db, catalog


def version_dict(v: PredictorVersion) -> dict[str, Any]:
    return {
        "version": v.version,
        "kind": v.kind,
        "status": v.status.value,
        "active": v.active,
        "task": v.meta.get("task", ""),
        "tiers": list(v.meta.get("tiers", [])),
        "train_runs": v.meta.get("train_runs", 0),
        "config": v.meta.get("config", {}),
        "created_at": v.created_at.isoformat() if v.created_at else None,
        "promoted_at": v.promoted_at.isoformat() if v.promoted_at else None,
        "metrics": dict(v.metrics),
    }


def _params(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"--param expects NAME=VALUE, got {pair!r}")
        out[name] = value
    return out


def _fmt(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.4f}"


ServerOption = Annotated[
    str | None,
    typer.Option("--server", help="host:port of a running planner: go through its RPC, which hot-swaps it."),
]


def _rpc(server: str, method: str, request: Any) -> dict[str, Any]:
    """Call one PredictorService method on a running server; the reply as a dict (proto field names)."""
    import grpc

    from planner.v1 import predictors_pb2_grpc

    with grpc.insecure_channel(server) as channel:
        stub = predictors_pb2_grpc.PredictorServiceStub(channel)
        reply = getattr(stub, method)(request, timeout=60.0)
    return message_dict(reply)


_INT64_FIELDS = frozenset({"n", "train_runs"})


def message_dict(message: Any) -> dict[str, Any]:
    """A reply as a dict with proto field names; int64 counts as numbers (proto JSON makes them strings)."""
    from google.protobuf.json_format import MessageToDict

    def fix(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: fix(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [fix(v) for v in value]
        return int(value) if key in _INT64_FIELDS and isinstance(value, str) else value

    raw = MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    return fix(raw)  # type: ignore[no-any-return]


def _rpc_fail(exc: Any, as_json: bool) -> None:
    code, details = exc.code().name, exc.details()
    if as_json:
        typer.echo(json.dumps({"error": code, "message": details}))
    else:
        Console(stderr=True).print(f"[red]error:[/red] {code}: {details}")
    raise typer.Exit(code=2)


@app.command("train")
def train_command(
    task: Annotated[str, typer.Option("--task", help="Train on this task's runs (default: all).")] = "",
    kind: Annotated[str, typer.Option("--kind", help="difficulty | prior (default: difficulty).")] = "",
    holdout: Annotated[float, typer.Option("--holdout", help="Held-out query fraction (0 = 0.3).")] = 0.0,
    seed: Annotated[int, typer.Option("--seed", min=0)] = 0,
    param: Annotated[list[str] | None, typer.Option("--param", help="Hyper-parameter NAME=VALUE.")] = None,
    promote_if_better: Annotated[
        bool, typer.Option("--promote-if-better", help="Promote if its held-out Brier beats the active one.")
    ] = False,
    server: Annotated[
        str | None, typer.Option("--server", help="host:port: train in that server's background instead.")
    ] = None,
    database_url_: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Train a predictor on stored runs, evaluate it on held-out queries and store it (as a candidate)."""
    import grpc

    from planner.predictors import TrainConfig, train_predictor

    try:
        params = _params(param or [])
        config = TrainConfig.create(kind, task, holdout, seed, params)
        with _progress_bar(enabled=not as_json) as update:
            if server:
                out = _train_remote(server, config, promote_if_better, update)
            else:
                db, catalog = _open_catalog(database_url_)
                result = train_predictor(
                    db,
                    config,
                    catalog.run_name_map(),
                    progress=update,
                    promote_if_better=promote_if_better,
                    catalog=catalog,
                )
                out = {**version_dict(result.version), "promoted": result.promoted, "reused": result.reused}
    except PlannerError as exc:
        fail(exc, as_json)
        return
    except grpc.RpcError as exc:
        _rpc_fail(exc, as_json)
        return
    if as_json:
        typer.echo(json.dumps(out))
        return
    m = out["metrics"]
    state = "already stored" if out.get("reused") else "stored"
    Console().print(
        f"{state} {out['version']} ({out['kind']}); held-out Brier {_fmt(m.get('brier'))} "
        f"(prior {_fmt(m.get('baseline_brier'))}), AUC {_fmt(m.get('auc'))}, ECE {_fmt(m.get('ece'))}"
        + ("; promoted" if out.get("promoted") else "")
    )


@contextmanager
def _progress_bar(enabled: bool) -> Iterator[Callable[[TrainProgress], None]]:
    """A progress callback drawing a bar on stderr (a no-op when disabled, e.g. with --json)."""

    if not enabled:
        yield lambda p: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        job = bar.add_task("training", total=1.0)

        def update(p: TrainProgress) -> None:
            bar.update(job, completed=p.fraction, description=f"{p.stage.value}: {p.message}")

        yield update


def _train_remote(
    server: str, config: TrainConfig, promote_if_better: bool, update: Callable[[TrainProgress], None]
) -> dict[str, Any]:
    """Run the job on a server (`TrainPredictor`), relaying its progress; the final version as a dict."""
    import grpc

    from planner.predictors import TrainProgress, TrainStage
    from planner.v1 import predictors_pb2 as pb
    from planner.v1 import predictors_pb2_grpc

    request = pb.TrainPredictorRequest(
        task=config.task,
        kind=config.kind.value,
        holdout_fraction=config.holdout_fraction,
        seed=config.seed,
        promote_if_better=promote_if_better,
        params=dict(config.params),
    )
    stages = {pb.TrainStage.Value(f"TRAIN_STAGE_{s.name}"): s for s in TrainStage}
    last = None
    with grpc.insecure_channel(server) as channel:
        for message in predictors_pb2_grpc.PredictorServiceStub(channel).TrainPredictor(request):
            if message.stage in stages:
                update(TrainProgress(stages[message.stage], message.fraction, message.message))
            last = message
    if last is None or last.stage != pb.TRAIN_STAGE_DONE:
        raise FailedPreconditionError(f"the server at {server} ended the training stream early")
    return {
        **message_dict(last.predictor),
        "promoted": last.promoted,
        "reused": last.message.startswith("already"),
    }


@predictors_app.command("list")
def list_command(
    task: Annotated[str, typer.Option("--task", help="Only versions trained on this task.")] = "",
    database_url_: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Stored predictor versions, newest first."""
    from planner.predictors import list_versions
    from planner.store import Database

    try:
        versions, active = list_versions(Database(database_url(database_url_)), task)
    except PlannerError as exc:
        fail(exc, as_json)
        return
    if as_json:
        typer.echo(json.dumps({"active_version": active, "predictors": [version_dict(v) for v in versions]}))
        return
    table = Table("version", "kind", "status", "task", "train runs", "brier", "auc", "ece", "created")
    for v in versions:
        m = v.metrics
        created = v.created_at.strftime("%Y-%m-%d %H:%M") if v.created_at else "-"
        table.add_row(
            v.version,
            v.kind,
            v.status.value,
            str(v.meta.get("task", "")) or "<all>",
            str(v.meta.get("train_runs", "")),
            _fmt(m.get("brier")),
            _fmt(m.get("auc")),
            _fmt(m.get("ece")),
            created,
        )
    Console().print(table)


@predictors_app.command("promote")
def promote_command(
    version: Annotated[str, typer.Argument(help="Version to make active.")],
    server: ServerOption = None,
    database_url_: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Make a stored version the active predictor."""
    import grpc

    from planner.predictors import promote_version
    from planner.store import Database
    from planner.v1 import predictors_pb2 as pb

    try:
        if server:
            out = _rpc(server, "PromotePredictor", pb.PromotePredictorRequest(version=version))
        else:
            now, previous = promote_version(Database(database_url(database_url_)), version)
            out = {"predictor": version_dict(now), "previous_version": previous}
    except PlannerError as exc:
        fail(exc, as_json)
        return
    except grpc.RpcError as exc:
        _rpc_fail(exc, as_json)
        return
    if as_json:
        typer.echo(json.dumps(out))
        return
    previous = out["previous_version"]
    Console().print(f"promoted {out['predictor']['version']}" + (f" (was {previous})" if previous else ""))


@predictors_app.command("rollback")
def rollback_command(
    server: ServerOption = None, database_url_: UrlOption = None, as_json: JsonOption = False
) -> None:
    """Re-activate the version that was active before the current one."""
    import grpc

    from planner.predictors import rollback_version
    from planner.store import Database
    from planner.v1 import predictors_pb2 as pb

    try:
        if server:
            out = _rpc(server, "RollbackPredictor", pb.RollbackPredictorRequest())
        else:
            now, rolled_back = rollback_version(Database(database_url(database_url_)))
            out = {"predictor": version_dict(now), "rolled_back_version": rolled_back}
    except PlannerError as exc:
        fail(exc, as_json)
        return
    except grpc.RpcError as exc:
        _rpc_fail(exc, as_json)
        return
    if as_json:
        typer.echo(json.dumps(out))
        return
    rolled = out["rolled_back_version"] or "<none>"
    Console().print(f"rolled back {rolled}; active: {out['predictor']['version']}")


@predictors_app.command("evaluate")
def evaluate_command(
    version: Annotated[str, typer.Argument(help="Version (default: the active one).")] = "",
    task: Annotated[str, typer.Option("--task", help="Evaluate on this task (default: training task).")] = "",
    holdout: Annotated[
        float, typer.Option("--holdout", help="Held-out fraction (0 = training split).")
    ] = 0.0,
    seed: Annotated[int, typer.Option("--seed", min=0)] = 0,
    database_url_: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Held-out metrics of a stored version, per tier and overall."""
    from planner.predictors import evaluate_version

    try:
        db, catalog = _open_catalog(database_url_)
        ev = evaluate_version(
            db, version, task=task, holdout_fraction=holdout, seed=seed,
            run_name_map=catalog.run_name_map(), catalog=catalog,
        )  # fmt: skip
    except PlannerError as exc:
        fail(exc, as_json)
        return
    if as_json:
        out = {
            "version": ev.version,
            "runs": ev.runs,
            "notes": list(ev.notes),
            "metrics": ev.metrics.to_dict(),
        }
        typer.echo(json.dumps(out))
        return
    _print_metrics(ev.version, ev.metrics, ev.notes)


def _print_metrics(version: str, m: EvaluationMetrics, notes: tuple[str, ...]) -> None:
    console = Console()
    console.print(
        f"{version}: {m.n:,} held-out runs; Brier {_fmt(m.brier)} (prior {_fmt(m.baseline_brier)}), "
        f"log loss {_fmt(m.log_loss)}, AUC {_fmt(m.auc)}, ECE {_fmt(m.ece)}, "
        f"token p50 MAPE {_fmt(m.token_mape)}, p90 coverage {_fmt(m.token_p90_coverage)}"
    )
    table = Table("tier", "runs", "base rate", "brier", "auc", "ece")
    for t in m.per_tier:
        table.add_row(t.tier, f"{t.n:,}", _fmt(t.base_rate), _fmt(t.brier), _fmt(t.auc), _fmt(t.ece))
    console.print(table)
    for note in notes:
        console.print(f"note: {note}")


@predictors_app.command("recalibrate")
def recalibrate_command(
    version: Annotated[str, typer.Argument(help="Stored version to recalibrate (a difficulty predictor).")],
    task: Annotated[str, typer.Option("--task", help="The new task whose runs to recalibrate on.")],
    sample_runs: Annotated[int, typer.Option("--sample-runs", min=1, help="Runs in the sample.")] = 200,
    seed: Annotated[int, typer.Option("--seed", min=0)] = 0,
    database_url_: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Recalibrate a stored predictor on a small sample of a new task's runs; store it as a new candidate and
    compare it with its parent on the task's other runs."""
    from planner.predictors.recalibrate import recalibrate_version

    try:
        db, catalog = _open_catalog(database_url_)
        rc = recalibrate_version(
            db, version, task, sample_runs=sample_runs, seed=seed,
            run_name_map=catalog.run_name_map(), catalog=catalog,
        )  # fmt: skip
    except PlannerError as exc:
        fail(exc, as_json)
        return
    out = {
        **version_dict(rc.version),
        "parent": rc.parent,
        "sample_runs": rc.sample_runs,
        "reused": rc.reused,
        "before": rc.before.to_dict(),
        "after": rc.after.to_dict(),
    }
    if as_json:
        typer.echo(json.dumps(out))
        return
    b, a = rc.before, rc.after
    Console().print(
        f"{'already stored' if rc.reused else 'stored'} {rc.version.version} (recalibrated {rc.parent} on "
        f"{rc.sample_runs} runs of {task!r}); on its {a.n:,} other runs: "
        f"Brier {_fmt(b.brier)} -> {_fmt(a.brier)}, ECE {_fmt(b.ece)} -> {_fmt(a.ece)}, "
        f"AUC {_fmt(b.auc)} -> {_fmt(a.auc)}"
    )
