"""Recording gradients and forward diagnostics of unrolled iterations."""

from gradlab.instrument.recorder import Recorder, watch
from gradlab.instrument.schedules import every, log_spaced
from gradlab.records import load_records
from gradlab.taps import tap

__all__ = ["Recorder", "every", "load_records", "log_spaced", "tap", "watch"]
