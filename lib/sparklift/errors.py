"""Error types whose class tells the caller (and the CLI's exit code) what went wrong."""


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
