"""Compile time of this pipeline against the original sample's shape, each in a fresh process.

    python benchmarks/compile_time.py [--runs N]

Both are timed end to end as a user runs them (interpreter start, importing kfp, building
the DAG, writing the .tar.gz). The baseline rebuilds the original's structure from
../shared/reference/original-interface.md: eleven ContainerOps in one chain, a hostPath
volume on each, nothing else. Prints the medians and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

BASELINE = '''
import warnings
warnings.simplefilter("ignore", FutureWarning)
from kfp import dsl, compiler
from kubernetes import client as k8s

STEPS = [("download-model", "ngc"), ("train-model", "classification"),
         ("evaluate-model", "classification"), ("prune-model", "classification"),
         ("retrain-model", "classification"), ("reevaluate-model", "classification"),
         ("test-infer", "classification"), ("export-model", "classification"),
         ("calibrate-model", "classification"), ("export-int8-model", "classification"),
         ("convert-trt", "converter")]
NAMES = """pretrained_model_name pretrained_model_dir train_classification_data
train_classification_spec train_classification_output train_num_gpus prune_model_input_file
prune_model_output_file prune_equalization_criterion prune_threshold
retrain_classification_spec retrain_classification_output test_infer_model_input_file
test_infer_image_path test_infer_class_map test_infer_batch_size export_model_input_file
export_model_output_file calibrate_classification_spec calibrate_max_batches
calibrate_output_file export_int8_cache_file export_int8_batches
export_int8_model_output_file convert_trt_output_file convert_trt_output_layer
convert_trt_dims convert_trt_input_type convert_trt_max_batch_size convert_trt_precision
convert_trt_batch_size tao_mount_dir api_key""".split()

def body(*params):
    p = dict(zip(NAMES, params))
    previous = None
    for name, command in STEPS:
        op = dsl.ContainerOp(name=name, image="tao", command=[command],
                             arguments=[str(v) for v in list(p.values())[:6]])
        op.add_volume(k8s.V1Volume(name="nvidia-workspace", host_path=k8s.V1HostPathVolumeSource(
            path=str(p["tao_mount_dir"]))))
        op.add_volume_mount(k8s.V1VolumeMount(mount_path=str(p["tao_mount_dir"]),
                                              name="nvidia-workspace"))
        if previous is not None:
            op.after(previous)
        previous = op

exec("def original(" + ", ".join(n + "='x'" for n in NAMES) + "): body(" + ", ".join(NAMES) + ")")
compiler.Compiler().compile(dsl.pipeline(name="original")(original), OUTPUT)
'''


def timed(argv: list) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        baseline = Path(tmp) / "original.py"
        baseline.write_text(f"OUTPUT = {str(Path(tmp) / 'original.tar.gz')!r}\n" + BASELINE)
        ours = [sys.executable, str(REPO / "tao_iva_classification_pipeline.py"),
                "-o", str(Path(tmp) / "ours.tar.gz")]
        timed(ours), timed([sys.executable, str(baseline)])  # warm the file cache
        samples = {"original shape": [], "this pipeline": []}
        for _ in range(args.runs):  # interleaved, so load changes hit both alike
            samples["original shape"].append(timed([sys.executable, str(baseline)]))
            samples["this pipeline"].append(timed(ours))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    for name, value in medians.items():
        print(f"{name:15s} median {value:.3f} s over {args.runs} runs "
              f"(min {min(samples[name]):.3f}, max {max(samples[name]):.3f})")
    print(f"ratio {medians['this pipeline'] / medians['original shape']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
