"""The fake ``ngc`` (NGC CLI) and ``converter`` (tao-converter of TAO 3.0), from
``shared/reference/tao-classification-cli.md`` ("NGC CLI", the converter's flags)."""

import argparse
import os
import re
import sys

from rehearsal.fake_tao.common import (
    INPUT_NODE,
    PARAMETERS,
    Failure,
    file_digest,
    read_encrypted,
    read_model,
    say,
    write_model,
)

# ORG/[TEAM/]MODEL:VERSION, each part a name NGC takes (letters, digits, _ . -).
NGC_TARGET = re.compile(r"^(\w[\w.-]*)/(?:\w[\w.-]*/)?(\w[\w.-]*):(\w[\w.-]*)$", re.ASCII)


def ngc_file(model, version):
    """The file a model version holds: NGC's pretrained classification models hold
    ``<family>_<layers>.hdf5`` (``pretrained_classification:resnet18`` -> ``resnet_18.hdf5``);
    the fake gives any other ``<model>_<version>.hdf5``."""
    family = re.match(r"(resnet|vgg)(\d+)$", version)
    if model == "pretrained_classification" and family:
        return f"{family.group(1)}_{family.group(2)}.hdf5"
    return f"{model}_{version}.hdf5"


def ngc_main(argv):
    """``ngc registry model download-version ORG/[TEAM/]MODEL:VERSION [--dest DIR]``."""
    parser = argparse.ArgumentParser(prog="ngc", description="Fake NGC CLI (tests only).")
    groups = parser.add_subparsers(dest="group", metavar="{registry}")
    groups.required = True
    registry = groups.add_parser("registry").add_subparsers(dest="kind", metavar="{model}")
    registry.required = True
    model = registry.add_parser("model").add_subparsers(dest="action",
                                                        metavar="{download-version}")
    model.required = True
    download = model.add_parser("download-version")
    download.add_argument("target", metavar="ORG/[TEAM/]MODEL:VERSION")
    download.add_argument("--dest", default=".")
    arguments = parser.parse_args(argv)
    match = NGC_TARGET.match(arguments.target)
    if not match:
        sys.stderr.write(f"Error: Invalid target '{arguments.target}': download-version needs "
                         "org/[team/]model:version\n")
        return 1
    org, name, version = match.groups()
    if org != "nvidia" and not os.environ.get("NGC_CLI_API_KEY"):
        sys.stderr.write(f"Error: {arguments.target} is not public: set NGC_CLI_API_KEY (and "
                         "NGC_CLI_ORG) to download it\n")
        return 1
    folder = os.path.join(arguments.dest, f"{name}_v{version}")  # download-version's folder
    file_name = ngc_file(name, version)
    family = re.match(r"([a-z_]+?)_?(\d+)$", version)
    arch, layers = (family.group(1), int(family.group(2))) if family else (version, 0)
    write_model(os.path.join(folder, file_name), {
        "format": "hdf5", "key": None, "arch": arch, "n_layers": layers,
        "parameters": PARAMETERS.get((arch, layers), 5_000_000), "ngc": arguments.target})
    size = os.path.getsize(os.path.join(folder, file_name)) / 1e3
    say(f"Downloaded {size:.1f} KB in 1s, Download speed: {size:.1f} KB/s")
    say("-" * 52)
    say(f"   Transfer id: {name}_v{version} Download status: Completed.")
    say(f"   Downloaded local path: {os.path.abspath(folder)}")
    say("   Total files downloaded: 1")
    say(f"   Total downloaded size: {size:.1f} KB")
    say("-" * 52)
    return 0


def converter_main(argv):
    """``converter ETLT -k KEY -d C,H,W -o OUTPUT_NODE [-e ENGINE] [-t fp32|fp16|int8] ...``."""
    parser = argparse.ArgumentParser(prog="converter",
                                     description="Fake TAO converter (tests only).")
    parser.add_argument("etlt")
    parser.add_argument("-k", dest="key", required=True)
    parser.add_argument("-d", dest="dims", required=True)
    parser.add_argument("-o", dest="outputs", required=True)
    parser.add_argument("-e", dest="engine", default="saved.engine")
    parser.add_argument("-t", dest="precision", choices=("fp32", "fp16", "int8"),
                        default="fp32")
    parser.add_argument("-c", dest="cache")
    parser.add_argument("-b", dest="batch", type=int, default=8)
    parser.add_argument("-m", dest="max_batch", type=int, default=16)
    parser.add_argument("-i", dest="order", choices=("nchw", "nhwc", "nc"), default="nchw")
    parser.add_argument("-w", dest="workspace", type=int, default=1 << 30)
    parser.add_argument("-p", dest="profiles", action="append", default=[])
    parser.add_argument("-s", dest="strict", action="store_true")
    arguments = parser.parse_args(argv)
    if not re.match(r"^\d+(,\d+)*$", arguments.dims):
        parser.error(f"-d {arguments.dims}: give the input dimensions as comma-separated "
                     "integers, e.g. 3,224,224")
    try:
        header = read_encrypted(arguments.etlt, arguments.key, "etlt model")
        if header.get("format") != "etlt":
            raise Failure(f"{arguments.etlt} is not an exported .etlt model")
        dims = tuple(int(part) for part in arguments.dims.split(","))
        channels, height, width = (int(n) for n in header["input_image_size"].split(","))
        expected = (height, width, channels) if arguments.order == "nhwc" else (
            channels, height, width)
        if dims != expected:
            raise Failure(f"UffParser: input {INPUT_NODE} has dimensions "
                          f"{','.join(str(n) for n in expected)}, not {arguments.dims} (-d)")
        for node in arguments.outputs.split(","):
            if node != header["output_node"]:
                raise Failure(f"UffParser: output node {node} not found in the model "
                              f"(it has {header['output_node']})")
        if arguments.precision == "int8":
            if not arguments.cache or not os.path.isfile(arguments.cache):
                raise Failure(f"INT8 needs a calibration cache (-c): "
                              f"{arguments.cache or 'none given'} does not exist")
            read_model(arguments.cache, "calibration cache")
    except Failure as failure:
        say(f"[ERROR] {failure}")
        return 1
    say(f"[INFO] Detected input dimensions from the model: (-1, {arguments.dims})")
    say(f"[INFO] Building a {arguments.precision} engine, max batch size {arguments.max_batch}")
    write_model(arguments.engine, {
        "format": "engine", "key": None, "precision": arguments.precision,
        "max_batch_size": arguments.max_batch, "dims": arguments.dims,
        "input_order": arguments.order, "from_digest": file_digest(arguments.etlt),
        "classes": header["classes"], "parameters": header["parameters"]})
    say(f"[INFO] Engine written to {arguments.engine}")
    return 0
