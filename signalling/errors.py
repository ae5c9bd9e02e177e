"""The control plane's exceptions, and the one place that maps them to wire error codes.

Exception tree (PROTOCOL.md, Transport)::

    SignallingError            any refusal the protocol can express; carries ``code``
    ├── BadRequest             bad_request: not JSON, unknown type, missing or wrong field
    ├── Unauthorized           unauthorized: bad token (the server then closes with 4401)
    ├── Forbidden              forbidden: the site's role may not do this
    ├── NotFound               not_found: no such site, tile or preset
    ├── Conflict               conflict: the conference's state does not allow it now
    ├── TooLarge               too_large: frame over the size limit
    └── RateLimited            rate_limited: too many messages from one session

Anything else raised while handling a message is a bug: the server logs it with its traceback
and answers ``internal`` (see :func:`error_code`).
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "BadRequest",
    "Conflict",
    "Forbidden",
    "NotFound",
    "RateLimited",
    "SignallingError",
    "TooLarge",
    "Unauthorized",
    "error_code",
]


class SignallingError(Exception):
    """A refusal that the protocol can express; ``str(exc)`` is the human sentence."""

    code: ClassVar[str] = "internal"

    def __init__(self, message: str, *, re: str | int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.re = re  # the id of the request it answers, when it could be read


class BadRequest(SignallingError):
    code = "bad_request"


class Unauthorized(SignallingError):
    code = "unauthorized"


class Forbidden(SignallingError):
    code = "forbidden"


class NotFound(SignallingError):
    code = "not_found"


class Conflict(SignallingError):
    code = "conflict"


class TooLarge(SignallingError):
    code = "too_large"


class RateLimited(SignallingError):
    code = "rate_limited"


def error_code(exc: BaseException) -> str:
    """The wire error code for *exc*: its own for a :class:`SignallingError`, else ``internal``."""
    if isinstance(exc, SignallingError):
        return exc.code
    return "internal"
