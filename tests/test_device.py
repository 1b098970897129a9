"""The course's hardware probe: one measurement per quantity, recorded once and read back (issue 16)."""
from __future__ import annotations

import pytest
import torch

from lifecycle import device, results
from lifecycle.device import CourseProbe


def _fake_cache(root, entries):
    for i, (level, kind, size) in enumerate(entries):
        d = root / f"index{i}"
        d.mkdir(parents=True)
        (d / "level").write_text(f"{level}\n")
        (d / "type").write_text(f"{kind}\n")
        (d / "size").write_text(f"{size}\n")


def test_last_level_cache_is_the_largest_level_not_the_instruction_cache(tmp_path):
    _fake_cache(tmp_path, [(1, "Data", "48K"), (1, "Instruction", "32K"), (2, "Unified", "1024K"),
                           (3, "Unified", "32768K")])
    assert device.last_level_cache_bytes("cpu", root=tmp_path) == 32 * 2**20
    assert device.last_level_cache_bytes("cpu", root=tmp_path / "missing") is None


def test_parse_cache_size_units():
    assert device._parse_cache_size("48K") == 48 * 1024
    assert device._parse_cache_size("2M") == 2 * 2**20
    assert device._parse_cache_size("512") == 512


@pytest.mark.parametrize("llc, expected", [(None, 64 * 2**20), (8 * 2**20, 64 * 2**20), (32 * 2**20, 128 * 2**20),
                                           (256 * 2**20, 256 * 2**20)])
def test_bandwidth_buffer_is_well_beyond_the_cache_and_bounded(monkeypatch, llc, expected):
    monkeypatch.setattr(device, "last_level_cache_bytes", lambda dev="cpu", **kw: llc)
    assert device.bandwidth_buffer_bytes("cpu") == expected


def test_matmul_peak_is_positive_and_stops_early_when_a_size_is_slow():
    calls = []
    real_randn = torch.randn

    def spy(*shape, **kw):
        calls.append(shape[0])
        return real_randn(*shape, **kw)

    torch.randn = spy
    try:
        # a budget of 0 seconds: the first size already takes longer, so the sweep stops after it
        assert device.matmul_peak("cpu", torch.float32, (32, 64, 128), seconds_per_size=0.0, repeats=1) > 0
    finally:
        torch.randn = real_randn
    assert set(calls) == {32}


def _fake_probe(peaks=None):
    return CourseProbe("cpu", "test cpu", peaks or {"float32": 100e9, "bfloat16": 300e9, "float16": 2e9},
                       20e9, device.bandwidth_buffer_bytes("cpu"), 32 * 2**20, 2)


def test_course_probe_measures_every_supported_dtype(monkeypatch):
    monkeypatch.setattr(device, "bandwidth_buffer_bytes", lambda dev="cpu": 2**20)  # keep the test fast
    monkeypatch.setattr(device, "matmul_peak", lambda dev, dtype, sizes: {torch.float32: 1.0, torch.bfloat16: 2.0,
                                                                           torch.float16: 3.0}[dtype])
    p = device.course_probe("cpu")
    expected = {str(dt).removeprefix("torch.") for dt in device.COURSE_PROBE_DTYPES if device.supports_dtype("cpu", dt)}
    assert set(p.peaks) == expected and p.peaks["float32"] == 1.0
    assert p.buffer_bytes == 2**20 and p.bandwidth > 0
    assert p.peak(torch.float32) == p.peak("float32") == p.matmul_flops


def test_peak_of_an_unmeasured_dtype_names_what_was_measured():
    p = _fake_probe({"float32": 1e9})
    with pytest.raises(KeyError, match="float32"):
        p.peak(torch.bfloat16)


def test_describe_uses_the_wording_the_consistency_test_reads():
    text = _fake_probe().describe()
    assert "peak matmul (float32) **100.0 GFLOP/s**" in text
    assert "peak matmul (bfloat16) **300.0 GFLOP/s**" in text
    assert "memory bandwidth **20.0 GB/s**" in text


def test_recorded_probe_reads_lesson_00s_figures_back_without_probing_again(monkeypatch):
    p = _fake_probe()
    results.record_probe(p, lesson="00_start_here")
    assert results.get("machine.matmul_flops") == 100e9 and results.get("machine.matmul_flops.bf16") == 300e9

    def boom(*a, **k):
        raise AssertionError("re-probed although the ledger holds the course probe")

    monkeypatch.setattr(results, "course_probe", boom)
    back = results.recorded_probe("cpu")
    assert back.peaks == {k: v for k, v in p.peaks.items() if k in back.peaks}
    assert back.bandwidth == p.bandwidth and back.buffer_bytes == p.buffer_bytes


def test_recorded_probe_runs_the_same_probe_when_the_ledger_has_other_settings(monkeypatch):
    # an old-style entry (the quick probe's figures, no buffer size): not the course probe, so it is measured again
    results.record("machine.matmul_flops", 1.0, "FLOP/s", lesson="00_start_here", what="lifecycle.device.probe")
    results.record("machine.bandwidth", 1.0, "B/s", lesson="00_start_here", what="lifecycle.device.probe")
    monkeypatch.setattr(results, "course_probe", lambda dev=None: _fake_probe())
    back = results.recorded_probe("cpu", lesson="03_inference")
    assert back.matmul_flops == 100e9
    entry = results.entries()["machine.matmul_flops"]
    assert entry["value"] == 100e9 and entry["lesson"] == "03_inference"
