"""gradlab: gradient-flow diagnostics for unrolled EM and highway-EM layers."""

from gradlab.errors import ConfigError, DataError, GradlabError, RecordsError
from gradlab.instrument import Recorder, every, load_records, log_spaced, tap, watch

__version__ = "0.1.0"
__all__ = [
    "ConfigError", "DataError", "GradlabError", "RecordsError", "Recorder",
    "every", "load_records", "log_spaced", "tap", "watch", "__version__",
]
