"""Each search option is declared once, as a SearchSettings field: the flags, search()'s
keywords, settings files and the options table follow it, and nothing drifts."""

from __future__ import annotations

import argparse
import dataclasses
import re
import typing
from pathlib import Path
from typing import Any

import optuna
import pytest
from typing_extensions import Unpack

from dense_nas.cli import build_parser
from dense_nas.cli.search import settings
from dense_nas.errors import UserInputError, flag
from dense_nas.model.metrics import METRICS
from dense_nas.space import SearchSpace
from dense_nas.study import search
from dense_nas.study.settings import (
    MAX_SEED,
    METRIC_CHOICES,
    OPTIONS,
    SearchOptions,
    SearchSettings,
    options_table,
)
from tests.helpers import TINY_SPACE, main_in_process

FIELDS = [field.name for field in dataclasses.fields(SearchSettings)]
#: what the annotations name only for the type checker
NAMES = {"SearchSpace": SearchSpace}


def _search_parser() -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser: argparse.ArgumentParser = sub.choices["search"]
    return parser


def _parse(*args: str) -> SearchSettings:
    return settings(build_parser().parse_args(["search", *args]))


def test_every_field_has_its_flag_landing_in_it() -> None:
    flags = {o: a.dest for a in _search_parser()._actions for o in a.option_strings}
    for name in FIELDS:
        option = OPTIONS[name]
        assert flags.get(option.flag) == name, f"{name}: no {option.flag} flag landing in it"
        assert flag(name) == option.flag, f"{name}: errors would name {flag(name)}"


def test_every_field_is_a_search_keyword_of_the_same_type() -> None:
    keywords = typing.get_type_hints(SearchOptions, localns=NAMES)
    fields = typing.get_type_hints(SearchSettings, localns=NAMES)
    assert list(keywords) == FIELDS
    for name in FIELDS:
        assert keywords[name] == fields[name], f"search({name}=...) is not typed as the field"
    hints = typing.get_type_hints(search, localns=NAMES)
    assert hints["options"] == Unpack[SearchOptions]


def test_every_field_has_its_row_in_the_options_table() -> None:
    rows = options_table().splitlines()[2:]
    assert len(rows) == len(FIELDS)
    for name, row in zip(FIELDS, rows, strict=True):
        option = OPTIONS[name]
        assert row.startswith(f"| `{option.flag}"), row
        assert f"| `{name}` |" in row and option.shown_default.split("<")[0] in row
        assert all(f"`{choice}`" in row for choice in option.choices)


def test_help_shows_each_flags_default_and_choices(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "100000")  # one line per flag: nothing wrapped
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["search", "--help"])
    assert done.value.code == 0
    shown = capsys.readouterr().out
    assert re.search(r"--trials N +finished trials .*\(default: 24\)$", shown, re.M)
    assert "--sampler SAMPLER" in shown and "(choices: tpe, random," in shown
    for option in OPTIONS.values():
        assert option.help in shown, option.name
        assert f"default: {option.shown_default})" in option.help


def test_the_objectives_metrics_are_the_metrics() -> None:
    assert tuple(METRICS) == METRIC_CHOICES


@pytest.mark.parametrize("name", [o.name for o in OPTIONS.values() if o.choices])
def test_every_choice_is_checked_before_anything_runs(name: str) -> None:
    unknown: dict[str, Any] = {name: "no-such-choice"}
    with pytest.raises(UserInputError) as refused:
        SearchSettings(**unknown)
    assert refused.value.param == name and "no-such-choice" in str(refused.value)


@pytest.mark.parametrize("seed", ["-1", str(2**32), "1180591620717411303424"])
def test_a_seed_outside_numpys_range_is_one_line_naming_seed(
    seed: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ran = main_in_process(capsys, "search", "--seed", seed, "--out", str(tmp_path / "out"))
    assert ran.returncode == 2
    assert ran.stderr == (
        f"dense-nas: error: --seed: must be a whole number from 0 to {MAX_SEED}, got {seed}\n"
    )
    assert not (tmp_path / "out").exists()
    with pytest.raises(UserInputError, match=r"^seed: must be a whole number from 0"):
        search(seed=int(seed), out=tmp_path / "out")


def test_the_largest_seed_is_taken() -> None:
    assert _parse("--seed", str(MAX_SEED)).seed == MAX_SEED


def test_printed_settings_read_back_to_the_same_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ["--trials", "3", "--study", "s", "--data-arg", "size=8", "--data-arg", "tag='12'"]
    flags += ["--verbose", "--compile", "off", "--val-size", "0.2", "--timeout", "60"]
    flags += ["--out", str(tmp_path / "out"), "--trainer-config", str(tmp_path / "t.yaml")]
    printed = main_in_process(capsys, "search", *flags, "--print-config")
    assert printed.returncode == 0, printed.stderr
    assert not (tmp_path / "out").exists()  # printed, not run
    path = tmp_path / "study.yaml"
    path.write_text(printed.stdout)

    again = main_in_process(capsys, "search", "--config", str(path), "--print-config")

    assert again.stdout == printed.stdout
    assert _parse("--config", str(path)) == _parse(*flags)
    assert _parse("--config", str(path)).data_args == {"size": 8, "tag": "12"}


def test_flags_given_override_the_settings_file(tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    path.write_text("n_trials: 5\nseed: 3\ndata_args: {size: 8}\ncompile: 'off'\n")
    chosen = _parse("--config", str(path), "--trials", "7", "--data-arg", "size=4")
    assert (chosen.n_trials, chosen.seed, chosen.compile) == (7, 3, "off")
    assert chosen.data_args == {"size": 4}  # the flags' arguments replace the file's


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("trials: 4\n", "trials: not a search option; did you mean n_trials?"),
        ("n_trials: 0\n", "n_trials: must be a positive integer, got 0"),
        ("n_trials: many\n", "n_trials: must be a whole number, got 'many'"),
        ("seed: -1\n", f"seed: must be a whole number from 0 to {MAX_SEED}, got -1"),
        ("compile: off\n", "compile: must be a value, not false; quote a word such as 'on'"),
        ("sampler: bayes\n", "sampler: must be one of tpe, random"),
        ("verbose: 1\n", "verbose: must be true or false, got 1"),
        ("sampler: null\n", "sampler: needs a value; leave the key out for the default (tpe)"),
        ("data_args: [1, 2]\n", "data_args: must be a mapping of keyword arguments"),
        ("- n_trials\n", "must be a mapping of option names to values"),
    ],
)
def test_a_bad_settings_file_is_one_line_naming_the_key(
    text: str, says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(text)
    ran = main_in_process(capsys, "search", "--config", str(path), "--out", str(tmp_path / "o"))
    assert ran.returncode == 2
    assert ran.stderr.startswith(f"dense-nas: error: {path}: {says}"), ran.stderr
    assert ran.stderr.count("\n") == 1 and "Traceback" not in ran.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.slow  # a trial process: about 20 s on 2 busy cores
def test_a_search_runs_with_its_settings_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(
        f"space: {TINY_SPACE}\nn_trials: 5\nepochs: 1\naccelerator: cpu\nthreads: 1\n"
        f"study_name: from-file\nout: {tmp_path / 'out'}\n"
    )
    ran = main_in_process(capsys, "search", "--config", str(path), "--trials", "1", "--quiet")
    assert ran.returncode == 0, ran.stderr
    storage = f"sqlite:///{tmp_path / 'out' / 'dense-nas.db'}"
    study = optuna.load_study(study_name="from-file", storage=storage)
    assert len(study.trials) == 1  # the flag's budget, the file's everything else
    assert study.trials[0].params and "val acc" in ran.stdout
