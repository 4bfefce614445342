"""The estimator contract every model in :mod:`models` follows (scikit-learn's, kept small).

* ``__init__`` only stores its arguments, each under its own name: no validation, no side effects.
* ``fit`` validates, learns state into attributes ending in ``_`` and returns ``self``.
* :meth:`Estimator.get_params` reads the parameter names from ``__init__``'s signature, so that
  ``type(m)(**m.get_params())`` builds an unfitted model with the same settings, and
  :meth:`Estimator.set_params` sets them (``name__param`` reaches into a nested estimator).
* Using a model before it is fitted (or loaded) raises :class:`NotFittedError`; :func:`check_fitted`
  says so explicitly where a method should fail before doing anything else.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Self

from features.errors import KairosError

__all__ = ["Estimator", "NotFittedError", "check_fitted"]


class NotFittedError(KairosError, AttributeError):
    """A model was used before ``fit`` (or before being loaded): fit it, or load a fitted one.

    An ``AttributeError`` too, so that ``hasattr(model, "booster_")`` stays the way to ask "fitted?".
    """


def _not_fitted(estimator: object, missing: str) -> NotFittedError:
    name = type(estimator).__name__
    return NotFittedError(f"{name} is not fitted ({missing} is missing): call fit() first, or load a fitted model")


def check_fitted(estimator: object, *attributes: str) -> None:
    """Raise :class:`NotFittedError` unless ``estimator`` is fitted.

    Args:
        estimator: the model.
        attributes: fitted attributes that must all be there; none given: at least one public attribute
            ending in ``_`` must be.
    """
    if attributes:
        for attribute in attributes:
            if not hasattr(estimator, attribute):
                raise _not_fitted(estimator, attribute)
    elif not any(k.endswith("_") and not k.startswith("_") for k in vars(estimator)):
        raise _not_fitted(estimator, "every fitted attribute")


class Estimator:
    """Base of every estimator and recommender: parameters from ``__init__``, a clear not-fitted error.

    Subclasses write an ``__init__`` that stores each argument as an attribute of the same name, and
    nothing else (no ``*args`` or ``**kwargs``: every parameter is named).
    """

    @classmethod
    def _init_params(cls) -> list[str]:
        """The names of ``__init__``'s parameters, in order (``self`` left out)."""
        if cls.__init__ is object.__init__:
            return []
        names = []
        for param in list(inspect.signature(cls.__init__).parameters.values())[1:]:
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise TypeError(f"{cls.__name__}.__init__ takes *{param.name}: an estimator names every parameter")
            names.append(param.name)
        return names

    def get_params(self, deep: bool = False) -> dict[str, Any]:
        """The constructor's arguments, by name: ``type(m)(**m.get_params())`` is an unfitted copy.

        Args:
            deep: also list the parameters of nested estimators as ``name__param`` (as scikit-learn does;
                such a dict is for logging and :meth:`set_params`, not for the constructor).
        """
        params: dict[str, Any] = {}
        for name in self._init_params():
            try:
                params[name] = vars(self)[name]
            except KeyError:
                raise AttributeError(
                    f"{type(self).__name__}.__init__ takes {name!r} but does not store it as self.{name}"
                ) from None
        if deep:
            for name, value in list(params.items()):
                if isinstance(value, Estimator):
                    params.update({f"{name}__{k}": v for k, v in value.get_params(deep=True).items()})
        return params

    def set_params(self, **params: Any) -> Self:
        """Set constructor parameters (``name__param`` sets a nested estimator's); returns ``self``.

        Raises:
            ValueError: a name that is not a parameter (the message lists the valid ones).
        """
        valid = self._init_params()
        nested: dict[str, dict[str, Any]] = {}
        for key, value in params.items():
            name, _, inner = key.partition("__")
            if name not in valid:
                raise ValueError(f"{type(self).__name__} has no parameter {name!r}; its parameters are {valid}")
            if inner:
                nested.setdefault(name, {})[inner] = value
            else:
                setattr(self, name, value)
        for name, inner_params in nested.items():
            child = getattr(self, name)
            if not isinstance(child, Estimator):
                raise ValueError(f"{type(self).__name__}.{name} is {child!r}, not an estimator with parameters")
            child.set_params(**inner_params)
        return self

    if not TYPE_CHECKING:  # hidden from mypy, which would otherwise accept any attribute name

        def __getattr__(self, name: str) -> Any:
            # Called only when normal lookup fails, so it costs nothing on the prediction path: a
            # missing learnt attribute (``booster_``) or index built by fit (``_pos``) means "not fitted".
            if not name.startswith("__") and (name.endswith("_") or name.startswith("_")):
                raise _not_fitted(self, name)
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}", name=name, obj=self)
