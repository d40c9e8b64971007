"""tao_step.shell: the characters accepted in a value TAO's wrapper re-reads with bash pass
through that round unchanged, shown with the real bash and the wrapper's own string
(tao_tensorflow1_backend@d73dcfc entrypoint.py launch_job, emulated by
rehearsal/fake_tao/wrapper.py); everything else is refused in one line."""

from __future__ import annotations

import pytest

from rehearsal.fake_tao import wrapper
from tao_step import shell


def through_bash(value: str) -> list:
    argv, status = wrapper.through_bash(f"--output_file {value} --key k ")
    assert status == 0
    return argv


@pytest.mark.parametrize("character", sorted(shell.SAFE))
def test_every_accepted_character_passes_bash_unchanged(tmp_path, monkeypatch, character):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    # At a word's start and end, inside, doubled, and after = and : (where bash would
    # expand a ~), in an argument as the wrapper builds it.
    for value in (character, f"a{character}b", f"{character}a", f"a{character}",
                  character * 2, f"k={character}", f"a:{character}"):
        assert through_bash(value) == ["--output_file", value, "--key", "k"], value


def test_only_ascii_letters_and_digits_and_eleven_signs():
    assert len(shell.SAFE) == 26 * 2 + 10 + 10
    assert shell.unsafe_character("tao-experiments/export/final_model_v1.2+fp16,b=8:x@y%") is None


# Issue 15's hostile values, each refused naming its first character and what bash does.
@pytest.mark.parametrize("value, character, effect", [
    ("out;rm", ";", "run the rest as another command"),
    ("out|tee", "|", "run the rest as another command"),
    ("out&", "&", "run the rest as another command"),
    ("m`touch${IFS}pwned`.onnx", "`", "a command's output"),
    ("$HOME/out", "$", "a variable's value"),
    ("${HOME}", "$", "a variable's value"),
    ("it's", "'", "the wrapper crashes"),
    ('a"b', '"', "remove it as a quote"),
    ("a\\b", "\\", "remove it as a quote or escape"),
    ("*.onnx", "*", "file names it matches"),
    ("model?.onnx", "?", "file names it matches"),
    ("[ab].onnx", "[", "file names it matches"),
    ("my model.onnx", " ", "split the value into two arguments"),
    ("{a,b}", "{", "two arguments"),
    ("~/model", "~", "home folder"),
    ("#model", "#", "comment"),
    ("a>b", ">", "redirect"),
    ("mod\u00e8le", "\u00e8", "only ASCII letters"),
])
def test_hostile_values_are_refused_in_one_line(value, character, effect):
    problem = shell.bash_problem("export_model_output_file", value)
    assert problem.startswith(f'export_model_output_file: "{value}" contains {character!r} '
                              f"(U+{ord(character):04X}): TAO's wrapper runs every argument "
                              "through bash, which would ")
    assert effect in problem and "\n" not in problem
    assert problem.endswith("Use only letters, digits and _ . / - + @ , = : %")


def test_a_key_is_refused_without_showing_it_or_its_character():
    problem = shell.bash_problem("api_key", "s3cr3t$key", secret=True)
    assert "s3cr3t" not in problem and "'$'" not in problem and "U+" not in problem
    assert problem.startswith("api_key: the key contains a character that bash would change")
    assert "a key Secret does not avoid this" in problem
