"""Thread choice from the real CPU budget (lifecycle.device.thread_budget): affinity, the cgroup CPU quota (v1 and
v2, written here as fake files) and the LIFECYCLE_THREADS override; importing the library changes no torch setting."""
import os
import subprocess
import sys

import pytest
import torch

from lifecycle import device


@pytest.fixture
def four_cpus(monkeypatch):
    """This process may run on 4 CPUs (whatever the real machine has)."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)


def v2(tmp_path, cpu_max: str, nested: str | None = None):
    """A fake cgroup v2 tree: /proc/self/cgroup says "0::/<nested>"; cpu.max at the root (or in the nested group)."""
    root = tmp_path / "cgroup"
    folder = root / nested if nested else root
    folder.mkdir(parents=True)
    (folder / "cpu.max").write_text(cpu_max + "\n")
    self_cgroup = tmp_path / "self-cgroup"
    self_cgroup.write_text(f"0::/{nested or ''}\n")
    return dict(root=root, self_cgroup=self_cgroup)


def v1(tmp_path, quota: int, period: int = 100_000):
    root = tmp_path / "cgroup"
    folder = root / "cpu,cpuacct"
    folder.mkdir(parents=True)
    (folder / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (folder / "cpu.cfs_period_us").write_text(f"{period}\n")
    self_cgroup = tmp_path / "self-cgroup"
    self_cgroup.write_text("4:cpu,cpuacct:/\n2:memory:/x\n")
    return dict(root=root, self_cgroup=self_cgroup)


def test_no_quota_uses_every_cpu_of_the_affinity(tmp_path, four_cpus):
    choice = device.thread_budget({}, **v2(tmp_path, "max 100000"))
    assert (choice.threads, choice.affinity, choice.quota) == (4, 4, None)
    assert "may run on 4 CPUs and no cgroup CPU quota" in choice.reason


@pytest.mark.parametrize("cpu_max, threads", [("150000 100000", 1), ("50000 100000", 1), ("200000 100000", 2),
                                              ("800000 100000", 4)])
def test_cgroup_v2_quota_lowers_the_count(tmp_path, four_cpus, cpu_max, threads):
    choice = device.thread_budget({}, **v2(tmp_path, cpu_max))
    assert choice.threads == threads
    if threads < 4:
        assert "cgroup CPU quota" in choice.reason and choice.quota == pytest.approx(
            int(cpu_max.split()[0]) / 100_000)


def test_a_nested_cgroup_and_its_ancestors_tightest_quota_wins(tmp_path, four_cpus):
    files = v2(tmp_path, "300000 100000", nested="user.slice/session")
    (files["root"] / "user.slice" / "cpu.max").write_text("100000 100000\n")
    assert device.cgroup_cpu_quota(**files) == 1.0
    assert device.thread_budget({}, **files).threads == 1


def test_cgroup_v1_quota(tmp_path, four_cpus):
    assert device.thread_budget({}, **v1(tmp_path, 250_000)).threads == 2
    assert device.cgroup_cpu_quota(**v1(tmp_path / "none", -1)) is None


def test_unreadable_cgroup_files_mean_no_quota(tmp_path, four_cpus):
    assert device.cgroup_cpu_quota(tmp_path / "absent", tmp_path / "absent-too") is None
    assert device.thread_budget({}, tmp_path / "absent", tmp_path / "absent-too").threads == 4


def test_lifecycle_threads_overrides_and_is_validated(tmp_path, four_cpus):
    files = v2(tmp_path, "100000 100000")
    choice = device.thread_budget({"LIFECYCLE_THREADS": "3"}, **files)
    assert choice.threads == 3 and "LIFECYCLE_THREADS=3" in choice.reason
    assert "more than the 4" in device.thread_budget({"LIFECYCLE_THREADS": "8"}, **files).reason
    for bad in ("0", "-2", "two", "1.5"):
        with pytest.raises(ValueError, match="LIFECYCLE_THREADS must be a whole number >= 1"):
            device.thread_budget({"LIFECYCLE_THREADS": bad}, **files)


def test_use_thread_budget_sets_torch_threads_explicitly(monkeypatch):
    before = torch.get_num_threads()
    try:
        choice = device.use_thread_budget({"LIFECYCLE_THREADS": "1"})
        assert choice.threads == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def test_importing_the_library_changes_no_torch_setting():
    code = ("import torch; before = torch.get_num_threads(); "
            "import lifecycle.device, lifecycle.distributed, lifecycle.train, lifecycle.gpucheck; "
            "assert torch.get_num_threads() == before, (before, torch.get_num_threads())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=os.environ | {"LIFECYCLE_THREADS": "1"})
    assert done.returncode == 0, done.stderr
