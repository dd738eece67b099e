"""The shipped checkpoint re-stored after its graph was exported (same weights, other bytes): a graph exported again
from it finds the packaged score and group calibrations (fsrfer_edge/models/restored_checkpoints.json,
scripts/restored_checkpoint.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fsrfer_edge.fileio import sha256_file
from fsrfer_edge.sidecars import PACKAGED, RESTORED, _restored, same_checkpoint

REPO = Path(__file__).resolve().parents[1]


def _shipped_graph_names() -> str:
    from fsrfer_edge import Recognizer

    with Recognizer(PACKAGED / "default.onnx", confidence=None) as rec:
        return rec.info.checkpoint_sha256


def test_the_shipped_checkpoint_is_the_one_its_graph_names_or_is_recorded_as_holding_its_weights() -> None:
    """Re-storing default.pt again without running scripts/restored_checkpoint.py fails here."""
    own, named = sha256_file(PACKAGED / "default.pt"), _shipped_graph_names()
    assert own == named or _restored().get(own) == named, (
        "run: python scripts/restored_checkpoint.py")
    assert RESTORED.is_file() or own == named


def test_same_checkpoint_takes_a_restored_file_for_the_one_it_was_restored_from() -> None:
    own, named = sha256_file(PACKAGED / "default.pt"), _shipped_graph_names()
    assert same_checkpoint(named, named) and same_checkpoint(own, named) and same_checkpoint(named, own)
    assert not same_checkpoint(own, "0" * 64) and not same_checkpoint("0" * 64, "1" * 64)


def test_a_graph_exported_again_from_the_shipped_checkpoint_finds_the_packaged_calibrations(tmp_path: Path) -> None:
    """It had no confidence and no group shares: its metadata names the re-stored file, the packaged files the
    file the shipped graph was exported from."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxsim")
    from fsrfer_edge import Recognizer
    from fsrfer_edge.export.cli import main as export_main
    from fsrfer_edge.groups import calibration_for

    assert export_main([str(PACKAGED / "default.pt"), "--out-dir", str(tmp_path), "--name", "again", "-q"]) == 0
    model = tmp_path / "again.fp32.onnx"
    with Recognizer(model) as rec:
        assert rec.info.checkpoint_sha256 == sha256_file(PACKAGED / "default.pt")  # the metadata stays truthful
        assert rec.predict([np.full((24, 24), 120, np.uint8)])[0].confidence is not None
        assert calibration_for(model, rec.info.classes, rec.info.checkpoint_sha256) is not None
