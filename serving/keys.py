"""API keys: generated once, stored only as a sha256, checked in constant time, each with scopes.

Make a key and the settings entry for it::

    python -m serving.keys new --name shop-frontend --scope storefront

prints the secret (give it to the caller; it is not stored anywhere) and the JSON entry to add to
``KAIROS_API_KEYS``. Scopes:

- ``storefront``: recommendations, events.
- ``campaign``: scores, customer profiles, events (and offers, send times and permissions as they land).
- ``consent``: consent changes (``consent`` and ``unsubscribe`` events).
- ``admin``: models, reload, metrics, readiness detail; also every other scope except ``pii``.
- ``pii``: profiles include the customer's personal data (e-mail, phone, name); add it to a key
  with ``campaign`` or ``admin`` only when the caller is entitled to it. Never implied: an admin key
  without it gets no personal data.

Which operation needs which scope: the table in ``docs/operations.md`` (a test checks the app against it).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import secrets
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

DEMO_KEY = "kairos-demo-key"  # documented, accepted only in development when no keys are configured
_PREFIX = "kairos_"


class Scope(StrEnum):
    STOREFRONT = "storefront"
    CAMPAIGN = "campaign"
    CONSENT = "consent"
    ADMIN = "admin"
    PII = "pii"


def hash_key(secret: str) -> str:
    """The sha256 (hex) under which a key is stored."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_key() -> str:
    """A fresh random key (256 bits)."""
    return _PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's name (safe to log) and its scopes."""

    name: str
    scopes: frozenset[Scope]

    def allows(self, scope: Scope) -> bool:
        """Whether the key holds ``scope``. Admin implies every scope but ``pii``: running the service is not
        an entitlement to customers' personal data, which must be granted by name."""
        return scope in self.scopes or (Scope.ADMIN in self.scopes and scope is not Scope.PII)


class KeyRing:
    """The configured keys; :meth:`identify` compares the caller's hash against every one in constant time."""

    def __init__(self, entries: Iterable[tuple[str, str, frozenset[Scope], float | None]]) -> None:
        self._entries = [(name, bytes.fromhex(digest), scopes, rate) for name, digest, scopes, rate in entries]

    def __len__(self) -> int:
        return len(self._entries)

    def named(self, name: str) -> Principal | None:
        """The principal of the configured key called ``name`` (a console session remembers the name, never
        the secret); None when no such key is configured any more."""
        for entry_name, _digest, scopes, _rate in self._entries:
            if entry_name == name:
                return Principal(entry_name, scopes)
        return None

    def identify(self, secret: str) -> tuple[Principal, float | None] | None:
        """The principal (and its own rate, if any) for ``secret``, or None. Every entry is compared, so the
        time taken does not tell which (or whether a) key matched."""
        given = hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()
        found: tuple[Principal, float | None] | None = None
        for name, digest, scopes, rate in self._entries:
            if hmac.compare_digest(given, digest) and found is None:
                found = (Principal(name, scopes), rate)
        return found


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.keys", description="Make an API key.")
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("new", help="print a new key and its KAIROS_API_KEYS entry")
    make.add_argument("--name", required=True)
    make.add_argument("--scope", action="append", required=True, choices=[s.value for s in Scope])
    hashed = sub.add_parser("hash", help="print the sha256 of an existing key read from stdin")
    hashed.add_argument("--name", required=True)
    hashed.add_argument("--scope", action="append", required=True, choices=[s.value for s in Scope])
    args = parser.parse_args(argv)
    secret = new_key() if args.command == "new" else sys.stdin.readline().strip()
    entry = {"name": args.name, "sha256": hash_key(secret), "scopes": sorted(set(args.scope))}
    if args.command == "new":
        print(f"key (give it to the caller; it is stored nowhere): {secret}")
    print(f"KAIROS_API_KEYS entry: {json.dumps(entry)}")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
