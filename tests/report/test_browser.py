"""The report as a browser shows it: a copy opened in a real headless Chromium at 800 and 1400 px, with a small
script injected that writes its measurements into the page, which Chromium then dumps. Every figure decodes
and the page never scrolls sideways (a wide table scrolls in its own box). Skips where no Chromium is installed;
.ci/run installs Debian's `chromium`."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
MEASURE = """<script>
addEventListener("load", () => {
  const out = document.createElement("pre");
  out.id = "measured";
  out.textContent = JSON.stringify({
    viewport: innerWidth, width: document.documentElement.scrollWidth,
    images: [...document.images].map(img => img.complete ? img.naturalWidth : 0)});
  document.body.append(out);
});
</script>"""


def chromium() -> str:
    found = next((path for path in map(shutil.which, BROWSERS) if path), None)
    if found is None:
        pytest.skip("no Chromium installed (Debian: apt-get install chromium)")
    return found


def measure(report_html: Path, *, width: int, folder: Path) -> dict:
    """Open a copy of the report, with MEASURE injected, at `width` px; what the script measured."""
    page = folder / "page.html"
    page.write_text(report_html.read_text().replace("</body>", MEASURE + "</body>"))
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               f"--user-data-dir={folder / 'profile'}", f"--window-size={width},1000",
               "--virtual-time-budget=10000", "--dump-dom", page.as_uri()]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120).stdout
    found = re.search(r'<pre id="measured">(.*?)</pre>', dom, re.S)
    assert found, f"Chromium dumped no measurements:\n{dom[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


@pytest.mark.parametrize("width", [800, 1400])
def test_every_figure_decodes_and_the_page_never_scrolls_sideways(report, tmp_path, width):
    shown = measure(report.html, width=width, folder=tmp_path)
    assert shown["viewport"] == width
    assert len(shown["images"]) == len(report.figures) and all(w > 0 for w in shown["images"])
    assert shown["width"] <= shown["viewport"], f"the page is {shown['width']} px wide at {width} px"
