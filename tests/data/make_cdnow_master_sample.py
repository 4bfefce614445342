"""Cut a committed sample of the CDNOW master file in its own layout (header, blank-separated columns).

Run from the project root with ../shared beside it:  python tests/data/make_cdnow_master_sample.py
Keeps every line of 250 customers (whole histories), the header and the CRLF line ends, so the
shipped ``cdnow`` mapping reads it as it reads the full file. ``tests/data/cdnow/CDNOW_sample.txt`` is
the papers' 1/10 sample in another layout (five columns, no header), used by the model tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SRC = Path(__file__).resolve().parents[3] / "shared" / "data" / "cdnow" / "CDNOW_master.txt"
DST = Path(__file__).resolve().parent / "cdnow_master" / "CDNOW_master.txt"


def main(n_customers: int = 250, seed: int = 18) -> None:
    raw = SRC.read_bytes().split(b"\r\n")
    header, rows = raw[0], [r for r in raw[1:] if r.strip()]
    ids = sorted({r.split()[0] for r in rows})
    keep = set(np.random.default_rng(seed).choice(ids, n_customers, replace=False).tolist())
    # Rows with a non-positive value or an exact twin are kept where they fall: the dirt comes along.
    kept = [r for r in rows if r.split()[0] in keep]
    DST.parent.mkdir(parents=True, exist_ok=True)
    DST.write_bytes(b"\r\n".join([header, *kept]) + b"\r\n")
    print(len(kept), "lines")


if __name__ == "__main__":
    main()
