"""The ``sluice`` command: the model lifecycle in the MLflow registry.

status, promote (gated), rollback, history and predict. Every command reads ``params.yaml``
(``registry.model_name`` and the ``promote`` section) and uses the project's MLflow store
(``MLFLOW_TRACKING_URI`` overrides). A mistake prints one ``error: ...`` line and exits 1.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from sluice.errors import report_errors
from sluice.server.commands import app as server_app
from sluice.stage import short_lived

EXIT_REFUSED = 3

app = typer.Typer(
    name="sluice",
    help="Gated promotion, rollback, history and batch prediction of registered models; "
    "a team tracking server.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish
    pretty_exceptions_show_locals=False,
    rich_markup_mode="markdown",
)
app.add_typer(server_app)  # sluice server start|stop|status: the team tracking server


def main() -> None:
    """The ``sluice`` executable: one command, then exit (:func:`sluice.stage.short_lived`)."""
    short_lived()
    app()


ParamsOpt = Annotated[Path, typer.Option("--params", help="params.yaml to read.")]
NameOpt = Annotated[
    str | None,
    typer.Option("--model-name", help="Registered model (default: registry.model_name)."),
]


def _refusals_as_errors(command: Callable) -> Callable:
    """A tracking server's refusal (HTTP 401/403) becomes one ``error:`` line, no traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from sluice.tracking.store import server_refusals

        with server_refusals(f"`sluice {command.__name__}` on the registered model"):
            return command(*args, **kwargs)

    return wrapper


def _setup(params_path: Path, model_name: str | None):
    """Validate params, point MLflow at the store; return (params, model name)."""
    from sluice.config import load_params
    from sluice.tracking.store import use_store

    params = load_params(params_path)
    use_store()
    return params, model_name or params.registry.model_name


@app.command()
@report_errors
@_refusals_as_errors
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print the same data as JSON.")] = False,
    params_path: ParamsOpt = Path("params.yaml"),
    model_name: NameOpt = None,
) -> None:
    """Registered versions, their aliases, role and test metrics, and the last gate verdict."""
    from sluice.lifecycle.status import model_status

    _, name = _setup(params_path, model_name)
    found = model_status(name)
    if as_json:
        typer.echo(json.dumps(found, indent=2))
    else:
        _print_status(found)


@app.command()
@report_errors
@_refusals_as_errors
def promote(
    version: Annotated[
        str, typer.Option("--version", help="Candidate: a version number or an alias.")
    ] = "challenger",
    force: Annotated[
        bool, typer.Option("--force", help="Promote even if the gate refuses (recorded).")
    ] = False,
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded in the history).")] = "",
    params_path: ParamsOpt = Path("params.yaml"),
    model_name: NameOpt = None,
) -> None:
    """Move `champion` to the candidate only if it wins the gate on the current test split.

    Champion and candidate are scored on the same rows: the primary metric must improve by at
    least promote.min_delta with a paired-bootstrap 95 % interval above 0, and no guard may drop
    by more than its tolerance; with no champion, the floors apply. The verdict is printed and
    recorded in the registry either way.

    Exit codes: 0 promoted; 3 refused by the gate (or already champion); 1 error.
    """
    from sluice.lifecycle.promotion import promote as run_promote
    from sluice.lifecycle.promotion import read_test_split

    params, name = _setup(params_path, model_name)
    test, target = read_test_split()
    if force and not reason:
        reason = "forced with --force (no reason given)"
    outcome = run_promote(name, params.promote, test, target, version, force, reason, params.seed)
    _print_outcome(name, outcome)
    if not outcome.promoted:
        raise typer.Exit(EXIT_REFUSED)


@app.command()
@report_errors
@_refusals_as_errors
def rollback(
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded in the history).")] = "",
    params_path: ParamsOpt = Path("params.yaml"),
    model_name: NameOpt = None,
) -> None:
    """Move `champion` back to the version the last promotion replaced (repeat to go further)."""
    from sluice.lifecycle.promotion import rollback as run_rollback

    _, name = _setup(params_path, model_name)
    entry = run_rollback(name, reason)
    _console().print(
        f"[bold]rolled back[/]: champion of {name} is version {entry['to']} again "
        f"(was {entry['from']}; undoes #{entry['undoes']})"
    )


@app.command()
@report_errors
@_refusals_as_errors
def history(
    alias: Annotated[str | None, typer.Option("--alias", help="Only moves of this alias.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw entries as JSON.")] = False,
    params_path: ParamsOpt = Path("params.yaml"),
    model_name: NameOpt = None,
) -> None:
    """Every recorded alias move (and refused promotion): when, from, to, verdict, who, why."""
    from sluice.tracking.registry import read_history, require_model

    _, name = _setup(params_path, model_name)
    require_model(name)
    entries = [e for e in read_history(name) if alias is None or e.get("alias") == alias]
    if as_json:
        typer.echo(json.dumps(entries, indent=2))
    else:
        _print_history(name, entries)


@app.command()
@report_errors
@_refusals_as_errors
def predict(
    input_csv: Annotated[Path, typer.Argument(help="CSV with the training feature columns.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="CSV to write.")],
    model: Annotated[
        str, typer.Option("--model", help="champion, challenger, another alias or a version.")
    ] = "champion",
    keep: Annotated[
        list[str] | None, typer.Option("--keep", help="Input column to copy (repeatable).")
    ] = None,
    chunk_size: Annotated[
        int, typer.Option("--chunk-size", min=1, help="Rows per chunk.")
    ] = 50_000,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
    params_path: ParamsOpt = Path("params.yaml"),
    model_name: NameOpt = None,
) -> None:
    """Score a CSV: `predicted` label and `prob_<class>` per class, written atomically.

    Probabilities are the model's calibrated ones; for a binary model with a decision
    threshold (evaluate.threshold), `predicted` is the label under that threshold.
    """
    from sluice.lifecycle.predict import predict_csv
    from sluice.lifecycle.promotion import model_ref
    from sluice.tracking.registry_io import load_registered

    _, name = _setup(params_path, model_name)
    classifier, version = load_registered(model_ref(model), name)
    rows = predict_csv(classifier, input_csv, output, chunk_size, keep or [], progress)
    done = f"wrote {rows} rows to {output} ({name} version {version.version})"
    _console(stderr=True).print(done, markup=False)


# Views: rich tables on stdout (the library logs; only the CLI prints).

METRIC_COLUMNS = ("roc_auc", "f1_macro", "balanced_accuracy", "accuracy", "ece")


def _console(stderr: bool = False):
    """A rich console; wide enough for the tables when output is not a terminal."""
    from rich.console import Console

    con = Console(stderr=stderr)
    return con if con.is_terminal else Console(stderr=stderr, width=160)


def _num(x) -> str:
    return "n/a" if x is None or x != x else f"{x:.4f}"


def _print_status(found: dict) -> None:
    """One row per registered version (``model_status``'s entries): aliases, role, test
    metrics, how it decides (argmax or a threshold), last gate verdict."""
    from rich.table import Table

    table = Table(title=f"{found['model']}: registered versions")
    columns = ("version", "aliases", "role", "created", *METRIC_COLUMNS, "decision", "gate", "run")
    for col in columns:
        table.add_column(col)
    for v in found["versions"]:
        gate = (v["gate"] or "-") + (" (forced)" if v["forced"] else "")
        created = datetime.fromisoformat(v["created"]).strftime("%Y-%m-%d %H:%M")
        metrics = [v["metrics"][m] for m in METRIC_COLUMNS]
        metrics = ["-" if x is None else f"{x:.4f}" for x in metrics]
        role, decision = v["role"] or "-", _escape(v["decision"] or "-")
        held, run = ", ".join(v["aliases"]) or "-", (v["run_id"] or "")[:8]
        table.add_row(v["version"], held, role, created, *metrics, decision, gate, run)
    _console().print(table)


def _print_outcome(name: str, outcome) -> None:
    """The decision, the gate's numbers and the reasons."""
    con = _console()
    if outcome.verdict is None:
        con.print(f"[yellow]not promoted[/]: {outcome.note}")
        return
    was = outcome.champion or "none"
    if outcome.promoted:
        forced = " [red](forced)[/]" if outcome.entry.get("forced") else ""
        con.print(
            f"[green]promoted[/]{forced}: champion of {name} is now version "
            f"{outcome.candidate} (was {was})"
        )
    else:
        con.print(
            f"[red]refused[/]: version {outcome.candidate} did not pass the gate; the "
            f"champion of {name} stays {was}"
        )
    con.print(_verdict_table(outcome.verdict))
    for reason in outcome.verdict.reasons:
        con.print(f"  - {reason}", markup=False)


def _verdict_table(v):
    """Primary metric, guards and floors of a verdict, one row each."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"gate ({v.mode}, {v.n_rows} test rows, {v.n_boot} bootstrap resamples)")
    for col in ("check", "champion", "challenger", "difference", "rule", "ok"):
        table.add_column(col)
    if v.mode == "compare":
        diff = escape(f"{_num(v.delta)} [{_num(v.ci_low)}, {_num(v.ci_high)}]")
        rule = f">= {v.min_delta:g}, CI low > 0"
        table.add_row(
            v.metric, _num(v.champion), _num(v.challenger), diff, rule, _mark(v.primary_ok)
        )
    for g in v.guards:
        change = "increase" if g.lower_is_better else "drop"  # ece, brier: lower is better
        drop, rule = f"{change} {_num(g.drop)}", f"{change} <= {g.tolerance:g}"
        table.add_row(
            f"guard {g.metric}", _num(g.champion), _num(g.challenger), drop, rule, _mark(g.ok)
        )
    for f in v.floors:
        table.add_row(f"floor {f.metric}", "-", _num(f.value), "-", f">= {f.floor:g}", _mark(f.ok))
    return table


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _mark(ok: bool) -> str:
    return "[green]yes[/]" if ok else "[red]no[/]"


def _print_history(name: str, entries: list[dict]) -> None:
    """One row per history entry, oldest first (user-given text is shown verbatim)."""
    from rich.table import Table

    if not entries:
        _console().print(f"no alias moves recorded for {name} yet")
        return
    table = Table(title=f"{name}: alias history")
    for col in ("#", "time", "alias", "action", "from", "to", "gate", "metric", "user", "reason"):
        table.add_column(col)
    for e in entries:
        cells = [str(e.get(k) or "-") for k in ("seq", "time", "alias", "action", "from", "to")]
        who = [_escape(str(e.get(k, ""))) for k in ("user", "reason")]
        table.add_row(*cells, _gate_cell(e), _metric_cell(e.get("verdict")), *who)
    _console().print(table)


def _gate_cell(entry: dict) -> str:
    verdict = entry.get("verdict")
    if not verdict:
        return "-"
    text = "passed" if verdict.get("passed") else "refused"
    return f"{text}, forced" if entry.get("forced") else text


def _metric_cell(verdict: dict | None) -> str:
    from rich.markup import escape

    if not verdict:
        return "-"
    m, a, b = verdict["metric"], verdict.get("champion"), verdict.get("challenger")
    if verdict.get("mode") != "compare":
        return f"{m} {_num(b)}"
    ci = f"[{_num(verdict.get('ci_low'))}, {_num(verdict.get('ci_high'))}]"
    return escape(f"{m} {_num(a)} -> {_num(b)} {ci}")
