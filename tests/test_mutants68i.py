"""Tests that kill hand-made mutants (round 68, task K68i) of the crowd benchmark and fsrfer-crowd (a third pass, after
rounds 64, 65 and 66) and of four benchmark scripts that had no test: fsrfer_edge/crowd_bench.py (false faces on
cluttered scenes only and on real photos, the worker's sweep at its own threshold, medians over speed rounds and the
last round's environment, speed-ups baseline / detector, rotating timing order, each margin's own crops and the
analyzer's margin in the sweep, a bin without faces in smallest_reliable, --table's summary and false faces,
--min-score 1, the command as typed and the options a worker gets), fsrfer_edge/crowd_cli.py (padded RIFF chunks and
MP4's index, shares of exactly 0.5%, an infinite half-life as null, the legend's right margin, no --threads for
OpenCV, a camera's video output), benchmarks/stage2_step.py (interleaved rounds in alternating order, the options
passed on to each worker, after / before per round, the worktree removed), benchmarks/linear_precheck.py (alternating
order, the model timed in this checkout's process only, ratios after / before and the model-time shares),
benchmarks/augment_speed.py (medians over rounds, the ratio to the training step, failing only past --max-ratio) and
scripts/bench_backbones.py (the warm-up step left out, medians, each model's own parameter count).
Tiny synthetic scenes and reports, fake analyzers, fake workers and fake clocks; the tiny backbone where torch runs."""
from __future__ import annotations

import json
import math
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, Optional

import numpy as np
import pytest

from _scripts import load_script
from fsrfer_edge import crowd_bench, crowd_cli
from fsrfer_edge.detection import Detection
from fsrfer_edge.errors import InputError
from fsrfer_edge.tracking import FaceTracker


# ==================================================================================================================
# fsrfer_edge/crowd_bench.py
# ==================================================================================================================
def _det(box: tuple[float, float, float, float], score: float = 0.9) -> Detection:
    return Detection(tuple(float(v) for v in box), float(score), ())  # type: ignore[arg-type]


def _scene(background: str, boxes: list[tuple[float, float, float, float]]) -> Any:
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return SimpleNamespace(background=background, boxes=b, sizes=b[:, 2] - b[:, 0])


def test_sweep_row_counts_false_faces_on_cluttered_scenes_only_and_photos_with_one_or_more() -> None:
    # kills: false faces of plain scenes counted as cluttered ones; a photo with no false face counted among the
    # photos with one; false faces per photo over another count
    plain = _scene("plain", [(0, 0, 10, 10)])
    clutter = _scene("clutter", [(0, 0, 10, 10)])
    ev = {"scene_detections": [(plain, [_det((0, 0, 10, 10)), _det((40, 40, 50, 50)), _det((60, 0, 70, 10))]),
                               (clutter, [_det((0, 0, 10, 10)), _det((40, 40, 50, 50))])]}
    face = np.array([[0.0, 0.0, 20.0, 20.0]])
    photos = [("astronaut", face, [_det((0, 0, 20, 20))]),  # its true face: no false face
              ("coffee", np.zeros((0, 4)), []),
              ("coins", np.zeros((0, 4)), [_det((0, 0, 5, 5)), _det((10, 10, 15, 15))])]
    row = crowd_bench._sweep_row(ev, photos, 0.5)
    assert row["false_faces_per_clutter_scene"] == 1.0
    assert row["false_faces_by_photo"] == {"astronaut": 0, "coffee": 0, "coins": 2}
    assert row["false_faces_real_photos"] == 2 and row["real_photos_with_false_faces"] == 1
    assert row["false_faces_per_real_photo"] == round(2 / 3, 3)
    assert row["recall"] == 1.0 and row["precision"] == round(2 / 5, 4)


def test_smallest_reliable_looks_past_a_size_bin_without_faces() -> None:
    # kills: an empty bin (recall None) ending the search like a bin under the threshold
    bins = [{"lo": lo, "recall": r} for lo, r in zip((6, 8, 12, 16), (0.5, 0.95, None, 0.9))]
    assert crowd_bench.smallest_reliable(bins, threshold=0.9) == 8


def test_run_benchmark_reports_each_margin_with_its_own_crops_and_the_analyzers_margin_too() -> None:
    # kills: true-box crops taken at the default margin for every margin of the sweep; the analyzer's own margin
    # left out of the sweep (its headline accuracy then has no crops); the chance level over 8 classes
    pool = crowd_bench.FacePool(np.full((4, 48, 48), 200, np.uint8), np.ones(4, np.int64), "flat test faces")
    scene = crowd_bench.make_scenes(pool, 1, 0, 3, (96, 96))[0]
    assert len(scene.boxes) == 3

    def predict(crops: list[np.ndarray]) -> list[Any]:  # right (1) only on a crop of face pixels alone: margin 0
        return [SimpleNamespace(index=int((c == 200).all())) for c in crops]

    analyzer = SimpleNamespace(_detect=lambda image: [_det(tuple(b)) for b in scene.boxes], margin=0.2, min_size=0.0,
                               min_score=None, detector=SimpleNamespace(name="fake", min_face=6.0, min_score=0.5),
                               recognizer=SimpleNamespace(predict=predict, model_path=None))
    report = crowd_bench.run_benchmark(analyzer, pool, 1, 3, (96, 96), 0, margins=(0.0,), fps_repeats=0)  # type: ignore[arg-type]
    sweep = report["margin_sweep"]
    assert set(sweep) == {"0", "0.2"}
    assert (sweep["0"]["accuracy"], sweep["0"]["accuracy_true_boxes"]) == (1.0, 1.0)
    assert (sweep["0.2"]["accuracy"], sweep["0.2"]["accuracy_true_boxes"]) == (0.0, 0.0)
    assert report["accuracy"]["overall"]["accuracy"] == 0.0 and report["config"]["margin"] == 0.2
    assert report["accuracy"]["chance"] == round(1 / 7, 4)


def _bench_report(acc: float, threshold: float, false_faces: int) -> dict[str, Any]:
    sweep = {"recall": 1.0, "precision": 0.5, "recall_bins": {"8-12": 1.0}, "false_faces_per_clutter_scene": 1.0,
             "false_faces_real_photos": false_faces, "false_faces_per_real_photo": round(false_faces / 17, 3),
             "real_photos_with_false_faces": 1, "accuracy": acc}
    return {"detection": {"bins": [{"bin": "8-12", "lo": 8, "hi": 12, "faces": 2, "found": 2, "recall": 1.0}],
                          "overall": {"faces": 2, "found": 2, "recall": 1.0}},
            "accuracy": {"overall": {"accuracy": acc}}, "config": {"detector_name": "x"},
            "score_sweep": {"thresholds": {f"{threshold:g}": sweep}, "photos": ["coffee", "coins"]}}


def test_table_prints_the_comparison_its_summary_and_the_false_faces_at_each_detectors_threshold(tmp_path: Path) -> None:
    # kills: --table leaving the comparison's summary out; the table's false faces read per photo instead of in all
    rows = [{"label": "yunet", "detector": "YuNet()", "min_face": 16.0, "min_score": 0.6, "margin": 0.0,
             "detect_speedup": None, "report": _bench_report(0.5, 0.6, 3)},
            {"label": "blazeface", "detector": "BlazeFace()", "min_face": 16.0, "min_score": 0.5, "margin": 0.05,
             "detect_speedup": None, "report": _bench_report(0.4, 0.5, 7)}]
    report = dict(_bench_report(0.5, 0.6, 3), accuracy=None,
                  comparison={"baseline": "blazeface", "rounds": 0, "detectors": rows})
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(report))
    text = crowd_bench.report_tables(path)
    assert "**yunet** (score 0.6, margin 0) against **blazeface** (score 0.5, margin 0.05)" in text
    assert "end-to-end accuracy 50.0% against 40.0%; 3 false faces on the 2 real photos against 7" in text
    # accuracy, recall 8-12 / 12-16 / 16-24 px, false faces on real photos, then no speed (none measured)
    assert "| yunet | 0.6 | 0 | 50.0% | 100.0% | - | - | 3 | - | - | - | - |" in text.splitlines()


def test_crowd_bench_records_the_command_as_typed_and_passes_its_options_to_the_workers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # kills: the command read from sys.argv (pytest's here) when main() is given its arguments; --threads 0 passed
    # on as 0 rather than the default (None); the timed scene sized by --size instead of --fps-size
    seen: list[Any] = []

    def compare(specs: Any, job: Any, rounds: int, big_photos: Any) -> list[dict[str, Any]]:
        seen.extend([specs, job, rounds])
        return [{"detection": {"bins": [{"bin": "8-12", "recall": 0.5}]}, "accuracy": None}]

    monkeypatch.setattr(crowd_bench, "compare", compare)
    out = tmp_path / "b.json"
    argv = ["--no-data", "--scenes", "2", "--faces", "5", "--size", "320x240", "--fps-size", "160x128",
            "--threads", "0", "--score-sweep=", "--detector", "yunet", "--out", str(out)]
    assert crowd_bench.main(argv) == 0
    assert json.loads(out.read_text())["command"] == "fsrfer-crowd-bench " + " ".join(argv)
    specs, job, rounds = seen
    assert [s.name for s in specs] == ["yunet"] and rounds == 3
    assert (job.data_dir, job.threads, job.scenes, job.faces) == (None, None, 2, 5)
    assert (job.size, job.fps_size, job.score_thresholds) == ((240, 320), (128, 160), ())
    assert "recall per size bin: 8-12px 0.5" in capsys.readouterr().out


class _Conn:
    """One end of a worker's pipe: ``requests`` to answer in order, what was sent back in ``sent``."""

    def __init__(self, requests: list[tuple[str, Any]]) -> None:
        self.requests, self.sent = list(requests), []  # type: ignore[var-annotated]

    def recv(self) -> tuple[str, Any]:
        return self.requests.pop(0)

    def send(self, msg: Any) -> None:
        self.sent.append(msg)


def test_a_detectors_worker_sweeps_its_own_score_threshold_too(monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: the detector's own min_score left out of the worker's score sweep (the comparison table reads the false
    # faces at it)
    seen: list[tuple[float, ...]] = []

    class FakeAnalyzer:
        detector = SimpleNamespace(min_score=0.55)

        def __enter__(self) -> "FakeAnalyzer":
            return self

        def __exit__(self, *exc: Any) -> None:
            return None

    def run_benchmark(analyzer: Any, pool: Any, *args: Any) -> dict[str, Any]:
        seen.append(tuple(args[-1]))
        return {"ok": True}

    monkeypatch.setattr(crowd_bench, "_leave_ctrl_c_to_the_parent", lambda: None)
    monkeypatch.setattr(crowd_bench, "_make_analyzer", lambda spec, job: FakeAnalyzer())
    monkeypatch.setattr(crowd_bench, "_pool", lambda job: None)
    monkeypatch.setattr(crowd_bench, "run_benchmark", run_benchmark)
    job = crowd_bench.Job(None, None, 1, score_thresholds=(0.7, 0.4))
    conn = _Conn([("evaluate", None), ("stop", None)])
    crowd_bench._worker(conn, crowd_bench.DetectorSpec("yunet"), job)
    assert seen == [(0.4, 0.55, 0.7)] and conn.sent == [("ok", None), ("ok", {"ok": True})]
    # no sweep asked for: none run, not even at the detector's own threshold
    seen.clear()
    crowd_bench._worker(_Conn([("evaluate", None), ("stop", None)]), crowd_bench.DetectorSpec("yunet"),
                        crowd_bench.Job(None, None, 1))
    assert seen == [()]


def _speed_round(spf: float, detect_ms: float, load: float, faces_found: int) -> dict[str, Any]:
    return {"seconds_per_frame": spf, "detect_ms": detect_ms, "recognize_ms": detect_ms / 2,
            "fps_stream_pipelined": 1 / spf, "load_average": [load, load, load], "faces_found": faces_found,
            "load_average_at_end": [load, load, load]}


def test_median_speed_takes_medians_over_rounds_and_the_last_rounds_environment() -> None:
    # kills: the first round's environment (its load average "at end") kept; means for medians
    rounds = [_speed_round(0.5, 10.0, 1.0, 7), _speed_round(0.1, 20.0, 2.0, 8), _speed_round(0.2, 90.0, 3.0, 9)]
    out = crowd_bench._median_speed(rounds)
    assert out["seconds_per_frame"] == 0.2 and out["fps"] == 5.0
    assert out["detect_ms"] == 20.0 and out["recognize_ms"] == 10.0 and out["fps_stream_pipelined"] == 5.0
    assert out["load_average_at_end"] == [3.0, 3.0, 3.0] and out["faces_found"] == 9
    assert out["rounds"] == 3 and [r["load_average"][0] for r in out["per_round"]] == [1.0, 2.0, 3.0]


def test_speedups_divide_the_baselines_detection_time_by_each_detectors_round_by_round() -> None:
    # kills: the ratio inverted (the detector's time over the baseline's)
    def rep(*ms: float) -> dict[str, Any]:
        return {"speed": {"per_round": [{"detect_ms": m} for m in ms]}}

    base, fast, slow = rep(10.0, 20.0, 40.0), rep(5.0, 5.0, 40.0), rep(20.0, 40.0, 80.0)
    assert crowd_bench._speedups([fast, base, slow, {}], 1) == [2.0, 1.0, 0.5, None]


class _FakeWorkers:
    """multiprocessing's spawn context for :func:`crowd_bench.compare`: no process; each worker answers at once and
    the speed requests are logged in ``order``."""

    def __init__(self) -> None:
        self.order: list[str] = []

    def Pipe(self) -> tuple[Any, Any]:  # noqa: N802 (multiprocessing's name)
        log = self.order

        class End:
            name = ""
            last: Any = None

            def send(self, msg: Any) -> None:
                self.last = msg
                if msg[0] == "speed":
                    log.append(self.name)

            def poll(self, timeout: float) -> bool:
                return True

            def recv(self) -> tuple[str, Any]:
                cmd = None if self.last is None else self.last[0]
                if cmd == "evaluate":
                    return "ok", {"name": self.name}
                if cmd == "speed":
                    return "ok", _speed_round(0.1, 10.0, 1.0, 1)
                return "ok", None

        end = End()
        return end, end

    def Process(self, target: Any, args: tuple[Any, ...], daemon: bool) -> Any:  # noqa: N802
        args[0].name = args[1].name
        return SimpleNamespace(start=lambda: None, join=lambda timeout=None: None, is_alive=lambda: False,
                               terminate=lambda: None, exitcode=0)


def test_compare_rotates_which_detector_is_timed_first_in_each_round(monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: every round timing the detectors in the same order
    import multiprocessing

    fake = _FakeWorkers()
    monkeypatch.setattr(multiprocessing, "get_context", lambda method: fake)
    specs = [crowd_bench.DetectorSpec(n) for n in ("yunet", "blazeface", "opencv")]
    reports = crowd_bench.compare(specs, crowd_bench.Job(None, None, 1, fps_repeats=1), rounds=3)
    assert fake.order == ["yunet", "blazeface", "opencv", "blazeface", "opencv", "yunet", "opencv", "yunet", "blazeface"]
    assert [r["name"] for r in reports] == ["yunet", "blazeface", "opencv"]
    assert all(r["speed"]["rounds"] == 3 for r in reports)


def test_crowd_bench_takes_a_min_score_of_exactly_1_and_refuses_more() -> None:
    # kills: --min-score 1 refused (the threshold range is [0, 1], as fsrfer-crowd takes it)
    parser = crowd_bench.build_parser()
    crowd_bench.check_options(parser.parse_args(["--out", "x.json", "--min-score", "1"]))
    with pytest.raises(InputError, match="--min-score 1.01"):
        crowd_bench.check_options(parser.parse_args(["--out", "x.json", "--min-score", "1.01"]))


# ==================================================================================================================
# fsrfer_edge/crowd_cli.py
# ==================================================================================================================
def _box(kind: bytes, payload: bytes) -> bytes:
    return (8 + len(payload)).to_bytes(4, "big") + kind + payload


def test_container_problem_reads_padded_riff_chunks_and_wants_an_mp4_index(tmp_path: Path) -> None:
    # kills: the pad byte after an odd-sized RIFF chunk not skipped; an MP4 without its moov box passed as whole
    avi = tmp_path / "odd.avi"
    avi.write_bytes(b"RIFF" + (3).to_bytes(4, "little") + b"AVI" + b"\0")  # 3 data bytes, 1 pad byte
    assert crowd_cli.container_problem(avi) is None
    mp4 = tmp_path / "v.mp4"
    mp4.write_bytes(_box(b"ftyp", b"isom") + _box(b"mdat", b"\0" * 16))
    assert crowd_cli.container_problem(mp4) == "it has no index (moov)"
    mp4.write_bytes(_box(b"ftyp", b"isom") + _box(b"mdat", b"\0" * 16) + _box(b"moov", b""))
    assert crowd_cli.container_problem(mp4) is None


def test_shares_text_keeps_a_share_of_exactly_half_a_percent_and_drops_smaller_ones() -> None:
    # kills: a share of exactly 0.5% left out
    text = crowd_cli.shares_text({"neutral": 0.991, "happy": 0.005, "sad": 0.004})
    assert text == "; estimated shares (corrected for face sizes): neutral 99%, happy 0%"


def test_tracking_json_writes_an_infinite_half_life_as_null() -> None:
    # kills: inf written as is (not JSON)
    got = crowd_cli.tracking_json(FaceTracker(math.inf), 2)
    assert got is not None and got["half_life"] is None and got["detect_every"] == 2
    json.dumps(got, allow_nan=False)


def test_a_legend_line_keeps_a_4_pixel_margin_on_the_right() -> None:
    # kills: items laid out up to the frame's very edge
    # two swatches of 20 px each (10 px square, 2 px gap, 8 px spacing, no text) after the 4 px left margin: 44 px
    assert len(crowd_cli.legend_lines(lambda text: 0.0, 10, 48, ("a", "b"), labels=False)) == 1
    assert [len(line) for line in crowd_cli.legend_lines(lambda text: 0.0, 10, 47, ("a", "b"), labels=False)] == [1, 1]


@pytest.mark.parametrize("detector, threads", [("opencv", None), ("yunet", 2)])
def test_fsrfer_crowd_gives_threads_to_every_detector_but_opencv(detector: str, threads: Optional[int], tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: --threads passed to OpenCV's cascade (which takes none)
    from fsrfer_edge import recognizer
    from fsrfer_edge.detection.frames import write_image

    seen: dict[str, Any] = {}

    class FakeRecognizer:
        def __init__(self, *a: Any, **kw: Any) -> None:
            seen["rec_threads"] = kw.get("threads")

        def __enter__(self) -> "FakeRecognizer":
            return self

        def __exit__(self, *exc: Any) -> None:
            return None

    def create_detector(name: str, **kw: Any) -> Any:
        seen["det"] = (name, kw.get("threads"))
        raise InputError("stop here")

    monkeypatch.setattr(recognizer, "Recognizer", FakeRecognizer)
    monkeypatch.setattr(crowd_cli, "create_detector", create_detector)
    img = tmp_path / "in.png"
    write_image(img, np.zeros((32, 32, 3), np.uint8))
    assert crowd_cli.main([str(img), "--out", str(tmp_path / "o.png"), "--detector", detector, "--threads", "2"]) == 2
    assert seen == {"rec_threads": 2, "det": (detector, threads)}


# ==================================================================================================================
# benchmarks/stage2_step.py
# ==================================================================================================================
def _s2() -> ModuleType:
    return load_script("benchmarks/stage2_step.py", "stage2_step_68i")


def test_stage2_step_alternates_the_order_and_reports_after_over_before_per_round(tmp_path: Path,
                                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: one order every round; ratio before / after; medians over the wrong side; the worktree not removed;
    # --steps/--warmup/--threads not passed on to the workers
    s2 = _s2()
    git: list[list[str]] = []
    calls: list[tuple[str, int, int, int]] = []
    after_s = iter([0.1, 0.05, 0.3])

    def run(cmd: list[str], **kw: Any) -> Any:
        git.append(cmd)
        return SimpleNamespace(returncode=0, stderr="", stdout="")

    def run_worker(src: Path, config: Path, steps: int, warmup: int, threads: int) -> dict[str, Any]:
        which = "after" if src == s2.REPO else "before"
        calls.append((which, steps, warmup, threads))
        return {"median_s": 0.2 if which == "before" else next(after_s), "steps": steps}

    monkeypatch.setattr(s2, "subprocess", SimpleNamespace(run=run))
    monkeypatch.setattr(s2, "run_worker", run_worker)
    out = tmp_path / "s2.json"
    assert s2.main(["--before", "abc123", "--rounds", "3", "--steps", "4", "--warmup", "1", "--threads", "1",
                    "--out", str(out)]) == 0
    assert [c[0] for c in calls] == ["before", "after", "after", "before", "before", "after"]
    assert {c[1:] for c in calls} == {(4, 1, 1)}
    doc = json.loads(out.read_text())
    assert doc["rounds"] == [{"before": 200.0, "after": 100.0}, {"before": 200.0, "after": 50.0},
                             {"before": 200.0, "after": 300.0}]
    assert doc["median_ms"] == {"before": 200.0, "after": 100.0}
    assert doc["ratio_after_over_before"] == {"median": 0.5, "min": 0.25, "max": 1.5}
    assert doc["before"] == "abc123" and doc["threads"] == 1 and doc["steps_per_round"] == 4
    assert git[0][-1] == "abc123" and "add" in git[0]
    before = git[0][git[0].index("--detach") + 1]
    assert git[-1][-3:] == ["remove", "--force", before]


def test_stage2_step_worker_gets_the_options_and_a_failed_worker_is_named(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: an option left out of the worker's command; the worker run outside its source tree; a failure read as
    # success
    s2 = _s2()
    seen: dict[str, Any] = {}

    def run(cmd: list[str], **kw: Any) -> Any:
        seen.update(cmd=cmd, cwd=kw.get("cwd"))
        Path(cmd[cmd.index("--out") + 1]).write_text(json.dumps({"median_s": 0.25, "steps": 3}))
        return SimpleNamespace(returncode=seen.get("rc", 0), stderr="first\nthe last line\n")

    monkeypatch.setattr(s2.subprocess, "run", run)
    src = tmp_path / "src"
    assert s2.run_worker(src, tmp_path / "c.yaml", 3, 1, 2) == {"median_s": 0.25, "steps": 3}
    cmd = seen["cmd"]
    assert seen["cwd"] == str(src)
    assert [cmd[cmd.index(f) + 1] for f in ("--worker", "--config", "--steps", "--warmup", "--threads")] == \
        [str(src), str(tmp_path / "c.yaml"), "3", "1", "2"]
    seen["rc"] = 1
    with pytest.raises(RuntimeError, match="exit 1.*the last line"):
        s2.run_worker(src, tmp_path / "c.yaml", 3, 1, 2)


# ==================================================================================================================
# benchmarks/linear_precheck.py
# ==================================================================================================================
def test_linear_precheck_alternates_the_order_times_the_model_after_only_and_divides_after_by_before(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: one order every round; the model timed in the before process; ratios before / after; the range's ends
    # swapped; the model share over the wrong side
    lp = load_script("benchmarks/linear_precheck.py", "linear_precheck_68i")
    data = tmp_path / "fer2013.npz"
    data.write_bytes(b"not read: the workers are fakes")
    calls: list[tuple[str, bool]] = []
    after = iter([1.0, 3.0, 4.0])
    model = iter([10.0, 20.0, 30.0])

    def run_worker(src: Path, args: Any, model_time: bool) -> dict[str, Any]:
        which = "after" if src == lp.REPO else "before"
        calls.append((which, model_time))
        p = 2.0 if which == "before" else next(after)
        doc: dict[str, Any] = {"prepare_ms": {"as they are": p}, "check_ms": {"as they are": p / 10}}
        if model_time:
            doc["model_ms"] = next(model)
        return doc

    monkeypatch.setattr(lp, "subprocess", SimpleNamespace(run=lambda *a, **k: SimpleNamespace(returncode=0, stderr="")))
    monkeypatch.setattr(lp, "run_worker", run_worker)
    out = tmp_path / "lp.json"
    assert lp.main(["--data", str(data), "--rounds", "3", "--out", str(out)]) == 0
    assert calls == [("before", False), ("after", True), ("after", True), ("before", False), ("before", False),
                     ("after", True)]
    doc = json.loads(out.read_text())
    row = doc["summary"]["as they are"]
    assert row["prepare_ms"] == {"before": 2.0, "after": 3.0, "after_over_before_median": 1.5,
                                 "per_round_range": [0.5, 2.0]}
    assert row["check_ms"]["after_over_before_median"] == 1.5
    assert doc["model_ms_batch_median"] == 20.0
    assert row["prepare_share_of_model_time"] == {"before": 0.1, "after": 0.15}
    assert [r["order"] for r in doc["raw_rounds"]] == [["before", "after"], ["after", "before"], ["before", "after"]]
    assert len(doc["load_1min"]) == 3


# ==================================================================================================================
# benchmarks/augment_speed.py
# ==================================================================================================================
def _fake_clock(durations: list[float]) -> SimpleNamespace:
    """perf_counter for code that reads it twice per timing: each pair is ``durations`` apart, in order."""
    ticks: list[float] = []
    now = 0.0
    for d in durations:
        ticks += [now, now + d]
        now += d + 1.0
    it = iter(ticks)
    return SimpleNamespace(perf_counter=lambda: next(it))


@pytest.mark.needs("torch")
def test_augment_speed_compares_medians_with_the_step_and_fails_only_past_max_ratio(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # kills: means for medians; the ratio over the wrong time; a ratio equal to --max-ratio failing; the training
    # step judged against itself; exit 0 when an augmentation is too slow
    aug = load_script("benchmarks/augment_speed.py", "augment_speed_68i")
    # per round: training step, augment_hr, augment_hr rotate (the order of the script's variants)
    rounds = [(10.0, 1.0, 3.0), (10.0, 1.0, 3.0), (40.0, 1.0, 3.0)]
    monkeypatch.setattr(aug, "time", _fake_clock([d for r in rounds for d in r]))
    out = tmp_path / "aug.json"
    assert aug.main(["--out", str(out), "--batch", "2", "--rounds", "3", "--backbone", "tiny", "--threads", "1",
                     "--max-ratio", "0.1"]) == 1
    doc = json.loads(out.read_text())
    t = doc["timings"]
    assert t["training step"] == {"median_ms": 10000.0, "ratio_to_step": 1.0}
    assert t["augment_hr"]["ratio_to_step"] == 0.1 and t["augment_hr rotate 15 scale 0.15"]["ratio_to_step"] == 0.3
    assert doc["passed"] is False
    assert capsys.readouterr().err.strip().endswith("a training step): augment_hr rotate 15 scale 0.15")
    # session 69: the recorded command is the one run, options included
    assert doc["command"] == (f"python benchmarks/augment_speed.py --out {out} --batch 2 --rounds 3 --backbone tiny "
                              "--threads 1 --max-ratio 0.1")


# ==================================================================================================================
# scripts/bench_backbones.py
# ==================================================================================================================
@pytest.mark.needs("torch")
@pytest.mark.needs("onnx")
# the script's TorchScript export (dynamo=False, deliberate, as fsrfer-export's) announces its own deprecation
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_bench_backbones_leaves_the_first_step_out_and_reports_each_models_own_parameters(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # kills: the first (warm-up) step in the median; the inference mean for its median; trunk and fused parameter
    # counts swapped; minutes per FER2013 epoch from another face count
    bb = load_script("scripts/bench_backbones.py", "bench_backbones_68i")
    from trainer.models import FERNet, InferenceModel

    # 6 training steps (the first a slow warm-up), then 5 timed inference batches
    monkeypatch.setattr(bb, "time", _fake_clock([100.0, 1.0, 1.0, 1.0, 2.0, 2.0] + [1.0, 1.0, 2.0, 2.0, 2.0]))
    out = tmp_path / "bb.json"
    assert bb.main(["--json", str(out), "--backbones", "tiny", "--threads", "1"]) == 0
    row = json.loads(out.read_text())["backbones"]["tiny"]
    assert row["train_faces_per_s"] == 64.0
    assert row["train_min_per_fer2013_epoch"] == round(28560 / 64 / 60, 2)
    assert row["onnx_fp32_faces_per_s_batch64"] == 32.0
    trunk = sum(p.numel() for p in FERNet("tiny").trunk.parameters())
    fused = sum(p.numel() for p in InferenceModel({"method": "fsrfer", "backbone": "tiny"}).parameters())
    assert (row["trunk_params"], row["fused_params"]) == (trunk, fused) and trunk != fused
