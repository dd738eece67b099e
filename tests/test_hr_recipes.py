"""scripts/hr_recipes.py: stage-1 recipes over seeds, read from training logs and evaluation files."""
import json

import pytest

from _scripts import load_script

hr = load_script("scripts/hr_recipes.py", "hr_recipes")


def _log(path, vals, of=None):
    of = of or len(vals)
    path.write_text("".join(
        f"17:40:13 INFO trainer.runner: stage1 epoch {i}/{of}: {{'loss': 0.93, 'train_acc': 0.9, 'epoch': {i}, "
        f"'val_score': {v}, 'seconds': 10.0}}\n" for i, v in enumerate(vals, 1)))
    return path


def _eval(path, acc, split="val"):
    path.write_text(json.dumps({"split": split, "factors": {"1": {"accuracy": acc}}}))
    return path


def test_resumed_logs_join_and_the_best_epoch_is_kept(tmp_path):
    first = _log(tmp_path / "a.log", [0.5, 0.8], of=3)
    second = tmp_path / "b.log"
    second.write_text("17:43:07 INFO trainer.runner: stage1 epoch 3/3: {'loss': 0.9, 'train_acc': 0.9, "
                      "'epoch': 3, 'val_score': 0.7, 'seconds': 12.0}\n")
    got = hr.parse_logs([first, second])
    assert got["finished"] and got["best_epoch"] == 2 and got["best_val"] == 80.0 and got["last_val"] == 70.0
    assert got["seconds_per_epoch"] == pytest.approx(10.67) and got["last_10_val"] == [50.0, 80.0]
    assert hr.epoch_summary({e: (float(e), 1.0) for e in range(1, 21)}, 20)["last_10_val"] == [11.0, 20.0]
    assert not hr.parse_logs([first])["finished"]
    with pytest.raises(SystemExit, match="not a stage-1 training log"):
        hr.parse_logs([_eval(tmp_path / "x.json", 0.9)])


def test_rule_needs_the_gain_and_every_seed_above_the_reference_mean(tmp_path):
    out = tmp_path / "r.json"
    args = ["--json", str(out), "--reference", "base",
            "--eval", f"base:0={_eval(tmp_path / 'b0.json', 0.880)}",
            "--log", f"base:1={_log(tmp_path / 'b1.log', [0.5, 0.884])}",
            "--log", f"wide:0={_log(tmp_path / 'w0.log', [0.886, 0.8])}",
            "--log", f"wide:1={_log(tmp_path / 'w1.log', [0.890])}",
            "--log", f"lucky:0={_log(tmp_path / 'l0.log', [0.900])}",
            "--log", f"lucky:1={_log(tmp_path / 'l1.log', [0.878])}"]
    assert hr.main(args) == 0
    doc = json.loads(out.read_text())
    rec = doc["recipes"]
    assert rec["base"]["seeds"] == {"0": 88.0, "1": 88.4} and rec["base"]["mean"] == 88.2
    assert rec["wide"]["against_reference"] == {"gain": 0.6, "every_seed_above_reference_mean": True,
                                                "candidate": True}
    # The same gain, but one seed below the reference's mean: not a candidate.
    assert rec["lucky"]["against_reference"]["gain"] == pytest.approx(0.7)
    assert not rec["lucky"]["against_reference"]["candidate"]
    assert doc["runs"]["base:0"]["source"] == "eval" and doc["runs"]["wide:0"]["source"] == "log"
    assert not (tmp_path / "r.json.part").exists()


def test_runs_recorded_in_an_earlier_file_stand_in_for_gone_logs(tmp_path):
    first = tmp_path / "first.json"
    assert hr.main(["--json", str(first), "--reference", "base",
                    "--eval", f"base:0={_eval(tmp_path / 'b0.json', 0.880)}",
                    "--log", f"base:1={_log(tmp_path / 'b1.log', [0.884])}",
                    "--log", f"wide:0={_log(tmp_path / 'w0.log', [0.95])}"]) == 0
    out = tmp_path / "second.json"
    # Only the reference recipe's runs are taken; the new recipe is read from its own log.
    assert hr.main(["--json", str(out), "--reference", "base", "--runs-from", f"{first}:base",
                    "--log", f"long:0={_log(tmp_path / 'l0.log', [0.87, 0.886])}"]) == 0
    doc = json.loads(out.read_text())
    assert set(doc["runs"]) == {"base:0", "base:1", "long:0"}
    assert doc["runs"]["base:1"]["recorded_in"] == str(first) and doc["runs"]["base:1"]["val"] == 88.4
    assert doc["recipes"]["base"]["mean"] == 88.2
    assert doc["recipes"]["long"]["against_reference"]["gain"] == pytest.approx(0.4)
    assert doc["recipes"]["long"]["against_reference"]["candidate"]
    with pytest.raises(SystemExit, match="no runs of recipe 'nope'"):
        hr.main(["--json", str(out), "--reference", "base", "--runs-from", f"{first}:nope",
                 "--log", f"long:0={tmp_path / 'l0.log'}"])
    with pytest.raises(SystemExit, match="both given and recorded"):
        hr.main(["--json", str(out), "--reference", "base", "--runs-from", str(first),
                 "--log", f"wide:0={tmp_path / 'w0.log'}"])
    with pytest.raises(SystemExit, match="expected a result file of scripts/hr_recipes.py"):
        hr.main(["--json", str(out), "--reference", "base", "--runs-from", str(tmp_path / "b0.json"),
                 "--log", f"long:0={tmp_path / 'l0.log'}"])


def test_bad_input_says_what_was_expected(tmp_path):
    with pytest.raises(SystemExit, match="expected RECIPE:SEED=PATH"):
        hr.main(["--json", str(tmp_path / "o.json"), "--reference", "b", "--log", "b=x.log"])
    with pytest.raises(SystemExit, match="ends at epoch 1 of 3"):
        hr.main(["--json", str(tmp_path / "o.json"), "--reference", "b",
                 "--log", f"b:0={_log(tmp_path / 'c.log', [0.5], of=3)}"])
    with pytest.raises(SystemExit, match="on the 'test' split; expected val"):
        hr.main(["--json", str(tmp_path / "o.json"), "--reference", "b",
                 "--eval", f"b:0={_eval(tmp_path / 't.json', 0.9, split='test')}"])
    with pytest.raises(SystemExit, match="--reference 'z' has no runs"):
        hr.main(["--json", str(tmp_path / "o.json"), "--reference", "z",
                 "--eval", f"b:0={_eval(tmp_path / 'v.json', 0.9)}"])
    assert not (tmp_path / "o.json").exists()


def test_ensemble_means_the_members_softmaxes_prefix_by_prefix():
    import numpy as np

    ens = load_script("scripts/hr_ensemble.py", "hr_ensemble")
    labels = np.array([0, 1, 1])
    a = np.array([[0.6, 0.4], [0.6, 0.4], [0.1, 0.9]])  # right on 0 and 2
    b = np.array([[0.45, 0.55], [0.2, 0.8], [0.3, 0.7]])  # right on 1 and 2
    got = ens.ensemble_accuracies([a, b], labels)
    assert got["members"] == [66.67, 66.67] and got["ensemble_of_first_k"] == [66.67, 100.0]
    assert got["ensemble"] == 100.0  # the mean gets all three right though neither member does
    np.testing.assert_allclose(ens.softmax(np.array([[0.0, np.log(3.0)]])), [[0.25, 0.75]])
    with pytest.raises(SystemExit, match="one \\(N=3, C\\) softmax per member"):
        ens.ensemble_accuracies([a, b[:2]], labels)


def _hr_checkpoint(path, vals, of=None, name="hr"):
    from trainer import checkpoint

    history = [{"loss": 0.9, "train_acc": 0.9, "epoch": i, "val_score": v, "seconds": 10.0}
               for i, v in enumerate(vals, 1)]
    checkpoint.save(path, {"kind": "model", "spec": {}, "preprocessing": {}, "state_dict": {},
                           "meta": {"name": name, "config": {"stage1": {"epochs": of or len(vals)}},
                                    "history": history}})
    return path


def test_a_checkpoints_history_stands_in_for_a_lost_log(tmp_path):
    pytest.importorskip("torch")
    ckpt = _hr_checkpoint(tmp_path / "hr.pt", [0.80, 0.886, 0.884])
    # The same figures as the log of the same epochs.
    assert hr.checkpoint_history(ckpt) == hr.parse_logs([_log(tmp_path / "a.log", [0.80, 0.886, 0.884])])
    out = tmp_path / "r.json"
    assert hr.main(["--json", str(out), "--reference", "base",
                    "--eval", f"base:0={_eval(tmp_path / 'b0.json', 0.880)}",
                    "--history", f"long:0={ckpt}"]) == 0
    run = json.loads(out.read_text())["runs"]["long:0"]
    assert run["log"]["from"] == "checkpoint" and run["log"]["best_epoch"] == 2 and run["val"] == 88.6
    with pytest.raises(SystemExit, match="ends at epoch 2 of 3"):
        hr.main(["--json", str(out), "--reference", "base", "--eval", f"base:0={tmp_path / 'b0.json'}",
                 "--history", f"long:0={_hr_checkpoint(tmp_path / 'part.pt', [0.8, 0.9], of=3)}"])
    with pytest.raises(SystemExit, match="not a stage-1"):
        hr.checkpoint_history(_hr_checkpoint(tmp_path / "lr.pt", [0.8], name="fsrfer"))
    with pytest.raises(SystemExit, match="not an fsrfer checkpoint|could not be read|corrupt"):
        hr.checkpoint_history(_eval(tmp_path / "x.json", 0.9))
    with pytest.raises(SystemExit, match="not both"):
        hr.main(["--json", str(out), "--reference", "base", "--log", f"long:0={tmp_path / 'a.log'}",
                 "--history", f"long:0={ckpt}"])
