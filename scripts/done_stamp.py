"""A record that a step of a long script finished, so that its next run skips the step while nothing the step
read or wrote has changed (scripts/reproduce.sh's targets: a call that resumes the second target does not train,
evaluate and export the first one again).

    python scripts/done_stamp.py write STAMP --inputs PATTERN ... --outputs PATTERN ... [--env NAME=VALUE ...]
    python scripts/done_stamp.py check STAMP --inputs PATTERN ... [--env NAME=VALUE ...]

A PATTERN is a file, a folder (every file under it) or, where no such path exists, a glob (``**`` spans
folders; quote it in the shell), relative to the current folder or absolute. ``write`` records in STAMP (JSON,
written atomically) the SHA-256 of every file the input and output patterns match, the --env values and the
versions of the packages the results depend on (PACKAGES); each output pattern must match at least one file (an
input pattern may match none: a file appearing there later is a change). ``check`` exits 0 when STAMP was written with the same input patterns,
--env values and package versions, the input patterns match the same files with the same contents, and every
output file it records is still there with the same contents; otherwise 1, saying on stderr what differs
(nothing when there is no STAMP: the step never finished). A STAMP that cannot be read as one is a difference
too: the step runs again. 2: bad usage (an output pattern matching no file).

What a stamp cannot see: anything outside its patterns (e.g. a package not in PACKAGES). Remove STAMP to run the
step again regardless.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from importlib import metadata
from pathlib import Path
from typing import NoReturn, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fsrfer_edge.fileio import sha256_file, write_json  # noqa: E402

SCHEMA = "done-stamp/1"
#: Packages whose version a stamp records: training, export and evaluation results depend on them (Pillow encodes
#: the JPEG degradations of training and protocol (c)).
PACKAGES = ("torch", "numpy", "onnx", "onnxruntime", "onnxsim", "pillow")


def refuse(message: str) -> NoReturn:
    """Exit 2 with ``message`` on stderr (bad usage)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def matched(pattern: str) -> list[str]:
    """The files ``pattern`` names, sorted: itself, every file under a folder (bytecode caches left out), or
    the files of a glob with ``**`` spanning folders. An existing path is never read as a glob, so a folder named
    with glob characters (``runs[1]``) is itself."""
    if os.path.isfile(pattern):
        return [pattern]
    if os.path.isdir(pattern):
        return sorted(os.path.join(d, f) for d, dirs, files in os.walk(pattern)
                      for f in files if "__pycache__" not in Path(d).parts)
    return sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))


def hashes(patterns: list[str], need: bool) -> dict[str, str]:
    """SHA-256 per file matched by ``patterns``; SystemExit(2) naming a pattern that matches none where ``need``."""
    out: dict[str, str] = {}
    for pattern in patterns:
        files = matched(pattern)
        if need and not files:
            refuse(f"--outputs {pattern} matches no file; expected each output pattern to name at least one (a "
                   "step's outputs are written before its stamp)")
        for f in files:
            out[f] = sha256_file(f)
    return out


def versions() -> dict[str, Optional[str]]:
    """The installed version of each of PACKAGES (None where it is not installed)."""
    out: dict[str, Optional[str]] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def parse_env(items: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or not name:
            refuse(f"--env {item!r}; expected NAME=VALUE")
        env[name] = value
    return env


def difference(stamp: Path, inputs: list[str], env: dict[str, str]) -> Optional[str]:
    """What differs from the record in ``stamp`` (None: nothing; "" when there is no stamp)."""
    if not stamp.is_file():
        return ""
    try:
        rec = json.loads(stamp.read_text())
        if not isinstance(rec, dict) or rec.get("schema") != SCHEMA:
            raise ValueError(f"schema {rec.get('schema') if isinstance(rec, dict) else None!r}, expected {SCHEMA!r}")
        old_in, old_out = dict(rec["inputs"]["files"]), dict(rec["outputs"])
        old_patterns, old_env, old_versions = list(rec["inputs"]["patterns"]), dict(rec["env"]), dict(rec["versions"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"{stamp} is not a readable stamp ({exc})"
    if old_patterns != inputs:
        return f"the inputs named differ from those {stamp} records"
    if old_env != env:
        names = sorted(k for k in {*old_env, *env} if old_env.get(k) != env.get(k))
        return f"{', '.join(names)} differ(s) from {stamp}"
    now = versions()
    if old_versions != now:
        names = sorted(k for k in {*old_versions, *now} if old_versions.get(k) != now.get(k))
        return f"the installed {', '.join(names)} differ(s) from {stamp}"
    new_in = hashes(inputs, need=False)
    for f in sorted({*old_in, *new_in}):
        if old_in.get(f) != new_in.get(f):
            what = "is gone" if f not in new_in else "is new" if f not in old_in else "changed"
            return f"input {f} {what} since {stamp} was written"
    for f, digest in sorted(old_out.items()):
        if not os.path.isfile(f) or sha256_file(f) != digest:
            return f"output {f} {'is gone' if not os.path.isfile(f) else 'changed'} since {stamp} was written"
    return None


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=("check", "write"))
    ap.add_argument("stamp", type=Path)
    ap.add_argument("--inputs", nargs="+", required=True, metavar="PATTERN")
    ap.add_argument("--outputs", nargs="+", default=[], metavar="PATTERN")
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    args = ap.parse_args(argv)
    env = parse_env(args.env)
    if args.action == "check":
        if args.outputs:
            ap.error("--outputs is for write; check reads the outputs STAMP records")
        diff = difference(args.stamp, args.inputs, env)
        if diff is None:
            return 0
        if diff:
            print(f"{diff}: running the step again", file=sys.stderr)
        return 1
    if not args.outputs:
        ap.error("write needs --outputs")
    record = {"schema": SCHEMA, "inputs": {"patterns": args.inputs, "files": hashes(args.inputs, need=False)},
              "outputs": hashes(args.outputs, need=True), "env": env, "versions": versions()}
    write_json(args.stamp, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
