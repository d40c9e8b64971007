"""The tags of the pipeline's images: the folder's ``IMAGE`` plus a digest of what the image
adds to NVIDIA's base (the folder's Dockerfile and ``tao_step/``).

    python3 docker/image_tag.py                    # the TAO 3.0 image (docker/)
    python3 docker/image_tag.py docker/tao5/tf1    # the image of one folder
    python3 docker/image_tag.py --tao-version 5.0  # "FOLDER TAG" per image of a release

docker/build.sh tags its builds with these. A changed ``tao_step`` gives a new tag, so a node
that cached an earlier build under the old tag can never run stale code for a newer pipeline.
Standard library only: it runs wherever the image is built.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DIR = "docker"


def image_files(image_dir: str = DEFAULT_DIR) -> list:
    """The files the build copies into the image (what .dockerignore admits of tao_step),
    in a stable order."""
    return [REPO / image_dir / "Dockerfile", *sorted((REPO / "tao_step").glob("*.py"))]


def default_image(image_dir: str = DEFAULT_DIR) -> str:
    digest = hashlib.sha256()
    for path in image_files(image_dir):
        digest.update(path.relative_to(REPO).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    base = (REPO / image_dir / "IMAGE").read_text().strip()
    return f"{base}-{digest.hexdigest()[:12]}"


def release_images(version: str) -> list:
    """``(folder, tag)`` of every image TAO ``version`` runs (tao_step/profiles.py)."""
    sys.path.insert(0, str(REPO))
    from tao_step import profiles

    return [(folder, default_image(folder)) for _, folder in profiles.get(version).image_dirs]


def main(argv: list) -> int:
    if argv[:1] == ["--tao-version"] and len(argv) == 2:
        try:
            images = release_images(argv[1])
        except KeyError as error:
            print(f"image_tag.py: {error.args[0]}", file=sys.stderr)
            return 2
        for folder, tag in images:
            print(folder, tag)
        return 0
    if len(argv) > 1 or (argv and (argv[0].startswith("-")
                                   or not (REPO / argv[0] / "IMAGE").is_file())):
        print("usage: image_tag.py [IMAGE_DIR | --tao-version VERSION]", file=sys.stderr)
        return 2
    print(default_image(*argv))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
