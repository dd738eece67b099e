"""fsrfer-export, after a review: options of an output the run does not make are refused, bad calibration data is
refused before the FP32 export, calibration .npz files are closed, calibration runs in full batches with a shorter
last one, and the DeepStream folder is checked whole before anything is written into it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fsrfer_edge.errors import ConfigError, DataError, InputError
from fsrfer_edge.export import calib, cli


def _faces(n: int, side: int = 48) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, side, side)).astype(np.uint8)


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    """A checkpoint and an .onnx file that are never read, and calibration data."""
    made = {"ckpt": tmp_path / "tiny.pt", "onnx": tmp_path / "tiny.fp16.onnx", "faces": tmp_path / "faces.npz",
            "out": tmp_path / "out"}
    for key in ("ckpt", "onnx"):
        made[key].write_bytes(b"never read")
    np.savez(made["faces"], images=_faces(48))
    return made


from test_export_cli_inputs import _refused  # noqa: E402  (one fsrfer-export refusal check)


# 1. Engine, batch and Triton options without the output they are for ------------------------------------------------

@pytest.mark.parametrize("extra,needs", [
    (["--max-batch", "64"], "--engine"), (["--min-batch", "2"], "--engine"), (["--opt-batch", "8"], "--engine"),
    (["--workspace-mb", "512"], "--engine"), (["--timing-cache", "t.cache"], "--engine"),
    (["--triton-kind", "KIND_CPU"], "--triton-repo"), (["--triton-instances", "2"], "--triton-repo"),
    (["--triton-max-queue-delay-us", "100"], "--triton-repo"), (["--triton-threads", "2"], "--triton-repo"),
])
def test_output_options_without_their_output_are_refused(files: dict[str, Path], extra: list[str], needs: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """--max-batch 64 without --engine wrote ONNX files and built no engine, and said nothing of it."""
    err = _refused([str(files["ckpt"]), "--out-dir", str(files["out"]), "--fp16", *extra], capsys)
    assert f"{extra[0]} {extra[1]}" in err and needs in err, err
    assert not files["out"].exists()
    # Given with the output it is for, the option passes (here: up to the export, which is not run)
    extra_for = {"--engine": ["--engine"], "--triton-repo": ["--triton-repo", str(files["out"] / "repo")]}[needs]
    args = cli.build_parser().parse_args([str(files["ckpt"]), "--out-dir", str(files["out"]), *extra, *extra_for])
    cli._validate(cli.ExportOptions(**{k: v for k, v in vars(args).items() if k not in ("quiet", "check_trt")}))


def test_workspace_and_timing_cache_serve_the_deepstream_engine_too(files: dict[str, Path], tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from fsrfer_edge.export import deepstream

    monkeypatch.setattr(deepstream, "check_deepstream", lambda *a, **k: None)  # the .onnx file is never read
    cli._validate(cli.ExportOptions(source=files["onnx"], deepstream=tmp_path / "ds", deepstream_engine=True,
                                    workspace_mb=256, timing_cache=tmp_path / "t.cache"))
    with pytest.raises(ConfigError, match="--max-batch 64: .*pass --engine"):
        cli._validate(cli.ExportOptions(source=files["onnx"], deepstream=tmp_path / "ds", deepstream_engine=True,
                                        max_batch=64))


def test_documented_commands_keep_their_options_valid(files: dict[str, Path]) -> None:
    """README / docs/scaling.md: --max-batch and --timing-cache with --engine (and --triton-repo)."""
    cli._validate(cli.ExportOptions(source=files["onnx"], engine=True, max_batch=64, timing_cache=files["out"] / "c"))
    cli._validate(cli.ExportOptions(source=files["ckpt"], fp16=True, engine=True, max_batch=64,
                                    triton_repo=files["out"] / "repo"))


# 2. Bad --calib data is found before the export -------------------------------------------------------------------

def _no_export(monkeypatch: pytest.MonkeyPatch) -> None:
    def export(*args: Any, **kwargs: Any) -> Any:
        raise ConfigError("THE EXPORT STARTED")

    monkeypatch.setattr(cli, "_export_fp32", export)


@pytest.mark.parametrize("kind", ["float", "flat", "few", "empty_folder", "no_images"])
def test_bad_calibration_data_is_refused_before_the_export(files: dict[str, Path], tmp_path: Path, kind: str,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    _no_export(monkeypatch)
    bad = tmp_path / "bad.npz"
    if kind == "float":
        np.savez(bad, images=_faces(48).astype(np.float32))
    elif kind == "flat":
        np.savez(bad, images=np.zeros(48, np.uint8))
    elif kind == "few":
        np.savez(bad, images=_faces(3))
    elif kind == "no_images":
        np.savez(bad, faces=_faces(48))
    else:
        bad = tmp_path / "empty"
        bad.mkdir()
    err = _refused([str(files["ckpt"]), "--out-dir", str(files["out"]), "--int8", "--calib", str(bad)], capsys)
    assert "THE EXPORT STARTED" not in err and str(bad) in err
    assert {"float": "dtype float32; expected uint8", "flat": "shape (48,)", "few": "gives 3 calibration face(s)",
            "no_images": "no ['images'] array", "empty_folder": "has no image files"}[kind] in err
    assert not files["out"].exists()


def test_calibration_data_for_the_checks_alone_is_read_before_the_export(
        files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """--calib without --int8 gives the export's step checks their faces: a malformed file is refused first too."""
    _no_export(monkeypatch)
    bad = tmp_path / "bad.npz"
    np.savez(bad, images=_faces(4).astype(np.int16))
    err = _refused([str(files["ckpt"]), "--out-dir", str(files["out"]), "--fp16", "--calib", str(bad)], capsys)
    assert "dtype int16; expected uint8" in err
    # good data passes and the export starts
    err = _refused([str(files["ckpt"]), "--out-dir", str(files["out"]), "--int8", "--calib", str(files["faces"])],
                   capsys)
    assert "THE EXPORT STARTED" in err


# 3. Calibration archives are closed --------------------------------------------------------------------------------

def test_npz_archives_are_closed(files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[Any] = []
    load = np.load

    def spy(*args: Any, **kwargs: Any) -> Any:
        opened.append(load(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(np, "load", spy)
    assert len(calib.load_faces(files["faces"], size=8)) == 8
    labelled = tmp_path / "eval.npz"
    np.savez(labelled, images=_faces(8), labels=np.arange(8) % 7)
    assert len(calib.load_labelled(labelled, classes=7)[1]) == 8
    with pytest.raises(DataError, match="has no"):
        calib.load_faces(_bad_archive(tmp_path))
    assert len(opened) == 3 and all(getattr(f, "zip", None) is None for f in opened)


def _bad_archive(tmp_path: Path) -> Path:
    np.savez(tmp_path / "other.npz", faces=_faces(2))
    return tmp_path / "other.npz"


# 4. Calibration batches ------------------------------------------------------------------------------------------

def test_calibration_passes_give_full_batches_and_a_shorter_last_one() -> None:
    for n, want in ((37, [32, 5]), (64, [32, 32]), (7, [7]), (70, [32, 32, 6]), (1, [1])):
        x = np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1)
        reader = calib.CalibrationPasses(x, "input", 32)
        seen = []
        for _ in range(2):  # ONNX Runtime's strided calibration reads it pass by pass, and again after a rewind
            batches = []
            for i in range(len(reader)):
                reader.set_range(i, i + 1)
                got = [b["input"] for b in iter(reader.get_next, None)]
                assert len({len(b) for b in got}) == 1  # one size in each pass: ORT stacks a pass's batches
                batches += got
            seen.append([len(b) for b in batches])
            np.testing.assert_array_equal(np.concatenate(batches), x)
            reader.rewind()
        assert seen == [want, want]
        # Read without passes (an ONNX Runtime without CalibStridedMinMax): batches of one size, every face once
        whole = [b["input"] for b in iter(reader.get_next, None)]
        assert len({len(b) for b in whole}) == 1
        np.testing.assert_array_equal(np.concatenate(whole), x)
    with pytest.raises(InputError):
        calib.CalibrationPasses(np.zeros((0, 1, 1, 1), np.float32), "input")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed")
    pytest.importorskip("torch", reason="torch is needed to make the tiny test model")
    from _onnx_models import make_tiny_onnx

    return make_tiny_onnx(tmp_path_factory.mktemp("m") / "tiny.onnx")


@pytest.mark.parametrize("method", ["minmax", "percentile"])
def test_a_prime_number_of_faces_calibrates_in_full_batches_on_every_face(tiny: Path, tmp_path: Path, method: str,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """37 faces ran 37 batches of 1 (the largest divisor of 37 up to 32); now 32 and 5, with the ranges of one
    batch of all 37."""
    import onnxruntime as ort

    from fsrfer_edge.export import quantize
    from fsrfer_edge.export.onnx_export import read_model_info

    info = read_model_info(tiny)
    x = calib.to_model_input(calib.faces_to_pixels(list(_faces(37)), info), info)
    sizes: list[int] = []
    run = ort.InferenceSession.run

    def spy(self: Any, output_names: Any, feed: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(feed, dict) and "faces" in feed:
            sizes.append(len(feed["faces"]))
        return run(self, output_names, feed, *args, **kwargs)

    monkeypatch.setattr(ort.InferenceSession, "run", spy)
    quantize.quantize_int8(tiny, tmp_path / "b.onnx", x, "u8s8", method)
    assert sizes.count(32) >= 1 and sizes.count(5) >= 1 and 1 not in sizes and sum(sizes) % 37 == 0
    monkeypatch.setattr(ort.InferenceSession, "run", run)
    quantize.quantize_int8(tiny, tmp_path / "one.onnx", x, "u8s8", method, batch_size=37)
    from fsrfer_edge.export.onnx_export import load_onnx

    a, b = (quantize._activation_scales(load_onnx(tmp_path / f)) for f in ("b.onnx", "one.onnx"))
    assert len(a) == len(b) > 0
    if method == "minmax":  # every face's min and max: the same ranges whichever way the batches fall
        np.testing.assert_allclose(a, b, rtol=1e-6)
    else:  # histograms merged pass by pass: the same ranges within a few histogram bins
        np.testing.assert_allclose(a, b, rtol=0.01)


# 5. DeepStream folder --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("blocked", ["config_infer_fsrfer.txt", "fsrfer_labels.txt"])
def test_deepstream_targets_are_checked_before_anything_is_written(tiny: Path, tmp_path: Path, blocked: str) -> None:
    from fsrfer_edge.export.deepstream import write_deepstream

    out = tmp_path / "ds"
    (out / blocked).mkdir(parents=True)
    with pytest.raises(InputError, match=blocked):
        write_deepstream(out, tiny)
    assert sorted(p.name for p in out.iterdir()) == [blocked]  # no new fsrfer.onnx beside an old config
