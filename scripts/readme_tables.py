"""Write the README's and docs' tables from their committed JSON files.

    python scripts/readme_tables.py            # every table
    python scripts/readme_tables.py serving    # only one
    python scripts/readme_tables.py --check    # exit 1 if a table is not what its file renders

Each table goes between ``<!-- table:NAME -->`` and ``<!-- /table -->`` in its Markdown file and is made
from JSON alone (results/default_model/test.json, written by fsrfer-eval on the shipped model, with
results/ferplus/test.json and results/bench_cpu_fp32.json for the README's headline;
results/serving/load_test.json, written by scripts/load_test.py; results/crowd/*.json,
written by fsrfer-crowd-bench; results/targets.json, written by scripts/targets.py), so the README and
docs never carry a hand-typed number.
"""
from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional, Sequence


REPO = Path(__file__).resolve().parents[1]


def _is_shipped(model: dict[str, Any]) -> bool:
    """Whether a result file's ``model`` (``file`` and ``sha256``) is the model shipped now."""
    from fsrfer_edge.fileio import sha256_file

    path = REPO / model.get("file", "")
    return path.is_file() and sha256_file(path) == model.get("sha256")


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
        f"{doc['machine']['load_average_at_start'][0]:.1f} at the start) "
        f"(`results/serving/load_test.json`, made by `python scripts/load_test.py` on {doc['created'][:10]}"
        + ("" if _is_shipped(doc["model"]) else f" with the default model of that day, sha256 "
           f"{doc['model']['sha256'][:12]}, not today's")
        + "):\n\n" + "\n".join(rows) + "\n\n"
        f"Server killed under load and restarted: restart took {k['server_restart_s']:.1f} s; clients without "
        f"retries saw {k['client_errors_seen_without_retries']} `ServerUnavailable` errors and retried, clients "
        f"with `retries=` saw {k['client_errors_seen_with_builtin_retries']}; {k['requests_answered']} of "
        f"{k['requests_total']} requests answered, {k['lost']} lost, {k['wrong']} wrong.\n"
    )


def crowd_table(doc: dict[str, Any]) -> str:
    from fsrfer_edge.crowd_bench import comparison_summary, comparison_table, markdown_table

    cfg = doc["config"]
    text = (
        f"`results/crowd/bench.json`, made by `{doc['command']}`. Default detector: {cfg.get('detector_name')} "
        f"(score {cfg.get('detector_min_score')}, crop margin {cfg['margin']:g}, min face {cfg['min_face']:g} px). "
        f"Smallest reliably detected face: **{doc['detection']['smallest_reliable_px']} px**. \"End to end\" counts "
        "a missed face as wrong; \"true boxes\" crops the known boxes, with no detector.\n\n"
        + markdown_table(doc) + "\n"
    )
    if doc.get("comparison"):
        text += ("\nEvery detector side by side, from the same run (each at its own default; big photos: seconds "
                 "and the whole process's peak memory):\n\n" + comparison_table(doc) + "\n\n"
                 + comparison_summary(doc) + " Score sweeps per detector: `docs/crowd.md`.\n")
    return text


def crowd_compare_table(doc: dict[str, Any]) -> str:
    from fsrfer_edge.crowd_bench import comparison_summary, comparison_table

    return (f"`results/crowd/bench.json` (`{doc['command']}`):\n\n" + comparison_table(doc) + "\n\n"
            + comparison_summary(doc) + "\n")


def crowd_min_face_table(doc: dict[str, Any]) -> str:
    """fsrfer-crowd-bench --compare yunet@6,...: the default detector beside itself looking for smaller faces."""
    from fsrfer_edge.crowd_bench import comparison_table

    comp = doc["comparison"]
    load = comp["load_average_at_start"][0], comp["load_average_at_end"][0]
    cores = (comp["detectors"][0]["report"].get("speed") or {}).get("cpu_count", "?")
    return (f"`{doc['source']}` (`{doc['command']}`; the same scenes and photos as `results/crowd/bench.json`; "
            f"{comp['rounds']} interleaved timing rounds, each detector in its own process, {cores} cores, load average "
            f"{load[0]:.1f} at the start and {load[1]:.1f} at the end; `yunet@N` looks for faces from N px, on the frame "
            "enlarged 24/N times):\n\n" + comparison_table(doc) + "\n")


GROUP_NAMES = {"counts": "counted labels", "mean_probs": "mean probabilities", "adjusted_counts": "adjusted counts",
               "adjusted_probs": "adjusted mean probabilities (`shares`)"}
GROUP_PROTOCOLS = {"small": "(b)", "camera": "(c)"}


def group_estimates_table(doc: dict[str, Any]) -> str:
    """scripts/group_estimates.py: distance of each group estimate to the true shares, per scenario and face size
    (groups of 30), then the mixed-size rows for every group size."""
    rows, ests = doc["rows"], list(GROUP_NAMES)
    crops = " and ".join({"small": "(b)", "camera": "(c)"}[p] for p in doc.get("fit_protocols", ["small"]))
    fit = (f"two halves of val, each group's matrices from the other half's {crops} crops" if doc["split"] == "val"
           else f"matrices from the {crops} crops of all of FER+ val")
    head = ["scenario", "faces"] + [f"{GROUP_PROTOCOLS[p]} {GROUP_NAMES[e]}" for p in GROUP_PROTOCOLS for e in ests]
    out = [f"`{doc['source']}` (`{doc['command']}`; FER+ {doc['split']}, {doc['n_faces']} faces, {fit}; "
           f"{doc['groups_per_cell']} groups per row; mean total variation distance between the estimated and true "
           "class shares, in points of the group (lower is better); (b) bicubic small crops, (c) area + JPEG 50; "
           "mixed: each face's size drawn from the six). Groups of 30:", "",
           "| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    scenarios, sizes = ("natural", "shifted", "dominant"), [f"x{f}" for f in doc["factors"]] + ["mixed"]
    for scen in scenarios:
        for size in sizes:
            px = "mixed" if size == "mixed" else f"{round(48 / int(size[1:]))} px ({size})"
            out.append(f"| {scen} | {px} | " + " | ".join(f"{rows[p]['30'][scen][size][e]['tv']:.1f}"
                                                           for p in GROUP_PROTOCOLS for e in ests) + " |")
    out += ["", "Mixed sizes, every group size (distance, and in brackets the % of groups whose largest estimated "
            "share is a largest true share):", "",
            "| scenario | group of | " + " | ".join(f"{GROUP_PROTOCOLS[p]} {GROUP_NAMES[e]}" for p in GROUP_PROTOCOLS
                                                  for e in ests) + " |", "|---|---:|" + "---:|" * (2 * len(ests))]
    for scen in scenarios:
        for n in map(str, doc["group_sizes"]):
            out.append(f"| {scen} | {n} | " + " | ".join(
                f"{rows[p][n][scen]['mixed'][e]['tv']:.1f} ({rows[p][n][scen]['mixed'][e]['dominant']:.0f}%)"
                for p in GROUP_PROTOCOLS for e in ests) + " |")
    return "\n".join(out) + "\n"


def group_intervals_table(doc: dict[str, Any]) -> str:
    """scripts/group_estimates.py --intervals: coverage and width of the shares' nominal 90% bootstrap intervals."""
    rows, sizes = doc["rows"], [f"x{f}" for f in doc["factors"]] + ["mixed"]
    n = str(doc["group_sizes"][0])
    resampled = " (resampled within each class for every resample of a group)" if "--interval-matrices" in \
        doc["command"] else ""
    fit = "cross-fitted halves" if doc["split"] == "val" else "matrices from all of val"
    crops = " and ".join({"small": "(b)", "camera": "(c)"}[p] for p in doc.get("fit_protocols", ["small"]))
    out = [f"`{doc['source']}` (`{doc['command']}`; FER+ {doc['split']}, {doc['n_faces']} faces, {fit}, "
           f"matrices from {crops} crops{resampled}; {doc['groups_per_cell']} groups of {n} per row; coverage: % of "
           "group-class pairs "
           "whose true share lies in the interval; width: mean interval width in points; the distance of `shares` "
           "to the truth beside them):", "",
           "| scenario | faces | (b) coverage | (b) width | (b) distance | (c) coverage | (c) width | (c) distance |",
           "|---|---|---:|---:|---:|---:|---:|---:|"]
    for scen in ("natural", "shifted", "dominant"):
        for size in sizes:
            px = "mixed" if size == "mixed" else f"{round(48 / int(size[1:]))} px ({size})"
            cells = []
            for p in GROUP_PROTOCOLS:
                r = rows[p][n][scen][size]["adjusted_probs"]
                cells += [f"{r['coverage']:.1f}", f"{r['interval_width']:.1f}", f"{r['tv']:.1f}"]
            out.append(f"| {scen} | {px} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def score_reliability_table(doc: dict[str, Any]) -> str:
    """scripts/score_reliability.py: what a face's score means per size (accuracy, mean score, calibration error,
    the annotators' share of the label), then how often a label is right per score bin and size (protocol (b))."""
    rows, sizes = doc["rows"], [str(f) for f in doc["factors"]]

    def px(f: str) -> str:
        return f"{round(48 / int(f))} px (x{f})"

    out = [f"`{doc['source']}` (`{doc['command']}`; the shipped model on FER+ {doc['split']}, {doc['n']} faces, as "
           f"small crops; score = the probability of the face's label; expected calibration error over "
           f"{doc['ece_bins']} equal score bins; annotators' share: the share of the face's FER+ annotators who "
           "chose that label; all in %):", "",
           "| crops | face | accuracy | mean score | calibration error (points) | annotators' share of the label |",
           "|---|---|---:|---:|---:|---:|"]
    for p, name in GROUP_PROTOCOLS.items():
        for f in sizes:
            r = rows[p][f]
            out.append(f"| {name} | {px(f)} | {r['accuracy']:.2f} | {r['mean_score']:.2f} | {r['ece']:.2f} | "
                       f"{r['vote_share_of_label']:.2f} |")
    out += ["", "How often the label is right, by score and face size ((b) small crops; % right, and in brackets "
            "the faces in that bin):", "",
            "| score | " + " | ".join(px(f) for f in sizes) + " |", "|---|" + "---:|" * len(sizes)]
    for k, b in enumerate(rows["small"][sizes[0]]["reliability"]):
        lo, hi = b["bin"]
        cells = []
        for f in sizes:
            c = rows["small"][f]["reliability"][k]
            cells.append("-" if c["accuracy"] is None else f"{c['accuracy']:.1f} ({c['n']})")
        out.append(f"| {lo:.1f}-{hi:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


#: The crops of scripts/score_calibration.py's rows: (b), (c), and (a) crops an app resized to 48 px itself.
SCORE_CROPS = {"small": "(b)", "camera": "(c)", "resized": "(a), read as 48 px"}


def score_calibration_table(doc: dict[str, Any]) -> str:
    """scripts/score_calibration.py: the calibration error of the score and of each map per crop kind and size,
    the noise floor of the chosen map, then the rules' decisions (val) or the test means."""
    cells, sizes = doc["cells"], [str(f) for f in doc["factors"]]
    fitted = ("the other half of val (2-fold cross-fitting)" if doc["split"] == "val" else "all of FER+ val")
    out = [f"`{doc['source']}` (`{doc['command']}`; the shipped model on FER+ {doc['split']}, {doc['n']} faces; "
           f"calibration error in points over {doc['ece_bins']} equal-width bins against the majority label; maps "
           f"fitted on (b) crops of {fitted}; score: `Prediction.score`; one T: one temperature for every size; "
           "T per size: a temperature per factor; logistic: `sigmoid(a * logit(score) + b)` per factor; floor: the "
           "logistic confidences' error against outcomes drawn from themselves, 20 draws):", "",
           "| crops | face | accuracy | score | one T | T per size | logistic | floor | mean score | mean logistic |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for p, name in SCORE_CROPS.items():
        for f in sizes:
            c = cells[p][f]
            out.append(f"| {name} | {round(48 / int(f))} px (x{f}) | {c['accuracy']:.2f} | {c['score']:.2f} | "
                       f"{c['one_for_all']:.2f} | {c['per_size']:.2f} | {c['logistic']:.2f} | "
                       f"{c['floor_logistic']:.2f} | {c['mean_score']:.2f} | {c['mean_logistic']:.2f} |")
    means = doc["decisions"]["logistic"]["means"]
    out += ["", "Means over the six sizes: " + "; ".join(
        f"{SCORE_CROPS[p]} score {means[p]['score']:.2f}, one T {means[p]['one_for_all']:.2f}, T per size "
        f"{means[p]['per_size']:.2f}, logistic {means[p]['logistic']:.2f}" for p in SCORE_CROPS) + "."]
    if doc["split"] == "val":
        d1, d2 = doc["decisions"]["temperature"], doc["decisions"]["logistic"]
        out += ["", f"First rule (temperatures): at most {doc['bound']:g} at every size under (b): "
                f"{'met' if d1['per_size']['bound_at_each_factor_b'] else 'not met'}; chosen: "
                f"{d1['chosen'] or 'nothing'}. Second rule (logistic): at most {doc['bound']:g} at every size "
                f"under (b): {'met' if d2['logistic']['bound_at_each_factor_b'] else 'not met'}, at most the "
                f"score's at every size: {'met' if d2['logistic']['at_most_score_at_each_factor_b'] else 'not met'}, "
                f"lead over one T on the (b) mean {d2['logistic']['lead_over_one_for_all_b']:.2f} (at least "
                f"{doc['lead']:g}), (c) mean under the score's: "
                f"{'met' if d2['logistic']['camera_mean_below_score'] else 'not met'}; chosen: "
                f"{d2['chosen'] or 'nothing'}."]
    return "\n".join(out) + "\n"


def score_calibration_selective_table(doc: dict[str, Any]) -> str:
    """scripts/score_calibration.py's selective rows: per threshold and size, the faces an app keeps when it drops
    those under the threshold, by confidence and by score, and how often the kept ones' labels are right."""
    sizes = [str(f) for f in doc["factors"]]

    def pair(r: dict[str, Any]) -> str:
        return "-" if r["accuracy"] is None else f"{r['kept']:.1f} ({r['accuracy']:.1f})"

    out = [f"`{doc['source']}` (`{doc['command']}`; FER+ {doc['split']}, {doc['n']} faces, confidences cross-fitted as "
           "above; % of faces kept at or above the threshold, and in brackets % of those right):", "",
           "| crops | kept by | threshold | " + " | ".join(f"{round(48 / int(f))} px (x{f})" for f in sizes) + " |",
           "|---|---|---:|" + "---:|" * len(sizes)]
    for p, name in GROUP_PROTOCOLS.items():
        for by in ("confidence", "score"):
            for t in (str(v) for v in doc["thresholds"]):
                out.append(f"| {name} | {by} | {t} | "
                           + " | ".join(pair(doc["selective"][p][f][t][by]) for f in sizes) + " |")
    return "\n".join(out) + "\n"


def score_calibration_jpeg_table(doc: dict[str, Any]) -> str:
    """scripts/score_calibration.py --jpeg: the calibration error with the (b) maps alone and with maps of their own
    for crops the SDK marks as JPEG images, per crop kind and size, and the rule's verdict."""
    sizes = [str(f) for f in doc["factors"]]
    fitted = ("the other half of val (2-fold cross-fitting)" if doc["split"] == "val" else "all of FER+ val")
    out = [f"`{doc['source']}` (`{doc['command']}`; the shipped model on FER+ {doc['split']}, {doc['n']} faces; maps "
           f"fitted on {fitted}; calibration error in points over {doc['ece_bins']} bins; marked: % of the crops the "
           "SDK marks as JPEG images):", "",
           "| crops | face | marked | accuracy | (b) maps alone | with JPEG maps | mean confidence, alone | "
           "mean confidence, with JPEG maps |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for p, name in GROUP_PROTOCOLS.items():
        for f in sizes:
            c = doc["cells"][p][f]
            out.append(f"| {name} | {round(48 / int(f))} px (x{f}) | {c['marked']:.1f} | {c['accuracy']:.2f} | "
                       f"{c['base']:.2f} | {c['jpeg']:.2f} | {c['mean_base']:.2f} | {c['mean_jpeg']:.2f} |")
    out += ["", f"Rule: (c) mean error falls by {doc['camera_mean_fall']:.2f} (at least {doc['gain']:g}), the largest "
            f"rise at a factor {doc['camera_worst_rise']:.2f} (at most {doc['rise']:g}), (b) largest change "
            f"{doc['clean_largest_change']:.2f} (at most {doc['clean']:g}): "
            f"{'met' if doc['adopted'] else 'not met'}."]
    return "\n".join(out) + "\n"


def jpeg_qualities_table(doc: dict[str, Any]) -> str:
    """scripts/jpeg_quality_calibration.py: per JPEG quality, the calibration error averaged over the sizes with the
    (b) maps alone, the quality-50 JPEG maps and maps chosen by the quality read, how many crops are marked, and the
    rule's verdict."""
    sizes = [str(f) for f in doc["factors"]]
    fitted = ("the other half of val (2-fold cross-fitting)" if doc["split"] == "val" else "all of FER+ val")
    out = [f"`{doc['source']}` (`{doc['command']}`; the shipped model on FER+ {doc['split']}, {doc['n']} faces; crops "
           f"area-shrunk and saved as JPEG at each quality; maps fitted on {fitted}; calibration error in points over "
           f"{doc['ece_bins']} bins: the mean over the six sizes, and in brackets the largest at one size; marked: "
           "% of the crops of 12-48 px the SDK marks as JPEG images (6 and 8 px: none to two in three), and in "
           "brackets the least % of those whose quality it reads as their own; maps by the quality read fitted at qualities "
           + ", ".join(str(q) for q in doc["fitted"]) + "):", "",
           "| quality | marked (read right) | (b) maps alone | quality-50 JPEG maps (shipped) "
           "| maps by the quality read |",
           "|---:|---|---:|---:|---:|"]
    for q in (str(q) for q in doc["qualities"]):
        cells = [doc["cells"][q][f] for f in sizes]
        big = [c for f, c in zip(sizes, cells) if int(f) <= 4]
        read = [c["read_own"] for c in big if c["read_own"] is not None]
        shown = f"{statistics.mean(c['marked'] for c in big):.1f}" + (f" ({min(read):.1f})" if read else "")
        errors = (f"{doc['means'][q][m]:.2f} ({max(c[m] for c in cells):.2f})" for m in ("base", "q50", "per_quality"))
        out.append(f"| {q} | {shown} | " + " | ".join(errors) + " |")
    o = doc["overall"]
    out += ["", f"Mean over the qualities: (b) maps alone {o['base']:.2f}, quality-50 maps {o['q50']:.2f}, maps by the "
            f"quality read {o['per_quality']:.2f}. Rule: the mean falls by {doc['mean_fall']:.2f} (at least "
            f"{doc['gain']:g}), the largest rise of a quality's mean {doc['worst_quality_rise']:.2f} (at most "
            f"{doc['rise']:g}), the largest rise at quality 50 {doc['worst_rise_at_50']:.2f} (at most "
            f"{doc['rise_at_50']:g}): {'met' if doc['adopted'] else 'not met'}."]
    return "\n".join(out) + "\n"


def jpeg_frames_table(doc: dict[str, Any]) -> str:
    """scripts/jpeg_frame_calibration.py: per quality and size, the calibration error of faces cut from JPEG frames
    as the SDK gave them before (each crop marked by itself) and with their frame's mark, and the rule's verdict."""
    fitted = ("the other half of val (2-fold cross-fitting)" if doc["split"] == "val" else "all of FER+ val")
    out = [f"`{doc['source']}` (`{doc['command']}`; the shipped model on FER+ {doc['split']}, {doc['n']} faces; each "
           f"face area-shrunk, set into a frame of its mirrored surroundings ({doc['border']} px, then 0-7 px down "
           f"and right), the frame saved as JPEG and the face cut back out; maps fitted on {fitted}; calibration "
           f"error in points over {doc['ece_bins']} bins; marked: % of frames `jpeg_frame_quality` reads, and in "
           "brackets % of crops the SDK marks by themselves):", "",
           "| quality | face | marked | accuracy | each crop by itself | with the frame's mark | mean confidence, "
           "by itself | mean confidence, frame's mark |", "|---:|---|---|---:|---:|---:|---:|---:|"]
    for q in (str(q) for q in doc["qualities"]):
        for f in (str(f) for f in doc["factors"]):
            c = doc["cells"][q][f]
            out.append(f"| {q} | {round(48 / int(f))} px (x{f}) | {c['frames_marked']:.1f} ({c['crops_marked']:.1f}) "
                       f"| {c['accuracy']:.2f} | {c['today']:.2f} | {c['frame']:.2f} | {c['mean_today']:.2f} | "
                       f"{c['mean_frame']:.2f} |")
    m = doc["means"]
    out += ["", f"Mean over the sizes: quality 50 {m['50']['today']:.2f} by itself, {m['50']['frame']:.2f} with the "
            f"frame's mark; quality 75 {m['75']['today']:.2f} and {m['75']['frame']:.2f}. Rule: at quality 50 the mean "
            f"falls by {doc['mean_fall_at_50']:.2f} (at least {doc['gain']:g}) and a size rises by at most "
            f"{doc['worst_rise_at_50']:.2f} (at most {doc['rise']:g}); at 75 the mean rises by "
            f"{doc['mean_rise_at_75']:.2f} (at most {doc['rise_at_75']:g}): {'met' if doc['adopted'] else 'not met'}."]
    return "\n".join(out) + "\n"


def enlarged_confidence_table(doc: dict[str, Any]) -> str:
    """scripts/enlarged_confidence.py: per crop kind and size, the calibration error with x1's map (today) and with the
    map at the SDK's estimated factor (for every crop read at the input size, or the unmarked ones only)."""
    fitted = ("the other half of val (2-fold cross-fitting)" if doc["split"] == "val" else "all of FER+ val")
    out = [f"`{doc['source']}` (`{doc['command']}`; the shipped model on FER+ {doc['split']}, {doc['n']} faces; maps "
           f"and the size estimate fitted on {fitted}; calibration error in points over {doc['ece_bins']} bins; "
           "(a): crops shrunk by the factor and enlarged back to 48 px by bicubic, as an app gives them; (c): 48 px "
           "crops saved as JPEG at quality 50; estimate: the geometric mean of the factors read):", "",
           "| crops | face | accuracy | estimate | x1's map | map at the estimate | the same, unmarked crops only |",
           "|---|---|---:|---:|---:|---:|---:|"]
    for p, name in (("a", "(a) enlarged"), ("c", "(c) JPEG")):
        for f, c in doc["cells"][p].items():
            out.append(f"| {name} | {round(48 / int(f))} px (x{f}) | {c['accuracy']:.2f} | {c['mean_estimate']:.2f} | "
                       f"{c['today']:.2f} | {c['estimate']:.2f} | {c['estimate_unmarked']:.2f} |")
    out.append("")
    for m, name in (("estimate", "every crop read at the input size"), ("estimate_unmarked", "unmarked crops only")):
        d = doc["decisions"][m]
        out.append(f"Rule, {name}: the (a) mean over x2..x8 falls by {d['mean_fall_x2_x8']:.2f} (at least "
                   f"{doc['gain']:g}), 48 px faces' error rises by {d['rise_48px']:.2f} and 48 px JPEG crops' by "
                   f"{d['rise_48px_jpeg']:.2f} (each at most {doc['rise']:g}): {'met' if d['met'] else 'not met'}.")
    return "\n".join(out) + "\n"


def enlarging_kernels_table(doc: dict[str, Any]) -> str:
    """scripts/enlarging_kernels.py: per way an app enlarges its crops, the calibration error over x2..x8 with x1's
    map, the shipped size estimate, the candidate fitted on every way and the same without the row's way."""
    fitted = ("the other half of val (2-fold cross-fitting)" if doc["split"] == "val" else "all of FER+ val")
    small = [str(f) for f in doc["factors"] if f > 1]
    out = [f"`{doc['source']}` (`{doc['command']}`; the shipped model on FER+ {doc['split']}, {doc['n']} faces; each "
           "face area-shrunk to 48/f px and enlarged back to 48 px by the app as named ((a): shrunk and enlarged "
           f"by the SDK's bicubic); maps and estimates fitted on {fitted}; calibration error in points over {doc['ece_bins']} "
           "bins, the mean over x2..x8; read at 48 px: % of crops the corrections did not reduce; estimate: the "
           "shipped estimate's geometric mean factor at x2/x3/x4/x6/x8):", "",
           "| crops | read at 48 px | estimate | x1's map | shipped estimate | fitted on every way | every way but "
           "this one | worst size, shipped |", "|---|---:|---|---:|---:|---:|---:|---|"]
    for way in ["a"] + list(doc["ways"]):
        cells = doc["cells"][way]

        def mean(key: str) -> float:
            return sum(cells[f][key] for f in small) / len(small)

        worst = max(small, key=lambda f: cells[f]["shipped"])
        name = "(a) SDK bicubic" if way == "a" else f"`{way}`"
        out.append(f"| {name} | {mean('read_at_input'):.1f} | "
                   + "/".join(f"{cells[f]['estimate_shipped']:.2f}" for f in small)
                   + f" | {mean('today'):.2f} | {mean('shipped'):.2f} | {mean('mixed'):.2f} | "
                   + ("" if way == "a" else f"{mean('held_out'):.2f}")
                   + f" | {cells[worst]['shipped']:.2f} at x{worst} |")
    d = doc["decision"]
    out += ["", f"48 px faces: {doc['cells']['a']['1']['shipped']:.2f} shipped, {doc['cells']['a']['1']['mixed']:.2f} "
            f"fitted on every way; 48 px JPEG crops: {doc['cells']['c']['1']['shipped']:.2f} and "
            f"{doc['cells']['c']['1']['mixed']:.2f}. Rule: the ways' mean falls by {d['ways_mean_fall']:.2f} (at least "
            f"{doc['gain']:g}); the (a) mean rises by {d['a_rise_x2_x8']:.2f}, 48 px faces by {d['rise_48px']:.2f} and "
            f"48 px JPEG crops by {d['rise_48px_jpeg']:.2f} (each at most {doc['rise']:g}): "
            f"{'met' if d['met'] else 'not met'}."]
    return "\n".join(out) + "\n"


def track_maps_table(doc: dict[str, Any]) -> str:
    """scripts/track_maps.py: per regime and row, one frame's map error and, after k frames, the candidate's and the
    map-on-the-mean's errors (means over the sizes), the candidate's worst size against one frame, and the verdict."""
    fitted = ("the other half of val (2-fold cross-fitting)" if doc["split"] == "val" else "all of FER+ val")
    if doc.get("per_mark"):
        fitted += ", per size and the current frame's JPEG mark"
    if doc.get("clip_seed"):
        fitted += f" (clips of seed 0); the cells on clips drawn afresh (seed {doc['clip_seed']})"
    ks = [str(k) for k in doc["fit_counts"]]
    out = [f"`{doc['source']}` (`{doc['command']}`; the shipped model and its maps on FER+ {doc['split']}, {doc['n']} "
           f"faces; tracks of {doc['frames']} frames at half-life {doc['half_life']:g}; (c, d) fitted on "
           f"{', '.join(doc['fit_regimes'])} tracks of {fitted}; calibration error in points over {doc['ece_bins']} "
           "bins, the mean over the six sizes; one frame: the map's error over every frame of the row; at k frames: "
           "the candidate / the map on the track mean's score / the current frame's own confidence on the same "
           "faces (the second rule's reference); worst: the candidate's largest excess over one frame's error at "
           "one size):", "",
           "| regime | clips | one frame | " + " | ".join(f"k={k}: candidate / map on mean / frame" for k in ks)
           + " | worst |", "|---|---|---:|" + "---|" * len(ks) + "---:|"]
    for regime in doc["regimes"]:
        for row, by_factor in doc["cells"][regime].items():
            cells = list(by_factor.values())

            def mean(key: str, k: Optional[str] = None) -> float:
                return sum((c[k][key] if k else c[key]) for c in cells) / len(cells)

            worst = max(c[k]["candidate"] - c["one_frame_map"] for c in cells for k in ks)
            out.append(f"| {regime.replace('_', '-')} | {row} | {mean('one_frame_map'):.2f} | "
                       + " | ".join(f"{mean('candidate', k):.2f} / {mean('map_on_mean', k):.2f} / "
                                    f"{mean('frame_map', k):.2f}" for k in ks)
                       + f" | {worst:+.2f} |")
    same = doc["same_faces"]
    out += ["", f"First rule: the candidate's mean over sizes at most one frame's plus {doc['mean_slack']:g} (worst: "
            f"{doc['worst_mean_over_one_frame']:+.2f}) and each size at most its one frame's plus {doc['size_slack']:g} "
            f"(worst: {doc['worst_size_over_one_frame']:+.2f}), in every regime, row and k: "
            f"{'met' if doc['adopted'] else 'not met'}. Second rule, against the same faces' frames: worst mean "
            f"{same['worst_mean_over_one_frame']:+.2f}, worst size {same['worst_size_over_one_frame']:+.2f}: "
            f"{'met' if same['adopted'] else 'not met'}."]
    return "\n".join(out) + "\n"


def score_calibration_variants_table(doc: dict[str, Any]) -> str:
    """scripts/score_calibration.py --variants: the packaged maps' calibration error per file and size."""
    files = doc["files"]
    sizes = list(next(iter(files.values()))["cells"])
    out = [f"`{doc['source']}` (`{doc['command']}`; the maps of `{doc['calibration']['path']}` on FER+ {doc['split']} "
           f"(b) crops, {doc['n']} faces, in-sample; calibration error in points over {doc['ece_bins']} bins, "
           "accuracy in % in brackets):", "",
           "| file | " + " | ".join(f"{round(48 / int(f))} px (x{f})" for f in sizes) + " | keeps the maps |",
           "|---|" + "---:|" * len(sizes) + "---|"]
    for name, d in files.items():
        keeps = "reference" if name == doc["reference"] else ("yes" if d["keeps_the_maps"] else "no")
        out.append(f"| `{name}` | " + " | ".join(f"{d['cells'][f]['map']:.2f} ({d['cells'][f]['accuracy']:.2f})"
                                                 for f in sizes) + f" | {keeps} |")
    out += ["", f"Rule: a file keeps the maps at most {doc['slack']:g} point over the reference's error at every size."]
    return "\n".join(out) + "\n"


def track_confidence_table(doc: dict[str, Any]) -> str:
    """scripts/track_confidence.py: per row and size, one frame's map error, then per frame count the track mean's
    accuracy, its score's error and the map's error on it, and the rule's verdict."""
    counts = [str(k) for k in doc["counts"]]
    out = [f"`{doc['source']}` (`{doc['command']}`; the shipped model and `default.scores.json` on FER+ "
           f"{doc['split']}, {doc['n']} faces; clips of {doc['frames']} frames as in `scripts/temporal_views.py`; the "
           f"track's mean at half-life {doc['half_life']:g} after k frames; accuracy in %, calibration errors in "
           f"points over {doc['ece_bins']} bins; map: the per-size map on the mean's score):", "",
           "| clips | face | one frame, map | " + " | ".join(
               f"k={k}: accuracy / score / map / mean map" for k in counts) + " |",
           "|---|---|---:|" + "---|" * len(counts)]
    for row in ("clean", "camera"):
        for f, c in doc["cells"][row].items():
            parts = [f"{c[k]['accuracy']:.2f} / {c[k]['score']:.2f} / {c[k]['map']:.2f} / {c[k]['mean_map']:.2f}"
                     for k in counts]
            out.append(f"| {row} | {round(48 / int(f))} px (x{f}) | {c['one_frame_map']:.2f} | " + " | ".join(parts)
                       + " |")
    out += ["", f"Rule: on clean clips the map on the mean within one frame's map error + {doc['slack']:g} at every "
            f"size and k >= 2: {'met' if doc['clean_within_one_frame_plus_slack'] else 'not met'}; at most the "
            f"mean's score's error: {'met' if doc['clean_at_most_score'] else 'not met'}; camera clips after "
            f"{counts[-1]} frames, mean over sizes: map {doc['camera_mean_map_at_last']:.2f} against score "
            f"{doc['camera_mean_score_at_last']:.2f}; adopted: {'yes' if doc['adopted'] else 'no'}."]
    return "\n".join(out) + "\n"


#: Scene seeds 1 and 2 of the default detector's margin sweep, beside results/crowd/bench.json's seed 0.
CROWD_MARGIN_SEEDS = ("results/crowd/margin_seed1.json", "results/crowd/margin_seed2.json")


def crowd_margin_seeds_table(doc: dict[str, Any]) -> str:
    """The default detector's crop-margin sweep on three scene seeds (end-to-end accuracy) and its mean."""
    docs = [doc] + [json.loads((REPO / f).read_text()) for f in CROWD_MARGIN_SEEDS]
    margins = sorted(doc["margin_sweep"], key=float)
    lines = ["End-to-end accuracy of " + doc["config"]["detector_name"] + " at each crop margin, one scene seed per "
             "row (each seed 20 scenes of 50 FER2013 test faces): seed 0 from `results/crowd/bench.json`, seeds 1 "
             "and 2 from `" + "`, `".join(CROWD_MARGIN_SEEDS) + "` (`" + docs[1]["command"] + "`, and `--seed 2`):\n",
             "| scene seed | " + " | ".join(f"margin {m}" for m in margins) + " |",
             "|---|" + "---:|" * len(margins)]
    for d in docs:
        lines.append(f"| {d['config']['seed']} | " + " | ".join(f"{100 * d['margin_sweep'][m]['accuracy']:.1f}%"
                                                              for m in margins) + " |")
    means = {m: sum(100 * d["margin_sweep"][m]["accuracy"] for d in docs) / len(docs) for m in margins}
    lines.append("| **mean** | " + " | ".join(f"{means[m]:.1f}%" for m in margins) + " |")
    best, shipped = max(margins, key=lambda m: means[m]), f"{doc['config']['margin']:g}"
    lines += ["", f"Best on the mean: margin {best} ({means[best]:.1f}%); the shipped margin {shipped}: "
              f"{means[shipped]:.1f}%."]
    return "\n".join(lines) + "\n"


def crowd_scores_table(doc: dict[str, Any]) -> str:
    from fsrfer_edge.crowd_bench import sweep_table

    photos = (doc.get("score_sweep") or {}).get("photos", [])
    return (f"`results/crowd/bench.json` (`score_sweep` of each detector, run again at each threshold; accuracy "
            f"and recall on the synthetic scenes, real photos: {', '.join(f'`{p}`' for p in photos)}):\n\n"
            + sweep_table(doc) + "\n")


def _load(speed: dict[str, Any]) -> str:
    la = speed.get("load_average_at_end")
    return f", load average {la[0]:.1f} at the end" if la else ""


def crowd_bins_table(doc: dict[str, Any]) -> str:
    from fsrfer_edge.crowd_bench import markdown_table

    bins = doc["detection"]["bins"]
    recall = ", ".join(f"{100 * b['recall']:.0f}% at {b['bin']} px" for b in bins if b["hi"] <= 16)
    text = (f"`results/crowd/bench.json` (`{doc['command']}`), detector {doc['config'].get('detector_name')}, "
            f"expression model sha256 `{str(doc['config'].get('model_sha256'))[:12]}`:\n\n" + markdown_table(doc) + "\n\n"
            f"**Smallest reliably detected face: {doc['detection']['smallest_reliable_px']} px** (recall of at "
            f"least {100 * doc['config']['reliable_recall']:.0f}% in that bin and every larger one). Below it: "
            f"{recall}.\n")
    for r in (doc.get("comparison") or {}).get("detectors", [{"label": "", "report": doc}]):
        sweep = r["report"].get("margin_sweep")
        if sweep:
            text += (f"\nCrop margin of {r['label'] or 'the detector'} (`margin_sweep`; end-to-end accuracy): "
                     + ", ".join(f"{100 * v['accuracy']:.1f}% at {m}"
                                 for m, v in sorted(sweep.items(), key=lambda kv: float(kv[0]))) + ".\n")
    return text


def _variant_rows(docs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    rows = ["| detector | results file | recall | precision | false faces per cluttered scene | "
            "end-to-end accuracy |", "|---|---|---:|---:|---:|---:|"]
    for label, d in docs:
        det = d["detection"]
        acc = f"{100 * d['accuracy']['overall']['accuracy']:.1f}%" if d.get("accuracy") else "n/a"
        out_file = d["command"].split("--out ")[1].split()[0]
        false = det["per_background"]["clutter"]["false_detections_per_scene"]  # null: no cluttered scene
        rows.append(f"| {label} | `{out_file}` | {100 * det['overall']['recall']:.1f}% | "
                    f"{100 * det['overall']['precision']:.1f}% | {'-' if false is None else f'{false:.1f}'} | {acc} |")
    return rows


# BlazeFace variants measured in earlier runs (before YuNet; other sessions, so no speeds here).
VARIANTS = (("BlazeFace back, min face 12 px", "results/crowd/bench_min_face12.json"),
            ("BlazeFace short-range, min face 8 px", "results/crowd/variants/short_range.json"),
            ("BlazeFace full-range, min face 8 px", "results/crowd/variants/full_range.json"),
            ("OpenCV Haar cascade, min face 8 px", "results/crowd/variants/opencv_haar.json"))


def crowd_variants_table(_: dict[str, Any]) -> str:
    docs = [(label, json.loads((REPO / path).read_text())) for label, path in VARIANTS if (REPO / path).is_file()]
    return "\n".join(_variant_rows(docs)) + "\n"


def crowd_speed_table(doc: dict[str, Any]) -> str:
    rows = ["| detector | s per frame | frames/s | detect | recognise (all faces, one batch) | pipelined stream |",
            "|---|---:|---:|---:|---:|---:|"]
    env = ""
    for r in (doc.get("comparison") or {}).get("detectors", [{"label": doc["config"].get("detector_name"),
                                                              "report": doc}]):
        sp = r["report"].get("speed")
        if not sp:
            continue
        env = f"{sp['cpu_count']} cores, {sp['cpu']}{_load(sp)}, median of {sp.get('rounds', 1)} interleaved rounds"
        rows.append(f"| {r['label']} | {sp['seconds_per_frame']:.2f} | {sp['fps']:.2f} | "
                    f"{sp['detect_ms']:.0f} ms | {sp['recognize_ms']:.0f} ms ({sp['faces_found']} faces) | "
                    f"{sp['fps_stream_pipelined']:.2f} frames/s |")
    return f"Measured on {env}:\n\n" + "\n".join(rows) + "\n"


def targets_table(doc: dict[str, Any]) -> str:
    rows = ["| target | measured | met |", "|---|---|---|"]
    for t in doc["targets"]:
        met = "yes" if t["met"] else "**no**" if t["met"] is False else "not run"
        rows.append(f"| {t['target']} | {t['measured']} | {met} |")
    return f"From `results/targets.json` (`{doc['command']}`):\n\n" + "\n".join(rows) + "\n"


def int8_generator_table(doc: dict[str, Any]) -> str:
    rows = ["| file | G | val mean | val worst drop | test mean | test worst drop | faces/s, batch 64 (CPU) |",
            "|---|---|---:|---:|---:|---:|---:|"]
    for r in doc["rows"]:
        drop = {s: (f"{r[f'{s}_worst_drop']:+.2f} ({r[f'{s}_worst_factor']})" if f"{s}_worst_drop" in r else "")
                for s in ("val", "test")}
        rows.append(f"| {r['file']} | {r['generator']} | {r['val']['mean']:.2f} | {drop['val']} | "
                    f"{r['test']['mean']:.2f} | {drop['test']} | {r['faces_per_s_batch64']} |")
    return (f"`results/ferplus/int8_generator.json` (`{doc['command']}`; accuracy in %, drop = points lost "
            f"against FP32 at the worst factor; ONNX Runtime CPU, {doc['threads']} threads; s8s8 is meant for "
            "TensorRT, so its CPU speed says nothing about a GPU):\n\n" + "\n".join(rows) + "\n")


def int8_film_bound_table(doc: dict[str, Any]) -> str:
    """The shipped graph and the same graph with FiLM cut out of G's maps: each file's throughput (median over
    rounds) and each graph's INT8-over-FP32 ratio, median and range of the per-round ratios
    (scripts/int8_film_bound.py)."""
    med, rat = doc["throughput"]["median_fps"], doc["ratios"]
    loads = [r["loadavg_start"][0] for r in doc["throughput"]["rounds"] if r.get("loadavg_start")]
    rows = ["| graph | FP32 faces/s | INT8 u8s8 faces/s | INT8 / FP32, median of rounds | per-round range "
            "| rounds at or above the target |", "|---|---:|---:|---:|---|---:|"]
    graphs = [("shipped", "the shipped graph"), ("film_free", f"without FiLM ({doc['films_removed']} removed)")]
    if doc.get("plain"):
        graphs.append(("plain", f"a plain network alone (`{doc['plain']['path']}`)"))
    for key, label in graphs:
        per = rat[f"{key}_int8_vs_fp32"]
        rows.append(f"| {label} | {med[f'{key}_fp32']:.0f} | {med[f'{key}_int8']:.0f} | "
                    f"{per['median_of_rounds']:.2f}x | {min(per['per_round']):.2f}-{max(per['per_round']):.2f}x | "
                    f"{sum(v >= rat['target'] for v in per['per_round'])} of {len(per['per_round'])} |")
    s = doc["settings"]
    chip = doc["machine"]
    where = (f"{chip['cpu_model']} with {', '.join(chip['cpu_int8_features'])}" if chip.get("cpu_int8_features")
             else "CPU")
    return (f"`{doc['source']}` (`{doc['command']}`; ONNX Runtime on the {where}, batch {s['batch']}, {s['threads']} threads, "
            f"each file in its own process, {s['rounds']} interleaved rounds, 1-minute load "
            f"{min(loads):.2f}-{max(loads):.2f} at the rounds' starts; the FiLM-free graph is untrained, "
            f"a speed bound only{'; ' + doc['note'] if doc.get('note') else ''}; target {rat['target']:.0f}x: "
            f"{'reached' if rat['bound_reaches_target'] else 'not reached'} by the bound):\n\n"
            + "\n".join(rows) + "\n")


#: The committed scripts/edge_budget.py runs of the shipped default at two ONNX Runtime thread counts, on each CPU
#: they were measured on (the runs before 2026-12-06 did not record theirs).
EDGE_THREADS = ("results/edge_budget.json", "results/ferplus/edge_budget_1thread.json",
                "results/ferplus/edge_budget_xeon.json", "results/ferplus/edge_budget_1thread_xeon.json",
                "results/ferplus/edge_budget_xeon_calib_floor.json")


def cpu_name(machine: dict[str, Any]) -> str:
    """``"Intel(R) Xeon(R) Processor (amx_int8, avx2, ...)"`` from a result file's ``machine``, or "not recorded"."""
    if not machine.get("cpu_model"):
        return "not recorded"
    return f"{machine['cpu_model']} ({', '.join(machine.get('cpu_int8_features') or [])})"


def edge_budget_threads_table(_: dict[str, Any]) -> str:
    """The shipped default's FP32 and INT8 u8s8 throughput and their ratio, one row per committed
    scripts/edge_budget.py run in :data:`EDGE_THREADS` (each at its own thread count)."""
    rows = ["| CPU (its int8 features) | threads | FP32 faces/s | INT8 u8s8 faces/s | INT8 / FP32 (of medians) | per-round range "
            "| load | result file |", "|---|---:|---:|---:|---:|---|---|---|"]
    for src in EDGE_THREADS:
        d = json.loads((REPO / src).read_text())
        med, ratio = d["throughput"]["median_fps"], d["ratios"]["candidate_int8_vs_candidate_fp32"]
        loads = [m["load_before"] for rnd in d["throughput"]["rounds"] for m in rnd.values()
                 if isinstance(m, dict) and "load_before" in m]
        rows.append(f"| {cpu_name(d['machine'])} | {d['settings']['threads']} | {med['candidate_fp32']:.0f} | {med['candidate_int8']:.0f} | "
                    f"{ratio['of_medians']:.2f}x | {min(ratio['per_round']):.2f}-{max(ratio['per_round']):.2f}x | "
                    f"{min(loads):.1f}-{max(loads):.1f} | `{src}` (`{d['command']}`) |")
    return ("The shipped default (`fsrfer_edge/models/default.onnx`) and its INT8 u8s8 file on ONNX Runtime CPU, batch "
            "64, each file in its own process, interleaved rounds, one row per committed `scripts/edge_budget.py` "
            "run:\n\n" + "\n".join(rows) + "\n")


def app_inputs_table(doc: dict[str, Any]) -> str:
    """scripts/app_inputs.py: accuracy per factor of faces an app enlarged itself (by OpenCV kernel), and of crops
    cut from a box that is not square."""
    def table(rows: dict[str, dict[str, float]], head: str) -> list[str]:
        factors = list(next(iter(rows.values())))
        return ([f"| {head} | " + " | ".join(f"x{f}" for f in factors) + " |", "|---|" + "---:|" * len(factors)]
                + [f"| {name} | " + " | ".join(f"{acc[f]:.2f}" for f in factors) + " |" for name, acc in rows.items()])
    bilinear = doc.get("hr_faces_reduced_bilinear")
    reduced = (f"{doc['hr_faces_reduced']} would be reduced as repetitions" if bilinear is None else
               f"{doc['hr_faces_reduced']} would be reduced as repetitions and {bilinear} as bilinear enlargings")
    return (f"FER+ {doc['split']} ({doc['n']} faces), accuracy in %, from `{doc['source']}` "
            f"(`{doc['command']}`; the shipped model, sha256 {doc['model']['sha256'][:12]}, OpenCV {doc['opencv']}); "
            "each face shrunk with area averaging, then given small or enlarged to 48x48 by the app. Of the split's "
            f"48 px originals, {reduced}:\n\n"
            + "\n".join(table(doc["enlarged"], "crop given to `Recognizer`"))
            + "\n\nThe same faces cut from a box that keeps 80% of their width or height (then shrunk; x1: not shrunk):\n\n"
            + "\n".join(table(doc["non_square"], "crop given to `Recognizer`")) + "\n")


def deepstream_inputs_table(doc: dict[str, Any]) -> str:
    """scripts/deepstream_inputs.py: accuracy per factor of faces as nvinfer would scale them, beside the SDK's path."""
    lines = [f"FER+ {doc['split']} ({doc['n']} faces), accuracy in %, from `{doc['source']}` (`{doc['command']}`; the "
             f"shipped model, sha256 {doc['model']['sha256'][:12]}, OpenCV {doc['opencv']}'s resizers standing in for "
             "NVIDIA's); each face shrunk with area averaging, then given to `Recognizer` as a small crop (`sdk`) or "
             f"scaled to 48x48 and normalised as the generated config says (padding grey level {doc['pad_value']}):"]
    for box in sorted(doc["rows"], key=lambda b: b != "square box"):
        rows = dict(sorted(doc["rows"][box].items(), key=lambda kv: (kv[0] != "sdk", kv[0])))
        factors = list(next(iter(rows.values())))
        lines += ["", f"{box[0].upper()}{box[1:]}:", "",
                  "| face given as | " + " | ".join(f"x{f}" for f in factors) + " |", "|---|" + "---:|" * len(factors)]
        lines += [f"| {name} | " + " | ".join(f"{acc[f]:.2f}" for f in factors) + " |" for name, acc in rows.items()]
    return "\n".join(lines) + "\n"


def contrast_floor_table(doc: dict[str, Any]) -> str:
    """scripts/contrast_floor.py: accuracy per lighting and factor without and with the val rule's pick."""
    pick = doc["pick"]
    acc = doc["accuracy"]
    factors = list(acc["none"]["clean"])
    kind = doc.get("kind", "contrast")
    rows = [f"| lighting | {kind} floor | " + " | ".join(f"x{f}" for f in factors) + " | faces raised (x1, x8) |",
            "|---|---|" + "---:|" * (len(factors) + 1)]
    for light in acc["none"]:
        for name, label in (("none", "none"), (pick, f"{doc['candidates'][pick]['floor']:g}")):
            share = doc["changed"][pick][light]
            raised = f"{share[factors[0]]:.1f}%, {share[factors[-1]]:.1f}%" if name == pick else ""
            rows.append(f"| {light} | {label} | " + " | ".join(f"{acc[name][light][f]:.2f}" for f in factors)
                        + f" | {raised} |")
    return (f"FER+ {doc['split']} ({doc['n']} faces), accuracy in %, from `{CONTRAST_FLOOR[kind, doc['split']]}` "
            f"(`{doc['command']}`; the shipped model, sha256 {doc['model']['sha256'][:12]}); each face lit at 48 px, "
            "shrunk with area averaging and given as a small crop; the rule's score, the mean over the lit conditions "
            "(all but clean) and factors, "
            f"{doc['score']['none']:.2f} without the floor, {doc['score'][pick]:.2f} with it{' (the SDK before it: with its contrast floor)' if kind == 'brightness' else ''}:\n\n" + "\n".join(rows) + "\n")


def int8_avx2_table(doc: dict[str, Any]) -> str:
    """scripts/int8_avx2.py: the INT8 u8s8 file natively (a CPU with VNNI) and on an emulated AVX2 CPU without it."""
    acc, drops, agree = doc["accuracy"], doc["drops"], doc["agreement"]["int8 emulated"]
    factors = list(acc["fp32"])
    head = "| | " + " | ".join(f"x{f}" for f in factors) + " |"
    rows = [head, "|---|" + "---:|" * len(factors)]
    for name, label in (("fp32", "FP32 file, on this CPU"), ("int8 native", "INT8 u8s8 file, on this CPU"),
                        ("int8 emulated", f"INT8 u8s8 file, emulated {doc['emulator']['cpu']} (AVX2, no VNNI)")):
        rows.append(f"| {label} | " + " | ".join(f"{acc[name][f]:.2f}" for f in factors) + " |")
    rows.append("| emulated minus this CPU (points) | " + " | ".join(
        f"{0.0 - drops['int8 emulated']['vs_native'][f] + 0.0:+.2f}" for f in factors) + " |")
    rows.append("| top-1 agreement, emulated with this CPU (%) | " + " | ".join(f"{agree[f]:.2f}" for f in factors) + " |")
    m, probe = doc["machine"], doc["probe"]
    cpu = f"{m['cpu_model']}, ONNX Runtime {m['onnxruntime']}"
    feats = ", ".join(m["cpu_int8_features"])
    return (f"FER+ {doc['split']} ({doc['n']} faces), protocol (a), accuracy in %, from `results/ferplus/int8_avx2_val.json` "
            f"(`{doc['command']}`; this CPU: {cpu}{f' ({feats})' if feats else ''}; emulator: "
            f"{doc['emulator']['version']}, `-cpu {doc['emulator']['cpu']}`; the probe's 64 products of 255 x 127 sum to "
            f"{probe['int8 native']} on this CPU and {probe['int8 emulated']} emulated, the int16-saturated sum; the largest "
            f"logit difference between the two INT8 runs is {doc['agreement']['int8 emulated max |logit difference|']:.3f}; "
            f"the rule's verdict: {'a problem' if doc['verdict']['int8 emulated']['problem'] else 'no problem'}):\n\n"
            + "\n".join(rows) + "\n")


def arm64_cpu_table(doc: dict[str, Any]) -> str:
    """scripts/arm64_cpu.py: the FP32 and INT8 u8s8 files on this x86 CPU and on emulated Arm CPUs."""
    acc, dis = doc["accuracy"], doc["disagreement_with_x86"]
    factors = list(acc["fp32 x86"])
    rows = ["| file, CPU | " + " | ".join(f"x{f}" for f in factors) + " | answers unlike x86's | largest logit difference "
            "from x86 |", "|---|" + "---:|" * len(factors) + "---:|---:|"]
    for name in acc:
        file, cpu = name.split(" ", 1)
        label = f"{file.upper()}, {'this x86 CPU' if cpu == 'x86' else 'emulated ' + cpu}"
        extra = (f" {max(dis[name].values()):.1f}% | {doc['max_logit_difference_with_x86'][name]:.3f} |" if name in dis
                 else " | |")
        rows.append(f"| {label} | " + " | ".join(f"{acc[name][f]:.1f}" for f in factors) + " |" + extra)
    v = doc["verdict"]
    return (f"The first {doc['n']} FER+ {doc['split']} faces, protocol (a), accuracy in %, from "
            f"`results/ferplus/arm64_cpu_val.json` (`{doc['command']}`; {doc['emulator']['version']}; "
            f"answers unlike x86's: the share of faces whose top-1 class differs from the same file's x86 run, at the "
            f"worst factor; the rule's verdict as written: {'a problem' if v['problem'] else 'no problem'}, its worst "
            f"INT8 loss against the Arm FP32 run {v['worst_int8_drop_points']:.1f} points, its worst disagreement "
            f"{v['worst_disagreement_percent']:.1f}%):\n\n" + "\n".join(rows) + "\n")


def linear_precheck_table(doc: dict[str, Any]) -> str:
    """benchmarks/linear_precheck.py: Recognizer.prepare and the bilinear check per batch, before and after."""
    rows = ["| batch of 64 crops at 48 px | prepare before (ms) | prepare after (ms) | after / before, median of rounds "
            "| per-round range | prepare's share of the model's batch time, before / after |",
            "|---|---:|---:|---:|---|---|"]
    for name, v in doc["summary"].items():
        p, share = v["prepare_ms"], v["prepare_share_of_model_time"]
        rows.append(f"| {name} | {p['before']:.2f} | {p['after']:.2f} | {p['after_over_before_median']:.2f} | "
                    f"{p['per_round_range'][0]:.2f}-{p['per_round_range'][1]:.2f} | "
                    f"{100 * share['before']:.0f}% / {100 * share['after']:.0f}% |")
    m = doc["machine"]
    return (f"`benchmarks/results/linear_precheck.json` (`{doc['command']}`; {m['cpu_model']}, ONNX Runtime "
            f"{m.get('onnxruntime', 'not recorded')}, {doc['threads']} threads; before = `{doc['before']}`, after = this checkout, each in "
            f"its own process, {doc['rounds']} interleaved rounds of {doc['repeats']} calls, 1-minute load "
            f"{min(doc['load_1min']):.1f}-{max(doc['load_1min']):.1f}; the shipped model's batch time, "
            f"{doc['model_ms_batch_median']:.1f} ms, for scale):\n\n" + "\n".join(rows) + "\n")


def sessions_table(doc: dict[str, Any]) -> str:
    """One two-thread ONNX Runtime session against two one-thread sessions splitting each batch
    (benchmarks/sessions.py): faces/s per file and batch size, and the second over the first, median and range
    of the per-round ratios."""
    (a, b), key = list(doc["configs"]), "two_sessions_1_thread_vs_one_session_2_threads"
    rows = ["| file | batch | one session, 2 threads (faces/s) | two sessions, 1 thread each (faces/s) | "
            "two sessions / one, median of rounds | per-round range |", "|---|---:|---:|---:|---:|---|"]
    for f in ("fp32", "int8"):
        for n in sorted(doc[key][f], key=int):
            r = doc[key][f][n]
            rows.append(f"| {f.upper()} | {n} | {doc['median_fps'][f'{f}/{a}'][n]:.0f} | {doc['median_fps'][f'{f}/{b}'][n]:.0f} | "
                        f"{r['median_of_rounds']:.2f}x | {min(r['per_round']):.2f}-{max(r['per_round']):.2f}x |")
    top = str(max(doc["settings"]["batch_sizes"]))
    i8 = doc["int8_vs_fp32"]
    loads = [r["loadavg_start"][0] for r in doc["rounds"] if r.get("loadavg_start")]
    s = doc["settings"]
    return (f"`{doc['source']}` (`{doc['command']}`; the shipped model and its INT8 u8s8 file, ONNX Runtime CPU, "
            f"each file and configuration in its own process, {s['rounds']} interleaved rounds, 1-minute load "
            f"{min(loads):.2f}-{max(loads):.2f} at the rounds' starts{'; ' + doc['note'] if doc.get('note') else ''}; "
            f"INT8 / FP32 at batch {top}: {i8[a][top]['median_of_rounds']:.2f}x with one session, "
            f"{i8[b][top]['median_of_rounds']:.2f}x with two):\n\n" + "\n".join(rows) + "\n")


#: What each variant of scripts/int8_sensitivity.py keeps in float, as the README says it.
INT8_SENSITIVITY_NAMES = {
    "as_exported": "the conv reading the image (the export now)",
    "all_int8": "nothing more (the export before)",
    "input_rounding_only": "no INT8 file: the FP32 file fed its input rounded to the INT8 file's grid",
    "g_stages_0_1": "G's stages 0-1", "g_stages_2_3": "G's stages 2-3", "g_stages_4_5": "G's stages 4-5",
    "g_refine": "G's refine block", "upper_stages": "the frozen stages above G", "g_all": "all of G",
}


def int8_sensitivity_table(doc: dict[str, Any]) -> str:
    """Per variant: % of val faces whose class INT8 changed, KL from FP32 and points lost, at x4, x6, x8."""
    factors = ("4", "6", "8")
    head = " | ".join(f"x{f} changed % | x{f} KL | x{f} lost" for f in factors)
    rows = [f"| kept in float beyond FiLM, the estimator and the tail | {head} |",
            "|---|" + "---:|" * (3 * len(factors))]
    order = list(INT8_SENSITIVITY_NAMES)
    for name, v in sorted(doc["variants"].items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)):
        cells = " | ".join(f"{v['per_factor'][f]['flips']:.2f} | {v['per_factor'][f]['kl']:.1f} | "
                           f"{v['per_factor'][f]['points_lost']:+.2f}" for f in factors)
        rows.append(f"| {INT8_SENSITIVITY_NAMES.get(name, name)} | {cells} |")
    return (f"`{doc['source']}` (`{doc['command']}`; FER+ {doc['split']}, {doc['n']} faces, u8s8, protocol (a); "
            "changed = top-1 class differs from FP32; KL in nats x 1000; lost = FP32 accuracy minus INT8, "
            f"one face = {doc['one_face_points']} points):\n\n" + "\n".join(rows) + "\n")


def route_hr_seeds_table(doc: dict[str, Any]) -> str:
    """Routing while G trains against bn, both routed, seed by seed (scripts/route_hr_seeds.py)."""
    rows = ["| seed | `bn_route` | `bn` | difference |", "|---:|---:|---:|---:|"]
    for r in doc["per_seed"]:
        rows.append(f"| {r['seed']} | {r['route_hr']:.2f} | {r['bn']:.2f} | {r['difference']:+.2f} |")
    s = doc["summary"]
    sd = f" ± {s['sd_difference']:.2f}" if s["sd_difference"] is not None else ""
    rows.append(f"| mean | | | **{s['mean_difference']:+.2f}{sd}** |")
    return (f"`{doc['source']}` (`{doc['command']}`; {doc['measure']}; rule: {doc['rule']}, line "
            f"+{s['line']}; verdict: {s['verdict']}):\n\n" + "\n".join(rows) + "\n")


#: scripts/factor_estimator_rounding.py's estimators, as the README names them.
ESTIMATOR_ROUNDING_NAMES = {
    "shipped": "the checkpoint's estimator (the previous default's, float statistics), faces as drawn (float)",
    "shipped_rounded": "the checkpoint's estimator, faces rounded to whole grey levels",
    "refit_rounded": "fitted on rounded faces, rounded faces (an estimator that rounds its input)",
    "refit_both_float": "fitted on both, faces as drawn",
    "refit_both_rounded": "fitted on both, rounded faces",
}


def estimator_rounding_table(doc: dict[str, Any]) -> str:
    """Per estimator and factor: mean estimated factor and MAE of log2(factor) on degraded val faces."""
    rows_in = doc["per_estimator"]
    factors = list(next(iter(rows_in.values())))
    rows = ["| estimator, val faces | " + " | ".join(f"x{f}" for f in factors) + " |",
            "|---|" + "---:|" * len(factors)]
    order = list(ESTIMATOR_ROUNDING_NAMES)
    for name, per in sorted(rows_in.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)):
        rows.append(f"| {ESTIMATOR_ROUNDING_NAMES.get(name, name)} | "
                    + " | ".join(f"{per[f]['mean_estimate']:.2f} ({per[f]['mae_log2']:.3f})" for f in factors) + " |")
    return (f"`{doc['source']}` (`{doc['command']}`; fitted on {doc['train_faces']} FER+ train faces, evaluated on "
            f"{doc['val_faces']} val faces, each degraded as stage 2 degrades them, one draw per face; mean estimated factor, in brackets the mean absolute error of log2(factor)):"
            "\n\n" + "\n".join(rows) + "\n")


def _accuracies(path: Path) -> dict[str, float]:
    """Accuracy in % per factor of an fsrfer-eval JSON file."""
    return {f: 100 * v["accuracy"] for f, v in json.loads(path.read_text())["factors"].items()}


def headline_table(doc: dict[str, Any]) -> str:
    """The README's first numbers: the shipped model's accuracy at 48 and 12 px, its CPU speed, and how it
    compares with the baseline that fine-tunes the whole network on low-resolution faces."""
    acc = {f: 100 * v["accuracy"] for f, v in doc["factors"].items()}
    bench = json.loads((REPO / "results/bench_cpu_fp32.json").read_text())
    from fsrfer_edge.fileio import sha256_file

    if bench["model_sha256"] != sha256_file(REPO / "fsrfer_edge/models/default.onnx"):
        raise SystemExit("results/bench_cpu_fp32.json timed another file than the shipped default model; rerun "
                         "fsrfer-bench on fsrfer_edge/models/default.onnx before rendering the headline")
    lat = {r["batch_size"]: r for r in bench["latency"]}
    big = max(lat)
    size = int(doc.get("input_size", 48))

    def px(f: str) -> str:
        return f"{round(size / int(f))} px (x{f})"

    text = (
        f"- **Accuracy** of the shipped model (`fsrfer_edge/models/default.onnx`) on the {doc['n']} "
        f"{'FER+' if doc.get('labels') == 'ferplus' else 'FER2013'} {doc['split']} faces (`{Path(SOURCES['headline']).as_posix()}`): **{acc['1']:.2f}%** on {size}-pixel "
        f"faces, **{acc['4']:.2f}%** on {px('4')} faces, {acc['8']:.2f}% on {px('8')}.\n"
        f"- **Speed** on ONNX Runtime, {bench['machine']['cpu_count']} CPU cores, "
        f"{str(bench['threads']) + ' threads' if bench['threads'] else 'its default threads'} "
        f"(`results/bench_cpu_fp32.json`, `fsrfer-bench`): {lat[1]['p50_ms']:.2f} ms for one face, "
        f"{lat[big]['throughput_fps']:.0f} faces/s in batches of {big}.\n"
    )
    folder = REPO / Path(SOURCES["headline"]).parent
    if (folder / "baseline_test.json").is_file():
        # The shipped model against its equal-budget LR-fine-tuned baseline on the same test faces.
        base = _accuracies(folder / "baseline_test.json")
        hr = _accuracies(folder / "hr_test.json")
        small = [f for f in sorted(acc, key=int) if f != "1"]
        diff = ", ".join(f"{px(f).split(' (')[0]} {acc[f] - base[f]:+.2f}" for f in small)
        text += (
            f"- **Against the baselines** (`results/default_model/baseline_test.json`, `hr_test.json`): FSR-FER "
            f"lifts the frozen high-resolution model from {hr['4']:.2f}% to {acc['4']:.2f}% at {px('4')}. Against "
            f"the simpler baseline that fine-tunes the whole network on the same low-resolution faces for the same "
            f"number of epochs (\"LR-fine-tuned\"), in points: {diff}; at 48 px {acc['1'] - base['1']:+.2f}."
        )
        if (folder / "test_camera.json").is_file() and (folder / "baseline_test_camera.json").is_file():
            cam, cam_base = _accuracies(folder / "test_camera.json"), _accuracies(folder / "baseline_test_camera.json")
            text += (f" On camera-like crops (area down-sampling, JPEG; `test_camera.json`): {cam['4']:.2f}% at "
                     f"{px('4')}, the baseline {cam_base['4']:.2f}%.")
        full = REPO / "results/ferplus/test.json"
        if full.is_file():
            tables = json.loads(full.read_text())
            if "lr_finetune" in tables:
                ft = {f: 100 * v["accuracy"] for f, v in tables["lr_finetune"]["factors"].items()}
                ahead = [f for f in small if ft.get(f, 0.0) > acc[f]]
                text += (f" The full run's LR-fine-tuned model (`results/ferplus/test.json`: more epochs, on bicubic "
                         f"faces only) is ahead on bicubic faces at {', '.join(px(f) for f in ahead) or 'no factor'}"
                         + (f" ({ft['4']:.2f}% at {px('4')})" if "4" in ahead else "") + "; it was not evaluated on "
                         "camera-like crops.")
        return text + " Details: [Results](#results).\n"
    tables = json.loads((REPO / "results/ferplus/test.json").read_text())
    ours = {f: 100 * v["accuracy"] for f, v in tables["fsrfer"]["factors"].items()}
    base = {f: 100 * v["accuracy"] for f, v in tables["lr_finetune"]["factors"].items()}
    hr = {f: 100 * v["accuracy"] for f, v in tables["hr"]["factors"].items()}
    wins = [f for f in ours if ours[f] > base[f]]
    loses = [f for f in ours if ours[f] < base[f]]
    return text + (
        f"- **Against the baselines** (`results/ferplus/test.json`): FSR-FER lifts the high-resolution model "
        f"from {hr['4']:.2f}% to {ours['4']:.2f}% at {px('4')}, but the simpler baseline that fine-tunes the "
        f"whole network on low-resolution faces (\"LR-fine-tuned\") is **better at "
        f"{', '.join(px(f) for f in loses) or 'no factor'}**: {base['4']:.2f}% vs {ours['4']:.2f}% at {px('4')}. "
        f"FSR-FER is ahead only at {', '.join(px(f) for f in wins) or 'no factor'} "
        f"({', '.join(f'{ours[f]:.2f}% vs {base[f]:.2f}%' for f in wins)}). Details: "
        "[Results](#results).\n"
    )


#: JSON files the renderers that read several name first.
SOURCES = {"headline": "results/default_model/test.json"}

PROTOCOL_NAMES = {"resized": "(a) resized back", "small": "(b) small crops", "camera": "(c) camera-like crops"}


def early_g_table(doc: dict[str, Any], accuracy: bool = True, differences: Optional[tuple[str, ...]] = None) -> str:
    """Accuracy per factor of each early-G run's models, one table per protocol (scripts/early_g_summary.py).

    ``accuracy=False`` leaves the accuracy tables out (the differences only); ``differences`` names the
    ``--against`` rows whose per-factor difference tables are shown (default: all); the tables of the gain
    averaged over factors and protocols are shown for every ``--against`` row."""
    out = [f"`{doc['source']}` (`{doc['command']}`), {doc['split']} split, accuracy in % (mean ± spread over "
           f"seeds where more than one): {doc['note']}\n"]
    for protocol, title in PROTOCOL_NAMES.items() if accuracy else ():
        rows = [(name, row) for name, row in doc["rows"].items() if protocol in row["summary"]]
        if not rows:
            continue
        factors = sorted(rows[0][1]["summary"][protocol]["mean"], key=int)
        lines = [f"Protocol {title}:\n", "| run/model | " + " | ".join(f"x{f}" for f in factors)
                 + " | mean | seeds | training epochs | training min (CPU, mean) |", "|---|" + "---:|" * (len(factors) + 4)]
        for name, row in rows:
            sm = row["summary"][protocol]
            spread = sm["std"] if sm["seeds"] > 1 else {}
            cells = [f"{sm['mean'][f]:.2f}" + (f" ± {spread[f]:.2f}" if spread.get(f) is not None else "")
                     for f in factors]
            epochs = sorted({c["epochs"] for c in row.get("cost", {}).values()})
            secs = [c["seconds"] for c in row.get("cost", {}).values() if c.get("epochs")]
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {sm['mean_over_factors']:.2f} | {sm['seeds']} | "
                         + ("/".join(map(str, epochs)) if epochs and epochs != [0] else "stage 1 only")
                         + (f" | {sum(secs) / len(secs) / 60:.1f} |" if secs else " | - |"))
        out.append("\n".join(lines) + "\n")
    pairs = doc.get("paired") or []
    for pd in ([pairs] if isinstance(pairs, dict) else pairs):
        for protocol, title in PROTOCOL_NAMES.items() if differences is None or pd["against"] in differences else ():
            rows = [(name, by[protocol]) for name, by in pd["difference"].items()
                    if protocol in by and name.split("/")[-1] != "hr"]
            if not rows:
                continue
            factors = sorted(rows[0][1]["mean"], key=int)
            lines = [f"Each row minus `{pd['against']}` of the same seed (same training subset), protocol {title}, "
                     f"in points (mean ± spread over seeds; negative: below {pd['against']}):\n",
                     "| run/model | " + " | ".join(f"x{f}" for f in factors) + " | seeds |",
                     "|---|" + "---:|" * (len(factors) + 1)]
            for name, d in rows:
                cells = [f"{d['mean'][f]:+.2f}" + (f" ± {d['std'][f]:.2f}" if d["std"].get(f) is not None else "")
                         for f in factors]
                lines.append(f"| {name} | " + " | ".join(cells) + f" | {d['seeds']} |")
            out.append("\n".join(lines) + "\n")
        ov = {name: o for name, o in (pd.get("overall") or {}).items() if name.split("/")[-1] != "hr"}
        if ov:
            lines = [f"Averaged over every factor and protocol, each row minus `{pd['against']}` seed by seed "
                     "(the number the shipping rules compare), in points:\n",
                     "| run/model | per seed | mean ± spread |", "|---|---|---:|"]
            for name, o in ov.items():
                lines.append(f"| {name} | " + ", ".join(f"seed {sd}: {v:+.2f}" for sd, v in sorted(o["by_seed"].items()))
                             + f" | {o['mean']:+.2f}" + (f" ± {o['std']:.2f}" if o["std"] is not None else "") + " |")
            out.append("\n".join(lines) + "\n")
    fc = doc.get("film_check")
    if fc:
        acc = fc["accuracy"]
        factors = sorted(next(iter(acc.values())), key=int)
        lines = [f"Does the scale-aware G use the factor? `{fc['run']}/fsrfer` on protocol (a), told each face's "
                 "true factor or one constant factor for every face:\n",
                 "| FiLM is told | " + " | ".join(f"x{f}" for f in factors) + " |", "|---|" + "---:|" * len(factors)]
        lines += [f"| {label} | " + " | ".join(f"{v[f]:.2f}" for f in factors) + " |" for label, v in acc.items()]
        out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def gpu_runs_table(doc: dict[str, Any]) -> str:
    """An early-G summary of many runs: the gains only, per factor against the equal-budget baseline."""
    return early_g_table(doc, accuracy=False, differences=("6ep/lr_finetune",))


def factor_estimator_table(doc: dict[str, Any]) -> str:
    """The scale-aware early G told the true factor against its exported graph estimating it."""
    fit = doc["estimator_fit_on_val"]
    factors = sorted(fit, key=int)
    lines = [f"`{doc['source']}` ({doc['command']}), {doc['split']} split, run `{doc['run_config']}`. "
             "The estimator on val faces degraded as in training:\n",
             "| | " + " | ".join(f"x{f}" for f in factors) + " |", "|---|" + "---:|" * len(factors),
             "| mean estimated factor | " + " | ".join(f"{fit[f]['mean_estimate']:.2f}" for f in factors) + " |",
             "| mean abs. error of log2 factor | " + " | ".join(f"{fit[f]['mae_log2']:.2f}" for f in factors) + " |",
             "", "Accuracy (%) of the exported graph (factor estimated) minus the model told the true factor:\n"]
    acc = doc["accuracy"]
    factors = sorted(next(iter(acc.values()))["estimated_minus_true"], key=int)
    lines += ["| protocol | " + " | ".join(f"x{f}" for f in factors) + " |", "|---|" + "---:|" * len(factors)]
    for protocol in [p for p in PROTOCOL_NAMES if p in acc]:
        row = acc[protocol]
        lines.append(f"| {PROTOCOL_NAMES[protocol]} | "
                     + " | ".join(f"{row['estimated_minus_true'][f]:+.2f}" for f in factors) + " |")
    return "\n".join(lines) + "\n"


EDGE_FILES = (
    ("results/edge_budget.json", "shipped default (`lrg_rec3000` seed 0 on the 120-epoch HR network, routed; factor "
     "estimator on whole grey levels)",
     "G in INT8, the conv reading the image in float, calibrated on small crops at every factor"),
    ("results/ferplus/edge_budget_hr120_first.json", "shipped default, the same day's first run (the INT8 file's "
     "rounds ran at about 1900 or about 2800 faces/s, the FP32 files' steadier; the command in the file wrote "
     "results/edge_budget.json, kept under this name when the 9-round run replaced it)",
     "G in INT8, the conv reading the image in float, calibrated on small crops at every factor"),
    ("results/default_model/previous_lrgr/edge_budget.json", "previous default (`lrg_rec3000` seed 0 on the 60-epoch HR "
     "network, routed: `bn` with G's rate 3x and reconstruction weight 3000; factor estimator on whole grey levels)",
     "G in INT8, the conv reading the image in float, calibrated on small crops at every factor"),
    ("results/ferplus/edge_budget_lrg_rec3000_val.json", "previous default (`lrg_rec3000` on the 60-epoch HR network), on "
     "FER+ val (the film_stages run's comparison)",
     "G in INT8, the conv reading the image in float, calibrated on small crops at every factor"),
    ("results/ferplus/edge_budget_film_stages_val.json", "shipped configuration with FiLM at stage ends only "
     "(`stage2.film_at: stages`, seed 0, routed), on FER+ val",
     "G in INT8, the conv reading the image in float, calibrated on small crops at every factor"),
    ("results/default_model/previous_round/edge_budget.json", "previous default (`bn` seed 0, routed: stem G re-estimating its "
     "statistics, soft+aug HR, 6-epoch stage 2; factor estimator on whole grey levels)",
     "G in INT8, the conv reading the image in float, calibrated on small crops at every factor"),
    ("results/ferplus/edge_budget_film_int8.json", "previous default (`bn`, estimator on whole grey levels), `--int8-quantize-film`",
     "G and FiLM's ops on the maps in INT8, the conv reading the image in float, calibrated on small crops at every factor"),
    ("results/default_model/previous_bn/edge_budget.json", "previous default (`bn` seed 0, routed, estimator on float statistics)",
     "G in INT8, the conv reading the image in float, calibrated on small crops at every factor"),
    ("results/ferplus/edge_budget_image_conv_int8.json", "previous default (`bn` seed 0, routed, estimator on float statistics), "
     "before the image conv stayed in float",
     "G and the conv reading the image in INT8, calibrated on small crops at every factor"),
    ("results/default_model/previous_6ep/edge_budget.json", "previous default (stem G, soft+aug HR, 6-epoch stage 2, unrouted)",
     "G in INT8, calibrated on small crops at every factor"),
    ("results/ferplus/edge_budget_soft_aug_3ep.json", "previous default (stem G, soft+aug HR, 3-epoch stage 2)",
     "G in INT8, calibrated on small crops at every factor"),
    ("results/ferplus/edge_budget_stem_camera.json", "earlier default (stem G, full-run HR)",
     "G in INT8, calibrated on small crops at every factor"),
    ("results/ferplus/edge_budget_calib_48px.json", "earlier default (stem G, full-run HR)",
     "G in INT8, calibrated on 48 px faces only"),
    ("results/ferplus/edge_budget_flip.json", "shipped default with the test-time flip folded in (`fsrfer-export --flip`)",
     "G in INT8, the conv reading the image in float, calibrated on small crops at every factor"),
    ("results/default_model/previous_lrgr/edge_budget_flip.json", "previous default (`lrg_rec3000` on the 60-epoch HR "
     "network) with the flip", "G in INT8, the conv reading the image in float, calibrated on small crops at every factor"),
    ("results/default_model/previous_round/edge_budget_flip.json", "previous default (`bn`, estimator on whole grey levels) "
     "with the flip", "G in INT8, the conv reading the image in float, calibrated on small crops at every factor"),
    ("results/default_model/previous_bn/edge_budget_flip.json", "previous default (estimator on float statistics) with the flip",
     "G in INT8, the conv reading the image in float, calibrated on small crops at every factor"),
    ("results/ferplus/edge_budget_flip_image_conv_int8.json", "previous default (estimator on float statistics) with the flip, "
     "before the image conv stayed in float",
     "G and the conv reading the image in INT8, calibrated on small crops at every factor"),
    ("results/ferplus/edge_budget_layer1_g_int8.json", "layer1 G, before the layer4 fix", "G in INT8, 48 px calibration"),
    ("results/ferplus/edge_budget_g_float.json", "layer1 G, before the layer4 fix", "G in float, 48 px calibration"),
    ("results/ferplus/edge_budget_estimator_quantized.json", "layer1 G, before the layer4 fix",
     "G, FiLM and factor estimator in INT8, 48 px calibration"),
)


def edge_budget_table(_: dict[str, Any]) -> str:
    """Issue 12's edge budget, one row per committed scripts/edge_budget.py run."""
    lines = ["| candidate | INT8 u8s8 file | candidate FP32 / reference FP32 | INT8 / FP32 | INT8 drop per factor (points) | rounds | load | command |",
             "|---|---|---:|---:|---|---:|---|---|"]
    for src, cand, what in EDGE_FILES:
        path = REPO / src
        if not path.is_file():
            continue
        d = json.loads(path.read_text())
        r, drop = d["ratios"], d["accuracy"]["int8_drop"]["points_per_factor"]
        loads = [m["load_before"] for rnd in d["throughput"]["rounds"] for m in rnd.values()
                 if isinstance(m, dict) and "load_before" in m]
        load = f"{min(loads):.1f}-{max(loads):.1f}" if loads else "-"
        lines.append(f"| {cand} | {what} (`{src}`) | {r['candidate_fp32_vs_reference_fp32']['of_medians']:.2f} | "
                     f"{r['candidate_int8_vs_candidate_fp32']['of_medians']:.2f} | "
                     + ", ".join(f"x{f} {v:+.2f}" for f, v in sorted(drop.items(), key=lambda kv: int(kv[0])))
                     + f" | {len(d['throughput']['rounds'])} | {load} | `{d['command']}` |")
    return ("Targets: FP32 at least 0.7x the reference's ONNX Runtime CPU throughput at batch 64, INT8 at least "
            "3x its FP32 file, at most 0.5 point lost (FER+ test). The reference is the default shipped when issue "
            "12 was filed, the layer3 G (`git show 8720f15:fsrfer_edge/models/default.onnx > "
            "engines/previous_default.fp32.onnx`; before that commit the shipped default itself). Each file is "
            "timed in its own process in interleaved rounds; the layer1-G rows are the earlier candidate, from "
            "before the frozen stages above G were quantized:\n\n"
            + "\n".join(lines) + "\n")


def _flip_rows(doc: dict[str, Any], src: str, names: Optional[dict[str, str]] = None) -> list[str]:
    """One scripts/flip_tta.py file as a table: each model plain, flip averaged, and the gain."""
    factors = sorted(doc["rows"]["fsrfer"]["plain"], key=int)
    names = names or {"hr": "frozen HR model", "fsrfer": "shipped FSR-FER"}
    lines = [f"FER+ {doc['split']} ({doc['n']} faces, protocol (a)), accuracy in %, from `{src}` "
             f"(`{doc['command']}`; PyTorch, the true factor given to FiLM):\n",
             "| model | " + " | ".join(f"x{f}" for f in factors) + " | mean |", "|---|" + "---:|" * (len(factors) + 1)]
    for key, row in doc["rows"].items():
        for variant in ("plain", "flip"):
            acc = row[variant]
            lines.append(f"| {names.get(key, key)}, {'flip averaged' if variant == 'flip' else 'plain'} | "
                         + " | ".join(f"{acc[f]:.2f}" for f in factors) + f" | {sum(acc[f] for f in factors) / len(factors):.2f} |")
        lines.append(f"| {names.get(key, key)}, **gain** | " + " | ".join(f"{row['gain'][f]:+.2f}" for f in factors) + " | |")
    return lines


def flip_table(doc: dict[str, Any]) -> str:
    """What a test-time flip buys (scripts/flip_tta.py on val, and on test where that file exists; the
    flipped graph on test from its edge-budget run, beside the shipped graph's test file) and what it
    costs (that run's throughput ratio)."""
    lines = _flip_rows(doc, FLIP_VAL)
    if (REPO / FLIP_SEED1).is_file():
        lines += ["", "The same on val for seed 1 of the previous default's configuration (`configs/ferplus_soft_aug_early_g_stem_camera_6ep.yaml`) "
                  "and its equal-budget LR-fine-tuned baseline, both checkpoints of that run:\n"]
        lines += _flip_rows(json.loads((REPO / FLIP_SEED1).read_text()), FLIP_SEED1,
                            {"hr": "frozen HR model", "fsrfer": "FSR-FER, seed 1", "lr_finetune": "LR-fine-tuned baseline, seed 1"})
    if (REPO / FLIP_TEST).is_file():
        lines += [""] + _flip_rows(json.loads((REPO / FLIP_TEST).read_text()), FLIP_TEST)
    edge = REPO / FLIP_EDGE
    if edge.is_file():
        e = json.loads(edge.read_text())
        flip = {f: 100 * v for f, v in e["accuracy"]["candidate_fp32"].items()}
        factors = sorted(flip, key=int)
        plain = _accuracies(REPO / "results" / "default_model" / "test.json")
        ratio = e["ratios"]["candidate_fp32_vs_reference_fp32"]["of_medians"]
        lines += ["", f"FER+ test ({e['accuracy']['n']} faces, protocol (a)), the exported FP32 graphs on ONNX Runtime "
                  f"CPU (each face's factor from the graph's estimator): the shipped `default.onnx` "
                  f"(`results/default_model/test.json`) and the same model exported with `--flip` (`{FLIP_EDGE}`; "
                  f"its FP32 throughput is {ratio:.2f}x the edge budget's reference):\n",
                  "| graph | " + " | ".join(f"x{f}" for f in factors) + " | mean |", "|---|" + "---:|" * (len(factors) + 1)]
        for label, acc in (("shipped", plain), ("shipped, `--flip`", flip)):
            lines.append(f"| {label} | " + " | ".join(f"{acc[f]:.2f}" for f in factors)
                         + f" | {sum(acc[f] for f in factors) / len(factors):.2f} |")
        lines.append("| **gain** | " + " | ".join(f"{flip[f] - plain[f]:+.2f}" for f in factors) + " | |")
    return "\n".join(lines) + "\n"


def camera_gap_table(doc: dict[str, Any]) -> str:
    """Protocol (c) taken apart (scripts/camera_gap.py): accuracy per factor, and its change from the bicubic
    small crops of protocol (b), as the crop goes from bicubic to area down-sampling to JPEG."""
    rows = doc["rows"]
    first = rows[0]["accuracy"]
    factors = sorted(first, key=int)
    lines = [f"FER+ {doc['split']} ({doc['n']} faces), `{doc['model']['path']}` on small crops through the SDK's "
             f"preprocessing, accuracy in % (change from the first row in points), from `{CAMERA_GAP}` "
             f"(`{doc['command']}`):\n",
             "| crop | " + " | ".join(f"x{f}" for f in factors) + " |", "|---|" + "---:|" * len(factors)]
    for row in rows:
        acc = row["accuracy"]
        lines.append(f"| {row['crop']} | " + " | ".join(
            f"{acc[f]:.2f}" + ("" if acc is first else f" ({acc[f] - first[f]:+.2f})") for f in factors) + " |")
    return "\n".join(lines) + "\n"



JPEG_CROPS = "results/ferplus/jpeg_crops_val.json"


def jpeg_crops_table(doc: dict[str, Any]) -> str:
    """scripts/jpeg_crops.py: accuracy per crop kind and factor with the SDK's JPEG step off and at each
    candidate sigma, the rule's score and constraints, and what was decided."""
    acc, changed = doc["accuracy"], doc["changed"]
    factors = list(acc["off"][next(iter(acc["off"]))])
    names = list(acc)
    lines = ["| crop | soften_jpeg | " + " | ".join(f"x{f}" for f in factors) + " | crops softened (x1, x6) |",
             "|---|---|" + "---:|" * (len(factors) + 1)]
    def order(row: str) -> tuple[int, int]:  # bicubic (b), area, then the JPEG rows by falling quality
        quality = re.search(r"q(\d+)", row)
        return (2, -int(quality.group(1))) if quality else (0 if row.startswith("bicubic") else 1, 0)

    for row in sorted(acc["off"], key=order):
        for name in names:
            if name != "off" and not any(changed[name][row].values()):
                continue  # a candidate that touched no crop of this row: the row "off" says it
            cells = " | ".join(f"{acc[name][row][f]:.2f}" + ("" if name == "off" else
                                                               f" ({acc[name][row][f] - acc['off'][row][f]:+.2f})")
                               for f in factors)
            n = doc["n"]
            share = "" if name == "off" else \
                f"{100 * changed[name][row][factors[0]] / n:.0f}%, {100 * changed[name][row][factors[-2]] / n:.0f}%"
            label = "off" if name == "off" else f"{doc['candidates'][name]['soften_jpeg']:g}"
            lines.append(f"| {row} | {label} | {cells} | {share} |")
    scores = ", ".join(f"{k} {v:.2f}" + ("" if doc["ok"][k] else " (fails a constraint)") for k, v in doc["score"].items())
    pick = doc["pick"]
    decided = ("adopted" if doc["adopted"] else "not adopted (under the 1.0-point bar)") if pick else "nothing eligible"
    return (f"FER+ {doc['split']} ({doc['n']} faces), accuracy in % (change from off in points), from `{JPEG_CROPS}` "
            f"(`{doc['command']}`; the shipped model, sha256 {doc['model']['sha256'][:12]}); small crops through the "
            f"SDK; rows where a sigma softened no crop show off only. The rule's score (mean over the JPEG rows and "
            f"factors): {scores}; pick {pick}, {decided}:\n\n" + "\n".join(lines) + "\n")


TEMPORAL_VIEWS = "results/ferplus/temporal_views_val.json"


def temporal_views_table(doc: dict[str, Any]) -> str:
    """scripts/temporal_views.py: one frame's accuracy and each weighted mean's over a clip, per row and factor,
    and the rule's reading."""
    acc = doc["accuracy"]
    rows = sorted(acc, key=lambda r: (r != "clean", r))  # the file's keys are sorted: clean first again

    def order(name: str) -> tuple[int, float]:  # one frame, then probs and log by half-life, a plain mean last
        if name == "one frame":
            return (0, 0.0)
        agg, life = name.split(", half_life ")
        return (1 if agg == "probs" else 2, float("inf") if life == "none" else float(life))

    answers = sorted(acc[rows[0]], key=order)
    factors = sorted(acc[rows[0]]["one frame"], key=int)
    lines = ["| frames | answer | " + " | ".join(f"x{f}" for f in factors) + " | mean x2..x8 |",
             "|---|---|" + "---:|" * (len(factors) + 1)]
    for row in rows:
        one = acc[row]["one frame"]
        for name in answers:
            a = acc[row][name]
            lr = [f for f in factors if f != "1"]
            gain = sum(a[f] - one[f] for f in lr) / len(lr)
            cells = " | ".join(f"{a[f]:.2f}" + ("" if name == "one frame" else f" ({a[f] - one[f]:+.2f})")
                               for f in factors)
            mean = f"{sum(a[f] for f in lr) / len(lr):.2f}" + ("" if name == "one frame" else f" ({gain:+.2f})")
            lines.append(f"| {row} | {name} | {cells} | {mean} |")
        lines.append(f"| {row} | faces whose frames disagree (%) | "
                     + " | ".join(f"{doc['unsteady'][row][f]:.1f}" for f in factors) + " | |")
    pick = doc["pick"]
    gains = ", ".join(f"{r} {v:+.2f}" for r, v in doc["gain_over_one_frame"][pick].items())
    decided = "adopted" if doc["adopted"] else "not adopted"
    return (f"FER+ {doc['split']} ({doc['n']} faces), accuracy in % (change from one frame in points), from "
            f"`{TEMPORAL_VIEWS}` (`{doc['command']}`; the shipped model, sha256 {doc['model']['sha256'][:12]}); clips "
            f"of {doc['frames']} frames, each frame shifted at random by up to half a small-face pixel, shrunk by area "
            f"averaging, noise of {doc['noise_grey_levels']:g} grey levels; camera: then JPEG quality "
            f"{doc['jpeg_quality']}; the means read at the last frame. The rule's pick at half_life "
            f"{doc['rule_half_life']:g}: {pick}, over x2..x8 {gains}, the worst change at any factor "
            f"{doc['worst_change_any_factor'][pick]:+.2f}: {decided}:\n\n" + "\n".join(lines) + "\n")


CROWD_CLIPS = "results/crowd/clips.json"


def crowd_clips_table(doc: dict[str, Any]) -> str:
    """scripts/crowd_clips.py: per face size, faces kept on one track, and accuracy over frames 2-8 frame by frame,
    tracked, and tracked as by default (coasting 2 frames, confirmed after 2) when the file has that run."""
    labelled, n = doc["labelled"], doc["frames"]
    runs = [r for r in ("one frame", "tracked", "tracked, coast 2, confirm 2") if r in doc["runs"]]
    head = "| frames | face size (px) | faces | found at the last frame | kept one track (of those found twice or more) |"
    lines = [head + ("".join(f" accuracy, {r} |" for r in runs) if labelled else ""),
             "|---|---|" + "---:|" * (3 + (len(runs) if labelled else 0))]
    for row, bins in doc["rows"].items():
        for b in bins:
            cells = [row, b["bin"], str(b["faces"]), str(b["found_at_last_frame"]),
                     f"{b['one_track']} of {b['found_in_2_or_more_frames']}"]
            if labelled:
                first = b[f"accuracy frames 2-{n} one frame"]
                for i, r in enumerate(runs):
                    a = b[f"accuracy frames 2-{n} {r}"]
                    cells.append("-" if a is None else f"{a:.2f}" + ("" if i == 0 or first is None else f" ({a - first:+.2f})"))
            lines.append("| " + " | ".join(cells) + " |")
        ff = doc["false_faces_per_frame"][row]
        lines.append(f"| {row} | false faces per frame | | | | " + " | ".join(f"{ff[r]:.3f}" for r in runs) + " |")
    return (f"`{CROWD_CLIPS}` (`{doc['command']}`): {doc['clips']} clips per row of {n} frames "
            f"({doc['frame_size'][0]}x{doc['frame_size'][1]}, up to {doc['faces_per_clip']} faces from "
            f"{doc['faces_from']}), each face drifting at up to {doc['max_speed_px_per_frame']:g} px a frame, noise "
            f"of {doc['noise_grey_levels']:g} grey levels; jpeg: each frame then JPEG quality {doc['jpeg_quality']}; "
            f"the default detector and model; accuracy in % over frames 2-{n} and all true faces, a missed face "
            "counted wrong (change from one frame in points); runs: "
            + ", ".join(f"{r} = {doc['runs'][r]}" for r in runs) + ":\n\n" + "\n".join(lines) + "\n")


def crowd_coast_table(doc: dict[str, Any]) -> str:
    """scripts/crowd_clips.py: accuracy over frames 2-8 per face size for each run, and false faces per frame."""
    runs = list(doc["runs"])
    n = doc["frames"]
    lines = ["| frames | face size (px) | faces | " + " | ".join(f"accuracy, {r}" for r in runs) + " |",
             "|---|---|---:|" + "---:|" * len(runs)]
    for row, bins in doc["rows"].items():
        for b in bins:
            first = b[f"accuracy frames 2-{n} {runs[0]}"]
            cells = [("-" if b[f"accuracy frames 2-{n} {r}"] is None else f"{b[f'accuracy frames 2-{n} {r}']:.2f}"
                      + ("" if i == 0 or first is None else f" ({b[f'accuracy frames 2-{n} {r}'] - first:+.2f})"))
                     for i, r in enumerate(runs)]
            lines.append(f"| {row} | {b['bin']} | {b['faces']} | " + " | ".join(cells) + " |")
        ff = doc["false_faces_per_frame"][row]
        lines.append(f"| {row} | false faces per frame | | " + " | ".join(f"{ff[r]:.3f}" for r in runs) + " |")
    return (f"`{doc['command'].split('--out ')[-1]}` (`{doc['command']}`): {doc['clips']} clips per row of {n} frames, "
            f"as the table above; accuracy in % over frames 2-{n} and all true faces, a missed face counted wrong "
            f"(change from one frame in points); runs: " + ", ".join(f"{k} = {v}" for k, v in doc["runs"].items())
            + ":\n\n" + "\n".join(lines) + "\n")


def crowd_switch_table(doc: dict[str, Any]) -> str:
    """scripts/crowd_clips.py --switch-at: accuracy at each frame of the clips, per run, around the frame where
    every face changes its expression."""
    k, n = doc["switch_at_frame"], doc["frames"]
    lines = ["| frames | run | " + " | ".join(f"frame {t}" + (" (changed)" if t == k else "") for t in range(1, n + 1))
             + " |", "|---|---|" + "---:|" * n]
    for row, runs in doc["accuracy_by_frame"].items():
        for run, accs in runs.items():
            lines.append(f"| {row} | {run} | " + " | ".join(f"{a:.2f}" for a in accs) + " |")
    return (f"`{doc['command'].split('--out ')[-1]}` (`{doc['command']}`): {doc['clips']} clips per row of {n} frames, "
            f"as the crowd clips above, every face replaced from frame {k} on by a face of another expression at the "
            "same place; accuracy in % over all true faces at each frame (a missed face counted wrong); runs: "
            + ", ".join(f"{r} = {v}" for r, v in doc["runs"].items()) + ":\n\n" + "\n".join(lines) + "\n")


def crowd_walk_table(doc: dict[str, Any]) -> str:
    """scripts/crowd_walk.py: per row and for every face or the crossing ones, each run's faces kept on one track,
    identity switches and accuracy, and false faces per frame."""
    runs = list(doc["runs"])
    tracked = [r for r in runs if r != "one frame"]
    labelled, n = doc["labelled"], doc["frames"]
    head = ("| frames | faces | " + " | ".join(f"kept one track, {r}" for r in tracked) + " | "
            + " | ".join(f"identity switches, {r}" for r in tracked)
            + "".join(f" | {'accuracy, ' if labelled else ''}{r}" for r in runs) + " |")
    lines = [head, "|---|---|" + "---:|" * (2 * len(tracked) + len(runs))]
    for row, entry in doc["rows"].items():
        for sub in ("all", "crossing"):
            e = entry[sub]
            cells = [row, f"{'every face' if sub == 'all' else 'crossing'} ({entry['faces' if sub == 'all' else 'crossing_faces']})"]
            cells += [f"{e[r]['one_track']} of {e[r]['faces_followed']}" for r in tracked]
            cells += [str(e[r]["identity_switches"]) for r in tracked]
            if labelled:
                first = e[runs[0]]["accuracy"]
                cells += [f"{e[r]['accuracy']:.2f}" + ("" if i == 0 else f" ({e[r]['accuracy'] - first:+.2f})")
                          for i, r in enumerate(runs)]
            else:  # the runs' columns hold only the false faces
                cells += [""] * len(runs)
            lines.append("| " + " | ".join(cells) + " |")
        ff = entry["false_faces_per_frame"]
        lines.append("| " + " | ".join([row, "false faces per frame"] + [""] * (2 * len(tracked))
                                        + [f"{ff[r]:.3f}" for r in runs]) + " |")
    return (f"`{doc['command'].split('--out ')[-1]}` (`{doc['command']}`): {doc['clips']} clips per row of {n} frames "
            f"({doc['frame_size'][0]}x{doc['frame_size'][1]}, up to {doc['faces_per_clip']} faces from "
            f"{doc['faces_from']}), each face walking left or right within {doc['max_angle_degrees']:g} degrees of the "
            f"horizontal at {doc['pace_face_sides_per_frame'][0]:g}-{doc['pace_face_sides_per_frame'][1]:g} face sides "
            f"a frame, larger faces over smaller ones; jpeg: each frame then JPEG quality {doc['jpeg_quality']}; the "
            f"default detector and model; scored at frames 2-{n} over the faces at least half visible; kept one track: "
            "of the faces reported in 2 or more frames; accuracy in %, a face not reported counted wrong (change from "
            "one frame in points); crossing: faces whose box overlaps another face's in some frame; runs: "
            + ", ".join(f"{r} = {doc['runs'][r]}" for r in runs) + ":\n\n" + "\n".join(lines) + "\n")


#: Every walking-clip run with and without motion, each on its own seed.
WALK_SEEDS = ("results/crowd/walk.json", "results/crowd/walk_coast.json", "results/crowd/walk_weak.json",
              "results/crowd/walk_weak2.json", "results/crowd/walk_weak3.json", "results/crowd/walk_weak4.json")


def crowd_motion_seeds_table(_: dict[str, Any]) -> str:
    """Motion against no motion on every walking-clip file (one seed each): accuracy change and identity switches
    kept, per seed, with the mean and standard deviation over seeds."""
    docs = [json.loads((REPO / f).read_text()) for f in WALK_SEEDS]
    lines = ["| frames | " + " | ".join(f"seed {d['seed']}" for d in docs) + " | mean ± sd |",
             "|---|" + "---:|" * (len(docs) + 1)]
    for row in docs[0]["rows"]:
        gains = [d["rows"][row]["all"]["tracked, motion"]["accuracy"] - d["rows"][row]["all"]["tracked"]["accuracy"]
                 for d in docs]
        kept = [d["rows"][row]["all"]["tracked, motion"]["identity_switches"]
                / d["rows"][row]["all"]["tracked"]["identity_switches"] for d in docs]
        lines.append(f"| {row}: accuracy change (points) | " + " | ".join(f"{g:+.2f}" for g in gains)
                     + f" | {statistics.mean(gains):+.2f} ± {statistics.stdev(gains):.2f} |")
        lines.append(f"| {row}: identity switches kept | " + " | ".join(f"{k:.2f}" for k in kept)
                     + f" | {statistics.mean(kept):.2f} ± {statistics.stdev(kept):.2f} |")
    return ("Motion (`FaceTracker()`) against no motion (`FaceTracker(motion=False)`) on every walking-clip run, "
            "one seed each (" + ", ".join(f"`{f}`" for f in WALK_SEEDS) + "): accuracy change in points over every "
            "face, and the share of identity switches left:\n\n" + "\n".join(lines) + "\n")


#: Detecting every N-th frame: walking clips of 12 and of 36 frames (scripts/crowd_walk.py), drifting clips of 8.
EVERY = ("results/crowd/walk_every.json", "results/crowd/walk_every_long.json", "results/crowd/walk_every_long2.json",
         "results/crowd/clips_every.json")


def crowd_every_table(_: dict[str, Any]) -> str:
    """Detecting every N-th frame (``analyze_stream(detect_every=N)``) against every frame, on walking and on
    drifting clips: accuracy, false faces, identity switches (walking), detection and recognition ms per frame."""
    lines = ["| clips | frames | run | accuracy | false faces per frame | identity switches | ms per frame | speed-up |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    sources = []
    for path in EVERY:
        doc = json.loads((REPO / path).read_text())
        walking = "pace_face_sides_per_frame" in doc  # crowd_walk.py's files; crowd_clips.py's keep rows as bins
        kind = f"{'walking' if walking else 'drifting'}, {doc['frames']} frames, seed {doc['seed']}"
        sources.append(f"`{path}` (`{doc['command']}`: {doc['clips']} {kind.split(',')[0]} clips per row of "
                       f"{doc['frames']} frames, seed {doc['seed']}; "
                       + doc["ms_per_frame_note"].split("machine: ")[-1] + ")")
        for row in doc["rows"]:
            if walking:
                ms, false = doc["rows"][row]["ms_per_frame"], doc["rows"][row]["false_faces_per_frame"]
                acc = {n: v["accuracy"] for n, v in doc["rows"][row]["all"].items()}
                switches = {n: v.get("identity_switches") for n, v in doc["rows"][row]["all"].items()}
            else:
                ms, false = doc["ms_per_frame"][row], doc["false_faces_per_frame"][row]
                every_face = next(b for b in doc["rows"][row] if b["bin"] == "all")
                scored = f"accuracy frames 2-{doc['frames']} "
                acc = {k[len(scored):]: v for k, v in every_face.items() if k.startswith(scored)}
                switches = {}
            base = next(n for n in acc if n.endswith("motion"))  # every frame, the tracker's defaults
            for n in acc:
                if n != "one frame" and n != base and "detect every" not in n:
                    continue
                label = "one frame" if n == "one frame" else (
                    "tracked, every frame" if n == base else f"tracked, detect every {n.rsplit(' ', 1)[-1]}")
                change = "" if n in (base, "one frame") else f" ({acc[n] - acc[base]:+.2f})"
                sw = switches.get(n)
                lines.append(f"| {kind} | {row} | {label} | {acc[n]:.2f}{change} | {false[n]:.3f} | "
                             f"{'' if sw is None else sw} | {ms[n]:.1f} | {ms[base] / ms[n]:.2f}x |")
    return ("Detecting every N-th frame (`analyze_stream(detect_every=N)`, tracked with the defaults) against every "
            "frame, one seed per file, from " + "; ".join(sources) + ". Walking clips are scored over the faces at "
            "least half visible from their second frame on, drifting clips over every face at frames 2-8; accuracy in "
            "%, a face not reported counted wrong (change from every frame in points); ms per frame: detection and "
            "recognition (one process, the same ONNX Runtime sessions for every run, never two at once, the runs taking "
            "turns clip by clip), and the speed-up over every frame:\n\n"
            + "\n".join(lines) + "\n")


JPEG_DETECTION = "results/ferplus/jpeg_detection_train.json"


def jpeg_detection_table(doc: dict[str, Any]) -> str:
    """scripts/jpeg_detection.py: the share of crops preprocessing.jpeg_quality marks, per crop kind and factor."""
    marked = doc["marked"]
    factors = sorted({f for row in marked.values() for f in row}, key=int)
    lines = ["| crop | " + " | ".join(f"x{f}" for f in factors) + " |", "|---|" + "---:|" * len(factors)]
    for kind, row in marked.items():
        lines.append(f"| {kind} | " + " | ".join(f"{row[f]:.1f}" if f in row else "" for f in factors) + " |")
    return (f"{doc['faces']}, % of crops marked as JPEG images, from `{JPEG_DETECTION}` (`{doc['command']}`; "
            f"qualities tested {doc['qualities_tested'][0]}-{doc['qualities_tested'][-1]}):\n\n"
            + "\n".join(lines) + "\n")

#: Protocol (c)'s specialist (configs/ferplus_soft_aug_camera_q50_lrft.yaml: the equal-budget baseline trained on
#: area + JPEG q50 only), beside the shipped graph (routed, val) and the mixed-trained equal-budget baseline of the
#: same seed (the row of the GPU/CPU runs file), and the rule in its config.
CAMERA_SPECIALIST = "results/ferplus/camera_q50_lrft_val.json"
CAMERA_MIXED = ("results/ferplus/early_g_gpu_lr.json", "6ep/lr_finetune")
CAMERA_RULE_FACTORS = ("2", "3", "4")
CAMERA_RULE_POINTS = 5.0


def _protocol_accuracy(doc: dict[str, Any], model: str) -> dict[str, dict[str, float]]:
    """{protocol: {factor: accuracy %}} of one model in a scripts/early_g.py --json file."""
    keys = {"resized": "results", "small": "results_small", "camera": "results_camera"}
    return {p: {f: 100 * v["accuracy"] for f, v in doc[k][model]["factors"].items()} for p, k in keys.items() if k in doc}


def camera_specialist_table(doc: dict[str, Any]) -> str:
    """(a) and (c) on val for the (c) specialist, the mixed-trained baseline and the shipped graph, and the
    specialist's (c) against the shipped graph's (a) at x2..x4 (the config's rule)."""
    seed = str(doc["config"]["seed"])
    spec = _protocol_accuracy(doc, "lr_finetune")
    mixed_path, mixed_row = CAMERA_MIXED
    mixed = json.loads((REPO / mixed_path).read_text())["rows"][mixed_row]["runs"]
    mixed = {p: mixed[p][seed] for p in ("resized", "camera")}
    shipped_path = "results/ferplus/route_hr_lrgr0_val.json"
    shipped = json.loads((REPO / shipped_path).read_text())["accuracy"]["routed"]
    factors = sorted(spec["resized"], key=int)
    lines = [f"FER+ val, accuracy in %, seed {seed}: the specialist from `{CAMERA_SPECIALIST}` (`python "
             "scripts/early_g.py --config configs/ferplus_soft_aug_camera_q50_lrft.yaml --out RUN --steps "
             f"baselines,eval --json {CAMERA_SPECIALIST}`), the mixed-trained baseline from `{mixed_path}` (row "
             f"`{mixed_row}`), the shipped graph of the time (the default of 2026-12-04, routed) from `{shipped_path}`:\n",
             "| model | protocol | " + " | ".join(f"x{f}" for f in factors) + " |", "|---|---|" + "---:|" * len(factors)]
    for label, acc in (("LR-fine-tuned on (c)'s degradation only", spec),
                       ("LR-fine-tuned on the training mix (equal budget)", mixed), ("shipped FSR-FER", shipped)):
        for p, pl in (("resized", "(a)"), ("camera", "(c)")):
            lines.append(f"| {label} | {pl} | " + " | ".join(f"{acc[p][f]:.2f}" for f in factors) + " |")
    gaps = {f: shipped["resized"][f] - spec["camera"][f] for f in CAMERA_RULE_FACTORS}
    out = [f for f, g in gaps.items() if g > CAMERA_RULE_POINTS]
    lines += ["", "The rule (its config): the specialist's (c) below the shipped graph's (a) by "
              + ", ".join(f"{g:.2f} at x{f}" for f, g in gaps.items())
              + f"; more than {CAMERA_RULE_POINTS:g} points at "
              + (", ".join(f"x{f}" for f in out) if out else "no factor")
              + (": out of reach by the training mix there." if out else ".")]
    return "\n".join(lines) + "\n"


#: The shipped configuration at twice the equal budget (configs/..._12ep_bn_lrg_rec3000.yaml, one seed, a screen):
#: its margin over its own 12-epoch baseline against the 6-epoch margin of the same seed (CAMERA_MIXED's file).
EARLY_G_12EP = "results/ferplus/early_g_12ep_val.json"
SCREEN_FACTORS = ("2", "3", "4", "6", "8")
SCREEN_MIN_GAIN = 0.3


def _accuracy_row(label: str, what: str, acc: dict[str, float], factors: Sequence[str], mean_over: Sequence[str],
                  sign: str = "") -> str:
    """A table row: label, model, ``acc`` per factor and its mean over ``mean_over`` (``sign``: "+" for differences)."""
    mean = sum(acc[f] for f in mean_over) / len(mean_over)
    return f"| {label} | {what} | " + " | ".join(f"{acc[f]:{sign}.2f}" for f in factors) + f" | {mean:{sign}.2f} |"


def early_g_12ep_table(doc: dict[str, Any]) -> str:
    """Accuracy of the 12-epoch method and baseline per protocol, their margin, the 6-epoch margin of the same
    seed, and the screen rule in the config."""
    seed = str(doc["config"]["seed"])
    g, b = _protocol_accuracy(doc, "fsrfer"), _protocol_accuracy(doc, "lr_finetune")
    rows = json.loads((REPO / CAMERA_MIXED[0]).read_text())["rows"]
    g6, b6 = rows["lrg_rec3000/fsrfer"]["runs"], rows["6ep/lr_finetune"]["runs"]
    factors = sorted(g["resized"], key=int)
    names = {"resized": "(a) resized back", "small": "(b) small crops", "camera": "(c) camera-like crops"}
    lines = [f"FER+ val, accuracy in %, seed {seed}, from `{EARLY_G_12EP}` (`python scripts/early_g.py --config "
             "configs/ferplus_soft_aug_early_g_stem_camera_12ep_bn_lrg_rec3000.yaml --out RUN --steps "
             f"stage2,baselines,eval --json {EARLY_G_12EP}`); the 6-epoch margins from `{CAMERA_MIXED[0]}` "
             "(`lrg_rec3000/fsrfer` minus `6ep/lr_finetune`, the same seed):\n",
             "| protocol | model | " + " | ".join(f"x{f}" for f in factors) + " | mean x2..x8 |",
             "|---|---|" + "---:|" * (len(factors) + 1)]

    def row(label: str, what: str, acc: dict[str, float], sign: str = "") -> str:
        return _accuracy_row(label, what, acc, factors, SCREEN_FACTORS, sign)

    gains = {}
    for p, label in names.items():
        m12 = {f: g[p][f] - b[p][f] for f in factors}
        m6 = {f: g6[p][seed][f] - b6[p][seed][f] for f in factors}
        gains[p] = sum(m12[f] - m6[f] for f in SCREEN_FACTORS) / len(SCREEN_FACTORS)
        lines += [row(label, "FSR-FER, 12 epochs", g[p]), row(label, "LR-fine-tuned, 12 epochs", b[p]),
                  row(label, "**margin, 12 epochs**", m12, "+"), row(label, "margin, 6 epochs", m6, "+")]
    met = all(gains[p] >= SCREEN_MIN_GAIN for p in ("resized", "small"))
    lines += ["", "The screen (its config): the 12-epoch margin's mean over x2..x8 minus the 6-epoch one, "
              + ", ".join(f"{gains[p]:+.2f} under {names[p].split()[0]}" for p in names)
              + f"; at least +{SCREEN_MIN_GAIN} under (a) and (b) to be worth seeds 1-2 on a GPU: "
              + ("met." if met else "not met, so reported only.")]
    return "\n".join(lines) + "\n"


#: One-seed CPU screens of a stage-2 change to the shipped configuration (scripts/early_g.py --steps stage2,eval
#: --json FILE), as (file, config). kd10 is read against the mean of the shipped configuration's two seed-0 runs on
#: the 60-epoch HR network (SHIPPED_SEED0 of CAMERA_MIXED's file) by the rules' mean; nce and warmup against the shipped
#: configuration's seed 0 on the 120-epoch HR network (HR120_REFERENCE) by its margins over the baseline.
KD10 = ("results/ferplus/early_g_kd10_val.json", "configs/ferplus_soft_aug_early_g_stem_camera_6ep_bn_lrg_rec3000_kd10.yaml")
NCE = ("results/ferplus/early_g_nce_val.json", "configs/ferplus_soft_aug_early_g_stem_camera_6ep_bn_lrg_rec3000_nce.yaml")
WARMUP = ("results/ferplus/early_g_warmup_val.json", "configs/ferplus_soft_aug_early_g_stem_camera_6ep_bn_lrg_rec3000_warmup.yaml")
KD8X = ("results/ferplus/early_g_kd8x_val.json", "configs/ferplus_soft_aug_early_g_stem_camera_6ep_bn_lrg_rec3000_kd8x.yaml")
RW4 = ("results/ferplus/early_g_rw4_val.json", "configs/ferplus_soft_aug_early_g_stem_camera_6ep_bn_lrg_rec3000_rw4.yaml")
KDT4 = ("results/ferplus/early_g_kdt4_val.json", "configs/ferplus_soft_aug_early_g_stem_camera_6ep_bn_lrg_rec3000_kdt4.yaml")
HEAD100 = ("results/ferplus/early_g_head100_val.json",
           "configs/ferplus_soft_aug_early_g_stem_camera_6ep_bn_lrg_rec3000_head100.yaml")
ADV100 = ("results/ferplus/early_g_adv100_val.json", "configs/ferplus_soft_aug_early_g_stem_camera_6ep_bn_lrg_rec3000_adv100.yaml")
SHIPPED_SEED0 = ("lrg_rec3000/fsrfer", "lrg_rec3000_rerun/fsrfer")


class ScreenReference(NamedTuple):
    """What a stage-2 screen is read against: a scripts/early_g_summary.py file, the rows whose same-seed runs
    (their mean) are the shipped configuration, the equal-budget baseline's row, and the screen's rule: "mean"
    (the rules' mean, x1..x8 x three protocols, of the screen minus the shipped configuration) or "margin" (the
    screen's margin over the baseline averaged over x2..x8 minus the shipped configuration's, under (a) and
    under (b)) or "x8" (the screen's x8 margin over the baseline minus the shipped configuration's at least
    :data:`SCREEN_X8_GAIN`, and its margin averaged over x2..x6 no more than :data:`SCREEN_X8_OTHERS` below,
    under (a) and under (b))."""

    path: str
    rows: tuple[str, ...]
    baseline: str
    rule: str


KD10_REFERENCE = ScreenReference(CAMERA_MIXED[0], SHIPPED_SEED0, CAMERA_MIXED[1], "mean")
HR120_REFERENCE = ScreenReference("results/ferplus/early_g_hr120_val.json", ("hr120/fsrfer",), "hr120/lr_finetune", "margin")
HR120_X8_REFERENCE = HR120_REFERENCE._replace(rule="x8")
#: The "x8" rule's lines (configs/..._lrg_rec3000_kd8x.yaml).
SCREEN_X8_GAIN, SCREEN_X8_OTHERS = 0.5, 0.2


def stage2_screen_table(doc: dict[str, Any], config: str, ref_spec: ScreenReference = KD10_REFERENCE) -> str:
    """A one-seed stage-2 screen against the shipped configuration's same-seed runs (their mean) per protocol,
    the margins over the equal-budget baseline of the same seed, and the screen's rule (``ref_spec.rule``)."""
    seed = str(doc["config"]["seed"])
    cand = _protocol_accuracy(doc, "fsrfer")
    rows = json.loads((REPO / ref_spec.path).read_text())["rows"]
    ref = {p: {f: sum(rows[r]["runs"][p][seed][f] for r in ref_spec.rows) / len(ref_spec.rows) for f in cand[p]}
           for p in cand}
    base = {p: rows[ref_spec.baseline]["runs"][p][seed] for p in cand}
    factors = sorted(cand["resized"], key=int)
    named = " and ".join(f"`{r}`" for r in ref_spec.rows)
    lines = [f"FER+ val, accuracy in %, seed {seed}, from `{doc['source']}` (`python scripts/early_g.py --config {config} "
             f"--out RUN --steps stage2,eval --json {doc['source']}`); the shipped configuration's seed {seed} is "
             + (f"the mean of rows {named}" if len(ref_spec.rows) > 1 else f"row {named}")
             + f" of `{ref_spec.path}`, the baseline its row `{ref_spec.baseline}`, the same seed:\n",
             "| protocol | model | " + " | ".join(f"x{f}" for f in factors) + " | mean |",
             "|---|---|" + "---:|" * (len(factors) + 1)]

    def row(label: str, what: str, acc: dict[str, float], sign: str = "") -> str:
        return _accuracy_row(label, what, acc, factors, factors, sign)

    diffs, margin_gain = [], {}
    small = [f for f in factors if f != "1"]
    for p in cand:
        label = PROTOCOL_NAMES[p]
        d = {f: cand[p][f] - ref[p][f] for f in factors}
        diffs += d.values()
        margin_gain[p] = sum(d[f] for f in small) / len(small)  # the baseline is common: margin minus margin
        lines += [row(label, "screen", cand[p]), row(label, "shipped configuration", ref[p]),
                  row(label, "**screen minus shipped configuration**", d, "+"),
                  row(label, "screen minus the baseline", {f: cand[p][f] - base[p][f] for f in factors}, "+"),
                  row(label, "shipped configuration minus the baseline", {f: ref[p][f] - base[p][f] for f in factors}, "+")]
    if ref_spec.rule == "mean":
        gain = sum(diffs) / len(diffs)
        lines += ["", f"The rule (its config): the rules' mean (x1..x8, three protocols) of the screen minus the shipped "
                  f"configuration, {gain:+.2f}; at least +{SCREEN_MIN_GAIN} to be worth seeds 1 and 2: "
                  + ("met." if gain >= SCREEN_MIN_GAIN else "not met, so reported only.")]
    elif ref_spec.rule == "x8":
        x8 = {p: (cand[p]["8"] - ref[p]["8"]) for p in cand}
        others = {p: sum(cand[p][f] - ref[p][f] for f in small if f != "8") / (len(small) - 1) for p in cand}
        met = all(x8[p] >= SCREEN_X8_GAIN and others[p] >= -SCREEN_X8_OTHERS for p in ("resized", "small"))
        lines += ["", "The rule (its config): the screen's x8 margin over the baseline minus the shipped configuration's, "
                  f"{x8['resized']:+.2f} under (a) and {x8['small']:+.2f} under (b), at least +{SCREEN_X8_GAIN}; its margin "
                  f"averaged over x2..x6 against the shipped configuration's, {others['resized']:+.2f} under (a) and "
                  f"{others['small']:+.2f} under (b), no more than {SCREEN_X8_OTHERS} below ((c), not in the rule: x8 "
                  f"{x8['camera']:+.2f}, x2..x6 {others['camera']:+.2f}); both to be worth seeds 1 and 2: "
                  + ("met." if met else "not met, so reported only.")]
    else:
        met = all(margin_gain[p] >= SCREEN_MIN_GAIN for p in ("resized", "small"))
        lines += ["", "The rule (its config): the screen's margin over the baseline averaged over x2..x8 minus the "
                  f"shipped configuration's, {margin_gain['resized']:+.2f} under (a) and {margin_gain['small']:+.2f} "
                  f"under (b) ({margin_gain['camera']:+.2f} under (c), not in the rule); at least +{SCREEN_MIN_GAIN} "
                  "under (a) and (b) to be worth seeds 1 and 2: " + ("met." if met else "not met, so reported only.")]
    return "\n".join(lines) + "\n"


#: The one-forward GAN step's check (docs/experiments.md "One forward of G per step"): its summary file and rows,
#: and the row of ABLATIONS_FILE that holds the two-forward step's seeds of the same configuration.
ONE_FORWARD = ("results/ferplus/early_g_one_forward_val.json", "two_forward/fsrfer", "one_forward/fsrfer")
ONE_FORWARD_SEEDS = "hr120/fsrfer"
#: How far the check lets the one-forward run's mean over factors and protocols drift from the two-forward run's
#: (points): under the shipped configuration's seed spread of that mean.
ONE_FORWARD_DRIFT = 0.3


def one_forward_table(doc: dict[str, Any]) -> str:
    """The same seed of the shipped configuration trained with the two-forward and the one-forward GAN step:
    accuracy per protocol and factor, the difference, each run's recorded stage-2 time, and the check."""
    _, old_name, new_name = ONE_FORWARD
    old, new = doc["rows"][old_name], doc["rows"][new_name]
    seed = sorted(new["runs"]["resized"], key=int)[0]
    factors = sorted(new["runs"]["resized"][seed], key=int)
    lines = [f"FER+ val, accuracy in %, seed {seed}, from `{doc['source']}` (`{doc['command']}`): {doc['note']}\n",
             "| protocol | step | " + " | ".join(f"x{f}" for f in factors) + " | mean |",
             "|---|---|" + "---:|" * (len(factors) + 1)]
    diffs = []
    for p, label in PROTOCOL_NAMES.items():
        a, b = old["runs"][p][seed], new["runs"][p][seed]
        d = {f: b[f] - a[f] for f in factors}
        diffs += d.values()
        lines += [_accuracy_row(label, "G twice per step (as trained before)", a, factors, factors),
                  _accuracy_row(label, "G once per step", b, factors, factors),
                  _accuracy_row(label, "**once minus twice**", d, factors, factors, "+")]
    drift = sum(diffs) / len(diffs)
    seeds = json.loads((REPO / ABLATIONS_FILE).read_text())["rows"][ONE_FORWARD_SEEDS]["runs"]
    outside = []
    for p, label in PROTOCOL_NAMES.items():
        for f in factors:
            span = [run[f] for run in seeds[p].values()]
            x = new["runs"][p][seed][f]
            if not min(span) - 1e-9 <= x <= max(span) + 1e-9:
                outside.append(f"{label[:3]} x{f} {x:.2f} ({min(span):.2f}-{max(span):.2f})")
    lines += ["", f"Against the {len(next(iter(seeds.values())))} seeds of the two-forward step (`{ABLATIONS_FILE}`, "
              "the README's ablation table), the one-forward run's cells outside their range: "
              + ("; ".join(outside) if outside else "none") + "."]
    t_old, t_new = old["cost"][seed]["seconds"], new["cost"][seed]["seconds"]
    lines += ["", f"Stage 2 on this CPU (pre-training epoch, unchanged, and the GAN epochs; each run's recorded cost, "
              f"one training at a time): {t_old / 60:.1f} min with G twice per step, {t_new / 60:.1f} min once "
              f"({t_new / t_old:.2f}x). The check: the mean over factors and protocols moved by {drift:+.2f}, within "
              f"{ONE_FORWARD_DRIFT}: " + ("met." if abs(drift) <= ONE_FORWARD_DRIFT else "**not met**.")]
    return "\n".join(lines) + "\n"


#: Model soups of the shipped model's seed-0 stage-2 ingredients (scripts/soup.py), each routed and evaluated by
#: scripts/route_hr_report.py on val beside the shipped graph's file, as (label, file).
SOUPS = (("the shipped graph of the time (lrg_rec3000 seed 0 on the 60-epoch HR network, routed)", "results/ferplus/route_hr_lrgr0_val.json"),
         ("soup of lrg_rec3000, lrg2_rec3000 and lrg_rec10000 (seed 0 each)", "results/ferplus/route_hr_soup3_val.json"),
         ("soup of lrg_rec3000 and lrg_rec10000 (seed 0 each)", "results/ferplus/route_hr_soup2_val.json"))


def soups_table(_: dict[str, Any]) -> str:
    """Each soup's routed mean over x2..x8 and the three protocols against the shipped graph's, and x1."""
    docs = [(label, path, json.loads((REPO / path).read_text())) for label, path in SOUPS]
    ref = docs[0][2]["checks"]["mean_x2_x8"]["routed"]
    lines = ["FER+ val, routed graphs as shipped (`python scripts/route_hr_report.py CHECKPOINT --split val --json FILE`), accuracy "
             "in %:\n", "| model | file | routed mean x2..x8, three protocols | against the shipped graph | x1 = HR model |",
             "|---|---|---:|---:|---|"]
    for label, path, d in docs:
        m = d["checks"]["mean_x2_x8"]["routed"]
        lines.append(f"| {label} | `{path}` | {m:.2f} | {m - ref:+.2f} | {'yes' if d['checks']['x1_met'] else 'no'} |")
    return "\n".join(lines) + "\n"


HR_RECIPES = "results/ferplus/hr_recipes_val.json"
#: The shipped HR recipe at 120 epochs against the recipe's three seeds (scripts/hr_recipes.py --runs-from).
HR_120EP = "results/ferplus/hr_120ep_val.json"


def hr_recipes_table(doc: dict[str, Any], source: str = HR_RECIPES) -> str:
    """Stage-1 recipes over seeds (scripts/hr_recipes.py): val accuracy per seed, mean and spread, and each
    variant against the reference recipe under its configs' rule."""
    rule = doc["rule"]
    lines = [f"FER+ val accuracy at x1 (%), from `{source}` (`python scripts/hr_recipes.py ...`, the full command "
             f"in the file); the rule: a candidate only at >= {rule['min_gain']} above `{rule['reference']}`'s mean with "
             "every seed above that mean:\n",
             "| recipe | seeds | mean ± std | against the reference | candidate |", "|---|---|---:|---:|---|"]
    for name, r in doc["recipes"].items():
        seeds = ", ".join(f"{v:.2f} (s{k})" for k, v in sorted(r["seeds"].items(), key=lambda kv: int(kv[0])))
        std = "" if r["std"] is None else f" ± {r['std']:.2f}"
        vs = r.get("against_reference")
        gain, cand = ("reference", "") if vs is None else (f"{vs['gain']:+.2f}", "yes" if vs["candidate"] else "no")
        lines.append(f"| `{name}` | {seeds} | {r['mean']:.2f}{std} | {gain} | {cand} |")
    return "\n".join(lines) + "\n"


def route_hr_table(doc: dict[str, Any]) -> str:
    """Routing HR faces through the frozen HR stages (scripts/route_hr_report.py): each protocol's accuracy
    per factor without and with the route, the HR model, and the route's change."""
    acc, c = doc["accuracy"], doc["checks"]
    factors = sorted(acc["routed"]["resized"], key=int)
    names = {"resized": "(a) resized back", "small": "(b) small crops", "camera": "(c) camera-like crops"}
    lines = [f"FER+ {doc['split']} ({doc['n']} faces), accuracy in %, from `{doc['source']}` (`{doc['command']}`): "
             f"`{doc['checkpoint']}` as it was on {doc['date']}: its exported graph without and with the route (each "
             "face's factor estimated "
             "in the graph) and its frozen HR model:\n",
             "| protocol | model | " + " | ".join(f"x{f}" for f in factors) + " |",
             "|---|---|" + "---:|" * len(factors)]
    for proto, label in names.items():
        for model, what in (("unrouted", "graph without the route"), ("routed", "**routed graph**"), ("hr", "HR model")):
            lines.append(f"| {label} | {what} | " + " | ".join(f"{acc[model][proto][f]:.2f}" for f in factors) + " |")
        lines.append(f"| {label} | routed minus unrouted | " + " | ".join(
            f"{acc['routed'][proto][f] - acc['unrouted'][proto][f]:+.2f}" for f in factors) + " |")
    lines.append("")
    lines.append(f"The rule's checks: x1 below the HR model by {c['x1_below_hr']['resized']:.2f} under (a) and "
                 f"{c['x1_below_hr']['small']:.2f} under (b) (at most {c['x1_within']}: "
                 f"{'met' if c['x1_met'] else 'missed'}); the largest loss against the unrouted graph anywhere else "
                 f"{c['worst_drop']['points']:.2f} points ({c['worst_drop']['cell']}; at most {c['max_drop']}: "
                 f"{'met' if c['drop_met'] else 'missed'}).")
    return "\n".join(lines) + "\n"


ROUTE_HR = "results/ferplus/route_hr_val.json"
CAMERA_GAP = "results/ferplus/camera_gap_val.json"
CONTRAST_FLOOR = {(kind, split): f"results/ferplus/{kind}_floor_{split}.json"
                  for kind in ("contrast", "brightness") for split in ("val", "test")}
FLIP_VAL = "results/ferplus/flip_tta_val.json"
FLIP_TEST = "results/ferplus/flip_tta_test.json"
FLIP_SEED1 = "results/ferplus/flip_tta_val_seed1.json"
FLIP_EDGE = "results/ferplus/edge_budget_flip.json"


def _refreshed_note(folder: Path) -> str:
    """Which (b) and (c) files ``scripts/refresh_protocols.sh`` measured again after a change of the SDK's
    preprocessing, and which it could not (a network whose checkpoint was not at hand)."""
    files = sorted(folder.glob("*test_small.json")) + sorted(folder.glob("*test_camera.json"))
    again = [f.name for f in files if json.loads(f.read_text()).get("command") == "bash scripts/refresh_protocols.sh"]
    if not again:
        return ""
    before = [f"`{f.name}`" for f in files if f.name not in again]
    return ("; the (b) and (c) files measured again through the SDK's contrast floor by "
            "`bash scripts/refresh_protocols.sh`" + (f", except {', '.join(before)}, measured before it (the baseline's "
                                                    "checkpoint is gone, and a retraining on another CPU is another "
                                                    "network: docs/experiments.md, 'A contrast floor in the SDK')"
                                                    if before else ""))


def shipped_table(doc: dict[str, Any]) -> str:
    """The shipped model, its equal-budget LR-fine-tuned baseline and the frozen HR model on the same FER+
    test faces, per protocol (results/default_model/, written by scripts/ship_early_g.sh)."""
    folder = REPO / "results" / "default_model"
    factors = sorted(doc["factors"], key=int)
    lines = [f"FER+ test ({doc['n']} faces), accuracy in %, one seed (`results/default_model/`: `test*.json` the "
             "shipped graph, `baseline_test*.json` the equal-budget LR-fine-tuned baseline, `hr_test*.json` the "
             "frozen HR model; written by `bash scripts/ship_early_g.sh RUN BASELINE_RUN REASON`"
             + _refreshed_note(folder) + "). Plot: `results/default_model/test_protocols.png`.\n",
             "| protocol | model | " + " | ".join(f"x{f}" for f in factors) + " | mean |",
             "|---|---|" + "---:|" * (len(factors) + 1)]
    for protocol, title in PROTOCOL_NAMES.items():
        suffix = "" if protocol == "resized" else f"_{protocol}"
        docs = {}
        for label, prefix in (("shipped FSR-FER", ""), ("LR-fine-tuned, equal budget", "baseline_"), ("HR model", "hr_")):
            path = folder / f"{prefix}test{suffix}.json"
            if path.is_file():
                docs[label] = _accuracies(path)
        for label, acc in docs.items():
            cells = [f"{acc[f]:.2f}" for f in factors]
            lines.append(f"| {title} | {label} | " + " | ".join(cells) + f" | {sum(acc[f] for f in factors) / len(factors):.2f} |")
        ours, base = docs.get("shipped FSR-FER"), docs.get("LR-fine-tuned, equal budget")
        if ours and base:
            lines.append(f"| {title} | **shipped minus baseline** | "
                         + " | ".join(f"{ours[f] - base[f]:+.2f}" for f in factors) + " | |")
    return "\n".join(lines) + "\n"


#: An ablation table's rows: the full configuration's, each ablation's (with its label), the equal-budget
#: baseline's.
AblationRows = tuple[str, tuple[tuple[str, str], ...], str]


def _ablation_rows(label: str, baseline: str) -> AblationRows:
    """The rows scripts/early_g_summary.py writes for runs labelled LABEL, LABEL_no_adversarial and
    LABEL_no_reweight, beside the baseline's row."""
    return (f"{label}/fsrfer", ((f"{label}_no_adversarial/fsrfer_no_adversarial", "without the adversarial term"),
                                (f"{label}_no_reweight/fsrfer_no_reweight", "without the re-weighting")), baseline)


#: The shipped configuration's ablations on the shipped model's 120-epoch HR network: the file
#: (scripts/early_g_summary.py) the README table reads, and its rows.
ABLATIONS_FILE = "results/ferplus/early_g_hr120_ablations_val.json"
ABLATIONS = _ablation_rows("hr120", "hr120/lr_finetune")
#: The same ablations on the previous default's 60-epoch HR network (docs/experiments.md).
ABLATIONS_60EP_FILE = "results/ferplus/early_g_gpu_lr.json"
ABLATIONS_60EP = _ablation_rows("lrg_rec3000", "6ep/lr_finetune")


def _mean_spread(values: list[float], sign: str = "") -> str:
    """Mean ± sample standard deviation, as the summary scripts give the spread over seeds."""
    m = statistics.mean(values)
    return f"{m:{sign}.2f}" + (f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else "")


def ablations_table(doc: dict[str, Any], spec: AblationRows = ABLATIONS) -> str:
    """The shipped configuration, each of its two ablations and the equal-budget baseline (``spec``'s rows) on
    the full model's seeds, per protocol: accuracy mean ± spread, then each ablation minus the full model
    seed by seed."""
    full, ablations, baseline = spec
    rows = doc["rows"]
    named = [(full, "FSR-FER, the shipped configuration"), *ablations, (baseline, "LR-fine-tuned, equal budget")]
    seeds = sorted(rows[full]["runs"]["resized"], key=int)
    missing = [n for n, _ in named if any(sd not in rows[n]["runs"].get(p, {}) for p in PROTOCOL_NAMES for sd in seeds)]
    if missing:
        raise SystemExit(f"{doc['source']}: {missing} lack seeds {seeds} of {full} in some protocol")
    factors = sorted(rows[full]["runs"]["resized"][seeds[0]], key=int)
    lines = [f"FER+ val, accuracy in %, mean ± spread over seeds {', '.join(seeds)} (the same seeds, and each seed's "
             f"training subset, for every row), from `{doc['source']}` (rows `{full}`, "
             + ", ".join(f"`{n}`" for n, _ in ablations) + f", `{baseline}`; the command is in the file):\n",
             "| protocol | model | " + " | ".join(f"x{f}" for f in factors) + " | mean |",
             "|---|---|" + "---:|" * (len(factors) + 1)]
    for protocol, title in PROTOCOL_NAMES.items():
        def acc(name: str, sd: str, f: str) -> float:
            return rows[name]["runs"][protocol][sd][f]

        def mean_acc(name: str, sd: str) -> float:
            return sum(acc(name, sd, f) for f in factors) / len(factors)

        for name, label in named:
            lines.append(f"| {title} | {label} | " + " | ".join(_mean_spread([acc(name, sd, f) for sd in seeds])
                                                               for f in factors)
                         + f" | {_mean_spread([mean_acc(name, sd) for sd in seeds])} |")
        for name, label in ablations:
            lines.append(f"| {title} | **{label}, minus the full model** | "
                         + " | ".join(_mean_spread([acc(name, sd, f) - acc(full, sd, f) for sd in seeds], "+")
                                      for f in factors)
                         + f" | {_mean_spread([mean_acc(name, sd) - mean_acc(full, sd) for sd in seeds], '+')} |")
    return "\n".join(lines) + "\n"


#: CPU runs in results/ferplus/early_g_gpu_lr.json with the shipped configuration's optimizer steps (its
#: variants differ in a rate or a loss weight only), and the equal-budget baseline's row.
COST_ROWS = (("FSR-FER stage 2 (G 1 + 5 epochs), the shipped configuration's variants",
              ("rec3000/fsrfer", "lrg2_rec3000/fsrfer", "lrg_rec10000/fsrfer", "film_stages/fsrfer")),
             ("LR-fine-tuned baseline (6 epochs)", ("6ep/lr_finetune",)))


def training_cost_table(doc: dict[str, Any]) -> str:
    """Training minutes of stage 2 against the equal-budget baseline, from the CPU runs' recorded cost."""
    lines = [f"Training time on this shared 2-core CPU (its load varies between runs), from the runs' recorded "
             f"cost in `{doc['source']}` (GPU runs record none); both start from the same trained HR network, whose "
             "stage 1 is not counted:\n",
             "| method | rows | runs | epochs | minutes, median (range) |", "|---|---|---:|---:|---|"]
    medians = []
    for label, names in COST_ROWS:
        costs = [c for n in names for c in doc["rows"][n].get("cost", {}).values() if c.get("epochs")]
        if not costs:
            raise SystemExit(f"{doc['source']}: no recorded cost in rows {names}")
        mins = sorted(c["seconds"] / 60 for c in costs)
        med = statistics.median(mins)
        medians.append(med)
        lines.append(f"| {label} | " + ", ".join(f"`{n}`" for n in names) + f" | {len(mins)} | "
                     + "/".join(str(e) for e in sorted({c['epochs'] for c in costs}))
                     + f" | {med:.0f} ({mins[0]:.0f}-{mins[-1]:.0f}) |")
    lines += ["", f"Stage 2 takes {medians[0] / medians[1]:.1f}x the baseline's time for the same optimizer steps "
              "(G, the critic and the frozen HR network's forward pass on every face)."]
    step = json.loads((REPO / STAGE2_STEP).read_text())
    ratio = step["ratio_after_over_before"]
    lines[-1] += (f" These runs predate the GAN step that runs G once per step (docs/DESIGN.md), which takes "
                  f"{ratio['median']:.2f}x the time per step ({ratio['min']:.2f}-{ratio['max']:.2f} over "
                  f"{len(step['rounds'])} interleaved rounds, `{STAGE2_STEP}`, `{step['command']}`).")
    return "\n".join(lines) + "\n"


#: benchmarks/stage2_step.py's result: the GAN step before and after it ran G once.
STAGE2_STEP = "benchmarks/results/stage2_step.json"


FER2013_CONFIG = "results/fer2013/early_g_bn_{split}{suffix}.json"
#: The same configuration from the FER2013 HR network of configs/fer2013_from_ferplus_30ep.yaml.
FER2013_CONFIG_30EP = "results/fer2013/early_g_bn_30ep_{split}{suffix}.json"
#: The shipped default's configuration (lrg_rec3000) from the same 30-epoch FER2013 HR network.
FER2013_CONFIG_LRG = "results/fer2013/early_g_lrg_rec3000_30ep_{split}{suffix}.json"
FER2013_MODELS = (("fsrfer", "FSR-FER"), ("lr_finetune", "LR-fine-tuned, equal budget"), ("hr", "HR model"))


def fer2013_config_table(_: dict[str, Any], pattern: str = FER2013_CONFIG,
                         fsrfer: str = "FSR-FER (`bn`, the previous default's configuration)") -> str:
    """A shipped model's configuration on the FER2013 labels (configs/fer2013_early_g_stem_camera_6ep_bn*.yaml):
    FSR-FER, its equal-budget baseline and the FER2013 HR network, per protocol, on val and on test (the
    run's OUT/eval/{val,test}/results*.json, copied to ``pattern``, e.g. results/fer2013/early_g_bn_*.json);
    ``fsrfer``: the FSR-FER rows' label."""
    lines = []
    for split in ("val", "test"):
        first = REPO / pattern.format(split=split, suffix="")
        if not first.is_file():
            continue
        doc = json.loads(first.read_text())
        factors = sorted(doc["fsrfer"]["factors"], key=int)
        lines += [f"FER2013 {split} ({doc['fsrfer']['n']} faces, original labels), accuracy in %, one seed, from "
                  f"`{pattern.format(split=split, suffix='{,_small,_camera}')}`:\n",
                  "| protocol | model | " + " | ".join(f"x{f}" for f in factors) + " | mean |",
                  "|---|---|" + "---:|" * (len(factors) + 1)]
        for protocol, title in PROTOCOL_NAMES.items():
            path = REPO / pattern.format(split=split, suffix="" if protocol == "resized" else f"_{protocol}")
            if not path.is_file():
                continue
            d = json.loads(path.read_text())
            acc = {k: {f: 100 * v["accuracy"] for f, v in d[k]["factors"].items()} for k, _ in FER2013_MODELS if k in d}
            for key, label in FER2013_MODELS:
                if key in acc:
                    lines.append(f"| {title} | {fsrfer if key == 'fsrfer' else label} | "
                                 + " | ".join(f"{acc[key][f]:.2f}" for f in factors)
                                 + f" | {sum(acc[key][f] for f in factors) / len(factors):.2f} |")
            if "fsrfer" in acc and "lr_finetune" in acc:
                lines.append(f"| {title} | **FSR-FER minus baseline** | "
                             + " | ".join(f"{acc['fsrfer'][f] - acc['lr_finetune'][f]:+.2f}" for f in factors) + " | |")
        lines.append("")
    return "\n".join(lines)


# name -> (JSON source, renderer, Markdown file)
def int8_tensorrt_file_table(doc: dict[str, Any]) -> str:
    """The shipped default's s8s8 (TensorRT) INT8 file per factor, beside ONNX Runtime's default Q/DQ placement
    (benchmarks/int8_tensorrt_file.py; ONNX Runtime CPU runs both Q/DQ graphs)."""
    chk, old, cal = doc["tensorrt_check"], doc["before_issue_13"], doc["calibration"]
    factors = list(doc["per_factor"])
    rows = ["| s8s8 file | TensorRT check | " + " | ".join(f"x{f}" for f in factors) + " |",
            "|---|---|" + "---:|" * len(factors)]
    pf = doc["per_factor"]
    rows.append("| FP32 (accuracy) | | " + " | ".join(f"{pf[f]['accuracy_percent']['fp32']:.2f}" for f in factors) + " |")
    rows.append(f"| before (ONNX Runtime's default placement): accuracy | fails ({old['tensorrt_check_errors']} errors) | "
                + " | ".join(f"{pf[f]['before_issue_13']['accuracy_percent']:.2f}" for f in factors) + " |")
    rows.append("| before: top-1 agreement with FP32 | | "
                + " | ".join(f"{pf[f]['before_issue_13']['top1_agreement_with_fp32']:.4f}" for f in factors) + " |")
    rows.append(f"| now ({doc['qdq_nodes']['QuantizeLinear']} Q, {doc['qdq_nodes']['DequantizeLinear']} DQ; "
                f"{chk['int8_layers']} layers INT8, {chk['float_layers']} float): accuracy | "
                f"{'passes' if chk['ok'] else 'fails'} | "
                + " | ".join(f"{pf[f]['accuracy_percent']['int8-s8s8']:.2f}" for f in factors) + " |")
    rows.append("| now: top-1 agreement with FP32 | | "
                + " | ".join(f"{pf[f]['top1_agreement_with_fp32']:.4f}" for f in factors) + " |")
    return (f"`{doc['source']}` (`{doc['command']}`; the shipped `{doc['model']}`, sha256 {doc['model_sha256'][:12]}; "
            f"{cal['faces']} {cal['split']} faces for calibration, each a small crop at one of x"
            + ", x".join(str(f) for f in cal["factors"]) + f"; FER+ {doc['split']}, {doc['faces']} faces at each factor "
            "as small crops, protocol (b); ONNX Runtime CPU runs the Q/DQ graphs, so this checks the quantization, "
            "not a TensorRT engine), accuracy in %:\n\n" + "\n".join(rows) + "\n")


TABLES: dict[str, tuple[str, Callable[[dict[str, Any]], str], str]] = {
    "headline": (SOURCES["headline"], headline_table, "README.md"),
    "shipped": (SOURCES["headline"], shipped_table, "README.md"),
    "ablations": (ABLATIONS_FILE, ablations_table, "README.md"),
    "ablations_60ep": (ABLATIONS_60EP_FILE, lambda d: ablations_table(d, ABLATIONS_60EP), "docs/experiments.md"),
    "training_cost": ("results/ferplus/early_g_gpu_lr.json", training_cost_table, "README.md"),
    "fer2013_config": (FER2013_CONFIG.format(split="val", suffix=""), fer2013_config_table, "docs/experiments.md"),
    "fer2013_config_30ep": (FER2013_CONFIG_30EP.format(split="val", suffix=""),
                            lambda d: fer2013_config_table(d, FER2013_CONFIG_30EP), "docs/experiments.md"),
    "fer2013_config_lrg": (FER2013_CONFIG_LRG.format(split="val", suffix=""),
                           lambda d: fer2013_config_table(d, FER2013_CONFIG_LRG,
                                                          "FSR-FER (`lrg_rec3000`, the shipped configuration)"),
                           "README.md"),
    "fer2013_seeds": ("results/fer2013/early_g_bn_seeds_val.json", early_g_table, "docs/experiments.md"),
    "serving": ("results/serving/load_test.json", serving_table, "README.md"),
    "crowd": ("results/crowd/bench.json", crowd_table, "README.md"),
    "targets": ("results/targets.json", targets_table, "README.md"),
    "int8_generator": ("results/ferplus/int8_generator.json", int8_generator_table, "README.md"),
    "edge_budget_threads": (EDGE_THREADS[1], edge_budget_threads_table, "docs/experiments.md"),
    "sessions": ("benchmarks/results/sessions.json", sessions_table, "README.md"),
    "app_inputs": ("results/ferplus/app_inputs_val.json", app_inputs_table, "README.md"),
    "app_inputs_test": ("results/ferplus/app_inputs_test.json", app_inputs_table, "docs/experiments.md"),
    "app_inputs_bilinear_v1": ("results/ferplus/app_inputs_bilinear_v1_val.json", app_inputs_table,
                               "docs/experiments.md"),
    "deepstream_inputs": ("results/ferplus/deepstream_inputs_val.json", deepstream_inputs_table, "docs/deepstream.md"),
    "contrast_floor": (CONTRAST_FLOOR["contrast", "val"], contrast_floor_table, "README.md"),
    "contrast_floor_test": (CONTRAST_FLOOR["contrast", "test"], contrast_floor_table, "docs/experiments.md"),
    "brightness_floor": (CONTRAST_FLOOR["brightness", "val"], contrast_floor_table, "docs/experiments.md"),
    "int8_avx2": ("results/ferplus/int8_avx2_val.json", int8_avx2_table, "docs/experiments.md"),
    "linear_precheck": ("benchmarks/results/linear_precheck.json", linear_precheck_table, "docs/experiments.md"),
    "arm64_cpu": ("results/ferplus/arm64_cpu_val.json", arm64_cpu_table, "docs/experiments.md"),
    "int8_film_bound": ("results/ferplus/int8_film_bound.json", int8_film_bound_table, "docs/experiments.md"),
    "int8_film_bound_1thread": ("results/ferplus/int8_film_bound_1thread.json", int8_film_bound_table,
                                "docs/experiments.md"),
    "int8_sensitivity": ("results/ferplus/int8_sensitivity_val.json", int8_sensitivity_table, "docs/experiments.md"),
    "estimator_rounding": ("results/ferplus/factor_estimator_rounding_val.json", estimator_rounding_table, "docs/experiments.md"),
    "early_g": ("results/ferplus/early_g_val.json", early_g_table, "docs/experiments.md"),
    "early_g_seeds": ("results/ferplus/early_g_seeds.json", early_g_table, "docs/experiments.md"),
    "shipped_seeds": ("results/ferplus/early_g_stem_camera_seeds.json", early_g_table, "docs/experiments.md"),
    "shipped_6ep_seeds": ("results/ferplus/early_g_6ep_seeds.json", early_g_table, "docs/experiments.md"),
    "gap_tries": ("results/ferplus/early_g_gap_tries.json", early_g_table, "docs/experiments.md"),
    "bn_4seeds": ("results/ferplus/early_g_bn_4seeds.json", early_g_table, "docs/experiments.md"),
    "bn_tries": ("results/ferplus/early_g_bn_tries.json", early_g_table, "docs/experiments.md"),
    "gpu_rec": ("results/ferplus/early_g_gpu_rec.json", gpu_runs_table, "docs/experiments.md"),
    "gpu_lr": ("results/ferplus/early_g_gpu_lr.json", gpu_runs_table, "docs/experiments.md"),
    "factor_estimator": ("results/ferplus/factor_estimator_val.json", factor_estimator_table, "docs/experiments.md"),
    "edge_budget": ("results/edge_budget.json", edge_budget_table, "docs/experiments.md"),
    "flip": (FLIP_VAL, flip_table, "docs/experiments.md"),
    "camera_gap": (CAMERA_GAP, camera_gap_table, "docs/experiments.md"),
    "jpeg_crops": (JPEG_CROPS, jpeg_crops_table, "docs/experiments.md"),
    "jpeg_detection": (JPEG_DETECTION, jpeg_detection_table, "docs/experiments.md"),
    "temporal_views": (TEMPORAL_VIEWS, temporal_views_table, "docs/experiments.md"),
    "camera_specialist": (CAMERA_SPECIALIST, camera_specialist_table, "docs/experiments.md"),
    "early_g_12ep": (EARLY_G_12EP, early_g_12ep_table, "docs/experiments.md"),
    "kd10": (KD10[0], lambda d: stage2_screen_table(d, KD10[1]), "docs/experiments.md"),
    "nce": (NCE[0], lambda d: stage2_screen_table(d, NCE[1], HR120_REFERENCE), "docs/experiments.md"),
    "warmup": (WARMUP[0], lambda d: stage2_screen_table(d, WARMUP[1], HR120_REFERENCE), "docs/experiments.md"),
    "kd8x": (KD8X[0], lambda d: stage2_screen_table(d, KD8X[1], HR120_X8_REFERENCE), "docs/experiments.md"),
    "rw4": (RW4[0], lambda d: stage2_screen_table(d, RW4[1], HR120_X8_REFERENCE), "docs/experiments.md"),
    "one_forward": (ONE_FORWARD[0], one_forward_table, "docs/experiments.md"),
    "kdt4": (KDT4[0], lambda d: stage2_screen_table(d, KDT4[1], HR120_REFERENCE), "docs/experiments.md"),
    "head100": (HEAD100[0], lambda d: stage2_screen_table(d, HEAD100[1], HR120_REFERENCE), "docs/experiments.md"),
    "adv100": (ADV100[0], lambda d: stage2_screen_table(d, ADV100[1], HR120_REFERENCE), "docs/experiments.md"),
    "hr_recipes": (HR_RECIPES, hr_recipes_table, "docs/experiments.md"),
    "hr_120ep": (HR_120EP, lambda d: hr_recipes_table(d, HR_120EP), "docs/experiments.md"),
    "soups": (SOUPS[1][1], soups_table, "docs/experiments.md"),
    "route_hr": (ROUTE_HR, route_hr_table, "docs/experiments.md"),
    "route_hr_bn": ("results/ferplus/route_hr_bn_val.json", route_hr_table, "docs/experiments.md"),
    "route_hr_lrgr0": ("results/ferplus/route_hr_lrgr0_val.json", route_hr_table, "docs/experiments.md"),
    "route_hr_hr120": ("results/ferplus/route_hr_hr120_val.json", route_hr_table, "docs/experiments.md"),
    "route_hr_train": ("results/ferplus/route_hr_train_val.json", route_hr_table, "docs/experiments.md"),
    "route_hr_train_seeds": ("results/ferplus/route_hr_train_seeds.json", route_hr_seeds_table, "docs/experiments.md"),
    "int8_tensorrt_file": ("benchmarks/results/int8_tensorrt_file.json", int8_tensorrt_file_table, "docs/tensorrt.md"),
    "crowd_bins": ("results/crowd/bench.json", crowd_bins_table, "docs/crowd.md"),
    "crowd_compare": ("results/crowd/bench.json", crowd_compare_table, "docs/crowd.md"),
    "crowd_min_face": ("results/crowd/bench_min_face.json", crowd_min_face_table, "docs/crowd.md"),
    "crowd_variants": ("results/crowd/bench.json", crowd_variants_table, "docs/crowd.md"),
    "crowd_speed": ("results/crowd/bench.json", crowd_speed_table, "docs/crowd.md"),
    "crowd_scores": ("results/crowd/bench.json", crowd_scores_table, "docs/crowd.md"),
    "crowd_margin_seeds": ("results/crowd/bench.json", crowd_margin_seeds_table, "docs/crowd.md"),
    "crowd_clips": (CROWD_CLIPS, crowd_clips_table, "docs/crowd.md"),
    "crowd_coast": ("results/crowd/clips_coast.json", crowd_coast_table, "docs/crowd.md"),
    "crowd_coast2": ("results/crowd/clips_coast2.json", crowd_coast_table, "docs/crowd.md"),
    "crowd_confirm": ("results/crowd/clips_confirm.json", crowd_coast_table, "docs/crowd.md"),
    "crowd_coast_confirm": ("results/crowd/clips_coast_confirm.json", crowd_coast_table, "docs/crowd.md"),
    "crowd_switch": ("results/crowd/clips_switch.json", crowd_switch_table, "docs/crowd.md"),
    "crowd_walk": ("results/crowd/walk.json", crowd_walk_table, "docs/crowd.md"),
    "crowd_walk_fast": ("results/crowd/walk_fast.json", crowd_walk_table, "docs/crowd.md"),
    "crowd_motion_seeds": ("results/crowd/walk.json", crowd_motion_seeds_table, "docs/crowd.md"),
    "crowd_walk_coast": ("results/crowd/walk_coast.json", crowd_walk_table, "docs/crowd.md"),
    "crowd_motion_coast": ("results/crowd/clips_motion_coast.json", crowd_coast_table, "docs/crowd.md"),
    "crowd_walk_weak": ("results/crowd/walk_weak.json", crowd_walk_table, "docs/crowd.md"),
    "crowd_weak": ("results/crowd/clips_weak.json", crowd_coast_table, "docs/crowd.md"),
    "crowd_walk_weak2": ("results/crowd/walk_weak2.json", crowd_walk_table, "docs/crowd.md"),
    "crowd_weak2": ("results/crowd/clips_weak2.json", crowd_coast_table, "docs/crowd.md"),
    "crowd_walk_weak3": ("results/crowd/walk_weak3.json", crowd_walk_table, "docs/crowd.md"),
    "crowd_weak3": ("results/crowd/clips_weak3.json", crowd_coast_table, "docs/crowd.md"),
    "crowd_walk_weak4": ("results/crowd/walk_weak4.json", crowd_walk_table, "docs/crowd.md"),
    "crowd_weak4": ("results/crowd/clips_weak4.json", crowd_coast_table, "docs/crowd.md"),
    "crowd_every": ("results/crowd/walk_every.json", crowd_every_table, "docs/crowd.md"),
    "crowd_motion": ("results/crowd/clips_motion.json", crowd_coast_table, "docs/crowd.md"),
    "group_estimates_val": ("results/crowd/group_estimates_val.json", group_estimates_table, "docs/crowd.md"),
    "group_estimates_test": ("results/crowd/group_estimates_test.json", group_estimates_table, "docs/crowd.md"),
    "group_estimates_pooled_val": ("results/crowd/group_estimates_pooled_val.json", group_estimates_table,
                                   "docs/crowd.md"),
    "group_intervals_val": ("results/crowd/group_intervals_val.json", group_intervals_table, "docs/crowd.md"),
    "group_intervals_camera_val": ("results/crowd/group_intervals_camera_val.json", group_intervals_table,
                                   "docs/crowd.md"),
    "group_intervals_matrices_val": ("results/crowd/group_intervals_matrices_val.json", group_intervals_table,
                                     "docs/crowd.md"),
    "group_intervals_matrices_test": ("results/crowd/group_intervals_matrices_test.json", group_intervals_table,
                                      "docs/crowd.md"),
    "score_reliability": ("results/ferplus/score_reliability_test.json", score_reliability_table,
                          "docs/experiments.md"),
    "score_calibration_val": ("results/ferplus/score_calibration_val.json", score_calibration_table,
                              "docs/experiments.md"),
    "score_calibration_test": ("results/ferplus/score_calibration_test.json", score_calibration_table,
                               "docs/experiments.md"),
    "track_confidence": ("results/ferplus/track_confidence_val.json", track_confidence_table, "docs/experiments.md"),
    "score_calibration_selective": ("results/ferplus/score_calibration_val.json", score_calibration_selective_table,
                                    "docs/experiments.md"),
    "score_calibration_jpeg_val": ("results/ferplus/score_calibration_jpeg_val.json", score_calibration_jpeg_table,
                                   "docs/experiments.md"),
    "score_calibration_jpeg_test": ("results/ferplus/score_calibration_jpeg_test.json", score_calibration_jpeg_table,
                                    "docs/experiments.md"),
    "score_calibration_jpeg_qualities_val": ("results/ferplus/score_calibration_jpeg_qualities_val.json",
                                             jpeg_qualities_table, "docs/experiments.md"),
    "jpeg_frames_val": ("results/ferplus/jpeg_frames_val.json", jpeg_frames_table, "docs/experiments.md"),
    "enlarged_confidence_val": ("results/ferplus/enlarged_confidence_val.json", enlarged_confidence_table,
                                "docs/experiments.md"),
    "enlarged_confidence_test": ("results/ferplus/enlarged_confidence_test.json", enlarged_confidence_table,
                                 "docs/experiments.md"),
    "jpeg_frames_test": ("results/ferplus/jpeg_frames_test.json", jpeg_frames_table, "docs/experiments.md"),
    "track_maps_val": ("results/ferplus/track_maps_val.json", track_maps_table, "docs/experiments.md"),
    "track_maps_test": ("results/ferplus/track_maps_test.json", track_maps_table, "docs/experiments.md"),
    "track_maps_marks_val": ("results/ferplus/track_maps_marks_val.json", track_maps_table, "docs/experiments.md"),
    "track_maps_marks_test": ("results/ferplus/track_maps_marks_test.json", track_maps_table, "docs/experiments.md"),
    "enlarging_kernels_val": ("results/ferplus/enlarging_kernels_val.json", enlarging_kernels_table,
                              "docs/experiments.md"),
    "score_calibration_variants": ("results/ferplus/score_calibration_variants_val.json",
                                   score_calibration_variants_table, "docs/experiments.md"),
}


def render(name: str) -> tuple[Path, str]:
    """The markdown file holding table ``name`` and that file's text with the table rendered from its source."""
    src, render_table, md = TABLES[name]
    doc = {"source": src, **json.loads((REPO / src).read_text())}
    path = REPO / md
    text = path.read_text()
    start, end = f"<!-- table:{name} -->", "<!-- /table -->"
    pat = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pat.search(text):
        raise SystemExit(f"{md} has no block {start} ... {end}; add one where the table should go")
    block = f"{start}\n{render_table(doc)}{end}"
    return path, pat.sub(lambda _: block, text)


def update(name: str) -> None:
    from fsrfer_edge.fileio import atomic_write

    path, text = render(name)
    atomic_write(path, lambda f: f.write(text.encode()))
    print(f"{TABLES[name][2]}: table {name} from {TABLES[name][0]}")


def stale(names: list[str]) -> list[str]:
    """The tables whose block in their markdown file differs from what their result file renders."""
    out = []
    for n in names:
        path, text = render(n)
        if path.read_text() != text:
            out.append(n)
    return out


def main(argv: list[str] | None = None) -> int:
    args = list(argv if argv is not None else sys.argv[1:])
    check = "--check" in args
    names = [a for a in args if a != "--check"] or list(TABLES)
    bad = [n for n in names if n not in TABLES]
    if bad:
        raise SystemExit(f"unknown table(s) {bad}; expected some of {list(TABLES)}")
    if check:
        old = stale(names)
        for n in old:
            print(f"{TABLES[n][2]}: table {n} is not what {TABLES[n][0]} renders; run python scripts/readme_tables.py {n}")
        return 1 if old else 0
    for n in names:
        update(n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
