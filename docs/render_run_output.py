"""Regenerate docs/images/run-output-preview.png, the preview page of a rehearsed run.

    .venv/bin/python docs/render_run_output.py

Prerequisites: the packages of requirements.txt, and Debian's ``chromium`` on PATH
(``apt-get install chromium``). It rehearses the default build with ``min_accuracy`` 0.9,
which the fake TAO's model misses, so the picture shows a run failed by the quality gate, as
``--dry-run --outputs`` shows it, and screenshots the top of ``run-output.html``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMAGE = REPO / "docs" / "images" / "run-output-preview.png"
WINDOW = "1200,2200"  # wide enough for the run list row, tall enough for the first cards


def main() -> int:
    chromium = shutil.which("chromium")
    if chromium is None:
        print("render_run_output: chromium is not on PATH (apt-get install chromium)",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "preview"
        rehearsal = subprocess.run(
            [sys.executable, str(REPO / "tao_iva_classification_pipeline.py"), "--dry-run",
             "--param", "min_accuracy=0.9", "--outputs", str(out)],
            capture_output=True, text=True, env={**os.environ, "TMPDIR": scratch})
        page = out / "run-output.html"
        if not page.is_file():
            print(rehearsal.stdout[-2000:] + rehearsal.stderr[-2000:], file=sys.stderr)
            return 1
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                        "--hide-scrollbars", f"--window-size={WINDOW}",
                        # let the sandboxed web-app frames (training curves) render first
                        "--virtual-time-budget=5000",
                        f"--screenshot={IMAGE}", page.as_uri()],
                       check=True, capture_output=True)
    print(f"wrote {IMAGE.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
