"""Export: checkpoint -> fused ONNX (FP32, FP16, INT8 Q/DQ) -> TensorRT engine, each step checked.

Importing this package needs numpy only; torch, onnx, onnxsim, onnxruntime and TensorRT are
imported by the functions that use them. The command line is ``fsrfer-export``
(:func:`fsrfer_edge.export.cli.main`).
"""
from __future__ import annotations

from .check import (
    TOLERANCES,
    ExportCheckError,
    Tolerance,
    accuracy_gate,
    accuracy_table,
    check_step,
)
from .engine import build_engine
from .onnx_export import export_onnx, load_onnx, read_model_info, simplify
from .quantize import convert_fp16, quantize_int8

__all__ = [
    "TOLERANCES",
    "ExportCheckError",
    "Tolerance",
    "accuracy_gate",
    "accuracy_table",
    "build_engine",
    "check_step",
    "convert_fp16",
    "export_onnx",
    "load_onnx",
    "quantize_int8",
    "read_model_info",
    "simplify",
]
