"""`python -m lifecycle.gpucheck`: the CPU path end to end on tiny generated notebooks, and the device facts it
reports on a fake CUDA GPU (torch.cuda's functions monkeypatched: no GPU is needed)."""
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import nbformat
import pytest
import torch

from lifecycle import device, gpucheck, zoo


def notebook(path, *sources):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_help_works():
    done = subprocess.run([sys.executable, "-m", "lifecycle.gpucheck", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "--device" in done.stdout and "--cell-timeout" in done.stdout


def test_cpu_path_end_to_end(tmp_path):
    """Two tiny notebooks on --device cpu: one passes and records a ratio, one fails; the sources stay unexecuted."""
    good = notebook(tmp_path / "01_good.ipynb",
                    "import os, torch\nfrom lifecycle import device, results\n"
                    "assert device.pick_device().type == os.environ['LIFECYCLE_DEVICE'] == 'cpu'",
                    "results.record('smoke.speedup', 2.5, 'x', lesson='01_good', what='a smoke-test ratio')")
    bad = notebook(tmp_path / "02_bad.ipynb", "x = 1", "raise ValueError('lesson broke here')", "y = 2")
    before = good.read_bytes()
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "lifecycle.gpucheck", "--device", "cpu", "--notebooks", str(good),
                           str(bad), "--out", str(out), "--cell-timeout", "120"],
                          capture_output=True, text=True, timeout=600, env=os.environ | {"LIFECYCLE_THREADS": "1"})
    assert done.returncode == 1, done.stdout + done.stderr  # one notebook failed
    report = json.loads((out / "report.json").read_text())
    assert report["device"]["type"] == "cpu" and report["device"]["teacher_preset"] == "cpu"
    assert report["device"]["mfu_dtype"] == "float32"
    first, second = report["notebooks"]
    assert first["passed"] and first["peak"]["rss_bytes"] > 0 and first["seconds"] > 0
    assert not second["passed"] and second["failed_cell"] == 1 and "lesson broke here" in second["error"]
    assert report["passed"] == 1
    assert report["ratios"] == {"smoke.speedup": {"value": 2.5, "unit": "x", "lesson": "01_good"}}
    executed = nbformat.read(out / "01_good.ipynb", as_version=4)
    assert all(c.execution_count for c in executed.cells)
    assert good.read_bytes() == before  # never executed in place
    md = (out / "report.md").read_text()
    assert "1 of 2 notebooks passed" in md and "FAIL at cell 1" in md and "smoke.speedup" in md
    # the private cache kept the learner's ledger out of it
    assert (out / "cache" / "results.json").exists() and (out / "cache" / "corpus").is_symlink()


def test_lessons_are_chosen_by_number_and_unknown_ones_are_refused():
    assert [p.name[:2] for p in gpucheck.select_notebooks(["00", "3"])] == ["00", "03"]
    assert len(gpucheck.select_notebooks(None)) >= 10
    with pytest.raises(SystemExit, match="no lesson '42'"):
        gpucheck.select_notebooks(["42"])


# ---- a fake CUDA device: what the course would choose there ----

@pytest.fixture(params=[((7, 5), "Tesla T4"), ((8, 0), "NVIDIA A100-SXM4-80GB")], ids=["T4", "A100"])
def fake_cuda(request, monkeypatch):
    capability, name = request.param
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: capability >= (8, 0))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: name)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d=None: SimpleNamespace(total_memory=16 * 2**30))
    monkeypatch.delenv("LIFECYCLE_DEVICE", raising=False)
    return capability


def test_fake_cuda_device_report(fake_cuda):
    dev = device.pick_device()
    assert dev.type == "cuda"
    info = gpucheck.device_report(dev)
    bf16 = fake_cuda >= (8, 0)
    assert info["dtypes"] == {"float32": True, "bfloat16": bf16, "float16": True}  # a T4 has no bf16
    assert info["mfu_dtype"] == ("bfloat16" if bf16 else "float16")
    assert info["teacher_preset"] == zoo.teacher_preset(dev) == "gpu"
    assert info["capability"] == f"{fake_cuda[0]}.{fake_cuda[1]}"


def test_fake_cuda_mfu_divides_by_the_peak_of_the_dtype_training_uses(fake_cuda):
    from lifecycle.train import TrainResult

    dev = torch.device("cuda")
    peaks = {str(dt).removeprefix("torch."): flops for dt, flops in
             ((torch.float32, 19.5e12), (torch.bfloat16, 312e12), (torch.float16, 312e12 if fake_cuda >= (8, 0) else 65e12))
             if device.supports_dtype(dev, dt)}
    probe = device.CourseProbe("cuda", "fake", peaks, 1e12, 2**28, None, 1)
    result = TrainResult(flops=1e15, seconds=100.0)  # 10 TFLOP/s achieved
    mfu = result.mfu(probe.peak(gpucheck.mfu_dtype(dev)))
    assert mfu == pytest.approx(10e12 / (312e12 if fake_cuda >= (8, 0) else 65e12))
    if fake_cuda < (8, 0):
        with pytest.raises(KeyError, match="no bfloat16 matmul peak"):
            probe.peak("bfloat16")
