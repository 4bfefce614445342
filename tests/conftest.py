"""Shared fixtures: paths to the committed samples, and a fully built home on the real sample."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.figures import FIGURES, SecurityFigures

TESTS = Path(__file__).resolve().parent
ORII_SAMPLE = TESTS / "data" / "online_retail_ii"

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# LightGBM's OpenMP threads spin while waiting; on a busy 2-core machine that made a fit 30x slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(scope="session")
def security_figures() -> SecurityFigures:
    """Where the security battery's tests record their figures (printed as one table at the end)."""
    return FIGURES


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES.rows:
        terminalreporter.section("security battery")
        for line in FIGURES.table():
            terminalreporter.write_line(line)
        FIGURES.write()


def small_data_rules() -> Any:
    """Sufficiency rules for the tests' small samples (production defaults need 500 of each class)."""
    from training.propensity import Sufficiency

    return Sufficiency(min_positives=20, min_negatives=20, min_holdout_per_class=5)


@dataclass(frozen=True)
class BuiltHome:
    home: Path
    tracking_uri: str
    cache: Path


@pytest.fixture(scope="session")
def orii_home(tmp_path_factory: pytest.TempPathFactory) -> BuiltHome:
    """The committed Online Retail II sample, ingested, featurised, and churn's LightGBM model @champion.

    Churn is trained through the gate (training/gate.py). On 300 customers Kairos's model need not beat
    the best baseline, in which case the gate serves that baseline; the LightGBM version is then promoted
    by hand (``kairos promote``, recorded as such), because the tests on this home exercise the serving,
    export, compile and integrity paths of a LightGBM champion. The gate's own outcome is tested in
    tests/training/test_gate.py."""
    from bundles import registry
    from features.ingest import ingest
    from features.mapping import load_mapping
    from features.store import build_snapshot
    from training.propensity import churn_task, train_task

    root = tmp_path_factory.mktemp("orii")
    home = root / "home"
    ingest(ORII_SAMPLE, load_mapping("online_retail_ii"), home, now=datetime(2026, 1, 1, tzinfo=UTC))
    build_snapshot(home)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    # The 300-customer sample is far below the production sufficiency rules; the tests lower them.
    run = train_task(churn_task(), home, uri, sufficiency=small_data_rules())
    assert run.registration is not None
    if run.registration.alias != registry.CHAMPION:
        registry.promote(uri, "churn", run.registration.version)
    return BuiltHome(home, uri, root / "cache")


@dataclass(frozen=True)
class SynthHome:
    raw: Path  # the generated export; planted truth in raw / "truth"
    home: Path  # ingested and featurised (one snapshot)


@pytest.fixture(scope="session")
def synth_home(tmp_path_factory: pytest.TempPathFactory) -> SynthHome:
    """A small synthetic world (1,500 customers, seed 7): generated, ingested, featurised. Read-only."""
    from features.ingest import ingest
    from features.mapping import load_mapping
    from features.store import build_snapshot
    from synth import generate_world

    root = tmp_path_factory.mktemp("synth")
    generate_world(1500, 7, root / "raw")
    ingest(root / "raw", load_mapping("synthetic"), root / "home", now=datetime(2026, 1, 1, tzinfo=UTC))
    build_snapshot(root / "home")
    return SynthHome(root / "raw", root / "home")
