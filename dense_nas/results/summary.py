"""Text views of a study: a line per finished trial, and the best trial(s) as a table or JSON.

Example:
    >>> import optuna
    >>> study = optuna.create_study(direction="maximize")
    >>> best_table(study)
    'no completed trials yet'
"""

from __future__ import annotations

import json
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from dense_nas.records import failure_reason, trial_attrs
from dense_nas.results.selection import best_trials


def describe_arch(arch: dict[str, Any]) -> str:
    """A short human description of an architecture dict.

    Example:
        >>> describe_arch({"growth_rate": 12, "block_layers": [16, 16, 16], "bottleneck": True,
        ...                "bottleneck_width": 4, "compression": 0.5})
        'k=12 blocks=16-16-16 BC(4) theta=0.5'
        >>> describe_arch({})
        '-'
    """
    if not arch:
        return "-"
    blocks = "-".join(str(n) for n in arch.get("block_layers", []))
    kind = f"BC({arch.get('bottleneck_width')})" if arch.get("bottleneck") else "basic"
    return f"k={arch.get('growth_rate')} blocks={blocks} {kind} theta={arch.get('compression'):g}"


def _row(trial: FrozenTrial) -> dict[str, Any]:
    attrs = trial_attrs(trial)
    return {
        "trial": trial.number,
        "accuracy": trial.values[0],
        "params": attrs.get("params"),
        "macs": attrs.get("macs"),
        "epochs": attrs.get("epochs"),
        "arch": attrs.get("arch"),
        "training": attrs.get("training"),
        "duplicate_of": attrs.get("duplicate_of"),
    }


def best_json(study: optuna.Study) -> str:
    """The best trial(s) (the Pareto front for multi-objective studies) as JSON.

    ``chosen`` is the trial that ``load_best``, ``export`` and ``retrain`` use by default:
    the first of ``best``.
    """
    trials = best_trials(study)
    chosen = trials[0].number if trials else None
    rows = [_row(t) for t in trials]
    return json.dumps({"study": study.study_name, "chosen": chosen, "best": rows}, indent=2)


def best_table(study: optuna.Study) -> str:
    """The best trial(s) as an aligned text table."""
    trials = best_trials(study)
    if not trials:
        return "no completed trials yet"
    title = "Pareto front" if len(study.directions) > 1 else "best trials"
    lines = [
        f"{title} of study {study.study_name!r} (load_best, export and retrain take the first):",
        f"{'trial':>5}  {'val acc':>7}  {'params':>10}  {'MACs':>13}  {'epochs':>6}  architecture",
    ]
    for trial in trials:
        row = _row(trial)
        lines.append(
            f"{row['trial']:>5}  {row['accuracy']:>7.4f}  {row['params'] or 0:>10,}  "
            f"{row['macs'] or 0:>13,}  {row['epochs'] or 0:>6}  {describe_arch(row['arch'] or {})}"
        )
    return "\n".join(lines)


def trial_line(study: optuna.Study, number: int) -> str:
    """One line for a just-finished trial: number, state, value, params, best so far."""
    trials = study.get_trials(deepcopy=False)
    trial = next(t for t in trials if t.number == number)
    attrs = trial_attrs(trial)
    value = f"{trial.values[0]:.4f}" if trial.values else "-"
    why = attrs.get("pruned_reason") or failure_reason(trial, trials) or ""
    if "duplicate_of" in attrs:
        why = f"same as trial {attrs['duplicate_of']}"
    best = best_trials(study, top=1)
    best_text = f"best {best[0].values[0]:.4f} (#{best[0].number})" if best else "best -"
    epochs = attrs.get("epochs", 0)
    return (
        f"trial {number:>3}  {trial.state.name:<8}  acc {value:>6}  "
        f"params {attrs.get('params', 0):>9,}  "
        f"epochs {epochs:>3}  {best_text}{'  ' + why if why else ''}"
    )
