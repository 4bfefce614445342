"""The ``kairos`` command: one entry point for every job.

It lives in ``training`` (the jobs package); commands import their modules lazily so that
``kairos --help`` stays fast and serving never imports training code paths it does not need.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from features.errors import KairosError, QuarantineThresholdError

app = typer.Typer(
    help="Kairos: customer 360, propensity models and decisions for CRM marketing.",
    no_args_is_help=True,
    add_completion=False,
)
features_app = typer.Typer(help="Feature snapshots.", no_args_is_help=True)
train_app = typer.Typer(help="Train models and register them in MLflow.", no_args_is_help=True)
app.add_typer(features_app, name="features")
app.add_typer(train_app, name="train")
console = Console(stderr=True)

DEFAULT_HOME = Path("var/demo/data")
DEFAULT_TRACKING = "sqlite:///var/demo/mlflow.db"


@contextmanager
def _progress(title: str) -> Iterator[Callable[[str, float], None]]:
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task(title, total=1.0)

        def tick(step: str, fraction: float) -> None:
            bar.update(task, completed=fraction, description=f"{title}: {step}")

        yield tick
        bar.update(task, completed=1.0, description=f"{title}: done")


def _fail(exc: Exception) -> typer.Exit:
    console.print(f"[bold red]error:[/] {exc}")
    return typer.Exit(code=2)


def _summary(title: str, rows: list[tuple[str, Any]]) -> None:
    table = Table(title=title, show_header=False, title_justify="left")
    for key, value in rows:
        table.add_row(key, str(value))
    console.print(table)


@app.command()
def synth(
    customers: Annotated[int, typer.Option(min=10, help="Number of real persons.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same files.")] = 7,
    out: Annotated[Path, typer.Option(help="Folder to write the export into.")] = Path("var/demo/raw"),
) -> None:
    """Generate the synthetic CRM world (an export in the contract's format, plus ground truth)."""
    from features.synth import generate_world

    with _progress("synth") as tick:
        summary = generate_world(customers, seed, out, progress=tick)
    _summary(
        f"synthetic world in {out}",
        [(k, f"{v:,}") for k, v in summary.rows.items()] + [("seconds", f"{summary.elapsed_seconds:.1f}")],
    )


@app.command()
def ingest(
    input: Annotated[Path, typer.Option("--input", help="Folder holding the export files.")],
    mapping: Annotated[str, typer.Option(help="Mapping YAML path, or a built-in: synthetic, online_retail_ii.")],
    out: Annotated[Path, typer.Option(help="Data home; results go to OUT/ingested.")] = DEFAULT_HOME,
    max_quarantine_share: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="Fail above this quarantined share (default: mapping's).")
    ] = None,
    now: Annotated[str | None, typer.Option(help="Reference time for the future-timestamp rule (ISO 8601).")] = None,
) -> None:
    """Validate an export, quarantine bad rows with reasons, resolve identities, publish tables."""
    from features.ingest import ingest as run_ingest
    from features.mapping import load_mapping

    try:
        spec = load_mapping(mapping)
        ref = datetime.fromisoformat(now) if now else datetime.now(UTC)
        with _progress("ingest") as tick:
            result = run_ingest(input, spec, out, now=ref, max_quarantine_share=max_quarantine_share, progress=tick)
    except QuarantineThresholdError as exc:
        _print_ingest(exc.report)
        raise _fail(exc) from exc
    except (KairosError, ValueError) as exc:
        raise _fail(exc) from exc
    _print_ingest(result.report)
    console.print(f"published to [bold]{result.path}[/]")


def _print_ingest(report: dict[str, Any]) -> None:
    table = Table(title="ingestion", title_justify="left")
    for col in ("table", "input", "accepted", "reclassified", "quarantined"):
        table.add_column(col, justify="left" if col == "table" else "right")
    reasons = Table(title="reasons", title_justify="left")
    for col in ("table", "outcome", "reason", "rows"):
        reasons.add_column(col, justify="right" if col == "rows" else "left")
    for name, t in report["tables"].items():
        table.add_row(
            name, f"{t['input_rows']:,}", f"{t['accepted']:,}", f"{t['reclassified']:,}", f"{t['quarantined']:,}"
        )
        for outcome, key in (("quarantined", "quarantine_reasons"), ("reclassified", "reclassified_reasons")):
            for reason, count in t[key].items():
                reasons.add_row(name, outcome, reason, f"{count:,}")
    console.print(table)
    if reasons.row_count:
        console.print(reasons)
    ident = report.get("identity") or {}
    console.print(
        f"quarantined {report['quarantine_share']:.2%} (threshold {report['max_quarantine_share']:.0%}); "
        f"identity: {ident.get('records', 0):,} records -> {ident.get('clusters', 0):,} customers, "
        f"{ident.get('clusters_merged', 0):,} merged, {ident.get('refused_merges', 0):,} merges refused for review"
    )


@features_app.command("build")
def features_build(
    data: Annotated[Path, typer.Option(help="Data home (after `kairos ingest`).")] = DEFAULT_HOME,
    as_of: Annotated[
        str | None, typer.Option(help="As-of date (ISO 8601); default the day after the last order.")
    ] = None,
    backend: Annotated[str, typer.Option(help="duckdb (embedded) or spark.")] = "duckdb",
    spark_master: Annotated[str, typer.Option(help="Spark master URL, with --backend spark.")] = "local[2]",
) -> None:
    """Compute the feature snapshot as of a date and write it with its manifest."""
    from features.backends import connect
    from features.store import build_snapshot

    try:
        when = _parse_as_of(as_of) if as_of else None
        if backend not in ("duckdb", "spark"):
            raise ValueError(f"--backend must be duckdb or spark, not {backend!r}")
        con = connect("spark", master=spark_master) if backend == "spark" else connect("duckdb")
        with _progress("features") as tick:
            tick("computing", 0.1)
            snap = build_snapshot(data, when, con)
    except (KairosError, ValueError) as exc:
        raise _fail(exc) from exc
    m = snap.manifest
    _summary(
        f"snapshot {snap.path}",
        [
            ("as of", m["as_of"]),
            ("customers", f"{m['rows']:,}"),
            ("features", len(m["features"])),
            ("definition hash", m["definition_hash"]),
        ],
    )
    _print_segments(m["segments"])


def _print_segments(seg: dict[str, Any]) -> None:
    for column, sizes in seg["sizes"].items():
        table = Table(title=column, title_justify="left", show_header=False)
        for name, count in sorted(sizes.items(), key=lambda kv: -kv[1]):
            table.add_row(name, f"{count:,}")
        console.print(table)
        moves = seg["transitions"].get(column)
        if moves:
            top = ", ".join(f"{m['previous']} → {m['current']} {m['customers']:,}" for m in moves["top_moves"][:3])
            console.print(
                f"  since {seg['previous_snapshot']}: {moves['moved']:,} moved ({moves['moved_share']:.1%}), "
                f"{moves['entered']:,} new, {moves['left']:,} gone; largest moves: {top}"
            )
        else:
            console.print("  no earlier snapshot to compare with")
    if seg["not_available"]:
        console.print("flags not available (features missing): " + ", ".join(seg["not_available"]))


@features_app.command("catalogue")
def features_catalogue() -> None:
    """Print the feature catalogue (markdown): every feature, its meaning, type and window."""
    from features.definitions import catalogue_markdown

    typer.echo(catalogue_markdown(), nl=False)


def _parse_as_of(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@train_app.command("churn")
def train_churn(
    data: Annotated[Path, typer.Option(help="Data home (after `kairos ingest`).")] = DEFAULT_HOME,
    tracking_uri: Annotated[
        str, typer.Option(envvar="KAIROS_TRACKING_URI", help="MLflow tracking URI.")
    ] = DEFAULT_TRACKING,
    horizon_days: Annotated[int, typer.Option(min=7, help="No purchase within this many days = churned.")] = 90,
    active_days: Annotated[
        int, typer.Option(min=30, help="Customers who bought within this many days are scored.")
    ] = 365,
    margin: Annotated[float, typer.Option(min=0.0, help="ROC-AUC gain needed to replace the champion.")] = 0.0,
) -> None:
    """Train the churn model on rolling cutoffs, evaluate on the temporal holdout, register it."""
    from training.churn import train_churn as run

    try:
        with _progress("train churn") as tick:
            result = run(
                data, tracking_uri, horizon_days=horizon_days, active_days=active_days, margin=margin, progress=tick
            )
    except (KairosError, ValueError) as exc:
        raise _fail(exc) from exc
    reg = result.registration
    _summary(
        "churn model",
        [
            ("holdout cutoff", result.plan.holdout.date()),
            (
                "training cutoffs",
                f"{len(result.plan.train)} ({result.plan.train[0].date()} .. {result.plan.train[-1].date()})",
            ),
            *((k, f"{v:,}") for k, v in result.sizes.items()),
            ("holdout ROC-AUC", f"{result.metrics['holdout_roc_auc']:.4f}"),
            ("recency baseline ROC-AUC", f"{result.metrics['baseline_recency_roc_auc']:.4f}"),
            ("MLflow run", result.run_id),
            ("registered", f"churn v{reg.version} -> @{reg.alias} ({reg.reason})" if reg else "no"),
        ],
    )


@train_app.command("recs")
def train_recs(
    data: Annotated[Path, typer.Option(help="Data home (after `kairos ingest`).")] = DEFAULT_HOME,
    tracking_uri: Annotated[
        str, typer.Option(envvar="KAIROS_TRACKING_URI", help="MLflow tracking URI.")
    ] = DEFAULT_TRACKING,
    test_days: Annotated[int, typer.Option(min=7, help="Days at the end of the data held out for evaluation.")] = 90,
    margin: Annotated[float, typer.Option(min=0.0, help="recall@10 gain needed to replace the champion.")] = 0.0,
) -> None:
    """Evaluate recommenders against baselines on a temporal split, refit, register the bundle."""
    from training.recs import train_recs as run

    try:
        with _progress("train recs") as tick:
            result = run(data, tracking_uri, test_days=test_days, margin=margin, progress=tick)
    except (KairosError, ValueError) as exc:
        raise _fail(exc) from exc
    table = Table(title="evaluation (temporal split, k=10)", title_justify="left")
    for col in ("model", "task", "recall@10", "ndcg@10", "mrr", "coverage"):
        table.add_column(col, justify="left" if col in ("model", "task") else "right")
    for r in result.table.to_dict(orient="records"):
        table.add_row(r["model"], r["task"], *(f"{r[c]:.4f}" for c in ("recall@10", "ndcg@10", "mrr", "coverage")))
    console.print(table)
    reg = result.registration
    console.print(f"registered: recs v{reg.version} -> @{reg.alias} ({reg.reason})" if reg else "not registered")


@app.command()
def promote(
    name: Annotated[str, typer.Argument(help="Registered model name, e.g. churn or recs.")],
    version: Annotated[str, typer.Argument(help="The version to promote.")],
    alias: Annotated[str, typer.Option(help="Alias to move.")] = "champion",
    tracking_uri: Annotated[
        str, typer.Option(envvar="KAIROS_TRACKING_URI", help="MLflow tracking URI.")
    ] = DEFAULT_TRACKING,
) -> None:
    """Move an alias to a version by hand (the decision is recorded on the version)."""
    from training.registry import promote as run

    try:
        reg = run(tracking_uri, name, version, alias)
    except KairosError as exc:
        raise _fail(exc) from exc
    console.print(f"{reg.name} v{reg.version} -> @{reg.alias} ({reg.reason})")


@app.command()
def rollback(
    name: Annotated[str, typer.Argument(help="Registered model name, e.g. churn or recs.")],
    tracking_uri: Annotated[
        str, typer.Option(envvar="KAIROS_TRACKING_URI", help="MLflow tracking URI.")
    ] = DEFAULT_TRACKING,
) -> None:
    """Give @champion back to the version that held it before the current one."""
    from training.registry import rollback as run

    try:
        reg = run(tracking_uri, name)
    except KairosError as exc:
        raise _fail(exc) from exc
    console.print(f"{reg.name} v{reg.version} -> @{reg.alias} ({reg.reason})")


@app.command()
def serve(
    data: Annotated[
        Path, typer.Option(envvar="KAIROS_DATA_HOME", help="Data home with a feature snapshot.")
    ] = DEFAULT_HOME,
    tracking_uri: Annotated[
        str, typer.Option(envvar="KAIROS_TRACKING_URI", help="MLflow tracking URI.")
    ] = DEFAULT_TRACKING,
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
) -> None:
    """Serve the API (uvicorn), printing example calls."""
    import os

    import uvicorn

    os.environ["KAIROS_DATA_HOME"] = str(data)
    os.environ["KAIROS_TRACKING_URI"] = tracking_uri
    example = _example_ids(data)
    base = f"http://{host}:{port}"
    console.print("[bold]Kairos API[/] — try:")
    # plain echo, never wrapped: these lines are for copy and paste
    typer.echo(f"  curl -s {base}/health/ready")
    typer.echo(
        f"  curl -s -X POST {base}/v1/scores -H 'content-type: application/json' "
        f"-d '{json.dumps({'customer_ids': example})}'"
    )
    typer.echo(f"  open {base}/docs for the OpenAPI documentation")
    uvicorn.run("serving.app:create_app", factory=True, host=host, port=port, workers=workers, log_level="info")


def _example_ids(data: Path) -> list[str]:
    """Two real customer ids from the data and one unknown, for the printed curl example."""
    try:
        import pandas as pd

        from features.ingest import IDENTITY_MAP_FILE
        from features.store import ingested_dir

        ids = pd.read_parquet(ingested_dir(data) / IDENTITY_MAP_FILE)["customer_id"].head(2).tolist()
    except (KairosError, OSError):
        ids = []
    return [str(i) for i in ids] + ["no-such-customer"]


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
