"""What a finished study gives: the chosen trial, its network, files, plots and retraining.

- :mod:`~dense_nas.results.selection`: the one meaning of "best" (:func:`best_trials`,
  :func:`select_trial`), used by every command.
- :mod:`~dense_nas.results.loading`: :func:`load_best`, which rebuilds the chosen
  trial's trained ``DenseNetModule``.
- :mod:`~dense_nas.results.export`: ONNX, TorchScript, state-dict and ExportedProgram
  files, each checked against the module.
- :mod:`~dense_nas.results.retrain`: the chosen architecture trained on train +
  validation, measured on the test set.
- :mod:`~dense_nas.results.report`, :mod:`~dense_nas.results.summary`: plots, tables and
  the one-line-per-trial view.
- :mod:`~dense_nas.results.lightning_config`: a trial as a LightningCLI config
  (``dense-nas best --config``), trained by ``python -m dense_nas.lightning``.

Example:
    >>> from dense_nas.results import load_best
    >>> load_best.__name__
    'load_best'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dense_nas._lazy import lazy_exports

if TYPE_CHECKING:
    from dense_nas.results.loading import load_best
    from dense_nas.results.report import report
    from dense_nas.results.retrain import retrain
    from dense_nas.results.selection import best_trials, select_trial

__all__ = ["best_trials", "load_best", "report", "retrain", "select_trial"]

__getattr__ = lazy_exports(
    __name__,
    {
        "load_best": "dense_nas.results.loading",
        "best_trials": "dense_nas.results.selection",
        "select_trial": "dense_nas.results.selection",
        "report": "dense_nas.results.report",
        "retrain": "dense_nas.results.retrain",
    },
)
