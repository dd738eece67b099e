"""Tests that kill hand-made mutants (round 68, task K68c) of trainer/degrade.py (LR versions clipped to pixel
values, the blur a normalised Gaussian along both axes, noise clipped on the LR face before it is resized back, the
augmentation's defaults and ranges, random erasing reaching every edge with noise of every value), trainer/data.py
(drop_last, soft labels kept with their faces in subsets and in the FER+ join, padded FER+ Usage, split folders and
image suffixes in any case, RAF-DB's label map, extra CSV fields, class counts of every class) and the parts of the
trainer's loops that round 67d skipped: mixup (each face blended with the label of the face it was blended with,
lam ~ Beta(alpha, alpha)), stage 1's weight averaging (a constant rate, the average shipped with BatchNorm
statistics of all the training faces) and the deep G (copies of the HR stages, batches of augmented HR faces and
their LR versions at their own factors, the frozen HR model in eval mode, the best pre-training epoch shipped).
Tiny synthetic faces, temporary folders and the tiny config only."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fsrfer_edge.preprocessing import degrade
from trainer import degrade as degrade_mod
from trainer.degrade import (
    DegradeConfig,
    augment_hr,
    lr_versions,
    random_erase,
    random_lr,
)


def _edge(n: int = 2) -> np.ndarray:
    """Faces black on the left half, white on the right: bicubic resampling overshoots at the step."""
    x = np.zeros((n, 48, 48), np.uint8)
    x[:, :, 24:] = 255
    return x


# -- trainer/degrade.py --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_lr_versions_clip_the_resampling_overshoot_to_pixel_values(factor: int) -> None:
    # Mutant: lr_versions returns preprocessing.degrade's output unclipped.
    raw = degrade(_edge(), factor)
    assert raw.min() < 0.0 and raw.max() > 255.0  # the kernel overshoots on this face
    lr = lr_versions(_edge(), factor)
    assert lr.min() == 0.0 and lr.max() == 255.0
    np.testing.assert_array_equal(lr, np.clip(raw, 0.0, 255.0))


def test_lr_versions_accept_a_factor_as_large_as_the_face() -> None:
    # Mutant: a factor equal to the face side refused (> became >=).
    faces = np.random.default_rng(0).integers(0, 256, (2, 16, 16)).astype(np.uint8)
    lr = lr_versions(faces, 16)  # a 1-pixel LR face, resized back: flat
    assert lr.shape == (2, 16, 16)
    assert np.ptp(lr.reshape(2, -1), axis=1).max() < 1e-3
    with pytest.raises(degrade_mod.InputError, match="expected at most 16"):
        lr_versions(faces, 17)


def test_blur_keeps_a_flat_face_flat_up_to_its_edges() -> None:
    # Mutant: the horizontal blur multiplies by the blur matrix instead of its transpose (edge rows unnormalised).
    flat = np.full((3, 48, 48), 100, np.uint8)
    cfg = DegradeConfig(factors=(1,), blur_prob=1.0, blur_sigma=(2.0, 3.0))
    out, _ = random_lr(flat, cfg, np.random.default_rng(0))
    np.testing.assert_allclose(out, 100.0, atol=1e-3)


def test_blur_is_a_gaussian_of_the_drawn_sigma_along_both_axes() -> None:
    # Mutants: the kernel cut at 1 sigma instead of 3; the horizontal pass without the transpose.
    face = np.zeros((1, 48, 48), np.float32)
    face[0, 24, 24] = 255.0
    sigma = 1.5
    cfg = DegradeConfig(factors=(1,), blur_prob=1.0, blur_sigma=(sigma, sigma))
    out = random_lr(face, cfg, np.random.default_rng(0))[0][0]
    row, col = out[24], out[:, 24]
    np.testing.assert_allclose(row, col, rtol=1e-5, atol=1e-6)  # separable, the same along both axes
    for d in range(1, 5):
        want = np.exp(-0.5 * (d / sigma) ** 2)
        np.testing.assert_allclose(row[24 + d] / row[24], want, rtol=1e-4)
        np.testing.assert_allclose(row[24 - d] / row[24], want, rtol=1e-4)
    assert out.sum() == pytest.approx(255.0, rel=1e-4)  # a blur moves light, it does not add any


def test_noise_is_clipped_on_the_lr_face_before_it_is_resized_back(monkeypatch: pytest.MonkeyPatch) -> None:
    # Mutant: the clip of the noisy LR face removed (only the final output clipped).
    seen: list[np.ndarray] = []
    real = degrade_mod.resize

    def spy(img: np.ndarray, size: tuple[int, int], *a: Any, **k: Any) -> np.ndarray:
        if tuple(size) == (48, 48):
            seen.append(np.array(img))
        return real(img, size, *a, **k)

    monkeypatch.setattr(degrade_mod, "resize", spy)
    faces = np.full((4, 48, 48), 250, np.uint8)
    faces[:2] = 5
    cfg = DegradeConfig(factors=(2,), noise_prob=1.0, noise_sigma=(40.0, 40.0))
    random_lr(faces, cfg, np.random.default_rng(0))
    assert seen and all(s.shape[1:] == (24, 24) for s in seen)
    assert min(s.min() for s in seen) == 0.0 and max(s.max() for s in seen) == 255.0


def test_random_erase_rectangles_reach_every_edge_and_hold_noise_of_every_value() -> None:
    # Mutants: the top-left corner drawn from h - eh positions instead of h - eh + 1 (the bottom row never erased);
    # the noise drawn from 0..254.
    flat = np.full((300, 12, 12), 128, np.uint8)
    e = random_erase(flat, np.random.default_rng(0), prob=1.0)
    changed = e != 128
    hit = changed.any(axis=(1, 2))
    assert hit.mean() > 0.9
    rows, cols = changed.any(axis=2)[hit], changed.any(axis=1)[hit]
    assert rows[:, 0].any() and rows[:, -1].any() and cols[:, 0].any() and cols[:, -1].any()
    assert not (rows[:, 0] & rows[:, -1]).any() and not (cols[:, 0] & cols[:, -1]).any()  # smaller than the face
    assert e[changed].min() == 0 and e[changed].max() == 255  # the noise spans every pixel value


def test_augment_hr_accepts_a_half_turn_as_its_largest_rotation() -> None:
    # Mutant: rotate=180 refused (the range [0, 180] made half-open).
    x = np.random.default_rng(0).integers(0, 256, (4, 48, 48)).astype(np.uint8)
    out = augment_hr(x, np.random.default_rng(0), rotate=180.0, flip=False, pad=0, brightness=0.0, contrast=0.0)
    assert out.shape == x.shape and out.dtype == np.uint8 and not np.array_equal(out, x)
    with pytest.raises(degrade_mod.InputError, match="rotate"):
        augment_hr(x, np.random.default_rng(0), rotate=180.5)


def test_augment_hr_defaults_are_the_documented_flip_crop_and_jitters() -> None:
    # Mutant: the contrast jitter's default 0.2 became 0 (stage 1 trains with no contrast jitter).
    x = np.random.default_rng(1).integers(0, 256, (16, 48, 48)).astype(np.uint8)
    plain = augment_hr(x, np.random.default_rng(0))
    explicit = augment_hr(x, np.random.default_rng(0), flip=True, pad=4, brightness=0.2, contrast=0.2, rotate=0.0,
                          scale=0.0, erase=0.0)
    np.testing.assert_array_equal(plain, explicit)
    no_contrast = augment_hr(x, np.random.default_rng(0), contrast=0.0)
    assert not np.array_equal(plain, no_contrast)


# -- trainer/train.py: mixup -----------------------------------------------------------------------------------------


def _mixup_epoch(soft: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[float, float]:
    """One stage-1 epoch with mixup at learning rate 0 of a model whose logits depend on each face; returns the loss it
    reported and the loss of a mixed batch worked out here (each face blended with ``perm``'s face, its loss
    with its own label weighted ``lam`` and with the other face's label ``1 - lam``)."""
    import torch

    from trainer import train as train_mod
    from trainer.synthetic import make_faces

    imgs, labels = make_faces(8, seed=3)
    split = train_mod.Split(imgs, labels)
    if soft:  # one-hot votes: their mixed loss is the hard labels' mixed loss
        split.targets = np.eye(7, dtype=np.float32)[labels]
    cfg = _tiny_cfg(stage1={"batch_size": 8, "augment": False, "mixup": 0.4, "label_smoothing": 0.1})
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48 * 48, 7))
    seen: list[torch.Tensor] = []
    net.register_forward_hook(lambda m, i, o: seen.append(i[0].detach().clone()))
    draws: list[tuple[float, np.ndarray]] = []
    real_mix = train_mod.mix_batch

    def mix(n: int, alpha: float, rng: np.random.Generator) -> tuple[float, np.ndarray]:
        lam, perm = real_mix(n, alpha, rng)
        assert perm is not None
        draws.append((lam, perm))
        return lam, perm

    batches: list[np.ndarray] = []
    real_batches = train_mod._batches
    monkeypatch.setattr(train_mod, "mix_batch", mix)

    def record_batches(*a: Any) -> list[np.ndarray]:
        batches.extend(real_batches(*a))
        return list(batches)

    monkeypatch.setattr(train_mod, "_batches", record_batches)
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    epoch = train_mod._classifier_epoch(net, opt, split, cfg, 1, 0.0, lr_inputs=False, dev=torch.device("cpu"),
                                        mixup=cfg.stage1.mixup)
    stats = epoch(0, np.random.default_rng(0))
    (idx,), ((lam, perm),) = batches, draws
    assert 0.0 < lam < 1.0 and not np.array_equal(perm, np.arange(8))
    pix = imgs[idx].astype(np.float32)
    x = train_mod._tensor(lam * pix + (1.0 - lam) * pix[perm])
    torch.testing.assert_close(seen[0], x)
    with torch.no_grad():
        logits = net(x)
    ce = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    y = torch.from_numpy(labels[idx])
    want = lam * ce(logits, y) + (1.0 - lam) * ce(logits, y[perm])
    return stats["loss"], float(want)


def _tiny_cfg(**over: Any) -> Any:
    """tests/test_mutants67d.py's tiny config (synthetic faces, CPU) with ``over`` merged in."""
    from test_mutants67d import _cfg

    return _cfg(**over)


@pytest.mark.needs("torch", "yaml")
@pytest.mark.parametrize("soft", [False, True], ids=["hard_labels", "soft_labels"])
def test_mixup_blends_faces_and_their_labels_with_the_same_weight(soft: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # Mutants: the pixels blended with lam and 1 - lam swapped; the loss's weights swapped; the second label (or
    # vote distribution) not permuted with the faces.
    got, want = _mixup_epoch(soft, monkeypatch)
    assert got == pytest.approx(want, rel=1e-5)


@pytest.mark.needs("torch", "yaml")
def test_mixup_weights_follow_a_symmetric_beta_of_the_configured_concentration() -> None:
    # Mutants: lam drawn from Beta(alpha, 1) (skewed towards the shuffled face) or Beta(1/alpha, 1/alpha).
    from trainer.train import mix_batch

    rng = np.random.default_rng(0)
    for alpha in (0.2, 1.0):
        lam = np.array([mix_batch(4, alpha, rng)[0] for _ in range(4000)])
        assert abs(lam.mean() - 0.5) < 0.02
        want_var = 1.0 / (4.0 * (2.0 * alpha + 1.0))  # the variance of Beta(alpha, alpha)
        assert lam.var() == pytest.approx(want_var, rel=0.08)


# -- trainer/train.py: the deep G (stage2.generator_start) ---------------------------------------------------------


@pytest.mark.needs("torch", "yaml")
@pytest.mark.parametrize("start,level", [("stem", "layer1"), ("layer1", "layer2")])
def test_deep_g_starts_as_the_hr_stages_and_its_batches_pair_augmented_hr_faces_with_their_lr_versions(
        start: str, level: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Mutants: G's copies not loaded from the HR model (or from the wrong stages); the HR faces not augmented; the
    # HR features read from the LR faces; the LR features read at the feature level instead of G's start; the
    # factors not passed on; the frozen HR model left in training mode (its BatchNorm statistics drift).
    import torch

    from trainer import train as train_mod
    from trainer.degrade import random_lr as real_random_lr

    cfg = _tiny_cfg(data={"synthetic": 24}, stage1={"epochs": 1, "batch_size": 8},
                    degrade={"factors": [1, 2, 4], "noise_prob": 0.5},
                    stage2={"generator_start": start, "feature_level": level, "scale_aware": True,
                            "batch_size": 8, "pretrain_epochs": 1, "epochs": 1})
    data = train_mod.load_data(cfg, None)
    hr = train_mod.train_stage1(cfg, data, tmp_path, resume=False)
    assert hr is not None
    hr_fer = train_mod.load_fer(hr).fer.eval()
    got: dict[str, Any] = {}

    def fake_train_g(cfg_: Any, out: Any, name: str, loss_cfg: Any, parts: Any, sample: Any,
                     *rest: Any) -> None:
        g, fer = parts.g, parts.head.fer
        got["g"] = {k: v.clone() for k, v in g.stages.state_dict().items()}
        got["batch"] = sample(np.random.default_rng(5), np.arange(8), slice(None))
        got["fer"] = {k: v.clone() for k, v in fer.state_dict().items()}  # after the batch's frozen passes

    monkeypatch.setattr(train_mod, "_train_g", fake_train_g)
    assert train_mod.train_stage2(cfg, data, hr, tmp_path, "fsrfer", cfg.stage2.losses, resume=False) is None
    lo = hr_fer.trunk.start_ends[start]
    g_state = got["g"]
    hr_stage = hr_fer.trunk.layers[lo].state_dict()
    assert all(torch.equal(g_state[f"0.{k}"], v) for k, v in hr_stage.items())
    # The batch: the faces augmented, then each degraded at its own factor, as replayed here from the same draws.
    rng = np.random.default_rng(5)
    faces = train_mod._augment(cfg, data.train.images[np.arange(8)], rng)
    assert not np.array_equal(faces, data.train.images[:8])
    lr, factors = real_random_lr(faces, train_mod._degrade_cfg(cfg), rng)
    batch = got["batch"]
    with torch.no_grad():
        want_lr = hr_fer.trunk.forward_to(train_mod._tensor(lr), start)
        want_hr = hr_fer.trunk.forward_to(train_mod._tensor(faces.astype(np.float32)), level)
    torch.testing.assert_close(batch.f_lr, want_lr)
    torch.testing.assert_close(batch.f_hr, want_hr)
    np.testing.assert_array_equal(batch.factor.numpy(), factors)
    assert len(set(factors.tolist())) > 1
    np.testing.assert_array_equal(batch.labels.numpy(), data.train.labels[:8])
    fer_state = got["fer"]
    assert all(torch.equal(fer_state[k], v) for k, v in hr_fer.state_dict().items())  # still the HR model


# -- trainer/train.py: weight averaging (stage1.swa_epochs) ----------------------------------------------------------


@pytest.mark.needs("torch", "yaml")
def test_swa_averages_at_a_constant_rate_and_ships_the_average_with_statistics_of_all_training_faces(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Mutants: the averaging epochs on the cosine schedule; the average never updated; its BatchNorm statistics
    # left as they were, or refitted on the val faces or on the first batch alone.
    import torch
    from torch.optim.swa_utils import update_bn

    from trainer import checkpoint
    from trainer import train as train_mod

    cfg = _tiny_cfg(stage1={"epochs": 1, "batch_size": 8, "swa_epochs": 2, "swa_lr": 0.01}, eval={"batch_size": 8})
    data = train_mod.load_data(cfg, None)
    rates: dict[int, list[float]] = {}
    real_set_lr = train_mod.set_lr

    def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
        rates.setdefault(id(opt), []).append(lr)
        real_set_lr(opt, lr)

    ends: list[dict[str, torch.Tensor]] = []  # the trained weights at the end of each averaging epoch
    real_epoch = train_mod._classifier_epoch

    def classifier_epoch(model: torch.nn.Module, *a: Any, **k: Any) -> Any:
        fn = real_epoch(model, *a, **k)
        if not k.get("constant_lr"):
            return fn

        def epoch(e: int, rng: np.random.Generator) -> Any:
            out = fn(e, rng)
            ends.append({n: p.detach().clone() for n, p in model.named_parameters()})
            return out
        return epoch

    scores = iter([0.5, 0.3, 0.9])  # stage 1's epoch, then the two averages: the second is the best
    monkeypatch.setattr(train_mod, "set_lr", set_lr)
    monkeypatch.setattr(train_mod, "_classifier_epoch", classifier_epoch)
    monkeypatch.setattr(train_mod, "_mean_acc", lambda *a: next(scores))
    hr = train_mod.train_stage1(cfg, data, tmp_path, resume=False)
    assert hr is not None and len(ends) == 2
    _, swa_rates = rates.values()  # stage 1's optimiser, then the averaging epochs'
    assert len(swa_rates) >= 4 and set(swa_rates) == {0.01}
    shipped = train_mod.load_fer(hr).fer
    for n, p in shipped.named_parameters():
        torch.testing.assert_close(p.detach(), (ends[0][n] + ends[1][n]) / 2)
    # BatchNorm statistics: those the averaged weights give over all the (unaugmented) training faces.
    refit = train_mod.load_fer(hr).fer
    imgs = data.train.images
    assert len(imgs) > 8  # several eval batches
    with torch.no_grad():
        update_bn((train_mod._tensor(imgs[s:s + 8].astype(np.float32)) for s in range(0, len(imgs), 8)), refit)
    want = {k: v for k, v in refit.state_dict().items() if "running" in k}
    assert want
    got = shipped.state_dict()
    for k, v in want.items():
        torch.testing.assert_close(got[k], v)
    assert checkpoint.load(hr, kind="model")["meta"]["swa"] == {"epochs": 2, "lr": 0.01}


# -- trainer/data.py -------------------------------------------------------------------------------------------------


def test_batches_drop_only_the_incomplete_last_batch() -> None:
    # Mutant: drop_last stops one whole batch early (n - batch_size instead of n - n % batch_size).
    from trainer.data import batches

    for n, bs in ((8, 4), (9, 3), (11, 4), (3, 4)):
        out = list(batches(n, bs, np.random.default_rng(0), drop_last=True))
        assert [len(b) for b in out] == [bs] * (n // bs)
        kept = np.concatenate(out) if out else np.zeros(0, np.int64)
        assert len(set(kept.tolist())) == len(kept)
        assert [len(b) for b in batches(n, bs, np.random.default_rng(0))][: n // bs] == [bs] * (n // bs)


def test_ferplus_csv_usage_with_spaces_around_it_pairs_with_the_fer2013_rows(tmp_path: Path) -> None:
    # Mutant: the FER+ Usage column compared unstripped (a CSV written with ", " separators refused).
    from trainer import data

    px = [" ".join(str(v) for v in np.random.default_rng(s).integers(0, 256, 2304)) for s in range(2)]
    fer = tmp_path / "fer2013.csv"
    fer.write_text(f"emotion,pixels,Usage\n0,{px[0]},Training\n3,{px[1]},PublicTest\n")
    plus = tmp_path / "fer2013new.csv"
    plus.write_text("Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n"
                    " Training ,fer0.png,0,0,0,0,9,1,0,0,0,0\nPublicTest ,fer1.png,8,0,0,0,0,0,0,0,0,0\n")
    fs = data.load_ferplus_csv(fer, plus)
    np.testing.assert_array_equal(fs.labels, [0, 6])
    np.testing.assert_array_equal(fs.split, ["train", "val"])


def test_folder_split_names_are_case_insensitive(tmp_path: Path) -> None:
    # Mutant: the split taken from the folder name as written ("Train" became a split the FaceSet refuses).
    from PIL import Image

    from trainer import data

    root = tmp_path
    for split, cls in (("Train", "happy"), ("TEST", "Sad")):
        d = root / split / cls
        d.mkdir(parents=True)
        Image.fromarray(np.full((48, 48), 90, np.uint8), mode="L").save(d / "a.png")
    fs = data.load_folder(root)
    assert sorted(fs.split.tolist()) == ["test", "train"]
    assert fs.class_counts()["train"][3] == 1 and fs.class_counts()["test"][4] == 1


def test_folder_takes_images_whose_suffix_is_in_capitals(tmp_path: Path) -> None:
    # Mutant: the suffix compared as written (a camera's A.JPG or a B.PNG ignored).
    from PIL import Image

    from trainer import data

    d = tmp_path / "angry"
    d.mkdir()
    for name in ("a.PNG", "b.JPG", "c.Jpeg"):
        Image.fromarray(np.full((48, 48), 90, np.uint8), mode="L").save(d / name, "PNG" if "P" in name else "JPEG")
    assert len(data.load_folder(tmp_path)) == 3


def test_rafdb_labels_map_to_their_expressions(tmp_path: Path) -> None:
    # Mutant: RAF-DB's 2 (Fear) and 3 (Disgust) mapped to each other's class.
    from PIL import Image

    from fsrfer_edge.preprocessing import CLASSES
    from trainer import data

    root = tmp_path
    names = ["surprise", "fear", "disgust", "happy", "sad", "angry", "neutral"]  # RAF-DB's labels 1..7
    (root / "EmoLabel").mkdir()
    (root / "Image" / "aligned").mkdir(parents=True)
    lines = []
    for label in range(1, 8):
        lines.append(f"train_{label:05d}.jpg {label}")
        Image.fromarray(np.full((20, 20, 3), 30 * label, np.uint8)).save(
            root / "Image" / "aligned" / f"train_{label:05d}_aligned.jpg")
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    fs = data.load_rafdb(root)
    assert [CLASSES[i] for i in fs.labels] == names


def _faceset_with_votes() -> Any:
    from trainer.data import FaceSet

    rng = np.random.default_rng(0)
    labels = np.array([0, 3, 5, 6, 3, 1])
    targets = rng.dirichlet(np.ones(7), len(labels)).astype(np.float32)
    split = np.array(["train", "val", "train", "test", "train", "val"])
    return FaceSet(rng.integers(0, 256, (6, 8, 8)).astype(np.uint8), labels, split, "unit", targets)


def test_subsets_keep_each_faces_soft_label_with_it() -> None:
    # Mutant: a subset keeps the whole set's vote distributions (refused, or paired with other faces).
    fs = _faceset_with_votes()
    train = fs.subset("train")
    rows = np.flatnonzero(fs.split == "train")
    np.testing.assert_array_equal(train.targets, fs.targets[rows])
    np.testing.assert_array_equal(train.images, fs.images[rows])
    part = fs.take(3, seed=1)
    for img, t in zip(part.images, part.targets):
        i = next(j for j in range(6) if np.array_equal(fs.images[j], img))
        np.testing.assert_array_equal(t, fs.targets[i])


def test_npz_soft_labels_are_the_votes_of_each_kept_faces_own_ferplus_row(tmp_path: Path) -> None:
    # Mutant: the vote rows taken in the archive's order of matches, not those of the faces kept (a face without a
    # FER+ label shifts every later face's soft label).
    from trainer import data

    d = tmp_path
    np.savez(d / "fer2013.npz", images=np.random.default_rng(0).integers(0, 256, (5, 48, 48)).astype(np.uint8),
             labels=np.array([0, 1, 2, 3, 4]), split=np.array(["train", "train", "val", "test", "test"]),
             orig_row=np.array([0, 2, 3, 5, -1]))
    plus_labels = np.array([6, 3, -1, 5, 1])
    votes = np.zeros((5, 10), np.int64)
    column = {c: i for i, c in enumerate(data.FERPLUS_VOTE_TO_CLASS) if c >= 0}
    for r, lab in enumerate(plus_labels):
        if lab >= 0:
            votes[r, column[int(lab)]] = 8
        votes[r, 3 + r] += 2  # each row a distribution of its own
    np.savez(d / "ferplus_labels.npz", orig_row=np.array([5, 0, 2, 3, 7]), labels=plus_labels, votes=votes)
    fs = data.load_npz(d / "fer2013.npz")
    np.testing.assert_array_equal(fs.labels, [3, 5, 6])
    assert fs.targets is not None
    np.testing.assert_array_equal(fs.targets, data.vote_distribution(votes[[1, 3, 0]]))
    np.testing.assert_array_equal(fs.targets.argmax(1), fs.labels)


def test_fer2013_csv_row_with_an_extra_field_is_refused_with_its_line(tmp_path: Path) -> None:
    # Mutant: only rows with too few fields refused (a stray extra column read as if it were not there).
    from fsrfer_edge.errors import DataError
    from trainer import data

    px = " ".join(["7"] * 2304)
    path = tmp_path / "fer2013.csv"
    path.write_text(f"emotion,pixels,Usage\n0,{px},Training\n3,{px},PublicTest,extra\n")
    with pytest.raises(DataError, match=r"line 3: 4 fields; expected 3"):
        data.load_fer2013_csv(path)


def test_class_counts_list_every_class_even_when_the_last_ones_are_missing() -> None:
    # Mutant: np.bincount without minlength (a split without neutral faces got a 6-long list).
    from trainer.data import FaceSet

    fs = FaceSet(np.zeros((4, 8, 8), np.uint8), np.array([0, 3, 3, 1]), np.array(["train", "train", "val", "val"]), "u")
    assert fs.class_counts() == {"train": [1, 0, 0, 1, 0, 0, 0], "val": [0, 1, 0, 1, 0, 0, 0]}


@pytest.mark.needs("torch", "yaml")
def test_deep_g_pretrained_alone_ships_the_g_of_its_best_val_epoch(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # Mutant: with stage2.epochs 0 the last pre-training epoch's G shipped instead of the best-scoring one's.
    import torch

    from trainer import checkpoint
    from trainer import train as train_mod

    cfg = _tiny_cfg(data={"synthetic": 24}, stage1={"epochs": 1, "batch_size": 8}, eval={"factors": [1, 2]},
                    stage2={"generator_start": "stem", "feature_level": "layer1", "batch_size": 8,
                            "pretrain_epochs": 2, "epochs": 0})
    data = train_mod.load_data(cfg, None)
    hr = train_mod.train_stage1(cfg, data, tmp_path, resume=False)
    assert hr is not None
    scores, seen = iter([0.9, 0.2]), []

    def scripted(model: Any, split: Any, factors: Any, bs: int) -> float:
        seen.append({k: v.clone() for k, v in model.generator.state_dict().items()})
        return next(scores)

    monkeypatch.setattr(train_mod, "_mean_acc", scripted)
    path = train_mod.train_stage2(cfg, data, hr, tmp_path, "fsrfer", cfg.stage2.losses, resume=False)
    assert path is not None and len(seen) == 2
    assert not all(torch.equal(v, seen[1][k]) for k, v in seen[0].items())  # the second epoch changed G
    sd = checkpoint.load(path, kind="model")["state_dict"]
    assert all(torch.equal(sd["generator." + k], v) for k, v in seen[0].items())
