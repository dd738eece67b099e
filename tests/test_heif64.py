"""HEIC (a phone camera's default photo format) and AVIF photos: taken as images, not as videos ("a video input
needs a video output" was all fsrfer-crowd said of an iPhone photo); read where Pillow can (AVIF from Pillow 11.3
built with libavif; HEIC with the pillow-heif plugin where it is installed), and otherwise refused saying how."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

Image = pytest.importorskip("PIL.Image")

from fsrfer_edge.detection import frames  # noqa: E402
from fsrfer_edge.errors import InputError  # noqa: E402

#: The first bytes of an iPhone photo: an ISO-BMFF ftyp box of brand heic (the rest is not a real image).
FAKE_HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 200


@pytest.mark.parametrize("name", ["IMG_0001.HEIC", "photo.heif", "photo.avif", "no_suffix"])
def test_heif_family_files_are_images_by_suffix_or_first_bytes(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(FAKE_HEIC)
    assert frames.is_image_file(path)


def test_an_mp4_is_still_a_video(tmp_path: Path) -> None:
    path = tmp_path / "clip"
    path.write_bytes(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\x00" * 200)
    assert not frames.is_image_file(path)


def test_a_heic_photo_pillow_cannot_read_says_how(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = frames.optional_module
    monkeypatch.setattr(frames, "optional_module", lambda name: None if name == "pillow_heif" else real(name))
    path = tmp_path / "IMG_0001.HEIC"
    path.write_bytes(FAKE_HEIC)
    with pytest.raises(InputError, match=r"HEIC/HEIF/AVIF photo.*pip install pillow-heif.*JPEG"):
        frames.read_image(path)


def test_fsrfer_crowd_on_a_heic_photo_does_not_call_it_a_video(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    from fsrfer_edge import crowd_cli

    real = frames.optional_module
    monkeypatch.setattr(frames, "optional_module", lambda name: None if name == "pillow_heif" else real(name))
    path = tmp_path / "IMG_0001.HEIC"
    path.write_bytes(FAKE_HEIC)
    assert crowd_cli.main([str(path), "--out", str(tmp_path / "out.png")]) == 2
    err = capsys.readouterr().err
    assert "pillow-heif" in err and "video" not in err
    assert not (tmp_path / "out.png").exists()


def test_an_avif_photo_is_read_where_pillow_can(tmp_path: Path) -> None:
    from PIL import features

    if not features.check("avif"):
        pytest.skip("this Pillow has no AVIF support")
    rgb = np.zeros((32, 48, 3), np.uint8)
    rgb[:, :24] = 200
    path = tmp_path / "photo.avif"
    Image.fromarray(rgb).save(path, quality=100)
    got = frames.read_image(path)
    assert got.shape == (32, 48, 3) and got[:, :20].mean() > 150 and got[:, 28:].mean() < 50
