"""The contract every estimator in :mod:`models` keeps (``models.base``; STYLE principle 1).

Parametrised over :data:`tests.models.estimators.CASES`, one tiny fit of each estimator with
non-default parameters; :func:`test_every_estimator_is_in_the_suite` fails when an estimator class is
added to ``models`` without a case, or written without the :class:`~models.base.Estimator` base.
"""

from __future__ import annotations

import inspect
import pkgutil
from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import models
from models.base import Estimator, NotFittedError
from models.recs.base import Recommender
from tests.models.estimators import CASES, X_VALID, Case


def _classes_in_models() -> list[type]:
    """Every class defined in a module of the ``models`` package."""
    found = []
    for info in pkgutil.walk_packages(models.__path__, "models."):
        module = import_module(info.name)
        found += [c for _, c in inspect.getmembers(module, inspect.isclass) if c.__module__ == module.__name__]
    return found


def _is_concrete_estimator(cls: type) -> bool:
    return (
        issubclass(cls, Estimator)
        and cls is not Estimator
        and not cls.__name__.startswith("_")
        and not inspect.isabstract(cls)
    )


def test_every_estimator_is_in_the_suite() -> None:
    classes = _classes_in_models()
    # the Recommender protocol only describes the interface; it is not a model
    has_fit = [c for c in classes if callable(getattr(c, "fit", None)) and c is not Recommender]
    without_base = sorted(c.__qualname__ for c in has_fit if not issubclass(c, Estimator))
    assert not without_base, f"these classes fit but are not models.base.Estimator subclasses: {without_base}"
    missing = sorted(
        c.__qualname__ for c in classes if _is_concrete_estimator(c) and c not in {case.cls for case in CASES.values()}
    )
    assert not missing, f"add a case for these estimators to tests/models/estimators.py: {missing}"


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> Case:
    return CASES[request.param]


def _signature(cls: type) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(cls).parameters)


def test_init_only_stores_its_arguments(case: Case) -> None:
    params = case.params()
    model = case.cls(**params)
    signature = _signature(case.cls)
    assert set(vars(model)) == set(signature), "__init__ must store each argument, under its own name, and nothing else"
    for name, parameter in signature.items():
        expected = params.get(name, parameter.default)
        assert vars(model)[name] is expected, f"{name}: stored {vars(model)[name]!r}, was given {expected!r}"


def test_get_params_round_trips_through_the_constructor(case: Case) -> None:
    model = case.make()
    params = model.get_params()
    assert list(params) == list(_signature(case.cls)), "get_params must name exactly the constructor's arguments"
    twin = case.cls(**params)
    assert twin.get_params() == params
    assert case.cls().set_params(**params).get_params() == params


def test_fit_returns_self_learns_into_trailing_underscores_and_leaves_parameters_alone(case: Case) -> None:
    model = case.make()
    before = dict(vars(model))
    assert case.fit(model) is model
    learnt = [k for k in vars(model) if k not in before and not k.startswith("_")]
    assert learnt, "fit learnt nothing into public attributes"
    assert all(k.endswith("_") for k in learnt), f"fitted attributes must end in '_': {learnt}"
    assert all(vars(model)[k] is v for k, v in before.items()), "fit replaced a constructor parameter"
    for name, value in before.items():
        if isinstance(value, Estimator):
            fitted = [k for k in vars(value) if k.endswith("_") and not k.startswith("_")]
            assert not fitted, f"fit fitted the {name} parameter in place ({fitted}); fit a copy"


def test_an_unfitted_model_says_so(case: Case, tmp_path: Path) -> None:
    model = case.make()
    with pytest.raises(NotFittedError, match="not fitted"):
        case.answer(model)
    folder = tmp_path / "artifact"
    with pytest.raises(NotFittedError, match="not fitted"):
        case.save(model, folder)
    assert not folder.exists(), "saving an unfitted model wrote something before failing"


def _assert_same(a: Any, b: Any, where: str = "answer") -> None:
    """Exactly equal, NaN equal to NaN, through arrays, frames, tuples, lists and dicts."""
    assert type(a) is type(b), f"{where}: {type(a)} vs {type(b)}"
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype, where
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def test_two_fits_with_the_same_seed_give_the_same_answer(case: Case) -> None:
    first = case.answer(case.fit(case.make()))
    second = case.answer(case.fit(case.make()))
    _assert_same(first, second)


def test_the_regressor_predicts_values_not_probabilities() -> None:
    regressor = CASES["lgbm_regressor_tweedie"]
    model = regressor.fit(regressor.make())
    assert not hasattr(model, "predict_proba")
    values = model.predict(X_VALID)
    assert values.shape == (len(X_VALID),) and (values >= 0).all() and values.max() > 1.0  # spend, not a share
