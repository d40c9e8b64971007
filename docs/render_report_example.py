"""Render what the KFP UI shows for one example run, from the sample TAO outputs.

Regenerate the committed pictures (from the repository root, after changing tao_step/):

    .venv/bin/python docs/render_report_example.py

It runs ``python -m tao_step report`` for every step of a run, each with the fake TAO
command replaying ``tests/data/tao_output`` and keeping its result as in the pipeline, then
the exit handler ``python -m tao_step summary``, and writes:

    docs/images/training-curve.svg   the baseline training curve (web-app output), which
                                     evaluate-model publishes for train-model
    docs/images/training-curves-compared.svg
                                     both models' curves, as the summary shows them
    docs/images/example-report.md    the summary's UI outputs, then every publishing step's,
                                     titled with its step name: markdown as is, tables and
                                     the confusion matrix as markdown tables, the curves as
                                     the pictures above
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
RUN_UID = "5d0c6f0e-7a53-4b1e-9c1c-2f1d8a4b6e21"  # the example run's workflow uid


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


def retrained_training_csv() -> str:
    """The sample training.csv as a retraining from the pruned model might go: it starts
    from trained weights, so its loss is lower and its accuracy higher from the start."""
    lines = (SAMPLES / "train_baseline.training.csv").read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    rows = []
    for line in lines[1:]:
        cells = []
        for name, cell in zip(header, line.split(","), strict=True):
            value = float(cell)
            if "loss" in name:
                value *= 0.7
            elif "acc" in name:
                value = 1 - (1 - value) * 0.6
            cells.append(cell if name == "epoch" else f"{value:.6f}")
        rows.append(",".join(cells))
    return "\n".join([lines[0], *rows]) + "\n"


def run_step(work: Path, title: str, kind: str, options: list, ops: list | None) -> dict:
    """``tao_step report KIND`` (or, without ``ops``, ``tao_step summary``) as the step
    ``title`` of the example run."""
    out = work / "out" / title.replace(" ", "-")
    if ops is None:
        argv = [sys.executable, "-m", "tao_step", kind, "--out-dir", str(out),
                *(str(o) for o in options)]
    else:
        argv = [sys.executable, "-m", "tao_step", "report", kind, "--out-dir", str(out),
                *(str(o) for o in options),
                "--", sys.executable, str(FAKE_TAO), *(str(op) for op in ops)]
    env = dict(os.environ, PYTHONPATH=str(ROOT), TAO_RUN_WORKSPACE=str(work),
               TAO_RUN_NAME="tao-iva-classification-x7k2p", TAO_RUN_UID=RUN_UID,
               TAO_RUN_STEP=title.replace(" ", "-"))
    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        sys.exit(f"{title}: exit {result.returncode}\n{result.stdout}{result.stderr}")
    return json.loads((out / "mlpipeline-ui-metadata.json").read_text(encoding="utf-8"))


def as_markdown(output: dict, curve_link: str) -> str:
    kind = output["type"]
    if kind == "markdown":
        return output["source"]
    if kind == "web-app":
        return f"![training curves]({curve_link})\n"
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
        (work / "retrained_training.csv").write_text(retrained_training_csv())
        steps = [
            # train publishes nothing itself: evaluate shows its report first (the card
            # titles are evaluate-model's).
            ("train-model", "train", ["--results-dir", work / "output", "--label", "baseline",
                                      "--hand-over", work / "output" / "report.json",
                                      "--keep-previous", work / "output"],
             ["copy", SAMPLES / "train_baseline.training.csv", work / "output" / "training.csv",
              "print", SAMPLES / "train_baseline.log"]),
            ("evaluate-model", "evaluate", ["--label", "baseline", "--top-k", 3,
                                            "--training-report", work / "output" / "report.json"],
             ["print", SAMPLES / "evaluate_2class.txt"]),
            ("prune-model", "prune", ["--input-model", models / "resnet_080.tlt",
                                      "--output-model", models / "resnet18_pruned.tlt",
                                      "--keep-previous", models / "resnet18_pruned.tlt"],
             ["print", SAMPLES / "prune.log", "bytes", 57_000_000,
              models / "resnet18_pruned.tlt"]),
            ("retrain-model", "train", ["--results-dir", work / "output-retrain", "--label",
                                        "retrained", "--keep-previous", work / "output-retrain",
                                        "--hand-over", work / "output-retrain" / "report.json"],
             ["copy", work / "retrained_training.csv", work / "output-retrain" / "training.csv",
              "print", SAMPLES / "train_baseline.log"]),
            ("reevaluate-model", "evaluate",
             ["--label", "retrained", "--top-k", 3, "--min-accuracy", 0.9,
              "--gate-file", work / "gate"], ["print", work / "retrained_evaluate.txt"]),
            ("test-infer", "inference", ["--image-dir", images, "--max-rows", 8,
                                         "--keep-previous", images / "result.csv"],
             ["subst", "@IMAGE_DIR@", images, "copy", SAMPLES / "inference_result.csv",
              images / "result.csv", "print", SAMPLES / "inference.log"]),
            ("convert-trt", "convert", ["--engine", models / "final_model.int8.engine",
                                        "--precision", "int8", "--keep-previous",
                                        models / "final_model.int8.engine"],
             ["print", SAMPLES / "convert.log", "bytes", 14_100_000,
              models / "final_model.int8.engine"]),
            # the exit handler, after every step (ops None: no TAO command)
            ("summary", "summary",
             ["--workspace", work, "--run", "tao-iva-classification-x7k2p", "--run-uid",
              RUN_UID, "--status", "Succeeded", "--failures", '"null"',
              "--artifact", "pruned-model", models / "resnet18_pruned.tlt",
              "--artifact", "retrained-results", work / "output-retrain",
              "--artifact", "tensorrt-engine", models / "final_model.int8.engine"], None),
        ]
        sections = []
        pictures = {"evaluate-model": "training-curve.svg",
                    "summary": "training-curves-compared.svg"}
        for title, kind, options, ops in steps:
            ui = run_step(work, title, kind, options, ops)
            if kind == "train":
                continue
            for output in ui["outputs"]:
                if output["type"] == "web-app" and title in pictures:
                    html = output["source"]
                    svg = html[html.index("<svg"):html.index("</svg>") + len("</svg>")]
                    (IMAGES / pictures[title]).write_text(svg + "\n", encoding="utf-8")
            body = "\n".join(as_markdown(o, pictures.get(title, "")) for o in ui["outputs"])
            section = f"<!-- step: {title} -->\n\n{body}"
            if title == "summary":  # first: the report a user opens
                sections.insert(0, section)
            else:
                sections.append(section)
        report = ("<!-- Generated by docs/render_report_example.py from tests/data/tao_output;"
                  " do not edit. -->\n\n" + "\n---\n\n".join(sections))
        (IMAGES / "example-report.md").write_text(report.replace(tmp, WORKSPACE),
                                                  encoding="utf-8")
    for name in ("training-curve.svg", "training-curves-compared.svg", "example-report.md"):
        print(f"wrote {IMAGES / name} ({(IMAGES / name).stat().st_size} bytes)")


if __name__ == "__main__":
    main()
