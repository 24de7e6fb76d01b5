"""What the commands and workers sharing one study coordinate through the study itself.

Several ``search`` commands, on one machine or many, may run one study; each writes its
state into the study's attributes, so every storage (SQLite, a journal file, PostgreSQL)
carries it:

- :mod:`~dense_nas.study.coordination.heartbeats`: a RUNNING trial's heartbeat, and the
  retry of trials whose worker went silent.
- :mod:`~dense_nas.study.coordination.slots`: each command's sampler slot (and so its
  sampler seed).
- :mod:`~dense_nas.study.coordination.periodic`: the background writer both of them
  keep their record fresh with.
- :mod:`~dense_nas.study.coordination.twins`: trials that train the same candidate, so
  that it trains once.

Example:
    >>> import optuna
    >>> from dense_nas.study.coordination.slots import SamplerSlot
    >>> with SamplerSlot(optuna.create_study(), grace=30.0) as slot:
    ...     slot.number
    0
"""
