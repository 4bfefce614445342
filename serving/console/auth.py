"""Signing in to the console: an API key of ``campaign`` or ``admin`` scope becomes a signed session cookie.

The cookie (``kairos_console``) is signed with the settings' ``console_secret`` (itsdangerous), HttpOnly,
SameSite=Strict, Secure over HTTPS, and expires after ``console_session_hours``. It holds the key's *name*
and a CSRF token, never the key: every request looks the name up in the configured keys again, so a key
removed from ``KAIROS_API_KEYS`` signs its sessions out at the next restart, and the scopes are the key's
scopes now. A browser that is not signed in still gets a cookie with a CSRF token only (the sign-in form is
protected like every other form).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from serving.keys import Principal, Scope
from serving.settings import Settings

COOKIE = "kairos_console"
LANG_COOKIE = "kairos_lang"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SIGN_IN_SCOPES = (Scope.CAMPAIGN, Scope.ADMIN)  # the marketer's key, or an operator's


class SignInRequired(Exception):
    """The request needs a signed-in session (the route answers with the sign-in page)."""


class Forbidden(Exception):
    """The signed-in key lacks the scope a page or action needs."""

    def __init__(self, scope: Scope) -> None:
        super().__init__(scope.value)
        self.scope = scope


class CsrfRefused(Exception):
    """A form or htmx request without the session's CSRF token."""


@dataclass(frozen=True)
class Session:
    """What the cookie says: the CSRF token and, once signed in, the key's name."""

    csrf: str
    key_name: str | None = None


class Sessions:
    """Reads and writes the signed session cookie."""

    def __init__(self, settings: Settings) -> None:
        secret = settings.console_secret.get_secret_value() if settings.console_secret else secrets.token_hex(32)
        self._signer = URLSafeTimedSerializer(secret, salt="kairos-console-session")
        self.max_age = int(settings.console_session_hours * 3600)

    def read(self, request: Request) -> Session | None:
        raw = request.cookies.get(COOKIE)
        if not raw:
            return None
        try:
            data: Any = self._signer.loads(raw, max_age=self.max_age)
        except BadSignature:  # tampered, expired (SignatureExpired is a BadSignature) or another secret's
            return None
        if not isinstance(data, dict) or not isinstance(data.get("csrf"), str):
            return None
        name = data.get("key")
        return Session(data["csrf"], name if isinstance(name, str) else None)

    def write(self, request: Request, response: Response, session: Session) -> None:
        value = self._signer.dumps({"csrf": session.csrf, "key": session.key_name})
        response.set_cookie(
            COOKIE,
            value,
            max_age=self.max_age,
            path="/console",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    @staticmethod
    def fresh(key_name: str | None = None) -> Session:
        return Session(secrets.token_urlsafe(32), key_name)


def principal_of(request: Request, session: Session | None) -> Principal | None:
    """The signed-in key as configured now, or None (not signed in, or the key is gone or lost its scope)."""
    if session is None or session.key_name is None:
        return None
    principal: Principal | None = request.app.state.services.keys.named(session.key_name)
    if principal is None or not any(principal.allows(s) for s in SIGN_IN_SCOPES):
        return None
    return principal


def check_csrf(session: Session | None, given: str | None) -> None:
    """The form's (or htmx header's) token must equal the session's; compared in constant time."""
    if session is None or not given or not hmac.compare_digest(session.csrf.encode(), given.encode()):
        raise CsrfRefused()
