"""The tag of the pipeline's image: ``docker/IMAGE`` plus a digest of what the image adds
to the TAO base (the Dockerfile and ``tao_step/``).

    python3 docker/image_tag.py       # prints it; docker/build.sh tags the build with it

A changed ``tao_step`` gives a new tag, so a node that cached an earlier build under the
old tag can never run stale code for a newer pipeline. Standard library only: it runs
wherever the image is built.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def image_files() -> list:
    """The files the build copies into the image (what .dockerignore admits of tao_step),
    in a stable order."""
    return [REPO / "docker" / "Dockerfile", *sorted((REPO / "tao_step").glob("*.py"))]


def default_image() -> str:
    digest = hashlib.sha256()
    for path in image_files():
        digest.update(path.relative_to(REPO).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    base = (REPO / "docker" / "IMAGE").read_text().strip()
    return f"{base}-{digest.hexdigest()[:12]}"


if __name__ == "__main__":
    print(default_image())
