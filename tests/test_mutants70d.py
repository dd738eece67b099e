"""Tests that kill hand-made mutants (round 70, task K70d) of the app-facing experiment scripts, second pass:
scripts/load_test.py (the latency mean and maximum of unsorted times, the answer checker's bound and a wrong-shaped
answer, the warm-up error and the in-process clients left open, each answer checked against its own request; the
kill/restart phase's HTTP/gRPC split, built-in retries on even clients, the errors and retries it counts, messages
grouped by port, the first answers after the kill; main's server options, --atol and the verdict over every
phase), scripts/app_inputs.py (the crops' rounded sizes, the residual turned off only for "bilinear, as given", the
"nearest, as given" row fed as it is, stretched pixels kept in 0-255, the bilinear HR count, the model's hash),
scripts/deepstream_inputs.py (--pad-value -1, the command recorded with the default split, the video-range row,
the padded rows' grey level, the narrow box and its rounded sizes, a colour model refused) and
scripts/temporal_views.py (one frame's accuracy over every frame, unsteady faces, the log aggregate, the threads
and split recorded; the camera row compressed from the noisy frames, noise drawn per face, the box kernel), and
for all three SDK-faces scripts a bad --json refused before any work and a model that is not float32 refused
with nothing written. Scripted fakes (server, remote clients, clips), tiny synthetic faces, the shipped model
and temporary folders only."""
from __future__ import annotations

import collections
import dataclasses
import itertools
import json
import threading
import time
from pathlib import Path
from types import ModuleType, SimpleNamespace as NS
from typing import Any, Optional

import numpy as np
import pytest

from _scripts import load_script


# --------------------------------------------------------------------------------------------
# scripts/load_test.py
# --------------------------------------------------------------------------------------------
def _lt() -> ModuleType:
    return load_script("scripts/load_test.py", "load_test_70d")


def test_load_test_percentiles_give_the_mean_and_the_largest_of_unsorted_latencies() -> None:
    # kills: the median as mean_ms; the last latency as max_ms
    lt = _lt()
    out = lt.percentiles([0.004, 0.001, 0.001, 0.002])
    assert out["mean_ms"] == 2.0 and out["max_ms"] == 4.0 and out["p50_ms"] == 1.5


def test_load_test_checker_accepts_a_difference_of_exactly_atol_and_counts_a_wrong_shape_as_infinite() -> None:
    # kills: diff >= atol counted wrong; a wrong-shaped answer recorded as a difference of 0
    lt = _lt()
    checker = lt.Checker([[np.array([[1.0, 2.0]])]], atol=0.5)
    checker.check(0, 0, np.array([[1.5, 2.0]]))
    assert checker.wrong == 0 and checker.max_abs_diff == 0.5
    checker.check(0, 0, np.array([[1.0, 2.0], [1.0, 2.0]]))
    assert checker.wrong == 1 and checker.max_abs_diff == float("inf")


def test_load_test_run_clients_checks_each_answer_against_its_request_and_records_a_failed_client(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: the warm-up error dropped; answers checked against request 0; clients closed when told not to;
    # faces_per_request read as requests per client
    lt = _lt()
    clock = itertools.count()
    monkeypatch.setattr(lt, "time", NS(perf_counter=lambda: next(clock) * 1e-3))
    requests = [[[np.full((12, 12), 10 * c + i, np.uint8)] * 2 for i in range(3)] for c in range(2)]
    reference = [[np.array([[float(10 * c + i), 0.0]] * 2) for i in range(3)] for c in range(2)]
    closed: list[int] = []

    def make_client(c: int) -> Any:
        if c == 1:
            raise RuntimeError("no server")
        return NS(close=lambda: closed.append(c))

    def call(client: Any, faces: list[np.ndarray]) -> np.ndarray:
        if client is None:
            raise ConnectionError("no client")
        return np.array([[float(f[0, 0]), 0.0] for f in faces])

    checker = lt.Checker(reference, atol=1e-6)
    out = lt.run_clients(make_client, requests, call, checker, close_clients=False)
    assert closed == []  # the in-process phase shares one Recognizer: it must stay open
    assert out["clients"] == 2 and out["requests_per_client"] == 3 and out["faces_per_request"] == 2
    assert out["wrong"] == 0 and out["max_abs_logit_diff"] == 0.0 and out["lost"] == 3
    assert dict(out["errors"]) == {"RuntimeError: no server": 1, "ConnectionError: no client": 3}
    out = lt.run_clients(make_client, requests, call, lt.Checker(reference, atol=1e-6))
    assert closed == [0]


class _KillServer:
    """A fake ServerProcess: kill() and start() are counted; start() lets the clients' answers through."""

    http_url, grpc_url = "http://127.0.0.1:8000", "127.0.0.1:8001"

    def __init__(self) -> None:
        self.kills = self.starts = 0
        self.up = threading.Event()

    def kill(self) -> None:
        self.kills += 1

    def start(self) -> None:
        self.starts += 1
        self.up.set()


def test_load_test_kill_restart_splits_protocols_retries_on_even_clients_and_counts_app_retries(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: c <= n // 2 on HTTP; built-in retries on odd clients; retries = deadline in seconds; every request
    # counted retried; (n + 1) // 2 as n // 2; the two error sums swapped; min/max read as first/last client;
    # ports grouped by one digit; lost counted as the errors seen
    from fsrfer_edge.serving.errors import ServerUnavailable

    lt = _lt()
    n, r = 5, 3
    requests = [[[np.full((12, 12), 10 * c + i, np.uint8)] for i in range(r)] for c in range(n)]
    reference = [[np.array([[float(10 * c + i), 0.0]]) for i in range(r)] for c in range(n)]
    server = _KillServer()
    now: dict[int, float] = {}  # each thread's clock: client c answers at 100 - 10 c
    monkeypatch.setattr(lt, "time", NS(monotonic=lambda: now.get(threading.get_ident(), 0.0),
                                       sleep=lambda s: None, perf_counter=time.perf_counter))
    made: list[tuple[str, str, int]] = []
    closed: list[str] = []

    class Remote:
        def __init__(self, url: str, protocol: str, timeout_s: float, retries: int, retry_delay_s: float) -> None:
            self.url, self.retries, self.calls = url, retries, 0
            made.append((protocol, url, retries))

        def prepare(self, faces: list[np.ndarray]) -> list[np.ndarray]:
            return faces

        def predict_logits(self, faces: list[np.ndarray]) -> np.ndarray:
            self.calls += 1
            if self.retries == 0 and self.calls == 1:  # an app-retried client sees the crash once
                raise ServerUnavailable(f"cannot reach {self.url.split('//')[-1]}")
            assert server.up.wait(10)
            value = float(faces[0][0, 0])
            now[threading.get_ident()] = 100.0 - 10 * (value // 10)
            return np.array([[value, 0.0]])

        def close(self) -> None:
            closed.append(self.url)

    monkeypatch.setattr(lt, "RemoteRecognizer", Remote)
    out = lt.kill_restart_phase(server, requests, lt.Checker(reference, 1e-6), kill_after_s=0.0,
                                retry_delay_s=0.5, deadline_s=60.0, pace_s=0.0)
    http, grpc = server.http_url, server.grpc_url
    assert collections.Counter(made) == {("http", http, 120): 1, ("http", http, 0): 1, ("grpc", grpc, 120): 2,
                                         ("grpc", grpc, 0): 1}
    assert server.kills == 1 and server.starts == 1 and len(closed) == n
    assert (out["clients_http"], out["clients_grpc"], out["clients_with_builtin_retries"]) == (2, 3, 3)
    assert out["requests_answered"] == out["requests_total"] == n * r and out["lost"] == 0 and out["wrong"] == 0
    assert out["client_errors_total"] == 2 and out["client_errors_seen_with_builtin_retries"] == 0
    assert out["client_errors_seen_without_retries"] == 2 and out["requests_retried_by_the_app"] == 2
    assert out["client_errors"] == [{"type": "ServerUnavailable", "message": "cannot reach 127.0.0.1:PORT",
                                     "count": 2}]
    assert out["first_answer_after_kill_s"] == {"min": 60.0, "max": 100.0}


@pytest.mark.needs("onnxruntime")
def test_load_test_main_passes_the_server_options_checks_with_atol_and_fails_on_wrong_grpc_answers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: --server-args not given to the server; --atol not recorded / not used for the served phases;
    # served_grpc left out of the verdict; exit 0 on a failed run; the kill phase sized by --requests
    from fsrfer_edge import Recognizer

    lt = _lt()
    started: list[list[str]] = []

    class Server(_KillServer):
        def __init__(self, model: Path, args: Optional[list[str]] = None) -> None:
            super().__init__()
            started.append(list(args or []))

        def __enter__(self) -> "Server":
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    with Recognizer(threads=1) as shared:
        class Remote:  # the in-process answer, shifted by 0.01 over gRPC in the served phase (built without retries)
            def __init__(self, url: str, protocol: str, **kw: Any) -> None:
                self.shift = 0.01 if protocol == "grpc" and "retries" not in kw else 0.0

            def prepare(self, faces: list[np.ndarray]) -> Any:
                return shared.prepare(faces)

            def predict_logits(self, x: Any) -> np.ndarray:
                return shared.predict_logits(x) + self.shift

            def close(self) -> None:
                pass

        monkeypatch.setattr(lt, "ServerProcess", Server)
        monkeypatch.setattr(lt, "RemoteRecognizer", Remote)
        monkeypatch.setattr(lt, "_server_numpy", lambda: "1.26.4")
        monkeypatch.setattr(lt, "time", NS(monotonic=time.monotonic, sleep=lambda s: None,
                                           perf_counter=time.perf_counter))
        small = ["--clients", "2", "--requests", "2", "--batch", "2", "--kill-requests", "3"]
        out = tmp_path / "lt.json"
        assert lt.main(small + ["--atol", "0.1", "--server-args", "--max-queue-delay-us 500",
                                "--out", str(out)]) == 0
        doc = json.loads(out.read_text())
        assert started == [["--max-queue-delay-us", "500"]] and doc["server"]["args"] == started[0]
        assert doc["passed"] is True and doc["atol"] == 0.1 and doc["served_grpc"]["wrong"] == 0
        assert doc["served_http"]["requests_per_client"] == 2 and doc["kill_restart"]["requests_total"] == 6
        assert lt.main(small + ["--atol", "0.001", "--out", str(out)]) == 1
        doc = json.loads(out.read_text())
        assert doc["passed"] is False and doc["served_http"]["wrong"] == 0 and doc["served_grpc"]["wrong"] == 4
        assert doc["kill_restart"]["wrong"] == 0 and doc["kill_restart"]["lost"] == 0


# --------------------------------------------------------------------------------------------
# The SDK-faces scripts: scripts/app_inputs.py, scripts/deepstream_inputs.py, scripts/temporal_views.py
# --------------------------------------------------------------------------------------------
def _app() -> ModuleType:
    return load_script("scripts/app_inputs.py", "app_inputs_70d")


def _ds() -> ModuleType:
    return load_script("scripts/deepstream_inputs.py", "deepstream_inputs_70d")


def _views() -> ModuleType:
    return load_script("scripts/temporal_views.py", "temporal_views_70d")


def _faces(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """Nine sharp 48 px faces in a plain .npz: four of noisy blocks, two enlarged 2x by pixel repetition and three
    enlarged 2x bilinearly (cv2), labelled 0..6 in turn."""
    import cv2

    rng = np.random.default_rng(5)
    blocks = [np.clip(np.kron(rng.integers(0, 256, (6, 6)), np.ones((8, 8))) + rng.normal(0, 20, (48, 48)), 0, 255)
              for _ in range(4)]
    repeated = [np.kron(rng.integers(0, 256, (24, 24)), np.ones((2, 2))) for _ in range(2)]
    bilinear = [cv2.resize(rng.integers(0, 256, (24, 24)).astype(np.uint8), (48, 48),
                           interpolation=cv2.INTER_LINEAR) for _ in range(3)]
    faces = np.stack(blocks + repeated + bilinear).astype(np.uint8)
    path = tmp_path / "faces.npz"
    np.savez(path, images=faces, labels=(np.arange(len(faces)) % 7).astype(np.int64))
    return path, faces


class _Spy:
    """Recognizer (the shipped model) that records what it is given: ("predict", crop shapes, the linear
    enlarging residual then) and ("logits", input); ``info`` can be replaced."""

    calls: list[tuple[Any, ...]] = []
    info_edit: Any = None

    def __init__(self, model: Any = None, threads: int = 1) -> None:
        from fsrfer_edge.recognizer import Recognizer  # the real one (the fixture replaces fsrfer_edge's)

        self._rec = Recognizer(model, threads=1)
        self.info = self._rec.info if self.info_edit is None else self.info_edit(self._rec.info)

    def __enter__(self) -> "_Spy":
        return self

    def __exit__(self, *exc: object) -> None:
        self._rec.close()

    def predict(self, crops: list[np.ndarray]) -> Any:
        from fsrfer_edge import preprocessing

        self.calls.append(("predict", [c.shape for c in crops], preprocessing.LINEAR_ENLARGING_RESIDUAL))
        return self._rec.predict(crops)

    def predict_logits(self, x: np.ndarray) -> np.ndarray:
        self.calls.append(("logits", np.array(x)))
        return self._rec.predict_logits(x)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> type[_Spy]:
    import fsrfer_edge

    class Spy(_Spy):
        calls: list[tuple[Any, ...]] = []

    monkeypatch.setattr(fsrfer_edge, "Recognizer", Spy)
    return Spy


def _pixels(x: np.ndarray) -> np.ndarray:
    """Model input (N, 1, S, S) back to grey levels, with the shipped model's normalisation."""
    from fsrfer_edge.preprocessing import Preprocessing

    pre = Preprocessing()
    return (np.asarray(x, np.float64)[:, 0] * pre.std + pre.mean) * 255.0


_SDK_SCRIPTS = ("app_inputs", "deepstream_inputs", "temporal_views")


@pytest.mark.parametrize("name", _SDK_SCRIPTS)
def test_sdk_faces_scripts_refuse_a_json_folder_before_reading_data(name: str, tmp_path: Path, spy: Any) -> None:
    # kills: check_output_path removed (the run would load the data and the model first)
    from fsrfer_edge.errors import InputError

    mod = load_script(f"scripts/{name}.py", f"{name}_70d")
    with pytest.raises(InputError, match="--json"):
        mod.main(["--data", str(tmp_path / "missing.npz"), "--json", str(tmp_path)])
    assert spy.calls == []


@pytest.mark.needs("cv2", "onnxruntime")
@pytest.mark.parametrize("name,edit,match", [
    ("app_inputs", "uint8", "float32-input model"), ("deepstream_inputs", "uint8", "float32-input gray model"),
    ("deepstream_inputs", "rgb", "float32-input gray model"), ("temporal_views", "uint8", "float32-input model")])
def test_sdk_faces_scripts_refuse_a_model_that_is_not_float32_gray_and_write_nothing(
        name: str, edit: str, match: str, tmp_path: Path, spy: Any) -> None:
    # kills: the input-dtype checks dropped; deepstream_inputs' channel check dropped
    def change(info: Any) -> Any:
        if edit == "rgb":
            return dataclasses.replace(info, preprocessing=dataclasses.replace(info.preprocessing, channels=3))
        return dataclasses.replace(info, input_dtype="uint8")

    spy.info_edit = staticmethod(change)
    data, _ = _faces(tmp_path)
    out = tmp_path / "out.json"
    mod = load_script(f"scripts/{name}.py", f"{name}_70d")
    with pytest.raises(SystemExit, match=match):
        mod.main(["--data", str(data), "--json", str(out)])
    assert not out.exists() and all(c[0] != "predict" for c in spy.calls)


@pytest.mark.needs("cv2", "onnxruntime")
def test_app_inputs_rounds_crop_sizes_turns_the_residual_off_only_for_bilinear_as_given_and_keeps_pixels(
        tmp_path: Path, spy: Any) -> None:
    # kills: w // f for round(w / f); the residual left on for "bilinear, as given"; "nearest, as given" through
    # the SDK; stretched pixels not clipped to 0-255; the bilinear HR count; the data's hash as the model's
    import cv2

    from fsrfer_edge import preprocessing
    from fsrfer_edge.fileio import sha256_file
    from fsrfer_edge.preprocessing import Preprocessing

    app = _app()
    data, faces = _faces(tmp_path)
    out = tmp_path / "app.json"
    residual = preprocessing.LINEAR_ENLARGING_RESIDUAL
    assert residual != 0.0
    assert app.main(["--data", str(data), "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["command"] == f"python scripts/app_inputs.py --json {out}"
    predicted = [c for c in spy.calls if c[0] == "predict"]
    # 80% of the width (38 px) shrunk x3: round(38 / 3) = 13 columns, 16 rows
    assert [(16, 13)] * len(faces) in [c[1] for c in predicted]
    off = [c for c in predicted if c[2] == 0.0]
    assert len(off) == len(app.FACTORS) and all(c[1] == [(48, 48)] * len(faces) for c in off)
    assert all(c[2] == residual for c in predicted if c[2] != 0.0)
    fed = [c[1] for c in spy.calls if c[0] == "logits"]
    assert len(fed) == len(app.FACTORS) + 2 * (len(app.FACTORS) + 1)
    small = [cv2.resize(im, (24, 24), interpolation=cv2.INTER_AREA) for im in faces]
    nearest = np.stack([cv2.resize(s, (48, 48), interpolation=cv2.INTER_NEAREST) for s in small])
    np.testing.assert_allclose(fed[0], Preprocessing().normalize(nearest[:, None].astype(np.float32)), atol=1e-6)
    assert all(_pixels(x).min() > -1e-3 and _pixels(x).max() < 255 + 1e-3 for x in fed)
    want = sum(preprocessing.undo_linear_enlarging(im.astype(np.float32)).shape != im.shape for im in faces)
    assert doc["hr_faces_reduced_bilinear"] == want != doc["hr_faces_reduced"]
    assert doc["model"]["sha256"] == sha256_file(app.REPO / "fsrfer_edge" / "models" / "default.onnx")


@pytest.mark.needs("cv2", "onnxruntime")
def test_deepstream_inputs_refuses_a_negative_pad_value_before_reading_data(tmp_path: Path, spy: Any) -> None:
    # kills: the lower bound of --pad-value dropped
    with pytest.raises(SystemExit, match="pad-value -1"):
        _ds().main(["--data", str(tmp_path / "missing.npz"), "--json", str(tmp_path / "o.json"), "--pad-value", "-1"])
    assert spy.calls == [] and not (tmp_path / "o.json").exists()


@pytest.mark.needs("cv2", "onnxruntime")
def test_deepstream_inputs_record_the_command_pad_the_narrow_box_and_squeeze_the_video_range(
        tmp_path: Path, spy: Any) -> None:
    # kills: --split val recorded in the command; the video row without its 16 offset or from another filter;
    # the padded rows padded with 0 not --pad-value; a narrower box cut; w // f for round(w / f); the sdk row
    # given the unshrunk faces; the data's hash as the model's
    import cv2

    from fsrfer_edge.fileio import sha256_file

    ds = _ds()
    data, faces = _faces(tmp_path)
    out = tmp_path / "ds.json"
    assert ds.main(["--data", str(data), "--json", str(out), "--pad-value", "255"]) == 0
    doc = json.loads(out.read_text())
    assert doc["command"] == f"python scripts/deepstream_inputs.py --json {out} --pad-value 255"
    assert doc["model"]["sha256"] == sha256_file(ds.REPO / "fsrfer_edge" / "models" / "default.onnx")
    shapes = [c[1] for c in spy.calls if c[0] == "predict"]
    assert [(48, 38)] * len(faces) in shapes and [(16, 13)] * len(faces) in shapes
    fed = [np.rint(_pixels(c[1])) for c in spy.calls if c[0] == "logits"]
    # the square box's video row follows its cubic stretched row at each factor: 16 + x * 219 / 255
    video = [b for a, b in zip(fed, fed[1:]) if np.array_equal(b, np.rint(16 + a * (219 / 255)))]
    assert len(video) == len(ds.FACTORS) and all(v.min() >= 16 and v.max() <= 235 for v in video)
    cubic = np.stack([cv2.resize(cv2.resize(im, (24, 24), interpolation=cv2.INTER_AREA), (48, 48),
                                 interpolation=cv2.INTER_CUBIC) for im in faces])
    np.testing.assert_array_equal(video[1], np.rint(16 + cubic * (219 / 255)))  # x2, from the cubic row
    # the narrow box's padded rows (3 filters per factor): at least 4 columns of --pad-value each side
    padded = [x for x in fed if (x[:, :, :4] == 255).all()]
    assert len(padded) == len(ds.FILTERS) * len(ds.FACTORS)


# --------------------------------------------------------------------------------------------
# scripts/temporal_views.py
# --------------------------------------------------------------------------------------------
def _scripted_probs(n_classes: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """(FRAMES=8, 3, C) probabilities and labels: face 0 steady and right; face 1 right but for its last frame;
    face 2 (label 3) sure of 3 in frames 0-3, then 3 near zero and 4 likely: its mean of probabilities says 3,
    its mean of log probabilities says 4."""
    p = np.full((8, 3, n_classes), 1e-3)
    p[:, 0, 0] = 0.9
    p[:, 1, 1] = 0.8
    p[7, 1, 1], p[7, 1, 2] = 0.3, 0.6
    p[:4, 2, 3], p[:4, 2, 4] = 0.9, 0.09
    p[4:, 2, 3], p[4:, 2, 4], p[4:, 2, 5] = 1e-3, 0.6, 0.39
    return p / p.sum(axis=2, keepdims=True), np.array([0, 1, 3])


@pytest.mark.needs("onnxruntime")
def test_temporal_views_scores_every_frame_unsteady_faces_and_each_aggregate(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: "one frame" read at the last frame only; unsteady as faces whose every frame differs; the log
    # aggregate computed as probs; threads not recorded; the command's --split
    tv = _views()
    probs, labels = _scripted_probs()
    assert tv.FRAMES == len(probs)
    data = tmp_path / "faces.npz"
    np.savez(data, images=np.zeros((3, 48, 48), np.uint8), labels=labels)
    monkeypatch.setattr(tv, "clip_logits", lambda rec, images, rng: (
        (f, row, 48 // f, np.log(probs)) for f in tv.FACTORS for row in tv.ROWS))
    out = tmp_path / "tv.json"
    assert tv.main(["--data", str(data), "--json", str(out), "--split", "test", "--threads", "1"]) == 0
    doc = json.loads(out.read_text())
    assert doc["threads"] == 1 and doc["command"] == f"python scripts/temporal_views.py --json {out} --split test"
    for row in tv.ROWS:
        acc = doc["accuracy"][row]
        assert acc["one frame"]["2"] == round(100 * (8 + 7 + 4) / 24, 2)
        assert doc["unsteady"][row]["2"] == round(100 * 2 / 3, 2)
        assert acc["probs, half_life none"]["2"] == 100.0 and acc["log, half_life none"]["2"] == round(200 / 3, 2)


def test_temporal_views_camera_frames_compress_the_noisy_frames_and_noise_is_drawn_per_face(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: the camera row compressed from the frames before noise; one noise pattern for every face; the
    # bicubic kernel instead of the box (area) average
    from trainer.degrade import _jpeg

    tv = _views()
    monkeypatch.setattr(tv, "shift_bilinear", lambda im, dy, dx: im.astype(np.float32))  # no shift
    # 3x3 blocks of 20..235: the box average of each block is exact and the noise never clipped
    blocks = np.random.default_rng(2).integers(20, 236, (40, 16, 16))
    images = np.kron(blocks, np.ones((1, 3, 3))).astype(np.uint8)
    out = tv.clip_frames(images, 3, np.random.default_rng(3))
    for clean, camera in zip(out["clean"], out["camera"]):
        np.testing.assert_array_equal(camera, _jpeg(clean.astype(np.float32), np.full(len(clean), tv.JPEG_QUALITY)))
    noise = out["clean"][0].astype(np.float64) - blocks
    assert np.abs(noise).max() <= 6 * tv.NOISE + 1 and 0.7 * tv.NOISE < noise.std() < 1.3 * tv.NOISE
    assert not np.array_equal(noise[0], noise[1]) and not np.array_equal(out["clean"][0], out["clean"][1])


def test_temporal_views_clip_logits_give_every_frame_of_both_rows_at_each_factor() -> None:
    # kills: one row only; one frame per clip
    tv = _views()
    seen: list[np.ndarray] = []

    def logits(x: np.ndarray) -> np.ndarray:
        seen.append(x)
        return np.zeros((len(x), 7), np.float32)

    from fsrfer_edge.preprocessing import Preprocessing

    rec = NS(info=NS(preprocessing=Preprocessing()), predict_logits=logits)
    images = np.random.default_rng(6).integers(0, 256, (3, 48, 48)).astype(np.uint8)
    out = list(tv.clip_logits(rec, images, np.random.default_rng(7)))
    assert [(f, row) for f, row, _, _ in out] == [(f, row) for f in tv.FACTORS for row in tv.ROWS]
    assert all(z.shape == (tv.FRAMES, 3, 7) and side == 48 // f for f, _, side, z in out)
    assert len(seen) == tv.FRAMES * len(out) and all(x.shape == (3, 1, 48, 48) for x in seen)


# --- load_test's options refused before the server starts (noticed by round 70d) ---

@pytest.mark.parametrize("argv, named", [
    (["--clients", "0"], "--clients 0"), (["--requests", "0"], "--requests 0"), (["--batch", "0"], "--batch 0"),
    (["--kill-requests", "0"], "--kill-requests 0"), (["--atol=-1e-4"], "--atol -0.0001"),
    (["--atol", "nan"], "--atol nan"), (["--out", "{tmp}"], "is a directory"),
])
def test_load_test_refuses_bad_options_before_the_server_starts(
        argv: list[str], named: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    lt = load_script("scripts/load_test.py", "load_test_70d_options")
    started: list[Any] = []
    monkeypatch.setattr(lt, "resolve_model_path", lambda *a, **k: started.append(a))
    monkeypatch.setattr(lt, "ServerProcess", lambda *a, **k: started.append(a))
    with pytest.raises(SystemExit) as exc:
        lt.main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert exc.value.code == 2 and not started
    assert named in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written
