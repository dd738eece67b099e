"""The JSON documents fsrfer-crowd and fsrfer-demo write with --json, as an integrator's parser reads them: a schema
marker, every key listed in docs/crowd.md's tables (so the doc cannot drift from the code), strict JSON of plain
types, the same bytes from two runs on the same input apart from the documented timings, and fsrfer-demo's
probability lists named by their classes."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("PIL")
pytest.importorskip("skimage")

from fsrfer_edge import crowd_bench, crowd_cli, demo  # noqa: E402
from fsrfer_edge.detection.frames import write_image  # noqa: E402
from _video import write_video  # noqa: E402

DOC = Path(__file__).resolve().parents[1] / "docs" / "crowd.md"


@pytest.fixture(scope="module")
def scene() -> crowd_bench.Scene:
    """A small seeded scene of the public-domain astronaut face (no FER faces in tests' files)."""
    pool = crowd_bench.public_domain_faces()
    return crowd_bench.make_scene(pool, seed=3, n_faces=4, size=(160, 200), background="clutter",
                                  face_range=(18, 36))


def doc_keys() -> dict[str, dict[str, str]]:
    """docs/crowd.md's key tables: {level: {key: when it is present}} from rows ``| level | `key` | type | when |
    meaning |`` of the section on the JSON documents."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index("### The JSON documents")
    end = text.find("\n### ", start + 1)
    section = text[start:end if end > 0 else len(text)]
    levels: dict[str, dict[str, str]] = {}
    for line in section.splitlines():
        m = re.match(r"\|\s*([a-z_ ]+?)\s*\|\s*`([a-z_]+)`\s*\|[^|]*\|\s*([^|]*?)\s*\|", line)
        if m:
            level, key, when = m.groups()
            assert key not in levels.get(level, {}), f"{level}.{key} is listed twice in {DOC.name}"
            levels.setdefault(level, {})[key] = when
    return levels


def _run(main: Callable[[list[str]], int], argv: list[str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Run a CLI; return the document it gave write_json (checked for plain types), as written to the file."""
    captured: list[Any] = []
    module = crowd_cli if main is crowd_cli.main else demo
    real = module.write_json

    def keep(path: Any, doc: Any, *args: Any, **kwargs: Any) -> Any:
        captured.append(doc)
        return real(path, doc, *args, **kwargs)

    monkeypatch.setattr(module, "write_json", keep)
    assert main(argv) == 0
    monkeypatch.setattr(module, "write_json", real)
    _check_plain(captured[0], "")
    path = Path(argv[argv.index("--json") + 1])

    def refuse(token: str) -> None:
        raise AssertionError(f"{path.name} holds {token}, which strict JSON readers refuse")

    return json.loads(path.read_text(), parse_constant=refuse)


def _check_plain(value: Any, where: str) -> None:
    """Only JSON's own types, exactly (no numpy scalars, tuples or other subclasses), and string keys."""
    assert type(value) in (dict, list, str, int, float, bool, type(None)), (where, type(value))
    if isinstance(value, float):
        assert np.isfinite(value), where
    if isinstance(value, dict):
        for k, v in value.items():
            assert type(k) is str, (where, k)
            _check_plain(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")


class _Camera:
    """cv2.VideoCapture of camera 0: the same small frame, endlessly, at an unknown frame rate."""

    frame: np.ndarray

    def __init__(self, source: Any, *args: Any) -> None:
        assert source == 0

    def isOpened(self) -> bool:
        return True

    def read(self) -> tuple[bool, np.ndarray]:
        return True, self.frame[:, :, ::-1].copy()

    def get(self, prop: int) -> float:
        return 0.0

    def release(self) -> None:
        pass


@pytest.fixture(scope="module")
def documents(scene: crowd_bench.Scene, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """fsrfer-crowd's documents for an image, a tracked and an untracked video and a camera, and fsrfer-demo's."""
    cv2 = pytest.importorskip("cv2")
    tmp = tmp_path_factory.mktemp("docs")
    src = write_image(tmp / "in.png", scene.image)
    video = write_video(tmp / "in.avi", [scene.image, scene.image[:, ::-1].copy(), scene.image])
    mp = pytest.MonkeyPatch()
    docs: dict[str, Any] = {}
    try:
        runs = {"image": [str(src), "--out", str(tmp / "o.png")],
                "video": [str(video), "--out", str(tmp / "o.avi")],
                "untracked": [str(video), "--out", str(tmp / "u.avi"), "--no-track"],
                "camera": ["0", "--out", str(tmp / "c.avi"), "--max-frames", "2"]}
        _Camera.frame = scene.image
        real_capture = cv2.VideoCapture
        for name, argv in runs.items():
            mp.setattr(cv2, "VideoCapture", _Camera if name == "camera" else real_capture)
            docs[name] = _run(crowd_cli.main, argv + ["--json", str(tmp / f"{name}.json"), "--min-face", "12"], mp)
            docs[name + "_bytes"] = (tmp / f"{name}.json").read_bytes()
        mp.undo()
        again = runs["image"] + ["--json", str(tmp / "again.json"), "--min-face", "12"]
        docs["image_again"] = _run(crowd_cli.main, again, mp)
        docs["demo"] = _run(demo.main, [str(src), "--out", str(tmp / "d.png"), "--json", str(tmp / "d.json"),
                                        "--factors", "1,4"], mp)
    finally:
        mp.undo()
    assert docs["image"]["faces"] and docs["video"]["frames"][0]["faces"]  # faces to check the keys of
    return docs


# --------------------------------------------------------------------------------------------
# A version marker
# --------------------------------------------------------------------------------------------
def test_every_document_says_its_schema(documents: dict[str, Any]) -> None:
    for name in ("image", "video", "untracked", "camera"):
        assert documents[name]["schema"] == crowd_cli.SCHEMA == "fsrfer-crowd/1", name
    assert documents["demo"]["schema"] == demo.SCHEMA == "fsrfer-demo/1"
    text = DOC.read_text(encoding="utf-8")
    assert "fsrfer-crowd/1" in text and "fsrfer-demo/1" in text


# --------------------------------------------------------------------------------------------
# Every key documented
# --------------------------------------------------------------------------------------------
def _check_level(levels: dict[str, dict[str, str]], level: str, objects: list[dict[str, Any]]) -> None:
    """The keys seen over ``objects`` are the level's documented keys; each one marked "always" is in every one."""
    assert objects, level
    documented = levels.get(level, {})
    seen = set().union(*(o.keys() for o in objects))
    assert seen == set(documented), (level, "written, not documented:", seen - set(documented),
                                     "documented, not written:", set(documented) - seen)
    for o in objects:
        missing = {k for k, when in documented.items() if when == "always"} - set(o)
        assert not missing, (level, missing)


def test_every_key_written_is_in_the_docs_tables(documents: dict[str, Any]) -> None:
    levels = doc_keys()
    image, videos = documents["image"], [documents[n] for n in ("video", "untracked", "camera")]
    frames = [image] + [f for v in videos for f in v["frames"]]
    faces = [f for fr in frames for f in fr["faces"]]
    _check_level(levels, "top", [{k: v for k, v in d.items() if k not in levels["frame"]} for d in [image]]
                 + [{k: v for k, v in d.items() if k not in levels["video"]} for d in videos])
    _check_level(levels, "video", [{k: v for k, v in d.items() if k not in levels["top"]} for d in videos])
    _check_level(levels, "frame", [{k: v for k, v in image.items() if k not in levels["top"]}]
                 + [f for v in videos for f in v["frames"]])
    _check_level(levels, "face", faces)
    _check_level(levels, "summary", [fr["summary"] for fr in frames])
    _check_level(levels, "timings_ms", [fr["timings_ms"] for fr in frames])
    _check_level(levels, "tracking", [d["tracking"] for d in videos if d["tracking"] is not None])
    _check_level(levels, "track", [t for d in videos if d["tracks"] is not None for t in d["tracks"]])
    d = documents["demo"]
    _check_level(levels, "demo", [d])
    _check_level(levels, "demo face", d["faces"])
    _check_level(levels, "demo factor", [r for f in d["faces"] for r in f["factors"].values()])
    # fsrfer-crowd's detector_settings are the demo's detector object, key for key (one function writes both)
    _check_level(levels, "demo detector", [d["detector"], image["detector_settings"]]
                 + [v["detector_settings"] for v in videos])
    _check_level(levels, "demo recognizer", [d["recognizer"]])
    _check_level(levels, "demo timings_ms", [d["timings_ms"]])
    assert documents["untracked"]["tracks"] is None and documents["untracked"]["tracking"] is None


# --------------------------------------------------------------------------------------------
# What the values mean, as the doc says it
# --------------------------------------------------------------------------------------------
def test_values_follow_the_documented_conventions(documents: dict[str, Any], scene: crowd_bench.Scene) -> None:
    h, w = scene.image.shape[:2]
    image, video = documents["image"], documents["video"]
    assert image["frame_size"] == [h, w]  # (height, width), as numpy's shape
    assert [f["frame_index"] for f in video["frames"]] == [0, 1, 2]  # 0-based
    for f in image["faces"]:  # (x0, y0, x1, y1) corners in the input's own pixels, whatever --scale draws
        x0, y0, x1, y1 = f["box"]
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        assert f["size_px"] == pytest.approx(max(x1 - x0, y1 - y0), abs=0.02)
        assert image["classes"][f["index"]] == f["label"] and f["expr_score"] == f["probs"][f["label"]]
        assert set(f["probs"]) == set(image["classes"])
    assert documents["camera"]["frames_in_header"] is None and documents["camera"]["fps"] == 25.0
    d = documents["demo"]
    for face in d["faces"]:
        for r in face["factors"].values():
            assert len(r["probs"]) == len(d["classes"])
            assert d["classes"][int(np.argmax(r["probs"]))] == r["label"]


# --------------------------------------------------------------------------------------------
# Strict, repeatable JSON
# --------------------------------------------------------------------------------------------
def test_two_runs_write_the_same_bytes_apart_from_timings(documents: dict[str, Any]) -> None:
    """The documents are parsed with NaN/Infinity refused and checked for plain types as they are written (_run); two
    runs on one image differ only in ``timings_ms``, the one field measured on the machine."""
    a, b = documents["image"], documents["image_again"]
    assert a["timings_ms"].keys() == b["timings_ms"].keys() == {"detect", "recognize"}
    a["timings_ms"] = b["timings_ms"] = {}
    assert a == b
    text = documents["image_bytes"].decode()
    assert text.endswith("}\n") and json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n" == text
