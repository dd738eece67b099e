"""Measure each registered backbone on this CPU: parameters, training and inference throughput.

    python scripts/bench_backbones.py --json results/backbones.json [--threads 2]

Training: SGD steps on random 48x48 gray faces, batch 64 (faces/s, and minutes per FER2013 epoch of
28,560 faces). Inference: the fused FSR-FER model (trunk + G + head) exported to ONNX and run on
ONNX Runtime CPU at batch 64. These numbers chose the default backbone (docs/DESIGN.md).
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--backbones", default="tiny,resnet10_half,resnet18_half,resnet18,resnet18_s1")
    args = ap.parse_args(argv)
    import numpy as np
    import onnxruntime as ort
    import torch

    from trainer.evaluate import write_json
    from trainer.models import FERNet, InferenceModel

    torch.set_num_threads(args.threads)
    rows = {}
    for name in args.backbones.split(","):
        torch.manual_seed(0)
        m = FERNet(name)
        opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
        x, y = torch.randn(64, 1, 48, 48), torch.randint(0, 7, (64,))
        times = []
        for i in range(6):
            t = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(m(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t)
        train_fps = 64 / float(np.median(times[1:]))
        fused = InferenceModel({"method": "fsrfer", "backbone": name}).eval()
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "m.onnx"
            torch.onnx.export(fused, (x[:2],), str(p), input_names=["faces"], output_names=["logits"],
                              dynamic_axes={"faces": {0: "n"}, "logits": {0: "n"}}, dynamo=False, opset_version=17)
            so = ort.SessionOptions()
            so.intra_op_num_threads = args.threads
            sess = ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
            xb = x.numpy()
            sess.run(None, {"faces": xb})
            t_inf = []
            for _ in range(5):
                t = time.perf_counter()
                sess.run(None, {"faces": xb})
                t_inf.append(time.perf_counter() - t)
        rows[name] = {
            "trunk_params": sum(p.numel() for p in m.trunk.parameters()),
            "fused_params": sum(p.numel() for p in fused.parameters()),
            "train_faces_per_s": round(train_fps, 1),
            "train_min_per_fer2013_epoch": round(28560 / train_fps / 60, 2),
            "onnx_fp32_faces_per_s_batch64": round(64 / float(np.median(t_inf)), 1),
        }
        print(name, rows[name], flush=True)
    write_json(args.json, {"machine": platform.processor() or platform.machine(), "threads": args.threads,
                           "torch": torch.__version__, "onnxruntime": ort.__version__, "backbones": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
