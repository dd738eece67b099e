"""A container's CPU limit (docker --cpus, Kubernetes limits.cpu) and ONNX Runtime's thread pool.

ONNX Runtime sizes its intra-op pool from the host's physical cores when it is not told a number; a cgroup CPU
quota is invisible to it, so a 2-CPU container on a 64-core host ran a 32-64-thread pool throttled by the kernel.
``usable_cpus()`` read only the CPU set (sched_getaffinity), and ``threads=None`` passed nothing to ONNX Runtime.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Optional

import pytest

from fsrfer_edge import cpus
from fsrfer_edge.backends import onnxruntime_backend as ob
from fsrfer_edge.errors import InputError

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO / "fsrfer_edge" / "models" / "default.onnx"


def _tree(tmp_path: Path, cgroup: str, files: dict[str, str], mountinfo: Optional[str] = None) -> Path:
    """A fake /proc/self (``cgroup``, optional ``mountinfo``) and cgroup root under tmp_path; returns the root."""
    proc, root = tmp_path / "proc", tmp_path / "cg"
    proc.mkdir()
    (proc / "cgroup").write_text(cgroup)
    if mountinfo is not None:
        (proc / "mountinfo").write_text(mountinfo.replace("@ROOT@", str(root)))
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(text.encode("latin-1"))
    return root


@pytest.fixture()
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """Point the module at a tmp_path tree; the affinity says 8 CPUs, the machine 64."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)

    def make(cgroup: str, files: dict[str, str], mountinfo: Optional[str] = None) -> None:
        root = _tree(tmp_path, cgroup, files, mountinfo)
        monkeypatch.setattr(cpus, "PROC_SELF", str(tmp_path / "proc"))
        monkeypatch.setattr(cpus, "CGROUP_ROOT", str(root))
    return make


# -- usable_cpus: cgroup v2 -------------------------------------------------------------------------
def test_v2_quota_of_the_process_cgroup(fake: Any) -> None:
    fake("0::/kubepods/pod1/c1\n", {"kubepods/pod1/c1/cpu.max": "200000 100000\n"})
    assert cpus.cpu_quota() == 2.0
    assert cpus.usable_cpus() == 2


def test_v2_nested_takes_the_smallest_limit_up_to_the_root(fake: Any) -> None:
    fake("0::/kubepods/pod1/c1\n", {"kubepods/cpu.max": "400000 100000", "kubepods/pod1/cpu.max": "150000 100000",
                                    "kubepods/pod1/c1/cpu.max": "max 100000"})
    assert cpus.cpu_quota() == 1.5
    assert cpus.usable_cpus() == 2  # ceil(1.5)


def test_v2_max_everywhere_is_no_limit(fake: Any) -> None:
    fake("0::/a/b\n", {"a/cpu.max": "max 100000", "a/b/cpu.max": "max 100000"})
    assert cpus.cpu_quota() is None
    assert cpus.usable_cpus() == 8


def test_v2_below_one_cpu_is_one(fake: Any) -> None:
    fake("0::/a\n", {"a/cpu.max": "50000 100000"})
    assert cpus.cpu_quota() == 0.5
    assert cpus.usable_cpus() == 1


def test_v2_mount_from_mountinfo_with_a_mount_root(fake: Any) -> None:
    """Without a cgroup namespace the mount's root is the container's cgroup: its path is the mount point."""
    fake("0::/system.slice/docker-1.scope\n", {"unified/cpu.max": "300000 100000"},
         mountinfo="20 1 0:5 / /proc rw - proc proc rw\n"
                   "30 25 0:26 /system.slice/docker-1.scope @ROOT@/unified rw,nosuid - cgroup2 cgroup2 rw\n")
    assert cpus.usable_cpus() == 3


# -- usable_cpus: cgroup v1 -------------------------------------------------------------------------
def test_v1_cfs_quota(fake: Any) -> None:
    fake("4:memory:/x\n3:cpu,cpuacct:/docker/abc\n0::/\n",
         {"cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "150000\n", "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
          "cpu,cpuacct/docker/cpu.cfs_quota_us": "-1", "cpu,cpuacct/docker/cpu.cfs_period_us": "100000"})
    assert cpus.cpu_quota() == 1.5
    assert cpus.usable_cpus() == 2


def test_v1_nested_parent_limit_and_minus_one(fake: Any) -> None:
    fake("1:cpu:/k/p\n", {"cpu/k/cpu.cfs_quota_us": "300000", "cpu/k/cpu.cfs_period_us": "100000",
                          "cpu/k/p/cpu.cfs_quota_us": "-1", "cpu/k/p/cpu.cfs_period_us": "100000"})
    assert cpus.usable_cpus() == 3


def test_v1_minus_one_is_no_limit(fake: Any) -> None:
    fake("1:cpu:/k\n", {"cpu/k/cpu.cfs_quota_us": "-1", "cpu/k/cpu.cfs_period_us": "100000"})
    assert cpus.cpu_quota() is None and cpus.usable_cpus() == 8


def test_v1_mount_from_mountinfo(fake: Any) -> None:
    fake("5:cpuacct,cpu:/docker/abc\n", {"mnt/cpu.cfs_quota_us": "100000", "mnt/cpu.cfs_period_us": "100000"},
         mountinfo="31 25 0:27 /docker/abc @ROOT@/mnt rw - cgroup cgroup rw,cpuacct,cpu\n")
    assert cpus.usable_cpus() == 1


def test_affinity_smaller_than_the_quota_wins(fake: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    fake("0::/a\n", {"a/cpu.max": "400000 100000"})
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)
    assert cpus.usable_cpus() == 1


@pytest.mark.parametrize("cgroup, files", [
    ("0::/a\n", {"a/cpu.max": "garbage"}),
    ("0::/a\n", {"a/cpu.max": "abc 100000"}),
    ("0::/a\n", {"a/cpu.max": "100000"}),
    ("0::/a\n", {"a/cpu.max": "0 100000"}),
    ("0::/a\n", {"a/cpu.max": "100000 0"}),
    ("0::/a\n", {"a/cpu.max": "\xff\xfe 1"}),
    ("0::/a\n", {"a/cpu.max": "9" * 5000 + " 100000"}),  # past int()'s digit limit (Python 3.11 on)
    ("0::/a\n", {"a/cpu.max/x": "dir, not a file"}),
    ("0::/../../etc\n", {}),
    ("1:cpu:/k\n", {"cpu/k/cpu.cfs_quota_us": "x", "cpu/k/cpu.cfs_period_us": "100000"}),
    ("1:cpu:/k\n", {"cpu/k/cpu.cfs_quota_us": "100000"}),  # no period
    ("1:cpu:/k\n", {"cpu/k/cpu.cfs_quota_us": "100000", "cpu/k/cpu.cfs_period_us": "-5"}),
    ("nonsense\n::\n:::::\n", {}),
    ("", {}),
])
def test_malformed_or_missing_files_are_no_limit(fake: Any, cgroup: str, files: dict[str, str]) -> None:
    fake(cgroup, files, mountinfo="garbage line\n - \n")
    assert cpus.cpu_quota() is None
    assert cpus.usable_cpus() == 8


def test_unreadable_proc_is_no_limit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(cpus, "PROC_SELF", str(tmp_path / "missing"))
    monkeypatch.setattr(cpus, "CGROUP_ROOT", str(tmp_path / "missing-too"))
    assert cpus.cpu_quota() is None and cpus.usable_cpus() == 2


def test_bench_records_the_cpu_limit_it_ran_under(fake: Any) -> None:
    from fsrfer_edge.bench import machine_info

    fake("0::/a\n", {"a/cpu.max": "150000 100000"})
    doc = machine_info()
    assert (doc["cpu_count"], doc["usable_cpus"], doc["cpu_quota"]) == (64, 2, 1.5)


# -- the default intra-op threads ------------------------------------------------------------------
ort = pytest.importorskip("onnxruntime")


@pytest.fixture()
def captured(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The SessionOptions each InferenceSession is made with."""
    seen: list[Any] = []
    real = ort.InferenceSession

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["sess_options"])
        return real(*args, **kwargs)
    monkeypatch.setattr(ort, "InferenceSession", spy)
    return seen


def _restrict(monkeypatch: pytest.MonkeyPatch, usable: int, machine: int) -> None:
    monkeypatch.setattr(ob, "usable_cpus", lambda: usable)
    monkeypatch.setattr(os, "cpu_count", lambda: machine)


def test_restricted_default_is_the_usable_cpus(monkeypatch: pytest.MonkeyPatch, captured: list[Any]) -> None:
    _restrict(monkeypatch, 2, 64)
    assert ob.make_session_options(None).intra_op_num_threads == 2
    b = ob.OnnxRuntimeBackend(DEFAULT_MODEL, providers="cpu")
    assert b.threads is None  # the user's choice is recorded as given
    b.close()
    assert [o.intra_op_num_threads for o in captured] == [2]


def test_restricted_to_one_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    _restrict(monkeypatch, 1, 64)
    assert ob.make_session_options(None).intra_op_num_threads == 1


def test_unrestricted_default_is_left_to_onnxruntime(monkeypatch: pytest.MonkeyPatch, captured: list[Any]) -> None:
    _restrict(monkeypatch, 64, 64)
    fresh = ort.SessionOptions()
    opts = ob.make_session_options(None)
    assert (opts.intra_op_num_threads, opts.inter_op_num_threads) == (fresh.intra_op_num_threads,
                                                                      fresh.inter_op_num_threads) == (0, 0)
    with ob.OnnxRuntimeBackend(DEFAULT_MODEL, providers="cpu"):
        pass
    assert [o.intra_op_num_threads for o in captured] == [0]


def test_explicit_threads_are_kept_when_restricted(monkeypatch: pytest.MonkeyPatch, captured: list[Any]) -> None:
    _restrict(monkeypatch, 2, 64)
    assert ob.make_session_options(5).intra_op_num_threads == 5
    with pytest.raises(InputError, match="threads=0"):  # 0 stays refused, as before
        ob.make_session_options(0)
    with ob.OnnxRuntimeBackend(DEFAULT_MODEL, providers="cpu", sessions=2):
        pass
    assert [o.intra_op_num_threads for o in captured] == [1, 1]  # several sessions: one thread each, as before


def test_the_choice_is_logged_once_at_debug(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    _restrict(monkeypatch, 3, 61)  # a pair no other test logs
    with caplog.at_level(logging.DEBUG, logger=ob.__name__):
        ob.make_session_options(None)
        ob.make_session_options(None)
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG and "intra-op" in r.getMessage()]
    assert len(lines) == 1 and "3 intra-op threads" in lines[0] and "61" in lines[0]


# -- a live cgroup (v1, root) ------------------------------------------------------------------------
_CHILD = """
import json, sys
import onnxruntime as ort
from fsrfer_edge import cpus
from fsrfer_edge.backends import onnxruntime_backend as ob
from fsrfer_edge.errors import InputError
seen = []
real = ort.InferenceSession
def spy(*a, **k):
    seen.append(k["sess_options"].intra_op_num_threads)
    return real(*a, **k)
ort.InferenceSession = spy
with ob.OnnxRuntimeBackend(sys.argv[1], providers="cpu") as b:
    pass
print(json.dumps({"usable": cpus.usable_cpus(), "quota": cpus.cpu_quota(), "passed": seen,
                  "cgroup": open("/proc/self/cgroup").read()}))
"""


def test_live_cgroup_with_a_one_cpu_quota(tmp_path: Path) -> None:
    base = Path("/sys/fs/cgroup/cpu")
    group = base / f"fsrfer-test-{uuid.uuid4().hex[:8]}"
    try:
        group.mkdir()
    except OSError as exc:
        pytest.skip(f"cannot make a cgroup v1 cpu folder under {base} ({exc}): needs root on a cgroup v1 machine")
    try:
        (group / "cpu.cfs_period_us").write_text("100000")
        (group / "cpu.cfs_quota_us").write_text("100000")
        script = tmp_path / "child.py"
        script.write_text(_CHILD)
        # the shell joins the cgroup, then becomes the child: everything the child runs is under the quota
        cmd = f'echo $$ > {group / "cgroup.procs"} && exec {sys.executable} {script} {DEFAULT_MODEL}'
        done = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=60, cwd=REPO)
        assert done.returncode == 0, done.stderr[-2000:]
        got = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        group.rmdir()
    assert group.name in got["cgroup"]
    assert got["quota"] == 1.0 and got["usable"] == 1
    assert got["passed"] == [1]


def test_the_backend_says_how_many_intra_op_threads_it_asked_for(monkeypatch: pytest.MonkeyPatch,
                                                                  captured: list[Any]) -> None:
    """``threads`` records the user's choice (None); ``intra_op_threads`` what was passed to ONNX Runtime (None: its
    own default), which fsrfer-bench writes beside it."""
    _restrict(monkeypatch, 2, 64)
    with ob.OnnxRuntimeBackend(DEFAULT_MODEL, providers="cpu") as b:
        assert (b.threads, b.intra_op_threads) == (None, 2) == (None, captured[-1].intra_op_num_threads)
    with ob.OnnxRuntimeBackend(DEFAULT_MODEL, providers="cpu", threads=3) as b:
        assert b.intra_op_threads == 3
    with ob.OnnxRuntimeBackend(DEFAULT_MODEL, providers="cpu", sessions=2) as b:
        assert b.intra_op_threads == 1
    _restrict(monkeypatch, 64, 64)
    with ob.OnnxRuntimeBackend(DEFAULT_MODEL, providers="cpu") as b:
        assert b.intra_op_threads is None


def test_fsrfer_bench_records_the_intra_op_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    from fsrfer_edge.bench import run_bench

    _restrict(monkeypatch, 2, 64)
    doc = run_bench(DEFAULT_MODEL, [1], warmup=1, iters=2, backend="onnxruntime", providers="cpu",
                    overhead_batch=None)
    assert (doc["threads"], doc["intra_op_threads"]) == (None, 2)
