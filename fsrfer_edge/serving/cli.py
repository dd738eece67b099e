"""``fsrfer-serve``: serve a model with NVIDIA Triton (through PyTriton) until Ctrl-C."""
from __future__ import annotations

import argparse
import logging
import os
import stat
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from ..backends.onnxruntime_backend import MAX_THREADS
from ..crowd_cli import check_threads, threads_option  # --threads as fsrfer-crowd, fsrfer-demo and fsrfer-bench
from ..errors import CliParser, FsrferError, InputError, cli_main, cli_path
from ..fileio import check_output_path
from .server import DEFAULT_MAX_BATCH, MAX_INSTANCES, serve
from .triton_repo import DEFAULT_QUEUE_DELAY_US


def build_parser() -> argparse.ArgumentParser:
    p = CliParser(
        prog="fsrfer-serve",
        description="Serve an fsrfer model with NVIDIA Triton Inference Server (PyTriton) with dynamic batching, "
                    "over HTTP and gRPC, on loopback by default. Clients: fsrfer_edge.serving.RemoteRecognizer.")
    p.add_argument("--model", type=cli_path, metavar="PATH",
                   help="an .onnx model or TensorRT .engine/.plan (default: the shipped default model)")
    p.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--http-port", type=int, default=8000, help="HTTP port (default 8000)")
    p.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (default 8001)")
    p.add_argument("--metrics-port", type=int, default=8002, help="Prometheus metrics port (default 8002)")
    p.add_argument("--model-name", default="fsrfer", help="Triton model name (default fsrfer)")
    p.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH,
                   help=f"largest batch the dynamic batcher forms (default {DEFAULT_MAX_BATCH})")
    p.add_argument("--preferred-batch-size", type=int, nargs="+", default=None, metavar="N",
                   help="batch sizes the batcher aims for, e.g. --preferred-batch-size 16 32 (default: none)")
    p.add_argument("--max-queue-delay-us", type=int, default=DEFAULT_QUEUE_DELAY_US, metavar="US",
                   help=f"how long a request waits for others to join its batch (default {DEFAULT_QUEUE_DELAY_US})")
    p.add_argument("--instances", type=int, default=1,
                   help=f"model instances, one Recognizer each, 1 to {MAX_INSTANCES} (default 1; more than one per "
                        "CPU core does not help)")
    p.add_argument("--backend", default="auto", choices=("auto", "onnxruntime", "tensorrt"),
                   help="inference backend (default auto: TensorRT for engines, else ONNX Runtime)")
    p.add_argument("--threads", type=int, default=None,
                   help=f"ONNX Runtime intra-op threads per instance, 1 to {MAX_THREADS} (default, or 0: ONNX "
                        "Runtime's own, one per physical core)")
    p.add_argument("--workspace", type=cli_path, default=None, metavar="DIR",
                   help="PyTriton's workspace folder, which PyTriton creates and deletes (with its contents) when "
                        "the server stops, so DIR must not exist yet (default: a new folder under $PYTRITON_HOME, "
                        "~/.cache/pytriton)")
    p.add_argument("--log-verbose", type=int, default=0, help="Triton's verbose log level (default 0)")
    p.add_argument("--log-file", type=cli_path, metavar="PATH",
                   help="write tritonserver's log to PATH instead of the console (with -q: default "
                        "fsrfer-serve-HTTP_PORT.log in this user's private folder fsrfer-serve-UID of the temporary "
                        "folder; the ready line names it)")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="fsrfer's own messages: warnings only; tritonserver's log goes to a file (--log-file)")
    return p


def check_instances(instances: int) -> None:
    """Refuse an ``--instances`` outside 1..:data:`MAX_INSTANCES`, named as the flag, before anything starts
    (serve() refuses it too, as ``instances=``).

    Raises:
        InputError: naming the option and the range.
    """
    if not 1 <= instances <= MAX_INSTANCES:
        raise InputError(f"--instances={instances}; expected an integer from 1 to {MAX_INSTANCES} (one Recognizer "
                         "each; more than one per CPU core does not help)")


def quiet_log_folder() -> Path:
    """The folder of ``-q``'s default log file: ``fsrfer-serve-UID`` in the temporary folder, this user's alone.

    Not a file of a fixed name in the shared temporary folder: another user could put a symlink there, and
    tritonserver, which opens its log file itself, would truncate whatever file it points at.
    """
    uid = os.getuid() if hasattr(os, "getuid") else None
    return Path(tempfile.gettempdir()) / f"fsrfer-serve-{uid if uid is not None else 'user'}"


def _private_log_folder() -> Path:
    """:func:`quiet_log_folder`, made with mode 0700 where it does not exist, and checked to be this user's own
    folder (not a symlink, not another user's, not open to others) where it does.

    Raises:
        InputError: it is something else, or cannot be made; the message says to pass --log-file.
    """
    folder = quiet_log_folder()
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise InputError(f"-q writes tritonserver's log into {folder}, which cannot be made ({exc.strerror or exc}); "
                         "pass --log-file PATH, or set TMPDIR to a writable folder") from exc
    st = os.lstat(folder)
    problem = ("is a symlink" if stat.S_ISLNK(st.st_mode) else "is not a folder" if not stat.S_ISDIR(st.st_mode)
               else "belongs to another user" if hasattr(os, "getuid") and st.st_uid != os.getuid() else "")
    if problem:
        raise InputError(f"-q writes tritonserver's log into {folder}, this user's private folder, but that {problem} "
                         "(someone else may have put it there); expected a folder of this user's own, or none: "
                         "remove it, or pass --log-file PATH")
    if stat.S_IMODE(st.st_mode) & 0o077:  # our own folder, made open to others: closed again
        os.chmod(folder, 0o700)
    return folder


@cli_main
def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("fsrfer_edge").setLevel(logging.WARNING if args.quiet else logging.INFO)

    log_file = args.log_file
    if log_file is None and args.quiet:  # not in --workspace: PyTriton empties it on exit
        log_file = quiet_log_folder() / f"fsrfer-serve-{args.http_port}.log"

    def ready() -> None:
        print(f"serving model {args.model_name!r} ({args.model or 'default model'}): "
              f"http {args.host}:{args.http_port}, grpc {args.host}:{args.grpc_port}, "
              f"metrics http://{args.host}:{args.metrics_port}/metrics"
              + (f", tritonserver's log in {log_file}" if log_file is not None else "") + ". Ctrl-C to stop", flush=True)

    try:
        check_threads(args.threads)  # before anything starts, naming --threads; 0 is ONNX Runtime's default
        check_instances(args.instances)
        if args.log_verbose < 0:  # serve() refuses it too, as log_verbose=, not as typed here
            raise InputError(f"--log-verbose {args.log_verbose}; expected a level >= 0 (0: off)")
        if log_file is not None:
            if any(c.isspace() for c in str(log_file)):  # PyTriton splits tritonserver's command line at spaces
                if args.log_file is None:  # -q's default, in the temporary folder
                    raise InputError(f"-q writes tritonserver's log to {str(log_file)!r}, in the temporary folder "
                                     "($TMPDIR), which contains whitespace that PyTriton cannot pass to "
                                     "tritonserver; pass --log-file with a path without spaces, or set TMPDIR to a "
                                     "folder without spaces")
                raise InputError(f"--log-file {str(log_file)!r} contains whitespace, which PyTriton cannot pass to "
                                 "tritonserver; choose a path without spaces")
            if args.log_file is None:
                _private_log_folder()
            check_output_path(log_file, "--log-file")  # its folder is made once the server can start
        serve(args.model, host=args.host, http_port=args.http_port, grpc_port=args.grpc_port,
              metrics_port=args.metrics_port, model_name=args.model_name, max_batch=args.max_batch,
              preferred_batch_sizes=args.preferred_batch_size, max_queue_delay_us=args.max_queue_delay_us,
              instances=args.instances, backend=args.backend, threads=threads_option(args.threads),
              log_verbose=args.log_verbose,
              workspace=args.workspace, on_ready=ready, log_file=log_file)
    except FsrferError as exc:
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
