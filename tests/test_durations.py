from __future__ import annotations

import pytest

from roost.durations import parse_duration


@pytest.mark.parametrize(("value", "seconds"), [
    ("5m", 300), ("1h30m", 5400), ("300ms", 0.3), ("-1m", -60), ("10", 10), (0, 0),
    (-1, -1), (3600, 3600), ("1.5s", 1.5), ("2h", 7200),
])
def test_parse(value: str | int, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "5x", "m5", "1h 2m", "abc", True])
def test_bad(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)  # type: ignore[arg-type]
