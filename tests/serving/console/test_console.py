"""The console over HTTP (TestClient): sign-in and sessions, CSRF on every form, the API's scopes, no
personal data without ``pii``, the API's own numbers, the catalogues, promotion with a confirmation."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pandas as pd
import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from fastapi import FastAPI
from fastapi.testclient import TestClient

from serving.console.i18n import LOCALE_DIR
from serving.console.routes import MISSING_HEADER, routes
from tests.serving.conftest import KEYS, World, headers
from tests.serving.console.conftest import csrf_of, personal_values, sign_in

CONSOLE = Path(__file__).resolve().parents[3] / "serving" / "console"
OPERATIONS = Path(__file__).resolve().parents[3] / "docs" / "operations.md"


def _client(app: FastAPI) -> TestClient:
    return TestClient(app, base_url="http://testserver")


def test_browsers_are_sent_to_the_console_and_to_sign_in(console_app: FastAPI) -> None:
    c = _client(console_app)
    assert c.get("/", follow_redirects=False).headers["location"] == "/console"
    r = c.get("/console/segments", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/sign-in?next=/console/segments"
    r = c.get("/console/customers/x/contact", headers={"HX-Request": "true"}, follow_redirects=False)
    assert r.status_code == 401 and r.headers["HX-Redirect"].startswith("/console/sign-in")


@pytest.mark.parametrize("who", ["storefront", "consent"])
def test_keys_without_campaign_or_admin_cannot_sign_in(console_app: FastAPI, who: str) -> None:
    c = _client(console_app)
    token = csrf_of_page(c, "/console/sign-in")
    r = c.post("/console/sign-in", data={"csrf_token": token, "api_key": KEYS[who]}, follow_redirects=False)
    assert r.status_code == 401 and "campaign or admin" in r.text
    r = c.post("/console/sign-in", data={"csrf_token": token, "api_key": "not-a-key"}, follow_redirects=False)
    assert r.status_code == 401 and "not valid" in r.text
    assert c.get("/console", follow_redirects=False).status_code == 303


def csrf_of_page(c: TestClient, path: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', c.get(path).text)
    assert found is not None
    return found.group(1)


def test_the_session_cookie_is_signed_httponly_and_samesite(console_app: FastAPI) -> None:
    c = _client(console_app)
    page = c.get("/console/sign-in")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    r = c.post("/console/sign-in", data={"csrf_token": token, "api_key": KEYS["campaign"]}, follow_redirects=False)
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert KEYS["campaign"] not in cookie  # the name of the key, never the key
    assert c.get("/console", follow_redirects=False).status_code == 200
    value = c.cookies.get("kairos_console")
    assert value
    c.cookies.set("kairos_console", value[:-3] + ("AAA" if not value.endswith("AAA") else "BBB"), path="/console")
    assert c.get("/console", follow_redirects=False).status_code == 303  # a tampered cookie signs nobody in


def test_every_form_needs_the_session_csrf_token(console_app: FastAPI) -> None:
    c = _client(console_app)
    r = c.post("/console/sign-in", data={"api_key": KEYS["admin"]}, follow_redirects=False)
    assert r.status_code == 403  # no token: refused before the key is even read
    sign_in(c, "admin")
    for path, form in [
        ("/console/language", {"lang": "ru"}),
        ("/console/models/churn/rollback", {"confirm": "yes"}),
        ("/console/models/churn/promote", {"version": "1", "confirm": "yes"}),
        ("/console/sign-out", {}),
    ]:
        assert c.post(path, data=form, follow_redirects=False).status_code == 403, path
        wrong = form | {"csrf_token": "x" * 43}
        assert c.post(path, data=wrong, follow_redirects=False).status_code == 403, path
    assert c.get("/console", follow_redirects=False).status_code == 200  # still signed in: nothing happened


def test_the_console_keeps_the_api_s_scopes(console_app: FastAPI, console_world: World) -> None:
    cid = console_world.ids[0]
    marketer = _client(console_app)
    sign_in(marketer, "campaign")
    assert marketer.get("/console/models").status_code == 403  # GET /v1/models needs admin
    page = marketer.get(f"/console/customers/{cid}")
    assert page.status_code == 200
    assert "lacks the storefront scope" in page.text  # recommendations are the storefront's (the API's rule)
    assert ">Models<" not in page.text  # not in the navigation either
    admin = _client(console_app)
    sign_in(admin, "admin")
    assert admin.get("/console/models").status_code == 200
    assert "lacks the storefront scope" not in admin.get(f"/console/customers/{cid}").text


def _pages(c: TestClient, ids: list[str]) -> dict[str, str]:
    """Every page and fragment a session can open, for the customers ``ids``."""
    out: dict[str, str] = {}
    for path in ("/console", "/console/segments", "/console/customers", "/console/models", "/console/models/churn"):
        r = c.get(path)
        if r.status_code != 403:  # a campaign key is refused the models pages: nothing to scan
            out[path] = r.text
    for cid in ids:
        for path in (
            f"/console/customers/{cid}",
            f"/console/customers/{cid}/contact",
            f"/console/customers/find?customer_id={cid}",
        ):
            out[path] = c.get(path, headers={"HX-Request": "true"} if "/contact" in path else {}).text
    return out


def _leaks(text: str, people: pd.DataFrame) -> list[str]:
    found = []
    for row in people.itertuples(index=False):
        for field in ("email", "phone"):
            v = getattr(row, field)
            if isinstance(v, str) and len(v) >= 5 and v in text:
                found.append(field)
        for field in ("first_name", "last_name"):
            v = getattr(row, field)
            if isinstance(v, str) and len(v) >= 3 and re.search(rf"\b{re.escape(v)}\b", text):
                found.append(field)
    return found


def test_no_e_mail_phone_or_name_without_the_pii_scope(console_app: FastAPI, console_world: World) -> None:
    people = personal_values(console_world)
    ids = [i for i in console_world.ids if i in set(people["customer_id"].astype(str))][:3]
    shown = people[people["customer_id"].astype(str).isin(ids)]
    assert shown[["email", "phone"]].notna().any().all(), "the demo's customers must have personal data to hide"
    for who in ("campaign", "admin"):  # admin does not imply pii
        c = _client(console_app)
        sign_in(c, who)
        for path, text in _pages(c, ids).items():
            assert _leaks(text, shown) == [], f"{who}: {path}"
    # the scan can fail: a pii key's customer page shows what the others must not
    c = _client(console_app)
    sign_in(c, "pii")
    assert _leaks(c.get(f"/console/customers/{ids[0]}").text, shown)


def test_the_customer_page_shows_the_api_s_own_numbers(console_app: FastAPI, console_world: World) -> None:
    cid = console_world.ids[3]
    api = _client(console_app).post(
        "/v1/scores", json={"customer_ids": [cid], "reasons": True}, headers=headers("campaign")
    )
    item = orjson.loads(api.content)["items"][0]
    c = _client(console_app)
    sign_in(c, "campaign")
    page = c.get(f"/console/customers/{cid}").text
    row = re.search(r'<tr class="score-row" data-model="churn">(.*?)</tr>', page, re.S)
    assert row is not None
    assert f"{item['probabilities']['churn'] * 100:.1f}%" in row.group(1)
    for reason in item["reasons"]["churn"]:
        assert reason["text"].replace("'", "&#39;").replace("<", "&lt;").replace(">", "&gt;") in row.group(1)


def test_unknown_customer_is_a_404_page(console_app: FastAPI) -> None:
    c = _client(console_app)
    sign_in(c, "campaign")
    assert c.get("/console/customers/no-such-customer").status_code == 404
    r = c.get("/console/customers/find", params={"customer_id": "no-such-customer"}, headers={"HX-Request": "true"})
    assert r.status_code == 200 and "No customer with this id" in r.text
    assert "customer_id" in c.get("/console/customers/find", params={"customer_id": ""}).text  # names the field


def test_every_string_is_translated_and_the_catalogues_are_compiled() -> None:
    mapping = [("**.py", "python"), ("**/templates/**.html", "jinja2")]
    options = {"**/templates/**.html": {"extensions": "jinja2.ext.i18n"}}
    keywords = {"_": None, "N_": None, "gettext": None, "ngettext": (1, 2)}
    ids = {
        m[2] if isinstance(m[2], str) else m[2][0]
        for m in extract_from_dir(str(CONSOLE), mapping, options_map=options, keywords=keywords)
    }
    assert len(ids) > 100
    for po_path in sorted(LOCALE_DIR.glob("*/LC_MESSAGES/messages.po")):
        with po_path.open("rb") as f:
            po = read_po(f)
        with po_path.with_suffix(".mo").open("rb") as f:
            mo = read_mo(f)
        missing = sorted(i for i in ids if not (po.get(i) and po.get(i).string))
        assert missing == [], f"{po_path}: untranslated"
        stale = sorted(m.id for m in po if m.id and (mo.get(m.id) is None or mo.get(m.id).string != m.string))
        assert stale == [], f"{po_path.with_suffix('.mo')}: recompile (python -m serving.console.i18n compile)"


def test_russian_pages_have_every_string_and_russian_numbers(console_app: FastAPI, console_world: World) -> None:
    c = _client(console_app)
    sign_in(c, "admin")
    token = csrf_of(c)
    c.post("/console/language", data={"csrf_token": token, "lang": "ru", "next": "/console"})
    for path in (
        "/console",
        "/console/segments",
        f"/console/customers/{console_world.ids[0]}",
        "/console/models/churn",
    ):
        r = c.get(path)
        assert r.status_code == 200 and MISSING_HEADER not in r.headers, path
        assert '<html lang="ru">' in r.text
    assert "Обзор" in c.get("/console").text
    size = re.search(r'id="base-size">([^<]+)<', c.get("/console").text)
    assert size is not None and "," not in size.group(1)  # 1 500 in Russian, never 1,500


def test_promote_and_rollback_need_a_confirmation(console_world: World, tmp_path: Path) -> None:
    """On a registry of its own (two churn versions): the first POST only asks; the confirmed one moves the
    alias through bundles.kinds and the service loads the version; rollback gives it back."""
    from mlflow import MlflowClient

    from features.store import latest_snapshot
    from tests.serving.conftest import FEATURES, register_churn

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    frame = latest_snapshot(console_world.home).read()
    register_churn(uri, frame, FEATURES, seed=0)
    register_churn(uri, frame, FEATURES, seed=1)
    client = MlflowClient(tracking_uri=uri)
    before = str(client.get_model_version_by_alias("churn", "champion").version)
    other = "1" if before == "2" else "2"
    settings = {"tracking_uri": uri, "model_cache_dir": tmp_path / "cache", "recs_model": None, "required_models": []}
    with TestClient(console_world.client(**settings).app) as c:
        sign_in(c, "admin")
        token = csrf_of(c)
        asked = c.post("/console/models/churn/promote", data={"csrf_token": token, "version": other})
        assert asked.status_code == 200 and 'name="confirm" value="yes"' in asked.text
        assert str(client.get_model_version_by_alias("churn", "champion").version) == before  # nothing moved yet
        done = c.post("/console/models/churn/promote", data={"csrf_token": token, "version": other, "confirm": "yes"})
        assert done.status_code == 200 and "Done" in done.text, done.text
        assert str(client.get_model_version_by_alias("churn", "champion").version) == other
        served = c.get("/v1/models", headers=headers("admin")).json()["models"]["churn"]["loaded"]["version"]
        assert served == other
        back = c.post("/console/models/churn/rollback", data={"csrf_token": token, "confirm": "yes"})
        assert back.status_code == 200 and "Done" in back.text
        assert str(client.get_model_version_by_alias("churn", "champion").version) == before
        bad = c.post("/console/models/churn/promote", data={"csrf_token": token, "version": "x", "confirm": "yes"})
        assert bad.status_code == 422 and "version" in bad.text


def test_every_console_route_has_a_row_in_operations() -> None:
    """docs/operations.md lists each console route with the scope it needs (## The console's routes)."""
    text = OPERATIONS.read_text(encoding="utf-8").split("#### Console routes and scopes", 1)[1]
    rows = {(m, p.strip("`")) for m, p in re.findall(r"^\| (GET|POST) \| (`[^`]+`) \|", text, re.M)}
    mine = set()
    for r in routes():
        for method in sorted(getattr(r, "methods", None) or {"GET"}):
            if method != "HEAD":
                mine.add((method, r.path + ("/{path}" if r.__class__.__name__ == "Mount" else "")))
    assert mine == rows


def test_the_monitor_s_flags_and_the_nightly_run_reach_admins_only(
    console_app: FastAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``kairos monitor`` and ``kairos nightly`` wrote (their files' layout) on the overview and the model
    page; a campaign key sees that they exist for admins, not the flags."""
    import serving.console.data as data

    summary = {
        "generated_at": "2026-01-02T03:04:05+00:00",
        "models": {
            "churn": {
                "attention": True,
                "why": ["churn: PSI 0.31 on recency_days"],
                "drift": {"psi_max": 0.31, "psi_weighted": 0.12},
                "performance": {"roc_auc": {"kairos": 0.71, "baseline:rfm": 0.66}, "recorded_roc_auc": 0.74},
            }
        },
        "attention": ["churn: PSI 0.31 on recency_days"],
    }
    run = {
        "status": "done",
        "created_at": "2026-01-02T01:00:00+00:00",
        "steps": [{"name": "retrain", "status": "skipped"}],
    }
    (tmp_path / "latest.json").write_text(orjson.dumps(summary).decode(), encoding="utf-8")
    monkeypatch.setattr(data, "latest_summary_path", lambda home: tmp_path / "latest.json")
    monkeypatch.setattr(data, "last_nightly", lambda home: run)
    import serving.console.models_data as models_data

    monkeypatch.setattr(models_data, "monitor_summary", data.monitor_summary)
    admin = _client(console_app)
    sign_in(admin, "admin")
    page = admin.get("/console").text
    assert "PSI 0.31 on recency_days" in page and "<code>retrain</code>" in page
    assert "needs attention" in admin.get("/console/models").text
    model = admin.get("/console/models/churn").text
    assert "0.710" in model and "baseline:rfm" in model
    marketer = _client(console_app)
    sign_in(marketer, "campaign")
    assert "PSI 0.31" not in marketer.get("/console").text
