"""The results commands on a study made by a real ``search()``: what a user's study holds.

The other results tests use studies built trial by trial (to place ties, failures and
duplicates exactly); these read what the search itself wrote.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from dense_nas.cli import main
from dense_nas.data import make_datamodule
from dense_nas.records import study_attrs, trial_attrs
from dense_nas.results.loading import load_best, trial_arch
from dense_nas.results.selection import select_trial
from tests._study_fixtures import BuiltStudy


def _where(built: BuiltStudy) -> list[str]:
    return ["--storage", built.storage, "--study", built.name, "--out", str(built.out)]


def test_the_search_recorded_what_every_reader_needs(searched: BuiltStudy) -> None:
    study = searched.load()
    recorded = study_attrs(study)
    assert recorded["space"] == "test-tiny" and recorded["data"] == "digits"
    assert recorded["image_size"] == [8, 8] and recorded["val_size"] == 0.1
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert complete
    for trial in complete:
        attrs = trial_attrs(trial)
        assert attrs["arch_key"].startswith(trial_arch(trial).key + "|")
        assert attrs["epochs"] == 1 and attrs["params"] > 0
        assert "checkpoint" in attrs or "duplicate_of" in attrs
        if "duplicate_of" not in attrs:  # --compile auto stays eager on the CPU
            assert attrs["compiled"] is False


def test_best_and_load_best_agree_and_the_weights_score_what_the_trial_recorded(
    searched: BuiltStudy, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["best", *_where(searched), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    study = searched.load()
    chosen = select_trial(study)
    assert shown["chosen"] == chosen.number
    module = load_best(searched.storage, searched.name)
    assert module.config == trial_arch(chosen)
    datamodule = make_datamodule("digits", batch_size=512, seed=0, val_size=0.1)
    datamodule.setup("fit")
    correct = total = 0
    with torch.no_grad():
        for batch in datamodule.val_dataloader():
            images, labels = datamodule.on_after_batch_transfer(batch, 0)
            correct += int((module(images).argmax(dim=1) == labels).sum())
            total += len(labels)
    assert abs(correct / total - chosen.values[0]) < 1e-6


def test_export_and_retrain_work_on_the_searched_study(
    searched: BuiltStudy, tmp_path: Path
) -> None:
    chosen = select_trial(searched.load())
    output = tmp_path / "best.onnx"
    assert main(["export", *_where(searched), "--format", "onnx", "--output", str(output)]) == 0
    images = torch.randn(5, 1, 8, 8)
    session = ort.InferenceSession(str(output))
    (logits,) = session.run(None, {session.get_inputs()[0].name: images.numpy()})
    expected = load_best(searched.storage, searched.name)(images).detach().numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-3, atol=1e-4)
    # retrain records its result on the study: a copy keeps the shared one read-only
    copied = tmp_path / "copy.db"
    # (SQLite's backup API: the storage is in WAL mode, so the file alone may lag behind)
    source, target = sqlite3.connect(searched.out / "dense-nas.db"), sqlite3.connect(copied)
    source.backup(target)
    source.close()
    target.close()
    copy = BuiltStudy(f"sqlite:///{copied}", searched.name, tmp_path)
    assert main(["retrain", *_where(copy), "--epochs", "1"]) == 0
    (recorded,) = study_attrs(copy.load())["retrains"]
    assert recorded["trial"] == chosen.number and recorded["epochs"] == 1
    (logs,) = recorded["logs"]  # the search logged to csv: so does the retrain, in its --out
    assert logs["logger"] == "csv"
    assert Path(logs["location"]).is_relative_to(tmp_path.resolve())
    assert "retrains" not in study_attrs(searched.load())
