"""User-facing errors. The CLI prints any GradlabError on one line and exits with status 2."""

from __future__ import annotations

import re


class GradlabError(Exception):
    """Base class of the errors a user can fix (bad config, missing data, corrupt records)."""

    #: leave the process at once after the message (no interpreter shutdown): see gradlab.cli._exit_now
    hard_exit = False


class ConfigError(GradlabError, ValueError):
    """A configuration key or value is wrong."""


class DataError(GradlabError):
    """A dataset folder, image or mask is missing, corrupt or inconsistent."""


class RecordsError(GradlabError):
    """Records or a run directory cannot be read."""


def torch_load_reason(err: BaseException) -> str:
    """What `torch.load(weights_only=True)` found wrong, in one short line: for a pickled object, torch's
    "Unsupported global" sentence (not its paragraphs advising to retry with weights_only=False), else its
    first sentence; terminal colour codes removed."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(err).splitlines()]
    lines = [line for line in lines if line]
    for line in lines:
        if "Unsupported global" in line:
            reason = line.split(" Please use")[0].removeprefix("WeightsUnpickler error: ").rstrip(".")
            return f"{reason}: the file holds pickled objects, and gradlab loads tensors, numbers and strings only"
    return lines[0].split(". ")[0].rstrip(".") if lines else "the file is empty or truncated"
