"""The parsers against realistic TAO 3.x output (tests/data/tao_output)."""

import json

import pytest
from report_helpers import SAMPLES, evaluate_text

from tao_step import parse


def sample(name: str) -> str:
    return (SAMPLES / name).read_text(encoding="utf-8")


# --------------------------------------------------------------------------- evaluate

def test_two_classes_as_printed_by_tao():
    ev = parse.parse_evaluate(sample("evaluate_2class.txt"))
    assert ev.problems == []
    assert ev.loss == pytest.approx(0.3027826488580344)
    assert ev.topk == 1.0
    assert ev.matrix == [[70, 12], [3, 233]]
    assert ev.class_names == ["bicycle", "electric_bicycle"]
    assert ev.top1 == pytest.approx(303 / 318)
    assert ev.images == 318
    assert [r.support for r in ev.report.rows] == [82, 236]
    assert ev.report.accuracy == 0.95 and ev.report.total == 318
    # Exact values from the matrix, consistent with the 2-decimal report.
    precision, recall, f1 = ev.macro
    assert precision == pytest.approx((70 / 73 + 233 / 245) / 2)
    assert recall == pytest.approx((70 / 82 + 233 / 236) / 2)
    assert abs(f1 - ev.report.summary["macro avg"].f1) <= 0.005


def test_many_classes_wrapped_rows_spaces_digits_and_interleaved_logs():
    text = sample("evaluate_24class.txt")
    truth = json.loads(sample("evaluate_24class.expected.json"))
    # The sample really has wrapped rows and log lines inside the matrix and the report.
    matrix_text = text[text.index("Confusion Matrix"):text.index("Classification Report")]
    assert matrix_text.count("\n") > 2 * 24 and "[INFO]" in matrix_text
    assert "[INFO]" in text[text.index("Classification Report"):]

    ev = parse.parse_evaluate(text)
    assert ev.problems == []
    assert ev.class_names == truth["class_names"]
    assert ev.matrix == truth["matrix"]
    total = sum(map(sum, truth["matrix"]))
    assert ev.top1 == pytest.approx(sum(truth["matrix"][i][i] for i in range(24)) / total)
    assert ev.loss == truth["loss"] and ev.topk == truth["topk_accuracy"]
    assert "helicopter, light" in ev.class_names and "type 2 glider" in ev.class_names
    assert ev.class_names == sorted(ev.class_names)  # Keras' order, kept as printed


def test_truncated_output_publishes_no_top1():
    ev = parse.parse_evaluate(sample("evaluate_truncated.txt"))
    assert ev.matrix is None and ev.top1 is None and ev.macro is None
    assert ev.loss is not None  # what was printed before the cut is still good
    assert any("cut off" in p for p in ev.problems)


def test_empty_output():
    ev = parse.parse_evaluate("")
    assert (ev.loss, ev.topk, ev.matrix, ev.report, ev.top1, ev.class_names) == (None,) * 6
    assert len(ev.problems) >= 4


def test_numpy_abbreviated_matrix_is_refused():
    row = "[ 40   0   0 ...   0   0   0]"
    text = ("Confusion Matrix\n[" + row + "\n " + row + "\n ...\n " + row + "]\n"
            "Classification Report\n")
    ev = parse.parse_evaluate(text)
    assert ev.matrix is None and ev.top1 is None
    assert any("abbreviated" in p for p in ev.problems)


def test_report_cut_off_in_class_rows_is_not_taken_for_a_short_report():
    text = sample("evaluate_24class.txt")
    cut = text.index("learjet_45")
    ev = parse.parse_evaluate(text[:cut])
    assert ev.report is None and ev.class_names is None
    assert any("cut off" in p for p in ev.problems)
    # The matrix is complete, so top-1 is still known; the names are not.
    assert ev.top1 is not None


def test_class_names_from_the_class_name_line_when_the_report_is_missing():
    text = sample("evaluate_2class.txt")
    text = "Class name = ['bicycle', 'electric_bicycle']\n" + text[:text.index("Classification")]
    ev = parse.parse_evaluate(text)
    assert ev.class_names == ["bicycle", "electric_bicycle"]
    assert ev.class_names_source == "class name line"
    assert ev.top1 == pytest.approx(303 / 318)


def test_matrix_that_disagrees_with_the_report_is_not_used():
    text = sample("evaluate_2class.txt").replace("[  3 233]]", "[  4 232]]")
    ev = parse.parse_evaluate(text)
    assert ev.top1 is None and ev.matrix is None
    assert any("disagree" in p for p in ev.problems)
    # The report's own rounded numbers are still TAO's numbers.
    assert ev.macro == (0.95, 0.92, 0.94)


def test_matrix_that_disagrees_with_the_image_count_is_not_used():
    text = sample("evaluate_2class.txt").replace("Found 318 images", "Found 319 images")
    assert parse.parse_evaluate(text).top1 is None


def test_matrix_that_disagrees_with_the_report_accuracy_is_not_used():
    text = sample("evaluate_2class.txt").replace(
        "accuracy                           0.95", "accuracy                           0.93")
    ev = parse.parse_evaluate(text)
    assert ev.top1 is None
    assert any("top-1 accuracy of 0.9528 but the classification report 0.93" in p
               for p in ev.problems)


# TAO's matrix leaves out classes without images that are never predicted (evaluate.py
# line 321 at tao_tensorflow1_backend@d73dcfc); tests/test_class_counts.py reads such logs
# printed by numpy and scikit-learn. These are the cases where it cannot be put back.

ONE_EMPTY = ("Found 412 images belonging to 2 classes.\nConfusion Matrix\n[[412]]\n"
             "Classification Report\n              precision    recall  f1-score   support\n\n"
             "         cat       1.00      1.00      1.00       412\n"
             "         dog       0.00      0.00      0.00         0\n\n"
             "   micro avg       1.00      1.00      1.00       412\n"
             "   macro avg       0.50      0.50      0.50       412\n"
             "weighted avg       1.00      1.00      1.00       412\n")


def test_a_left_out_class_is_put_back_from_the_reports_supports():
    ev = parse.parse_evaluate(ONE_EMPTY)
    assert ev.problems == ["no 'Evaluation Loss:' line",
                           "no valid 'Evaluation Top K accuracy:' line"]
    assert ev.matrix == [[412, 0], [0, 0]] and ev.left_out == ["dog"]
    assert ev.top1 == 1.0 and ev.report.total == 412


def test_a_smaller_matrix_whose_rows_do_not_match_the_supports_is_not_used():
    ev = parse.parse_evaluate(ONE_EMPTY.replace("[[412]]", "[[411]]"))
    assert ev.top1 is None and ev.matrix is None
    assert any("row totals do not match the classification report's supports" in p
               for p in ev.problems)


def test_a_smaller_matrix_without_the_report_cannot_be_placed():
    ev = parse.parse_evaluate("Class name = ['cat', 'dog']\n" + ONE_EMPTY[
        :ONE_EMPTY.index("Classification")])
    assert ev.top1 is None
    assert any("is 1x1 but there are 2 class names (TAO's matrix leaves out classes" in p
               for p in ev.problems)


def test_cells_of_an_abbreviated_matrix_are_placed_only_where_no_class_can_be_missing():
    row = "[{0:3d} {0:3d} {0:3d} ... {1:3d} {1:3d} {1:3d}]"
    lines = ["[" + row.format(i, 90 + i) for i in range(3)] + [" ..."] + [
        " " + row.format(i, 90 + i) for i in range(3, 6)]
    lines[-1] += "]"
    k = 40
    assert parse.elided_diagonal(lines, [5] * k) == {0: 0, 1: 1, 2: 2, 37: 93, 38: 94, 39: 95}
    supports = [5] * k
    supports[1] = supports[38] = 0  # either may be missing from the matrix
    assert parse.elided_diagonal(lines, supports) == {0: 0, 39: 95}


@pytest.mark.parametrize("names", [
    ["a", "b"],
    ["cat 1", "cat 10", "cat_2", "dog, large", "v 1.5"],
    ["Zebra", "ant", "bee", "x y z"] + [f"class {i}" for i in range(22)],
])
def test_generated_outputs_round_trip(names):
    k = len(names)
    matrix = [[(i * 7 + j * 3) % 5 + (90 if i == j else 0) for j in range(k)] for i in range(k)]
    ev = parse.parse_evaluate(evaluate_text(names, matrix))
    assert ev.problems == []
    assert ev.class_names == names and ev.matrix == matrix
    assert ev.top1 == pytest.approx(sum(matrix[i][i] for i in range(k)) / sum(map(sum, matrix)))


def test_class_with_no_predictions_matches_sklearn_zero_division():
    names, matrix = ["a", "b", "c"], [[5, 0, 0], [0, 5, 0], [3, 0, 0]]
    ev = parse.parse_evaluate(evaluate_text(names, matrix))
    assert ev.problems == []
    assert ev.class_stats[2].precision == 0 and ev.class_stats[2].f1 == 0


def test_old_sklearn_avg_total_row():
    text = ("Classification Report\n             precision    recall  f1-score   support\n\n"
            "          a       0.90      0.80      0.85        10\n"
            "          b       0.80      0.90      0.85        10\n\n"
            "avg / total       0.85      0.85      0.85        20\n")
    report, problem = parse.parse_classification_report(parse.lines_of(text)[1:])
    assert problem is None
    assert [r.name for r in report.rows] == ["a", "b"] and report.total == 20


def test_log_lines():
    assert parse.is_log_line("2022-03-08 07:50:58,374 [INFO] __main__: Processing")
    assert parse.is_log_line("W0308 07:50:58.374 140 deprecation.py:323] deprecated")
    assert parse.is_log_line("WARNING:tensorflow:From /usr/x.py:1: deprecated")
    assert not parse.is_log_line("         bicycle       0.96      0.85      0.90        82")


def test_training_csv_from_keras():
    curve, problem = parse.parse_training_csv(sample("train_baseline.training.csv"))
    assert problem is None
    assert curve.epochs == list(range(1, 13))  # Keras' 0-based index shown 1-based
    assert set(curve.series) == {"loss", "acc", "val_loss", "val_acc"}
    assert curve.last("val_acc") == pytest.approx(0.988032)


def test_training_csv_any_column_order_missing_columns_and_gaps():
    text = "val_accuracy,epoch,loss\n0.5,0,1.2\nnan,1,1.0\n,2,0.9\n0.8,3,\n"
    curve, problem = parse.parse_training_csv(text)
    assert problem is None
    assert curve.epochs == [1, 2, 3, 4]
    assert curve.series == {"val_acc": [0.5, None, None, 0.8], "loss": [1.2, 1.0, 0.9, None]}
    assert curve.last("loss") == 0.9


def test_training_csv_without_usable_columns():
    assert parse.parse_training_csv("")[0] is None
    assert parse.parse_training_csv("epoch,lr\n0,0.1\n")[0] is None
    assert parse.parse_training_csv("epoch,loss\n")[0] is None


def test_training_log_fallback_matches_the_csv():
    from_log, problem = parse.parse_training_log(sample("train_baseline.log"))
    from_csv, _ = parse.parse_training_csv(sample("train_baseline.training.csv"))
    assert problem is None
    assert from_log.epochs == from_csv.epochs
    for name in ("loss", "acc", "val_loss", "val_acc"):  # the log prints 4 decimals
        assert from_log.series[name] == pytest.approx(from_csv.series[name], abs=5e-5)


def test_training_log_ignores_progress_lines_and_checkpoint_lines():
    text = ("Epoch 1/2\n 1/9 [>...] - ETA: 5s - loss: 9.0 - acc: 0.1\n"
            "9/9 [=====] - 3s 1ms/step - loss: 1.0 - acc: 0.5 - val_loss: 1.1 - val_acc: 0.4\n"
            "\nEpoch 00001: saving model to /w/resnet_001.tlt\nEpoch 2/2\n"
            " 1/9 [>...] - ETA: 5s - loss: 9.0 - acc: 0.1\n")  # epoch 2 cut off
    curve, _ = parse.parse_training_log(text)
    assert curve.epochs == [1]
    assert curve.series == {"loss": [1.0], "val_loss": [1.1], "acc": [0.5], "val_acc": [0.4]}


def test_training_log_terminal_progress_with_carriage_returns():
    text = ("Epoch 1/1\n1/2 [===>...] - ETA: 1s - loss: 2.0\r"
            "2/2 [======] - 1s - loss: 1.5 - accuracy: 0.6 - val_loss: 1.4 - val_accuracy: 0.7\n")
    curve, _ = parse.parse_training_log(text)
    assert curve.series["acc"] == [0.6] and curve.series["val_acc"] == [0.7]


def test_training_log_without_epochs():
    assert parse.parse_training_log(sample("prune.log"))[0] is None


def test_total_val_lines():
    text = sample("train_baseline.log")
    assert parse.last_value(text, "Total Val accuracy:") == pytest.approx(0.9880002)
    assert parse.last_value(text, "Total Val Loss:") == pytest.approx(0.2701264526023991)
    assert parse.last_value("Total Val Loss: nan", "Total Val Loss:") is None


# --------------------------------------------------------------------------- prune, inference

def test_pruning_ratio():
    assert parse.parse_pruning_ratio(sample("prune.log")) == pytest.approx(0.6353601900291853)
    assert parse.parse_pruning_ratio("Pruning ratio (pruned model / original model): nan") is None
    assert parse.parse_pruning_ratio(sample("evaluate_2class.txt")) is None


def test_inference_csv_tolerance():
    text = ("image_path,class_name,confidence\n"
            "/d/a.jpg,bicycle,0.91\n\n"
            "/d/b.jpg,electric_bicycle\n"
            "/d/c.jpg,dog, large,0.5\n"
            '"/d/d,1.jpg","cat, small",0.75\n'
            "/d/e.jpg\n")
    rows, skipped = parse.parse_inference_csv(text)
    assert rows == [
        parse.Prediction("/d/a.jpg", "bicycle", 0.91),
        parse.Prediction("/d/b.jpg", "electric_bicycle", None),
        parse.Prediction("/d/c.jpg", "dog, large", 0.5),
        parse.Prediction("/d/d,1.jpg", "cat, small", 0.75),
    ]
    assert skipped == 1


def test_inference_sample():
    rows, skipped = parse.parse_inference_csv(sample("inference_result.csv"))
    assert len(rows) == 64 and skipped == 0
    assert {r.class_name for r in rows} == {"bicycle", "electric_bicycle"}
    assert all(0 < r.confidence <= 1 for r in rows)


ONE_BASED = "epoch,loss,val_acc\n1,1.0,0.5\n2,0.8,0.6\n3,0.7,0.7\n"


@pytest.mark.parametrize("text, last_epoch, epochs, uncertain", [
    (ONE_BASED, 3, [1, 2, 3], False),  # TAO's OneIndexedCSVLogger, 3 epochs run
    (ONE_BASED, 4, [2, 3, 4], False),  # Keras' 0-based index, resumed at epoch 2
    (ONE_BASED, None, [1, 2, 3], True),  # nothing to tell: shown as written, and said so
    (ONE_BASED, 7, [1, 2, 3], True),  # evidence that fits neither
    ("epoch,loss\n0,1.0\n1,0.9\n", None, [1, 2], False),  # a 0 is always 0-based
    ("epoch,loss\n0,1.0\n1,0.9\n", 2, [1, 2], False),
])
def test_training_csv_epoch_base_is_detected(text, last_epoch, epochs, uncertain):
    curve, problem = parse.parse_training_csv(text, last_epoch)
    assert problem is None and curve.epochs == epochs
    assert (curve.epoch_note is not None) == uncertain


def test_last_epoch_from_the_log_and_the_checkpoints():
    assert parse.last_keras_epoch(sample("train_baseline.log")) == 12
    assert parse.last_keras_epoch("no epochs") is None
    assert parse.last_checkpoint_epoch(["resnet_001.tlt", "resnet_010.tlt", "x.txt"]) == 10
    assert parse.last_checkpoint_epoch(["resnet_080.hdf5"]) == 80
    assert parse.last_checkpoint_epoch([]) is None
