"""User-facing errors. The CLI prints any GradlabError on one line and exits with status 2."""

from __future__ import annotations


class GradlabError(Exception):
    """Base class of the errors a user can fix (bad config, missing data, corrupt records)."""


class ConfigError(GradlabError, ValueError):
    """A configuration key or value is wrong."""


class DataError(GradlabError):
    """A dataset folder, image or mask is missing, corrupt or inconsistent."""


class RecordsError(GradlabError):
    """Records or a run directory cannot be read."""
