"""The ``needs`` mark of tests/conftest.py: a test that needs a module skips where it is missing, naming the pip
extra (scripts/test_runtime_only.sh runs the suite without torch and onnx), and runs where it is there."""
from __future__ import annotations

import pytest
from conftest import EXTRAS, _missing

RAN: list[str] = []


@pytest.mark.needs("fsrfer_no_such_module_67")
def test_a_test_needing_a_missing_module_does_not_run() -> None:
    raise AssertionError("ran although its module is missing: the needs mark did not skip it")


@pytest.mark.needs("numpy", "pytest")
def test_a_test_needing_installed_modules_runs() -> None:
    RAN.append("ran")


def test_the_installed_modules_test_ran_and_missing_ones_are_named() -> None:
    assert RAN == ["ran"]  # pytest runs a file's tests in order
    assert _missing(("numpy", "fsrfer_no_such_module_67", "pytest")) == ["fsrfer_no_such_module_67"]


def test_every_module_named_by_a_mark_has_its_extra() -> None:
    """Each module a ``needs`` mark names in the suite is one whose pip extra the skip reason can name."""
    import re
    from pathlib import Path

    named = set()
    for path in Path(__file__).parent.glob("test_*.py"):
        for args in re.findall(r"@pytest\.mark\.needs\(([^)]*)\)", path.read_text(encoding="utf-8")):
            named |= set(re.findall(r"\"([A-Za-z_][\w.]*)\"", args))
    named -= {"fsrfer_no_such_module_67", "numpy", "pytest"}  # this file's own
    assert named and named <= set(EXTRAS), named - set(EXTRAS)
