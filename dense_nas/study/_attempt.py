"""One trial in its worker, from the asked trial to the told one.

A :class:`TrialAttempt` takes a trial through its steps, each a plain method:
:meth:`~TrialAttempt.candidate` samples what to train (a constraint, the GPU memory
share or the measured latency may prune it first), :meth:`~TrialAttempt.answer_from_twin` answers it from a
trial that trained the same candidate (waiting while one trains it), and
:meth:`~TrialAttempt.spec` readies the trial process's spec. The trial process then calls
:meth:`~TrialAttempt.on_epoch` after each epoch (the pruning answer, the progress
record, the observer), and :meth:`~TrialAttempt.settle` tells the study how it ended.
:meth:`~TrialAttempt.run_in` runs them in order under the trial's heartbeat.

A worker that was paused (SIGSTOP, a suspended machine) for longer than the heartbeat
grace finds its trial FAILED as silent and retried elsewhere: every write to it then
fails with ``UpdateFinishedTrialError``, and the retry's result is the one that counts.

Example:
    >>> from pathlib import Path
    >>> import optuna
    >>> from dense_nas.space import Task, load_space
    >>> from dense_nas.study import SearchObserver, SearchSettings
    >>> from dense_nas.study.loggers import prepare_loggers
    >>> from dense_nas.study.objectives import parse_objective
    >>> run = Run(settings=SearchSettings(epochs=1),
    ...           study=optuna.create_study(direction="maximize"),
    ...           space=load_space("digits-tiny"), task=Task(10, 1, (8, 8)),
    ...           objective=parse_objective("accuracy"), data="digits", data_args={},
    ...           data_dir=None, val_size=None, deadline=float("inf"), accelerator="cpu",
    ...           precision="32-true", observer=SearchObserver(),
    ...           loggers=prepare_loggers("none", Path("runs"), "demo"))
    >>> attempt = TrialAttempt(run, run.study.ask(), worker=0)
    >>> attempt.candidate().training.epochs
    1
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from typing import TYPE_CHECKING

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from dense_nas.errors import UserInputError
from dense_nas.model.latency_cache import record_trial_latency
from dense_nas.records import EpochProgress, WorkerInfo, record_trial, trial_attrs
from dense_nas.results.summary import describe_arch, trial_line
from dense_nas.space import Candidate, sample
from dense_nas.study._open import STORAGE_FAILURES
from dense_nas.study._run import Run
from dense_nas.study.coordination.heartbeats import (
    Heartbeat,
    may_retry,
    retry,
    retry_note,
    retry_silent_trials,
)
from dense_nas.study.coordination.resumes import (
    discard_resume,
    earlier_curve,
    made_progress,
    resume_path,
)
from dense_nas.study.coordination.twins import find_duplicate, find_running_twin
from dense_nas.study.latency_meter import MeasurementStopped
from dense_nas.study.memory_fit import fit_to_memory
from dense_nas.study.process.messages import EpochMessage, ErrorMessage, ResultMessage
from dense_nas.study.process.runner import Answer, ResultOrError, TrialProcess
from dense_nas.study.process.trial import TrialSpec

if TYPE_CHECKING:
    from dense_nas.study.process.pruning import Decide

RETRIED_KINDS = ("signal", "out-of-memory")
"""Trial process failures that are not the trial's own fault: retried up to ``retries``."""

_TWIN_POLL = 0.5
"""Seconds between looks at the twin a trial waits for."""


class _StoppedWaiting(Exception):
    """Ctrl-C or the deadline ended a trial's wait for its twin; the message says which."""


class TrialAttempt:
    """One trial of ``run``, asked by worker ``worker``, taken to its end.

    Args:
        run: the search the trial belongs to.
        trial: the trial, just asked.
        worker: the worker's index (its GPU memory share, its line in the live view).
        threads: torch threads of the trial process (0: its own choice).
    """

    def __init__(self, run: Run, trial: optuna.Trial, worker: int, threads: int = 0) -> None:
        self.run = run
        self.trial = trial
        self.worker = worker
        self.threads = threads
        name = f"{run.study.study_name}-trial-{trial.number}.ckpt"
        self.checkpoint = run.settings.out_dir / "checkpoints" / name
        folder = run.settings.resume_dir
        #: shared by every try of the trial's parameters (None: --resume-every 0)
        self.resume = None if folder is None else resume_path(folder, run.study, trial)
        self.started = time.perf_counter()
        #: another worker ended the trial: training stops and the result is dropped
        self.taken = False
        self._rule: Decide | None = None  # the pruning rule, from spec() on
        self._epochs = 0
        self._reported = False  # has this try reported an epoch yet

    def run_in(self, runner: TrialProcess) -> None:
        """Take the trial through every step, training it in ``runner``'s process if need be;
        drop it if another worker ended it first.

        Raises:
            UserInputError: the space broke its contract (the command stops).
            StorageInternalError, OSError, SQLAlchemyError: the storage failed; the trial
                is failed and retried on a best effort (:meth:`give_up`).
        """
        try:
            try:
                self._steps(runner)
            except STORAGE_FAILURES:
                self.give_up()
                raise
        except UpdateFinishedTrialError:
            self.run.observer.line(
                f"trial {self.trial.number} was finished by another worker while this one was "
                "paused; its result is dropped"
            )

    def _steps(self, runner: TrialProcess) -> None:
        s, trial = self.run.settings, self.trial
        host = WorkerInfo(
            host=socket.gethostname(), pid=os.getpid(), index=self.worker, grace=s.heartbeat
        )
        record_trial(trial, worker=host)
        with Heartbeat(trial, s.heartbeat / 3):
            candidate = self.candidate()
            if candidate is None or self.answer_from_twin(candidate):
                return
            spec = self.spec(candidate)
            meter = self.run.meter
            with meter.training() if meter else contextlib.nullcontext():
                result = runner.run(spec, self.on_epoch, s.out_dir / "specs")
            self.settle(result)

    def candidate(self) -> Candidate | None:
        """Sample the trial's candidate, set to ``--epochs`` and fitted to the worker's GPU
        memory share, and record it, with its latency when the study measures latency.

        Returns:
            The candidate, or ``None`` when it was pruned before training (then the trial
            is told PRUNED), or its latency could not be measured (told FAILED).

        Raises:
            UserInputError: the space broke its contract; the trial is FAILED (not
                counted) and the command stops.
        """
        run, trial = self.run, self.trial
        try:
            candidate = sample(run.space, trial, run.task)
        except optuna.TrialPruned:
            self._tell(TrialState.PRUNED)
            return None
        except UserInputError as err:
            record_trial(trial, failure=str(err), counts=False)
            run.study.tell(trial, state=TrialState.FAIL)  # not left RUNNING
            raise
        if run.settings.epochs is not None:
            candidate = Candidate(
                candidate.arch, candidate.training.with_epochs(run.settings.epochs)
            )
        if run.memory_budgets:  # trials share the GPU or the machine: fit the step to a share
            budget = run.memory_budgets[self.worker]
            device = "GPU" if run.accelerator == "gpu" else "CPU"
            try:
                candidate = fit_to_memory(
                    trial, candidate, run.task.image_size, budget, run.precision, device
                )
            except optuna.TrialPruned:
                self._tell(TrialState.PRUNED)
                return None
        arch, training = candidate.arch.to_dict(), candidate.training.to_dict()
        record_trial(trial, arch=arch, training=training, arch_key=candidate.key)
        return candidate if self._latency_allows(candidate) else None

    def _latency_allows(self, candidate: Candidate) -> bool:
        """Record the candidate's latency (read from the study, else measured now) and
        check it against the limit; without a latency to know, nothing happens.

        Returns:
            Whether the candidate goes on; if not, the trial is told: PRUNED over the
            limit, FAILED when the measurement failed or the command stopped during it
            (then retried on resume, as it was not the trial's fault).
        """
        run, trial, meter = self.run, self.trial, self.run.meter
        if meter is None:
            return True
        try:
            found = meter.latency(candidate.arch)
            if run.stop.is_set():  # measured, and kept; but the command is stopping
                raise MeasurementStopped(run.stop_reason())
        except MeasurementStopped as stopped:
            record_trial(trial, failure=str(stopped))
            retry(run.study, trial, str(stopped), new_attempt=False)
            self._tell(TrialState.FAIL)
            return False
        except STORAGE_FAILURES:
            raise
        except Exception as err:  # this network did not run on the target: the trial fails
            first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
            record_trial(trial, failure=f"latency measurement failed: {first_line}")
            self._tell(TrialState.FAIL)
            return False
        record_trial_latency(trial, found)
        reason = meter.violation(found)
        if reason is not None:
            record_trial(trial, pruned_reason=reason)
            self._tell(TrialState.PRUNED)
            return False
        return True

    def answer_from_twin(self, candidate: Candidate) -> bool:
        """Answer the trial from a trial that trained the same candidate, waiting while
        another RUNNING trial trains it.

        Returns:
            Whether the trial is told: answered from its twin, or FAILED (and retried)
            because Ctrl-C or ``--timeout`` ended the wait. ``False``: train it.
        """
        try:
            duplicate = find_duplicate(self.run.study, candidate.key) or self._await_twin()
        except _StoppedWaiting as stopped:
            record_trial(self.trial, failure=str(stopped))
            # not its fault: the next run answers it
            retry(self.run.study, self.trial, str(stopped), new_attempt=False)
            self._tell(TrialState.FAIL)
            return True
        if duplicate is None:
            return False
        self._reuse(duplicate)
        return True

    def _await_twin(self) -> FrozenTrial | None:
        """Wait while another RUNNING trial trains this trial's candidate.

        Returns:
            The twin, once COMPLETE or PRUNED (its result is this trial's too), or ``None``
            when there is none or it failed: then this trial trains the candidate itself.

        Raises:
            _StoppedWaiting: Ctrl-C, or ``--timeout`` passed while waiting.
        """
        run, trial = self.run, self.trial
        study, key = run.study, trial_attrs(trial)["arch_key"]
        waiting_for: int | None = None
        while True:
            twin = find_running_twin(study, trial.number, key)
            if twin is None:
                if waiting_for is not None:
                    if run.stop.is_set():  # the twin ended by Ctrl-C: do not start training now
                        raise _StoppedWaiting(run.stop_reason())
                    record_trial(trial, waits_for=None)  # others may now wait for this one
                return None
            if twin.number != waiting_for:
                waiting_for = twin.number
                record_trial(trial, waits_for=waiting_for)
                run.observer.line(
                    f"trial {trial.number} waits for trial {waiting_for}, "
                    "which trains the same candidate"
                )
            if run.stop.is_set():
                raise _StoppedWaiting(run.stop_reason())
            if time.monotonic() >= run.deadline:
                raise _StoppedWaiting(
                    f"--timeout passed while it waited for trial {waiting_for}; retried on resume"
                )
            run.stop.wait(_TWIN_POLL)
            with run.budget_lock:  # a twin whose worker died is failed and retried here
                retry_silent_trials(
                    study, run.settings.heartbeat, run.settings.retries, run.settings.resume_dir
                )
            (latest,) = (t for t in study.get_trials(deepcopy=False) if t.number == waiting_for)
            if latest.state in (TrialState.COMPLETE, TrialState.PRUNED):
                return latest
            if latest.state == TrialState.FAIL and not run.stop.is_set():
                record_trial(trial, waits_for=None)  # failed or retried: train it here
                return None

    def _reuse(self, duplicate: FrozenTrial) -> None:
        """Answer the trial from one that trained the same candidate: its values, or pruned."""
        trial, found = self.trial, trial_attrs(duplicate)
        record_trial(trial, duplicate_of=duplicate.number)
        if "epochs" in found:
            record_trial(trial, epochs=found["epochs"])
        if "images_per_second" in found:
            record_trial(trial, images_per_second=found["images_per_second"])
        if "precision" in found:
            record_trial(trial, precision=found["precision"])
        if "accuracy" in found:
            record_trial(trial, accuracy=found["accuracy"])
        self._tell(duplicate.state, duplicate.values)

    def spec(self, candidate: Candidate) -> TrialSpec:
        """The trial process's spec for ``candidate``; from here on the trial trains: its
        logs are recorded, its pruning rule made, and the observer hears it start."""
        run, s, trial = self.run, self.run.settings, self.trial
        arch, training = candidate.arch.to_dict(), candidate.training.to_dict()
        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        spec = TrialSpec(
            number=trial.number,
            arch=arch,
            training=training,
            data=run.data,
            data_args=run.data_args,
            data_dir=run.data_dir,
            val_size=run.val_size,
            seed=s.seed,
            accelerator=run.accelerator,  # resolved to cpu or gpu in prepare()
            devices=s.devices,
            threads=self.threads,
            precision=run.precision,
            compile=s.compile,
            checkpoint=str(self.checkpoint),
            verbose=s.verbose,
            logs=run.loggers.trial_logs(trial.number),
            trainer_config=run.trainer_config,
            resume=None if self.resume is None else str(self.resume),
            resume_every=max(s.resume_every, 1),
            metric=run.objective.metric,
        )
        if spec.logs:
            record_trial(trial, logs=spec.logs)
        self._rule = run.objective.pruning_rule(run.study, trial, candidate.arch)
        self._epochs = candidate.training.epochs
        run.observer.trial_started(trial.number, self.worker, describe_arch(arch), self._epochs)
        return spec

    def on_epoch(self, report: EpochMessage, answer: Answer) -> None:
        """Everything that follows an epoch of training.

        First the pruning answer (stop now?), sent at once so that the trial process
        trains its next epoch meanwhile (unless another worker of the command measures a
        latency: then only once it is done); then the progress, recorded on the trial for any
        reader of the storage, and the observer. A trial another worker ended is told to
        stop, and nothing more is written to it. After the last epoch of its schedule the
        pruner still hears the value, but the answer is always "go on": a trial that
        trained every epoch has cost all it will and ends COMPLETE, so ``best`` sees it.
        """
        epoch = int(report["epoch"])
        if not self._reported:
            self._reported = True
            self._take_over(epoch)
        stop = self._decide(epoch, float(report["value"]))
        if self.run.meter is not None:  # another worker's latency measurement waits for it
            self.run.meter.hold()
        answer(stop and (self.taken or epoch < self._epochs))
        if self.taken:
            return
        progress = EpochProgress(
            epoch=report["epoch"],
            epochs=self._epochs,
            accuracy=report["accuracy"],
            metric=self.run.objective.metric,
            value=report["value"],
            loss=report["loss"],
            images_per_second=round(report["images_per_second"], 1),
            at=time.time(),
        )
        try:
            record_trial(self.trial, progress=progress)
        except UpdateFinishedTrialError:
            self.taken = True
            return
        self.run.observer.epoch(self.trial.number, self.worker, progress)

    def _take_over(self, epoch: int) -> None:
        """Before a try's first epoch is judged: when it went on from an earlier try's
        resume checkpoint (its first epoch is not the first), record where, and copy the
        earlier tries' values onto this trial, so the pruner and the learning curve see
        the whole curve."""
        if epoch <= 1 or self.taken:
            return
        trial = self.trial
        try:
            record_trial(trial, resumed_from=epoch - 1)
            if not self.run.objective.multi:  # multi-objective trials keep no intermediates
                trials = self.run.study.get_trials(deepcopy=False)
                for step, value in earlier_curve(trials, trial, before=epoch).items():
                    trial.report(value, step)
        except UpdateFinishedTrialError:
            self.taken = True

    def _decide(self, epoch: int, value: float) -> bool:
        if self._rule is None:
            raise RuntimeError("on_epoch() before spec(): the trial has no pruning rule yet")
        if not self.taken:
            try:
                return self._rule(epoch, value)
            except UpdateFinishedTrialError:
                self.taken = True
        return True

    def settle(self, result: ResultOrError) -> None:
        """Tell the study how the trial process ended: COMPLETE with its values, PRUNED, or
        FAILED with the reason (retried when that was not the trial's fault).

        Raises:
            UpdateFinishedTrialError: another worker ended the trial meanwhile; the result
                is dropped, and so is its checkpoint.
        """
        try:
            if self.taken:
                raise UpdateFinishedTrialError(
                    f"trial {self.trial.number} was ended by another worker"
                ) from None
            if result["type"] == "result" and "logs" in result:
                record_trial(self.trial, logs=result["logs"])  # with the MLflow run id
            if result["type"] == "error":
                with contextlib.suppress(OSError):  # what a killed process had written of it
                    self.checkpoint.unlink(missing_ok=True)
                self._record_failure(result)
            else:
                self._record_result(result)
        except UpdateFinishedTrialError:
            with contextlib.suppress(OSError):
                self.checkpoint.unlink()
            raise

    def _record_failure(self, error: ErrorMessage) -> None:
        """Fail the trial with its reason; retry it when that was not its own fault."""
        run, trial, retries = self.run, self.trial, self.run.settings.retries
        if run.interrupted:
            # Ctrl-C: not the trial's fault, nor a try; the next run of the command trains it.
            record_trial(trial, failure="interrupted (Ctrl-C); retried on resume")
            retry(run.study, trial, "interrupted (Ctrl-C)", new_attempt=False)
        elif error["kind"] in RETRIED_KINDS and may_retry(
            trial, retries, progressed := made_progress(trial, self.resume)
        ):
            # Killed from outside or out of memory: the retry (enqueued first, so the budget
            # never sees a gap) takes this try's place in the budget, and goes on from the
            # resume checkpoint.
            note = retry_note(trial, retries, progressed)
            record_trial(trial, failure=error["reason"], retried=note)
            retry(run.study, trial, error["reason"], progressed=progressed)
        else:
            record_trial(trial, failure=error["reason"])
            self._discard_resume()  # failed for good: no try comes after
        self._tell(TrialState.FAIL)

    def _discard_resume(self) -> None:
        if self.resume is not None:
            discard_resume(self.resume)

    def _record_result(self, result: ResultMessage) -> None:
        run, trial = self.run, self.trial
        record_trial(
            trial,
            epochs=result["epochs"],
            precision=result["precision"],
            compiled=result["compiled"],
            ranks=result["ranks"],
            images_per_second=round(result["images_per_second"], 1),
            step_seconds=round(result["step_seconds"], 3),
            accuracy=result["accuracy"],
        )
        if run.objective.multi:
            record_trial(
                trial, intermediate={str(i + 1): v for i, v in enumerate(result["history"])}
            )
        if result["pruned"]:
            self._tell(TrialState.PRUNED)
            return
        path = result["checkpoint"]
        if path:
            from optuna.artifacts import upload_artifact

            from dense_nas.study.storage import artifact_store

            store = artifact_store(run.study)
            try:
                artifact_id = upload_artifact(
                    artifact_store=store, file_path=path, study_or_trial=trial
                )
            except OSError as err:  # a full disk: the store left no partial file
                with contextlib.suppress(OSError):
                    os.remove(path)
                reason = f"checkpoint not uploaded: {err}"
                self._record_failure({"type": "error", "kind": "error", "reason": reason})
                return
            try:
                record_trial(trial, checkpoint=artifact_id)
            except BaseException:
                with contextlib.suppress(OSError):  # nothing will ever point to it
                    store.remove(artifact_id)
                raise
            with contextlib.suppress(OSError):
                os.remove(path)
        values = run.objective.values(float(result["value"]), trial_attrs(trial))
        self._tell(TrialState.COMPLETE, values)

    def give_up(self) -> None:
        """Best effort once the storage failed mid-trial: leave no RUNNING trial behind.

        Free what the trial wrote (on a full disk that may be what lets the next writes
        through), then record why, enqueue a retry (the trial is not at fault) and tell
        FAIL. When even that fails the trial stays RUNNING in the storage; its heartbeat
        stops with this process, so after ``--heartbeat`` seconds the next worker on the
        study (or this command run again) fails it and retries it, as for a killed worker.
        """
        study, trial = self.run.study, self.trial
        reason = "the study's storage could not be written"
        with contextlib.suppress(OSError):
            self.checkpoint.unlink(missing_ok=True)
        try:
            record_trial(trial, failure=reason)
        except UpdateFinishedTrialError:
            return  # it was told before the storage failed: nothing is left RUNNING
        except STORAGE_FAILURES:
            pass  # try the rest all the same
        with contextlib.suppress(*STORAGE_FAILURES):
            retry(study, trial, reason, new_attempt=False)
        with contextlib.suppress(*STORAGE_FAILURES, UpdateFinishedTrialError):
            study.tell(trial, state=TrialState.FAIL)

    def _tell(self, state: TrialState, values: list[float] | None = None) -> None:
        run, trial = self.run, self.trial
        record_trial(trial, seconds=round(time.perf_counter() - self.started, 3))
        try:
            run.study.tell(trial, values if state == TrialState.COMPLETE else None, state=state)
        except ValueError:  # Optuna's "Cannot tell a FAIL trial": another worker ended it
            if _is_running(run.study, trial.number):
                raise
            raise UpdateFinishedTrialError(
                f"trial {trial.number} was ended by another worker"
            ) from None
        if state != TrialState.FAIL:  # COMPLETE or PRUNED, trained or answered: it is over
            self._discard_resume()
        run.observer.line(trial_line(run.study, trial.number))


def _is_running(study: optuna.Study, number: int) -> bool:
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return any(t.number == number for t in running)
