import importlib.util
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FSRFER_DATA", REPO.parent / "shared" / "data"))


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs an NVIDIA GPU (TensorRT/CUDA bindings, or CUDA torch for training); skipped elsewhere")
    config.addinivalue_line("markers", "data: needs the real FER2013/FER+ arrays in ../shared/data")
    config.addinivalue_line("markers", "needs(*modules): needs these importable modules (the trainer's torch and yaml, "
                            "the exporter's onnx, ...); skipped, naming the pip extra, where one is missing")


#: The pip extra that brings each module a ``needs`` mark names.
EXTRAS = {"torch": "train", "yaml": "train", "onnx": "export", "onnxsim": "export", "onnxruntime": "cpu",
          "cv2": "crowd", "PIL": "demo", "skimage": "demo"}


def _missing(modules: tuple[str, ...]) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def pytest_collection_modifyitems(config, items):
    have_data = (SHARED_DATA / "fer2013.npz").is_file()
    skip_data = pytest.mark.skip(reason=f"real data not found at {SHARED_DATA} (set FSRFER_DATA)")
    for item in items:
        if "data" in item.keywords and not have_data:
            item.add_marker(skip_data)
        for mark in item.iter_markers("needs"):
            missing = _missing(mark.args)
            if missing:
                extras = sorted({EXTRAS.get(m, "?") for m in missing})
                torch_first = "pip install torch==2.13.0, then " if {"train", "export"} & set(extras) else ""
                item.add_marker(pytest.mark.skip(
                    reason=f"needs {', '.join(missing)}: {torch_first}pip install -e '.[{','.join(extras)}]'"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "fer2013.npz").is_file():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="module")
def rec():
    """The shipped default model on one ONNX Runtime thread, one per test module (a module's own ``rec`` fixture,
    as many have, takes its place there)."""
    pytest.importorskip("onnxruntime")
    from fsrfer_edge import Recognizer

    with Recognizer(threads=1) as r:
        yield r


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


@pytest.fixture(scope="session")
def int8_files(tmp_path_factory):
    """The shipped model quantized to INT8 (minmax) on 6 faces that reach both paths of its routed graph (3 smooth
    6 px faces enlarged, 3 synthetic 48 px faces): "s8s8", "s8s8_tensor" (per-tensor weights) and "u8s8" as loaded
    ModelProtos (copy one before changing it), with "fp32" (the shipped model) and "calib" (the model inputs)."""
    pytest.importorskip("onnxruntime.quantization", reason="onnxruntime not installed (pip install -e '.[export]')")
    import numpy as np

    from fsrfer_edge.export import quantize
    from fsrfer_edge.export.calib import faces_to_pixels, to_model_input
    from fsrfer_edge.export.onnx_export import load_onnx, read_model_info
    from fsrfer_edge.preprocessing import resize
    from fsrfer_edge.recognizer import DEFAULT_MODEL
    from trainer.synthetic import make_faces

    info = read_model_info(load_onnx(DEFAULT_MODEL))
    smooth = resize(np.random.default_rng(0).uniform(0, 255, size=(3, 6, 6)).astype(np.float32), (48, 48))
    faces = np.concatenate([np.clip(np.rint(smooth), 0, 255), make_faces(3, seed=103)[0]]).astype(np.uint8)
    calib = to_model_input(faces_to_pixels(faces, info), info)
    d = tmp_path_factory.mktemp("int8")
    out = {"fp32": load_onnx(DEFAULT_MODEL), "calib": calib}
    for key, scheme, per_channel in (("s8s8", "s8s8", True), ("s8s8_tensor", "s8s8", False), ("u8s8", "u8s8", True)):
        quantize.quantize_int8(DEFAULT_MODEL, d / f"{key}.onnx", calib, scheme, "minmax", per_channel=per_channel)
        out[key] = load_onnx(d / f"{key}.onnx")
    return out


@pytest.fixture()
def fake_cgroup(monkeypatch, tmp_path):
    """Point fsrfer_edge.cpus at a fake /proc/self (``cgroup``, ``mountinfo``) and cgroup root under tmp_path; the
    CPU set says 8 CPUs, the machine 64. Returns make(cgroup, files, mountinfo="") -> the cgroup root, where files
    maps paths under the root to their text and ``@ROOT@`` in mountinfo stands for the root."""
    from fsrfer_edge import cpus

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)

    def make(cgroup, files, mountinfo=""):
        proc, root = tmp_path / "proc", tmp_path / "cg"
        proc.mkdir()
        (proc / "cgroup").write_text(cgroup)
        (proc / "mountinfo").write_text(mountinfo.replace("@ROOT@", str(root)))
        for rel, text in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        monkeypatch.setattr(cpus, "PROC_SELF", str(proc))
        monkeypatch.setattr(cpus, "CGROUP_ROOT", str(root))
        return root
    return make
