"""The ``kairos`` command: one entry point for every package's jobs.

It sits above every other package (ingest and features, training, the batch export, the registry,
the API) and is imported by none of them. Commands import their modules lazily, so that
``kairos --help`` stays fast and each command loads only what it runs.
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
    pretty_exceptions_show_locals=False,  # a crash must not print frames' locals: they hold customers' rows
)
features_app = typer.Typer(help="Feature snapshots.", no_args_is_help=True)
train_app = typer.Typer(help="Train models and register them in MLflow.", no_args_is_help=True)
app.add_typer(features_app, name="features")
mapping_app = typer.Typer(help="Check a mapping against an export, or draft one.", no_args_is_help=True)
app.add_typer(train_app, name="train")
app.add_typer(mapping_app, name="mapping")
console = Console(stderr=True)

DEFAULT_HOME = Path("var/demo/data")
DEFAULT_TRACKING = "sqlite:///var/demo/mlflow.db"
PSEUDONYM_SECRET_ENV = "KAIROS_PSEUDONYM_SECRET"


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


def _dated(data: Path, job: str) -> None:
    """Refuse a job built on time on an export without order times, in one line (see features.ingest)."""
    from features.ingest import require_dates

    require_dates(data, job)


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
    from synth import generate_world

    with _progress("synth") as tick:
        summary = generate_world(customers, seed, out, progress=tick)
    _summary(
        f"synthetic world in {out}",
        [(k, f"{v:,}") for k, v in summary.rows.items()] + [("seconds", f"{summary.elapsed_seconds:.1f}")],
    )


@app.command()
def ingest(
    input: Annotated[Path, typer.Option("--input", help="Folder holding the export files.")],
    mapping: Annotated[
        str,
        typer.Option(help="Mapping YAML path, or a built-in: synthetic, online_retail_ii, complete_journey, cdnow."),
    ],
    out: Annotated[Path, typer.Option(help="Data home; results go to OUT/ingested.")] = DEFAULT_HOME,
    max_quarantine_share: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="Fail above this quarantined share (default: mapping's).")
    ] = None,
    now: Annotated[str | None, typer.Option(help="Reference time for the future-timestamp rule (ISO 8601).")] = None,
    dev: Annotated[
        bool,
        typer.Option(
            "--dev",
            help=f"Development data: key customers with the public development secret when {PSEUDONYM_SECRET_ENV} "
            "is unset (never for real customers).",
        ),
    ] = False,
    identity_overrides: Annotated[
        Path | None,
        typer.Option(
            "--identity-overrides",
            help="CSV or YAML file of forced merges and splits for identity resolution (replaces the mapping's "
            "identity_overrides; docs/data-contract.md section 11).",
        ),
    ] = None,
) -> None:
    """Validate an export, quarantine bad rows with reasons, resolve identities, publish tables.

    Customer keys are keyed hashes of the source ids: the secret comes from KAIROS_PSEUDONYM_SECRET
    (docs/security-pseudonyms.md); without it the command refuses to run unless --dev is given.
    """
    from features.ingest import ingest as run_ingest
    from features.mapping import load_mapping

    try:
        spec = load_mapping(mapping)
        pseudonymizer = _pseudonymizer(dev)
        ref = datetime.fromisoformat(now) if now else datetime.now(UTC)
    except (KairosError, ValueError) as exc:
        raise _fail(exc) from exc
    try:
        with _progress("ingest") as tick:
            result = run_ingest(
                input,
                spec,
                out,
                now=ref,
                max_quarantine_share=max_quarantine_share,
                pseudonymizer=pseudonymizer,
                identity_overrides=identity_overrides,  # None: the mapping's, if any
                progress=tick,
            )
    except QuarantineThresholdError as exc:
        _print_ingest(exc.report)
        raise _fail(exc) from exc
    except KairosError as exc:  # Kairos's messages name files, rows and columns, never a value
        raise _fail(exc) from exc
    except Exception as exc:
        # A library's message may quote a value from the export (a customer's e-mail, say): only its type.
        problem = f"ingest stopped on an unexpected {type(exc).__name__} (message withheld: it may quote a value)"
        raise _fail(RuntimeError(problem)) from None
    _print_ingest(result.report)
    console.print(f"published to [bold]{result.path}[/]")


@mapping_app.command("check")
def mapping_check(
    mapping: Annotated[str, typer.Option(help="Mapping YAML path, or a built-in name.")],
    input: Annotated[Path, typer.Option("--input", help="Folder holding the export files.")],
) -> None:
    """Check a mapping against the export before any ingest: per table, what maps where, what is missing.

    Reads the files' headers (and the lookup files) only. Exits with code 2 when a problem is found.
    """
    from features.mapcheck import check_mapping
    from features.mapping import load_mapping

    try:
        result = check_mapping(input, load_mapping(mapping))
    except KairosError as exc:
        raise _fail(exc) from exc
    for check in result.tables:
        table = Table(title=f"{check.table} ({', '.join(check.files) or 'no file'})", title_justify="left")
        for col in ("contract column", "from", "required"):
            table.add_column(col)
        for c in check.columns:
            source = c.source or ("[red]missing[/]" if c.required else "[dim]-[/]")
            table.add_row(c.column, source, "yes" if c.required else "")
        console.print(table)
        if check.unused:
            console.print(f"  not read: {', '.join(check.unused)}")
        for problem in check.problems:
            console.print(f"  [bold red]problem:[/] {problem}")
    for problem in result.problems:
        console.print(f"[bold red]problem:[/] {problem}")
    if not result.ok:
        raise typer.Exit(code=2)
    console.print("[green]the mapping fits the files[/]")


@mapping_app.command("draft")
def mapping_draft(
    input: Annotated[Path, typer.Option("--input", help="Folder holding the export files.")],
    out: Annotated[Path | None, typer.Option(help="Write the YAML here (default: print it).")] = None,
    name: Annotated[str | None, typer.Option(help="The mapping's name (default: the folder's).")] = None,
) -> None:
    """Propose a mapping for an export: tables and column matches by name and type, clock and currency
    guesses, warnings. Edit it, then run `kairos mapping check`."""
    import yaml

    from features.mapcheck import draft_mapping

    try:
        draft = draft_mapping(input, name)
    except KairosError as exc:
        raise _fail(exc) from exc
    header = "".join(f"# warning: {w}\n" for w in draft.warnings)
    text = header + yaml.safe_dump(draft.mapping, sort_keys=False, allow_unicode=True, width=110)
    for warning in draft.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    if out is None:
        typer.echo(text)
    else:
        out.write_text(text, encoding="utf-8")
        console.print(f"draft written to [bold]{out}[/]: edit it, then `kairos mapping check --mapping {out}`")


def _pseudonymizer(dev: bool) -> Any:
    """The keyed hash for customer keys: the secret from the environment, the public one only with --dev."""
    import os

    from features.identity import Pseudonymizer

    secret = os.environ.get(PSEUDONYM_SECRET_ENV, "")
    if secret:
        return Pseudonymizer(secret)  # ValueError (too short, or the public one): reported by the caller
    if not dev:
        raise ValueError(
            f"{PSEUDONYM_SECRET_ENV} is not set: customer keys are keyed hashes and need a secret of at least 16 "
            "characters (docs/security-pseudonyms.md); pass --dev only for development data"
        )
    console.print(f"[yellow]--dev:[/] {PSEUDONYM_SECRET_ENV} is unset; customer keys use the public development secret")
    return Pseudonymizer.for_development()


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
    forced = ident.get("overrides")
    if forced:
        console.print(
            f"identity overrides: {forced['merges_applied']:,} of {forced['merges']:,} forced merges joined two "
            f"persons; {forced['splits']:,} forced splits refused {forced['links_refused_by_splits']:,} links"
        )
    console.print(f"erased: {(report.get('erased') or {}).get('rows', 0):,} rows of erased customers dropped")
    clock = report.get("clock") or {}
    prices = "yes" if report.get("prices", True) else "no (basket-only)"
    console.print(
        f"currency: {report.get('currency') or 'none'}; prices: {prices}; "
        f"clock: {clock.get('timezone', 'UTC')} (stored as {clock.get('stored_as', 'UTC')})"
    )


@features_app.command("build")
def features_build(
    data: Annotated[Path, typer.Option(help="Data home (after `kairos ingest`).")] = DEFAULT_HOME,
    as_of: Annotated[
        str | None,
        typer.Option(
            help="As-of date (ISO 8601): the features of that day, from the data as it stood then; default "
            "the day after the last order."
        ),
    ] = None,
    backend: Annotated[str, typer.Option(help="duckdb (embedded) or spark.")] = "duckdb",
    spark_master: Annotated[str, typer.Option(help="Spark master URL, with --backend spark.")] = "local[2]",
    segments: Annotated[
        Path | None,
        typer.Option(
            help="YAML of segment settings: thresholds and `rules:` (your own segments as conditions over "
            "features and customer attributes; docs/segments.md)."
        ),
    ] = None,
) -> None:
    """Compute the feature snapshot as of a date and write it with its manifest."""
    from features.backends import connect
    from features.segments import load_segment_config
    from features.store import build_snapshot

    try:
        _dated(data, "kairos features build")
        when = _as_of(as_of)
        if backend not in ("duckdb", "spark"):
            raise ValueError(f"--backend must be duckdb or spark, not {backend!r}")
        con = connect("spark", master=spark_master) if backend == "spark" else connect("duckdb")
        with _progress("features") as tick:
            tick("computing", 0.1)
            config = load_segment_config(segments) if segments is not None else None
            snap = build_snapshot(data, when, con, segment_config=config)
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


@features_app.command("publish")
def features_publish(
    data: Annotated[Path, typer.Option(help="Data home with a feature snapshot.")] = DEFAULT_HOME,
    redis_url: Annotated[
        str, typer.Option(envvar="KAIROS_REDIS_URL", help="Redis of the online store (KAIROS_REDIS_URL).")
    ] = "redis://127.0.0.1:6379/0",
    prefix: Annotated[
        str, typer.Option(envvar="KAIROS_REDIS_PREFIX", help="Key prefix the API reads (KAIROS_REDIS_PREFIX).")
    ] = "kairos",
) -> None:
    """Publish the latest snapshot to Redis as a new online-store version; API replicas switch to it at once."""
    from features.online import RedisOnlineStore, publish_to_redis

    try:
        with _progress("publish") as tick:
            tick("writing", 0.1)
            store = RedisOnlineStore.connect(redis_url, prefix, timeout=30, connect_timeout=5)
            version = publish_to_redis(data, store)
            rows = len(store)
    except (KairosError, ValueError) as exc:  # OnlineStoreUnavailable is a KairosError
        raise _fail(exc) from exc
    _summary(f"online store {prefix!r}", [("version", version), ("customers", f"{rows:,}")])


@features_app.command("catalogue")
def features_catalogue() -> None:
    """Print the feature catalogue (markdown): every feature, its meaning, type and window."""
    from features.definitions import catalogue_markdown

    typer.echo(catalogue_markdown(), nl=False)


def _parse_as_of(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_DATA_OPT = Annotated[Path, typer.Option("--data", help="Data home (after `kairos ingest`).")]
_TRACKING_OPT = Annotated[str, typer.Option(envvar="KAIROS_TRACKING_URI", help="MLflow tracking URI.")]
_MARGIN_OPT = Annotated[float, typer.Option(min=0.0, help="Holdout gain needed to replace the champion.")]
_MIN_POS_OPT = Annotated[int, typer.Option(min=1, help="Fewest positive training examples to register a model.")]
_MIN_NEG_OPT = Annotated[int, typer.Option(min=1, help="Fewest negative training examples to register a model.")]
_MIN_HIST_OPT = Annotated[int, typer.Option(min=0, help="Fewest days of history before the first cutoff.")]
_POLICY_OPT = Annotated[
    Path | None,
    typer.Option(
        "--policy",
        envvar="KAIROS_POLICY_FILE",
        help="The marketer's policy file (YAML or TOML; docs/decisioning.md): its band cuts per model. Default: "
        "each model's own cuts.",
    ),
]


def _policy(path: Path | None) -> Any:
    from models.decisioning.marketing_policy import load_policy

    return load_policy(path) if path is not None else None


_AS_OF_OPT = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        help="Use the data as it stood at this date (YYYY-MM-DD, midnight UTC, or an ISO 8601 instant): every "
        "later row is invisible, so the data's end, the cutoffs and the labels are those of an export taken "
        "then. Default: all the data.",
    ),
]


_SEARCH_TRIALS_OPT = Annotated[
    int,
    typer.Option(
        min=0,
        help="Optuna trials over the LightGBM settings, scored on the validation window only (0: the defaults).",
    ),
]
_SEARCH_SECONDS_OPT = Annotated[
    float, typer.Option(min=1.0, help="Seconds the settings search may take per model (checked between trials).")
]
_BASELINE_INPUTS_OPT = Annotated[
    bool,
    typer.Option(
        "--baseline-inputs/--no-baseline-inputs",
        help="Offer the model the baselines' outputs (BG/NBD P(alive), P(order), expected orders; RFM score) "
        "fitted at each cutoff; kept only where the validation window's ROC-AUC is higher with them (with a "
        "search, the search decides).",
    ),
]


def _tuning(search_trials: int, search_seconds: float, baseline_inputs: bool) -> dict[str, Any]:
    from training.tuning import SearchBudget

    return {"search_budget": SearchBudget(search_trials, search_seconds), "baseline_inputs": baseline_inputs}


def _as_of(text: str | None) -> datetime | None:
    """The --as-of option as an aware UTC instant (a clear error for a malformed date)."""
    if text is None:
        return None
    try:
        return _parse_as_of(text)
    except ValueError:
        raise ValueError(f"--as-of {text!r} is not a date (YYYY-MM-DD) or an ISO 8601 instant") from None


def _sufficiency(min_positives: int, min_negatives: int, min_history_days: int) -> Any:
    from training.propensity import Sufficiency

    return Sufficiency(min_positives=min_positives, min_negatives=min_negatives, min_history_days=min_history_days)


def _print_propensity(result: Any) -> None:
    table = Table(title=f"{result.task}: temporal holdout {result.plan.holdout.date()}", title_justify="left")
    cols = ("roc_auc", "pr_auc", "log_loss", "brier", "ece", "lift_top10", "capture_top10", "lift_top20")
    table.add_column("model")
    for col in cols:
        table.add_column(col, justify="right")
    for name, row in result.table.iterrows():
        table.add_row(str(name), *(f"{row[c]:.4f}" for c in cols))
    console.print(table)
    reg = result.registration
    passed = all(result.quality.values())
    console.print(
        f"quality bar ({', '.join(k for k, v in result.quality.items() if not v) or 'all met'}): "
        f"{'[green]met[/]' if passed else '[yellow]not met[/]'}"
    )
    if result.versus_line:
        console.print(f"{result.versus_line} (paired bootstrap 95 %, holdout)", markup=False)
    for note in result.notes:
        console.print(note, markup=False)
    console.print(
        f"registered: {result.task} v{reg.version} -> @{reg.alias} ({reg.reason})" if reg else "not registered"
    )
    served = result.served
    if served is not None and served.baseline is not None:
        b = served.baseline
        console.print(f"registered: {result.task} v{b.version} -> @{b.alias} (the {served.baseline_name} baseline)")
    # the closing line: which model the API and the export serve, and why
    console.print(f"{result.task}: {result.decision}", markup=False)


def _train_binary(
    name: str,
    data: Path,
    tracking_uri: str,
    margin: float,
    sufficiency: Any,
    as_of: str | None,
    tuning: dict[str, Any],
    **target: Any,
) -> None:
    from training.propensity import task_by_name, train_task

    try:
        _dated(data, f"kairos train {name}")
        when = _as_of(as_of)
        task = task_by_name(name, **target)
        with _progress(f"train {name}") as tick:
            result = train_task(
                task, data, tracking_uri, margin=margin, sufficiency=sufficiency, as_of=when, progress=tick, **tuning
            )
    except (KairosError, ValueError) as exc:
        raise _fail(exc) from exc
    _print_propensity(result)


@train_app.command("churn")
def train_churn(
    data: _DATA_OPT = DEFAULT_HOME,
    tracking_uri: _TRACKING_OPT = DEFAULT_TRACKING,
    horizon_days: Annotated[int, typer.Option(min=7, help="No purchase within this many days = churned.")] = 90,
    active_days: Annotated[
        int, typer.Option(min=30, help="Customers who bought within this many days are scored.")
    ] = 365,
    margin: _MARGIN_OPT = 0.0,
    min_positives: _MIN_POS_OPT = 500,
    min_negatives: _MIN_NEG_OPT = 500,
    min_history_days: _MIN_HIST_OPT = 180,
    as_of: _AS_OF_OPT = None,
    search_trials: _SEARCH_TRIALS_OPT = 0,
    search_seconds: _SEARCH_SECONDS_OPT = 300.0,
    baseline_inputs: _BASELINE_INPUTS_OPT = True,
) -> None:
    """Churn: rolling cutoffs, LightGBM, calibration, baselines on the temporal holdout, MLflow, registry."""
    suff = _sufficiency(min_positives, min_negatives, min_history_days)
    tuning = _tuning(search_trials, search_seconds, baseline_inputs)
    _train_binary(
        "churn", data, tracking_uri, margin, suff, as_of, tuning, horizon_days=horizon_days, active_days=active_days
    )


@train_app.command("purchase")
def train_purchase(
    data: _DATA_OPT = DEFAULT_HOME,
    tracking_uri: _TRACKING_OPT = DEFAULT_TRACKING,
    horizon_days: Annotated[int, typer.Option(min=7, help="An order within this many days = bought.")] = 30,
    margin: _MARGIN_OPT = 0.0,
    min_positives: _MIN_POS_OPT = 500,
    min_negatives: _MIN_NEG_OPT = 500,
    min_history_days: _MIN_HIST_OPT = 180,
    as_of: _AS_OF_OPT = None,
    search_trials: _SEARCH_TRIALS_OPT = 0,
    search_seconds: _SEARCH_SECONDS_OPT = 300.0,
    baseline_inputs: _BASELINE_INPUTS_OPT = True,
) -> None:
    """Purchase probability (leads included) over the horizon, evaluated like churn."""
    suff = _sufficiency(min_positives, min_negatives, min_history_days)
    tuning = _tuning(search_trials, search_seconds, baseline_inputs)
    _train_binary("purchase", data, tracking_uri, margin, suff, as_of, tuning, horizon_days=horizon_days)


@train_app.command("engagement")
def train_engagement(
    data: _DATA_OPT = DEFAULT_HOME,
    tracking_uri: _TRACKING_OPT = DEFAULT_TRACKING,
    margin: _MARGIN_OPT = 0.0,
    min_positives: _MIN_POS_OPT = 500,
    min_negatives: _MIN_NEG_OPT = 500,
    min_history_days: _MIN_HIST_OPT = 180,
    as_of: _AS_OF_OPT = None,
    search_trials: _SEARCH_TRIALS_OPT = 0,
    search_seconds: _SEARCH_SECONDS_OPT = 300.0,
    baseline_inputs: _BASELINE_INPUTS_OPT = True,
) -> None:
    """Open and click probability of the next message, per channel (e-mail, SMS, push): six models."""
    from training.propensity import engagement_task, train_many

    tasks = [engagement_task(str(ch), a) for ch in ("email", "sms", "push") for a in ("open", "click")]
    suff = _sufficiency(min_positives, min_negatives, min_history_days)
    try:
        _dated(data, "kairos train engagement")
        when = _as_of(as_of)
        with _progress("train engagement") as tick:
            results = train_many(
                tasks,
                data,
                tracking_uri,
                margin=margin,
                sufficiency=suff,
                as_of=when,
                progress=tick,
                **_tuning(search_trials, search_seconds, baseline_inputs),
            )
    except (KairosError, ValueError) as exc:
        raise _fail(exc) from exc
    failed = _print_many(results)
    if failed == len(results):
        raise typer.Exit(code=2)


def _print_many(results: dict[str, Any]) -> int:
    failed = 0
    for name, result in results.items():
        if isinstance(result, Exception):
            failed += 1
            console.print(f"[yellow]{name}: not trained:[/] {result}")
        else:
            _print_propensity(result)
    return failed


@train_app.command("value")
def train_value(
    data: _DATA_OPT = DEFAULT_HOME,
    tracking_uri: _TRACKING_OPT = DEFAULT_TRACKING,
    horizon_days: Annotated[int, typer.Option(min=30, help="Spend and orders over this many days.")] = 365,
    margin: _MARGIN_OPT = 0.0,
    min_positives: _MIN_POS_OPT = 500,
    min_history_days: _MIN_HIST_OPT = 180,
    as_of: _AS_OF_OPT = None,
) -> None:
    """Value (spend and orders in the horizon) beside its baselines; registers `value` (or the best baseline,
    when Kairos's model does not beat it) and `clv`."""
    from training.value import train_value as run

    try:
        _dated(data, "kairos train value")
        when = _as_of(as_of)
        with _progress("train value") as tick:
            result = run(
                data,
                tracking_uri,
                horizon_days=horizon_days,
                margin=margin,
                sufficiency=_sufficiency(min_positives, 1, min_history_days),
                as_of=when,
                progress=tick,
            )
    except (KairosError, ValueError) as exc:
        raise _fail(exc) from exc
    _print_value(result)


def _print_value(result: Any) -> None:
    for kind, frame in (("spend", result.spend), ("orders", result.orders)):
        table = Table(title=f"{kind} in {result.horizon_days} days after {result.plan.holdout.date()}")
        for col in ("model", "mae", "rmse", "spearman"):
            table.add_column(col, justify="left" if col == "model" else "right")
        for name, row in frame.iterrows():
            table.add_row(str(name), f"{row['mae']:.2f}", f"{row['rmse']:.2f}", f"{row['spearman']:.4f}")
        console.print(table)
    for line in result.versus_lines:
        console.print(f"{line} (paired bootstrap 95 %, holdout)", markup=False)
    for label, reg in (("value", result.registration), ("clv", result.clv_registration)):
        console.print(f"registered: {label} v{reg.version} -> @{reg.alias} ({reg.reason})" if reg else "not registered")
    served = result.served
    if served is not None and served.baseline is not None:
        b = served.baseline
        console.print(f"registered: value v{b.version} -> @{b.alias} (the {served.baseline_name} baseline)")
    # the closing line: which value model the API and the export serve, and why
    console.print(f"value: {result.decision}", markup=False)


@train_app.command("all")
def train_all(
    data: _DATA_OPT = DEFAULT_HOME,
    tracking_uri: _TRACKING_OPT = DEFAULT_TRACKING,
    value_horizon_days: Annotated[int, typer.Option(min=30, help="Horizon of the value model.")] = 365,
    margin: _MARGIN_OPT = 0.0,
    min_positives: _MIN_POS_OPT = 500,
    min_negatives: _MIN_NEG_OPT = 500,
    min_history_days: _MIN_HIST_OPT = 180,
    as_of: _AS_OF_OPT = None,
    search_trials: _SEARCH_TRIALS_OPT = 0,
    search_seconds: _SEARCH_SECONDS_OPT = 300.0,
    baseline_inputs: _BASELINE_INPUTS_OPT = True,
) -> None:
    """Every propensity model and the value models in one run, sharing the features of each cutoff.

    A model whose data is too thin is skipped with the reason; the exit code is 2 only if none trained.
    """
    from training.propensity import Context, InsufficientDataError, all_tasks, train_many
    from training.value import train_value as run_value

    suff = _sufficiency(min_positives, min_negatives, min_history_days)
    try:
        _dated(data, "kairos train all")
        when = _as_of(as_of)
        with _progress("train all") as tick:
            results: dict[str, Any] = train_many(
                all_tasks(),
                data,
                tracking_uri,
                margin=margin,
                sufficiency=suff,
                as_of=when,
                progress=tick,
                **_tuning(search_trials, search_seconds, baseline_inputs),
            )
            try:
                results["value"] = run_value(
                    data,
                    tracking_uri,
                    horizon_days=value_horizon_days,
                    margin=margin,
                    sufficiency=suff,
                    context=Context.open(data, when),
                )
            except InsufficientDataError as exc:
                results["value"] = exc
    except (KairosError, ValueError) as exc:
        raise _fail(exc) from exc
    value = results.pop("value")
    failed = _print_many(results)
    if isinstance(value, Exception):
        failed += 1
        console.print(f"[yellow]value: not trained:[/] {value}")
    else:
        _print_value(value)
    if failed == len(results) + 1:
        raise typer.Exit(code=2)


@app.command()
def doctor(
    data: _DATA_OPT = DEFAULT_HOME,
    min_positives: _MIN_POS_OPT = 500,
    min_negatives: _MIN_NEG_OPT = 500,
    min_history_days: _MIN_HIST_OPT = 180,
    as_of: _AS_OF_OPT = None,
) -> None:
    """Per model: does the data suffice for an honest training run, and if not, exactly what is missing.

    When the history is too short for a model's cutoffs, it prints the --min-history-days and --horizon-days
    (and, with --as-of, the earliest --as-of) that would fit, each checked: "passes" or what is still missing.
    """
    from training.doctor import diagnose

    try:
        _dated(data, "kairos doctor")
        when = _as_of(as_of)
        verdicts = diagnose(data, _sufficiency(min_positives, min_negatives, min_history_days), as_of=when)
    except (KairosError, ValueError) as exc:
        raise _fail(exc) from exc
    title = f"data sufficiency: {data}" + (f" as of {when.isoformat()}" if when else "")
    table = Table(title=title, title_justify="left")
    for col in ("model", "verdict", "history days", "train +", "train -", "what is missing"):
        table.add_column(col, justify="right" if col in ("history days", "train +", "train -") else "left")
    for v in verdicts:
        table.add_row(
            v.model,
            "[green]ok[/]" if v.ok else "[red]insufficient[/]",
            str(v.history_days),
            f"{v.train_positives:,}",
            f"{v.train_negatives:,}",
            "; ".join(v.problems) or "-",
        )
    console.print(table)
    from features.store import NO_PRICES

    if any(NO_PRICES in v.problems for v in verdicts):
        typer.echo(NO_PRICES)  # one plain line: no flag brings amounts back
    for v in verdicts:
        if v.suggestions:
            # plain echo, never wrapped: these are flags to copy
            typer.echo(f"{v.model}, what would fit: " + "; ".join(v.suggestions))
    short = [v.model for v in verdicts if not v.ok]
    enough = len(verdicts) - len(short)
    console.print(f"{enough} of {len(verdicts)} models have enough data; not enough: {', '.join(short) or 'none'}")


@app.command()
def backtest(
    model: Annotated[str, typer.Argument(help="Registered model: churn, purchase, engagement_open_email, ...")],
    as_of: Annotated[str, typer.Option("--as-of", help="The past date to score as of (YYYY-MM-DD).")],
    data: _DATA_OPT = DEFAULT_HOME,
    tracking_uri: _TRACKING_OPT = DEFAULT_TRACKING,
    alias: Annotated[str, typer.Option(help="Registry alias to backtest.")] = "champion",
    out: Annotated[Path | None, typer.Option(help="Write per-customer score and outcome here (Parquet).")] = None,
) -> None:
    """Score a registered model as of a past date and compare with what then happened, beside the baselines."""
    from training.backtest import backtest as run

    try:
        _dated(data, "kairos backtest")
        when = _as_of(as_of)
        assert when is not None  # --as-of is required here
        result = run(model, data, tracking_uri, when, alias=alias)
    except (KairosError, ValueError) as exc:
        raise _fail(exc) from exc
    table = Table(
        title=f"{model} v{result.version} ({result.model_kind}) as of {result.as_of.date()}, outcome to "
        f"{result.outcome_until.date()}",
        title_justify="left",
    )
    cols = ("roc_auc", "pr_auc", "brier", "ece", "lift_top10", "capture_top10", "base_rate", "n")
    table.add_column("model")
    for col in cols:
        table.add_column(col, justify="right")
    for name, row in result.table.iterrows():
        table.add_row(str(name), *(f"{row[c]:.4f}" if c != "n" else f"{int(row[c]):,}" for c in cols))
    console.print(table)
    console.print(("[yellow]" if result.in_sample else "[green]") + result.note + "[/]")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        result.scores.to_parquet(out, index=False)
        console.print(f"per-customer scores: {out}")


@train_app.command("sendtime")
def train_sendtime(
    data: _DATA_OPT = DEFAULT_HOME,
    tracking_uri: _TRACKING_OPT = DEFAULT_TRACKING,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="End of the data used (default: the latest event).")
    ] = None,
    test_days: Annotated[int, typer.Option(min=7, help="Days before --as-of held out for evaluation.")] = 60,
    truth: Annotated[
        Path | None, typer.Option(help="A synthetic world's truth/ folder: also score against planted hours.")
    ] = None,
    min_sends: Annotated[int, typer.Option(min=1, help="Sends per channel below which it is 'not enough data'.")] = 5,
    margin: _MARGIN_OPT = 0.0,
) -> None:
    """Send-time curves (168 local hour-of-week slots per customer and channel) and channel preference."""
    from training.sendtime import train_sendtime as run

    try:
        _dated(data, "kairos train sendtime")
        check = None
        if truth is not None:
            from synth.checks import SendTimeTruth

            check = SendTimeTruth(truth, data)
        with _progress("train sendtime") as tick:
            result = run(
                data,
                tracking_uri,
                as_of=_as_of(as_of),
                test_days=test_days,
                planted_check=check,
                min_sends=min_sends,
                margin=margin,
                progress=tick,
            )
    except (KairosError, ValueError) as exc:
        raise _fail(exc) from exc
    console.print(result.next_hour.round(4).to_string())
    if result.planted is not None:
        console.print(result.planted.round(4).to_string())
    reg = result.registration
    console.print(f"registered: sendtime v{reg.version} -> @{reg.alias} ({reg.reason})" if reg else "not registered")


@train_app.command("offers")
def train_offers(
    data: _DATA_OPT = DEFAULT_HOME,
    tracking_uri: _TRACKING_OPT = DEFAULT_TRACKING,
    catalogue: Annotated[Path | None, typer.Option(help="Offer catalogue YAML (default: the shipped example).")] = None,
    truth: Annotated[
        Path | None, typer.Option(help="A synthetic world's truth/ folder: also compare with the oracle's profit.")
    ] = None,
    learner: Annotated[
        str, typer.Option(help="Uplift learner: cells (shrunk per-segment differences), x (X-learner) or t.")
    ] = "cells",
    caution: Annotated[
        float | None, typer.Option(min=0.0, help="Standard deviations of uplift to discount (default: chosen).")
    ] = None,
    compare: Annotated[bool, typer.Option(help="Also fit and report the other learners.")] = True,
    step_days: Annotated[int, typer.Option(min=7, help="Days between feature cutoffs for the logged sends.")] = 30,
    margin: _MARGIN_OPT = 0.0,
    as_of: _AS_OF_OPT = None,
    from_campaigns: Annotated[
        bool,
        typer.Option(
            "--from-campaigns",
            help="Learn from campaign exposures instead: per campaign, exposed vs not exposed; uplift only where "
            "the mapping declares the campaign randomised (or with --adjust). Nothing is registered.",
        ),
    ] = False,
    adjust: Annotated[
        bool,
        typer.Option(help="With --from-campaigns: propensity-corrected estimates for targeted campaigns, reported."),
    ] = False,
) -> None:
    """Uplift models from logged randomised offer sends, evaluated (Qini, off-policy), registered as `offers`;
    or, with --from-campaigns, what campaign exposures and redemptions show (docs/offers.md)."""
    from training.offers import train_offers as run

    if from_campaigns:
        _campaign_effects(data, tracking_uri, adjust, as_of)
        return
    if learner not in ("cells", "x", "t"):
        console.print(f"[bold red]error:[/] --learner must be cells, x or t, not {learner!r}")
        raise typer.Exit(code=2)
    try:
        _dated(data, "kairos train offers")
        check = None
        if truth is not None:
            from synth.checks import OffersTruth

            check = OffersTruth(truth, data)
        with _progress("train offers") as tick:
            result = run(
                data,
                tracking_uri,
                catalogue,
                policy_check=check,
                learner=learner,
                compare_learners=compare,
                step_days=step_days,
                margin=margin,
                as_of=_as_of(as_of),
                progress=tick,
            )
    except (KairosError, ValueError) as exc:
        raise _fail(exc) from exc
    for title, frame in (("Qini", result.qini), ("off-policy value", result.off_policy), ("truth", result.truth)):
        if frame is not None:
            console.print(f"[bold]{title}[/]")
            console.print(frame.round(4).to_string())
    reg = result.registration
    console.print(f"registered: offers v{reg.version} -> @{reg.alias} ({reg.reason})" if reg else "not registered")


def _campaign_effects(data: Path, tracking_uri: str, adjust: bool, as_of: str | None) -> None:
    from training.campaigns import summary, train_campaign_effects

    try:
        _dated(data, "kairos train offers --from-campaigns")
        result = train_campaign_effects(data, tracking_uri, adjust=adjust, as_of=_as_of(as_of))
    except (KairosError, ValueError) as exc:
        raise _fail(exc) from exc
    table = Table(title="campaign effects (purchase within 30 days of the start)", title_justify="left")
    for col in ("campaign", "exposed", "control", "bought (exp / ctl)", "redeemed", "uplift", "claim"):
        table.add_column(col, justify="left" if col in ("campaign", "claim") else "right")
    for r in result.table.to_dict(orient="records"):
        rates = (
            f"{r['bought_exposed']:.1%} / {r['bought_control']:.1%}"
            if r["control"]
            else f"{r['bought_exposed']:.1%} / -"
        )
        uplift = f"{r['uplift']:+.1%}" if r["uplift"] == r["uplift"] else "-"
        redeemed = f"{r['redeemed']:.1%}" if r["redeemed"] == r["redeemed"] else "-"
        table.add_row(str(r["campaign_id"]), str(r["exposed"]), str(r["control"]), rates, redeemed, uplift, r["claim"])
    console.print(table)
    console.print(summary(result.table))
    console.print(f"logged: MLflow run {result.run_id} (nothing registered)")


def _versus(row: dict[str, Any]) -> str:
    """A row's recall@10 difference to the best baseline and its interval ("-" where there is none)."""
    diff = row.get("recall@10_diff", float("nan"))
    if diff != diff:
        return "-"
    return (
        f"{diff:+.4f} [{row['recall@10_diff_low']:+.4f}, {row['recall@10_diff_high']:+.4f}] vs {row['best_baseline']}"
    )


def _print_last_basket(summary: Any, label: str, task: str = "next basket") -> None:
    """The protocol-(b) (or (c)) table: means over seeds, and the difference to the best baseline with its interval."""
    table = Table(title=f"{task}, {label}; k=10", title_justify="left")
    figures = ("recall@10", "ndcg@10", "phr@10", "repeat_recall@10", "explore_recall@10")
    for col in ("model", *figures, "vs best baseline (95% CI)"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in summary.to_dict(orient="records"):
        table.add_row(str(r["model"]), *(f"{r[c]:.4f}" for c in figures), _versus(r))
    console.print(table)
    if "best_baseline" in summary.columns and len(summary):
        console.print(f"best baseline by recall@10: {summary['best_baseline'].iloc[0]}")


@train_app.command("recs")
def train_recs(
    data: Annotated[Path, typer.Option(help="Data home (after `kairos ingest`).")] = DEFAULT_HOME,
    tracking_uri: Annotated[
        str, typer.Option(envvar="KAIROS_TRACKING_URI", help="MLflow tracking URI.")
    ] = DEFAULT_TRACKING,
    test_days: Annotated[int, typer.Option(min=7, help="Days at the end of the data held out for evaluation.")] = 90,
    margin: Annotated[float, typer.Option(min=0.0, help="recall@10 gain needed to replace the champion.")] = 0.0,
    as_of: _AS_OF_OPT = None,
    test_share: Annotated[
        float, typer.Option(min=0.01, max=0.99, help="Export without dates: the share of baskets held out at random.")
    ] = 0.2,
    protocol: Annotated[
        str,
        typer.Option(
            help="temporal (the champion's evaluation) or last-basket: also hold out the last basket of a random "
            "share of the customers, several seeds (next basket; dates optional, customers required)."
        ),
    ] = "temporal",
    test_users: Annotated[
        float, typer.Option(min=0.01, max=0.99, help="--protocol last-basket: the share of customers held out.")
    ] = 0.2,
    seeds: Annotated[int, typer.Option(min=1, help="--protocol last-basket: splits, seeds 0 .. seeds - 1.")] = 3,
) -> None:
    """Evaluate recommenders against baselines on a temporal split (a random split of baskets for an export
    without dates), serve per slot Kairos's model where it beats the best baseline (else that baseline),
    refit, register the bundle. With --protocol last-basket, next basket is also judged with each test
    customer's last basket held out, and basket completion on those baskets (customer known, anonymous);
    those then decide what is served."""
    from training.recs import train_recs as run

    try:
        when = _as_of(as_of)
        with _progress("train recs") as tick:
            result = run(
                data,
                tracking_uri,
                test_days=test_days,
                margin=margin,
                as_of=when,
                test_share=test_share,
                protocol=protocol,
                test_users=test_users,
                seeds=seeds,
                progress=tick,
            )
    except (KairosError, ValueError) as exc:
        raise _fail(exc) from exc
    table = Table(title=f"evaluation ({result.split}; k=10)", title_justify="left")
    for col in ("model", "task", "recall@10", "ndcg@10", "mrr", "coverage", "recall vs best baseline (95% CI)"):
        table.add_column(col, justify="left" if col in ("model", "task") else "right")
    figures = ("recall@10", "ndcg@10", "mrr", "coverage")
    for r in result.table.to_dict(orient="records"):
        shown = [f"{r[c]:.4f}" for c in figures] if r["evaluated"] else ["not evaluated", "", "", ""]
        table.add_row(r["model"], r["task"], *shown, _versus(r))
    console.print(table)
    skipped = result.table[~result.table["evaluated"].astype(bool)].drop_duplicates("note")
    for note in skipped["note"]:
        console.print(f"{', '.join(result.table.loc[result.table['note'] == note, 'model'].unique())}: {note}")
    if result.last_basket is not None:
        _print_last_basket(result.last_basket, result.last_basket_label)
    for mode, summary in result.completion.items():  # protocol (c), with --protocol last-basket
        _print_last_basket(summary, f"the same held-out baskets, {mode}", "basket completion")
    if result.explore_check:
        console.print(result.explore_check)
    if result.next_basket_choice:
        choice = result.next_basket_choice
        console.print(f"next basket: {choice['chosen']} chosen on the {choice['evidence']} ({choice['why']})")
    for slot, chosen in result.served.items():
        console.print(f"serving {slot.replace('_', ' ')}: {chosen['chosen']} ({chosen['evidence']}: {chosen['why']})")
    for part, why in result.skipped_parts.items():
        console.print(f"bundle: {part} left out ({why})")
    reg = result.registration
    console.print(f"registered: recs v{reg.version} -> @{reg.alias} ({reg.reason})" if reg else "not registered")


@app.command()
def score(
    all_customers: Annotated[bool, typer.Option("--all", help="Score every customer of the latest snapshot.")] = False,
    data: _DATA_OPT = DEFAULT_HOME,
    tracking_uri: _TRACKING_OPT = DEFAULT_TRACKING,
    out: Annotated[Path, typer.Option(help="Parquet file to write.")] = Path("var/scores.parquet"),
    batch_size: Annotated[int, typer.Option(min=1_000, help="Customers per batch (memory stays flat).")] = 100_000,
    alias: Annotated[str, typer.Option(help="Registry alias of the models to use.")] = "champion",
    compiled: Annotated[
        bool,
        typer.Option(
            "--compiled/--no-compiled",
            help="Score with lleaves-compiled models (built once per version into DATA/compiled, checked "
            "against LightGBM) or with LightGBM itself.",
        ),
    ] = True,
    reasons: Annotated[
        bool, typer.Option("--reasons", help="Add each model's top 3 drivers in words (slower: TreeSHAP).")
    ] = False,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Score the snapshot built as of this date (`kairos features build --as-of`, same date) instead "
            "of the latest: what the models say of the customers as they were then.",
        ),
    ] = None,
    now: Annotated[
        str | None,
        typer.Option(
            "--now",
            help="Score as of this instant (ISO 8601 with a timezone; one clock, docs/features.md): the snapshot "
            "read at it by the online store's rules, as POST /v1/scores with the same now. Default: the "
            "snapshot's as-of.",
        ),
    ] = None,
    consent: Annotated[
        bool,
        typer.Option(
            "--consent",
            help="Add consent_<channel> (true/false) for every consent channel and `advertising`, as of the snapshot.",
        ),
    ] = False,
    policy: _POLICY_OPT = None,
    channel: Annotated[
        bool,
        typer.Option(
            "--channel",
            help="Add preferred_channel: the consented channel the sendtime bundle ranks first (and the consents).",
        ),
    ] = False,
    send_slots: Annotated[
        bool,
        typer.Option(
            "--send-slots",
            help="Add send_at_<channel>: the best slot within a day of the snapshot, outside quiet hours, on "
            "consented channels only.",
        ),
    ] = False,
    offers: Annotated[
        Path | None,
        typer.Option(
            "--offers",
            help="An offer catalogue (YAML): add each customer's next-best offer under it (offer_decision, offer_id, "
            "offer_channel, offer_expected_profit, offer_reason), on consented channels only.",
        ),
    ] = None,
) -> None:
    """The nightly full-base export: every champion's probability and band, P(alive), CLV and segments,
    keyed by customer_key with the retailer's own ids beside it (customer_id: the primary; customer_ids: all)."""
    if not all_customers:
        console.print("score needs --all (the full-base export); single customers are served by the API")
        raise typer.Exit(code=2)
    from batch.score import score_all

    try:
        _dated(data, "kairos score")
        when = _as_of(as_of)
        instant = datetime.fromisoformat(now) if now else None
        if instant is not None and instant.tzinfo is None:
            raise ValueError(f"--now: give a timezone (e.g. {now}Z), got {now!r}")
        with _progress("score --all") as tick:
            result = score_all(
                data,
                tracking_uri,
                out,
                batch_size=batch_size,
                alias=alias,
                progress=tick,
                compiled=compiled,
                reasons=reasons,
                as_of=when,
                now=instant,
                consent=consent,
                policy=_policy(policy),
                channel=channel,
                send_slots=send_slots,
                offers=offers,
            )
    except (KairosError, ValueError, OSError) as exc:
        raise _fail(exc) from exc
    _summary(
        "full-base scores",
        [
            ("customers", f"{result.customers:,}"),
            ("seconds", f"{result.seconds:.2f}"),
            ("customers per second", f"{result.per_second:,.0f}"),
            ("models", ", ".join(f"{k} v{v}" for k, v in result.models.items()) or "none"),
            ("not in the registry", ", ".join(result.missing) or "-"),
            ("engines", ", ".join(f"{k}: {v}" for k, v in result.engines.items()) or "-"),
            ("compiling (not in seconds)", f"{result.compile_seconds:.1f} s"),
            ("written", str(result.path)),
        ],
    )


audience_app = typer.Typer(
    help="Audiences: the customers for whom a condition holds, scored as the nightly export scores them.",
    no_args_is_help=True,
)
app.add_typer(audience_app, name="audience")
_CONDITION_ARG = Annotated[
    str,
    typer.Argument(
        help='A condition in the eligibility language, e.g. "churn > 0.6 and consent_email and lifecycle in '
        "['at_risk', 'lapsed']\" (docs/audiences.md lists the names)."
    ),
]
_COMPILED_OPT = Annotated[
    bool, typer.Option("--compiled/--no-compiled", help="Score with the lleaves builds (as `kairos score --all`).")
]


def _audience_scan(data: Path, tracking_uri: str, condition: str, as_of: str | None, compiled: bool, **kw: Any) -> Any:
    import os

    from batch.audience import AudienceScan

    _dated(data, "kairos audience")
    policy = os.environ.get("KAIROS_POLICY_FILE")  # band cuts as the API applies them
    return AudienceScan(
        data,
        tracking_uri,
        condition,
        as_of=_as_of(as_of),
        compiled=compiled,
        policy=_policy(Path(policy) if policy else None),
        **kw,
    )


def _print_answer(answer: Any, title: str) -> None:
    rows: list[tuple[str, Any]] = [
        ("condition", answer.condition),
        ("instant (the snapshot's)", answer.instant.isoformat()),
        ("customers read", f"{answer.scanned:,}"),
        ("members", f"{answer.members:,}"),
        ("models", ", ".join(f"{k} v{v}" for k, v in answer.models.items()) or "none"),
        ("customers per second", f"{answer.per_second:,.0f}"),
    ]
    if answer.written is not None:
        rows.append(("rows written", f"{answer.written.rows:,}"))
        for reason, n in answer.written.excluded.items():
            rows.append((f"left out: {reason}", f"{n:,}"))
    if answer.path is not None:
        rows.append(("written", str(answer.path)))
    _summary(title, rows)


@audience_app.command("count")
def audience_count(
    condition: _CONDITION_ARG,
    data: _DATA_OPT = DEFAULT_HOME,
    tracking_uri: _TRACKING_OPT = DEFAULT_TRACKING,
    as_of: _AS_OF_OPT = None,
    sample: Annotated[int, typer.Option(min=0, max=1_000, help="Members to show (a fixed, uniform sample).")] = 10,
    compiled: _COMPILED_OPT = True,
) -> None:
    """How many customers the condition holds for, with a sample (retailer's ids on stdout as JSON lines)."""
    try:
        answer = _audience_scan(data, tracking_uri, condition, as_of, compiled).run(sample_size=sample)
    except (KairosError, ValueError, OSError) as exc:
        raise _fail(exc) from exc
    _print_answer(answer, "audience")
    for row in answer.sample:
        typer.echo(json.dumps(row, default=str))


@audience_app.command("list")
def audience_list(
    condition: _CONDITION_ARG,
    data: _DATA_OPT = DEFAULT_HOME,
    tracking_uri: _TRACKING_OPT = DEFAULT_TRACKING,
    as_of: _AS_OF_OPT = None,
    compiled: _COMPILED_OPT = True,
) -> None:
    """Every member on stdout, one CSV line each (customer_id, customer_key, the columns the condition names)."""
    import sys

    from features.audience import AudienceFormat

    try:
        scan = _audience_scan(data, tracking_uri, condition, as_of, compiled)
        with tempfile_path(".csv") as path:
            answer = scan.run(out=path, fmt=AudienceFormat.CSV, sample_size=0)
            with path.open("rb") as f:
                while block := f.read(1 << 16):
                    sys.stdout.buffer.write(block)
    except (KairosError, ValueError, OSError) as exc:
        raise _fail(exc) from exc
    answer.path = None
    _print_answer(answer, "audience")


@audience_app.command("export")
def audience_export(
    condition: _CONDITION_ARG,
    out: Annotated[Path, typer.Option(help="File to write.")],
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="csv, parquet, or an upload file: google, meta, yandex, vk_email, vk_phone (hashed contacts of "
            "members with consent_advertising only).",
        ),
    ] = "parquet",
    data: _DATA_OPT = DEFAULT_HOME,
    tracking_uri: _TRACKING_OPT = DEFAULT_TRACKING,
    as_of: _AS_OF_OPT = None,
    compiled: _COMPILED_OPT = True,
) -> None:
    """Write the members to a file (streamed batch by batch)."""
    from features.audience import AD_FORMATS, AudienceFormat

    try:
        kind = AudienceFormat(fmt)
    except ValueError:
        raise _fail(ValueError(f"--format {fmt!r}: one of {', '.join(f.value for f in AudienceFormat)}")) from None
    try:
        scan = _audience_scan(data, tracking_uri, condition, as_of, compiled, consent=kind in AD_FORMATS)
        out.parent.mkdir(parents=True, exist_ok=True)
        answer = scan.run(out=out, fmt=kind, sample_size=0)
    except (KairosError, ValueError, OSError) as exc:
        raise _fail(exc) from exc
    _print_answer(answer, f"audience ({kind.value})")


@audience_app.command("save")
def audience_save(
    name: Annotated[str, typer.Argument(help="The audience's name (lower case letters, digits, - and _).")],
    condition: _CONDITION_ARG,
    description: Annotated[str, typer.Option(help="What the audience is for.")] = "",
    data: _DATA_OPT = DEFAULT_HOME,
    tracking_uri: _TRACKING_OPT = DEFAULT_TRACKING,
    as_of: _AS_OF_OPT = None,
    compiled: _COMPILED_OPT = True,
) -> None:
    """Save an audience by name and run it: DATA/audiences/NAME/ keeps the definition and its members."""
    from batch.audience import run_saved

    try:
        _dated(data, "kairos audience")
        definition, answer = run_saved(
            data,
            tracking_uri,
            name,
            condition=condition,
            description=description,
            as_of=_as_of(as_of),
            compiled=compiled,
        )
    except (KairosError, ValueError, OSError) as exc:
        raise _fail(exc) from exc
    _print_answer(answer, f"audience {definition.name} (saved, run {len(definition.runs)})")


@audience_app.command("run")
def audience_run(
    name: Annotated[str, typer.Argument(help="A saved audience.")],
    data: _DATA_OPT = DEFAULT_HOME,
    tracking_uri: _TRACKING_OPT = DEFAULT_TRACKING,
    as_of: _AS_OF_OPT = None,
    compiled: _COMPILED_OPT = True,
) -> None:
    """Run a saved audience again (on the latest snapshot, or as of a date); its members are replaced."""
    from batch.audience import run_saved

    try:
        _dated(data, "kairos audience")
        definition, answer = run_saved(data, tracking_uri, name, as_of=_as_of(as_of), compiled=compiled)
    except (KairosError, ValueError, OSError) as exc:
        raise _fail(exc) from exc
    _print_answer(answer, f"audience {definition.name} (run {len(definition.runs)})")


@contextmanager
def tempfile_path(suffix: str) -> Iterator[Path]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp) / f"audience{suffix}"


@app.command("compile")
def compile_models(
    data: _DATA_OPT = DEFAULT_HOME,
    tracking_uri: _TRACKING_OPT = DEFAULT_TRACKING,
    out: Annotated[
        Path | None, typer.Option(help="Folder of the builds (default DATA/compiled, where the API looks).")
    ] = None,
    alias: Annotated[str, typer.Option(help="Registry alias of the models to compile.")] = "champion",
) -> None:
    """Compile the propensity champions with lleaves, each checked against LightGBM on real rows; the API and
    score --all then use them. A build step (tens of seconds a model), run after training."""
    from batch.score import compile_champions

    try:
        with _progress("compile") as tick:
            engines, seconds = compile_champions(data, tracking_uri, out, alias=alias, progress=tick)
    except (KairosError, ValueError, OSError) as exc:
        raise _fail(exc) from exc
    _summary("compiled models", [*engines.items(), ("seconds", f"{seconds:.1f}")])


_KIND_OPT = Annotated[
    str | None,
    typer.Option(
        help="The model's kind, to verify it as such: propensity, recs, clv, value, sendtime, offers, or bundle "
        "(any folder bundle: files verified only). Default: from the name (recs, clv, value, sendtime and "
        "offers are their own kinds; any other name is a propensity model)."
    ),
]


def _kind(kind: str | None) -> str | None:
    from bundles.kinds import KINDS

    if kind is not None and kind not in KINDS:
        console.print(f"[bold red]error:[/] --kind must be one of {', '.join(KINDS)}, not {kind!r}")
        raise typer.Exit(code=2)
    return kind


@app.command()
def promote(
    name: Annotated[str, typer.Argument(help="Registered model name, e.g. churn or recs.")],
    version: Annotated[str, typer.Argument(help="The version to promote.")],
    alias: Annotated[str, typer.Option(help="Alias to move.")] = "champion",
    tracking_uri: Annotated[
        str, typer.Option(envvar="KAIROS_TRACKING_URI", help="MLflow tracking URI.")
    ] = DEFAULT_TRACKING,
    kind: _KIND_OPT = None,
) -> None:
    """Move an alias to a version by hand, only if its files and metadata verify and it loads (the
    decision is recorded on the version)."""
    from bundles.kinds import promote as run

    try:
        reg = run(tracking_uri, name, version, alias, _kind(kind))
    except KairosError as exc:
        raise _fail(exc) from exc
    console.print(f"{reg.name} v{reg.version} -> @{reg.alias} ({reg.reason})")


@app.command()
def rollback(
    name: Annotated[str, typer.Argument(help="Registered model name, e.g. churn or recs.")],
    tracking_uri: Annotated[
        str, typer.Option(envvar="KAIROS_TRACKING_URI", help="MLflow tracking URI.")
    ] = DEFAULT_TRACKING,
    kind: _KIND_OPT = None,
) -> None:
    """Give @champion back to the version that held it before the current one, if that one verifies."""
    from bundles.kinds import rollback as run

    try:
        reg = run(tracking_uri, name, _kind(kind))
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
    dev: Annotated[
        bool, typer.Option("--dev", help="Development: the demo key (every scope) when no keys are configured.")
    ] = False,
) -> None:
    """Serve the API (uvicorn), printing example calls. Production unless --dev: keys required."""
    import os

    import uvicorn
    from pydantic import ValidationError

    from serving.settings import Environment, Settings

    # --dev is the one way to serve in development: an environment variable left over from a trial must not
    # quietly open a production start to the public demo key
    if not dev and os.environ.get("KAIROS_ENVIRONMENT", "").strip().lower() == Environment.DEVELOPMENT:
        raise _fail(ValueError("KAIROS_ENVIRONMENT=development: pass --dev to serve in development"))
    os.environ["KAIROS_ENVIRONMENT"] = Environment.DEVELOPMENT if dev else Environment.PRODUCTION
    os.environ["KAIROS_DATA_HOME"] = str(data)
    os.environ["KAIROS_TRACKING_URI"] = tracking_uri
    try:
        Settings()  # type: ignore[call-arg]  # refused here, with the reason, rather than in every worker
    except ValidationError as exc:
        reasons = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise _fail(ValueError(f"settings refused: {reasons}")) from None
    # real ids only on a development home: a production terminal (and its scrollback, CI logs) gets none
    example = _example_ids(data) if dev else ["CUSTOMER_ID_1", "CUSTOMER_ID_2", "unknown-id"]
    base = f"http://{host}:{port}"
    console.print("[bold]Kairos API[/] — try:")
    # plain echo, never wrapped: these lines are for copy and paste
    typer.echo(f"  curl -s {base}/health/ready")
    # the demo key only in development; production refuses it (docs/operations.md)
    key = "-H 'X-API-Key: kairos-demo-key'" if dev else '-H "X-API-Key: $KAIROS_KEY"'
    typer.echo(
        f"  curl -s -X POST {base}/v1/scores {key} -H 'content-type: application/json' "
        f"-d '{json.dumps({'customer_ids': example, 'reasons': True})}'"
    )
    cart = f"-d '{json.dumps({'customer_id': example[0], 'k': 5})}'"
    typer.echo(f"  curl -s -X POST {base}/v1/recommendations/customer {key} -H 'content-type: application/json' {cart}")
    typer.echo(f"  open {base}/docs for the OpenAPI documentation" + ("" if dev else " (needs a key in production)"))
    if Settings().console:  # type: ignore[call-arg]  # the marketer's console (docs/console.md)
        sign_in = "the demo key kairos-demo-key" if dev else "a key of campaign or admin scope"
        typer.echo(f"  console: open {base}/console and sign in with {sign_in}")
    # access_log=False: uvicorn's access line prints the raw path (/v1/customers/<id>/...); the app logs its
    # own, with the route template (serving/middleware.py)
    uvicorn.run(
        "serving.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        access_log=False,
    )


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


@app.command()
def erase(
    customer_id: Annotated[
        str,
        typer.Option(
            help="The source customer id to erase; '-' reads it from stdin (keeps it out of shell history and ps)."
        ),
    ],
    data: _DATA_OPT = DEFAULT_HOME,
    tracking_uri: _TRACKING_OPT = DEFAULT_TRACKING,
    model_cache: Annotated[
        list[Path] | None,
        typer.Option(help="A replica's model cache folder (KAIROS_MODEL_CACHE_DIR); repeat for several."),
    ] = None,
    redis_url: Annotated[
        str | None, typer.Option(envvar="KAIROS_REDIS_URL", help="Redis of the online store and send log, if used.")
    ] = None,
    prefix: Annotated[str, typer.Option(envvar="KAIROS_REDIS_PREFIX", help="Key prefix the API uses.")] = "kairos",
) -> None:
    """Erase one customer (GDPR art. 17, 152-FZ art. 21) from the data home, the registry's model versions,
    the model caches and Redis; tombstone them against later ingests. Prints the receipt (no personal data).

    Running API replicas answer the customer as unknown at once (tombstones) and load the re-signed model
    versions at their next poll. Exit code 1 when something still holds the customer (see ``residue``).
    """
    import sys
    from datetime import timedelta

    from bundles.erasure import erase_offline
    from features.erasure import write_receipt

    if customer_id == "-":
        customer_id = sys.stdin.readline().strip()
    try:
        offline = erase_offline(data, customer_id, tracking_uri=tracking_uri, cache_dirs=list(model_cache or []))
        receipt = offline.receipt
        errors: list[str] = []
        if redis_url:
            from features.online import OnlineStoreUnavailable, RedisOnlineStore
            from serving.contact import SharedSends

            keys, ids = list(offline.person.keys), list(offline.person.ids)
            try:
                store = RedisOnlineStore.connect(redis_url, prefix, timeout=30, connect_timeout=5)
                receipt["online_store"] = {"backend": "redis", "entries": store.erase(keys, ids)}
                receipt["send_log"] = {"shared_keys": SharedSends(store.client, prefix, timedelta(0)).erase(keys)}
            except OnlineStoreUnavailable:
                errors.append("redis unavailable: run the erasure again")
        receipt["errors"] = errors
        receipt["complete"] = offline.complete and not errors
        path = write_receipt(data, receipt)
    except (KairosError, ValueError, OSError) as exc:
        raise _fail(exc) from exc
    typer.echo(json.dumps(receipt, indent=2, default=str))
    rows = sum(r["rows"] for r in receipt["data_home"])
    versions = sum(bool(v["resigned"]) for v in receipt["registry"])
    console.print(
        f"erasure {receipt['erasure_id']}: {rows:,} rows from {len(receipt['data_home'])} files, "
        f"{versions} model version(s) re-signed; receipt {path}"
    )
    if not receipt["complete"]:
        console.print("[bold red]incomplete:[/] something still holds the customer (see residue and errors)")
        raise typer.Exit(code=1)


# --- operations: monitor, retrain when due, the nightly pipeline (ops/; docs/monitoring.md) -----------------


@app.command()
def monitor(
    data: _DATA_OPT = DEFAULT_HOME,
    tracking_uri: _TRACKING_OPT = DEFAULT_TRACKING,
    out: Annotated[
        Path | None, typer.Option(help="Folder of monitor.json and monitor.html (default DATA/monitoring).")
    ] = None,
    model: Annotated[
        list[str] | None, typer.Option("--model", help="Monitor only this champion (repeatable; default all).")
    ] = None,
    realised: Annotated[
        bool,
        typer.Option(
            "--realised/--no-realised",
            help="Backtest each champion on the last matured window beside the baselines (the slow part).",
        ),
    ] = True,
    scores_previous: Annotated[
        Path | None, typer.Option(help="A previous `score --all` export (default: the second latest in DATA/exports).")
    ] = None,
    scores_current: Annotated[
        Path | None, typer.Option(help="The current `score --all` export (default: the latest in DATA/exports).")
    ] = None,
) -> None:
    """Feature drift of the latest snapshot against each champion's training rows, realised performance on the
    last matured window, score drift between the two latest exports; writes JSON + HTML, logs to MLflow, and
    says what needs attention. Exit 1 when something does."""
    from bundles.propensity import MODEL_NAMES
    from ops.monitor import run_monitor

    try:
        if (scores_previous is None) != (scores_current is None):
            raise ValueError("give both --scores-previous and --scores-current, or neither")
        report = run_monitor(
            data,
            tracking_uri,
            out,
            models=model or list(MODEL_NAMES),
            realised=realised,
            previous_scores=scores_previous,
            current_scores=scores_current,
        )
    except (KairosError, ValueError, OSError) as exc:
        raise _fail(exc) from exc
    table = Table(title=f"monitor: snapshot as of {report.summary['snapshot_as_of']}", title_justify="left")
    for col in (
        "model",
        "version",
        "age (days)",
        "PSI max",
        "drifted",
        "realised ROC-AUC",
        "recorded",
        "best baseline",
    ):
        table.add_column(col, justify="left" if col in ("model", "best baseline") else "right")
    for name, m in report.summary["models"].items():
        drift, perf = m["drift"] or {}, m["performance"] or {}
        auc = (perf.get("roc_auc") or {}).get("kairos")
        best = perf.get("best_baseline")
        table.add_row(
            name,
            m["version"],
            f"{m['age_days']:.1f}",
            f"{drift['psi_max']:.3f}" if drift else "-",
            f"{drift['features_major']} major, {drift['features_moderate']} moderate" if drift else "-",
            f"{auc:.3f}" if auc is not None else "-",
            f"{perf['recorded_roc_auc']:.3f}" if perf.get("recorded_roc_auc") is not None else "-",
            f"{best} {perf['roc_auc'][best]:.3f}" if best else "-",
        )
    console.print(table)
    for line in report.attention:
        typer.echo(f"attention: {line}")
    if not report.attention:
        typer.echo("nothing needs attention")
    # plain echo, never wrapped: paths to copy
    typer.echo(f"report {report.html_path}; summary {report.json_path}; seconds {report.summary['seconds']:.1f}")
    if report.attention:
        raise typer.Exit(code=1)


@app.command()
def retrain(
    policy: Annotated[Path, typer.Option("--policy", help="Retrain policy (YAML; docs/monitoring.md).")],
    if_needed: Annotated[
        bool, typer.Option("--if-needed", help="Retrain only the models the policy finds due (required).")
    ] = False,
    data: _DATA_OPT = DEFAULT_HOME,
    tracking_uri: _TRACKING_OPT = DEFAULT_TRACKING,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Decide and say why, train nothing.")] = False,
    realised: Annotated[
        bool, typer.Option("--realised/--no-realised", help="Measure realised performance (backtests).")
    ] = True,
) -> None:
    """Monitor the champions and retrain those whose drift, realised performance or age crosses the policy's
    thresholds, through the usual training job and its champion gate; says why each did or did not."""
    if not if_needed:
        console.print("retrain needs --if-needed (to retrain unconditionally, run `kairos train ...`)")
        raise typer.Exit(code=2)
    from ops.retrain import load_policy, retrain_if_needed

    try:
        _dated(data, "kairos retrain")
        report = retrain_if_needed(data, tracking_uri, load_policy(policy), realised=realised, dry_run=dry_run)
    except (KairosError, ValueError, OSError) as exc:
        raise _fail(exc) from exc
    for decision in report.decisions:
        typer.echo(decision.line())
    if not report.decisions:
        typer.echo("no champion of the policy's models in the registry: nothing to decide")
    typer.echo(f"monitor summary {report.monitor_json}")


@app.command()
def nightly(
    input: Annotated[Path, typer.Option("--input", help="Folder of the new export.")],
    mapping: Annotated[str, typer.Option(help="Mapping YAML path, or a built-in name.")],
    data: _DATA_OPT = DEFAULT_HOME,
    tracking_uri: _TRACKING_OPT = DEFAULT_TRACKING,
    policy: Annotated[
        Path | None, typer.Option("--policy", help="Retrain policy; without it the retrain step is skipped.")
    ] = None,
    redis_url: Annotated[
        str | None,
        typer.Option(envvar="KAIROS_REDIS_URL", help="Publish to this Redis (default: none, the in-process store)."),
    ] = None,
    prefix: Annotated[str, typer.Option(envvar="KAIROS_REDIS_PREFIX", help="Redis key prefix.")] = "kairos",
    skip: Annotated[list[str] | None, typer.Option("--skip", help="A step not to run (repeatable).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Run again even if this export's run finished.")] = False,
    now: Annotated[str | None, typer.Option(help="Ingest's reference time (ISO 8601).")] = None,
    dev: Annotated[bool, typer.Option("--dev", help="Development data: the public pseudonym secret.")] = False,
    realised: Annotated[
        bool, typer.Option("--realised/--no-realised", help="The monitor's backtests of realised performance.")
    ] = True,
) -> None:
    """ingest -> features -> publish -> monitor -> retrain if needed -> compile -> score export, with a run record
    under DATA/nightly; a rerun on the same export resumes at the step that failed."""
    from ops.nightly import NightlyConfig, run_nightly

    try:
        cfg = NightlyConfig(
            data_home=data,
            input_dir=input,
            mapping=mapping,
            tracking_uri=tracking_uri,
            policy=policy,
            redis_url=redis_url,
            redis_prefix=prefix,
            skip=frozenset(skip or ()),
            now=datetime.fromisoformat(now) if now else None,
            pseudonymizer=_pseudonymizer(dev),
            realised=realised,
        )
        run = run_nightly(cfg, force=force)
    except Exception as exc:  # the record holds the failed step; a library's message may quote a value
        said = str(exc) if isinstance(exc, KairosError | ValueError) else "message withheld: it may quote a value"
        typer.echo(f"nightly stopped: {type(exc).__name__}: {said} (rerun to resume at the failed step)")
        raise typer.Exit(code=1) from None
    for step in run.record["steps"]:
        typer.echo(
            f"{step['name']:<9} {step['status']:<8} {step.get('seconds', 0):>8.1f} s  {step.get('detail') or ''}"
        )
    if run.resumed_from:
        typer.echo(f"resumed from {run.resumed_from}")
    elif not run.ran:
        typer.echo("this export's run had finished: nothing to do (--force runs it again)")
    typer.echo(f"run record {run.record_path}")


campaign_app = typer.Typer(help="Campaign plans and their incrementality reports.", no_args_is_help=True)
app.add_typer(campaign_app, name="campaign")


def _ids_file(path: Path | None) -> list[str] | None:
    """Customer ids from a file: one per line, or a CSV / Parquet with a customer_id column."""
    if path is None:
        return None
    import pandas as pd

    if path.suffix == ".parquet":
        return pd.read_parquet(path, columns=["customer_id"])["customer_id"].astype(str).tolist()
    if path.suffix == ".csv":
        return pd.read_csv(path, dtype={"customer_id": str})["customer_id"].astype(str).tolist()
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@campaign_app.command("plan")
def campaign_plan(
    catalogue: Annotated[Path, typer.Option(help="Offer catalogue YAML.")],
    channels: Annotated[str, typer.Option(help="Channels the campaign may use, e.g. email or email,sms.")],
    starts_at: Annotated[str, typer.Option(help="First send instant, ISO 8601 with a zone (2026-03-01T09:00Z).")],
    ends_at: Annotated[str, typer.Option(help="No send at or after this instant (ISO 8601 with a zone).")],
    out: Annotated[Path, typer.Option(help="Folder for plan.csv|parquet and plan.json.")],
    customers: Annotated[
        Path | None, typer.Option(help="Customer ids: a text file (one a line) or CSV/Parquet with customer_id.")
    ] = None,
    budget: Annotated[float | None, typer.Option(help="Expected cost the offers may spend.")] = None,
    name: Annotated[str, typer.Option(help="The campaign's name.")] = "campaign",
    offers_only: Annotated[bool, typer.Option(help="Send only to customers given an offer.")] = False,
    fmt: Annotated[str, typer.Option("--format", help="csv or parquet.")] = "csv",
    data: Annotated[Path, typer.Option(help="Data home.")] = DEFAULT_HOME,
    tracking_uri: Annotated[
        str | None, typer.Option(help="MLflow tracking URI (offers and sendtime champions); none: rules.")
    ] = None,
) -> None:
    """Plan a campaign for a list of customers (default: the whole base): per customer the channel (allowed
    and consented only), send time, offer or none, control group and reasons; totals in plan.json."""
    from pydantic import ValidationError

    from batch.campaign import plan_from_home, write_plan
    from models.decisioning.offers import load_catalogue
    from models.decisioning.plan import CampaignSpec, as_sequence

    try:
        spec = CampaignSpec(
            name=name,
            channels=as_sequence(channels),  # type: ignore[arg-type]  # validated into Channel values
            starts_at=datetime.fromisoformat(starts_at.replace("Z", "+00:00")),
            ends_at=datetime.fromisoformat(ends_at.replace("Z", "+00:00")),
            budget=budget,
            send_without_offer=not offers_only,
        )
    except (ValidationError, ValueError) as exc:
        raise _fail(KairosError(f"campaign: {exc}")) from exc
    try:
        with _progress("campaign plan") as tick:
            plan, _ = plan_from_home(
                data,
                load_catalogue(catalogue),
                spec,
                customer_ids=_ids_file(customers),
                tracking_uri=tracking_uri,
                progress=lambda share: tick("planning", share),
            )
        items, totals = write_plan(plan, out, fmt)
    except KairosError as exc:
        raise _fail(exc) from exc
    t = plan.totals
    _summary(
        f"campaign {spec.name}",
        [
            ("customers", t["customers"]),
            ("planned sends", t["planned_sends"]),
            ("sends by channel", t["sends_by_channel"]),
            ("offers", t["offers"]),
            ("expected cost", f"{t['expected_cost']:.2f}"),
            ("expected incremental profit", f"{t['expected_incremental_profit']:.2f}"),
            ("control group", t["control_size"]),
            ("unknown ids", len(t["unknown_customer_ids"])),
            ("models", "; ".join(t["models"])),
        ],
    )
    console.print(f"wrote {items} and {totals}")


@campaign_app.command("report")
def campaign_report(
    out: Annotated[Path, typer.Option(help="Folder for report.json, report.csv and report.html.")],
    plan: Annotated[
        Path | None, typer.Option(help="A plan this command wrote (treated = its sends, control = its control).")
    ] = None,
    campaign: Annotated[
        list[str] | None, typer.Option(help="Campaign id(s) of the message history (default: all).")
    ] = None,
    horizon_days: Annotated[float, typer.Option(help="Outcome window after each send, days.")] = 30.0,
    catalogue: Annotated[
        Path | None, typer.Option(help="Offer catalogue YAML (margin rate and costs, for incremental profit).")
    ] = None,
    segment: Annotated[str, typer.Option(help="Segment column of the snapshot to break down by.")] = "lifecycle",
    data: Annotated[Path, typer.Option(help="Data home.")] = DEFAULT_HOME,
) -> None:
    """Incrementality of past campaigns: treated vs control conversion and revenue per campaign, offer and
    segment, lift with intervals, incremental profit and a verdict in words; JSON, CSV and an HTML page."""
    from batch.campaign import report_from_home
    from models.decisioning.incrementality import render_html
    from models.decisioning.offers import load_catalogue

    try:
        report = report_from_home(
            data,
            plan_file=plan,
            campaign_ids=campaign,
            horizon_days=horizon_days,
            catalogue=load_catalogue(catalogue) if catalogue else None,
            segment_column=segment,
        )
    except KairosError as exc:
        raise _fail(exc) from exc
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report.to_dict(), indent=2, default=str), encoding="utf-8")
    report.table.to_csv(out / "report.csv", index=False)
    (out / "report.html").write_text(render_html(report), encoding="utf-8")
    pooled = report.table[(report.table["campaign_id"] == "all") & (report.table["segment"] == "all")]
    for row in pooled.itertuples(index=False):
        console.print(f"{row.offer_id}: {row.verdict}")
    console.print(f"wrote {out / 'report.html'} ({len(report.table)} rows)")


@app.command()
def lookalike(
    seed: Annotated[Path, typer.Option(help="Seed customer ids: a text file (one a line) or CSV/Parquet.")],
    out: Annotated[Path, typer.Option(help="CSV of the lookalike audience.")],
    size: Annotated[int | None, typer.Option(help="Audience size (most alike first).")] = None,
    threshold: Annotated[float | None, typer.Option(help="Lowest similarity score kept.")] = None,
    method: Annotated[str, typer.Option(help="pu (positive-unlabelled) or embedding (nearest neighbours).")] = "pu",
    data: Annotated[Path, typer.Option(help="Data home.")] = DEFAULT_HOME,
) -> None:
    """Rank the base by similarity to a seed list of customers (the seed left out), with reasons in words."""
    from batch.campaign import lookalike_from_home

    ids = _ids_file(seed) or []
    try:
        ranked, unknown = lookalike_from_home(data, ids, method=method, size=size, threshold=threshold)
    except KairosError as exc:
        raise _fail(exc) from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    ranked.to_csv(out, index=False)
    console.print(f"{len(ranked)} lookalike customers -> {out}; {len(unknown)} seed id(s) unknown to the data")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
