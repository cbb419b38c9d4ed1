"""The test-only failpoints: parsed strictly, inert unless armed."""

from __future__ import annotations

import pytest

from services.approval.config import Settings
from services.approval.failpoints import Failpoints, InvalidFailpoints, Point, parse


def test_a_failpoint_spec_names_points_and_their_probabilities() -> None:
    armed = parse("after_verify=0.3, before_ack=1")

    assert armed == {Point.AFTER_VERIFY: 0.3, Point.BEFORE_ACK: 1.0}


def test_an_empty_spec_arms_nothing() -> None:
    assert parse("") == {}
    assert not Failpoints()


@pytest.mark.parametrize("spec", ["after_lunch=0.3", "after_verify", "before_ack=1.5"])
def test_an_unknown_point_or_a_bad_probability_is_refused(spec: str) -> None:
    with pytest.raises(InvalidFailpoints):
        parse(spec)


def test_the_worker_refuses_to_start_with_bad_failpoints() -> None:
    with pytest.raises(ValueError, match="failpoint"):
        Settings(approval_failpoints="after_lunch=1")


def test_a_point_armed_with_probability_zero_never_fires() -> None:
    fire = Failpoints({point: 0.0 for point in Point})

    for point in Point:
        fire(point)  # still alive
