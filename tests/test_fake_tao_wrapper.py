"""rehearsal/fake_tao/wrapper.py: the fake TAO re-reads a subtask's options the way TAO's
wrapper does (tao_tensorflow1_backend@d73dcfc nvidia_tao_tf1/cv/common/entrypoint/
entrypoint.py, launch_job: options joined unquoted into bash -c '...', shlex.split, bash),
so a value that got past the checks does in a rehearsal what it would do in TAO's pod."""

from __future__ import annotations

import argparse
import os

import pytest

from rehearsal.fake_tao import wrapper


def subtask_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="export")
    parser.add_argument("--gpus", type=int, default=1)
    parser.add_argument("-m", "--model_path", dest="model", required=True)
    parser.add_argument("-o", "--output_file")
    parser.add_argument("-k", "--key", default="")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("-el", "--excluded_layers", nargs="*", default=[])
    return parser


def received(value: str):
    """What the script gets for ``-o VALUE`` after the wrapper's round through bash."""
    text = wrapper.options_text({"model": "m.hdf5", "output_file": value, "gpus": 2},
                                subtask_parser())
    return wrapper.through_bash(text)


def test_options_are_joined_as_the_wrapper_joins_them():
    parsed = vars(subtask_parser().parse_args(
        ["-m", "a.hdf5", "-k", "", "-v", "-el", "x", "y", "--gpus", "2"]))
    # long names, "" and None left out, flags bare, lists joined, the wrapper's own dropped
    assert wrapper.options_text(parsed, subtask_parser()) == (
        "--model_path a.hdf5 --verbose --excluded_layers x y ")


# The hostile values of issue 15: what TAO's script would be given for them.
@pytest.mark.parametrize("value, script_gets", [
    ("plain/name-1.onnx", "plain/name-1.onnx"),
    ("a b.onnx", ["a", "b.onnx"]),  # split into two arguments
    ("$HOME/x", os.environ.get("HOME", "") + "/x"),
    ("${HOME}/x", os.environ.get("HOME", "") + "/x"),
    ("a\\b", "ab"),
    ("{a,b}.onnx", ["a.onnx", "b.onnx"]),
    ("m`touch${IFS}pwned`.onnx", "m.onnx"),
    ("x#y", "x#y"),  # a comment only at a word's start
])
def test_the_script_receives_what_bash_makes_of_a_value(tmp_path, monkeypatch, value,
                                                        script_gets):
    monkeypatch.chdir(tmp_path)
    argv, status = received(value)
    expected = script_gets if isinstance(script_gets, list) else [script_gets]
    assert (argv, status) == (["--model_path", "m.hdf5", "--output_file", *expected], 0)


def test_a_command_in_a_value_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv, _ = received("m`touch${IFS}pwned`.onnx")
    assert (tmp_path / "pwned").is_file() and argv[-1] == "m.onnx"


def test_globs_and_dollars_are_expanded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "found.onnx").write_text("")
    assert received("*.onnx")[0][-1] == "found.onnx"
    pid = received("$$")[0][-1]
    assert pid.isdigit() and pid != "$$"  # bash's process id


@pytest.mark.parametrize("value", ["a;b", "a|b", "a&&b", "a>b"])
def test_operators_end_the_command(tmp_path, monkeypatch, value):
    """The script gets "a"; bash then runs "b --key ..." as a command (there is none), or
    sends the script's output to a file b."""
    monkeypatch.chdir(tmp_path)
    argv, status = received(value)
    assert argv == ["--model_path", "m.hdf5", "--output_file", "a"]
    assert (status, (tmp_path / "b").exists()) == ((0, True) if ">" in value else (127, False))


def test_a_double_quote_is_a_syntax_error():
    argv, status = received('a"b')
    assert argv is None and status == 2


def test_a_single_quote_crashes_the_wrapper():
    with pytest.raises(wrapper.Crash, match="No closing quotation"):
        received("a'b")


def test_reread_keeps_the_wrapper_options_and_refuses_what_the_script_cannot_parse():
    parser = subtask_parser()
    first = parser.parse_args(["-m", "a.hdf5", "-o", "out.onnx", "--gpus", "2"])
    again = wrapper.reread(first, parser)
    assert (again.model, again.output_file, again.gpus) == ("a.hdf5", "out.onnx", 2)
    split = parser.parse_args(["-m", "a.hdf5", "-o", "out .onnx"])
    with pytest.raises(wrapper.ScriptFailed, match="do not parse"):
        wrapper.reread(split, parser)
    with pytest.raises(wrapper.ScriptFailed, match="bash exited with status 127"):
        wrapper.reread(parser.parse_args(["-m", "a;nosuchcommand"]), parser)
