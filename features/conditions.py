"""Conditions over a customer's features: the small, safe expression language of offer eligibility and
segment rules.

For example ``abandoned_carts_7d >= 1 and days_since_last_visit <= 3``, ``lifecycle in ['at_risk',
'lapsed']`` or, over the export's own customer attributes, ``attr_home_ownership == 'Homeowner' and
attr_age_band >= '35-44'``. It is parsed with Python's :mod:`ast` and only these forms are accepted:
comparisons (``== != < <= > >=``, chained ones too), ``in`` / ``not in`` a literal list, ``and`` / ``or`` /
``not``, names, numbers, strings, ``True`` / ``False`` and a boolean name on its own (a segment flag).
Anything else (calls, attributes, subscripts, arithmetic, lambdas) is refused when the condition is read,
and nothing is ever ``eval``-ed: the tree is walked and evaluated column-wise over a features frame. A
comparison with a missing value is False (so ``recency_days > 30`` is False for a customer who never
ordered).

Names are checked when the condition is read against the names given (the feature catalogue, the segment
columns), and so is comparing a text with a number. Customer attributes (``attr_<name>``) depend on the
export's mapping, so they are checked against the data when the condition is evaluated:

- a category (``attr_<name>``, its label) compares with ``==``, ``!=``, ``in`` / ``not in``;
- an ordered band compares by its position in the declared order (``attr_<name>``, 1 = the first band;
  ``attr_<name>_rank`` is the same) or by band name: ``attr_age_band >= '35-44'`` holds for 35-44 and
  every band after it; ``attr_age_band == '35-44'`` and ``in [...]`` compare the labels;
- a number or a flag (1/0) compares with numbers; a date attribute is ``attr_<name>_days`` (days since).

An attribute the data does not have is an error naming it and the attributes the data has.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd

from features.contract import ATTRIBUTE_PREFIX, RANK_SUFFIX
from features.errors import KairosError

__all__ = [
    "BAND_LABEL_SUFFIX",
    "MAX_EXPRESSION_CHARS",
    "MAX_EXPRESSION_NODES",
    "Condition",
    "ConditionError",
    "ValueKind",
]

ValueKind = Literal["number", "string", "bool", "attribute"]  # attribute: known once the data is seen
MAX_EXPRESSION_CHARS = 1_000
MAX_EXPRESSION_NODES = 200
BAND_LABEL_SUFFIX = "_band"  # an ordered band's label feature beside its position: attr_<name>_band


class ConditionError(KairosError):
    """A condition uses a form or a name the language does not allow, or names what the data lacks."""


_COMPARE_OPS: dict[type[ast.cmpop], str] = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.In: "in",
    ast.NotIn: "not in",
}
_ORDERING = frozenset({"<", "<=", ">", ">="})
Literal_ = str | float | bool


def is_attribute(name: str) -> bool:
    return name.startswith(ATTRIBUTE_PREFIX) and len(name) > len(ATTRIBUTE_PREFIX)


class Condition:
    """A parsed, checked condition; :meth:`evaluate` gives a boolean per row of a frame.

    Args:
        text: The expression; an empty text means "everyone".
        known: Allowed names and their kinds (``attr_*`` names are always allowed: checked on evaluation).

    Raises:
        ConditionError: A syntax error, a refused form, an unknown name or a kind mismatch (subclasses
            raise their own subclass: :attr:`error`).
    """

    error: type[KairosError] = ConditionError  # raised for a bad expression
    data_error: type[KairosError] = ConditionError  # raised when the frame lacks what it names

    def __init__(self, text: str, known: Mapping[str, ValueKind]) -> None:
        self.text = text.strip()
        self._known = known
        if len(self.text) > MAX_EXPRESSION_CHARS:
            raise self.error(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
        if not self.text:
            self._tree: ast.expr | None = None
            self.names: frozenset[str] = frozenset()
            return
        try:
            parsed = ast.parse(self.text, mode="eval")
        except SyntaxError as exc:
            raise self.error(f"{self.text!r}: not a valid expression ({exc.msg})") from exc
        if sum(1 for _ in ast.walk(parsed)) > MAX_EXPRESSION_NODES:
            raise self.error(f"{self.text!r}: more than {MAX_EXPRESSION_NODES} parts")
        names: set[str] = set()
        self._check_bool(parsed.body, names)
        self._tree = parsed.body
        self.names = frozenset(names)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.text!r})"

    @property
    def attributes(self) -> frozenset[str]:
        """The customer attributes the condition names (``attr_*``)."""
        return frozenset(n for n in self.names if n not in self._known and is_attribute(n))

    def with_band_positions(self, bands: Mapping[str, Sequence[str]]) -> str:
        """The condition's text with every band named in an ordering comparison (``attr_age_band >=
        '35-44'``) replaced by its position in ``bands`` (``attr_age_band >= 3``), so it needs no band order
        when evaluated: on one customer, say, where the order cannot be seen. Other parts are unchanged.

        Raises:
            data_error: a band name that is not one of the attribute's bands.
        """
        if self._tree is None:
            return self.text
        condition = self
        changed: list[bool] = []

        class _Positions(ast.NodeTransformer):
            def visit_Compare(self, node: ast.Compare) -> ast.Compare:
                operands = [node.left, *node.comparators]
                for i, op in enumerate(node.ops):
                    if _COMPARE_OPS.get(type(op)) not in _ORDERING:
                        continue
                    left, right = operands[i], operands[i + 1]
                    for name, literal, at in ((left, right, i + 1), (right, left, i)):
                        if not (isinstance(name, ast.Name) and isinstance(literal, ast.Constant)):
                            continue
                        column = name.id[: -len(RANK_SUFFIX)] if name.id.endswith(RANK_SUFFIX) else name.id
                        if column in bands and isinstance(literal.value, str):
                            order = list(bands[column])
                            if literal.value not in order:
                                raise condition.data_error(
                                    f"{condition.text!r}: {literal.value!r} is not a band of {name.id} "
                                    f"(its bands: {', '.join(order)})"
                                )
                            operands[at] = ast.Constant(value=order.index(literal.value) + 1)
                            changed.append(True)
                node.left, node.comparators = operands[0], operands[1:]
                return node

        text = ast.unparse(_Positions().visit(ast.parse(self.text, mode="eval")))
        return text if changed else self.text  # an untouched condition keeps its own wording

    # checking ----------------------------------------------------------------------------------------

    def _refuse(self, node: ast.AST, why: str) -> KairosError:
        return self.error(f"{self.text!r}: {why} ({type(node).__name__} is not allowed)")

    def _check_bool(self, node: ast.expr, names: set[str]) -> None:
        """``node`` must produce a boolean: and/or/not, a comparison, a bool name or True/False."""
        if isinstance(node, ast.BoolOp):
            for value in node.values:
                self._check_bool(value, names)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            self._check_bool(node.operand, names)
        elif isinstance(node, ast.Compare):
            self._check_compare(node, names)
        elif isinstance(node, ast.Name):
            kind = self._name_kind(node, names)
            if kind != "bool":
                what = "a customer attribute" if kind == "attribute" else f"a {kind}"
                raise self.error(f"{self.text!r}: {node.id} is {what}; compare it (e.g. {node.id} > 0)")
        elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
            return
        else:
            raise self._refuse(node, "only comparisons, and/or/not, names and literals are allowed")

    def _name_kind(self, node: ast.Name, names: set[str]) -> ValueKind:
        if not isinstance(node.ctx, ast.Load):
            raise self._refuse(node, "names can only be read")
        if node.id in self._known:
            names.add(node.id)
            return self._known[node.id]
        if is_attribute(node.id):
            names.add(node.id)
            return "attribute"
        raise self.error(
            f"{self.text!r}: unknown name {node.id!r}; use a feature of the catalogue (docs/features.md), "
            "a segment column (rfm_segment, lifecycle, flag_*) or a customer attribute (attr_<name>)"
        )

    def _operand_kind(self, node: ast.expr, names: set[str]) -> ValueKind:
        if isinstance(node, ast.Name):
            return self._name_kind(node, names)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            if isinstance(node.operand, ast.Constant) and _is_number(node.operand.value):
                return "number"
            raise self._refuse(node, "a minus sign only goes before a number")
        if isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, bool):
                return "bool"
            if _is_number(value):
                return "number"
            if isinstance(value, str):
                return "string"
            raise self._refuse(node, f"literal {value!r} is not a number, text or True/False")
        raise self._refuse(node, "only names and literals can be compared")

    def _check_compare(self, node: ast.Compare, names: set[str]) -> None:
        left = node.left
        for op, right in zip(node.ops, node.comparators, strict=True):
            symbol = _COMPARE_OPS.get(type(op))
            if symbol is None:
                raise self._refuse(op, "unsupported comparison")
            left_kind = self._operand_kind(left, names)
            if symbol in ("in", "not in"):
                if not isinstance(right, ast.List | ast.Tuple):
                    raise self._refuse(right, f"'{symbol}' needs a literal list, e.g. ['a', 'b']")
                kinds = {self._operand_kind(item, names) for item in right.elts}
                if any(not isinstance(item, ast.Constant | ast.UnaryOp) for item in right.elts):
                    raise self._refuse(right, "a list holds literals only")
                if left_kind == "attribute" and len(kinds) > 1:
                    raise self.error(f"{self.text!r}: list items must all be of one kind")
                if left_kind != "attribute" and kinds and kinds != {left_kind}:
                    raise self.error(f"{self.text!r}: list items must all be a {left_kind} like the left side")
            else:
                right_kind = self._operand_kind(right, names)
                if "attribute" not in (left_kind, right_kind):  # an attribute's kind is the data's
                    if left_kind != right_kind:
                        raise self.error(f"{self.text!r}: cannot compare a {left_kind} with a {right_kind}")
                    if left_kind in ("string", "bool") and symbol not in ("==", "!="):
                        raise self.error(f"{self.text!r}: a {left_kind} can only be compared with == or !=")
                if isinstance(left, ast.Constant | ast.UnaryOp) and isinstance(right, ast.Constant | ast.UnaryOp):
                    raise self.error(f"{self.text!r}: a comparison of two literals says nothing")
            left = right

    # evaluation --------------------------------------------------------------------------------------

    def evaluate(self, frame: pd.DataFrame, bands: Mapping[str, Sequence[str]] | None = None) -> np.ndarray:
        """A boolean per row of ``frame`` (features and segments joined, one row per customer).

        Args:
            frame: the features (and segment columns) the condition names.
            bands: per ordered-band attribute feature (``attr_<name>``), its bands in the declared order,
                for comparisons by band name with ``< <= > >=``; default: the order seen in ``frame``
                (its position and label columns side by side).

        Raises:
            data_error: ``frame`` lacks a column the condition names (an attribute the data does not
                have), or a band name is not one of the attribute's bands.
        """
        n = len(frame)
        if self._tree is None:
            return np.ones(n, dtype=bool)
        lacking = sorted(n for n in self.names if self._column(n, frame) is None)
        if lacking:
            missing_attrs = [a for a in lacking if a in self.attributes]
            if missing_attrs:
                have = sorted(c for c in frame.columns if is_attribute(str(c)))
                raise self.data_error(
                    f"{self.text!r}: {', '.join(missing_attrs)} "
                    f"{'is not a customer attribute' if len(missing_attrs) == 1 else 'are not customer attributes'}"
                    f" of this data (its attributes: {', '.join(have) if have else 'none'}; the mapping's customers "
                    "table declares them)"
                )
            raise self.data_error(f"{self.text!r} needs {', '.join(lacking)}, absent from the features given")
        self._bands = bands or {}
        return np.asarray(self._eval_bool(self._tree, frame), dtype=bool)

    def _column(self, name: str, frame: pd.DataFrame) -> str | None:
        """The frame's column for ``name`` (``attr_<band>_rank`` is the band's position ``attr_<band>``)."""
        if name in frame.columns:
            return name
        if is_attribute(name) and name.endswith(RANK_SUFFIX):
            base = name[: -len(RANK_SUFFIX)]
            if base in frame.columns and base + BAND_LABEL_SUFFIX in frame.columns:
                return base
        return None

    def _eval_bool(self, node: ast.expr, frame: pd.DataFrame) -> np.ndarray:
        n = len(frame)
        if isinstance(node, ast.BoolOp):
            parts = [self._eval_bool(v, frame) for v in node.values]
            out = parts[0]
            for part in parts[1:]:
                out = (out & part) if isinstance(node.op, ast.And) else (out | part)
            return out
        if isinstance(node, ast.UnaryOp):  # `not`, checked at parse time
            return ~self._eval_bool(node.operand, frame)
        if isinstance(node, ast.Compare):
            out = np.ones(n, dtype=bool)
            left = node.left
            for op, right in zip(node.ops, node.comparators, strict=True):
                out &= self._eval_compare(_COMPARE_OPS[type(op)], left, right, frame)
                left = right
            return out
        if isinstance(node, ast.Name):
            return _as_bool(frame[node.id])
        assert isinstance(node, ast.Constant)
        return np.full(n, bool(node.value))

    def _kind_in(self, name: str, frame: pd.DataFrame) -> ValueKind:
        kind = self._known.get(name)
        if kind is not None:
            return kind
        series = frame[self._column(name, frame)]
        if pd.api.types.is_bool_dtype(series.dtype):
            return "bool"
        return "number" if pd.api.types.is_numeric_dtype(series.dtype) else "string"

    def _operand(self, node: ast.expr, frame: pd.DataFrame) -> np.ndarray | Literal_:
        """The operand's values (a column) or a scalar literal."""
        if isinstance(node, ast.Name):
            kind = self._kind_in(node.id, frame)
            series = frame[self._column(node.id, frame)]
            if kind == "number":
                return pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            if kind == "bool":
                return _as_bool(series).astype(np.float64)
            return series.astype(object).where(series.notna(), None).to_numpy()
        return _literal(node)

    def _attribute_sides(
        self, symbol: str, left: ast.expr, right: ast.expr, frame: pd.DataFrame
    ) -> tuple[str, ast.expr, ast.expr]:
        """Resolve an attribute compared with a literal against the data: a band named by its label
        compares labels (``==``, ``!=``, ``in``) or positions (``<`` ...); a kind clash is an error."""
        name = left.id if isinstance(left, ast.Name) else right.id if isinstance(right, ast.Name) else None
        if name is None or name in self._known or not is_attribute(name):
            return symbol, left, right
        literal = right if isinstance(left, ast.Name) else left
        if isinstance(literal, ast.Name):
            return symbol, left, right
        column = self._column(name, frame)
        assert column is not None
        kind = self._kind_in(name, frame)
        items = literal.elts if isinstance(literal, ast.List | ast.Tuple) else [literal]
        values = [_literal(i) for i in items]
        texts = [v for v in values if isinstance(v, str)]
        label = column + BAND_LABEL_SUFFIX
        if kind == "string":
            if len(texts) != len(values):
                raise self.data_error(f"{self.text!r}: {name} holds text (a category); compare it with text")
            if symbol in _ORDERING:
                raise self.data_error(
                    f"{self.text!r}: {name} is a category, not ordered bands: compare it with ==, != or in"
                )
            return symbol, left, right
        if not texts:
            return symbol, left, right
        if label not in frame.columns:
            raise self.data_error(f"{self.text!r}: {name} holds numbers, not bands; compare it with a number")
        if symbol not in _ORDERING:  # equality and membership compare the labels
            swap = ast.Name(id=label, ctx=ast.Load())
            return (symbol, swap, right) if isinstance(left, ast.Name) else (symbol, left, swap)
        order = self._band_order(column, frame)
        if texts[0] not in order:
            raise self.data_error(
                f"{self.text!r}: {texts[0]!r} is not a band of {name} (its bands: {', '.join(order) or 'none seen'})"
            )
        rank = ast.Constant(value=order.index(texts[0]) + 1)
        return (symbol, left, rank) if isinstance(left, ast.Name) else (symbol, rank, right)

    def _band_order(self, column: str, frame: pd.DataFrame) -> list[str]:
        if column in self._bands:
            return list(self._bands[column])
        pairs = frame[[column, column + BAND_LABEL_SUFFIX]].dropna().drop_duplicates()
        by_rank = dict(zip(pairs[column].astype(int), pairs[column + BAND_LABEL_SUFFIX].astype(str), strict=True))
        return [by_rank.get(r, f"<band {r}>") for r in range(1, max(by_rank, default=0) + 1)]

    def _eval_compare(self, symbol: str, left: ast.expr, right: ast.expr, frame: pd.DataFrame) -> np.ndarray:
        symbol, left, right = self._attribute_sides(symbol, left, right, frame)
        lhs = self._operand(left, frame)
        if symbol in ("in", "not in"):
            assert isinstance(right, ast.List | ast.Tuple)
            items = [_literal(item) for item in right.elts]
            values = pd.Series(np.broadcast_to(np.asarray(lhs, dtype=object), (len(frame),)))
            known = values.notna().to_numpy()
            member = values.isin(items).to_numpy()
            return known & (member if symbol == "in" else ~member)
        rhs = self._operand(right, frame)
        a = np.broadcast_to(np.asarray(lhs, dtype=object), (len(frame),))
        b = np.broadcast_to(np.asarray(rhs, dtype=object), (len(frame),))
        known = ~(pd.isna(a) | pd.isna(b))
        out = np.zeros(len(frame), dtype=bool)
        if known.any():
            x, y = a[known], b[known]
            if symbol == "==":
                out[known] = x == y
            elif symbol == "!=":
                out[known] = x != y
            else:
                xf, yf = x.astype(np.float64), y.astype(np.float64)
                out[known] = {"<": xf < yf, "<=": xf <= yf, ">": xf > yf, ">=": xf >= yf}[symbol]
        return out


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(float(value))


def _literal(node: ast.expr) -> Literal_:
    if isinstance(node, ast.UnaryOp):
        assert isinstance(node.operand, ast.Constant) and isinstance(node.operand.value, int | float)
        return -float(node.operand.value)
    assert isinstance(node, ast.Constant)
    value = node.value
    if isinstance(value, bool | str):
        return value
    assert isinstance(value, int | float)
    return float(value)


def _as_bool(series: pd.Series) -> np.ndarray:
    return pd.Series(series).astype("boolean").fillna(False).to_numpy(dtype=bool)
