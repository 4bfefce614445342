"""The estimator base on toy estimators: parameters from the signature, set_params, the not-fitted error."""

from __future__ import annotations

from typing import Any

import pytest

from features.errors import KairosError
from models.base import Estimator, NotFittedError, check_fitted


class Leaf(Estimator):
    def __init__(self, depth: int = 3, name: str = "leaf") -> None:
        self.depth = depth
        self.name = name

    def fit(self) -> Leaf:
        self.size_ = self.depth * 2
        return self

    def size(self) -> int:
        return int(self.size_)


class Tree(Estimator):
    def __init__(self, leaf: Leaf | None = None, width: float = 1.0) -> None:
        self.leaf = leaf
        self.width = width


def test_get_params_reads_the_signature_in_order_with_defaults() -> None:
    assert list(Leaf(name="x").get_params().items()) == [("depth", 3), ("name", "x")]


def test_deep_params_name_the_nested_estimator_and_only_deep_asks_for_them() -> None:
    tree = Tree(leaf=Leaf(depth=5), width=2.0)
    assert set(tree.get_params()) == {"leaf", "width"}
    assert tree.get_params(deep=True) == {"leaf": tree.leaf, "width": 2.0, "leaf__depth": 5, "leaf__name": "leaf"}


def test_set_params_reaches_into_a_nested_estimator_after_replacing_it() -> None:
    old = Leaf()
    tree = Tree(leaf=old).set_params(leaf__depth=9, leaf=Leaf(name="new"), width=0.5)
    assert tree.leaf is not old and old.depth == 3
    assert (tree.leaf.depth, tree.leaf.name, tree.width) == (9, "new", 0.5)


@pytest.mark.parametrize("bad", [{"height": 1}, {"leaf__height": 1}, {"width__x": 1}])
def test_set_params_refuses_what_is_not_a_parameter(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"no parameter|not an estimator"):
        Tree(leaf=Leaf()).set_params(**bad)


def test_an_init_that_takes_kwargs_or_drops_an_argument_is_refused() -> None:
    class Loose(Estimator):
        def __init__(self, **options: Any) -> None:
            self.options = options

    class Forgetful(Estimator):
        def __init__(self, alpha: float = 1.0) -> None:
            self.a = alpha

    with pytest.raises(TypeError, match="names every parameter"):
        Loose(x=1).get_params()
    with pytest.raises(AttributeError, match=r"does not store it as self\.alpha"):
        Forgetful().get_params()


def test_an_unfitted_estimator_raises_not_fitted_and_hasattr_stays_false() -> None:
    leaf = Leaf()
    assert issubclass(NotFittedError, KairosError) and issubclass(NotFittedError, AttributeError)
    with pytest.raises(NotFittedError, match=r"Leaf is not fitted \(size_ is missing\)"):
        leaf.size()
    assert not hasattr(leaf, "size_") and not hasattr(leaf, "_index")
    with pytest.raises(AttributeError) as info:
        leaf.colour  # noqa: B018  (an ordinary typo is not "not fitted")
    assert not isinstance(info.value, NotFittedError)
    assert leaf.fit().size() == 6


def test_check_fitted_names_the_missing_attribute_or_wants_any_learnt_one() -> None:
    leaf = Leaf()
    with pytest.raises(NotFittedError, match="every fitted attribute"):
        check_fitted(leaf)
    with pytest.raises(NotFittedError, match="size_"):
        check_fitted(leaf, "size_")
    leaf.fit()
    check_fitted(leaf)
    check_fitted(leaf, "size_")
    with pytest.raises(NotFittedError, match="other_"):
        check_fitted(leaf, "size_", "other_")
