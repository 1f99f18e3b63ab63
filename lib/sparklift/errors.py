"""Error types whose class tells the caller (and the CLI's exit code) what went wrong."""

import re

_MARKER = re.compile(r"\[sparklift:(\w+)\] (.*?) \[/sparklift\]", re.S)


class SparkliftError(Exception):
    """Base class for errors sparklift reports to its user."""

    exit_code = 1


class ConfigError(SparkliftError):
    """The configuration is invalid: names the key and what was expected."""

    exit_code = 2


class InputError(SparkliftError):
    """An input table or argument is wrong: names the table, column or value."""

    exit_code = 2


class InputNotReadyError(SparkliftError):
    """An input the job needs does not exist yet; retrying later may succeed."""

    exit_code = 3


class SchemaMismatchError(InputError):
    """A frame's columns or types differ from the target table's schema."""


class TableConflictError(SparkliftError):
    """A concurrent commit conflicts with this write; the table is unchanged."""

    exit_code = 4


def marked(kind: str, message: str) -> str:
    """``message`` marked as an error of class ``kind``, to raise in a Spark Python worker:
    Spark wraps it in its own exception, and :func:`reraise_marked` unwraps it."""
    return f"[sparklift:{kind}] {message} [/sparklift]"


def reraise_marked(exc: BaseException) -> None:
    """Turn a marked error that crossed Spark's Python workers back into its sparklift type."""
    match = _MARKER.search(str(exc))
    if match:
        cls = globals().get(match.group(1))
        cls = cls if isinstance(cls, type) and issubclass(cls, SparkliftError) else SparkliftError
        raise cls(match.group(2)) from None


def few(items: list[str], n: int = 3, sep: str = ", ") -> str:
    """The first ``n`` of ``items`` joined by ``sep``, and how many more: a message names
    some, never thousands."""
    more = f"{sep.rstrip()} and {len(items) - n} more" if len(items) > n else ""
    return sep.join(items[:n]) + more
