"""The prefill pacer: prompt chunks sized to about STEP_SECONDS of the measured rate."""

from __future__ import annotations

from roost.engines.llamacpp.pacing import MIN_CHUNK, STEP_SECONDS, PrefillPacer


def test_the_first_chunk_is_modest_until_a_rate_is_known() -> None:
    assert PrefillPacer(512).chunk() == 128
    assert PrefillPacer(64).chunk() == 64  # never more than n_batch


def test_chunks_follow_the_measured_rate_within_their_bounds() -> None:
    slow, fast, crawling = PrefillPacer(512), PrefillPacer(512), PrefillPacer(512)
    slow.record(100, 0.5)  # 200 tokens/s
    assert slow.chunk() == int(200 * STEP_SECONDS)
    fast.record(512, 0.05)  # a GPU: the cap comes first
    assert fast.chunk() == 512
    crawling.record(64, 8.0)  # a loaded machine: the floor keeps prefill efficient
    assert crawling.chunk() == MIN_CHUNK


def test_steps_too_small_to_measure_the_rate_are_ignored() -> None:
    pacer = PrefillPacer(512)
    pacer.record(4, 0.2)  # a generation step: overhead, not prefill rate
    assert pacer.rate is None
    pacer.record(200, 1.0)
    pacer.record(200, 0.5)  # smoothed, not replaced
    assert pacer.rate is not None and 200 < pacer.rate < 400
