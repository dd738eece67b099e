"""Review of the Triton repository and DeepStream writers as a library user calls them: bad options are refused with
a ConfigError that names them, before anything is written."""
from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("onnx", reason="onnx not installed (pip install -e '.[export]')")
pytest.importorskip("torch", reason="torch is needed to make the tiny test models")

from _onnx_models import make_tiny_onnx  # noqa: E402

from fsrfer_edge.errors import ConfigError  # noqa: E402
from fsrfer_edge.export.deepstream import write_deepstream  # noqa: E402
from fsrfer_edge.serving import write_triton_repo  # noqa: E402
from fsrfer_edge.serving import triton_repo  # noqa: E402


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_onnx(tmp_path_factory.mktemp("models") / "tiny.onnx")


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("preferred", [8, 8.0, object()])
def test_triton_preferred_sizes_that_are_not_a_list_are_refused(model: Path, tmp_path: Path, preferred: object) -> None:
    with pytest.raises(ConfigError, match="preferred_batch_sizes="):
        write_triton_repo(tmp_path / "repo", onnx_path=model, preferred_batch_sizes=preferred)  # type: ignore[arg-type]
    assert _entries(tmp_path) == []


def test_triton_repo_under_a_file_is_refused_before_anything_is_written(model: Path, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    for out in (tmp_path / "afile" / "repo", tmp_path / "afile"):
        with pytest.raises(ConfigError, match="afile"):
            write_triton_repo(out, onnx_path=model)
        assert _entries(tmp_path) == ["afile"]  # no staging folder was made (and so no model copied)


@pytest.mark.parametrize("option,value", [("instances", 2**40), ("max_batch", 2**31), ("max_queue_delay_us", 2**64),
                                          ("threads", 2**31)])
def test_triton_values_beyond_the_config_schema_are_refused_by_name(model: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch, option: str,
                                                                    value: int) -> None:
    # as where tritonclient is not installed: the writer's own checks must catch what Triton would refuse to load
    monkeypatch.setattr(triton_repo, "_validate_staged", lambda stage, names: None)
    with pytest.raises(ConfigError, match=f"{option}={value}; expected an integer"):
        write_triton_repo(tmp_path / "repo", onnx_path=model, **{option: value})
    assert _entries(tmp_path) == []


def test_triton_values_at_the_schema_maxima_are_written(model: Path, tmp_path: Path) -> None:
    repo = write_triton_repo(tmp_path / "repo", onnx_path=model, instances=2**31 - 1, max_batch=2**31 - 1,
                             max_queue_delay_us=2**64 - 1, threads=2**31 - 1)
    text = (repo / "fsrfer_onnx" / "config.pbtxt").read_text()
    assert f"max_queue_delay_microseconds: {2**64 - 1}" in text and f"count: {2**31 - 1}" in text


@pytest.mark.parametrize("workspace_mb", [0, -5, True, 1.5, "1024"])
@pytest.mark.parametrize("engine", [False, True])
def test_deepstream_workspace_that_is_not_a_size_is_refused_before_anything_is_written(
        model: Path, tmp_path: Path, workspace_mb: object, engine: bool) -> None:
    with pytest.raises(ConfigError, match="workspace_mb="):
        write_deepstream(tmp_path / "ds", model, engine=engine, workspace_mb=workspace_mb)  # type: ignore[arg-type]
    assert _entries(tmp_path) == []
