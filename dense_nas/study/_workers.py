"""The worker threads of one ``search()`` call, and the budget they share.

Each worker owns one trial process (:class:`~dense_nas.study.process.TrialProcess`) and
takes trials one after another (:class:`~dense_nas.study._attempt.TrialAttempt`) while
the budget allows: ``n_trials`` counted trials (see :mod:`~dense_nas.study.budget`),
RUNNING ones included, so a worker waits while trials elsewhere hold the rest of it, and
RUNNING trials of dead workers are failed and retried (their budget comes back). Workers
on one machine ask under one lock; across machines the trial numbers decide which of two
trials asked at once is surplus.
"""

from __future__ import annotations

import threading
import time

import optuna
from optuna.trial import TrialState

from dense_nas.records import record_trial
from dense_nas.study._attempt import TrialAttempt
from dense_nas.study._open import STORAGE_FAILURES, storage_error
from dense_nas.study._run import Run
from dense_nas.study.budget import counted_trials, finished_and_running
from dense_nas.study.coordination.heartbeats import retry_silent_trials
from dense_nas.study.process import cpu_wait
from dense_nas.study.process.prestart import trial_process_env, trial_threads
from dense_nas.study.process.runner import TrialProcess


def run_workers(run: Run) -> None:
    """Run ``--workers`` worker threads until the budget is spent, the deadline passes or
    one of them fails; Ctrl-C kills the trials in flight, which end as interrupted.

    Raises:
        BaseException: what stopped a worker (a :class:`~dense_nas.errors.StorageError`
            for a storage that cannot be written), or the ``KeyboardInterrupt``.
    """
    workers = run.settings.workers
    done = threading.Semaphore(0)
    threads = [
        threading.Thread(target=_worker, args=(run, index, done), name=f"worker-{index}")
        for index in range(workers)
    ]
    for thread in threads:
        thread.start()
    # Wait on a semaphore, not Thread.join: a Ctrl-C that interrupts join() can make
    # CPython (before 3.13) forget a thread that is still running, and exit under it.
    waiting = workers
    try:
        while waiting:
            if done.acquire(timeout=0.2):
                waiting -= 1
    except KeyboardInterrupt:
        run.interrupted = True
        run.stop.set()
        for runner in run.runners:
            runner.kill()  # the running trials end now and are recorded as interrupted
        for _ in range(waiting):
            done.acquire()
        raise
    finally:
        for thread in threads:
            thread.join()
        if run.meter is not None:
            run.meter.close()
    if run.error is not None:
        raise run.error


def _worker(run: Run, index: int, done: threading.Semaphore) -> None:
    s = run.settings
    threads = 0
    if run.accelerator == "gpu":
        env = {"CUDA_VISIBLE_DEVICES": run.gpus[index], cpu_wait.CHOICE_ENV: "passive"}
    else:
        threads = trial_threads(s.workers, s.devices, s.threads)
        env = trial_process_env(s.workers, s.devices, s.threads)
    log = None if s.verbose else s.out_dir / "logs" / f"worker-{index}.log"
    runner = TrialProcess(log, env)
    run.runners.append(runner)
    try:
        while not run.stop.is_set():
            trial = _next_trial(run)
            if trial is None:
                return
            TrialAttempt(run, trial, index, threads).run_in(runner)
    except STORAGE_FAILURES as err:  # surfaced by the main thread as one line
        run.stop.set()
        run.error = storage_error(s, err)
    except BaseException as err:  # surfaced by the main thread
        run.stop.set()
        run.error = err
    finally:
        runner.close()
        done.release()


def _next_trial(run: Run) -> optuna.Trial | None:
    """Ask for a trial while the budget allows; wait out RUNNING trials of dead workers."""
    study, s = run.study, run.settings
    while not run.stop.is_set() and time.monotonic() < run.deadline:
        with run.budget_lock:
            retry_silent_trials(study, s.heartbeat, s.retries)
            finished, running = finished_and_running(study.get_trials(deepcopy=False))
            finished += run.counted_elsewhere  # the lineage's total (a study that grew)
            if finished + running < s.n_trials:
                trial = study.ask()
                if not _surplus(run, trial):
                    return trial
                continue
        if finished >= s.n_trials or running == 0:
            return None
        # Budget held by RUNNING trials: they finish, or go stale and are retried.
        run.stop.wait(min(5.0, s.heartbeat / 4))
    return None


def _surplus(run: Run, trial: optuna.Trial) -> bool:
    """Fail a trial that another machine's worker made redundant at the same moment.

    Workers on one machine share a lock; across machines the trial numbers decide:
    a trial is surplus when the trials numbered before it already fill the budget.
    """
    n_trials = run.settings.n_trials
    trials = run.study.get_trials(deepcopy=False)
    if len(counted_trials(trials, before=trial.number)) + run.counted_elsewhere < n_trials:
        return False
    reason = f"surplus: the study reached {n_trials} trials as this one started"
    record_trial(trial, failure=reason, counts=False)
    run.study.tell(trial, state=TrialState.FAIL)
    return True
