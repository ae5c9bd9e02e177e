"""Checked reading of TOML tables: every error names the file, the dotted key and the problem.

:class:`TableReader` wraps one parsed table. Each accessor checks the value's type and range
and remembers the key; :meth:`TableReader.finish` then rejects every key nobody asked for, so
a typo such as ``prot = 8080`` fails at start instead of being silently ignored.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Final, TypeVar

from web.tokens import parse_hash

__all__ = ["ConfigError", "TableReader"]

_T = TypeVar("_T")


class ConfigError(Exception):
    """A configuration problem: ``<file>: <key>: <problem>``.

    ``key`` is a dotted path into the file (``sites[3].role``, indexes from 0), or ``None`` when
    the problem is the file itself (unreadable, TOML syntax error with its line and column).
    """

    def __init__(self, file: Path, key: str | None, problem: str) -> None:
        self.file = file
        self.key = key
        self.problem = problem
        where = f"{file}: {key}" if key else str(file)
        super().__init__(f"{where}: {problem}")


class _Missing:
    pass


_MISSING: Final = _Missing()

_TOML_TYPES: Final[dict[type, str]] = {
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a float",
    dict: "a table",
    list: "an array",
}


def _describe(value: object) -> str:
    kind = _TOML_TYPES.get(type(value), "a date/time")
    if isinstance(value, dict | list):
        return kind
    return f"{kind} ({value!r})"


class TableReader:
    """One TOML table of one file, read key by key."""

    __slots__ = ("_data", "_used", "file", "key")

    def __init__(self, file: Path, key: str, data: Mapping[str, object]) -> None:
        self.file = file
        self.key = key
        self._data = data
        self._used: set[str] = set()

    @classmethod
    def load(cls, path: Path) -> TableReader:
        """Parse *path*; :class:`ConfigError` if it cannot be read or is not valid TOML."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(path, None, f"cannot read file: {exc.strerror or exc}") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(path, None, f"not UTF-8 text (byte {exc.start})") from None
        try:
            parsed = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(path, None, f"TOML syntax error: {exc}") from None
        return cls(path, "", parsed)

    # -- helpers ------------------------------------------------------------------------

    def _path(self, name: str) -> str:
        return f"{self.key}.{name}" if self.key else name

    def error(self, name: str | None, problem: str) -> ConfigError:
        """A :class:`ConfigError` for key *name* of this table (the table itself if ``None``)."""
        return ConfigError(self.file, self._path(name) if name else (self.key or None), problem)

    def has(self, name: str) -> bool:
        return name in self._data

    def raw(self, name: str) -> object:
        return self._data.get(name)

    def key_names(self) -> list[str]:
        return list(self._data)

    def _get(self, name: str, default: object) -> object:
        self._used.add(name)
        if name in self._data:
            return self._data[name]
        if default is _MISSING:
            raise self.error(name, "missing (required)")
        return default

    def _typed(self, name: str, kind: type[_T], default: object, what: str) -> _T:
        value = self._get(name, default)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise self.error(name, f"expected {what}, got {_describe(value)}")
        return value

    # -- scalars ------------------------------------------------------------------------

    def string(self, name: str, *, default: object = _MISSING, nonempty: bool = False) -> str:
        value = self._typed(name, str, default, "a string")
        if nonempty and not value.strip():
            raise self.error(name, "must not be empty")
        return value

    def optional_string(self, name: str) -> str | None:
        if name not in self._data:
            self._used.add(name)
            return None
        return self.string(name, nonempty=True)

    def boolean(self, name: str, *, default: object = _MISSING) -> bool:
        return self._typed(name, bool, default, "a boolean")

    def integer(
        self, name: str, *, default: object = _MISSING, bounds: tuple[int, int] | None = None
    ) -> int:
        value = self._typed(name, int, default, "an integer")
        if bounds is not None and not bounds[0] <= value <= bounds[1]:
            raise self.error(name, f"{value} out of range {bounds[0]}..{bounds[1]}")
        return value

    def number(self, name: str, *, default: object = _MISSING, positive: bool = False) -> float:
        value = self._get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(name, f"expected a number, got {_describe(value)}")
        number = float(value)
        if number != number or number in (float("inf"), float("-inf")):
            raise self.error(name, f"must be a finite number, got {value!r}")
        if positive and number <= 0:
            raise self.error(name, f"must be greater than 0, got {value!r}")
        if number < 0:
            raise self.error(name, f"must not be negative, got {value!r}")
        return number

    def choice(
        self, name: str, choices: list[str], *, default: object = _MISSING, what: str = "value"
    ) -> str:
        value = self.string(name, default=default)
        if value not in choices:
            near = difflib.get_close_matches(value, choices, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise self.error(
                name, f"unknown {what} {value!r} (expected one of {', '.join(choices)}){hint}"
            )
        return value

    def string_list(self, name: str, *, default: object = _MISSING) -> list[str]:
        value = self._typed(name, list, default, "an array of strings")
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise self.error(f"{name}[{index}]", f"expected a string, got {_describe(item)}")
        return list(value)

    # -- paths and hashes ---------------------------------------------------------------

    def _resolve(self, text: str) -> Path:
        path = Path(text).expanduser()
        return path if path.is_absolute() else (self.file.parent / path).resolve()

    def path_value(self, name: str, *, default: object = _MISSING) -> Path:
        """A path, resolved against this file's folder when relative."""
        return self._resolve(self.string(name, default=default, nonempty=True))

    def optional_path(self, name: str) -> Path | None:
        text = self.optional_string(name)
        return None if text is None else self._resolve(text)

    def optional_hash(self, name: str) -> str | None:
        """A stored token hash (``sha256$<salt-hex>$<digest-hex>``), checked for form."""
        text = self.optional_string(name)
        if text is not None:
            try:
                parse_hash(text)
            except ValueError as exc:
                raise self.error(name, f"malformed token hash: {exc}") from None
        return text

    # -- nesting ------------------------------------------------------------------------

    def table(self, name: str) -> TableReader:
        """A sub-table (an empty one if absent)."""
        value = self._typed(name, dict, {}, "a table")
        return TableReader(self.file, self._path(name), value)

    def array_of_tables(self, name: str, *, required: bool = False) -> list[TableReader]:
        """``[[name]]`` entries; each reader's key is ``name[i]``."""
        value = self._typed(name, list, _MISSING if required else [], "an array of tables")
        if required and not value:
            raise self.error(name, "needs at least one entry")
        readers = []
        for index, item in enumerate(value):
            key = f"{self._path(name)}[{index}]"
            if not isinstance(item, dict):
                raise ConfigError(self.file, key, f"expected a table, got {_describe(item)}")
            readers.append(TableReader(self.file, key, item))
        return readers

    def finish(self) -> None:
        """Reject keys that no accessor asked for (typos, misplaced settings)."""
        unknown = [k for k in self._data if k not in self._used]
        if unknown:
            name = unknown[0]
            known = sorted(self._used)
            near = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            allowed = f" (known keys: {', '.join(known)})" if known else ""
            raise self.error(name, f"unknown key{hint}{allowed}")
