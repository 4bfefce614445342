"""Notebooks are executed, top to bottom, on a small world: they must keep working."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        "01_quickstart.ipynb",
        "02_customer_360.ipynb",
        "03_churn_and_value.ipynb",
        "04_recommendations.ipynb",
        "05_send_time_and_offers.ipynb",
    ],
)
def test_notebook_runs(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUICKSTART_WORK", str(tmp_path))
    monkeypatch.setenv("QUICKSTART_CUSTOMERS", "1500")
    monkeypatch.setenv("CUSTOMER360_WORK", str(tmp_path))
    monkeypatch.setenv("CUSTOMER360_CUSTOMERS", "1200")
    monkeypatch.setenv("RECS_NB_WORK", str(tmp_path))
    monkeypatch.setenv("RECS_NB_CUSTOMERS", "1200")
    monkeypatch.setenv("NB03_WORK", str(tmp_path))
    monkeypatch.setenv("NB03_CUSTOMERS", "1500")
    monkeypatch.setenv("NB05_WORK", str(tmp_path))
    monkeypatch.setenv("NB05_CUSTOMERS", "1500")
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    # the kernel inherits this process's environment, including the variables set above
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
