"""The course's one timing helper (lifecycle.measure.timing): order of calls, warm-up, summaries; no clock asserts."""
from __future__ import annotations

import pytest
import torch

from lifecycle.measure.timing import Timing, interleaved, paired_ratios, round_order, synchronize, timed


def recorder(log: list[str], name: str):
    return lambda: log.append(name)


def test_rounds_alternate_order_after_warmup():
    log: list[str] = []
    times = interleaved({n: recorder(log, n) for n in "ABC"}, repeats=4, warmup=2)
    # two warm-up rounds, then four timed ones, each reversing the order of the one before
    assert log == list("ABC" "CBA" "ABC" "CBA" "ABC" "CBA")
    assert list(times) == ["A", "B", "C"]
    assert all(len(t.all) == 4 for t in times.values())


def test_no_warmup_means_only_timed_calls():
    log: list[str] = []
    interleaved({"A": recorder(log, "A"), "B": recorder(log, "B")}, repeats=3, warmup=0)
    assert log == ["A", "B", "B", "A", "A", "B"]


def test_round_order():
    assert round_order(["a", "b"], 0) == ["a", "b"]
    assert round_order(["a", "b"], 1) == ["b", "a"]
    assert round_order(["a", "b"], 2) == ["a", "b"]


def test_timing_summary_statistics():
    t = Timing.of([3.0, 1.0, 2.0, 5.0, 4.0])
    assert (t.median, t.low, t.high) == (3.0, 1.0, 5.0)
    assert (t.q1, t.q3) == (2.0, 4.0)
    assert t.all == (3.0, 1.0, 2.0, 5.0, 4.0)  # rounds kept in order
    assert t.as_dict()["all"] == [3.0, 1.0, 2.0, 5.0, 4.0]
    one = Timing.of([0.5])
    assert one.median == one.low == one.high == one.q1 == one.q3 == 0.5
    with pytest.raises(ValueError):
        Timing.of([])


def test_paired_ratios_pair_rounds():
    a, b = Timing.of([2.0, 4.0, 6.0]), Timing.of([1.0, 4.0, 2.0])
    r = paired_ratios(a, b)
    assert r.all == (2.0, 1.0, 3.0)
    assert r.median == 2.0
    with pytest.raises(ValueError):
        paired_ratios(a, Timing.of([1.0]))


def test_times_are_positive_and_timed_wraps_one_variant():
    x = torch.randn(64, 64)
    t = timed(lambda: x @ x, repeats=3)
    assert isinstance(t, Timing) and len(t.all) == 3
    assert 0 < t.low <= t.median <= t.high


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_rejects_bad_repeats(bad):
    with pytest.raises(ValueError):
        interleaved({"A": lambda: None}, repeats=bad)


def test_rejects_negative_warmup():
    with pytest.raises(ValueError):
        interleaved({"A": lambda: None}, warmup=-1)


def test_synchronize_on_cpu_is_a_no_op():
    synchronize("cpu")  # nothing queued, nothing to wait for; must not raise


def test_machine_info_records_versions_and_threads():
    from lifecycle.bench import library_version, machine_info

    info = machine_info()
    assert info["torch"] == torch.__version__
    assert info["torch_threads"] == torch.get_num_threads()
    for name in ("transformers", "torchao"):
        assert isinstance(info[name], str) and info[name]
    assert library_version("no-such-package-for-the-course") == "not installed"


def test_step_seconds_charges_the_smaller_of_wall_and_cpu_time_on_a_cpu(monkeypatch):
    """A simulated server's step on a CPU is charged min(wall, CPU time): a descheduled wait costs nothing, and
    several busy threads (CPU time above wall time) are charged the wall time. Fake clocks, no real timing."""
    import lifecycle.measure.timing as timing

    def run(wall_s, cpu_s):
        clocks = {"wall": iter([0.0, wall_s]), "cpu": iter([0.0, cpu_s])}
        monkeypatch.setattr(timing.time, "perf_counter", lambda: next(clocks["wall"]))
        monkeypatch.setattr(timing.time, "process_time", lambda: next(clocks["cpu"]))
        return timing.step_seconds(lambda: "out", "cpu")

    assert run(0.050, 0.001) == (0.001, "out")  # mostly descheduled: only the CPU time counts
    assert run(0.010, 0.019) == (0.010, "out")  # two threads busy: the wall time counts
