"""fsrfer-edge: facial-expression recognition on low-resolution faces with FSR-FER.

Three lines::

    from fsrfer_edge import Recognizer
    rec = Recognizer("fsrfer.onnx")          # or a TensorRT .engine; None = the shipped default model
    print(rec.predict(face_crops)[0].label)  # one face or a list of faces of any sizes

``import fsrfer_edge`` needs only numpy: ONNX Runtime (pip extra ``cpu``) and TensorRT/CUDA (extra
``tensorrt``) are imported when a backend is created.
"""
from __future__ import annotations

from .backends import BackendClosedError
from .errors import (
    BackendUnavailable,
    ConfigError,
    DataError,
    EngineError,
    FsrferError,
    InputError,
    ModelError,
    WriteError,
)
from .metadata import ModelInfo
from .preprocessing import CLASSES, FACTORS, Corrections, Preprocessing
from .recognizer import Prediction, Recognizer

__version__ = "0.1.0"

__all__ = [
    "Recognizer", "Prediction", "ModelInfo", "Preprocessing", "Corrections", "CLASSES", "FACTORS", "__version__",
    "FsrferError", "InputError", "ModelError", "EngineError", "DataError", "ConfigError", "BackendUnavailable",
    "BackendClosedError", "WriteError",
]
