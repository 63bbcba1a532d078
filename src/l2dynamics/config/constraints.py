"""Declared constraints of config values, in the spirit of scikit-learn's
``_parameter_constraints``: one declaration per key drives validation, docs and tests.

Each constraint

- ``check(key, value)``: coerces a value read from YAML, JSON or ``--set`` (``"1e-3"`` → 0.001,
  ``1e3`` → 1000 for an integer, ``"true"`` → True) or raises a one-line :class:`ConfigError`
  that names the key, what was wrong and what is allowed;
- ``allowed()``: says what is allowed, for ``l2dynamics keys`` and the docs' key table;
- ``invalid()``: values it refuses, each with a fragment of the message it gives — the
  bad-input tests draw from these, so a new key is tested by declaring it.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from typing import Any

from l2dynamics.errors import ConfigError

INT_MAX = 2**63 - 1  # integers are stored as SQLite INTEGER (int64) and seeded into torch


def key(default: Any, constraint: Constraint, help: str, *, unit: str = "") -> Any:
    """A :class:`~l2dynamics.config.Config` field declared with its constraint, unit and help."""
    meta = {"constraint": constraint, "unit": unit, "help": help}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=meta)
    return field(default=default, metadata=meta)


class Constraint:
    """What one config key accepts. Subclasses are small frozen dataclasses."""

    def type_name(self) -> str:
        raise NotImplementedError

    def check(self, key: str, value: Any) -> Any:
        raise NotImplementedError

    def allowed(self) -> str:
        raise NotImplementedError

    def invalid(self) -> list[tuple[Any, str]]:
        """Values this constraint refuses, each with a fragment of its error message."""
        raise NotImplementedError


@dataclass(frozen=True)
class Real(Constraint):
    """A finite number, bounded below by ``gt`` (>) or ``ge`` (>=) and above by ``lt`` (<) or
    ``le`` (<=)."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None

    def type_name(self) -> str:
        return "float"

    def check(self, key: str, value: Any) -> float:
        number = to_float(key, value)
        self.check_range(key, number)
        return number

    def check_range(self, key: str, number: float) -> None:
        if self.gt is not None and number <= self.gt:
            raise ConfigError(f"{key} must be > {self.gt:g}, got {number:g}")
        if self.ge is not None and number < self.ge:
            raise ConfigError(f"{key} must be >= {self.ge:g}, got {number:g}")
        if self.lt is not None and number >= self.lt:
            raise ConfigError(f"{key} must be < {self.lt:g}, got {number:g}")
        if self.le is not None and number > self.le:
            raise ConfigError(f"{key} must be <= {self.le:g}, got {number:g}")

    def allowed(self) -> str:
        low = (("(", self.gt) if self.gt is not None
               else ("[", self.ge) if self.ge is not None else None)
        high = ((self.lt, ")") if self.lt is not None
                else (self.le, "]") if self.le is not None else None)
        if low and high:
            return f"{low[0]}{low[1]:g}, {high[0]:g}{high[1]}"
        if low:
            return f"{'>' if low[0] == '(' else '>='} {low[1]:g}"
        if high:
            return f"{'<' if high[1] == ')' else '<='} {high[0]:g}"
        return "a finite number"

    def range_invalid(self) -> list[tuple[float, str]]:
        out = []
        if self.gt is not None:
            out.append((self.gt, f"must be > {self.gt:g}"))
        if self.ge is not None:
            out.append((self.ge - 1, f"must be >= {self.ge:g}"))
        if self.lt is not None:
            out.append((self.lt, f"must be < {self.lt:g}"))
        if self.le is not None:
            out.append((self.le + 1, f"must be <= {self.le:g}"))
        return out

    def invalid(self) -> list[tuple[Any, str]]:
        return [*self.range_invalid(), ("fast", "must be a number"), (True, "must be a number"),
                ([1, 2], "must be a number"), (None, "must be a number"),
                (math.nan, "must be a finite number"), (math.inf, "must be a finite number"),
                (-math.inf, "must be a finite number"), (10**400, "must be a finite number")]


@dataclass(frozen=True)
class Int(Constraint):
    """An integer in [ge, le]; ``optional``: None (the dataset's or model's default) too."""

    ge: int | None = None
    le: int = INT_MAX
    optional: bool = False

    def type_name(self) -> str:
        return "int | None" if self.optional else "int"

    def check(self, key: str, value: Any) -> int | None:
        if value is None and self.optional:
            return None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, str):  # "1e3" from YAML; "1.5" stays a string and is refused
            with contextlib.suppress(ValueError):
                value = int(float(value)) if float(value).is_integer() else value
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {short(value)}")
        if self.ge is not None and value < self.ge:
            raise ConfigError(f"{key} must be >= {self.ge}, got {short(value)}")
        if value > self.le:
            raise ConfigError(f"{key} must be <= {self.le}, got {short(value)}")
        return value

    def allowed(self) -> str:
        text = (f"[{self.ge}, {self.le}]" if self.le != INT_MAX and self.ge is not None
                else f">= {self.ge}" if self.ge is not None else f"<= {self.le}")
        return text + (" or null" if self.optional else "")

    def invalid(self) -> list[tuple[Any, str]]:
        out = [(1.5, "must be an integer"), ("many", "must be an integer"),
               (True, "must be an integer"), (math.nan, "must be an integer"),
               (self.le + 1, f"must be <= {self.le}"), (2.0**64, f"must be <= {self.le}")]
        if self.ge is not None:
            out.append((self.ge - 1, f"must be >= {self.ge}"))
        if not self.optional:
            out.append((None, "must be an integer"))
        return out


@dataclass(frozen=True)
class Bool(Constraint):
    """true or false (YAML's yes/no and the strings "true"/"false"/"1"/"0" too)."""

    def type_name(self) -> str:
        return "bool"

    def check(self, key: str, value: Any) -> bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            value = value.lower() in ("true", "yes", "1")
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {short(value)}")
        return value

    def allowed(self) -> str:
        return "true or false"

    def invalid(self) -> list[tuple[Any, str]]:
        return [(v, "must be true or false") for v in ("maybe", 2, None, [True])]


@dataclass(frozen=True)
class Str(Constraint):
    """Any string (checked where it is used, e.g. an activation by the model), or None."""

    optional: bool = True

    def type_name(self) -> str:
        return "str | None" if self.optional else "str"

    def check(self, key: str, value: Any) -> str | None:
        if not isinstance(value, str) and not (value is None and self.optional):
            raise ConfigError(f"{key} must be a string, got {short(value)}")
        return value

    def allowed(self) -> str:
        return "a string or null" if self.optional else "a string"

    def invalid(self) -> list[tuple[Any, str]]:
        return [(5, "must be a string"), ([1], "must be a string"), ({"a": 1}, "must be a string")]


@dataclass(frozen=True)
class Choice(Constraint):
    """One of ``options`` (strings)."""

    options: tuple[str, ...]

    def type_name(self) -> str:
        return "str"

    def check(self, key: str, value: Any) -> str:
        if isinstance(value, str) and value in self.options:
            return value
        import difflib

        text = value.strip().lower() if isinstance(value, str) else ""
        close = [o for o in self.options if o.lower() == text] or (
            difflib.get_close_matches(text, self.options, n=1) if text else [])
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{key}={short(value)} is not allowed; use one of: "
                          f"{', '.join(self.options)}{hint}")

    def allowed(self) -> str:
        return f"one of {', '.join(self.options)}"

    def invalid(self) -> list[tuple[Any, str]]:
        says = f"is not allowed; use one of: {', '.join(self.options)}"
        return [(v, says) for v in ("bogus", self.options[0].upper() + "x", 1, None,
                                    [self.options[0]])]


@dataclass(frozen=True)
class Floats(Constraint):
    """A list of numbers (a single number is a list of one), each within ``item``."""

    item: Real
    length: int | None = None

    def type_name(self) -> str:
        return "list[float]"

    def check(self, key: str, value: Any) -> tuple[float, ...]:
        value = _split_text(value)  # "0.1, 0.2" from the command line
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list of numbers, got {short(value)}")
        if self.length is not None and len(value) != self.length:
            raise ConfigError(f"{key} must have {self.length} numbers, got {len(value)}")
        numbers = tuple(to_float(key, item) for item in value)
        for number in numbers:
            self.item.check_range(key, number)
        return numbers

    def allowed(self) -> str:
        count = f"{self.length} numbers" if self.length else "a list of numbers"
        each = self.item.allowed()
        return f"{count}, each {'in ' if each[0] in '[(' else ''}{each}"

    def invalid(self) -> list[tuple[Any, str]]:
        n = self.length or 1
        out = [([bad] * n, says) for bad, says in self.item.range_invalid()]
        out += [({"a": 1}, "must be a list of numbers"), (["x"] * n, "must be a number"),
                ([math.nan] * n, "must be a finite number")]
        if self.length:
            out.append(([0.5] * (n - 1), f"must have {n} numbers"))
        return out


@dataclass(frozen=True)
class Ints(Constraint):
    """A list of integers (a single integer is a list of one), each within ``item``; a
    string "0, 1, 2" from the command line is read as a list too."""

    item: Int

    def type_name(self) -> str:
        return "list[int]"

    def check(self, key: str, value: Any) -> tuple[int, ...]:
        value = _split_text(value)
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list of integers, got {short(value)}")
        return tuple(self.item.check(key, v) for v in value)

    def allowed(self) -> str:
        return f"a list of integers, each {self.item.allowed()}"

    def invalid(self) -> list[tuple[Any, str]]:
        out = [({"a": 1}, "must be a list of integers"), ([1.5], "must be an integer")]
        if self.item.ge is not None:
            out.append(([self.item.ge - 1], f"must be >= {self.item.ge}"))
        return out


@dataclass(frozen=True)
class Choices(Constraint):
    """A non-empty list of strings, each one of ``item``'s options; a string "a, b" from the
    command line is read as a list too."""

    item: Choice

    def type_name(self) -> str:
        return "list[str]"

    def check(self, key: str, value: Any) -> tuple[str, ...]:
        value = _split_text(value)
        if not isinstance(value, (list, tuple)) or not value:
            raise ConfigError(f"{key} must be a non-empty list of names, got {short(value)}")
        return tuple(self.item.check(key, v) for v in value)

    def allowed(self) -> str:
        return f"a list, each {self.item.allowed()}"

    def invalid(self) -> list[tuple[Any, str]]:
        return [({"a": 1}, "must be a non-empty list of names"), ([], "must be a non-empty"),
                (["bogus"], "is not allowed")]


@dataclass(frozen=True)
class Optional(Constraint):
    """``inner``, or None (null) for "the default of whoever uses it"."""

    inner: Constraint

    def type_name(self) -> str:
        return f"{self.inner.type_name()} | None"

    def check(self, key: str, value: Any) -> Any:
        return None if value is None else self.inner.check(key, value)

    def allowed(self) -> str:
        return f"{self.inner.allowed()} or null"

    def invalid(self) -> list[tuple[Any, str]]:
        return [(v, says) for v, says in self.inner.invalid() if v is not None]


@dataclass(frozen=True)
class OrAuto(Constraint):
    """``inner``, or the string "auto" for "decided from measurements by whoever uses it"."""

    inner: Constraint

    def type_name(self) -> str:
        return f"{self.inner.type_name()} | 'auto'"

    def check(self, key: str, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        try:
            return self.inner.check(key, value)
        except ConfigError as err:
            raise ConfigError(f"{err} (or auto)") from None

    def allowed(self) -> str:
        return f"{self.inner.allowed()} or auto"

    def invalid(self) -> list[tuple[Any, str]]:
        return [(v, says) for v, says in self.inner.invalid() if v != "auto"]


@dataclass(frozen=True)
class PlainMapping(Constraint):
    """A mapping of plain data (stored as JSON with the run), e.g. dataset options.

    `owners(name)`, if given, names the top-level config key that owns an inner key `name`
    (or None): such a key is refused with a message naming the key to set instead, e.g.
    ``data_options.n_train`` (``load_dataset`` would get ``n_train`` twice). `owned` holds
    example inner keys for the drawn invalid values."""

    example: str
    owners: Callable[[str], str | None] | None = field(default=None, compare=False)
    owned: tuple[str, ...] = ()

    def type_name(self) -> str:
        return "dict"

    def check(self, key: str, value: Any) -> dict:
        if not isinstance(value, MappingABC):
            raise ConfigError(f"{key} must be a mapping, e.g. {{{self.example}}}; "
                              f"got {short(value)}")
        for inner in value:
            top = self.owners(str(inner)) if self.owners is not None else None
            if top is not None:
                raise ConfigError(f"{key} cannot hold {inner!r}: it belongs to the top-level "
                                  f"config key {top!r}; set {top} instead of {key}.{inner}")
        try:
            json.dumps(dict(value), allow_nan=False)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{key} must hold plain data (numbers, strings, lists, "
                              f"mappings), got {short(value)}: {err}") from None
        return dict(value)

    def allowed(self) -> str:
        return "a mapping of plain data" + (" (no top-level config keys)" if self.owners else "")

    def invalid(self) -> list[tuple[Any, str]]:
        owned = [({inner: 1}, f"set {self.owners(inner)} instead") for inner in self.owned
                 if self.owners is not None and self.owners(inner) is not None]
        return [(5, "must be a mapping"), ("x", "must be a mapping"), ([1], "must be a mapping"),
                ({"a": math.nan}, "must hold plain data"), *owned]


@dataclass(frozen=True)
class Globs(Constraint):
    """One of ``words``, or a non-empty list of glob patterns over parameter names (``!x``
    excludes); with ``single``, a string that is not a word is one pattern."""

    words: tuple[str, ...]
    single: bool = False

    def type_name(self) -> str:
        return "str | list[str]"

    def check(self, key: str, value: Any) -> str | list[str]:
        if isinstance(value, str) and value in self.words:
            return value
        if isinstance(value, str) and not self.single:
            raise ConfigError(f"{key}={short(value)} is not allowed; use one of "
                              f"{', '.join(self.words)} or a list of glob patterns over "
                              "parameter names")
        patterns = [value] if isinstance(value, str) else value
        if (not isinstance(patterns, (list, tuple)) or not patterns
                or not all(isinstance(p, str) and p for p in patterns)):
            words = ", ".join(repr(w) for w in self.words)
            raise ConfigError(f"{key} must be {words} or a non-empty list of glob patterns "
                              f"over parameter names, got {short(value)}")
        return list(patterns)

    def allowed(self) -> str:
        return f"{', '.join(self.words)} or a list of glob patterns ('!x' excludes)"

    def invalid(self) -> list[tuple[Any, str]]:
        out = [(v, "or a non-empty list of glob patterns") for v in (5, [], [1], [""], None)]
        if not self.single:
            out.append(("some", "is not allowed; use one of"))
        return out


def _split_text(value: Any) -> Any:
    """A comma-separated string (from the command line) as a list of its stripped parts;
    anything else as it is."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


def to_float(key: str, value: Any) -> float:
    """A finite float from a number or a numeric string, else a one-line ConfigError."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{key} must be a number, got {short(value)}")
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{key} must be a number, got {short(value)}") from None
    except OverflowError:  # an int beyond the float range
        raise ConfigError(f"{key} must be a finite number, got {short(value)}") from None
    if not math.isfinite(number):
        raise ConfigError(f"{key} must be a finite number, got {short(value)}")
    return number


def short(value: Any) -> str:
    """repr of `value` cut to 60 characters, for huge numbers and long strings in messages."""
    try:
        text = repr(value)
    except ValueError:  # an int beyond Python's limit on digits for str()
        return f"an integer of about {value.bit_length() * 0.30103:.0f} digits"
    return text if len(text) <= 60 else text[:56] + " ..."
