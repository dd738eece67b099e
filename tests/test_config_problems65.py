"""fsrfer-train lists every problem of a config in one error: a bad eval.protocols too (it raised alone, hiding the
others, while every other check is collected)."""
import pytest

from fsrfer_edge.errors import ConfigError
from trainer import config


@pytest.mark.needs("torch", "yaml")
@pytest.mark.parametrize("protocols", [[], ["resized", "blurry"]])
def test_bad_eval_protocols_are_listed_with_the_configs_other_problems(protocols):
    with pytest.raises(ConfigError) as err:
        config.from_dict({"eval": {"protocols": protocols, "split": "holdout"}}, "cfg.yaml")
    text = str(err.value)
    assert "2 problems" in text
    assert "eval.protocols must list some of ['resized', 'small', 'camera']" in text
    assert "eval.split must be one of" in text
