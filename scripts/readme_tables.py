"""Write the README's serving and crowd tables from their committed JSON files.

    python scripts/readme_tables.py            # both tables
    python scripts/readme_tables.py serving    # only one

Each table goes between ``<!-- table:NAME -->`` and ``<!-- /table -->`` in README.md and is made from
its JSON alone (results/serving/load_test.json, written by scripts/load_test.py; results/crowd/bench.json,
written by fsrfer-crowd-bench), so the README never carries a hand-typed number.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]


def serving_table(doc: dict[str, Any]) -> str:
    rows = ["| path | faces/s | p50 (ms) | p99 (ms) | lost | wrong |", "|---|---:|---:|---:|---:|---:|"]
    for key, label in (("in_process", "in-process `Recognizer`"), ("served_http", "`RemoteRecognizer`, HTTP"),
                       ("served_grpc", "`RemoteRecognizer`, gRPC")):
        r = doc[key]
        rows.append(f"| {label} | {r['throughput_faces_per_s']:.0f} | {r['latency']['p50_ms']:.0f} | "
                    f"{r['latency']['p99_ms']:.0f} | {r['lost']} | {r['wrong']} |")
    k = doc["kill_restart"]
    ip = doc["in_process"]
    return (
        f"{ip['clients']} concurrent clients x {ip['requests_per_client']} requests x {ip['faces_per_request']} "
        f"faces on loopback, {doc['machine']['cpu_count']} CPU cores shared by server and clients (load average "
        f"{doc['machine']['load_average_at_start'][0]:.1f} at the start: a training run was using the cores) "
        f"(`results/serving/load_test.json`, made by `python scripts/load_test.py`):\n\n" + "\n".join(rows) + "\n\n"
        f"Server killed under load and restarted: restart took {k['server_restart_s']:.1f} s; clients without "
        f"retries saw {k['client_errors_seen_without_retries']} `ServerUnavailable` errors and retried, clients "
        f"with `retries=` saw {k['client_errors_seen_with_builtin_retries']}; {k['requests_answered']} of "
        f"{k['requests_total']} requests answered, {k['lost']} lost, {k['wrong']} wrong.\n"
    )


def crowd_table(doc: dict[str, Any]) -> str:
    from fsrfer_edge.crowd_bench import markdown_table

    sp = doc["speed"]
    h, w = sp["frame_size"]
    return (
        f"`results/crowd/bench.json`, made by `{doc['command']}`. Smallest reliably detected face: "
        f"**{doc['detection']['smallest_reliable_px']} px**. \"End to end\" counts a missed face as wrong; "
        "\"true boxes\" crops the known boxes, with no detector.\n\n"
        + markdown_table(doc) + "\n\n"
        f"Speed on this CPU ({sp['cpu_count']} cores, shared with a training run), a {w}x{h} frame of "
        f"{sp['faces']} faces: {sp['fps']:.2f} frames/s ({sp['detect_ms']:.0f} ms detection, "
        f"{sp['recognize_ms']:.0f} ms to recognise the {sp['faces_found']} faces found in one batch); "
        f"{sp['fps_stream_pipelined']:.2f} frames/s with the pipelined stream.\n"
    )


TABLES: dict[str, tuple[str, Callable[[dict[str, Any]], str]]] = {
    "serving": ("results/serving/load_test.json", serving_table),
    "crowd": ("results/crowd/bench.json", crowd_table),
}


def update(name: str) -> None:
    src, render = TABLES[name]
    doc = json.loads((REPO / src).read_text())
    readme = REPO / "README.md"
    text = readme.read_text()
    start, end = f"<!-- table:{name} -->", "<!-- /table -->"
    pat = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pat.search(text):
        raise SystemExit(f"README.md has no block {start} ... {end}; add one where the table should go")
    block = f"{start}\n{render(doc)}{end}"
    readme.write_text(pat.sub(lambda _: block, text))
    print(f"README.md: table {name} from {src}")


def main(argv: list[str] | None = None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or list(TABLES)
    bad = [n for n in names if n not in TABLES]
    if bad:
        raise SystemExit(f"unknown table(s) {bad}; expected some of {list(TABLES)}")
    for n in names:
        update(n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
