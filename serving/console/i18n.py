"""The console's languages: gettext catalogues (Babel), one Jinja2 environment per locale, numbers and dates
formatted in the locale.

The catalogues live in ``locale/<lang>/LC_MESSAGES/messages.po`` beside this file, compiled to ``messages.mo``
and shipped compiled (``python -m serving.console.i18n compile`` after editing a ``.po``; a test checks that
every ``.mo`` matches its ``.po`` and that every string of the templates and of the console's code is
translated). English is the source language: its strings are the message ids.

A string looked up in a language that lacks it renders in English and is counted for the request
(:func:`missing_in_request`): the console answers such a page with an ``X-Console-Missing-Translations``
header, which the browser tests refuse.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from babel import Locale
from babel.dates import format_date, format_datetime, get_timezone
from babel.numbers import format_currency, format_decimal, format_percent
from babel.support import NullTranslations, Translations

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DOMAIN = "messages"
LANGUAGES = ("en", "ru")  # the first is the source language and the default
DEFAULT = LANGUAGES[0]
LANGUAGE_NAMES = {"en": "English", "ru": "Русский"}

_missing: ContextVar[set[str] | None] = ContextVar("console_missing_translations", default=None)
_language: ContextVar[str] = ContextVar("console_language", default=DEFAULT)


@lru_cache(maxsize=len(LANGUAGES))
def catalogue(lang: str) -> NullTranslations:
    """The compiled catalogue of ``lang`` (English: none, the ids are the English text)."""
    if lang == DEFAULT:
        return NullTranslations()
    found = Translations.load(str(LOCALE_DIR), [lang], domain=DOMAIN)
    if not isinstance(found, Translations):
        raise FileNotFoundError(f"no compiled catalogue for {lang!r} in {LOCALE_DIR} (messages.mo)")
    return found


def _note_missing(msgid: str) -> None:
    seen = _missing.get()
    if seen is not None:
        seen.add(msgid)


def gettext_for(lang: str) -> Callable[[str], str]:
    """``gettext`` in ``lang`` that counts the ids it cannot translate."""
    cat = catalogue(lang)
    if lang == DEFAULT:
        return cat.gettext

    def gettext(msgid: str) -> str:
        text = cat.gettext(msgid)
        if text == msgid and msgid.strip():
            _note_missing(msgid)
        return text

    return gettext


def ngettext_for(lang: str) -> Callable[[str, str, int], str]:
    cat = catalogue(lang)
    if lang == DEFAULT:
        return cat.ngettext

    def ngettext(singular: str, plural: str, n: int) -> str:
        text = cat.ngettext(singular, plural, n)
        if text in (singular, plural):
            _note_missing(singular)
        return text

    return ngettext


def N_(msgid: str) -> str:  # gettext's name for "extract, translate when shown"
    return msgid


def _(msgid: str) -> str:
    """``gettext`` in the current request's language (for strings built in Python: chart titles, reasons)."""
    return gettext_for(_language.get())(msgid)


@contextmanager
def in_language(lang: str) -> Iterator[set[str]]:
    """Render in ``lang`` for the block; yields the set of ids that had no translation. Inside a block of the
    same language, the outer block's set (a handler's strings and its template's count together)."""
    outer = _missing.get()
    if outer is not None and _language.get() == lang:
        yield outer
        return
    seen: set[str] = set()
    token_missing = _missing.set(seen)
    token_lang = _language.set(lang)
    try:
        yield seen
    finally:
        _missing.reset(token_missing)
        _language.reset(token_lang)


def negotiate(cookie: str | None, accept_language: str | None) -> str:
    """The language: the user's choice (cookie), else the browser's first supported one, else English."""
    if cookie in LANGUAGES:
        return str(cookie)
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()[:2]
        if tag in LANGUAGES:
            return tag
    return DEFAULT


# -- numbers and dates in the locale (Jinja2 filters)


def _when(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        t = value
    else:
        try:
            t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def filters(lang: str) -> dict[str, Callable[..., str]]:
    """The formatting filters of one locale; ``None`` (and NaN) print as an em dash."""
    loc = Locale.parse(lang)

    def missing(v: Any) -> bool:
        return v is None or (isinstance(v, float) and v != v)

    def num(v: Any, digits: int = 0) -> str:
        if missing(v):
            return "—"
        pattern = "#,##0" + ("." + "0" * digits if digits else "")
        return format_decimal(v, format=pattern, locale=loc)

    def pct(v: Any, digits: int = 1) -> str:
        if missing(v):
            return "—"
        return format_percent(v, format="#,##0" + ("." + "0" * digits if digits else "") + "%", locale=loc)

    def money(v: Any, currency: str = "GBP") -> str:
        if missing(v):
            return "—"
        return format_currency(v, currency, locale=loc)

    def dt(v: Any, tz: str | None = None) -> str:
        t = _when(v)
        if t is None:
            return "—"
        try:
            zone = get_timezone(tz or "UTC")
        except LookupError:  # a zone name the tz database does not know: UTC, as the API's instants are
            zone = get_timezone("UTC")
        return format_datetime(t, format="medium", tzinfo=zone, locale=loc)

    def day(v: Any) -> str:
        t = _when(v)
        return "—" if t is None else format_date(t.date(), format="medium", locale=loc)

    return {"num": num, "pct": pct, "money": money, "dt": dt, "day": day}


def _compile() -> int:
    """Compile every ``.po`` beside this file to its ``.mo`` (Babel's own compiler)."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    for po in sorted(LOCALE_DIR.glob(f"*/LC_MESSAGES/{DOMAIN}.po")):
        with po.open("rb") as f:
            cat = read_po(f)
        with po.with_suffix(".mo").open("wb") as f:
            write_mo(f, cat)
        print(f"compiled {po.relative_to(LOCALE_DIR)}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] != ["compile"]:
        print("usage: python -m serving.console.i18n compile", file=sys.stderr)
        sys.exit(2)
    sys.exit(_compile())
