"""Round parameters, checked without a server: the threshold floor for a drawn cohort, colluders,
--tolerate-dropouts, and what devices are told passes their own RoundPolicy."""

from __future__ import annotations

from dataclasses import replace

import pytest

from edgerec.secagg import min_threshold
from edgerec.sync import RoundPolicy
from edgerec_server import RoundParams
from edgerec_server._exceptions import BadRequestError

from srv_helpers import announcement_of




@pytest.mark.parametrize("cohort, threshold", [(4, 3), (5, 4), (6, 5), (7, 5), (8, 6), (10, 7), (12, 9),
                                               (20, 14)])
def test_the_default_threshold_is_the_active_adversary_floor_and_raises_the_minimum(cohort, threshold):
    """Complete graph, no colluders: t is the smallest with t > 2/3 n and 2t > n, and a round
    needs t + 1 advertisements (t <= degree = turnout - 1), so the minimum rises to that."""
    params = RoundParams(min_participants=3).for_cohort(cohort)
    assert params.threshold == threshold == min_threshold(cohort - 1)
    assert 3 * threshold > 2 * cohort and 2 * threshold > cohort
    assert params.min_participants == threshold + 1 and params.max_participants == cohort
    assert params.min_survivors == threshold
    # What devices are told passes their own policy (the floor for the largest turnout).
    assert RoundPolicy().refusal(announcement_of(params)) is None
    below = announcement_of(replace(params, threshold=threshold - 1))
    assert "threshold" in RoundPolicy().refusal(below)


def test_colluders_raise_the_threshold_and_three_devices_never_fit():
    # 2t > n + 2c: for 10 devices c = 1 still fits t = 7 (> 2/3 of 10 already), c = 2 needs 8,
    # and the noise is calibrated to the t - c honest devices sure to be in any sum.
    for c, t in ((0, 7), (1, 7), (2, 8)):
        params = RoundParams(min_participants=3, colluders=c).for_cohort(10)
        assert params.threshold == t == min_threshold(9, c)
        assert params.min_survivors == t - c
        assert RoundPolicy(colluders=c).refusal(announcement_of(params)) is None
    with pytest.raises(BadRequestError, match="needs more than 3"):  # t = 3 > degree 2
        RoundParams(min_participants=3).for_cohort(3)



@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), "2"])
def test_quiet_close_must_be_a_positive_number(bad):
    with pytest.raises(Exception, match="quiet_close"):
        RoundParams(quiet_close=bad).resolved()


def test_tolerate_dropouts_puts_the_threshold_just_below_the_drawn_cohort():
    """t = drawn - D (devices then add the least noise the turnout allows), never below the floor;
    the minimum turnout follows (t + 1 on the complete graph)."""
    from edgerec.secagg import min_threshold

    for drawn in (10, 40, 100):
        fitted = RoundParams(min_participants=4, tolerate_dropouts=2).for_cohort(drawn)
        assert (fitted.threshold, fitted.min_participants, fitted.max_participants) == (drawn - 2, drawn - 1, drawn)
        wide = RoundParams(min_participants=4, tolerate_dropouts=drawn).for_cohort(drawn)
        assert wide.threshold == min_threshold(drawn - 1)  # the floor, not drawn - D
    with pytest.raises(BadRequestError):
        RoundParams(tolerate_dropouts=0).check()
    # SecAgg+: D of each neighbourhood of k + 1 (k = 16 at 200 devices), capped by the degree
    harary = RoundParams(min_participants=4, graph="harary", tolerate_dropouts=1).for_cohort(200)
    assert harary.threshold == 16
    harary = RoundParams(min_participants=4, graph="harary", tolerate_dropouts=3).for_cohort(200)
    assert harary.threshold == max(min_threshold(16), 14)
