"""``kairos serve`` (what ``make demo`` runs) prints the console's address and how to sign in."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app


@pytest.mark.parametrize("dev", [True, False])
def test_serve_prints_the_console_and_its_sign_in_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dev: bool
) -> None:
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: None)
    monkeypatch.setenv("KAIROS_DATA_HOME", str(tmp_path))
    monkeypatch.setenv("KAIROS_TRACKING_URI", "sqlite:///unused.db")
    if dev:
        monkeypatch.setenv("KAIROS_ENVIRONMENT", "development")
    else:
        monkeypatch.setenv("KAIROS_API_KEYS", '[{"name": "m", "sha256": "' + "0" * 64 + '", "scopes": ["campaign"]}]')
    args = ["serve", "--data", str(tmp_path), "--port", "8123", *(["--dev"] if dev else [])]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if "console" in x)
    assert "http://127.0.0.1:8123/console" in line
    assert ("kairos-demo-key" in line) is dev  # the demo key is printed only where it works
