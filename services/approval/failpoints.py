"""Test-only fault injection: SIGKILL this worker at a named recovery point, with a probability.

``APPROVAL_FAILPOINTS="after_verify=0.3,after_confirming=0.3,after_pg_answer=0.3,before_ack=0.3"``
arms the points; unset (the default, and always in production) every point is a dictionary
lookup in an empty dict. The fault tests and the soak use it to kill a worker exactly between
two steps of the payment state machine, the way a power cut would: no ``finally`` runs, no
lease is handed back, the unacked message stays with the broker.
"""

from __future__ import annotations

import enum
import logging
import os
import random
import signal
from collections.abc import Mapping


class Point(enum.StrEnum):
    AFTER_VERIFY = "after_verify"  # the attempt is VERIFIED (committed), not yet claimed
    AFTER_CONFIRMING = "after_confirming"  # CONFIRMING + key committed, the PG not called yet
    AFTER_PG_ANSWER = "after_pg_answer"  # the PG answered (money may have moved), not recorded
    BEFORE_ACK = "before_ack"  # the handler committed everything, the message is not acked


class InvalidFailpoints(ValueError):
    """``APPROVAL_FAILPOINTS`` names an unknown point or a probability outside [0, 1]."""


def parse(spec: str) -> dict[Point, float]:
    """``"name=probability,…"`` → {point: probability}; empty → {}."""
    armed: dict[Point, float] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, value = item.partition("=")
        try:
            point, probability = Point(name.strip()), float(value)
        except ValueError as exc:
            raise InvalidFailpoints(f"bad failpoint {item!r}") from exc
        if not 0.0 <= probability <= 1.0:
            raise InvalidFailpoints(f"probability of {name} must be within [0, 1]")
        armed[point] = probability
    return armed


class Failpoints:
    """The armed points of this process; calling one kills the process with its probability."""

    def __init__(self, armed: Mapping[Point, float] | None = None) -> None:
        self._armed = dict(armed or {})

    def __bool__(self) -> bool:
        return bool(self._armed)

    def __call__(self, point: Point) -> None:
        probability = self._armed.get(point)
        if probability and random.random() < probability:
            logging.getLogger(__name__).warning("failpoint: SIGKILL", extra={"point": point.value})
            os.kill(os.getpid(), signal.SIGKILL)


DISARMED = Failpoints()
