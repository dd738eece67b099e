"""Bad inputs to the trainer's library API (degrade, data, config, evaluate, losses, checkpoint, synthetic), found
by a sweep: each is refused with the package's own error, saying what was received and what was expected (not a
TypeError, AttributeError, KeyError or ZeroDivisionError, nor a bad value silently taken as another)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fsrfer_edge.errors import ConfigError, InputError

FACES = np.random.default_rng(0).integers(0, 256, (4, 48, 48)).astype(np.uint8)


def _rng() -> np.random.Generator:
    return np.random.default_rng(0)


# -- config: list options hold items of the default's kind ------------------------------------------------------
@pytest.mark.needs("torch", "yaml")
@pytest.mark.parametrize("section, key, bad", [
    ("eval", "factors", [1, 2.5]),
    ("eval", "factors", [True, 2]),
    ("eval", "factors", ["2"]),
    ("degrade", "jpeg_quality", [True, 90]),
    ("degrade", "kernels", ["bicubic", 3]),
    ("stage2", "ablations", [1, "no_reweight"]),  # sorted() of a mixed list raised TypeError
    ("baselines", "run", ["image_sr", None]),
    ("eval", "protocols", ["resized", 1]),
])
def test_config_list_items_of_another_kind_are_a_config_error(section: str, key: str, bad: list[Any]) -> None:
    from trainer.config import from_dict

    with pytest.raises(ConfigError, match=rf"{section}\.{key}.*expected a list of"):
        from_dict({section: {key: bad}})


@pytest.mark.needs("torch", "yaml")
def test_config_list_of_whole_numbers_written_as_floats_is_read_as_integers() -> None:
    from trainer.config import from_dict

    cfg = from_dict({"eval": {"factors": [1, 2.0]}, "stage2": {"ablations": []}})
    assert cfg.eval.factors == (1, 2) and all(type(f) is int for f in cfg.eval.factors)
    assert cfg.stage2.ablations == ()


@pytest.mark.parametrize("bad", [None, 3, [("factors", [1, 2])], "factors"])
def test_degrade_config_from_something_else_than_a_mapping_is_a_config_error(bad: Any) -> None:
    from trainer.degrade import DegradeConfig

    with pytest.raises(ConfigError, match="expected a mapping"):
        DegradeConfig.from_dict(bad)


def test_ablated_with_an_unknown_name_is_a_config_error() -> None:
    from trainer.config import LossConfig, ablated

    with pytest.raises(ConfigError, match="no_reweigth.*expected one of"):
        ablated(LossConfig(), "no_reweigth")


@pytest.mark.needs("torch", "yaml")
@pytest.mark.parametrize("path", [None, 3, ""])
def test_config_load_path_of_another_type_is_an_input_error(path: Any) -> None:
    from trainer.config import load

    with pytest.raises(InputError, match="expected a path|empty path"):
        load(path)


# -- degrade --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["no", None, 1])
def test_augment_hr_flip_that_is_not_a_bool_is_refused(bad: Any) -> None:
    from trainer.degrade import augment_hr

    with pytest.raises(InputError, match="flip.*expected True or False"):
        augment_hr(FACES, _rng(), flip=bad)


@pytest.mark.parametrize("name", ["brightness", "contrast", "rotate", "scale", "erase"])
@pytest.mark.parametrize("bad", [None, "0.1", True, [0.1]])
def test_augment_hr_strength_that_is_not_a_number_is_refused(name: str, bad: Any) -> None:
    from trainer.degrade import augment_hr

    with pytest.raises(InputError, match=rf"{name}=.*expected"):
        augment_hr(FACES, _rng(), **{name: bad})


@pytest.mark.parametrize("bad", [None, 0, np.random.RandomState(0), "seed"])
def test_random_functions_refuse_what_is_not_a_generator(bad: Any) -> None:
    from trainer.data import batches
    from trainer.degrade import DegradeConfig, augment_hr, random_erase, random_lr

    for call in (lambda: augment_hr(FACES, bad), lambda: random_erase(FACES, bad),
                 lambda: random_lr(FACES, DegradeConfig(), bad), lambda: list(batches(4, 2, bad))):
        with pytest.raises(InputError, match="expected a numpy.random.Generator"):
            call()


@pytest.mark.parametrize("bad", [None, {"factors": [1, 2]}, "bicubic"])
def test_random_lr_refuses_a_config_that_is_not_a_degrade_config(bad: Any) -> None:
    from trainer.degrade import random_lr

    with pytest.raises(InputError, match="expected a DegradeConfig"):
        random_lr(FACES, bad, _rng())


@pytest.mark.parametrize("kw", [
    {"prob": True}, {"prob": None}, {"area": (0.5, 0.1)}, {"area": (0.0, 0.3)}, {"area": 0.3}, {"area": (0.1, 2.0)},
    {"aspect": (0.0, 3.0)}, {"aspect": None}, {"aspect": (3.0, 0.3)}, {"attempts": 0}, {"attempts": 2.5},
    {"attempts": True},
])
def test_random_erase_refuses_bad_options(kw: dict[str, Any]) -> None:
    from trainer.degrade import random_erase

    with pytest.raises(InputError, match=rf"{next(iter(kw))}=.*expected"):
        random_erase(FACES, _rng(), **kw)


# -- data -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["shuffle", "drop_last"])
@pytest.mark.parametrize("bad", ["no", None, 0])
def test_batches_flags_that_are_not_bools_are_refused(name: str, bad: Any) -> None:
    from trainer.data import batches

    with pytest.raises(InputError, match=rf"{name}.*expected True or False"):
        list(batches(4, 2, _rng(), **{name: bad}))


@pytest.mark.parametrize("bad", [None, True, "1", 1.5, -1])
def test_take_seed_that_is_not_an_integer_is_refused(bad: Any) -> None:
    from trainer.data import FaceSet

    fs = FaceSet(FACES, np.arange(4) % 7, np.array(["train"] * 4), "x")
    with pytest.raises(InputError, match="seed=.*expected an integer"):
        fs.take(2, seed=bad)


@pytest.mark.parametrize("bad", [np.ones((2, 7)), np.ones(10), [[np.nan] * 10], [[-1] + [1] * 9], None])
def test_vote_distribution_refuses_what_are_not_vote_counts(bad: Any) -> None:
    from trainer.data import vote_distribution

    with pytest.raises(InputError, match="votes.*expected"):
        vote_distribution(bad)


@pytest.mark.parametrize("path", [None, 3, np.zeros(2), ""])
def test_data_loaders_path_of_another_type_is_an_input_error(path: Any) -> None:
    from trainer import data

    for call in (lambda: data.load_dataset(path), lambda: data.load_npz(path), lambda: data.load_fer2013_csv(path),
                 lambda: data.load_ferplus_csv(path, path), lambda: data.load_rafdb(path),
                 lambda: data.load_folder(path)):
        with pytest.raises(InputError, match="expected a path|empty path"):
            call()


# -- evaluate -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("factor", [0, -1, True, 2.5, None])
def test_lr_crops_refuses_a_factor_that_is_not_a_positive_integer(factor: Any) -> None:
    from trainer.evaluate import lr_crops, small_crops

    with pytest.raises(InputError, match="factor.*expected an integer"):
        lr_crops(FACES, factor, "bicubic")
    with pytest.raises(InputError, match="factor.*expected an integer"):
        small_crops(FACES, factor)


@pytest.mark.parametrize("quality", [0, 101, True, "50", 50.5])
def test_lr_crops_refuses_a_jpeg_quality_outside_1_to_100(quality: Any) -> None:
    from trainer.evaluate import lr_crops

    with pytest.raises(InputError, match="jpeg_quality=.*expected an integer in 1..100"):
        lr_crops(FACES, 2, "box", quality)


def _evaluate(**kw: Any) -> Any:
    from fsrfer_edge.preprocessing import Preprocessing
    from trainer.evaluate import evaluate_fn

    args: dict[str, Any] = dict(logits_fn=lambda x, f: np.zeros((len(x), 7)), images=FACES, labels=np.zeros(4, int),
                                factors=[1, 2], pre=Preprocessing(input_size=48, channels=1))
    args.update(kw)
    return evaluate_fn(**args)


@pytest.mark.parametrize("bad", [0, -2, True, 2.0, None])
def test_evaluate_fn_refuses_a_batch_size_that_is_not_a_positive_integer(bad: Any) -> None:
    with pytest.raises(InputError, match="batch_size=.*expected an integer >= 1"):
        _evaluate(batch_size=bad)


@pytest.mark.parametrize("bad", [np.zeros(3, int), np.zeros((4, 1), int), np.array(["a"] * 4), None])
def test_evaluate_fn_refuses_labels_that_do_not_fit_the_faces(bad: Any) -> None:
    with pytest.raises(InputError, match="labels.*expected"):
        _evaluate(labels=bad)


@pytest.mark.parametrize("bad", [None, [FACES[0]], FACES[0]])
def test_evaluate_fn_refuses_faces_that_are_not_an_n_h_w_array(bad: Any) -> None:
    with pytest.raises(InputError, match="images.*expected"):
        _evaluate(images=bad)


@pytest.mark.parametrize("bad", [None, 2, [0], [True]])
def test_evaluate_fn_refuses_factors_that_are_not_a_list_of_positive_integers(bad: Any) -> None:
    with pytest.raises(InputError, match="factor"):
        _evaluate(factors=bad)


def test_evaluate_fn_keeps_its_answers() -> None:
    out = _evaluate(factors=(1, np.int64(2)), batch_size=3)
    assert set(out["factors"]) == {"1", "2"} and out["mean_accuracy"] == 1.0 and out["n"] == 4


# -- losses ---------------------------------------------------------------------------------------------------------
@pytest.mark.needs("torch")
@pytest.mark.parametrize("bad", ["no", "sum", None])
def test_soft_cross_entropy_refuses_an_unknown_reduction(bad: Any) -> None:
    import torch

    from trainer.losses import soft_cross_entropy

    logits = torch.zeros(2, 7)
    with pytest.raises(InputError, match="reduction=.*expected 'mean' or 'none'"):
        soft_cross_entropy(logits, torch.softmax(logits, 1), reduction=bad)


# -- checkpoint -----------------------------------------------------------------------------------------------------
@pytest.mark.needs("torch")
@pytest.mark.parametrize("name", ["compress", "byte_planes"])
@pytest.mark.parametrize("bad", ["no", None, 0])
def test_checkpoint_save_flags_that_are_not_bools_are_refused(name: str, bad: Any, tmp_path: Path) -> None:
    from trainer.checkpoint import save

    with pytest.raises(InputError, match=rf"{name}.*expected True or False"):
        save(tmp_path / "c.pt", {"a": 1}, **{name: bad})
    assert not (tmp_path / "c.pt").exists()


@pytest.mark.needs("torch")
@pytest.mark.parametrize("bad", [None, [("a", 1)], "payload"])
def test_checkpoint_save_payload_that_is_not_a_dict_is_refused(bad: Any, tmp_path: Path) -> None:
    from trainer.checkpoint import save

    with pytest.raises(InputError, match="payload.*expected a dict"):
        save(tmp_path / "c.pt", bad)


@pytest.mark.needs("torch")
@pytest.mark.parametrize("path", [None, 3, np.zeros(2), ""])
def test_checkpoint_paths_of_another_type_are_an_input_error(path: Any) -> None:
    from trainer.checkpoint import load, load_model, save

    for call in (lambda: load(path), lambda: load_model(path), lambda: save(path, {"a": 1})):
        with pytest.raises(InputError, match="expected a path|empty path"):
            call()


# -- synthetic ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw", [{"n": -1}, {"n": "3"}, {"n": True}, {"size": 0}, {"size": None}, {"size": 4.0},
                                {"seed": None}, {"seed": "0"}])
def test_make_faces_refuses_bad_counts_sizes_and_seeds(kw: dict[str, Any]) -> None:
    from trainer.synthetic import make_faces

    args: dict[str, Any] = {"n": 2, **kw}
    with pytest.raises(InputError, match=rf"{next(iter(kw))}=.*expected"):
        make_faces(**args)


@pytest.mark.parametrize("bad", [np.array([0, 1, 2, -1]), np.array([0, 1, 2, 7])])
def test_labels_outside_the_classes_are_refused_not_counted_as_another_class(bad: np.ndarray) -> None:
    from trainer.evaluate import confusion

    with pytest.raises(InputError, match="labels.*expected class indices 0..6"):
        _evaluate(labels=bad)  # -1 was counted as the last class, 7 raised IndexError
    with pytest.raises(InputError, match="expected class indices 0..6"):
        confusion(bad, np.zeros(4, np.int64))
