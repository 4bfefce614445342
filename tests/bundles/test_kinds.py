"""Bundle classes: each kind writes what it reads, refuses what it cannot trust, and the one propensity
scorer answers the same through its two entry points (the API's store matrix, the export's own columns)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bundles.base import FolderBundle, Provenance
from bundles.errors import ModelIntegrityError
from bundles.kinds import FOLDER_KINDS, bundle_for, is_propensity
from bundles.propensity import PropensityBundle, PropensityMeta, PropensityModel
from bundles.value import ClvBundle
from models.calibration import ProbabilityCalibrator
from models.churn import LightGBMClassifier
from models.clv import CLV_FIELDS
from models.population import Population


def _provenance(name: str = "m", **extra: object) -> Provenance:
    return Provenance(name, "1", "champion", "run", "sha", None, (), {}, {}, dict(extra))


def test_every_folder_kind_is_one_class_that_writes_and_builds() -> None:
    for kind, cls in FOLDER_KINDS.items():
        assert issubclass(cls, FolderBundle) and cls.kind == kind
        assert callable(getattr(cls, "write", None)), f"{kind} has no writer"
        assert type(bundle_for(kind)) is cls and not is_propensity(kind)
    assert isinstance(bundle_for("churn"), PropensityBundle) and is_propensity("engagement_open_email")


def test_propensity_meta_round_trips_and_refuses_garbage() -> None:
    meta = PropensityMeta(
        features=("a", "b"),
        manifest={"definition_hash": "x"},
        target="churn",
        description="d",
        horizon_days=90,
        calibrator={"method": "platt"},
        bands=(0.2, 0.7),
        base_rate=0.25,
        population=Population("a", 365.0),
        holdout_cutoff="2024-01-01T00:00:00+00:00",
    )
    assert PropensityMeta.from_dict(meta.to_dict()) == meta
    assert PropensityMeta.from_dict({}).bands == (0.3, 0.6)  # an old version without bands: the defaults
    for bad in ({"bands": ["x", 1]}, {"bands": [0.9, 0.1]}, {"population": {"feature": "a"}}):
        with pytest.raises(ModelIntegrityError):
            PropensityMeta.from_dict(bad)
    # the checksum tag changes with any recorded value
    other = PropensityMeta.from_dict({**meta.to_dict(), "base_rate": 0.26})
    assert meta.checksum_tags() != other.checksum_tags()


def test_the_scorer_answers_the_same_from_the_store_and_from_its_own_columns() -> None:
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(600, 3)), columns=["a", "b", "c"]).astype(np.float32)
    y = (x["a"] + rng.normal(size=600) > 0).astype(int)
    model = LightGBMClassifier(seed=0, n_estimators=30, n_jobs=1).fit(x, y)
    calibrator = ProbabilityCalibrator(method="platt", seed=0).fit(model.predict_proba(x), y.to_numpy())
    meta = PropensityMeta(
        features=("a", "b", "c"),
        manifest={},
        target="churn",
        calibrator=calibrator.to_dict(),
        base_rate=0.5,
        population=Population("c", 0.0),
    )
    scorer = PropensityModel.from_parts(model, meta)
    store_features = ["z", "c", "a", "b"]  # the store holds more columns, in another order
    store = np.column_stack([rng.normal(size=len(x)), x["c"], x["a"], x["b"]]).astype(np.float32)
    from_store = scorer.predict(store, store_features)
    from_columns = scorer.calibrate(scorer.raw_matrix(x.to_numpy(np.float32)))
    np.testing.assert_allclose(from_store, from_columns, rtol=0, atol=1e-12)
    np.testing.assert_allclose(from_columns, scorer.score(x), rtol=0, atol=1e-12)
    assert scorer.prior == 0.5 and scorer.engine == "lightgbm"
    assert (scorer.outside(store, store_features) == ~(x["c"].to_numpy() <= 0.0)).all()
    with pytest.raises(ModelIntegrityError, match="lacks feature"):
        scorer.predict(store[:, :2], ["z", "c"])


def test_clv_bundle_reads_what_it_writes_and_refuses_bad_tables(tmp_path: Path) -> None:
    customers = pd.DataFrame({"customer_key": ["k1", "k2"], **{f: [0.5, 0.25] for f in CLV_FIELDS}})
    ClvBundle.write(tmp_path / "ok", {"r": 1.0}, customers)
    table = ClvBundle().build(tmp_path / "ok", _provenance("clv"), None)
    found, values = table.lookup(["k2", "nobody"])
    assert found.tolist() == [True, False] and values["p_alive"][0] == 0.25 and np.isnan(values["p_alive"][1])
    assert table.params == {"r": 1.0}
    broken = customers.assign(p_alive=[0.5, 1.5])
    ClvBundle.write(tmp_path / "bad", {}, broken)
    with pytest.raises(ModelIntegrityError, match="p_alive outside"):
        ClvBundle().build(tmp_path / "bad", _provenance("clv"), None)
    ClvBundle.write(tmp_path / "dup", {}, pd.concat([customers, customers]))
    with pytest.raises(ModelIntegrityError, match="not unique"):
        ClvBundle().build(tmp_path / "dup", _provenance("clv"), None)
