import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FSRFER_DATA", REPO.parent / "shared" / "data"))


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs an NVIDIA GPU (TensorRT/CUDA bindings, or CUDA torch for training); skipped elsewhere")
    config.addinivalue_line("markers", "data: needs the real FER2013/FER+ arrays in ../shared/data")


def pytest_collection_modifyitems(config, items):
    have_data = (SHARED_DATA / "fer2013.npz").is_file()
    skip_data = pytest.mark.skip(reason=f"real data not found at {SHARED_DATA} (set FSRFER_DATA)")
    for item in items:
        if "data" in item.keywords and not have_data:
            item.add_marker(skip_data)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "fer2013.npz").is_file():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="module")
def calibrated_rec():
    """The shipped default model on one ONNX Runtime thread, with its packaged confidence maps (JPEG maps and size
    estimate included)."""
    pytest.importorskip("onnxruntime")
    from fsrfer_edge import Recognizer

    with Recognizer(threads=1, spinning=False) as r:
        assert r.score_calibration is not None and r.score_calibration.jpeg_params is not None
        assert r.score_calibration.size_weights is not None
        yield r
