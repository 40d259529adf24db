from __future__ import annotations

import subprocess
import sys


def test_analysis_imports_no_models_and_no_training_code():
    code = ("import sys, gradlab.analysis; "
            "print(sorted(m for m in sys.modules if m.startswith(('gradlab.models', 'gradlab.train'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
