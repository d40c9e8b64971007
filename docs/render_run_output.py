"""Regenerate docs/images/run-output-kfp-<release>.png, the preview page of a rehearsed run
as KFP 1.8 and as KFP 2.15 (the KFP of Kubeflow 1.11) show it.

    .venv/bin/python docs/render_run_output.py

Prerequisites: the packages of requirements.txt, and Debian's ``chromium`` on PATH
(``apt-get install chromium``). It rehearses the default build with ``min_accuracy`` 0.9,
which the fake TAO's model misses, so the pictures show a run failed by the quality gate, as
``--dry-run --outputs`` shows it, and screenshots the top of ``run-output.html``: where to
look on that release, then the run summary's panel. The page of each release is drawn from
the same rehearsal's files (``rehearsal.run_page.render_folder``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rehearsal import run_page  # noqa: E402

IMAGES = REPO / "docs" / "images"
RELEASES = ("1.8", "2.15")
WINDOW = "1200,1500"  # wide enough for the where-to-look table, tall enough for the summary


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
        if not (out / run_page.PAGE_FILE).is_file():
            print(rehearsal.stdout[-2000:] + rehearsal.stderr[-2000:], file=sys.stderr)
            return 1
        for release in RELEASES:
            page = Path(scratch) / f"run-output-{release}.html"
            page.write_text(run_page.render_folder(out, release), encoding="utf-8")
            image = IMAGES / f"run-output-kfp-{release}.png"
            subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                            "--hide-scrollbars", f"--window-size={WINDOW}",
                            # let the sandboxed web-app frames (training curves) render first
                            "--virtual-time-budget=5000",
                            f"--screenshot={image}", page.as_uri()],
                           check=True, capture_output=True)
            print(f"wrote {image.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
