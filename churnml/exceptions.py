"""Exception and warning types raised by churnml.

Few types, each subclassing a built-in so callers can catch them generically.
The front ends translate them: the CLI prints one line per problem and exits
with code 2 for input errors; the API maps them to 4xx responses.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

__all__ = [
    "ChurnmlError",
    "ConfigError",
    "ContractError",
    "DataProblem",
    "DataWarning",
    "ModelNotFoundError",
    "NotFittedError",
    "OutputExistsError",
    "OutputWriteError",
    "SchemaMismatchError",
    "StaleDataError",
    "TrainingDataError",
    "storage_problem",
]


class ChurnmlError(Exception):
    """Base class of every error churnml raises on purpose."""


@dataclass(frozen=True)
class DataProblem:
    """One problem found in an input table.

    Parameters
    ----------
    source : str
        The file or table the problem is in, as the user named it.
    column : str or None
        The column concerned, if any.
    count : int
        How many rows have the problem.
    message : str
        What is wrong, e.g. ``"unparsable timestamps"``.
    example : str or None
        One offending value, as text.
    """

    source: str
    column: str | None
    count: int
    message: str
    example: str | None = None

    def __str__(self) -> str:
        noun = "columns" if self.column and ", " in self.column else "column"
        where = f"{self.source}: {noun} '{self.column}'" if self.column else self.source
        line = f"{where}: {self.message}"
        if self.count:
            line = f"{where}: {self.count:,} {self.message}"
        if self.example is not None:
            line += f" (e.g. {self.example!r})"
        return line


class ContractError(ChurnmlError, ValueError):
    """Input data breaks the data contract.

    Parameters
    ----------
    problems : list of DataProblem
        Every problem found, one line each when printed.
    """

    def __init__(self, problems: list[DataProblem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class ConfigError(ChurnmlError, ValueError):
    """A configuration file is missing, unreadable or invalid."""


class SchemaMismatchError(ChurnmlError, ValueError):
    """A table's columns or types differ from what a model or stage expects."""




class DataWarning(UserWarning):
    """Input data had a fixable problem (e.g. exact duplicate events were dropped)."""


class TrainingDataError(ChurnmlError, ValueError):
    """The data cannot train or evaluate a model (too few positives, one snapshot, ...)."""


class ModelNotFoundError(ChurnmlError, LookupError):
    """No registered model version answers to the requested name and alias."""


class StaleDataError(ChurnmlError, ValueError):
    """The event log has no recent events before the scoring instant."""


class OutputExistsError(ChurnmlError, FileExistsError):
    """An output that is never silently overwritten already exists."""


class OutputWriteError(ChurnmlError, OSError):
    """An output could not be written (disk full, read-only filesystem, no permission); nothing was replaced."""


# errno values that say the storage refused a write, not that the program is wrong.
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


def storage_problem(exc: BaseException) -> str | None:
    """A short description if ``exc`` is the filesystem refusing to store something, else None.

    Recognises ``OSError`` with a storage ``errno`` (``No space left on device``,
    ``Read-only file system``, ``Permission denied``, ...) and the same faults
    reported by libraries as text (DuckDB's and Arrow's I/O errors).
    """
    if isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror or errno.errorcode.get(exc.errno, 'I/O error')}{where}"
    text = str(exc).lower()
    for phrase in ("No space left on device", "Disk quota exceeded", "Read-only file system"):
        if phrase.lower() in text:
            return phrase
    if "readonly database" in text:  # SQLite under MLflow or Optuna
        return "read-only database (is the MLflow store mounted read-only?)"
    return None


def _not_fitted_error() -> type:
    # Built on first use: a subclass of scikit-learn's NotFittedError (itself a ValueError and an
    # AttributeError), without importing scikit-learn (2-3 s) whenever churnml.exceptions is imported,
    # which every command, `--help` included, does.
    from sklearn.exceptions import NotFittedError as _SklearnNotFitted

    class NotFittedError(ChurnmlError, _SklearnNotFitted):
        """An estimator was used before ``fit`` (also scikit-learn's ``NotFittedError``, a ValueError and AttributeError)."""

    NotFittedError.__module__ = __name__
    return NotFittedError


def __getattr__(name: str):
    if name == "NotFittedError":
        cls = _not_fitted_error()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
