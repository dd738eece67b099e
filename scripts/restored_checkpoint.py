"""Tie a re-stored shipped checkpoint to the graph exported from it before (fsrfer_edge/models/restored_checkpoints.json):

    python scripts/restored_checkpoint.py

The shipped checkpoint was re-stored after its graph was exported (byte planes, then their byte order: same weights,
other bytes, so another SHA-256), and the graph's metadata and the packaged score and group calibrations name the file
as it was exported. A graph exported again from the re-stored file therefore found no packaged calibration (no
``confidence``, no group shares). This exports the checkpoint again, checks that the new graph answers as the shipped
one (largest logit difference at most :data:`TOLERANCE` on seeded random inputs, and the same label for every face of
``--data``'s FER+ val split at every factor, when the data is at hand), and only then records the checkpoint's SHA-256
as holding the weights of the one the shipped graph names (``fsrfer_edge.sidecars.same_checkpoint``).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: The largest logit difference allowed between the shipped graph and one exported again (float rounding only).
TOLERANCE = 1e-4
RANDOM_FACES = 256


def logits(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([s.run(None, {s.get_inputs()[0].name: x[i:i + 256]})[0] for i in range(0, len(x), 256)])


def compare(shipped: Path, again: Path, data: Optional[Path]) -> dict[str, Any]:
    """How the two graphs' answers differ: on seeded random inputs, and on FER+ val faces at each factor."""
    from fsrfer_edge import Recognizer

    x = np.random.default_rng(0).uniform(-2.5, 2.5, (RANDOM_FACES, 1, 48, 48)).astype(np.float32)
    out: dict[str, Any] = {"random_faces": RANDOM_FACES,
                           "max_abs_logit_diff": float(np.abs(logits(shipped, x) - logits(again, x)).max())}
    if data is not None and data.is_file():
        from fsrfer_edge.ferplus import load_labelled_faces
        from trainer.evaluate import lr_crops

        faces = load_labelled_faces(data, "ferplus", "val").images
        differ = {}
        with Recognizer(shipped, confidence=None) as a, Recognizer(again, confidence=None) as b:
            for f in (1, 2, 3, 4, 6, 8):
                crops = list(lr_crops(faces, f, "bicubic"))
                la = [p.index for p in a.predict(crops)]
                lb = [p.index for p in b.predict(crops)]
                differ[str(f)] = int(sum(i != j for i, j in zip(la, lb)))
        out.update({"val_faces": len(faces), "labels_that_differ": differ})
    return out


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=str(REPO / "fsrfer_edge" / "models" / "default.pt"))
    ap.add_argument("--onnx", default=str(REPO / "fsrfer_edge" / "models" / "default.onnx"))
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "fer2013.npz"),
                    help="FER2013 archive with FER+ labels beside it (labels compared on val; skipped if missing)")
    ap.add_argument("--out", default=str(REPO / "fsrfer_edge" / "models" / "restored_checkpoints.json"))
    args = ap.parse_args(argv)
    from fsrfer_edge import Recognizer
    from fsrfer_edge.export.cli import main as export_main
    from fsrfer_edge.fileio import loads_json, sha256_file, write_json

    ckpt, onnx = Path(args.checkpoint), Path(args.onnx)
    with Recognizer(onnx, confidence=None) as rec:
        named = rec.info.checkpoint_sha256
    own = sha256_file(ckpt)
    if own == named:
        print(f"{ckpt} is the file {onnx} was exported from: nothing to record")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        if export_main([str(ckpt), "--out-dir", tmp, "--name", "again", "-q"]) != 0:
            raise SystemExit(f"error: exporting {ckpt} again failed")
        found = compare(onnx, Path(tmp) / "again.fp32.onnx", Path(args.data))
    print(found)
    same = found["max_abs_logit_diff"] <= TOLERANCE and not any(found.get("labels_that_differ", {}).values())
    if not same:
        raise SystemExit(f"error: {ckpt} does not answer as {onnx} (see above): not recorded")
    out = Path(args.out)
    doc = loads_json(out.read_text(), source=str(out)) if out.is_file() else {}
    doc[own] = {"same_weights_as": named, "checkpoint": os.path.relpath(ckpt, REPO), "graph": os.path.relpath(onnx, REPO),
                "check": found, "tolerance": TOLERANCE,
                "command": "python scripts/restored_checkpoint.py",
                "note": "the checkpoint file re-stored (same weights, other bytes) after the graph was exported from "
                        "the file same_weights_as names; a graph exported again from it answers as the shipped one"}
    write_json(out, doc)
    print(f"recorded {own[:12]}… as {named[:12]}… in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
