"""Site join tokens: issued at random, stored only as salted hashes (ARCHITECTURE.md, config/).

A site proves who it is with one bearer token in its ``hello`` (PROTOCOL.md, Session). The
server keeps only ``sha256$<salt-hex>$<digest-hex>`` with ``digest = SHA-256(salt || token)``,
``salt`` 16 random bytes and the token encoded as UTF-8.

Why a fast hash and no slow KDF (PBKDF2, scrypt, Argon2): a slow KDF exists to protect
*low-entropy, human-chosen* passwords against offline guessing. Our tokens are never chosen by
people: :func:`new_token` draws 128 bits from :mod:`secrets` (``token_urlsafe(16)``). Guessing
one means searching 2**128 candidates; at 10**12 SHA-256 evaluations per second that is about
10**19 years, so slowing each evaluation down would buy nothing. The salt still stops one
precomputed table from matching every site at once and hides two sites that share a token.
Comparisons use :func:`hmac.compare_digest`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Collection, Mapping

from signalling.model import SiteId

__all__ = [
    "HASH_SCHEME",
    "MAX_TOKEN_CHARS",
    "TokenBook",
    "hash_token",
    "new_token",
    "parse_hash",
    "verify",
]

#: The only scheme written and accepted.
HASH_SCHEME = "sha256"
#: Presented tokens longer than this are refused without hashing (ours are 22 characters).
MAX_TOKEN_CHARS = 512
_SALT_BYTES = 16


def new_token() -> str:
    """Return a fresh random token: 128 bits, URL-safe base64, 22 characters."""
    return secrets.token_urlsafe(16)


def hash_token(token: str, salt: bytes | None = None) -> str:
    """Return ``sha256$<salt-hex>$<digest-hex>`` for *token* (a random salt unless given)."""
    if salt is None:
        salt = secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.sha256(salt + token.encode("utf-8")).hexdigest()
    return f"{HASH_SCHEME}${salt.hex()}${digest}"


def parse_hash(stored: str) -> tuple[bytes, bytes]:
    """Split a stored hash into ``(salt, digest)``; :class:`ValueError` saying why if malformed."""
    parts = stored.split("$")
    if len(parts) != 3:
        raise ValueError("expected 'sha256$<salt-hex>$<digest-hex>'")
    scheme, salt_hex, digest_hex = parts
    if scheme != HASH_SCHEME:
        raise ValueError(f"unknown hash scheme {scheme!r} (expected {HASH_SCHEME!r})")
    try:
        salt = bytes.fromhex(salt_hex)
        digest = bytes.fromhex(digest_hex)
    except ValueError:
        raise ValueError("salt and digest must be hexadecimal") from None
    if not salt:
        raise ValueError("empty salt")
    if len(digest) != hashlib.sha256().digest_size:
        raise ValueError("digest must be 32 bytes (64 hex digits)")
    return salt, digest


def _digest(salt: bytes, token: str) -> bytes:
    return hashlib.sha256(salt + token.encode("utf-8")).digest()


def verify(token: str, stored: str) -> bool:
    """Whether *token* matches *stored*; a malformed *stored* hash never matches."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        return False
    try:
        salt, digest = parse_hash(stored)
    except ValueError:
        return False
    return hmac.compare_digest(_digest(salt, token), digest)


class TokenBook:
    """Maps a presented token to its site, for the few hundred sites of a district.

    Built from the configuration's hashes with the store's run-time overrides on top
    (``huishang token`` replaces a site's token without editing ``sites.toml``).
    :meth:`lookup` hashes the token once per site and compares every entry with
    :func:`hmac.compare_digest`, never stopping early: about 300 SHA-256 of a few dozen
    bytes, well under a millisecond, and its duration does not depend on which site matched.
    """

    __slots__ = ("_entries",)

    def __init__(self, hashes: Mapping[SiteId, str] | None = None) -> None:
        self._entries: dict[SiteId, tuple[bytes, bytes]] = {}
        for site_id, stored in (hashes or {}).items():
            self.set(site_id, stored)

    @classmethod
    def merged(
        cls,
        configured: Mapping[SiteId, str],
        overrides: Mapping[str, str],
        *,
        known: Collection[SiteId] | None = None,
    ) -> TokenBook:
        """Configured hashes with *overrides* (from the store) replacing them per site.

        Overrides for sites not in *known* (removed from the directory since) are ignored.
        """
        book = cls(configured)
        for site_id, stored in overrides.items():
            if known is None or site_id in known:
                book.set(SiteId(site_id), stored)
        return book

    def set(self, site_id: SiteId, stored: str) -> None:
        """Add or replace *site_id*'s hash (:class:`ValueError` if malformed)."""
        self._entries[site_id] = parse_hash(stored)

    def remove(self, site_id: SiteId) -> None:
        """Forget *site_id*'s token: it can no longer join."""
        self._entries.pop(site_id, None)

    def __contains__(self, site_id: object) -> bool:
        return site_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, token: str) -> SiteId | None:
        """The site whose token this is, or ``None``."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        found: SiteId | None = None
        encoded = token.encode("utf-8")
        for site_id, (salt, digest) in self._entries.items():
            if hmac.compare_digest(hashlib.sha256(salt + encoded).digest(), digest):
                found = site_id
        return found
