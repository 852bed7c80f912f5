"""The promotion gate as a pure function: worse, ties, margin, floor, first model."""

import pytest

from ferops.registry import decide


@pytest.mark.parametrize("challenger, champion, promote, why", [
    (0.70, None, True, "first model"),
    (0.20, None, False, "below the floor"),
    (0.71, 0.70, True, "beats champion"),
    (0.70, 0.70, False, "below the margin"),      # a tie never replaces the champion
    (0.7015, 0.70, False, "below the margin"),    # better, but by less than the margin
    (0.65, 0.70, False, "below the margin"),      # worse
    (0.29, 0.10, False, "below the floor"),       # better than a bad champion, still too weak
])
def test_decide(challenger, champion, promote, why):
    ok, reason = decide(challenger, champion, margin=0.002, floor=0.3)
    assert ok is promote
    assert why in reason


def test_zero_margin_still_needs_a_strict_gain():
    assert decide(0.5, 0.5, margin=0.0, floor=0.0)[0] is False
    assert decide(0.5001, 0.5, margin=0.0, floor=0.0)[0] is True
