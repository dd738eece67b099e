"""fsrfer-engines: list the TensorRT engines of a cache folder, and remove those that can never run again.

Examples::

    fsrfer-engines                      # the engine cache (~/.cache/fsrfer-edge/engines or $FSRFER_ENGINE_DIR)
    fsrfer-engines --dir engines/       # another folder (fsrfer-export --engine writes beside its --out-dir)
    fsrfer-engines --prune --dry-run    # what would be removed, and why
    fsrfer-engines --prune              # remove it

An engine never runs again once its ONNX file has changed (the runtime looks engines up by the file's hash),
once TensorRT is upgraded (JetPack), or when its sidecar is lost; each is tens of MB, which a Jetson's eMMC
feels after a few model updates. ``Recognizer`` removes the first kind itself after it builds a new engine for a
changed file; this command finds all of them (:func:`fsrfer_edge.engine_cache.list_engines`). Engines built for
another GPU are kept, and ONNX files are judged only from the machine that built their engines: a folder may be
shared by devices. fsrfer-export stages its files in a hidden folder of its --out-dir (where it builds engines),
which an export killed by SIGKILL leaves behind: those whose process is gone are listed and pruned too
(:func:`fsrfer_edge.engine_cache.remove_dead_staging`). While an engine build holds the folder's lock, --prune
removes no engine there and says so: run it again once the build ends. Exit status: 0, or 2 on bad input or a file
that could not be removed.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from pathlib import Path
from typing import Optional, Sequence

from . import engine_cache
from .errors import BackendUnavailable, CliParser, FsrferError, cli_main, cli_path, one_line

logger = logging.getLogger(__name__)


def installed_tensorrt_version() -> Optional[str]:
    """The installed TensorRT's version, or None when it cannot be imported here."""
    from .backends.tensorrt_backend import import_tensorrt

    try:
        return str(import_tensorrt().__version__)
    except BackendUnavailable:
        return None



def build_parser() -> argparse.ArgumentParser:
    p = CliParser(prog="fsrfer-engines",
                  description="List the TensorRT engines of a cache folder, with why each that can never run again "
                              "is stale; --prune removes those.")
    p.add_argument("--dir", type=cli_path, default=None,
                   help="the folder (default: $FSRFER_ENGINE_DIR, else ~/.cache/fsrfer-edge/engines)")
    p.add_argument("--prune", action="store_true",
                   help="remove the stale engines and their sidecars, and the staging folders of killed exports")
    p.add_argument("--dry-run", action="store_true", help="with --prune: say what would be removed, remove nothing")
    p.add_argument("--tensorrt-version", default=None, metavar="VERSION",
                   help="engines built with another TensorRT are stale (default: the installed TensorRT's version; "
                        "where TensorRT is not installed, versions are not judged)")
    p.add_argument("--missing-sources", action="store_true",
                   help="engines whose ONNX file no longer exists at the path their sidecar records are stale too "
                        "(off by default: a model may have been moved, or the engine copied in from elsewhere)")
    return p


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _folder_bytes(folder: Path) -> int:
    """The size of the files under ``folder`` (those that vanish or cannot be read while it is walked: 0)."""
    total = 0
    for parent, _, names in os.walk(folder):
        for name in names:
            try:
                total += os.lstat(os.path.join(parent, name)).st_size
            except OSError:
                pass
    return total


@cli_main
def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``fsrfer-engines``; returns the process exit code."""
    p = build_parser()
    args = p.parse_args(argv)
    if args.dry_run and not args.prune:
        p.error("--dry-run only applies with --prune")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # Engines of any other version are pruned: a typo or a short 10.3 would remove every engine of the folder.
    if args.tensorrt_version is not None and not re.fullmatch(r"\d+(\.\d+){2,}", args.tensorrt_version.strip()):
        p.error(f"--tensorrt-version {args.tensorrt_version!r}; expected TensorRT's full version, major.minor.patch "
                "at least, as python3 -c 'import tensorrt; print(tensorrt.__version__)' prints it, e.g. 10.3.0.26")
    try:
        folder = args.dir if args.dir is not None else engine_cache.default_cache_dir()
    except FsrferError as exc:  # no home folder for the default
        print(f"fsrfer-engines: error: {one_line(exc)}, or --dir DIR", file=sys.stderr)
        return 2
    if args.dir is not None and not folder.exists():  # the default cache is made on first use
        p.error(f"--dir {folder} does not exist; expected a folder of engines (the cache, or the --out-dir of "
                "fsrfer-export --engine)")
    if folder.exists() and not folder.is_dir():
        print(f"fsrfer-engines: error: {folder} is not a folder; expected an engine cache folder", file=sys.stderr)
        return 2
    version = args.tensorrt_version.strip() if args.tensorrt_version is not None else installed_tensorrt_version()
    try:
        engines = engine_cache.list_engines(folder, version, args.missing_sources)
    except (FsrferError, OSError) as exc:
        print(f"fsrfer-engines: error: {one_line(exc)}", file=sys.stderr)
        return 2
    if args.prune and args.tensorrt_version is not None and version is not None:
        # The same release written longer or shorter (10.3.0 beside engines of 10.3.0.26): a slip, not an upgrade;
        # pruning on it would remove every engine of that release.
        recorded = {e.key.tensorrt_version for e in engines if e.key is not None}
        near = sorted(r for r in recorded
                      if r != version and (r.startswith(version + ".") or version.startswith(r + ".")))
        if near and version not in recorded:
            p.error(f"--tensorrt-version {version} is not what this folder's engines record, but {', '.join(near)} "
                    "is the same release written otherwise; expected the version exactly as tensorrt.__version__ "
                    "prints it on the device (nothing was removed)")
    judged = f"TensorRT {version}" if version is not None else "TensorRT not installed: versions not judged"
    print(f"{folder}: {len(engines)} engine file(s) ({judged})")
    for e in engines:
        what = "stale: " + e.stale if e.stale else "ok"
        built = (f" TensorRT {e.key.tensorrt_version}, " + " ".join(filter(None, [f"sm{e.key.compute_capability}",
                                                                                  e.key.device]))) if e.key else ""
        print(f"  {e.path.name} ({_size(e.bytes)}){built}: {what}")
    # fsrfer-export --engine writes into this folder too: the staging folders its killed runs left (SIGKILL) go with
    # --prune; those of running exports, of other machines or without an owner are not listed.
    staging = [(p, _folder_bytes(p)) for p, _ in engine_cache.dead_staging_folders(folder)]
    for path, n in staging:
        print(f"  {path.name}/ ({_size(n)}): stale: the staging folder of an export that was killed")
    stale = [e for e in engines if e.stale]
    if not args.prune:
        if stale or staging:
            total = sum(e.bytes for e in stale) + sum(n for _, n in staging)
            print(f"{len(stale) + len(staging)} stale, {_size(total)}: fsrfer-engines --prune removes them")
        return 0
    try:
        removed, errors = engine_cache.prune(folder, version, args.missing_sources, dry_run=args.dry_run)
    except (FsrferError, OSError) as exc:
        print(f"fsrfer-engines: error: {one_line(exc)}", file=sys.stderr)
        return 2
    gone, staging_errors = engine_cache.remove_dead_staging(folder, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    print(f"{verb} {len(removed)} stale engine file(s), {_size(sum(e.bytes for e in removed))}")
    if staging or staging_errors:
        print(f"{verb} {len(gone)} staging folder(s) of killed exports")
    errors += staging_errors
    for error in errors:
        print(f"fsrfer-engines: error: could not remove {error}", file=sys.stderr)
    return 2 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
