"""The Triton model repository: ONNX and TensorRT variants parse with Triton's own protobuf schema."""
from __future__ import annotations

from pathlib import Path

import pytest

pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient not installed (pip install -e '.[client]')")
pytest.importorskip("onnx", reason="onnx not installed (pip install -e '.[export]')")
pytest.importorskip("torch", reason="torch is needed to make the tiny test models")

from _onnx_models import make_tiny_onnx  # noqa: E402

from fsrfer_edge import engine_cache  # noqa: E402
from fsrfer_edge.errors import ConfigError, EngineError, ModelError  # noqa: E402
from fsrfer_edge.export import cli, read_model_info  # noqa: E402
from fsrfer_edge.fileio import atomic_write_bytes, sha256_file  # noqa: E402
from fsrfer_edge.metadata import ModelInfo  # noqa: E402
from fsrfer_edge.preprocessing import CLASSES  # noqa: E402
from fsrfer_edge.serving import parse_config, write_triton_repo  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("models")
    return {"fp32": make_tiny_onnx(d / "tiny.onnx"), "u8": make_tiny_onnx(d / "tiny_u8.onnx", input_dtype="uint8")}


def _fake_engine(d: Path, onnx_path: Path, min_batch: int = 1, opt: int = 32, max_batch: int = 128) -> Path:
    """Bytes standing in for a TensorRT plan, with the sidecar the engine builder writes (no TensorRT here)."""
    info = read_model_info(onnx_path)
    key = engine_cache.EngineKey("10.13.0.35", "9.0", info.precision, min_batch, opt, max_batch)
    path = atomic_write_bytes(d / key.filename("tiny", sha256_file(onnx_path)), b"not a real plan")
    engine_cache.write_sidecar(path, key, sha256_file(onnx_path), info)
    return path


def _info(config: object) -> ModelInfo:
    return ModelInfo.from_json(config.parameters["fsrfer"].string_value)  # type: ignore[attr-defined]


def test_onnx_variant_parses_and_matches_metadata(models: dict[str, Path], tmp_path: Path) -> None:
    repo = write_triton_repo(tmp_path / "repo", onnx_path=models["fp32"], preferred_batch_sizes=[32, 8],
                             max_queue_delay_us=500, instances=2, kind="KIND_CPU")
    assert sorted(p.name for p in repo.iterdir()) == ["fsrfer_onnx"]
    model = repo / "fsrfer_onnx"
    assert (model / "1" / "model.onnx").read_bytes() == models["fp32"].read_bytes()
    assert (model / "labels.txt").read_text().splitlines() == list(CLASSES)
    c = parse_config(model / "config.pbtxt")
    assert (c.name, c.platform, c.max_batch_size) == ("fsrfer_onnx", "onnxruntime_onnx", 64)
    assert [(i.name, pb2.DataType.Name(i.data_type), list(i.dims)) for i in c.input] == \
        [("faces", "TYPE_FP32", [1, 48, 48])]
    out = c.output[0]
    assert (out.name, pb2.DataType.Name(out.data_type), list(out.dims), out.label_filename) == \
        ("logits", "TYPE_FP32", [7], "labels.txt")
    assert list(c.dynamic_batching.preferred_batch_size) == [8, 32]
    assert c.dynamic_batching.max_queue_delay_microseconds == 500
    assert [(g.count, g.KIND_CPU == g.kind) for g in c.instance_group] == [(2, True)]
    assert _info(c) == read_model_info(models["fp32"])
    assert "intra_op_thread_count" not in c.parameters  # the backend's default unless asked
    assert not list(tmp_path.glob(".repo.staging-*"))


def test_threads_set_the_onnx_runtime_backend_parameter(models: dict[str, Path], tmp_path: Path) -> None:
    engine = _fake_engine(tmp_path, models["fp32"])
    repo = write_triton_repo(tmp_path / "repo", onnx_path=models["fp32"], engine_path=engine, instances=2,
                             kind="KIND_CPU", threads=1)
    c = parse_config(repo / "fsrfer_onnx")
    assert c.parameters["intra_op_thread_count"].string_value == "1"
    assert _info(c) == read_model_info(models["fp32"])  # the ModelInfo parameter is still there
    assert "intra_op_thread_count" not in parse_config(repo / "fsrfer_trt").parameters
    for bad in (0, True, 1.5):
        with pytest.raises(ConfigError, match="threads"):
            write_triton_repo(tmp_path / "r", onnx_path=models["fp32"], threads=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="no onnx_path"):
        write_triton_repo(tmp_path / "r", engine_path=engine, threads=1)
    assert not (tmp_path / "r").exists()


def test_uint8_input_is_type_uint8(models: dict[str, Path], tmp_path: Path) -> None:
    c = parse_config(write_triton_repo(tmp_path / "r", onnx_path=models["u8"]) / "fsrfer_onnx")
    assert pb2.DataType.Name(c.input[0].data_type) == "TYPE_UINT8"
    assert _info(c).input_dtype == "uint8"


def test_tensorrt_variant_parses(models: dict[str, Path], tmp_path: Path) -> None:
    engine = _fake_engine(tmp_path, models["fp32"])
    repo = write_triton_repo(tmp_path / "repo", onnx_path=models["fp32"], engine_path=engine, model_name="fer")
    assert sorted(p.name for p in repo.iterdir()) == ["fer_onnx", "fer_trt"]
    trt = parse_config(repo / "fer_trt")
    assert (trt.name, trt.platform, trt.max_batch_size) == ("fer_trt", "tensorrt_plan", 128)
    # No preferred size by default: Triton's batcher fills batches up to max_batch_size (a preferred size is for
    # engines with several optimisation profiles, Triton's batcher.md); one can still be given.
    assert list(trt.dynamic_batching.preferred_batch_size) == []
    again = write_triton_repo(tmp_path / "repo2", engine_path=engine, model_name="fer", preferred_batch_sizes=[32])
    assert list(parse_config(again / "fer_trt").dynamic_batching.preferred_batch_size) == [32]
    assert trt.instance_group[0].kind == trt.instance_group[0].KIND_GPU
    assert (repo / "fer_trt" / "1" / "model.plan").read_bytes() == b"not a real plan"
    assert "TensorRT 10.13.0.35" in (repo / "fer_trt" / "config.pbtxt").read_text()
    assert [i.name for i in trt.input] == ["faces"] and list(trt.output[0].dims) == [7]
    assert _info(trt) == _info(parse_config(repo / "fer_onnx"))


def test_bad_options(models: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="neither"):
        write_triton_repo(tmp_path / "r")
    with pytest.raises(ConfigError, match="kind"):
        write_triton_repo(tmp_path / "r", onnx_path=models["fp32"], kind="GPU")
    with pytest.raises(ConfigError, match="preferred batch size 65"):
        write_triton_repo(tmp_path / "r", onnx_path=models["fp32"], preferred_batch_sizes=[65])
    with pytest.raises(ConfigError, match="instances"):
        write_triton_repo(tmp_path / "r", onnx_path=models["fp32"], instances=0)
    with pytest.raises(ConfigError, match="model_name"):
        write_triton_repo(tmp_path / "r", onnx_path=models["fp32"], model_name="a b")
    with pytest.raises(ConfigError, match="--min-batch 1"):
        write_triton_repo(tmp_path / "r", engine_path=_fake_engine(tmp_path / "e1", models["fp32"], min_batch=2))
    with pytest.raises(ConfigError, match="exceeds the engine's profile maximum 16"):
        write_triton_repo(tmp_path / "r", engine_path=_fake_engine(tmp_path / "e2", models["fp32"], 1, 8, 16),
                          max_batch=32)
    assert not (tmp_path / "r").exists() and not list(tmp_path.glob(".r.staging-*"))


def test_bad_models(models: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        write_triton_repo(tmp_path / "r", onnx_path=tmp_path / "missing.onnx")
    with pytest.raises(ModelError, match="no 'fsrfer' metadata"):
        write_triton_repo(tmp_path / "r", onnx_path=make_tiny_onnx(tmp_path / "bare.onnx", metadata=False))
    with pytest.raises(ModelError, match="dynamic batch axis"):
        write_triton_repo(tmp_path / "r", onnx_path=make_tiny_onnx(tmp_path / "static.onnx", static_batch=4))
    plan = atomic_write_bytes(tmp_path / "lonely.plan", b"x")
    with pytest.raises(EngineError, match="no sidecar"):
        write_triton_repo(tmp_path / "r", engine_path=plan)
    assert not (tmp_path / "r").exists()


def test_existing_repository(models: dict[str, Path], tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "other_model" / "1").mkdir(parents=True)  # someone else's model stays
    write_triton_repo(repo, onnx_path=models["fp32"])
    before = (repo / "fsrfer_onnx" / "config.pbtxt").read_text()
    with pytest.raises(ConfigError, match="overwrite"):
        write_triton_repo(repo, onnx_path=models["u8"])
    assert (repo / "fsrfer_onnx" / "config.pbtxt").read_text() == before
    write_triton_repo(repo, onnx_path=models["u8"], overwrite=True)
    assert "TYPE_UINT8" in (repo / "fsrfer_onnx" / "config.pbtxt").read_text()
    assert sorted(p.name for p in repo.iterdir()) == ["fsrfer_onnx", "other_model"]
    assert not list(tmp_path.glob(".repo.staging-*"))


def test_parse_config_refuses_invalid_text(tmp_path: Path) -> None:
    bad = tmp_path / "config.pbtxt"
    bad.write_text('name: "x"\nmax_batch_size: "many"\n')
    with pytest.raises(ConfigError, match="not a valid Triton model configuration"):
        parse_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        parse_config(tmp_path / "nowhere")


def test_export_cli_writes_repository(models: dict[str, Path], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "triton"
    assert cli.main([str(models["fp32"]), "--triton-repo", str(repo), "--triton-kind", "KIND_CPU", "-q"]) == 0
    assert "Triton model repository" in capsys.readouterr().out
    c = parse_config(repo / "fsrfer_onnx")
    assert c.instance_group[0].kind == c.instance_group[0].KIND_CPU
    # Running it again replaces the models it wrote; by default the ONNX model's instances are KIND_AUTO (a GPU
    # where there is one, else the CPU: a KIND_GPU model is refused on CPU-only nodes).
    assert cli.main([str(models["fp32"]), "--triton-repo", str(repo), "-q"]) == 0
    assert parse_config(repo / "fsrfer_onnx").instance_group[0].kind == c.instance_group[0].KIND_AUTO
    assert cli.main([str(models["fp32"]), "--triton-repo", str(repo), "--triton-kind", "KIND_CPU",
                     "--triton-instances", "2", "--triton-threads", "1", "-q"]) == 0
    c = parse_config(repo / "fsrfer_onnx")
    assert (c.instance_group[0].count, c.parameters["intra_op_thread_count"].string_value) == (2, "1")
    capsys.readouterr()
    assert cli.main([str(models["fp32"]), "--triton-repo", str(repo), "--triton-threads", "0", "-q"]) == 2
    assert "--triton-threads 0" in capsys.readouterr().err


def test_export_cli_from_checkpoint(tmp_path: Path) -> None:
    from fsrfer_edge.preprocessing import Preprocessing
    from trainer import checkpoint
    from trainer.models import InferenceModel

    spec = {"method": "fsrfer", "backbone": "tiny"}
    ckpt = tmp_path / "tiny.pt"
    checkpoint.save(ckpt, checkpoint.model_payload(InferenceModel(spec).eval(), spec, Preprocessing(), {"note": "t"}))
    report = cli.run(cli.ExportOptions(source=ckpt, out_dir=tmp_path / "out", triton_repo=tmp_path / "repo"))
    assert report["triton_repo"] == str(tmp_path / "repo")
    onnx_copy = tmp_path / "repo" / "fsrfer_onnx" / "1" / "model.onnx"
    assert onnx_copy.read_bytes() == (tmp_path / "out" / "tiny.fp32.onnx").read_bytes()
    assert parse_config(tmp_path / "repo" / "fsrfer_onnx").name == "fsrfer_onnx"


def test_export_cli_says_an_earlier_engine_is_kept_and_checks_min_batch_first(
        models: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    repo = tmp_path / "triton"
    write_triton_repo(repo, engine_path=_fake_engine(tmp_path, models["fp32"]))  # an earlier export's engine
    with caplog.at_level(logging.WARNING, logger="fsrfer_edge.export.cli"):
        assert cli.main([str(models["fp32"]), "--triton-repo", str(repo), "-q"]) == 0
    assert (repo / "fsrfer_trt").is_dir() and any("fsrfer_trt was left as it is" in r.getMessage() for r in caplog.records)
    capsys.readouterr()
    assert cli.main([str(models["fp32"]), "--engine", "--min-batch", "2", "--triton-repo", str(tmp_path / "r2")]) == 2
    assert "--min-batch 2 with --triton-repo" in capsys.readouterr().err and not (tmp_path / "r2").exists()


def test_writing_a_repository_leaves_the_process_umask_alone(models: dict[str, Path], tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The umask was read by setting it to 0 for a moment: a file another thread of the app created then was
    world-writable. The new repository folder still gets the umask's permissions (not mkdtemp's 0700)."""
    import os

    previous = os.umask(0o027)
    try:
        set_to: list[int] = []
        real_umask = os.umask
        monkeypatch.setattr(os, "umask", lambda mask: set_to.append(mask) or real_umask(mask))
        repo = write_triton_repo(tmp_path / "repo", onnx_path=models["fp32"])
        monkeypatch.undo()
        assert set_to == [], "the process umask was changed"
        assert repo.stat().st_mode & 0o777 == 0o750
        assert (repo / "fsrfer_onnx").stat().st_mode & 0o777 == 0o750
    finally:
        os.umask(previous)
    assert not list(tmp_path.glob(".repo.staging-*"))
