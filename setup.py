"""fsrfer-edge: low-resolution facial expression recognition (FSR-FER) for NVIDIA GPUs and Jetson."""
from setuptools import find_packages, setup

# torch is pinned exactly: on the project's machines `torch==2.13.0` resolves to a local CPU wheel,
# while a range admitting newer releases pulls several GB of CUDA packages.
TORCH = "torch==2.13.0"

setup(
    name="fsrfer-edge",
    version="0.1.0",
    description="Feature super-resolution facial expression recognition for low-resolution faces, "
                "with ONNX Runtime and TensorRT inference",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    # The runtime (fsrfer_edge) runs on Python 3.8, JetPack 5's Python (checked by vermin in
    # scripts/test.sh); training and export need torch, which needs a newer Python.
    python_requires=">=3.8",
    packages=find_packages(include=["fsrfer_edge", "fsrfer_edge.*", "trainer", "trainer.*"]),
    package_data={"fsrfer_edge": ["py.typed", "models/*.onnx", "models/*.pt", "models/*.md", "models/*.groups.json", "models/*.scores.json", "models/restored_checkpoints.json", "export/trt_ops/*.json"]},
    include_package_data=True,
    install_requires=["numpy>=1.22"],
    extras_require={
        "cpu": ["onnxruntime>=1.16"],
        "train": [TORCH, "pyyaml>=6", "tqdm>=4.60", "pillow>=9", "matplotlib>=3.5"],
        "export": [TORCH, "onnx>=1.14", "onnxsim>=0.4.33", "onnxruntime>=1.16", "tqdm>=4.60", "pillow>=9"],
        # TensorRT's Python bindings come from JetPack on Jetson (or NVIDIA's index on x86); this extra
        # only adds the CUDA memory layer. pycuda is the older alternative to cuda-python. cuda-python's
        # major version must match the driver's CUDA major: 13.x needs a CUDA 13 driver (R580+) and fails
        # at cudaSetDevice on CUDA 12 drivers, hence <13 here and the cuda13 extra for CUDA 13 drivers.
        "tensorrt": ["cuda-python>=12,<13"],
        "cuda13": ["cuda-python>=13,<14"],
        "pycuda": ["pycuda>=2022.1"],
        # Jetson (README, "Jetson"): engines are built on the device, which needs onnx to read the model.
        # JetPack 6 (Python 3.10, CUDA 12.2/12.6): cuda-python 12.x. JetPack 5 (Python 3.8, CUDA 11.4):
        # no cuda-python wheel installs there (cuda-bindings 11.8 has none for Python 3.8), so pycuda,
        # which builds against JetPack's own CUDA.
        "jetson": ["numpy>=1.22", "onnx>=1.14", "onnxruntime>=1.16",
                   "cuda-python>=12,<13; python_version >= '3.9'",
                   "pycuda>=2022.1; python_version < '3.9'"],
        # tensorrt-stubs is installed with --no-deps by scripts/test.sh: it depends on the `tensorrt` placeholder.
        "dev": ["pytest>=7", "mypy>=2.4", "ruff", "vermin>=1.6"],
        # fsrfer-demo: scikit-image ships the public-domain sample photograph; Pillow reads/draws images.
        "demo": ["onnxruntime>=1.16", "scikit-image>=0.19", "pillow>=9"],
        # fsrfer-crowd: OpenCV reads videos and cameras and has the fallback face detector (its Haar
        # cascades are gone from OpenCV 5, hence <5). Pillow 9.2 is the first whose ImageDraw.textbbox takes the
        # bitmap default font that Pillow < 10.1 gives (9.0 and 9.1 raise "Only supported for TrueType fonts" when
        # the annotated image is drawn; scripts/min_versions.sh).
        "crowd": ["onnxruntime>=1.16", "opencv-python-headless>=4.5,<5", "pillow>=9.2"],
        # Triton serving: the client alone, or PyTriton's bundled tritonserver (which needs numpy<2;
        # see scripts/test.sh for running the server from a numpy<2 environment beside a numpy 2 one).
        "client": ["tritonclient[http,grpc]>=2.40"],
        # The server hosts a Recognizer, so it needs ONNX Runtime too (the CPU backend; TensorRT where present).
        "serve": ["nvidia-pytriton>=0.5", "tritonclient[http,grpc]>=2.40", "onnxruntime>=1.16"],
    },
    entry_points={
        "console_scripts": [
            "fsrfer-train=trainer.cli:train_main",
            "fsrfer-eval=trainer.cli:eval_main",
            "fsrfer-export=fsrfer_edge.export.cli:main",
            "fsrfer-bench=fsrfer_edge.bench:main",
            "fsrfer-demo=fsrfer_edge.demo:main",
            "fsrfer-crowd=fsrfer_edge.crowd_cli:main",
            "fsrfer-crowd-bench=fsrfer_edge.crowd_bench:main",
            "fsrfer-serve=fsrfer_edge.serving.cli:main",
            "fsrfer-engines=fsrfer_edge.engines_cli:main",
        ]
    },
    classifiers=["Programming Language :: Python :: 3", "Topic :: Scientific/Engineering :: Image Recognition"],
)
