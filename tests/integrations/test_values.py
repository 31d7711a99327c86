"""What every integration shares: safe keys, flattened params, long values kept whole, numbers cast."""

from __future__ import annotations

import hashlib
import warnings
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import mini_mlflow as mm
from mini_mlflow import Run
from mini_mlflow.integrations._safety import guarded
from mini_mlflow.integrations._values import as_number, flatten, log_params, safe_key
from mini_mlflow.store._layout import validate_key


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("train/loss", "train/loss"),
        ("eval_loss@5", "eval_loss_5"),
        ("a//b", "a/_/b"),
        ("/lead", "_/lead"),
        ("../up", "__/up"),
        ("x.json/y", "x.json_/y"),
        ("ok:1 2-3", "ok:1 2-3"),
        ("", "_"),
    ],
)
def test_safe_key_makes_any_name_a_valid_key(raw: str, expected: str) -> None:
    assert safe_key(raw) == expected
    assert validate_key(safe_key(raw)) == expected


def test_safe_key_cuts_at_the_key_limit() -> None:
    key = safe_key("k" * 300)
    assert len(key) == 250 and validate_key(key) == key


def test_flatten_joins_nested_names_and_keeps_lists() -> None:
    assert flatten({"opt": {"lr": 0.1, "betas": [0.9, 0.99]}, "n": 3, "empty": {}}) == {
        "opt/lr": 0.1,
        "opt/betas": [0.9, 0.99],
        "n": 3,
        "empty": {},
    }


@pytest.mark.parametrize(
    ("config", "kept"),
    [
        ({"a/b": 1, "a": {"b": 2}}, 1),  # a key holding the separator, then the nested one
        ({"a": {"b": 2}, "a/b": 1}, 2),
        ({"m": {"x/y": "s"}, "m/x": {"y": "t"}}, "s"),
    ],
)
def test_flatten_keeps_the_first_of_two_values_with_one_name_and_says_so(
    config: dict[str, Any], kept: object
) -> None:
    with pytest.warns(RuntimeWarning, match=r"named '(a/b|m/x/y)'.*first is kept"):
        flat = flatten(config)
    assert list(flat.values()) == [kept]


def test_as_number_casts_numpy_and_refuses_what_is_not_a_number() -> None:
    np = pytest.importorskip("numpy")
    cases = [
        (np.float32(0.5), 0.5),
        (np.int64(3), 3.0),
        (np.array(2.5), 2.5),
        (True, 1.0),
        (7, 7.0),
        (-2, -2.0),
    ]
    for value, expected in cases:
        got = as_number(value)
        assert type(got) is float and got == expected
    assert as_number(Decimal("1.5")) == 1.5
    for value in ["1.0", None, {"a": 1}, np.array([1.0, 2.0]), object(), 10**400, -(10**400)]:
        assert as_number(value) is None


def test_a_long_param_is_cut_with_its_hash_and_kept_whole_as_an_artifact(store: Path) -> None:
    whole = "x" * 7000
    with Run(runs_dir=store) as run:
        stored = log_params(run, {"prompt": whole, "nested/ok": 1, "bad key!": "v"}, "test")
    got = mm.Store(store).get_run(run.run_id)["params"]
    assert got["nested/ok"] == 1 and got["bad key_"] == "v"
    cut = got["prompt"]
    assert len(cut) == 6000 and cut == stored["prompt"]
    assert cut.startswith("x" * 5000)
    assert hashlib.sha256(whole.encode()).hexdigest()[:16] in cut and "7000 characters" in cut
    assert (Path(run.run_dir) / "artifacts" / "params" / "prompt.txt").read_text() == whole


def test_a_changed_param_on_a_resumed_run_warns_and_keeps_the_others(store: Path) -> None:
    with Run(runs_dir=store) as run:
        log_params(run, {"lr": 0.1}, "test")
    with Run(run.run_id, runs_dir=store) as resumed, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        log_params(resumed, {"lr": 0.2, "epochs": 3}, "test")
    assert mm.Store(store).get_run(run.run_id)["params"] == {"lr": 0.1, "epochs": 3}
    assert any("param 'lr'" in str(w.message) for w in caught)


def test_guarded_warns_once_per_cause_and_returns_the_default() -> None:
    calls = []

    @guarded("demo", "a hook", default="fallback")
    def hook(kind: type[Exception]) -> str:
        calls.append(kind)
        raise kind("broken")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert hook(OSError) == "fallback"
        assert hook(OSError) == "fallback"
        assert hook(KeyError) == "fallback"
    assert len(calls) == 3
    texts = [str(w.message) for w in caught]
    assert len(texts) == 2 and "OSError: broken" in texts[0] and "KeyError" in texts[1]
    with pytest.raises(KeyboardInterrupt):
        guarded("demo", "ctrl-c")(lambda: (_ for _ in ()).throw(KeyboardInterrupt()))()
