"""The KFP v1 metrics / UI-metadata builders and the SVG training curve."""

import json
import math
import xml.etree.ElementTree as ET

import jsonschema
import pytest
from report_helpers import METRICS_SCHEMA, SAMPLES, UI_METADATA_SCHEMA, csv_rows

from tao_step import chart, evaluate_report, kfp_ui, parse, report
from tao_step.parse import TrainingCurve


@pytest.mark.parametrize("name", [
    "accuracy-top1-baseline", "retrained-top5-accuracy", "a", "A9", "trt_engine-size-mb",
    "x" * 64,
])
def test_valid_metric_names(name):
    assert kfp_ui.metric(name, 0.5)["name"] == name


@pytest.mark.parametrize("name", ["", "1abc", "-a", "a-", "a_", "a b", "a.b", "top1%", "x" * 65])
def test_invalid_metric_names(name):
    with pytest.raises(ValueError):
        kfp_ui.metric(name, 0.5)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "0.5", None, True])
def test_metric_values_must_be_finite_numbers(value):
    with pytest.raises(ValueError):
        kfp_ui.metric("m", value)


def test_metric_format_and_document_limits():
    with pytest.raises(ValueError):
        kfp_ui.metric("m", 0.5, "percent")
    with pytest.raises(ValueError):
        kfp_ui.metrics_document([kfp_ui.metric("m", 1), kfp_ui.metric("m", 2)])
    with pytest.raises(ValueError):
        kfp_ui.metrics_document([kfp_ui.metric(f"m{i}", i) for i in range(51)])
    document = kfp_ui.metrics_document([kfp_ui.metric("m", 0.25, kfp_ui.PERCENTAGE)])
    jsonschema.validate(document, METRICS_SCHEMA)
    assert document == {"metrics": [{"name": "m", "numberValue": 0.25, "format": "PERCENTAGE"}]}


def test_write_json_refuses_nan(tmp_path):
    with pytest.raises(ValueError):
        kfp_ui.write_json(str(tmp_path / "x.json"), {"metrics": [{"numberValue": math.nan}]})
    assert not (tmp_path / "x.json").exists()


def test_every_metric_name_the_report_can_emit_is_valid():
    for label in report.LABELS:
        assert kfp_ui.METRIC_NAME.match(evaluate_report.top1_metric(label))


def test_an_empty_table_or_markdown_is_never_built():
    """1.8.5's loader rejects an empty source, and with it all of the step's outputs."""
    with pytest.raises(ValueError):
        kfp_ui.table(["a"], [])
    with pytest.raises(ValueError):
        kfp_ui.markdown(" \n")
    assert kfp_ui.table(["a"], [("x",)])["source"] == "x\n"


def test_confusion_matrix_has_labels_squared_rows_and_quotes_names():
    labels = ['dog, large', 'say "hi"', "plain", "with space"]
    matrix = [[i * 4 + j for j in range(4)] for i in range(4)]
    output = kfp_ui.confusion_matrix(labels, matrix)
    jsonschema.validate({"outputs": [output]}, UI_METADATA_SCHEMA)
    rows = csv_rows(output["source"])
    assert len(rows) == 16
    assert rows[1] == ["dog, large", 'say "hi"', "1"]
    assert {(r[0], r[1]): int(r[2]) for r in rows} == {
        (labels[i], labels[j]): matrix[i][j] for i in range(4) for j in range(4)}
    assert output["schema"] == [{"name": "target", "type": "CATEGORY"},
                                {"name": "predicted", "type": "CATEGORY"},
                                {"name": "count", "type": "NUMBER"}]


def test_confusion_matrix_shape_and_label_checks():
    with pytest.raises(ValueError):
        kfp_ui.confusion_matrix(["a", "b"], [[1, 2]])
    with pytest.raises(ValueError):
        kfp_ui.confusion_matrix(["a", "a"], [[1, 2], [3, 4]])


def test_table_and_markdown_outputs():
    table = kfp_ui.table(["image", "class"], [("a,b.jpg", 'x "y"'), ("c.jpg", "z")])
    assert csv_rows(table["source"]) == [["a,b.jpg", 'x "y"'], ["c.jpg", "z"]]
    document = kfp_ui.ui_metadata_document([table, kfp_ui.markdown("# hi"),
                                            kfp_ui.web_app("<p>x</p>")])
    jsonschema.validate(json.loads(json.dumps(document)), UI_METADATA_SCHEMA)
    assert all(o["storage"] == "inline" for o in document["outputs"])
    with pytest.raises(ValueError):
        kfp_ui.markdown("  \n")


def test_markdown_escaping():
    assert kfp_ui.md_escape("electric_bicycle") == "electric\\_bicycle"
    assert kfp_ui.md_escape("a|b*c") == "a\\|b\\*c"
    table = kfp_ui.md_table(("a", "b"), [(kfp_ui.md_escape("x|y"), "1")])
    assert table.splitlines() == ["| a | b |", "| --- | --- |", "| x\\|y | 1 |"]


# --------------------------------------------------------------------------- chart

@pytest.mark.parametrize("low, high, step", [(0.27, 0.78, 0.1), (0.80, 0.99, 0.05),
                                             (0.0, 1.0, 0.2), (12.0, 1500.0, 250.0)])
def test_nice_ticks_cover_the_range_with_round_steps(low, high, step):
    ticks = chart.nice_ticks(low, high)
    assert ticks[0] <= low and ticks[-1] >= high
    assert all(t2 - t1 == pytest.approx(step) for t1, t2 in zip(ticks, ticks[1:], strict=False))


def test_tick_labels():
    assert chart.tick_label(0.95, 0.05, percent=True) == "95%"
    assert chart.tick_label(0.975, 0.025, percent=True) == "97.5%"
    assert chart.tick_label(0.4, 0.2) == "0.4"
    assert chart.epoch_ticks(1, 80) == [20, 40, 60, 80]
    assert chart.epoch_ticks(3, 3) == [3]


def svg_of(curve: TrainingCurve) -> ET.Element:
    return ET.fromstring(chart.training_curves_svg(curve, "Training curve: <baseline> & co"))


def texts(svg: ET.Element) -> list[str]:
    return [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")]


def test_training_curve_svg_is_well_formed_with_two_charts_and_legends():
    text = (SAMPLES / "train_baseline.training.csv").read_text(encoding="utf-8")
    curve, _ = parse.parse_training_csv(text)
    svg = svg_of(curve)
    words = texts(svg)
    assert "Training curve: <baseline> & co" in words  # escaped in the XML, intact here
    assert {"Loss", "Accuracy"} <= set(words)
    assert words.count("train") == 2 and words.count("validation") == 2
    assert words.count("epoch") == 2
    assert any(w.endswith("%") for w in words)  # accuracy axis in percent
    lines = list(svg.iter("{http://www.w3.org/2000/svg}polyline"))
    assert len(lines) == 4  # loss and accuracy, train and validation
    assert all(len(line.get("points").split()) == 12 for line in lines)
    tips = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}title")]
    assert "epoch 12, validation: 98.80%" in tips


def test_training_curve_with_gaps_single_epoch_and_missing_series():
    gaps = TrainingCurve([1, 2, 3, 4], {"loss": [1.0, None, 0.8, 0.7],
                                        "val_loss": [None, None, None, None]}, "x")
    svg = svg_of(gaps)
    assert len(list(svg.iter("{http://www.w3.org/2000/svg}polyline"))) == 1  # 3-4 only
    assert texts(svg).count("validation") == 0  # no legend entry for an empty series
    assert "no values recorded" in texts(svg)  # the accuracy chart has nothing
    single = svg_of(TrainingCurve([5], {"loss": [0.5], "acc": [0.9], "val_acc": [0.9]}, "x"))
    assert "5" in texts(single)
    flat = svg_of(TrainingCurve([1, 2], {"acc": [1.0, 1.0]}, "x"))
    assert texts(flat).count("train") == 1


def test_training_curve_html_page():
    curve = TrainingCurve([1, 2], {"loss": [1.0, 0.5]}, "training.csv")
    html = chart.training_curves_html(curve, "T", "from training.csv")
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html and "from training.csv" in html
