"""Pack ``fer2013.npz`` small enough to travel to a lent GPU machine, and unpack it there, losslessly.

The device tool copies the working tree and at most 64 MiB with it; ``fer2013.npz`` is 78 MB and zlib
hardly shrinks it. Each image is replaced by its residual from the LOCO-I median predictor (the one
JPEG-LS uses: left, up and up-left neighbours), which LZMA then packs to about 48 MB for the train and
val rows. Test rows are left out (zeros after unpacking) unless ``--with-test``: stage 2 and the val
evaluation never read them. Unpacking checks the SHA-256 of the images it rebuilds.

    python scripts/device_data.py pack ../shared/data/fer2013.npz DIR      # here
    python scripts/device_data.py unpack DIR /tmp/data/fer2013.npz         # on the device machine
"""
from __future__ import annotations

import argparse
import hashlib
import lzma
import os
import sys
from pathlib import Path

import numpy as np


def _predict(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """LOCO-I median predictor from the left (a), upper (b) and upper-left (c) pixels (int16)."""
    mx, mn = np.maximum(a, b), np.minimum(a, b)
    return np.where(c >= mx, mn, np.where(c <= mn, mx, a + b - c))


def encode(images: np.ndarray) -> np.ndarray:
    im = images.astype(np.int16)
    a, b, c = (np.zeros_like(im) for _ in range(3))
    a[:, :, 1:], b[:, 1:, :], c[:, 1:, 1:] = im[:, :, :-1], im[:, :-1, :], im[:, :-1, :-1]
    return ((im - _predict(a, b, c)) % 256).astype(np.uint8)


def decode(res: np.ndarray) -> np.ndarray:
    n, h, w = res.shape
    out = np.zeros((n, h + 1, w + 1), np.int16)  # a zero row and column stand for the missing neighbours
    r = res.astype(np.int16)
    for y in range(h):
        for x in range(w):
            p = _predict(out[:, y + 1, x], out[:, y, x + 1], out[:, y, x])
            out[:, y + 1, x + 1] = (p + r[:, y, x]) % 256
    return out[:, 1:, 1:].astype(np.uint8)


def pack(src: Path, dst: Path, with_test: bool) -> None:
    d = np.load(src)
    keep = np.ones(len(d["split"]), bool) if with_test else d["split"] != "test"
    images = np.ascontiguousarray(d["images"][keep])
    assert np.array_equal(decode(encode(images[:64])), images[:64])
    dst.mkdir(parents=True, exist_ok=True)
    tmp = dst / "images.xz.part"
    tmp.write_bytes(lzma.compress(encode(images).tobytes(), preset=9))
    meta_tmp = dst / "meta.part.npz"
    np.savez_compressed(meta_tmp, labels=d["labels"], split=d["split"], orig_row=d["orig_row"], keep=keep,
                        shape=np.array(images.shape), sha256=np.array(hashlib.sha256(images.tobytes()).hexdigest()))
    os.replace(tmp, dst / "images.xz")
    os.replace(meta_tmp, dst / "meta.npz")


def unpack(src: Path, dst: Path) -> None:
    m = np.load(src / "meta.npz")
    res = np.frombuffer(lzma.decompress((src / "images.xz").read_bytes()), np.uint8).reshape(tuple(m["shape"]))
    images = decode(res)
    if hashlib.sha256(images.tobytes()).hexdigest() != str(m["sha256"]):
        raise SystemExit(f"{src}: the unpacked images do not match the packed ones' SHA-256")
    full = np.zeros((len(m["keep"]), *images.shape[1:]), np.uint8)
    full[m["keep"]] = images
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".part.npz")
    np.savez(tmp, images=full, labels=m["labels"], split=m["split"], orig_row=m["orig_row"])
    os.replace(tmp, dst)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=["pack", "unpack"])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--with-test", action="store_true", help="pack the test rows too")
    args = ap.parse_args(argv)
    if args.action == "pack":
        pack(Path(args.src), Path(args.dst), args.with_test)
    else:
        unpack(Path(args.src), Path(args.dst))
    return 0


if __name__ == "__main__":
    sys.exit(main())
