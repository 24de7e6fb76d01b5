"""Sampler slots: each ``search`` command sharing a study samples with its own seed.

The same command started on two machines would seed two identical samplers, and both
would draw the same candidates. So each command claims a slot on the study: the smallest
number that no live command holds (a holder renews its slot every few seconds, and one
silent for the heartbeat grace is gone). The command in slot ``n`` seeds its sampler with
``seed + n``: the first or only command gets the plain ``--seed``, so one command on a
fresh study draws the same trials as it always did.

Two commands that start within the same instant can both read a slot as free; the later
write wins, and the claim is read back, so that is rare. Even then they never train one
candidate twice at once: a trial whose candidate another RUNNING trial trains waits for
it (:func:`~dense_nas.study.coordination.twins.find_running_twin`).

Example:
    >>> import optuna
    >>> study = optuna.create_study()
    >>> with SamplerSlot(study, grace=30.0) as first, SamplerSlot(study, grace=30.0) as second:
    ...     first.number, second.number, sampler_seed(7, second.number)
    (0, 1, 8)
    >>> with SamplerSlot(study, grace=30.0) as again:  # both let go: slot 0 is free
    ...     again.number
    0
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from typing import cast

import optuna

from dense_nas.records import SLOT_ATTR_PREFIX, SlotHolder
from dense_nas.study.coordination.periodic import PeriodicWrite

logger = logging.getLogger(__name__)


def sampler_seed(seed: int, slot: int) -> int:
    """The sampler seed of the command in ``slot``: ``seed + slot``."""
    return seed + slot


def slot_holders(study: optuna.Study) -> dict[int, SlotHolder]:
    """Every slot ever claimed on the study, live or not, by number."""
    return {
        int(name.removeprefix(SLOT_ATTR_PREFIX)): cast(SlotHolder, value)
        for name, value in study.user_attrs.items()
        if name.startswith(SLOT_ATTR_PREFIX)
    }


class SamplerSlot(PeriodicWrite):
    """Context manager: claim the smallest free slot on a study and hold it while inside.

    Args:
        study: the shared study.
        grace: seconds after which a holder that stopped renewing its slot is gone
            (``--heartbeat``).
    """

    def __init__(self, study: optuna.Study, grace: float) -> None:
        super().__init__(grace / 3, name="sampler slot")
        self.study = study
        self.grace = grace
        self.number = -1
        self._token = uuid.uuid4().hex

    def _holder(self, heartbeat: float) -> SlotHolder:
        return SlotHolder(
            host=socket.gethostname(), pid=os.getpid(), token=self._token, heartbeat=heartbeat
        )

    def _write(self, heartbeat: float) -> None:
        self.study.set_user_attr(f"{SLOT_ATTR_PREFIX}{self.number}", self._holder(heartbeat))

    def write(self) -> bool:
        if slot_holders(self.study)[self.number]["token"] != self._token:
            return False  # paused past the grace and taken over: the new holder renews it
        self._write(time.time())
        return True

    def begin(self) -> None:
        """Claim the smallest slot no live command holds."""
        self.number = 0
        while True:
            holder = slot_holders(self.study).get(self.number)
            live = holder is not None and time.time() - holder["heartbeat"] <= self.grace
            if not live:
                self._write(time.time())
                if slot_holders(self.study)[self.number]["token"] == self._token:
                    break  # read back: no other command wrote it at the same moment
            self.number += 1
        self._thread.name = f"sampler slot {self.number}"  # as its debug lines name it

    def end(self) -> None:
        """Let the slot go, so that the next command may take it at once."""
        try:
            if slot_holders(self.study)[self.number]["token"] == self._token:
                self._write(0.0)
        except Exception as err:  # an unreachable storage: the slot goes stale instead
            logger.debug("sampler slot %s not released: %s", self.number, err)
