"""Regenerate docs/images/run-output-preview.png, the preview page of a rehearsed run.

    .venv/bin/python docs/render_run_output.py

Prerequisites: the packages of requirements.txt, and Debian's ``chromium`` on PATH
(``apt-get install chromium``). It rehearses the default build with ``min_accuracy`` 0.9,
which the fake TAO's model misses, so the picture shows a run failed by the quality gate, as
``--dry-run --outputs`` shows it, and screenshots the top of ``run-output.html``.

The screenshot is checked before it replaces the picture: every card in it must show
something (a web-app frame that had not rendered yet leaves its card blank), else nothing is
written and the exit status is 1. The page names no local folder, so the same page gives the
same picture, and an unchanged picture is not rewritten.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMAGE = REPO / "docs" / "images" / "run-output-preview.png"
WINDOW = "1200,2200"  # wide enough for the run list row, tall enough for the first cards
# Share of a card's pixels that must differ from its background for it to count as drawn.
MIN_DRAWN = 0.002
# Loads the page laid out as in the screenshot (same viewport, no scrollbar) and the
# screenshot itself, then lists the cards (a web-app card: its frame) that are one colour.
CHECKER = """<!DOCTYPE html><html><body style="margin:0"><pre id="verdict">not checked</pre>
<iframe id="page" src="%(page)s" scrolling="no"
  style="border:0;width:%(width)dpx;height:%(height)dpx"></iframe>
<script>
const shot = new Image();
let loaded = 0;
function check() {
  if (++loaded < 2) return;
  const canvas = document.createElement('canvas');
  canvas.width = shot.width;
  canvas.height = shot.height;
  const context = canvas.getContext('2d');
  context.drawImage(shot, 0, 0);
  const cards = document.getElementById('page').contentDocument.querySelectorAll('.plot-card');
  const verdict = {checked: [], blank: []};
  for (const card of cards) {
    const shown = card.dataset.type === 'web-app' ? card.querySelector('iframe') : card;
    const r = shown.getBoundingClientRect();
    const x = r.left + shown.clientLeft, y = r.top + shown.clientTop;  // inside the border
    const left = Math.max(0, Math.ceil(x)), top = Math.max(0, Math.ceil(y));
    const width = Math.min(shot.width, Math.floor(x + shown.clientWidth)) - left;
    const height = Math.min(shot.height, Math.floor(y + shown.clientHeight)) - top;
    if (width < 20 || height < 20) continue;  // not in the picture
    const px = context.getImageData(left, top, width, height).data;
    const colours = new Map();  // pixels per colour; the commonest is the background
    for (let i = 0; i < px.length; i += 4) {
      const colour = (px[i] << 16) | (px[i + 1] << 8) | px[i + 2];
      colours.set(colour, (colours.get(colour) || 0) + 1);
    }
    const drawn = width * height - Math.max(...colours.values());
    const name = card.dataset.step + ' ' + card.dataset.type;
    verdict.checked.push(name);
    if (drawn < width * height * %(min_drawn)f) verdict.blank.push(name);
  }
  document.getElementById('verdict').textContent = JSON.stringify(verdict);
}
document.getElementById('page').addEventListener('load', check);
shot.onload = check;
shot.src = 'data:image/png;base64,%(shot)s';
</script></body></html>
"""


def screenshot(chromium: str, page: Path, shot: Path) -> None:
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                    "--hide-scrollbars", f"--window-size={WINDOW}",
                    # let the sandboxed web-app frames (training curves) render first
                    "--virtual-time-budget=5000",
                    f"--screenshot={shot}", page.as_uri()],
                   check=True, capture_output=True)


def blank_cards(chromium: str, page: Path, shot: Path) -> list:
    """The cards the screenshot ``shot`` of ``page`` shows blank; ValueError when no card
    could be checked."""
    width, height = (int(n) for n in WINDOW.split(","))
    checker = page.with_name("render-check.html")
    checker.write_text(CHECKER % {
        "page": page.as_uri(), "width": width, "height": height, "min_drawn": MIN_DRAWN,
        "shot": base64.b64encode(shot.read_bytes()).decode("ascii")})
    result = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                             "--allow-file-access-from-files", "--virtual-time-budget=5000",
                             "--dump-dom", checker.as_uri()],
                            check=True, capture_output=True, text=True)
    found = re.search(r'<pre id="verdict">(.*?)</pre>', result.stdout, re.S)
    verdict = json.loads(html.unescape(found.group(1))) if found else {}
    if not verdict.get("checked"):
        raise ValueError("no card of the page could be checked in the screenshot")
    return verdict["blank"]


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
        shot = Path(scratch) / IMAGE.name
        screenshot(chromium, page, shot)
        try:
            blank = blank_cards(chromium, page, shot)
        except ValueError as error:
            blank = [str(error)]
        if blank:
            print(f"render_run_output: {IMAGE.relative_to(REPO)} not written: blank in the "
                  f"screenshot: {', '.join(blank)}", file=sys.stderr)
            return 1
        if IMAGE.is_file() and IMAGE.read_bytes() == shot.read_bytes():
            print(f"{IMAGE.relative_to(REPO)} is up to date")
            return 0
        shutil.copyfile(shot, IMAGE)
    print(f"wrote {IMAGE.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
