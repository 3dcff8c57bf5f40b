"""Screenshot of an HTML report in headless Chromium, for the README.

    python scripts/screenshot.py reports/index.html reports/screenshot.png

Used by tests/test_render.py (skipped where Chromium is absent).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def screenshot(page: Path, out: Path, *, width: int = 1280, height: int = 900) -> Path:
    """Render ``page`` in headless Chromium and write a PNG of its first screen to ``out``.

    Arguments:
        page: the HTML file.
        out: the PNG to write.
        width, height: the window in CSS pixels.
    Returns:
        ``out``.
    """
    exe = chromium()
    if exe is None:
        raise SystemExit("screenshot: no Chromium found (apt-get install chromium)")
    out = Path(out).resolve()
    with tempfile.TemporaryDirectory() as profile:
        r = subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}",
                            f"--window-size={width},{height}", "--virtual-time-budget=3000",
                            f"--screenshot={out}", Path(page).resolve().as_uri()],
                           capture_output=True, text=True, timeout=120)
    if not out.exists():
        raise SystemExit(f"screenshot: Chromium wrote no image: {r.stderr[-500:]}")
    return out


if __name__ == "__main__":
    page = Path(sys.argv[1] if len(sys.argv) > 1 else "reports/index.html")
    target = Path(sys.argv[2] if len(sys.argv) > 2 else "reports/screenshot.png")
    print(screenshot(page, target))
