"""Tiny fused fsrfer ONNX models for the runtime tests (stand-in until the real exporter lands).

``make_tiny_onnx`` exports ``InferenceModel({"method": "fsrfer", "backbone": "tiny"})`` with a dynamic
batch axis (input ``faces`` (N,1,48,48), output ``logits`` (N,7)) and writes :class:`ModelInfo` under
the ONNX metadata key ``fsrfer``. With ``input_dtype="uint8"`` the graph takes raw pixels and
normalises them itself with the same :class:`Preprocessing` constants.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Optional

from fsrfer_edge.metadata import METADATA_KEY, ModelInfo
from fsrfer_edge.preprocessing import Preprocessing


def make_tiny_onnx(path: str | os.PathLike[str], input_dtype: str = "float32", seed: int = 0,
                   metadata: bool = True, info_overrides: Optional[dict[str, Any]] = None,
                   static_batch: Optional[int] = None) -> Path:
    """Export a tiny FSR-FER model to ``path``; the same ``seed`` gives the same weights.

    ``static_batch`` exports a fixed batch size instead of the dynamic batch axis. Skips the calling test where
    onnx or torch is missing (the ``jetson`` extra installs onnx without torch).
    """
    import pytest

    onnx = pytest.importorskip("onnx", reason="the tiny test models need onnx (pip install -e '.[export]')")
    torch = pytest.importorskip("torch", reason="the tiny test models are exported from torch (pip install "
                                "torch==2.13.0)")

    from trainer.models import InferenceModel

    torch.manual_seed(seed)
    pre = Preprocessing()
    model = InferenceModel({"method": "fsrfer", "backbone": "tiny"}).eval()
    # G's last layer starts at zero; give it weights so the generator is part of the computation.
    assert model.generator is not None
    with torch.no_grad():
        torch.nn.init.normal_(model.generator.proj.weight, std=0.05)
        model.fer.head.fc2.weight.mul_(20.0)  # spread the logits so labels differ between faces
        # Spread BatchNorm statistics so different faces give clearly different logits.
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    net: torch.nn.Module = model
    if input_dtype == "uint8":
        net = _RawPixels(model, pre)
        example = torch.zeros(static_batch or 2, pre.channels, pre.input_size, pre.input_size, dtype=torch.uint8)
    elif input_dtype == "float32":
        example = torch.zeros(static_batch or 2, pre.channels, pre.input_size, pre.input_size)
    else:
        raise ValueError(f"input_dtype {input_dtype!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notices
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net, (example,), str(path), input_names=["faces"], output_names=["logits"],
                          dynamic_axes=None if static_batch else {"faces": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=17, dynamo=False)
    if metadata:
        info = ModelInfo(preprocessing=pre, input_dtype=input_dtype, **(info_overrides or {}))
        proto = onnx.load(str(path))
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, info.to_json()
        onnx.save(proto, str(path))
    return path


def _RawPixels(inner: Any, pre: Preprocessing) -> Any:
    """Wrap a float model so it takes raw uint8 pixels and normalises them in the graph."""
    import torch

    class RawPixels(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner((x.float() / 255.0 - pre.mean) / pre.std)

    return RawPixels()


def edit_metadata(path: str | os.PathLike[str], edit: Any) -> Path:
    """Change the fsrfer metadata JSON of an ONNX file in place with ``edit(doc)`` (the graph is untouched)."""
    import json

    import onnx

    proto = onnx.load(str(path))
    entry = next(p for p in proto.metadata_props if p.key == METADATA_KEY)
    doc = json.loads(entry.value)
    edit(doc)
    entry.value = json.dumps(doc)
    onnx.save(proto, str(path))
    return Path(path)


def make_routed_onnx(path: str | os.PathLike[str], seed: int = 0) -> tuple[Path, Any]:
    """A routed scale-aware early-G graph (``route_hr_below``; NonZero/Gather/ScatterND inside) with a
    fitted factor estimator, and faces to feed it: ``(path, {"full": 48 px faces, "small": x4 faces})``
    as normalised float32 model inputs. Needs torch (skips the calling test without it)."""
    import numpy as np
    import pytest

    torch = pytest.importorskip("torch", reason="the routed test model is exported from torch (pip install "
                                "torch==2.13.0)")

    from trainer import checkpoint
    from trainer.degrade import DegradeConfig
    from trainer.evaluate import protocol_inputs
    from trainer.models import InferenceModel
    from trainer.synthetic import make_faces
    from trainer.train import PRE, fit_factor_estimator
    from fsrfer_edge.export.onnx_export import export_onnx

    torch.manual_seed(seed)
    spec = {"method": "fsrfer", "backbone": "resnet10_half", "feature_level": "layer3",
            "generator": {"blocks": 1, "growth": 8, "start": "stem", "scale_aware": True}}
    m = InferenceModel(spec).eval()
    m.generator.init_from(m.fer.trunk)
    with torch.no_grad():
        for p in m.generator.parameters():
            p.add_(0.05 * torch.randn_like(p))
    faces, _ = make_faces(340, seed=seed + 5)
    fit_factor_estimator(m, faces[:300], faces[300:], DegradeConfig(factors=(1, 2, 4, 8)), seed=0, n=300)
    routed = InferenceModel({**spec, "route_hr_below": 2 ** 0.5, "factor_estimator": True}).eval()
    routed.load_state_dict(m.state_dict())
    path = Path(path)
    ckpt = path.with_suffix(".pt")
    checkpoint.save(ckpt, checkpoint.model_payload(routed, routed.spec, PRE, {"name": "routed"}))
    export_onnx(ckpt, path)
    inputs = {"full": protocol_inputs(faces[300:316], 1, PRE).astype(np.float32),
              "small": protocol_inputs(faces[316:332], 4, PRE).astype(np.float32)}
    return path, inputs


def make_flat_onnx(path: str | os.PathLike[str], info: Optional[ModelInfo] = None, logits_type: int = 1) -> Path:
    """A fsrfer ONNX file without torch: Flatten and MatMul (fixed random weights) from ``info``'s input to its logits,
    a dynamic batch axis, ``info`` (default ``ModelInfo()``) as its fsrfer metadata; logits of another ONNX element type
    than FLOAT (1) through a final Cast. Skips the calling test where onnx is missing."""
    import numpy as np
    import pytest

    onnx = pytest.importorskip("onnx", reason="onnx not installed (pip install -e '.[export]')")
    from onnx import TensorProto, helper, numpy_helper

    info = ModelInfo() if info is None else info
    pre = info.preprocessing
    size = pre.channels * pre.input_size * pre.input_size
    weight = np.random.default_rng(0).normal(size=(size, len(info.classes))).astype(np.float32)
    cast = logits_type != TensorProto.FLOAT
    nodes = [helper.make_node("Flatten", [info.input_name], ["flat"], axis=1),
             helper.make_node("MatMul", ["flat", "w"], ["mm" if cast else info.output_name])]
    if cast:
        nodes.append(helper.make_node("Cast", ["mm"], [info.output_name], to=logits_type))
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info(info.input_name, TensorProto.FLOAT,
                                       ["batch", pre.channels, pre.input_size, pre.input_size])],
        [helper.make_tensor_value_info(info.output_name, logits_type, ["batch", len(info.classes)])],
        [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, info.to_json()
    onnx.save(model, str(path))
    return Path(path)
