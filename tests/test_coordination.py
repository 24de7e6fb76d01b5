"""Commands sharing one study: a paused worker, changed spaces, per-process seeds, twins."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, cast

import optuna
import pytest
from optuna.trial import TrialState

from dense_nas.records import SLOT_ATTR_PREFIX, record_trial
from dense_nas.results.status import status_json, status_text, study_status
from dense_nas.space import Candidate, Task, load_space, sample, space_version
from dense_nas.study import search
from dense_nas.study.coordination.slots import SamplerSlot, sampler_seed, slot_holders
from dense_nas.study.coordination.twins import find_duplicate
from dense_nas.study.storage import make_storage
from tests._study_fixtures import ctrl_c_reaches_it
from tests.helpers import TINY_SPACE, Ran, main_in_process, search_args, wait_for

optuna.logging.set_verbosity(optuna.logging.WARNING)

DIGITS = Task(10, 1, (8, 8))  # what the embedded digits data poses a space


def _search(cwd: Path, study: str, trials: int, *extra: str) -> subprocess.Popen[str]:
    """`dense-nas search` on the tiny space in its own process, one CPU thread, no pruner."""
    args = search_args(*extra, trials=trials, epochs=2, out=cwd, study=study, pruner="none")
    return subprocess.Popen(
        [sys.executable, "-m", "dense_nas", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        preexec_fn=ctrl_c_reaches_it,
    )


def _trials(cwd: Path, study: str, storage: str | None = None) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name=study, storage=make_storage(storage, cwd)).trials
    except KeyError:  # not created yet
        return []


@pytest.mark.slow  # two commands and their trial processes: four interpreters import Lightning
def test_a_paused_worker_drops_the_trial_another_worker_retried(tmp_path: Path) -> None:
    # A journal file: a process stopped while it holds SQLite's lock (rollback mode)
    # would block every other writer for as long as it stays stopped; a journal's lock
    # held by a stopped process is broken once stale.
    journal = str(tmp_path / "p.journal")
    paused = _search(tmp_path, "p", 2, "--heartbeat", "2", "--storage", journal)
    other: subprocess.Popen[str] | None = None
    try:

        def training() -> list[int]:
            return [
                t.number
                for t in _trials(tmp_path, "p", journal)
                if t.state == TrialState.RUNNING and "arch" in t.user_attrs
            ]

        wait_for(training, 300, "the first command to start a trial")
        os.kill(paused.pid, signal.SIGSTOP)
        (number,) = training()  # still RUNNING: the pause caught it training
        other = _search(tmp_path, "p", 2, "--heartbeat", "2", "--storage", journal)

        def retried() -> bool:
            trials = _trials(tmp_path, "p", journal)
            return trials[number].state == TrialState.FAIL and any(
                t.user_attrs.get("retry_of") == number
                and t.state in (TrialState.COMPLETE, TrialState.PRUNED)
                for t in trials
            )

        wait_for(retried, 300, "the second command to fail the silent trial and retry it")
        os.kill(paused.pid, signal.SIGCONT)
        out, err = paused.communicate(timeout=300)
        _, other_err = other.communicate(timeout=300)
    finally:
        for proc in (paused, other):
            if proc is not None and proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
                proc.kill()
                proc.communicate()
    assert paused.returncode == 0, err
    assert other.returncode == 0, other_err
    assert "Traceback" not in err
    dropped = (
        f"trial {number} was finished by another worker while this one was paused; "
        "its result is dropped"
    )
    assert out.splitlines().count(dropped) == 1, out
    trials = _trials(tmp_path, "p", journal)
    states = [t.state for t in trials]
    assert TrialState.RUNNING not in states
    assert states.count(TrialState.COMPLETE) + states.count(TrialState.PRUNED) == 2
    assert not list((tmp_path / "checkpoints").glob(f"p-trial-{number}.ckpt"))


BEFORE_ANY_TRIAL = "1e-9"  # --timeout: the command sets the study up and trains nothing


def _space_file(tmp_path: Path, name: str, old: str, new: str) -> str:
    """The tiny space with ``old`` replaced by ``new``, in a file of its own."""
    text = Path(TINY_SPACE).read_text()
    assert old in text
    path = tmp_path / name
    path.write_text(text.replace(old, new))
    return str(path)


def _setup(capsys: pytest.CaptureFixture[str], tmp_path: Path, space: str) -> Ran:
    return main_in_process(
        capsys, "search", "--space", space, "--study", "v", "--out", str(tmp_path),
        "--accelerator", "cpu", "--timeout", BEFORE_ANY_TRIAL,
    )  # fmt: skip


def _add_finished_trial(study: optuna.Study) -> None:
    """A COMPLETE trial drawn from the tiny space, as its distributions record it."""
    space = load_space(TINY_SPACE)
    distributions = space_version(space, DIGITS).distributions
    params: dict[str, Any] = {"num_blocks": 1, "bottleneck": True, "growth_rate": 4}
    params |= {"layers_per_block": 1, "lr": 0.1}
    drawn = optuna.trial.FixedTrial(params)
    candidate = sample(space, cast(optuna.Trial, drawn), DIGITS)  # records params and macs
    attrs = {**drawn.user_attrs, **candidate.to_dict(), "arch_key": candidate.key, "epochs": 2}
    study.add_trial(
        optuna.trial.create_trial(
            value=0.5,
            params=params,
            distributions={k: distributions[k] for k in params},
            user_attrs=attrs,
        )
    )


def test_the_study_records_its_space_and_each_version_it_resumes_with(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = _setup(capsys, tmp_path, TINY_SPACE)
    assert first.returncode == 0, first.stderr
    study = optuna.load_study(study_name="v", storage=make_storage(None, tmp_path))
    fingerprint = space_version(load_space(TINY_SPACE), DIGITS).fingerprint
    (recorded,) = study.user_attrs["space_versions"]
    assert (recorded["name"], recorded["fingerprint"], recorded["first_trial"]) == (
        "test-tiny",
        fingerprint,
        0,
    )
    assert sorted(recorded["parameters"]) == sorted(
        space_version(load_space(TINY_SPACE), DIGITS).distributions
    )
    _add_finished_trial(study)
    again = _setup(capsys, tmp_path, TINY_SPACE)  # the same file: the same version
    assert again.returncode == 0 and "space changed" not in again.stdout
    wider = _space_file(tmp_path, "wider.yaml", "high: 8, step: 2", "high: 12, step: 2")
    changed = _setup(capsys, tmp_path, wider)
    assert changed.returncode == 0, changed.stderr
    new = space_version(load_space(wider), DIGITS).fingerprint
    assert new != fingerprint
    line = (
        f"space changed (fingerprint {fingerprint[:8]} \u2192 {new[:8]}): trials from #1 on use it"
    )
    assert changed.stdout.splitlines().count(line) == 1, changed.stdout
    resumed = optuna.load_study(study_name="v", storage=make_storage(None, tmp_path))
    versions = resumed.user_attrs["space_versions"]
    assert [v["fingerprint"] for v in versions] == [fingerprint, new]
    assert versions[1]["first_trial"] == 1
    status = study_status(resumed)  # what `dense-nas status` shows
    assert json.loads(status_json(status))["space_versions"] == versions
    assert (
        f"space versions: test-tiny {fingerprint[:8]} from #0, test-tiny {new[:8]} from #1"
        in status_text(status).splitlines()
    )


def test_a_space_optuna_cannot_mix_with_the_study_goes_on_as_its_next_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _setup(capsys, tmp_path, TINY_SPACE).returncode == 0
    storage = make_storage(None, tmp_path)
    _add_finished_trial(optuna.load_study(study_name="v", storage=storage))
    linear = _space_file(tmp_path, "linear.yaml", "high: 0.2, log: true", "high: 0.2")
    grown = _setup(capsys, tmp_path, linear)
    assert grown.returncode == 0, grown.stderr
    assert (
        "space changed: lr is no longer on a log scale; study 'v' goes on as version 2 (v@v2) "
        "with 1 of 1 earlier trials"
    ) in grown.stdout.splitlines()
    study = optuna.load_study(study_name="v", storage=storage)  # as it was, and readable
    assert len(study.trials) == 1 and len(study.user_attrs["space_versions"]) == 1
    (carried,) = optuna.load_study(study_name="v@v2", storage=storage).trials
    assert carried.distributions["lr"] == optuna.distributions.FloatDistribution(0.05, 0.2)


def test_each_command_on_a_study_claims_its_own_sampler_slot(tmp_path: Path) -> None:
    storage = make_storage(f"sqlite:///{tmp_path / 's.db'}", tmp_path)
    study = optuna.create_study(study_name="s", storage=storage)
    other = optuna.load_study(study_name="s", storage=storage)  # as a second command opens it
    with SamplerSlot(study, grace=30.0) as first:
        with SamplerSlot(other, grace=30.0) as second:
            assert (first.number, second.number) == (0, 1)
            assert sampler_seed(5, first.number) == 5  # the only or first command: --seed
            assert sampler_seed(5, second.number) != 5
        holder = slot_holders(study)[1]
        assert holder["pid"] == os.getpid() and holder["heartbeat"] == 0.0  # let go
    study.set_user_attr(f"{SLOT_ATTR_PREFIX}0", {**slot_holders(study)[0], "heartbeat": 1.0})
    with SamplerSlot(other, grace=30.0) as after_a_crash:  # slot 0's holder went silent
        assert after_a_crash.number == 0


def _twin(study: optuna.Study, params: dict[str, Any]) -> optuna.Trial:
    """A RUNNING trial that trains the candidate of ``params`` for one epoch, as a worker
    elsewhere would have recorded it."""
    study.enqueue_trial(params)
    trial = study.ask()
    drawn = sample(load_space(TINY_SPACE), trial, DIGITS)
    candidate = Candidate(drawn.arch, drawn.training.with_epochs(1))
    record_trial(trial, arch=candidate.arch.to_dict(), arch_key=candidate.key)
    record_trial(trial, heartbeat=time.time())
    return trial


@pytest.mark.parametrize("state", [TrialState.COMPLETE, TrialState.PRUNED])
def test_a_candidate_another_trial_trains_waits_for_it_and_reuses_its_result(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], state: TrialState
) -> None:
    assert _setup(capsys, tmp_path, TINY_SPACE).returncode == 0
    study = optuna.load_study(study_name="v", storage=make_storage(None, tmp_path))
    params: dict[str, Any] = {"num_blocks": 1, "bottleneck": False, "growth_rate": 6}
    params |= {"layers_per_block": 2, "lr": 0.1}
    twin = _twin(study, params)
    study.enqueue_trial(params)  # the search draws the same candidate next

    def finish_the_twin_once_waited_for() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(t.user_attrs.get("waits_for") == twin.number for t in study.trials):
                record_trial(twin, epochs=1)
                study.tell(twin, 0.77 if state == TrialState.COMPLETE else None, state=state)
                return
            time.sleep(0.2)

    other = threading.Thread(target=finish_the_twin_once_waited_for)
    other.start()
    lines: list[str] = []
    search(
        space=TINY_SPACE, study_name="v", n_trials=2, epochs=1, out=tmp_path,
        accelerator="cpu", threads=1, echo=lines.append,
    )  # fmt: skip
    other.join()
    waited = study.trials[1]
    assert f"trial 1 waits for trial {twin.number}, which trains the same candidate" in lines
    assert waited.state == state and waited.user_attrs["duplicate_of"] == twin.number
    assert waited.value == (0.77 if state == TrialState.COMPLETE else None)
    assert waited.user_attrs["epochs"] == 1
    assert not (tmp_path / "checkpoints").exists()  # nothing trained


def test_waiting_for_a_twin_ends_at_the_timeout_and_is_retried_on_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _setup(capsys, tmp_path, TINY_SPACE).returncode == 0
    study = optuna.load_study(study_name="v", storage=make_storage(None, tmp_path))
    params: dict[str, Any] = {"num_blocks": 1, "bottleneck": False, "growth_rate": 6}
    params |= {"layers_per_block": 2, "lr": 0.1}
    twin = _twin(study, params)  # never finishes while the search runs
    study.enqueue_trial(params)
    search(
        space=TINY_SPACE, study_name="v", n_trials=2, epochs=1, out=tmp_path,
        accelerator="cpu", threads=1, timeout=1.0,
    )  # fmt: skip
    waited = study.trials[1]
    assert waited.state == TrialState.FAIL and waited.user_attrs["waits_for"] == twin.number
    assert waited.user_attrs["failure"] == (
        f"--timeout passed while it waited for trial {twin.number}; retried on resume"
    )
    (retry,) = [t for t in study.trials if t.user_attrs.get("retry_of") == 1]
    assert retry.state == TrialState.WAITING and retry.system_attrs["fixed_params"] == params


@pytest.mark.slow  # the waiting trial trains in the end: a trial process imports Lightning
def test_a_trial_whose_twin_goes_silent_trains_the_candidate_itself(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _setup(capsys, tmp_path, TINY_SPACE).returncode == 0
    study = optuna.load_study(study_name="v", storage=make_storage(None, tmp_path))
    params: dict[str, Any] = {"num_blocks": 1, "bottleneck": False, "growth_rate": 6}
    params |= {"layers_per_block": 2, "lr": 0.1}
    twin = _twin(study, params)
    study.enqueue_trial(params)
    waited_for = threading.Event()

    def beat_until_waited_for() -> None:  # the twin's worker, alive until the wait begins
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not waited_for.is_set():
            record_trial(twin, heartbeat=time.time())
            if any(t.user_attrs.get("waits_for") == twin.number for t in study.trials):
                waited_for.set()
            time.sleep(0.2)

    worker = threading.Thread(target=beat_until_waited_for)
    worker.start()
    lines: list[str] = []
    search(
        space=TINY_SPACE, study_name="v", n_trials=2, epochs=1, out=tmp_path,
        accelerator="cpu", threads=1, heartbeat=2.0, echo=lines.append,
    )  # fmt: skip
    worker.join()
    assert f"trial 1 waits for trial {twin.number}, which trains the same candidate" in lines
    trials = study.trials
    assert trials[twin.number].state == TrialState.FAIL  # silent: failed and retried
    waiter = trials[1]
    assert waiter.state == TrialState.COMPLETE and "checkpoint" in waiter.user_attrs
    assert waiter.user_attrs["waits_for"] is None and "duplicate_of" not in waiter.user_attrs
    (retry,) = [t for t in trials if t.user_attrs.get("retry_of") == twin.number]
    assert retry.user_attrs.get("duplicate_of") == 1  # the retry reuses what the waiter trained


@pytest.mark.parametrize("storage", ["memory", "sqlite"])
def test_find_duplicate_finds_only_complete_trials(storage: str, tmp_path: Path) -> None:
    url = None if storage == "memory" else f"sqlite:///{tmp_path / 'dup.db'}"
    study = optuna.create_study(storage=url)
    outcomes: list[tuple[str, optuna.trial.TrialState, float | None]] = [
        ("a", optuna.trial.TrialState.COMPLETE, 0.9),
        ("a", optuna.trial.TrialState.COMPLETE, 0.5),
        ("b", optuna.trial.TrialState.PRUNED, None),
        ("c", optuna.trial.TrialState.FAIL, None),
    ]
    for key, state, value in outcomes:
        trial = study.ask()
        trial.set_user_attr("arch_key", key)
        study.tell(trial, value, state=state)
    running = study.ask()
    running.set_user_attr("arch_key", "d")
    found = find_duplicate(study, "a")
    assert found is not None and found.number == 0 and found.value == 0.9
    assert all(find_duplicate(study, key) is None for key in ("b", "c", "d", "e"))
