"""The exception types that mean "the user can fix this" (as opposed to a bug).

The command line prints a :class:`UserError` in one line (its message says what is wrong
and what to change) and anything else as a traceback with where to report it. Each
subclass also derives from the built-in type callers already catch (``ValueError``, ...).
"""

from __future__ import annotations

__all__ = ["UserError", "ConfigError", "ClusteringError", "DamagedFileError", "FolderBusyError",
           "ModelUnavailableError", "NonFiniteRowsError", "WorkerFailed"]


class UserError(Exception):
    """A problem with the input, the arguments, the files or the environment."""


class ConfigError(UserError, ValueError):
    """An argument (or ``RunConfig`` field) that cannot work, found before anything runs."""


class ClusteringError(UserError, ValueError):
    """Data that cannot be clustered as asked (too few distinct rows, all noise, ...)."""


class DamagedFileError(UserError, ValueError):
    """A saved file that cannot be read, or does not match the file that describes it."""


class FolderBusyError(UserError, RuntimeError):
    """Another process holds the lock of a folder this one would write into."""


class ModelUnavailableError(UserError, RuntimeError):
    """A model that cannot be loaded here (not downloaded, no network)."""


class NonFiniteRowsError(UserError, FloatingPointError):
    """More attribution rows are NaN/inf than ``nan_tolerance`` allows."""


class WorkerFailed(UserError, RuntimeError):
    """Another worker of a process group failed, so this one stops too: the message names
    that worker's rank and its error (which that worker prints in full)."""
