"""Measured latencies kept on an Optuna study, so one network is timed once per device.

A measurement (:class:`~dense_nas.model.latency.LatencyMeasurement`) is stored as one
study user attribute per architecture, image size and device fingerprint, named
``dense_nas:latency:<hash>`` (:data:`~dense_nas.records.LATENCY_ATTR_PREFIX`); the value
is a :class:`~dense_nas.records.LatencyRecord` that spells the full keys out, and a reader
checks them. So a duplicate candidate, a retried trial and every other command on the
same hardware (same CPU model or GPU, threads, batch, runtime and versions) read the
stored latency instead of measuring again, and another machine measures its own.

The architecture is keyed as inference runs it
(:func:`~dense_nas.model.latency.inference_arch`): candidates that differ only in
dropout or in the training recipe share one latency.

Example:
    >>> import optuna
    >>> from dense_nas.model.arch import DenseNetConfig
    >>> study = optuna.create_study()
    >>> arch = DenseNetConfig(4, (1,), in_channels=1)
    >>> first = study_latency(study, arch, (8, 8), Target(), max_runs=10)
    >>> study_latency(study, arch, (8, 8), Target()) == first   # read, not measured again
    True
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from dense_nas.model.arch import DenseNetConfig
from dense_nas.model.latency import (
    DeviceFingerprint,
    LatencyMeasurement,
    Target,
    device_fingerprint,
    inference_arch,
    measure_latency,
)
from dense_nas.records import LATENCY_ATTR_PREFIX, LatencyRecord, record_trial

if TYPE_CHECKING:
    import optuna

Measure = Callable[..., LatencyMeasurement]
"""Measures ``(config, image_size, target, **stopping)``: :func:`measure_latency` or
:func:`~dense_nas.model.latency.measure_in_fresh_process`."""


def _keys(
    arch: DenseNetConfig, image_size: tuple[int, int], fingerprint: DeviceFingerprint
) -> tuple[str, list[int], str]:
    return inference_arch(arch).key, [image_size[0], image_size[1]], fingerprint.key


def latency_attr(
    arch: DenseNetConfig, image_size: tuple[int, int], fingerprint: DeviceFingerprint
) -> str:
    """The study attribute that holds the latency of ``arch`` at ``image_size`` there.

    Example:
        >>> from dense_nas.model.arch import DenseNetConfig
        >>> fp = device_fingerprint(Target())
        >>> name = latency_attr(DenseNetConfig(12, (4, 4)), (32, 32), fp)
        >>> name.startswith(LATENCY_ATTR_PREFIX), len(name) < 64
        (True, True)
        >>> name == latency_attr(DenseNetConfig(12, (4, 4), dropout=0.2), (32, 32), fp)
        True
    """
    arch_key, (height, width), device = _keys(arch, image_size, fingerprint)
    text = f"{arch_key}|{height}x{width}|{device}"
    return LATENCY_ATTR_PREFIX + hashlib.sha256(text.encode()).hexdigest()[:32]


def cached_latency(
    study: optuna.Study,
    arch: DenseNetConfig,
    image_size: tuple[int, int],
    fingerprint: DeviceFingerprint,
) -> LatencyMeasurement | None:
    """The stored latency of ``arch`` at ``image_size`` on ``fingerprint``, or ``None``.

    Example:
        >>> import optuna
        >>> from dense_nas.model.arch import DenseNetConfig
        >>> study = optuna.create_study()
        >>> cached_latency(study, DenseNetConfig(12, (4, 4)), (32, 32),
        ...                device_fingerprint(Target())) is None
        True
    """
    stored = study.user_attrs.get(latency_attr(arch, image_size, fingerprint))
    if stored is None:
        return None
    record = cast(LatencyRecord, stored)
    arch_key, size, device = _keys(arch, image_size, fingerprint)
    # The name is a hash prefix: the record's own keys say whether it is really this one.
    if (record["arch_key"], record["image_size"], record["device"]) != (arch_key, size, device):
        return None
    return LatencyMeasurement.from_record(record)


def store_latency(
    study: optuna.Study, arch: DenseNetConfig, measurement: LatencyMeasurement
) -> None:
    """Keep ``measurement`` of ``arch`` on the study (one attribute write).

    Example:
        >>> import optuna
        >>> from dense_nas.model.arch import DenseNetConfig
        >>> study = optuna.create_study()
        >>> arch = DenseNetConfig(4, (1,), in_channels=1)
        >>> found = measure_latency(arch, (8, 8), max_runs=10)
        >>> store_latency(study, arch, found)
        >>> cached_latency(study, arch, (8, 8), found.fingerprint) == found
        True
    """
    name = latency_attr(arch, measurement.image_size, measurement.fingerprint)
    study.set_user_attr(name, measurement.to_record(inference_arch(arch).key))


def study_latency(
    study: optuna.Study,
    arch: DenseNetConfig,
    image_size: tuple[int, int],
    target: Target,
    *,
    measure: Measure = measure_latency,
    **stopping: float,
) -> LatencyMeasurement:
    """The latency of ``arch`` on ``target``: read from the study, else measured and kept.

    Args:
        study: where measurements are kept.
        arch: the architecture.
        image_size: ``(height, width)`` of the images.
        target: where and how to measure.
        measure: what measures on a miss (:func:`measure_latency`, or
            :func:`~dense_nas.model.latency.measure_in_fresh_process` to keep the
            caller's process out of the timing).
        stopping: when timing stops (see :func:`~dense_nas.model.latency.time_runs`).

    Example:
        >>> import optuna
        >>> from dense_nas.model.arch import DenseNetConfig
        >>> study = optuna.create_study()
        >>> found = study_latency(study, DenseNetConfig(4, (1,), in_channels=1), (8, 8),
        ...                       Target(), max_runs=10)
        >>> len([n for n in study.user_attrs if n.startswith(LATENCY_ATTR_PREFIX)])
        1
    """
    known = cached_latency(study, arch, image_size, device_fingerprint(target))
    if known is not None:
        return known
    found = measure(arch, image_size, target, **stopping)
    store_latency(study, arch, found)
    return found


def record_trial_latency(trial: optuna.Trial, measurement: LatencyMeasurement) -> None:
    """Write ``latency_ms``, ``latency_spread`` and ``latency_device`` on a trial.

    Example:
        >>> import optuna
        >>> from dense_nas.model.arch import DenseNetConfig
        >>> from dense_nas.records import trial_attrs
        >>> study = optuna.create_study()
        >>> trial = study.ask()
        >>> found = measure_latency(DenseNetConfig(4, (1,), in_channels=1), (8, 8), max_runs=10)
        >>> record_trial_latency(trial, found)
        >>> trial_attrs(study.trials[0])["latency_ms"] == found.median_ms
        True
    """
    record_trial(
        trial,
        latency_ms=measurement.median_ms,
        latency_spread=measurement.spread,
        latency_device=measurement.fingerprint.key,
    )
