#!/usr/bin/env python3
"""Write a small synthetic classification dataset: ``ROOT/split/{train,val,test}/<class>/*.png``.

``python3 rehearsal/fake_tao/make_dataset.py ROOT [--classes a,b,c] [--train N] [--val N] [--test N]
[--size PIXELS] [--seed S]`` (N images per class). The images are tiny valid PNGs, each
class a colour plus deterministic noise, written with zlib and struct: nothing is downloaded
and the same options always give the same bytes. The default classes include ``person``, the
class the pipeline's default ``test_infer_image_path`` points at.
"""

import argparse
import os
import random
import struct
import sys
import zlib

DEFAULT_CLASSES = ("bicycle", "car", "dog", "person")
DEFAULT_COUNTS = {"train": 40, "val": 10, "test": 10}


def png_bytes(width, height, pixels):
    """A truecolour PNG of ``pixels`` (rows of (r, g, b) tuples)."""

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + bytes(value for pixel in row for value in pixel) for row in pixels)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def _image(class_index, image_index, size, seed):
    generator = random.Random(f"{seed}/{class_index}/{image_index}")
    base = [(class_index * 97 + channel * 61) % 256 for channel in range(3)]
    return [[tuple(max(0, min(255, value + generator.randint(-24, 24))) for value in base)
             for _ in range(size)] for _ in range(size)]


def make_dataset(root, classes=DEFAULT_CLASSES, counts=None, size=16, seed=0):
    """Write the dataset under ``root/split``; returns ``{split: {class: [paths]}}``."""
    counts = dict(DEFAULT_COUNTS, **(counts or {}))
    written = {}
    for split, count in counts.items():
        written[split] = {}
        for class_index, name in enumerate(classes):
            folder = os.path.join(root, "split", split, name)
            os.makedirs(folder, exist_ok=True)
            paths = written[split][name] = []
            for image_index in range(count):
                path = os.path.join(folder, f"{name}_{split}_{image_index:04d}.png")
                with open(path, "wb") as handle:
                    handle.write(png_bytes(size, size, _image(
                        class_index, f"{split}{image_index}", size, seed)))
                paths.append(path)
    return written


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", help="dataset root; images go to ROOT/split/<split>/<class>/")
    parser.add_argument("--classes", default=",".join(DEFAULT_CLASSES),
                        help="comma-separated class names (default: %(default)s)")
    for split, count in DEFAULT_COUNTS.items():
        parser.add_argument(f"--{split}", type=int, default=count,
                            help=f"{split} images per class (default: %(default)s)")
    parser.add_argument("--size", type=int, default=16, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args(argv)
    classes = [name.strip() for name in arguments.classes.split(",") if name.strip()]
    if not classes:
        parser.error("--classes: give at least one class name")
    if min(arguments.train, arguments.val, arguments.test) < 0 or arguments.size < 1:
        parser.error("counts must be >= 0 and --size >= 1")
    written = make_dataset(arguments.root, classes,
                           {"train": arguments.train, "val": arguments.val,
                            "test": arguments.test}, arguments.size, arguments.seed)
    total = sum(len(paths) for split in written.values() for paths in split.values())
    print(f"wrote {total} images of {len(classes)} classes under "
          f"{os.path.join(arguments.root, 'split')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
