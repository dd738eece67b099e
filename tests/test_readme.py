"""The README's SDK example runs as written."""
import re
from pathlib import Path

import pytest
from _scripts import load_script

pytest.importorskip("onnxruntime")
README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_sdk_example_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "README.md has no python example"
    exec(compile(blocks[0], "README.md", "exec"), {})
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all(line.split()[0] in {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"} for line in lines)


def test_test_sh_names_every_dependency_of_its_no_deps_installs():
    """scripts/test.sh installs PyTriton and tritonclient with --no-deps (PyTriton's numpy<2 pin would
    downgrade numpy), so it must name their other dependencies itself; typing_inspect and wrapt were
    missing, and the serving test skipped in a fresh venv ("PyTriton is not installed")."""
    from importlib import metadata

    script = (README.parent / "scripts" / "test.sh").read_text()
    installed = re.findall(r"pip install -q --no-deps ([^\n]+)", script)
    named = {re.split(r"[<>=~!\[ ]", w.strip('"'))[0].lower().replace("_", "-")
             for line in re.findall(r"pip install -q --no-warn-conflicts ((?:[^\n\\]|\\\n)+)", script)
             for w in line.replace("\\\n", " ").split() if not w.startswith("-")}
    for spec in " ".join(installed).split():
        dist = re.split(r"[<>=~!]", spec.strip('"'))[0]
        if dist == "tensorrt-stubs":
            continue  # type stubs: their one dependency is the `tensorrt` placeholder, skipped on purpose
        try:
            reqs = metadata.requires(dist) or []
        except metadata.PackageNotFoundError:
            pytest.skip(f"{dist} is not installed here")
        needed = {re.split(r"[<>=~!\[ ;]", r)[0].lower().replace("_", "-") for r in reqs
                  if "extra ==" not in r or any(f'extra == "{e}"' in r or f"extra == '{e}'" in r for e in ("http", "grpc"))}
        missing = sorted(needed - named - {"numpy", "tritonclient"})
        assert not missing, f"scripts/test.sh installs {dist} with --no-deps but does not install {missing}"


def test_test_sh_builds_the_server_venv_from_this_environment():
    script = (README.parent / "scripts" / "test.sh").read_text()
    code = [line for line in script.splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in code if "-m venv" in line and "--system-site-packages" in line]  # the base's packages
    assert "site.addsitedir" in script and "-rs" in script and "--no-warn-conflicts" in script


def test_readme_export_example_runs_on_the_shipped_checkpoint(tmp_path, monkeypatch):
    """The README's first export command works on what a new user has: the shipped default.pt."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxsim")
    import shlex

    from fsrfer_edge.export import cli as export_cli

    text = README.read_text()
    line = next(ln for ln in text[text.index("## Export and deployment"):].splitlines()
                if ln.startswith("fsrfer-export fsrfer_edge/models/default.pt"))
    argv = shlex.split(line.split("#")[0])[1:]
    assert (README.parent / argv[0]).is_file()
    monkeypatch.chdir(README.parent)
    assert export_cli.main(argv + ["--out-dir", str(tmp_path), "-q"]) == 0
    assert (tmp_path / "mymodel.fp32.onnx").is_file() and (tmp_path / "mymodel.fp16.onnx").is_file()


def test_readme_headline_is_rendered_from_the_result_files():
    import json

    tables = load_script("scripts/readme_tables.py", "readme_tables")
    text = README.read_text()
    block = text.split("<!-- table:headline -->\n")[1].split("<!-- /table -->")[0]
    doc = json.loads((README.parent / tables.SOURCES["headline"]).read_text())
    assert block == tables.headline_table(doc)  # run `python scripts/readme_tables.py headline` after new results
    assert text.index("<!-- table:headline -->") < text.index("## Quick start")


def test_every_readme_table_and_the_targets_are_rendered_from_the_committed_result_files():
    """A hand edit of a table block, or a result file committed without re-rendering, fails here."""
    tables = load_script("scripts/readme_tables.py", "readme_tables")
    assert tables.stale(list(tables.TABLES)) == []  # run `python scripts/readme_tables.py` after new results
    targets = load_script("scripts/targets.py", "targets")
    import json

    committed = json.loads((README.parent / "results" / "targets.json").read_text())
    assert committed == json.loads(json.dumps(targets.build()))  # run `python scripts/targets.py`


def test_result_plots_use_readme_names_fixed_colours_measured_factors_and_colour_bars(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import json

    from matplotlib.figure import Figure

    report = load_script("scripts/report.py", "report")
    figures = []
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: figures.append(fig))
    colours = {}
    for name, split in (("ferplus", "test"), ("fer2013", "val")):
        results = json.loads((README.parent / "results" / name / f"{split}.json").read_text())
        figures.clear()
        report.write_plots(results, tmp_path, name, split)
        acc, conf = figures
        ax = acc.axes[0]
        names = [t.get_text() for t in ax.get_legend().get_texts()]
        assert names == [report.method_name(m) for m in report.LABELS if m in results]
        docs = README.read_text() + (README.parent / "docs" / "experiments.md").read_text()
        assert all(n in docs or n.startswith("FSR-FER (full)") for n in names)
        for line in ax.get_lines():  # one colour per method, in every plot
            assert colours.setdefault(line.get_label(), line.get_color()) == line.get_color()
        ticks = [t.get_text().split("\n")[0] for t in ax.get_xticklabels()]
        measured = sorted({f for r in results.values() for f in r["factors"]}, key=int)
        assert ticks == [f"x{f}" for f in measured]  # no tick at an unmeasured factor (x5, x7)
        assert len(conf.axes) == 2  # the matrix and its colour bar
    assert len(set(colours.values())) == len(colours)


def test_ablations_table_pairs_each_ablation_with_the_full_model_seed_by_seed():
    tables = load_script("scripts/readme_tables.py", "readme_tables")
    full, ablations, baseline = tables.ABLATIONS
    factors = ("1", "2")

    def runs(offset: float, seeds=("0", "1", "2")):
        return {p: {sd: {f: 70.0 + offset + int(sd) + int(f) for f in factors} for sd in seeds}
                for p in tables.PROTOCOL_NAMES}

    rows = {full: {"runs": runs(0.0)}, ablations[0][0]: {"runs": runs(-1.0)}, ablations[1][0]: {"runs": runs(0.5)},
            baseline: {"runs": runs(-2.0, seeds=("0", "1", "2", "3"))}}  # a fourth baseline seed is left out
    text = tables.ablations_table({"source": "x.json", "rows": rows})
    assert f"| (a) resized back | **{ablations[0][1]}, minus the full model** | -1.00 ± 0.00 | -1.00 ± 0.00 | -1.00 ± 0.00 |" in text
    assert f"| (c) camera-like crops | **{ablations[1][1]}, minus the full model** | +0.50 ± 0.00 |" in text
    assert "| (b) small crops | LR-fine-tuned, equal budget | 70.00 ± 1.00 | 71.00 ± 1.00 | 70.50 ± 1.00 |" in text
    del rows[ablations[1][0]]["runs"]["small"]["2"]
    with pytest.raises(SystemExit, match="lack seeds"):
        tables.ablations_table({"source": "x.json", "rows": rows})


def test_a_stage2_screen_is_read_against_the_mean_of_the_shipped_configurations_seed0_runs():
    import json

    tables = load_script("scripts/readme_tables.py", "readme_tables")
    rows = json.loads((README.parent / tables.CAMERA_MIXED[0]).read_text())["rows"]
    keys = {"resized": "results", "small": "results_small", "camera": "results_camera"}
    for shift, verdict in ((0.5, "+0.50; at least +0.3 to be worth seeds 1 and 2: met."), (0.1, "+0.10; at least +0.3 "
                                                                                               "to be worth seeds 1 and 2: not met")):
        doc = {"source": "s.json", "config": {"seed": 0}}
        for p, k in keys.items():
            ref = {f: sum(rows[r]["runs"][p]["0"][f] for r in tables.SHIPPED_SEED0) / 2 for f in rows[tables.SHIPPED_SEED0[0]]["runs"][p]["0"]}
            doc[k] = {"fsrfer": {"factors": {f: {"accuracy": (v + shift) / 100} for f, v in ref.items()}}}
        assert verdict in tables.stage2_screen_table(doc, "c.yaml")


def test_a_margin_screen_is_read_by_its_margins_at_x2_to_x8_under_a_and_b():
    import json

    tables = load_script("scripts/readme_tables.py", "readme_tables")
    spec = tables.HR120_REFERENCE
    rows = json.loads((README.parent / spec.path).read_text())["rows"]
    keys = {"resized": "results", "small": "results_small", "camera": "results_camera"}

    def screen(shift: dict[str, dict[str, float]]) -> str:
        doc = {"source": "s.json", "config": {"seed": 0}}
        for p, k in keys.items():
            ref = rows[spec.rows[0]]["runs"][p]["0"]
            doc[k] = {"fsrfer": {"factors": {f: {"accuracy": (v + shift.get(p, {}).get(f, 0.0)) / 100}
                                             for f, v in ref.items()}}}
        return tables.stage2_screen_table(doc, "c.yaml", spec)

    up = {f: 0.5 for f in ("2", "3", "4", "6", "8")}
    assert "+0.50 under (a) and +0.50 under (b) (+0.00 under (c), not in the rule)" in screen({"resized": up, "small": up})
    assert "seeds 1 and 2: met." in screen({"resized": up, "small": up})
    only_x1 = screen({p: {"1": 5.0} for p in keys})  # x1 is not in the margin rule
    assert "+0.00 under (a) and +0.00 under (b)" in only_x1 and "not met, so reported only." in only_x1
    assert "not met" in screen({"resized": up, "camera": up})  # (a) alone is not enough


def test_an_x8_screen_needs_x8_up_and_the_other_factors_kept_under_a_and_b():
    import json

    tables = load_script("scripts/readme_tables.py", "readme_tables")
    spec = tables.HR120_X8_REFERENCE
    rows = json.loads((README.parent / spec.path).read_text())["rows"]
    keys = {"resized": "results", "small": "results_small", "camera": "results_camera"}

    def screen(shift: dict[str, float], protocols=("resized", "small")) -> str:
        doc = {"source": "s.json", "config": {"seed": 0}}
        for p, k in keys.items():
            ref = rows[spec.rows[0]]["runs"][p]["0"]
            doc[k] = {"fsrfer": {"factors": {f: {"accuracy": (v + (shift.get(f, 0.0) if p in protocols else 0.0)) / 100}
                                             for f, v in ref.items()}}}
        return tables.stage2_screen_table(doc, "c.yaml", spec)

    met = screen({"8": 0.6, "2": -0.2})
    assert "+0.60 under (a) and +0.60 under (b), at least +0.5" in met and "-0.05 under (a)" in met
    assert met.endswith("seeds 1 and 2: met.\n")
    assert "not met" in screen({"8": 0.6, "2": -0.5, "3": -0.5})  # x2..x6 down 0.25 on average: too much
    assert "not met" in screen({"8": 0.4})  # x8 up too little
    assert "not met" in screen({"8": 0.6}, protocols=("resized",))  # (a) alone is not enough


def test_training_cost_table_reads_the_recorded_seconds_and_refuses_rows_without_any():
    tables = load_script("scripts/readme_tables.py", "readme_tables")
    (_, g_rows), (_, b_rows) = tables.COST_ROWS
    rows = {n: {"cost": {"0": {"epochs": 6, "seconds": 1800.0}, "1": {"epochs": 6, "seconds": 2400.0}}} for n in g_rows}
    rows[b_rows[0]] = {"cost": {"0": {"epochs": 6, "seconds": 1200.0}}}
    text = tables.training_cost_table({"source": "x.json", "rows": rows})
    assert "| 1 | 6 | 20 (20-20) |" in text and f"| {2 * len(g_rows)} | 6 | 35 (30-40) |" in text
    assert "takes 1.8x the baseline's time" in text
    rows[b_rows[0]] = {"cost": {"0": {"epochs": 0, "seconds": 0.0}}}  # stage 1 only: nothing recorded
    with pytest.raises(SystemExit, match="no recorded cost"):
        tables.training_cost_table({"source": "x.json", "rows": rows})
