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
from optuna.trial import FrozenTrial, TrialState

from dense_nas.errors import UserInputError


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


def _best_trials(study: optuna.Study, top: int = 5) -> list[FrozenTrial]:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(study.directions) > 1:
        return sorted(study.best_trials, key=lambda t: -t.values[0])
    return sorted(complete, key=lambda t: -(t.value or 0.0))[:top]


def _row(trial: FrozenTrial) -> dict[str, Any]:
    attrs = trial.user_attrs
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
    """The best trial(s) (the Pareto front for multi-objective studies) as JSON."""
    return json.dumps(
        {"study": study.study_name, "best": [_row(t) for t in _best_trials(study)]}, indent=2
    )


def best_table(study: optuna.Study) -> str:
    """The best trial(s) as an aligned text table."""
    trials = _best_trials(study)
    if not trials:
        return "no completed trials yet"
    title = "Pareto front" if len(study.directions) > 1 else "best trials"
    lines = [
        f"{title} of study {study.study_name!r}:",
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
    trial = study._storage.get_trial(
        study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    )
    attrs = trial.user_attrs
    value = f"{trial.values[0]:.4f}" if trial.values else "-"
    why = attrs.get("pruned_reason") or attrs.get("failure") or ""
    if "duplicate_of" in attrs:
        why = f"same as trial {attrs['duplicate_of']}"
    try:
        best = _best_trials(study, top=1)
    except (ValueError, UserInputError):
        best = []
    best_text = f"best {best[0].values[0]:.4f} (#{best[0].number})" if best else "best -"
    epochs = attrs.get("epochs", 0)
    return (
        f"trial {number:>3}  {trial.state.name:<8}  acc {value:>6}  params {attrs.get('params', 0):>9,}  "
        f"epochs {epochs:>3}  {best_text}{'  ' + why if why else ''}"
    )
