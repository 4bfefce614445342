"""LightGBM models compiled to machine code by lleaves: the same predictions, several times faster.

Compiling is a build step (tens of seconds per model on 2 cores), done by ``kairos compile`` or by
``kairos score --all`` before it scores, never by the API at start-up. The API uses a build it finds
(:meth:`CompiledBooster.cached`) once the build reproduced LightGBM on :func:`split_probe` rows. The
shared object is cached under a key made of the model text's SHA-256, the lleaves and llvmlite
versions and the host CPU (lleaves specialises the code to it), so a new model version, a new compiler
or another machine never picks up a stale build.

A compiled model is trusted only after it reproduced LightGBM's own predictions
(:meth:`CompiledBooster.verify`); the callers fall back to LightGBM when it does not.
"""

from __future__ import annotations

import hashlib
import os
import platform
import tempfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from features.errors import KairosError

# Compiled and interpreted predictions differ only by the order of floating-point sums (measured:
# at most 6e-16); anything above this is a real difference and the compiled model is refused.
TOLERANCE = 1e-9
SUFFIX = ".so"
COMPILED_DIR = "compiled"  # the builds' folder under a data home (kairos compile, score --all, the API)


class CompileError(KairosError):
    """lleaves is missing, failed to compile, or the compiled model disagrees with LightGBM."""


def _versions() -> str:
    try:
        return f"lleaves-{version('lleaves')}-llvmlite-{version('llvmlite')}"
    except PackageNotFoundError as exc:
        raise CompileError("lleaves is not installed (pip install lleaves); scoring uses LightGBM") from exc


def _host_cpu() -> str:
    """The CPU lleaves compiles for (it specialises the code to the host's CPU and its features)."""
    try:
        from llvmlite import binding

        return f"{binding.get_host_cpu_name()}:{binding.get_host_cpu_features().flatten()}"
    except Exception as exc:
        raise CompileError(f"cannot tell the host CPU to llvmlite: {exc}") from exc


def cache_key(model_text: str) -> str:
    """The cache file's stem for ``model_text`` on this machine kind and compiler."""
    h = hashlib.sha256(model_text.encode("utf-8"))
    h.update(f"|{_versions()}|{platform.machine()}|{_host_cpu()}".encode())
    return h.hexdigest()[:32]


@dataclass(frozen=True)
class CompiledBooster:
    """A compiled LightGBM model: ``predict`` answers what ``lightgbm.Booster.predict`` answers."""

    key: str
    path: Path
    _model: object

    @classmethod
    def build(cls, model_text: str, cache_dir: Path) -> CompiledBooster:
        """The compiled model for ``model_text``, compiling it into ``cache_dir`` unless already there.

        Raises:
            CompileError: lleaves is missing or the compile failed.
        """
        return cls._open(model_text, Path(cache_dir), cache_key(model_text))

    @classmethod
    def cached(cls, model_text: str, cache_dir: Path) -> CompiledBooster | None:
        """The compiled model if ``cache_dir`` already holds it, else None: never compiles (for the API)."""
        try:
            key = cache_key(model_text)
        except CompileError:
            return None
        if not (Path(cache_dir) / f"{key}{SUFFIX}").is_file():
            return None
        return cls._open(model_text, Path(cache_dir), key)

    @classmethod
    def _open(cls, model_text: str, cache_dir: Path, key: str) -> CompiledBooster:
        """Load ``key`` from ``cache_dir``, compiling it there first when it is not."""
        try:
            import lleaves
        except ImportError as exc:  # pragma: no cover - lleaves is a dependency; an odd install
            raise CompileError(f"lleaves does not import: {exc}") from exc
        cache_dir.mkdir(parents=True, exist_ok=True)
        target = cache_dir / f"{key}{SUFFIX}"
        with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
            text_file = Path(tmp) / "model.txt"
            text_file.write_text(model_text, encoding="utf-8")
            model = lleaves.Model(model_file=str(text_file))
            try:
                if target.is_file():
                    model.compile(cache=str(target))
                else:
                    # compile beside, then rename: a reader never sees half a shared object
                    staged = Path(tmp) / f"{key}{SUFFIX}"
                    model.compile(cache=str(staged))
                    os.replace(staged, target)
            except Exception as exc:  # llvmlite raises its own RuntimeErrors
                raise CompileError(f"lleaves failed to compile the model: {exc}") from exc
        return cls(key, target, model)

    @property
    def num_features(self) -> int:
        return int(self._model.num_feature())  # type: ignore[attr-defined]

    def predict(self, X: np.ndarray, n_jobs: int | None = None) -> np.ndarray:
        """Predictions for the rows of ``X`` (columns in the model's feature order), as LightGBM's."""
        matrix = np.ascontiguousarray(X, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[1] != self.num_features:
            raise ValueError(f"expected a (rows, {self.num_features}) matrix, got shape {matrix.shape}")
        jobs = n_jobs or os.cpu_count() or 1
        return np.asarray(self._model.predict(matrix, n_jobs=jobs), dtype=np.float64)  # type: ignore[attr-defined]

    def verify(self, X: np.ndarray, reference: np.ndarray) -> float:
        """The largest difference from LightGBM's ``reference`` predictions on ``X``.

        Raises:
            CompileError: the compiled model disagrees by more than :data:`TOLERANCE`.
        """
        got = self.predict(X, n_jobs=1)
        want = np.asarray(reference, dtype=np.float64)
        if got.shape != want.shape:
            raise CompileError(f"compiled model answered shape {got.shape}, LightGBM {want.shape}")
        diff = np.abs(got - want)
        diff[np.isnan(got) & np.isnan(want)] = 0.0
        diff[np.isnan(diff)] = np.inf  # NaN on one side only
        worst = float(diff.max()) if diff.size else 0.0
        if not np.isfinite(worst) or worst > TOLERANCE:
            raise CompileError(f"compiled model differs from LightGBM by {worst:.3g} (> {TOLERANCE:g})")
        return worst


def split_probe(booster: Any, rows: int = 1024, seed: int = 0) -> np.ndarray:
    """Rows that walk the trees' branches: each value is one of the model's own split thresholds for
    that feature (the edge a compiled comparison could get wrong), a value just above one, or NaN.

    A check for a compiled model where no real rows are at hand (the API at load time): float32
    values, columns in the model's feature order.
    """
    n_features = int(booster.num_feature())
    thresholds: list[list[float]] = [[] for _ in range(n_features)]

    def walk(node: dict[str, Any]) -> None:
        if "split_feature" in node:
            if isinstance(node.get("threshold"), int | float):
                thresholds[int(node["split_feature"])].append(float(node["threshold"]))
            walk(node["left_child"])
            walk(node["right_child"])

    for tree in booster.dump_model()["tree_info"]:
        walk(tree["tree_structure"])
    rng = np.random.default_rng(seed)
    out = np.empty((rows, n_features), dtype=np.float32)
    for j, cuts in enumerate(thresholds):
        values = np.array(cuts or [0.0], dtype=np.float64)
        picks = values[rng.integers(0, len(values), rows)]
        above = rng.random(rows) < 0.5
        picks = np.where(above, np.nextafter(picks.astype(np.float32), np.float32(np.inf)), picks)
        picks[rng.random(rows) < 0.05] = np.nan
        out[:, j] = picks
    return out
