"""The console's routes: server-rendered pages (Jinja2), htmx fragments, the sign-in, the static assets.

Routes are Starlette routes with their full paths (not API operations: no OpenAPI entry, no ``X-API-Key``):
every page needs a signed-in session (:mod:`serving.console.auth`) whose key holds the scope the API asks
for the same data, and every POST carries the session's CSRF token (a form field, or the ``X-CSRF-Token``
header htmx sends). Handlers that read data are plain ``def``: Starlette runs them in the threadpool.

A new page (Audiences, Campaigns) is a :class:`Page` in :data:`NAV`, a handler in :func:`routes` and a
template extending ``base.html``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from bundles.errors import ModelIntegrityError, ModelNotFoundError
from features.contract import Channel
from serving.console import charts, models_data
from serving.console import data as d
from serving.console.auth import (
    COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    LANG_COOKIE,
    SIGN_IN_SCOPES,
    Sessions,
    check_csrf,
    principal_of,
)
from serving.console.i18n import (
    LANGUAGE_NAMES,
    LANGUAGES,
    N_,
    _,
    filters,
    gettext_for,
    in_language,
    negotiate,
    ngettext_for,
)
from serving.keys import Principal, Scope
from serving.routers import customers as customers_router
from serving.routers import decisions as decisions_router
from serving.routers import offers as offers_router
from serving.routers import recs as recs_router
from serving.routers import scores as scores_router
from serving.schemas import CustomerRecRequest, NextBestRequest, PermissionRequest, ScoreRequest, SendTimeRequest
from serving.settings import Settings
from serving.state import Services

log = logging.getLogger("kairos.serving.console")

HERE = Path(__file__).resolve().parent
PREFIX = "/console"
MISSING_HEADER = "X-Console-Missing-Translations"
# Vega compiles its expressions with Function(): 'unsafe-eval' for scripts; nothing is loaded from elsewhere.
CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)
MAX_FORM_BYTES = 8 * 1024


@dataclass(frozen=True)
class Page:
    """An entry of the navigation: its path, title (translated when shown) and the scope it needs."""

    name: str
    path: str
    title: str
    scope: Scope


NAV: list[Page] = [
    Page("overview", PREFIX, N_("Overview"), Scope.CAMPAIGN),
    Page("segments", f"{PREFIX}/segments", N_("Segments"), Scope.CAMPAIGN),
    Page("customers", f"{PREFIX}/customers", N_("Customers"), Scope.CAMPAIGN),
    Page("models", f"{PREFIX}/models", N_("Models"), Scope.ADMIN),
]
SCOPE_OF = {p.name: p.scope for p in NAV}

# d3-format locales for Vega's number formats (thousands and decimal separators of each language)
NUMBER_LOCALES = {
    "en": {"decimal": ".", "thousands": ",", "grouping": [3], "currency": ["£", ""]},
    "ru": {"decimal": ",", "thousands": "\u00a0", "grouping": [3], "currency": ["", "\u00a0£"]},
}


class Console:
    """The templates of every language and the session signer, built once per app."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sessions = Sessions(settings)
        self.envs = {lang: self._env(lang) for lang in LANGUAGES}

    @staticmethod
    def _env(lang: str) -> jinja2.Environment:
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(HERE / "templates")),
            autoescape=jinja2.select_autoescape(["html"]),
            extensions=["jinja2.ext.i18n"],
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.install_gettext_callables(gettext_for(lang), ngettext_for(lang), newstyle=True)  # type: ignore[attr-defined]
        env.filters.update(filters(lang))
        env.filters["tojson_attr"] = lambda v: json.dumps(v, separators=(",", ":"))
        env.globals.update(nav=NAV, languages=LANGUAGES, language_names=LANGUAGE_NAMES, csrf_field=CSRF_FIELD)
        return env


def _console(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _lang(request: Request) -> str:
    return negotiate(request.cookies.get(LANG_COOKIE), request.headers.get("accept-language"))


def _is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def render(
    request: Request,
    template: str,
    context: dict[str, Any],
    principal: Principal | None,
    status: int = 200,
    page: str | None = None,
) -> HTMLResponse:
    """A page or fragment in the request's language, with the session cookie (a fresh one when absent)."""
    console = _console(request)
    session = console.sessions.read(request)
    new_session = session is None
    if session is None:
        session = console.sessions.fresh()
    lang = _lang(request)
    with in_language(lang) as missing:
        body = (
            console.envs[lang]
            .get_template(template)
            .render(
                **context,
                request_path=request.url.path,
                principal=principal,
                can=(lambda scope: principal is not None and principal.allows(Scope(scope))),
                page=page,
                lang=lang,
                csrf=session.csrf,
                number_locale=NUMBER_LOCALES[lang],
            )
        )
    response = HTMLResponse(body, status_code=status)
    _secure_headers(response)
    if missing:
        response.headers[MISSING_HEADER] = str(len(missing))
        log.warning("console strings without a translation", extra={"language": lang, "count": len(missing)})
    if new_session:
        console.sessions.write(request, response, session)
    return response


def _secure_headers(response: Response) -> None:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"  # pages hold customer data


def _sign_in_redirect(request: Request) -> Response:
    target = f"{PREFIX}/sign-in?next={quote(request.url.path)}"
    if _is_htmx(request):
        return Response(status_code=401, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


Handler = Callable[[Request, Principal], Response]


def guarded(scope: Scope, page: str | None = None) -> Callable[[Handler], Callable[[Request], Response]]:
    """A handler that runs only for a signed-in key holding ``scope`` (else the sign-in page, or 403)."""

    def wrap(handler: Handler) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:
            console = _console(request)
            principal = principal_of(request, console.sessions.read(request))
            if principal is None:
                return _sign_in_redirect(request)
            if not principal.allows(scope):
                return render(request, "forbidden.html", {"scope": scope.value}, principal, status=403, page=page)
            with in_language(_lang(request)):  # chart titles and messages built here, in the page's language
                return handler(request, principal)

        endpoint.__name__ = handler.__name__
        return endpoint

    return wrap


async def _form(request: Request) -> dict[str, str]:
    """An url-encoded form (the console's only kind), at most :data:`MAX_FORM_BYTES`; first value per field."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=20)
    return {k: v[0] for k, v in parsed.items()}


def _csrf_refused(request: Request) -> Response:
    with in_language(_lang(request)):
        text = _("The form expired or did not come from this console; reload the page and try again.")
    response = HTMLResponse(f"<p class='error'>{jinja2.utils.markupsafe.escape(text)}</p>", status_code=403)
    _secure_headers(response)
    return response


def _safe_next(target: str | None) -> str:
    """Only a path of the console itself (no open redirect)."""
    if target and target.startswith(PREFIX) and "//" not in target and "\\" not in target:
        return target
    return PREFIX


# -- sign-in, sign-out, language


def sign_in_page(request: Request) -> Response:
    nxt = _safe_next(request.query_params.get("next"))
    return render(request, "sign_in.html", {"next": nxt, "error": None}, None)


async def sign_in(request: Request) -> Response:
    console = _console(request)
    services = _services(request)
    form = await _form(request)
    session = console.sessions.read(request)
    try:
        check_csrf(session, form.get(CSRF_FIELD))
    except Exception:
        return _csrf_refused(request)
    key = form.get("api_key", "").strip()
    found = services.keys.identify(key) if key else None
    nxt = _safe_next(form.get("next"))
    if found is None or not any(found[0].allows(s) for s in SIGN_IN_SCOPES):
        with in_language(_lang(request)):
            error = (
                _("This key is not valid.")
                if found is None
                else _("This key may not use the console: it needs the campaign or admin scope.")
            )
        log.info("console sign-in refused", extra={"key": found[0].name if found else None})
        return render(request, "sign_in.html", {"next": nxt, "error": error}, None, status=401)
    wait = await services.limiter.take_async(found[0].name, found[1])
    if wait > 0:
        return Response(status_code=429, headers={"Retry-After": str(max(1, int(wait + 0.999)))})
    log.info("console sign-in", extra={"key": found[0].name})
    response = RedirectResponse(nxt, status_code=303)
    console.sessions.write(request, response, console.sessions.fresh(found[0].name))  # a new CSRF token too
    return response


async def sign_out(request: Request) -> Response:
    console = _console(request)
    form = await _form(request)
    session = console.sessions.read(request)
    try:
        check_csrf(session, form.get(CSRF_FIELD))
    except Exception:
        return _csrf_refused(request)
    response = RedirectResponse(f"{PREFIX}/sign-in", status_code=303)
    console.sessions.write(request, response, console.sessions.fresh())
    return response


async def language(request: Request) -> Response:
    console = _console(request)
    form = await _form(request)
    try:
        check_csrf(console.sessions.read(request), form.get(CSRF_FIELD))
    except Exception:
        return _csrf_refused(request)
    lang = form.get("lang", "")
    response = RedirectResponse(_safe_next(form.get("next")), status_code=303)
    if lang in LANGUAGES:
        response.set_cookie(
            LANG_COOKIE,
            lang,
            max_age=365 * 86400,
            path=PREFIX,
            samesite="strict",
            httponly=True,
            secure=request.url.scheme == "https",
        )
    return response


# -- pages


@guarded(Scope.CAMPAIGN, "overview")
def overview(request: Request, principal: Principal) -> Response:
    o = d.overview(_services(request))
    specs: dict[str, Any] = {}
    for column, title in (("lifecycle", _("Customers by lifecycle stage")), ("rfm_segment", _("Customers by segment"))):
        sizes = o["sizes"].get(column) or {}
        specs[f"sizes_{column}"] = charts.bars(
            title, [{"segment": k, "customers": v} for k, v in sizes.items()], "segment", "customers", _("Customers")
        )
        if o["matrix"].get(column):
            specs[f"moves_{column}"] = charts.transitions(o["matrix"][column])
    if o.get("contactable"):
        specs["contactable"] = charts.bars(
            _("Share contactable per channel"),
            [{"channel": k, "share": v} for k, v in o["contactable"].items()],
            "channel",
            "share",
            _("Share of the base"),
            percent=True,
        )
    show_ops = principal.allows(Scope.ADMIN)  # the monitor's figures are the API's /metrics: admin
    return render(request, "overview.html", {"o": o, "specs": specs, "show_ops": show_ops}, principal, page="overview")


@guarded(Scope.CAMPAIGN, "segments")
def segments(request: Request, principal: Principal) -> Response:
    s = d.segments(_services(request))
    titles = {"lifecycle": _("Lifecycle stages over snapshots"), "rfm_segment": _("RFM segments over snapshots")}
    specs = {f"trend_{c}": charts.trend(rows, titles[c]) for c, rows in s["trend"].items() if rows}
    return render(request, "segments.html", {"s": s, "specs": specs}, principal, page="segments")


@guarded(Scope.CAMPAIGN, "customers")
def customers(request: Request, principal: Principal) -> Response:
    return render(request, "customers.html", {"query": "", "result": None}, principal, page="customers")


@guarded(Scope.CAMPAIGN, "customers")
def customer_find(request: Request, principal: Principal) -> Response:
    """The search box's answer (htmx fragment): the customer's page address, or why there is none."""
    query = request.query_params.get("customer_id", "").strip()[:256]
    if not query:
        return render(request, "fragments/find.html", {"found": None, "query": query}, principal)
    services = _services(request)
    try:
        key = services.store.resolve([query])[0]
    except d.OnlineStoreUnavailable:
        key = None
    found = f"{PREFIX}/customers/{quote(query, safe='')}" if key is not None else None
    if found and _is_htmx(request):
        return Response(status_code=200, headers={"HX-Redirect": found})
    return render(request, "fragments/find.html", {"found": found, "query": query}, principal)


def _call(fn: Callable[..., Response], *args: Any) -> dict[str, Any] | d.Unavailable:
    return d.api(lambda: fn(*args))


@guarded(Scope.CAMPAIGN, "customers")
def customer(request: Request, principal: Principal) -> Response:
    services = _services(request)
    cid = request.path_params["customer_id"]
    rid = d.request_id()
    profile = _call(customers_router.profile, cid, services, rid, principal)
    if isinstance(profile, d.Unavailable):
        status = profile.status if profile.status in (404, 503) else 500
        return render(request, "customer_missing.html", {"cid": cid, "why": profile}, principal, status, "customers")
    key = profile["customer_key"]
    scores = _call(
        scores_router.scores,
        ScoreRequest.model_validate({"customer_ids": [cid], "reasons": True}),
        services,
        rid,
        principal,
    )
    item = scores["items"][0] if isinstance(scores, dict) else None
    offer = _call(
        offers_router.next_best, NextBestRequest.model_validate({"customer_id": cid}), services, rid, principal
    )
    recs: dict[str, Any] | d.Unavailable = d.needs(principal, Scope.STOREFRONT) or _call(
        recs_router.for_customer,
        CustomerRecRequest.model_validate({"customer_id": cid, "k": 5}),
        services,
        rid,
        principal,
    )
    segs = profile.get("segments") or {}
    channels = [c.value for c in Channel]
    consent = {ch: profile["features"].get(f"consent_{ch}") for ch in channels}
    chosen = next((ch for ch in channels if consent.get(ch) == 1.0), channels[0])
    slot = _call(
        decisions_router.send_time,
        SendTimeRequest.model_validate({"customer_ids": [cid], "channel": chosen}),
        services,
        rid,
        principal,
    )
    slot_item = slot["items"][0] if isinstance(slot, dict) else None
    specs: dict[str, Any] = {}
    if item is not None:
        rows = [
            {"model": m, "probability": p, "band": item["bands"].get(m) or "—"}
            for m, p in item["probabilities"].items()
            if p is not None
        ]
        if rows:
            specs["scores"] = charts.probabilities(rows)
    curve = d.send_time_curve(services, key, chosen, segs.get("lifecycle"))
    if curve is not None:
        specs["sendtime"] = charts.send_time(
            curve["values"],
            slot_item["best_local"] if slot_item else None,
            slot_item["second_local"] if slot_item else None,
            chosen,
        )
    home = services.settings.data_home
    context = {
        "cid": cid,
        "profile": profile,
        "scores": scores,
        "item": item,
        "offer": offer,
        "recs": recs,
        "slot": slot if isinstance(slot, d.Unavailable) else slot_item,
        "chosen": chosen,
        "curve": curve,
        "consent": consent,
        "consent_history": d.consent_history(home, key),
        "timeline": d.timeline(home, key),
        "segment_history": d.segment_history(home, key),
        "specs": specs,
        "channels": channels,
    }
    return render(request, "customer.html", context, principal, page="customers")


@guarded(Scope.CAMPAIGN, "customers")
def customer_contact(request: Request, principal: Principal) -> Response:
    """May I contact this customer now, per channel; else when (htmx fragment, asked again on demand)."""
    services = _services(request)
    cid = request.path_params["customer_id"]
    body = PermissionRequest.model_validate({"items": [{"customer_id": cid, "channel": c.value} for c in Channel]})
    answer = _call(decisions_router.permissions, body, services, d.request_id(), principal)
    return render(request, "fragments/contact.html", {"answer": answer}, principal)


@guarded(Scope.ADMIN, "models")
def models(request: Request, principal: Principal) -> Response:
    rows = models_data.model_list(_services(request))
    return render(request, "models.html", {"models": rows}, principal, page="models")


@guarded(Scope.ADMIN, "models")
def model(request: Request, principal: Principal) -> Response:
    detail = models_data.model_detail(_services(request), request.path_params["kind"])
    if detail is None:
        return render(request, "not_found.html", {}, principal, status=404, page="models")
    return render(request, "model.html", {"m": detail}, principal, page="models")


@guarded(Scope.ADMIN, "models")
def model_plot(request: Request, principal: Principal) -> Response:
    p = request.path_params
    path = models_data.plot_file(_services(request), p["kind"], p["version"], p["plot"])
    if path is None:
        return Response(status_code=404)
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


async def model_action(request: Request) -> Response:
    """Promote a version or roll back ``@champion`` (admin): the first POST answers a confirmation, the
    second (``confirm=yes``) moves the alias through :mod:`bundles.kinds` and reloads the model."""
    console = _console(request)
    principal = principal_of(request, console.sessions.read(request))
    if principal is None:
        return _sign_in_redirect(request)
    form = await _form(request)
    try:
        check_csrf(console.sessions.read(request), form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER))
    except Exception:
        return _csrf_refused(request)
    if not principal.allows(Scope.ADMIN):
        return render(request, "forbidden.html", {"scope": Scope.ADMIN.value}, principal, status=403)
    services = _services(request)
    kind = request.path_params["kind"]
    action = request.path_params["action"]
    version = form.get("version", "")
    if kind not in services.slots or action not in ("promote", "rollback"):
        return render(request, "not_found.html", {}, principal, status=404)
    if action == "promote" and not models_data.VERSION.match(version):
        with in_language(_lang(request)):
            error = _("version: give a version number")
        return render(request, "fragments/action.html", {"error": error, "done": None}, principal, status=422)
    context = {"kind": kind, "action": action, "version": version, "error": None, "done": None}
    if form.get("confirm") != "yes":
        return render(request, "fragments/confirm.html", context, principal)
    try:
        if action == "promote":
            done = await run_in_threadpool(models_data.promote, services, kind, version)
        else:
            done = await run_in_threadpool(models_data.rollback, services, kind)
    except (ModelNotFoundError, ModelIntegrityError) as exc:
        return render(request, "fragments/action.html", context | {"error": str(exc)}, principal, status=409)
    log.info("console model action", extra={"key": principal.name, "model": kind, "action": action})
    return render(request, "fragments/action.html", context | {"done": done}, principal)


def home_redirect(request: Request) -> Response:
    """``GET /``: browsers go to the console."""
    return RedirectResponse(PREFIX, status_code=307)


def routes() -> list[BaseRoute]:
    """Every console route, with its full path (the access log and metrics label requests by it)."""
    return [
        Route(PREFIX, overview, methods=["GET"], name="console_overview"),
        Route(f"{PREFIX}/sign-in", sign_in_page, methods=["GET"]),
        Route(f"{PREFIX}/sign-in", sign_in, methods=["POST"]),
        Route(f"{PREFIX}/sign-out", sign_out, methods=["POST"]),
        Route(f"{PREFIX}/language", language, methods=["POST"]),
        Route(f"{PREFIX}/segments", segments, methods=["GET"]),
        Route(f"{PREFIX}/customers", customers, methods=["GET"]),
        Route(f"{PREFIX}/customers/find", customer_find, methods=["GET"]),
        Route(f"{PREFIX}/customers/{{customer_id}}", customer, methods=["GET"]),
        Route(f"{PREFIX}/customers/{{customer_id}}/contact", customer_contact, methods=["GET"]),
        Route(f"{PREFIX}/models", models, methods=["GET"]),
        Route(f"{PREFIX}/models/{{kind}}", model, methods=["GET"]),
        Route(f"{PREFIX}/models/{{kind}}/versions/{{version}}/plots/{{plot}}", model_plot, methods=["GET"]),
        Route(f"{PREFIX}/models/{{kind}}/{{action}}", model_action, methods=["POST"]),
        Mount(f"{PREFIX}/static", StaticFiles(directory=str(HERE / "static")), name="console_static"),
        Route("/", home_redirect, methods=["GET"]),
    ]


__all__ = ["COOKIE", "NAV", "Console", "Page", "routes"]
