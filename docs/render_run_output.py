"""Regenerate docs/images/run-output-kfp-<release>.png, the preview page of a rehearsed run
as KFP 1.8 and as KFP 2.15 (the KFP of Kubeflow 1.11) show it.

    .venv/bin/python docs/render_run_output.py

Prerequisites: the packages of requirements.txt, and Debian's ``chromium`` on PATH
(``apt-get install chromium``). It rehearses the default build with ``min_accuracy`` 0.9,
which the fake TAO's model misses, so the pictures show a run failed by the quality gate, as
``--dry-run --outputs`` shows it, and screenshots the top of ``run-output.html``: where to
look on that release, then the run summary's panel. The page of each release is drawn from
the same rehearsal's files (``rehearsal.run_page.render_folder``).

Each screenshot is checked before it replaces its picture: every card in it must show
something (a web-app frame that had not rendered yet leaves its card blank), else nothing is
written and the exit status is 1. Every rehearsal gets a new workflow name and uid, as on a
cluster; the kept files are given one fixed name and uid before the pages are drawn, and
the page names no local folder, so the same run gives the same pictures, and an unchanged
picture is not rewritten.
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
sys.path.insert(0, str(REPO))

from rehearsal import run_page  # noqa: E402

IMAGES = REPO / "docs" / "images"
RELEASES = ("1.8", "2.15")
WINDOW = "1200,1500"  # wide enough for the where-to-look table, tall enough for the summary
# The name and uid the pictures show (a rehearsal draws new ones, as Kubernetes and KFP do).
SHOWN_NAME = "tao-iva-classification-x7k2p"
SHOWN_UID = "00000000-0000-4000-8000-000000000000"
UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
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
    const name = card.closest('[data-step]').dataset.step + ' ' + card.dataset.type;
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


def fix_identity(folder: Path) -> None:
    """Give the kept files of a rehearsal one fixed workflow name and uid."""
    name = json.loads((folder / "run.json").read_text(encoding="utf-8"))["workflow"]["name"]
    for path in folder.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".txt", ".html"):
            text = UUID.sub(SHOWN_UID, path.read_text(encoding="utf-8"))
            path.write_text(text.replace(name, SHOWN_NAME), encoding="utf-8")


def render(chromium: str, out: Path, release: str, scratch: Path) -> int:
    image = IMAGES / f"run-output-kfp-{release}.png"
    page = scratch / f"run-output-{release}.html"
    page.write_text(run_page.render_folder(out, release), encoding="utf-8")
    shot = scratch / image.name
    screenshot(chromium, page, shot)
    try:
        blank = blank_cards(chromium, page, shot)
    except ValueError as error:
        blank = [str(error)]
    if blank:
        print(f"render_run_output: {image.relative_to(REPO)} not written: blank in the "
              f"screenshot: {', '.join(blank)}", file=sys.stderr)
        return 1
    if image.is_file() and image.read_bytes() == shot.read_bytes():
        print(f"{image.relative_to(REPO)} is up to date")
    else:
        shutil.copyfile(shot, image)
        print(f"wrote {image.relative_to(REPO)}")
    return 0


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
        fix_identity(out)
        return max(render(chromium, out, release, Path(scratch)) for release in RELEASES)


if __name__ == "__main__":
    sys.exit(main())
