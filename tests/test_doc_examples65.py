"""The docs' Python examples that no other test runs, run as written, each taken from its doc at test time.

tests/test_readme.py runs README.md's first block (the SDK) and tests/test_deepstream.py runs the three blocks of
docs/deepstream.md; here: README.md's "Crowd scenes" and "Scaling out" blocks, docs/crowd.md's block and
docs/scaling.md's "Switching an app" block, in a temporary folder holding the files they name as tiny synthetic
inputs (a seeded scene of the public-domain astronaut face, no FER face)."""
from __future__ import annotations

import ast
import inspect
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
REPO = Path(__file__).resolve().parents[1]
CLASSES = {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}
N_FRAMES = 3  # frames of each synthetic video


def _block(doc: str, section: str) -> str:
    """The first ```python block after the heading ``section`` of ``doc`` (a path under the repository)."""
    text = "\n" + (REPO / doc).read_text(encoding="utf-8")
    assert f"\n{section}\n" in text, f"{doc} has no heading {section!r}"
    code = re.search(r"```python\n(.*?)```", text.split(f"\n{section}\n", 1)[1], re.S)
    assert code is not None, f"{doc} has no python block after {section!r}"
    return code.group(1)


def _run(code: str, doc: str, namespace: dict | None = None) -> dict:
    namespace = {} if namespace is None else namespace
    exec(compile(code, doc, "exec"), namespace)
    return namespace


@pytest.fixture()
def crowd_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """station.jpg, platform.mp4 and classroom.mp4 in the working folder (a 6-face seeded scene, a 3-frame mp4v
    video of it); returns the scene's number of faces."""
    cv2 = pytest.importorskip("cv2")
    from fsrfer_edge import crowd_bench

    scene = crowd_bench.make_scene(crowd_bench.public_domain_faces(), seed=3, n_faces=6, size=(200, 280),
                                   background="clutter", face_range=(16, 40))
    monkeypatch.chdir(tmp_path)
    bgr = np.ascontiguousarray(scene.image[:, :, ::-1])
    assert cv2.imwrite("station.jpg", bgr)
    for name in ("platform.mp4", "classroom.mp4"):
        writer = cv2.VideoWriter(name, cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (bgr.shape[1], bgr.shape[0]))
        if not writer.isOpened():
            pytest.skip("this OpenCV build cannot write mp4v .mp4 files")
        for _ in range(N_FRAMES):
            writer.write(bgr)
        writer.release()
    return len(scene.boxes)


def test_the_crowd_docs_example_runs_on_a_photo_and_two_videos(crowd_files: int, capsys: pytest.CaptureFixture) -> None:
    """docs/crowd.md's block: analyze("station.jpg"), analyze_stream("platform.mp4") and a TrackLog over
    "classroom.mp4"; what it prints is one line per face found, counts summing to them, frame by frame lines and
    each track's frames."""
    _run(_block("docs/crowd.md", "## Crowd scenes: every face in a frame"), "docs/crowd.md")
    lines = capsys.readouterr().out.strip().splitlines()
    faces = [m for m in (re.fullmatch(r"\((.*)\) (\S+) (\S+) (\S+)", ln) for ln in lines) if m]
    assert crowd_files - 2 <= len(faces) <= crowd_files  # the detector finds (nearly) every face of the scene
    for m in faces:
        x0, y0, x1, y1 = (float(v) for v in m.group(1).split(","))
        assert float(m.group(2)) == pytest.approx(max(x1 - x0, y1 - y0)) and m.group(3) in CLASSES
        assert 1 / 7 <= float(m.group(4)) <= 1
    counts_line = next(ln for ln in lines if ln.startswith("{") and "} {" in ln)
    counts, mean_probs = (ast.literal_eval(part) for part in counts_line.replace("} {", "}\n{").split("\n"))
    assert set(counts) == set(mean_probs) == CLASSES and sum(counts.values()) == len(faces)
    assert sum(mean_probs.values()) == pytest.approx(1, abs=1e-4)
    shares = ast.literal_eval(lines[lines.index(counts_line) + 1])
    assert set(shares) == CLASSES and sum(shares.values()) == pytest.approx(1, abs=1e-3)
    stream = [ln.split() for ln in lines if re.fullmatch(r"\d+ \S+", ln)]
    assert [int(i) for i, _ in stream] == list(range(N_FRAMES)) and all(d in CLASSES for _, d in stream)
    tracks = ast.literal_eval(lines[-1])
    assert len(faces) - 2 <= len(tracks) <= len(faces) + 2  # each person once, over the whole video
    assert all(1 <= frames <= N_FRAMES and label in CLASSES for _, frames, label in tracks)
    assert len({t for t, _, _ in tracks}) == len(tracks)


def test_the_readme_crowd_example_runs_on_a_photo(crowd_files: int, capsys: pytest.CaptureFixture) -> None:
    """README.md's "Crowd scenes" block on "station.jpg": counts summing to the faces listed, sizes and labels."""
    _run(_block("README.md", "## Crowd scenes"), "README.md")
    first, second = capsys.readouterr().out.strip().splitlines()
    counts, faces = (ast.literal_eval(part) for part in first.replace("} [", "}\n[").split("\n"))
    assert crowd_files - 2 <= len(faces) <= crowd_files
    assert set(counts) == CLASSES and sum(counts.values()) == len(faces)
    assert all(8 <= size <= 48 and label in CLASSES for size, label in faces)
    shares = ast.literal_eval(second)
    assert set(shares) == CLASSES and sum(shares.values()) == pytest.approx(1, abs=1e-3)


def _served_as_in_process(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list:
    """The working folder holds fsrfer.onnx (the shipped model); ``fsrfer_edge.serving.RemoteRecognizer`` is replaced
    by a stand-in that binds its arguments to the real class's signature (a wrong keyword fails here) and answers
    with an in-process Recognizer on the shipped model, as there is no Triton server here. Returns the bound
    calls' arguments."""
    import fsrfer_edge.serving as serving
    from fsrfer_edge import Recognizer

    real = serving.RemoteRecognizer
    assert inspect.signature(real.predict) == inspect.signature(Recognizer.predict)  # "same predict() API"
    monkeypatch.chdir(tmp_path)
    shutil.copy(REPO / "fsrfer_edge" / "models" / "default.onnx", tmp_path / "fsrfer.onnx")
    calls: list = []
    opened: list = []

    def stand_in(*args: object, **kwargs: object) -> Recognizer:
        calls.append(inspect.signature(real).bind(*args, **kwargs).arguments)
        opened.append(Recognizer(threads=1))
        return opened[-1]

    monkeypatch.setattr(serving, "RemoteRecognizer", stand_in)
    return calls


def test_the_scaling_docs_switch_runs_with_the_server_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture) -> None:
    """docs/scaling.md's "Switching an app" block. Its RemoteRecognizer lines need a running Triton server, which
    this machine has not: every name the block imports must exist, each RemoteRecognizer call's arguments must
    bind to the real signature (and the remote predict's signature be the in-process one's), and the block then
    runs as written with an in-process Recognizer answering for the server; Recognizer("fsrfer.onnx") is real."""
    from _faces import blob_face

    code = _block("docs/scaling.md", "## Switching an app: one line")
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.ImportFrom):
            module = __import__(node.module or "", fromlist=["_"])
            assert all(hasattr(module, a.name) for a in node.names), f"{node.module} lacks a name the block imports"
    calls = _served_as_in_process(monkeypatch, tmp_path)
    face_crops = np.stack([blob_face(48, seed) for seed in range(3)])  # (3, 48, 48) uint8
    ns = _run(code, "docs/scaling.md", {"face_crops": face_crops})
    try:
        assert [c.get("protocol", "http") for c in calls] == ["http", "grpc"]
        assert calls[1]["url"] == "10.0.0.5:8001" and calls[1]["model_name"] == "fsrfer_trt"
        lines = capsys.readouterr().out.strip().splitlines()
        assert len(lines) == len(face_crops)
        assert all(ln.split()[0] in CLASSES and 0 < float(ln.split()[1]) <= 1 for ln in lines)
    finally:
        ns["rec"].close()


def test_the_readme_scaling_lines_bind_and_run_with_the_server_replaced(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """README.md's "Scaling out" block, imports included. Needs a Triton server for its RemoteRecognizer line: run
    with the stand-in above, which binds the arguments to the real RemoteRecognizer's signature; the Recognizer line
    loads fsrfer.onnx for real."""
    from fsrfer_edge import Recognizer

    code = _block("README.md", "## Scaling out")
    calls = _served_as_in_process(monkeypatch, tmp_path)
    ns = _run(code, "README.md")
    try:
        assert calls == [{"url": "127.0.0.1:8000"}]
        assert isinstance(ns["rec"], Recognizer)
    finally:
        ns["rec"].close()
