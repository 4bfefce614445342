"""Kairos synthetic world: a deterministic CRM export with its planted ground truth, for the demo, the
tests and the benchmarks. It reads the data contract from ``features``; ``features``, ``models`` and
``serving`` never import it."""

from synth.world import GENERATOR, TABLE_NAMES, WorldSummary, generate_world

__all__ = ["GENERATOR", "TABLE_NAMES", "WorldSummary", "generate_world"]
