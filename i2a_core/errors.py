"""Every error a user can fix, under one base class the CLI maps to exit status 2, one subclass per domain."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix (a flag, a path, a model, a setting): one line naming it, exit status 2."""


class ConfigError(UserError):
    """A flag or setting that cannot work: str() names the flag and the reason."""


class ModelUnavailable(UserError):
    """A model that cannot be loaded here; str() says which one and what to do."""


class TranslatorError(UserError):
    """A translator that cannot be used: missing, malformed, or the wrong shape for the encoders."""


class OutputError(UserError):
    """An output location that cannot be written: a file, not a folder, or a bucket that does not exist."""


class OutputMismatch(UserError):
    """An output folder that an earlier run filled with other settings."""


class LeaseHeld(UserError):
    """Another job holds the output; str() says who, since when, and how to take over."""


class LeaseLost(UserError):
    """This job's lease was taken over by another job while it ran."""


class ListError(UserError):
    """A list file that cannot be read as one: a folder, not UTF-8 text, or not Parquet."""


class SourceError(UserError):
    """A caption table that cannot be read as the requested source; str() names the input and the reason."""


class DatasetError(UserError):
    """Embedding input that cannot be trained on: missing, empty, wrong schema, or no valid rows."""


class ClusterError(UserError):
    """A job setting that cannot work on this cluster; str() names the setting and the fix."""


class EvalError(UserError):
    """Eval inputs that cannot be scored (an empty reference folder, no clips)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: stop, keep what is committed; exit status 143."""

    exit_code = 143
