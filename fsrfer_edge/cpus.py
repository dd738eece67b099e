"""The CPUs this process may use: its CPU set and its cgroup CPU quota, which ``os.cpu_count()`` and ONNX Runtime's
default thread pool do not see (a 2-CPU container on a 64-core host is told 64)."""
from __future__ import annotations

import math
import os
import re
from fractions import Fraction
from typing import Any, Optional, Tuple

#: Where the cgroup hierarchies are looked for when ``/proc/self/mountinfo`` does not say (cgroup v2 mounted here,
#: v1's cpu controller in ``cpu`` or ``cpu,cpuacct`` below it). Tests point it at a tree of their own.
CGROUP_ROOT = "/sys/fs/cgroup"
#: This process's /proc entry: ``cgroup`` names its cgroups, ``mountinfo`` where their hierarchies are mounted.
PROC_SELF = "/proc/self"
_V1_FOLDERS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")


def _read_text(path: str) -> Optional[str]:
    """A small kernel file's text; None where it cannot be read (missing, a folder, no permission, not text)."""
    try:
        with open(path, encoding="ascii") as f:
            return f.read(1 << 20)
    except (OSError, ValueError):  # UnicodeDecodeError is a ValueError
        return None


def _cgroup_mounts() -> Tuple[Tuple[str, str], Tuple[str, str]]:
    """(root, mount point) of the cgroup v2 hierarchy and of the v1 one with the cpu controller, from mountinfo;
    where it does not name one, the usual place under :data:`CGROUP_ROOT`."""
    v2: Optional[Tuple[str, str]] = None
    v1: Optional[Tuple[str, str]] = None
    for line in (_read_text(os.path.join(PROC_SELF, "mountinfo")) or "").splitlines():
        before, sep, after = line.partition(" - ")
        mount, fs = before.split(), after.split()
        if not sep or len(mount) < 5 or len(fs) < 3:
            continue
        # mountinfo escapes blanks and backslashes in paths as octal (\040)
        root, point = (re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), f) for f in mount[3:5])
        if fs[0] == "cgroup2" and v2 is None:
            v2 = (root, point)
        elif fs[0] == "cgroup" and "cpu" in fs[2].split(",") and v1 is None:
            v1 = (root, point)
    if v1 is None:
        folder = next((f for f in _V1_FOLDERS if os.path.isdir(os.path.join(CGROUP_ROOT, f))), _V1_FOLDERS[0])
        v1 = ("/", os.path.join(CGROUP_ROOT, folder))
    return v2 or ("/", CGROUP_ROOT), v1


def _ratio(quota: str, period: str) -> Optional[Fraction]:
    """quota/period CPUs; None for no limit ("max", -1) or a value that is not a positive integer."""
    try:
        q, p = int(quota), int(period)
    except ValueError:  # not a number, or more digits than int() takes
        return None
    return Fraction(q, p) if q > 0 and p > 0 else None


def _v2_limit(folder: str) -> Optional[Fraction]:
    parts = (_read_text(os.path.join(folder, "cpu.max")) or "").split()
    return _ratio(*parts) if len(parts) == 2 else None


def _v1_limit(folder: str) -> Optional[Fraction]:
    quota, period = (_read_text(os.path.join(folder, n)) for n in ("cpu.cfs_quota_us", "cpu.cfs_period_us"))
    return _ratio(quota.strip(), period.strip()) if quota is not None and period is not None else None


def _smallest_limit(path: str, mount: Tuple[str, str], read: Any) -> Optional[Fraction]:
    """The smallest CPU limit of the cgroup ``path`` (as /proc/self/cgroup names it) and of every cgroup above it,
    up to the mount point of its hierarchy: a parent's quota binds its children too."""
    root, point = mount
    root = root.rstrip("/")
    if root and path != root and not path.startswith(root + "/"):
        path = root  # a cgroup outside the mount's view: the mount point is the nearest one seen
    parts = [p for p in path[len(root):].split("/") if p]
    if any(p in (".", "..") for p in parts):
        parts = []
    limits = [read(os.path.join(point, *parts[:depth])) for depth in range(len(parts), -1, -1)]
    found = [lim for lim in limits if lim is not None]
    return min(found) if found else None


def _cpu_limit() -> Optional[Fraction]:
    text = _read_text(os.path.join(PROC_SELF, "cgroup"))
    if not text:
        return None
    v2_mount, v1_mount = _cgroup_mounts()
    found = []
    for line in text.splitlines():
        fields = line.split(":", 2)
        if len(fields) != 3 or not fields[2].startswith("/"):
            continue
        if fields[0] == "0" and not fields[1]:  # cgroup v2 (or the unified half of a hybrid)
            found.append(_smallest_limit(fields[2], v2_mount, _v2_limit))
        elif "cpu" in fields[1].split(","):  # cgroup v1's cpu controller
            found.append(_smallest_limit(fields[2], v1_mount, _v1_limit))
    limits = [lim for lim in found if lim is not None]
    return min(limits) if limits else None


def cpu_quota() -> Optional[float]:
    """The CPUs a cgroup CPU quota lets this process use (``docker --cpus=1.5``, Kubernetes ``limits.cpu``: cgroup v2
    ``cpu.max``, v1 ``cpu.cfs_quota_us / cpu.cfs_period_us``; the smallest of its cgroup and those above it), or
    None where there is none or it cannot be read. Never raises."""
    limit = _cpu_limit()
    return None if limit is None else float(limit)


def usable_cpus() -> int:
    """The CPUs this process may use: its CPU set (a container's ``--cpuset-cpus``, taskset) and its cgroup CPU quota
    (a container's ``--cpus``, rounded up), whichever is smaller, at least 1. ``os.cpu_count()`` counts the
    machine's, so a 2-CPU container on a 64-core host would be told it has 64."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no affinity on this platform (macOS, Windows)
        cpus = os.cpu_count() or 1
    limit = _cpu_limit()
    if limit is not None:
        cpus = min(cpus, math.ceil(limit))
    return max(1, cpus)
