"""Render what the KFP UI shows for one example run, from the sample TAO outputs.

Regenerate the committed pictures (from the repository root, after changing tao_step/):

    .venv/bin/python docs/render_report_example.py

It runs ``python -m tao_step report`` for every step of a run, each with the fake TAO
command replaying ``tests/data/tao_output``, and writes:

    docs/images/training-curve.svg   the baseline training curve (web-app output), which
                                     evaluate-model publishes for train-model
    docs/images/example-report.md    every publishing step's UI outputs, titled with its
                                     step name: markdown as is, tables and the confusion
                                     matrix as markdown tables, the curve as the picture
                                     above (the Run output tab orders steps by node id)
"""

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "tests" / "data" / "tao_output"
FAKE_TAO = ROOT / "tests" / "data" / "fake_tao.py"
IMAGES = ROOT / "docs" / "images"
WORKSPACE = "/workspace/tao-experiments"  # shown instead of the temporary folder


def retrained_evaluate_output() -> str:
    """The 2-class sample as the pruned and retrained model might score it."""
    spec = importlib.util.spec_from_file_location("make_samples", SAMPLES / "make_samples.py")
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    names, matrix = ["bicycle", "electric_bicycle"], [[69, 13], [4, 232]]
    text = (SAMPLES / "evaluate_2class.txt").read_text(encoding="utf-8")
    return (text[:text.index("Evaluation Loss")]
            + "Evaluation Loss: 0.31870371103286743\nEvaluation Top K accuracy: 1.0\n"
            + "Found 318 images belonging to 2 classes.\nConfusion Matrix\n"
            + maker.numpy_str(matrix) + "\nClassification Report\n"
            + maker.sklearn_report(names, matrix) + "\n")


def run_step(work: Path, title: str, kind: str, options: list, ops: list | None) -> dict:
    out = work / "out" / title.replace(" ", "-")
    argv = [sys.executable, "-m", "tao_step", "report", kind, "--out-dir", str(out),
            *(str(o) for o in options)]
    if ops is not None:
        argv += ["--", sys.executable, str(FAKE_TAO), *(str(op) for op in ops)]
    result = subprocess.run(argv, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"{title}: exit {result.returncode}\n{result.stdout}{result.stderr}")
    return json.loads((out / "mlpipeline-ui-metadata.json").read_text(encoding="utf-8"))


def as_markdown(output: dict, curve_link: str) -> str:
    kind = output["type"]
    if kind == "markdown":
        return output["source"]
    if kind == "web-app":
        return f"![training curve]({curve_link})\n"
    rows = [line.split(",") for line in output["source"].strip().splitlines()]
    if kind == "table":
        header = output["header"]
    else:  # confusion matrix: one row per target class, one column per predicted class
        labels = output["labels"]
        counts = {(t, p): c for t, p, c in rows}
        header = ["target \\ predicted", *labels]
        rows = [[t, *(counts[t, p] for p in labels)] for t in labels]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        models, images = work / "models", work / "data" / "split" / "test"
        models.mkdir()
        with open(models / "resnet_080.tlt", "wb") as f:
            f.truncate(89_710_000)  # only its size is reported
        (work / "retrained_evaluate.txt").write_text(retrained_evaluate_output())
        steps = [
            # train publishes nothing itself: evaluate shows its report first (the card
            # titles are evaluate-model's).
            ("train baseline", "train", ["--results-dir", work / "output", "--label", "baseline",
                                         "--hand-over", work / "output" / "report.json"],
             ["copy", SAMPLES / "train_baseline.training.csv", work / "output" / "training.csv",
              "print", SAMPLES / "train_baseline.log"]),
            ("evaluate-model", "evaluate", ["--label", "baseline", "--top-k", 3,
                                            "--training-report", work / "output" / "report.json"],
             ["print", SAMPLES / "evaluate_2class.txt"]),
            ("prune-model", "prune", ["--input-model", models / "resnet_080.tlt",
                                "--output-model", models / "resnet18_pruned.tlt"],
             ["print", SAMPLES / "prune.log", "bytes", 57_000_000,
              models / "resnet18_pruned.tlt"]),
            ("reevaluate-model", "evaluate",
             ["--label", "retrained", "--top-k", 3, "--min-accuracy", 0.9,
              "--gate-file", work / "gate"], ["print", work / "retrained_evaluate.txt"]),
            ("test-infer", "inference", ["--image-dir", images, "--max-rows", 8],
             ["subst", "@IMAGE_DIR@", images, "copy", SAMPLES / "inference_result.csv",
              images / "result.csv", "print", SAMPLES / "inference.log"]),
            ("convert-trt", "convert", ["--engine", models / "final_model.int8.engine",
                                    "--precision", "int8"],
             ["print", SAMPLES / "convert.log", "bytes", 14_100_000,
              models / "final_model.int8.engine"]),
            ("summary", "summary",
             ["--baseline-accuracy", "0.952830188679", "--retrained-accuracy", "0.946540880503",
              "--pruning-ratio", "0.635360190029", "--min-accuracy", "0.9",
              "--artifact", f"unpruned-model={models / 'resnet_080.tlt'}",
              "--artifact", f"pruned-model={models / 'resnet18_pruned.tlt'}",
              "--artifact", f"int8-engine={models / 'final_model.int8.engine'}",
              "--artifact", f"fp16-engine={models / 'final_model.fp16.engine'}"], None),
        ]
        sections = []
        for title, kind, options, ops in steps:
            ui = run_step(work, title, kind, options, ops)
            if kind == "train":
                continue
            for output in ui["outputs"]:
                if output["type"] == "web-app" and title == "evaluate-model":
                    html = output["source"]
                    svg = html[html.index("<svg"):html.index("</svg>") + len("</svg>")]
                    (IMAGES / "training-curve.svg").write_text(svg + "\n", encoding="utf-8")
            body = "\n".join(as_markdown(o, "training-curve.svg") for o in ui["outputs"])
            sections.append(f"<!-- step: {title} -->\n\n{body}")
        report = ("<!-- Generated by docs/render_report_example.py from tests/data/tao_output;"
                  " do not edit. -->\n\n" + "\n---\n\n".join(sections))
        (IMAGES / "example-report.md").write_text(report.replace(tmp, WORKSPACE),
                                                  encoding="utf-8")
    for name in ("training-curve.svg", "example-report.md"):
        print(f"wrote {IMAGES / name} ({(IMAGES / name).stat().st_size} bytes)")


if __name__ == "__main__":
    main()
