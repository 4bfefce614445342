"""The security battery's figures: tests marked ``security`` record what they tried and what went wrong, and
the run ends with one table (``make security`` runs just these tests; ``make test`` runs them too).

Each check records counts under the battery's columns; a column a check does not measure stays empty. Every
recorded "bad" figure must be 0: the tests assert it, and the table shows it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

# what was tried, then what went wrong (each must be 0)
TRIED = {"cases": "cases tried"}
BAD = {
    "server_errors": "5xx",
    "schema_violations": "schema violations",
    "failed_requests": "failed requests",
    "canary_hits": "canary hits",
    "opted_out_contacts": "opted-out contacts",
    "erased_hits": "erased-customer hits",
    "wrong_answers": "wrong answers",
}
COLUMNS = {**TRIED, **BAD}
# also write the figures as JSON to this path (not KAIROS_*: the API refuses unknown KAIROS_ variables)
REPORT_ENV = "SECURITY_FIGURES_JSON"


@dataclass
class SecurityFigures:
    """Figures per check, in the order checks first record (a check recording twice adds up)."""

    rows: dict[str, dict[str, int]] = field(default_factory=dict)

    def record(self, check: str, **figures: int) -> None:
        unknown = set(figures) - set(COLUMNS)
        if unknown:
            raise ValueError(f"unknown figure(s) {sorted(unknown)}; known: {sorted(COLUMNS)}")
        row = self.rows.setdefault(check, {})
        for name, value in figures.items():
            row[name] = row.get(name, 0) + int(value)

    def table(self) -> list[str]:
        """The figures as a fixed-width text table."""
        used = [c for c in COLUMNS if any(c in row for row in self.rows.values())]
        head = ["check", *(COLUMNS[c] for c in used)]
        body = [[check, *(str(row[c]) if c in row else "-" for c in used)] for check, row in self.rows.items()]
        widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]

        def line(cells: list[str]) -> str:
            return "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )

        bad = sum(row.get(c, 0) for row in self.rows.values() for c in BAD)
        total = ["total", *(str(sum(row.get(c, 0) for row in self.rows.values())) for c in used)]
        return [line(head), line(["-" * w for w in widths]), *map(line, body), line(total), f"bad figures: {bad}"]

    def write(self) -> None:
        target = os.environ.get(REPORT_ENV)
        if target:
            Path(target).write_text(json.dumps(self.rows, indent=2, sort_keys=True) + "\n")


FIGURES = SecurityFigures()  # one per test session
