"""gradlab: gradient-flow diagnostics for unrolled EM and highway-EM layers.

The names below load on first use, so `import gradlab.analysis` (records → numbers, no torch) stays light.
"""

from __future__ import annotations

import importlib

from gradlab.errors import ConfigError, DataError, GradlabError, RecordsError

__version__ = "0.1.0"

#: public name → the module that defines it (loaded on first access)
_LAZY = {
    "Recorder": "gradlab.instrument.recorder",
    "watch": "gradlab.instrument.recorder",
    "load_records": "gradlab.records",
    "every": "gradlab.instrument.schedules",
    "log_spaced": "gradlab.instrument.schedules",
    "tap": "gradlab.taps",
}

__all__ = ["ConfigError", "DataError", "GradlabError", "RecordsError", *_LAZY, "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gradlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
