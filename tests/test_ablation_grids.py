"""The ablation grids of notebooks/grids/ablations: one file per question the designs list.

Each file loads, names only parameters of experiment.ipynb, varies the one parameter it is
named after (over 5 seeds) and builds valid configs. The two options added for them (alpha
of U(x) through ``strategy_options.score_options``, T through ``synthesis_options.rounds``)
are checked for bad values and shown to reach the run.
"""

from __future__ import annotations

import inspect
import json
import re
import tomllib
from pathlib import Path

import numpy as np
import pytest

from gapscope.helpers import scoring, selection, synthesis
from gapscope.helpers.components import BuiltinStrategy, resolve
from gapscope.helpers.experiments import check_grid_keys, expand_grid, load_grid_config
from gapscope.helpers.loop import CurationLoop, LoopConfig

ROOT = Path(__file__).resolve().parents[1]
ABLATIONS = ROOT / "notebooks" / "grids" / "ablations"

#: file stem -> (grid key it varies, path inside that key's dict value or None)
VARIES = {
    "ensemble_size": ("n_members", None),
    "alpha": ("strategy_options", ("score_options", "alpha")),
    "clusters": ("strategy_options", ("n_clusters",)),
    "bandit": ("strategy", None),
    "budget": ("budget", None),
    "lambda": ("strategy_options", ("lam",)),
    "tau": ("synthesis_options", ("tau",)),
    "rounds": ("synthesis_options", ("rounds",)),
}
#: keys a file may vary besides its own: the seed, and for budget.yaml the rounds that keep
#: budget x rounds (the labels acquired) fixed
ALSO = {"budget": {"rounds"}}
SEEDS = [0, 1, 2, 3, 4]

TINY = {
    "data": "mixture",
    "data_options": {"n_pool": 200, "n_val": 60, "n_test": 150},
    "budget": 5,
    "rounds": 1,
    "n_initial": 10,
    "n_members": 2,
    "n_clusters": 4,
    "model_options": {"epochs": 3, "hidden": [16], "patience": None},
}


def _combos(stem: str) -> tuple[dict, list[dict]]:
    cfg = load_grid_config(ABLATIONS / f"{stem}.yaml")
    return cfg, expand_grid(cfg["grid"])


def _key(v) -> str:
    return json.dumps(v, sort_keys=True)


def _value(combo: dict, key: str, path: tuple | None):
    v = combo[key]
    for p in path or ():
        assert isinstance(v, dict) and list(v) == [p], (
            f"{key}: expected only {p!r} in {combo[key]!r}"
        )
        v = v[p]
    return v


def test_one_file_per_ablation_and_they_ship_as_package_data():
    assert {p.stem for p in ABLATIONS.glob("*.yaml")} == set(VARIES)
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "gapscope.notebooks.grids.ablations" in cfg["packages"]
    assert cfg["package-data"]["gapscope.notebooks.grids.ablations"] == ["*.yaml"]


@pytest.mark.parametrize("stem", sorted(VARIES))
def test_header_states_question_source_time_and_command(stem):
    text = (ABLATIONS / f"{stem}.yaml").read_text()
    header = text.split("\nnotebook:")[0]
    assert header.startswith("# Ablation: ")
    assert all(line.startswith("#") for line in header.splitlines())
    assert re.search(r"# Design: 00[0-4] ", header), "names the design text it comes from"
    assert re.search(r"Time on 2 cores \(2 workers\): (at most )?about \d+ min", header)
    assert "estimated from one run" in header and "@" not in header
    cmd = f"gapscope run --config notebooks/grids/ablations/{stem}.yaml --out runs/ablation-{stem}"
    assert f"`{cmd}`" in header


@pytest.mark.parametrize("stem", sorted(VARIES))
def test_grid_loads_and_names_only_notebook_parameters(stem):
    cfg, combos = _combos(stem)
    assert Path(cfg["notebook"]).name == "experiment.ipynb" and Path(cfg["notebook"]).is_file()
    check_grid_keys(cfg["notebook"], combos)
    assert {c["data"] for c in combos} <= {"mixture", "digits"}


@pytest.mark.parametrize("stem", sorted(VARIES))
def test_grid_varies_its_one_parameter_over_five_seeds(stem):
    key, path = VARIES[stem]
    _, combos = _combos(stem)
    keys = {k for c in combos for k in c}
    varying = {k for k in keys if len({_key(c.get(k)) for c in combos}) > 1}
    assert varying - {"seed"} - ALSO.get(stem, set()) == {key}, varying
    values = {_key(_value(c, key, path)) for c in combos}
    assert len(values) >= (2 if stem == "bandit" else 4), values
    for v in values:
        seeds = sorted(c["seed"] for c in combos if _key(_value(c, key, path)) == v)
        assert seeds == SEEDS, (v, seeds)
    assert len(combos) == len(values) * len(SEEDS)
    if stem == "budget":
        assert len({c["budget"] * c["rounds"] for c in combos}) == 1, "the same labels in every run"


@pytest.mark.parametrize("stem", sorted(VARIES))
def test_every_combo_builds_a_valid_config_and_strategy(stem):
    _, combos = _combos(stem)
    for c in combos:
        config = LoopConfig(**c).validate()
        strategy = resolve(
            "strategy",
            {"name": config.strategy, "options": config.strategy_options},
            name="strategy",
        )
        assert isinstance(strategy, BuiltinStrategy)
        # an option the selection function does not take would fail only in round 1
        takes = set(inspect.signature(selection.STRATEGIES[strategy.selection]).parameters)
        assert set(strategy.options) - {"score", "score_options", "density_dims"} <= takes
        if config.synthesis_options:
            assert strategy.synthesis is not None, "synthesis_options without a synthesis mode"
            takes = set(inspect.signature(synthesis.synthesize).parameters)
            assert set(config.synthesis_options) - {"n", "generator", "rounds"} <= takes


# --------------------------------------------------------------------------------------
# alpha of U(x): strategy_options.score_options
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "match"),
    [
        (
            {"score_options": {"alpha": 1.5}},
            r"score_options'\]: alpha: expected a number in \[0.0, 1.0\]",
        ),
        ({"score_options": {"alpha": "half"}}, r"score_options'\]: alpha: expected a real number"),
        (
            {"score_options": {"beta": 0.5}},
            r"unknown option\(s\) \['beta'\] .* expected some of \['alpha'\]",
        ),
        ({"score_options": [0.5]}, r"score_options'\]: expected a dict, got list"),
    ],
)
def test_score_options_are_validated_when_the_strategy_is_built(options, match):
    with pytest.raises(ValueError, match=match):
        BuiltinStrategy("umc_uncertainty", **options)


def test_score_options_of_a_score_without_options_are_refused():
    with pytest.raises(ValueError, match=r"for score 'predictive_entropy'; expected some of \[\]"):
        BuiltinStrategy("entropy", score_options={"alpha": 0.5})


def _run_to_first_selection(loop: CurationLoop) -> None:
    while not (loop.round == 0 and loop.state["step_log"][-1]["step"] == "select"):
        loop.step()


def test_alpha_reaches_the_selection(tmp_path):
    # alpha = 0: U(x) is the members' variance alone, so the batch is its top-B
    loop = CurationLoop(
        tmp_path / "run",
        LoopConfig(
            **TINY, strategy="umc_uncertainty", strategy_options={"score_options": {"alpha": 0.0}}
        ),
    )
    _run_to_first_selection(loop)
    probs = loop._round_array("probs")
    unl = np.flatnonzero(~np.isin(loop.dataset.pool.ids, loop.labeled_ids))
    chosen = set(loop.state["batch"])

    def top(u):
        return set(
            loop.dataset.pool.ids[
                unl[np.argsort(-u[unl], kind="stable")[: TINY["budget"]]]
            ].tolist()
        )

    assert chosen == top(scoring.variance(probs))
    assert chosen != top(scoring.ensemble_uncertainty(probs, alpha=0.5)), (
        "the default alpha picks others"
    )
    assert loop.state["batch_info"]["score_options"] == {"alpha": 0.0}


# --------------------------------------------------------------------------------------
# T, the rounds of synthesis: synthesis_options.rounds
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [-1, 1.5, "2", True])
def test_synthesis_rounds_is_validated(bad):
    with pytest.raises(ValueError, match=r"synthesis_options: expected a dict whose 'rounds'"):
        LoopConfig(
            **TINY, strategy="active_synthesis", synthesis_options={"rounds": bad}
        ).validate()


@pytest.mark.slow
def test_synthesis_stops_after_t_rounds(tmp_path):
    config = LoopConfig(
        **{**TINY, "rounds": 2},
        strategy="active_synthesis",
        synthesis_options={"rounds": 1, "n": 4, "generator": {"epochs": 2}},
    )
    loop = CurationLoop(tmp_path / "run", config).run()
    per_round = {h["round"]: h.get("synthetic", []) for h in loop.state["history"]}
    assert len(per_round[0]) == 4 and per_round[1] == [], per_round
    items = loop.store.items()
    assert (items["source"] == "synthetic").sum() == 4
    assert loop.results()["labels"].tolist() == [10, 15, 20], "the real labels do not change"
