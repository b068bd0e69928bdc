"""The curation loop: one round at a time over the user's data, model and strategy; resumable.

The loop orchestrates and persists; the components come through the seam
(:mod:`gapscope.helpers.components`): ``data`` (a Pool or Dataset), ``model`` (``fit`` /
``predict_proba``), ``strategy`` (``strategy(budget, ctx)``), each an object or a JSON spec.

A round of :class:`CurationLoop` runs these explicit steps, in order (``STEPS``)::

    train -> evaluate -> embed -> allocate -> select -> synthesize -> label -> integrate

* ``train``      fit a fresh copy of the model on the training set (labeled real items plus
                 accepted synthetic ones; optionally class-balanced weights);
* ``evaluate``   metrics of that model (:func:`gapscope.helpers.metrics.round_metrics`): on
                 the data's test split when it has one, else cross-validated on the labeled
                 set; shifted split, membership inference and diversity where the data allow;
                 this is the learning-curve point of round ``k`` (``k`` batches acquired);
* ``embed``      one pass of the pool through the model: probabilities (M, n, C) and its
                 embedding (n, k) (the flattened input for a model without ``embed``);
* ``allocate``   the strategy's ``allocate(ctx)`` hook, if it has one (a bandit records its
                 arms before this round's split);
* ``select``     ``strategy(budget, ctx)``: the batch, checked (unique, unlabeled, in range);
                 scores, density and clusters are computed only when the strategy asks;
* ``synthesize`` optional synthetic items (:mod:`gapscope.helpers.synthesis`), entered in the
                 store as ``source="synthetic"``;
* ``label``      simulated annotators (the data's :class:`~gapscope.helpers.data.Oracle`)
                 write events to the store; with ``labeler="human"`` the loop waits until the
                 widgets have resolved every batch item (a label, a reject, a skip or out of
                 scope all count);
* ``integrate``  labels and accepted synthetic items (q(x) > q_min) join the training set;
                 the strategy's ``feedback(ctx, batch)`` hook books rewards.

Items already labeled (in the pool or in the store) are the training set from round 0. With
none, a bootstrap batch of ``n_initial`` pool items, drawn at random, is labeled first.

Every step writes its arrays to ``run_dir/round_XXX/`` and then the small JSON state
``run_dir/state.json`` (atomically; the state before it is kept as ``state.prev.json``). A new
:class:`CurationLoop` on the same ``run_dir`` resumes at the first step not yet done. Each
step's randomness is derived from ``(seed, round, step)`` and every step is idempotent (a kill
between a step's file writes and its state save reruns the step to the same files, the same
synthetic ids and the same store events), so a resumed run gives exactly the results of an
uninterrupted one. Components given as specs are rebuilt from the saved config; components
given as objects must be given again.

What a resume reads back, and what it recomputes instead:

* the lazy round arrays (``round_XXX/*.npz``) and ``reference.npz`` are recomputed when they
  are missing or unreadable (a deleted round folder, a torn file): they are deterministic;
* the generator (``generator.pt``, gapscope's own weights-only format) is loaded; a torn,
  corrupt or non-weights-only file is refitted (seeded, on the training set it was first
  fitted on) with a warning;
* a round's model is loaded from ``round_XXX/model.pt`` only when its file holds tensors and
  plain data (``torch.load(weights_only=True)`` accepts it, as for gapscope's ``Ensemble`` and
  ``TorchEnsemble``). A model checkpoint that is a pickle (``SklearnEnsemble``, a
  scikit-learn ``FrozenEncoder`` head, a user's model whose ``save`` pickles) is never
  unpickled unless ``CurationLoop(..., trust_checkpoints=True)``: the round's model is refitted
  instead (``train`` is seeded, so it is the same model). A model without ``save``/``load``
  is not checkpointed at all and is refitted the same way. A damaged or missing checkpoint is
  refitted with a warning.

Every label a model uses is counted in ``labels``: the default ensemble draws its
early-stopping fold from the labeled set (``validation_fraction``), and the data's ``val``
split is never used for training.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ._io import atomic_savez, atomic_write, json_default
from .components import (
    StrategyContext,
    call_with_accepted,
    check_batch,
    check_spec,
    component_name,
    describe_object,
    is_int,
    resolve,
)

__all__ = [
    "STEPS",
    "STRATEGY_PRESETS",
    "LoopConfig",
    "CurationLoop",
    "WaitingForLabels",
    "SYNTHETIC_ID_BASE",
]

from .components import STRATEGY_PRESETS  # noqa: E402  (re-exported: names for ``strategy``)

STEPS = ("train", "evaluate", "embed", "allocate", "select", "synthesize", "label", "integrate")
BOOTSTRAP_STEPS = ("select", "label", "integrate")

#: Synthetic items get ids from here upwards, so they never clash with pool ids.
SYNTHETIC_ID_BASE = 1 << 40

#: Annotator name of labels the data came with.
GIVEN_ANNOTATOR = "given"

#: Store event kinds that resolve a batch item without a label (it leaves the batch).
_DROP_KINDS = ("reject", "flag_out_of_scope")


class WaitingForLabels(RuntimeError):
    """Raised by the ``label`` step when a human labeler has not resolved the whole batch yet.

    ``pending`` holds the item ids still waiting. Nothing is changed: call
    :meth:`CurationLoop.step` (or ``run``) again once the widgets have written to the store.
    """

    def __init__(self, pending: list):
        self.pending = pending
        super().__init__(f"{len(pending)} item(s) of the batch still wait for a label")


# (field, expected, check) for LoopConfig.validate: one table, one message format
def _opt(check):
    return lambda v: v is None or check(v)


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _spec_ok(v: Any) -> bool:
    return isinstance(v, str) or isinstance(v, dict)


_FIELD_CHECKS: dict[str, tuple[str, Any]] = {
    "data": ("a registered dataset name, 'module:factory' or a spec dict", _spec_ok),
    "data_options": ("a dict", lambda v: isinstance(v, dict)),
    "model": ("a registered model name, 'module:factory' or a spec dict", _spec_ok),
    "model_options": ("a dict", lambda v: isinstance(v, dict)),
    "strategy": ("a registered strategy name, 'module:factory' or a spec dict", _spec_ok),
    "strategy_options": ("a dict", lambda v: isinstance(v, dict)),
    "budget": ("an int >= 1", lambda v: is_int(v) and v >= 1),
    "rounds": ("an int >= 0", lambda v: is_int(v) and v >= 0),
    "n_initial": ("None or an int >= 0", _opt(lambda v: is_int(v) and v >= 0)),
    "n_members": ("an int >= 1", lambda v: is_int(v) and v >= 1),
    "labeler": ("'oracle' or 'human'", lambda v: v in ("oracle", "human")),
    "noise_rate": ("a number in [0, 1)", lambda v: _num(v) and 0 <= v < 1),
    "annotator_reliabilities": (
        "None or a non-empty list of numbers in [0, 1]",
        _opt(lambda v: isinstance(v, list) and v and all(_num(r) and 0 <= r <= 1 for r in v)),
    ),
    "q_min": ("a number in [0, 1]", lambda v: _num(v) and 0 <= v <= 1),
    "balance": ("a bool", lambda v: isinstance(v, bool)),
    "n_clusters": ("an int >= 1", lambda v: is_int(v) and v >= 1),
    "density_dims": ("an int >= 1", lambda v: is_int(v) and v >= 1),
    "synthesis": (
        "None, 'random', 'low_density', 'active', 'shaped' or 'counter_bias'",
        lambda v: v in (None, "random", "low_density", "active", "shaped", "counter_bias"),
    ),
    "synthesis_options": (
        "a dict whose 'rounds' (if given) is None or an int >= 0",
        lambda v: isinstance(v, dict) and _opt(lambda t: is_int(t) and t >= 0)(v.get("rounds")),
    ),
    "stop_diversity_delta": ("None or a number >= 0", _opt(lambda v: _num(v) and v >= 0)),
    "stop_gain_delta": ("None or a number", _opt(_num)),
    "stop_patience": ("an int >= 1", lambda v: is_int(v) and v >= 1),
    "cv_folds": ("an int >= 2", lambda v: is_int(v) and v >= 2),
    "seed": ("an int >= 0", lambda v: is_int(v) and v >= 0),
}


@dataclasses.dataclass
class LoopConfig:
    """Everything that defines a run (JSON-serialisable, saved in ``state.json``).

    Parameters
    ----------
    data : str or dict
        A spec of the data source (:mod:`gapscope.helpers.components`): a built-in dataset
        name (``"digits"``, ``"digits-lt"``, ``"mnist1d"``, ``"mixture"``), a loader
        (``"csv"``, ``"parquet"``, ``"arrow"``, ``"image_folder"``, ``"texts"``), a registered
        name or ``"package.module:factory"``. Ignored when ``CurationLoop(data=...)`` gets an
        object.
    data_options : dict
        Keyword options for the data factory (merged over the spec's own options).
    model : str or dict
        A model spec: ``"ensemble"`` (gapscope's torch :class:`~gapscope.helpers.models.Ensemble`,
        early-stopping on 20% of the labeled set), ``"sklearn"`` (option ``estimator``: a spec
        such as ``"sklearn.linear_model:LogisticRegression"``), ``"torch"`` (option
        ``module_factory``), ``"frozen_encoder"`` (option ``encoder``), or a registered name.
    model_options : dict
        Keyword options for the model factory.
    strategy : str or dict
        A strategy spec: a preset of :data:`STRATEGY_PRESETS`, a strategy of
        :data:`gapscope.helpers.selection.STRATEGIES`, a registered name or
        ``"package.module:function"`` (a ``strategy(budget, ctx)`` function or a factory).
    strategy_options : dict
        Keyword options for the strategy factory (e.g. ``score``, ``lam``, ``bandit``).
    budget : int
        Items acquired per round.
    rounds : int
        Acquisition rounds after the bootstrap batch; the run evaluates ``rounds + 1`` models.
    n_initial : int or None
        Size of the random bootstrap batch. None: 20 when nothing is labeled yet, else 0 (the
        labels the data came with are the start).
    n_members : int
        Ensemble size M, given to model factories that take ``n_members``.
    labeler : {"oracle", "human"}
        ``"oracle"`` simulates annotators (needs an oracle); ``"human"`` waits for the store.
    noise_rate : float
        Error rate of the single simulated annotator.
    annotator_reliabilities : list of float or None
        Several simulated annotators (probability of a correct label each).
    q_min : float
        Synthetic items join the training set when their quality q(x) > q_min (store view).
    balance : bool
        Class-balanced training: each item's loss is weighted by the design's
        w_c = (1/|c|) / sum_c' (1/|c'|) (:func:`gapscope.helpers.selection.cluster_inverse_weights`),
        with the classes of the training set as the clusters (synthetic items have no place
        in the pool's cluster map, their class they do have). Needs a model whose ``fit``
        takes ``sample_weight``.
    n_clusters : int
        Clusters of ``ctx.clusters()`` and of the reference space for diversity metrics.
    density_dims : int
        Principal components of the embedding that ``ctx.log_density()`` uses.
    synthesis : {None, "random", "low_density", "active", "shaped", "counter_bias"}
        Synthetic items per round (``synthesis_options["n"]``, default ``budget``); overrides
        the preset's synthesis mode when given. ``synthesis_options["rounds"]`` = T
        synthesizes in the first T acquisition rounds only (default: every round).
    stop_diversity_delta, stop_gain_delta : float or None
        Stop when |change of D_score| (resp. accuracy gain) stays below delta for
        ``stop_patience`` consecutive rounds.
    cv_folds : int
        Folds of the cross-validated evaluation used when the data have no test split.
    seed : int
    """

    data: str | dict = "digits-lt"
    data_options: dict = dataclasses.field(default_factory=dict)
    model: str | dict = "ensemble"
    model_options: dict = dataclasses.field(default_factory=dict)
    strategy: str | dict = "entropy"
    strategy_options: dict = dataclasses.field(default_factory=dict)
    budget: int = 20
    rounds: int = 5
    n_initial: int | None = None
    n_members: int = 3
    labeler: str = "oracle"
    noise_rate: float = 0.0
    annotator_reliabilities: list | None = None
    q_min: float = 0.5
    balance: bool = False
    n_clusters: int = 10
    density_dims: int = 8
    synthesis: str | None = None
    synthesis_options: dict = dataclasses.field(default_factory=dict)
    stop_diversity_delta: float | None = None
    stop_gain_delta: float | None = None
    stop_patience: int = 2
    cv_folds: int = 5
    seed: int = 0

    @classmethod
    def from_dict(cls, d: dict) -> LoopConfig:
        """A config from a dict; unknown keys are an error that lists the fields."""
        if not isinstance(d, dict):
            raise TypeError(f"config: expected a dict or LoopConfig, got {type(d).__name__}")
        fields = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise ValueError(f"config: unknown field(s) {unknown}; expected fields of {fields}")
        return cls(**d)

    def validate(self) -> LoopConfig:
        """Check every field's type and range; returns self. Raises ValueError naming the field."""
        for name, (expected, ok) in _FIELD_CHECKS.items():
            v = getattr(self, name)
            if not ok(v):
                raise ValueError(f"{name}: expected {expected}, got {v!r}")
        for name in ("data", "model", "strategy"):
            check_spec(getattr(self, name), name=name)
        try:
            json.dumps(dataclasses.asdict(self))
        except TypeError as exc:
            raise ValueError(f"config: every field must be JSON-serialisable ({exc})") from None
        return self


def _component_record(obj: Any) -> Any:
    return describe_object(obj)


class CurationLoop:
    """The curation loop over one run folder (new or resumed).

    Parameters
    ----------
    run_dir : path
        Folder for ``state.json``, checkpoints, per-round arrays and ``labels.sqlite``.
        If it already holds a state, the loop resumes it (``config`` must then be None or
        equal to the saved one).
    config : LoopConfig or dict, optional
        Required for a new run.
    data : Pool, Dataset or spec, optional
        The data source; default: ``config.data``. A :class:`~gapscope.helpers.data.Pool`
        keeps the labels it has (-1 = unlabeled).
    model : model object or spec, optional
        Default: ``config.model``. It is never fitted itself: each round fits a copy.
    strategy : callable or spec, optional
        ``strategy(budget, ctx) -> pool positions``; default: ``config.strategy``.
    oracle : Oracle or array of shape (n_pool,), optional
        True labels for simulated annotation (``labeler="oracle"``), when the data have none.
    store : gapscope.helpers.store.LabelStore, optional
        Where labels live; default: a SQLite store in ``run_dir`` (or the database of
        ``GAPSCOPE_STORE_URL``), in a project of this run's own (``state["store_project"]``,
        ``"run-<folder>-<uuid>"``), so runs that share one database never mix. For
        ``labeler="human"`` pass the store the widgets write to.
    trust_checkpoints : bool, default False
        Load model checkpoints that are pickles (``SklearnEnsemble.save``, a user's model
        that pickles itself) on resume. Unpickling runs whatever code the file names, so by
        default such a round's model is refitted instead (seeded: the same model); only
        weights-only checkpoints (tensors and plain data) are loaded. Not part of the
        config: it is about the files in this folder, not about the run.

    Examples
    --------
    >>> loop = CurationLoop("runs/demo", LoopConfig(data="mixture", rounds=2))  # doctest: +SKIP
    >>> loop.run().results()  # doctest: +SKIP
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        config: LoopConfig | dict | None = None,
        *,
        data: Any = None,
        model: Any = None,
        strategy: Any = None,
        oracle: Any = None,
        store: Any = None,
        trust_checkpoints: bool = False,
    ):
        from .store import LabelStore

        if not isinstance(trust_checkpoints, bool):
            raise TypeError(f"trust_checkpoints: expected a bool, got {trust_checkpoints!r}")
        self.trust_checkpoints = trust_checkpoints
        self.run_dir = Path(run_dir)
        state_path = self.run_dir / "state.json"
        if isinstance(config, dict):
            config = LoopConfig.from_dict(config)
        if config is not None and not isinstance(config, LoopConfig):
            raise TypeError(f"config: expected a LoopConfig or dict, got {type(config).__name__}")
        saved = None
        self._saved_state_text: str | None = None
        if state_path.exists():
            saved = self._read_state(state_path)
            saved_cfg = LoopConfig.from_dict(saved["config"])
            if config is not None and dataclasses.asdict(config) != dataclasses.asdict(saved_cfg):
                raise ValueError(
                    f"config: run_dir {str(self.run_dir)!r} holds a run with a different config; "
                    "pass config=None to resume it or use another run_dir"
                )
            config = saved_cfg
        elif config is None:
            raise ValueError(
                f"config: expected a LoopConfig for a new run in {str(self.run_dir)!r}, got None"
            )
        # a component given as a spec (a name or a dict) is part of the config
        given: dict[str, Any] = {"data": data, "model": model, "strategy": strategy}
        for field, v in given.items():
            if isinstance(v, (str, dict)):
                if saved is not None and getattr(config, field) != v:
                    raise ValueError(
                        f"{field}: run_dir {str(self.run_dir)!r} holds a run with {field}="
                        f"{getattr(config, field)!r}, got {v!r}"
                    )
                config = dataclasses.replace(config, **{field: v})  # type: ignore[arg-type]
                given[field] = None
        data, model, strategy = given["data"], given["model"], given["strategy"]
        self.config = config.validate()
        cfg = self.config
        components = (saved or {}).get("components", {})
        # -- build (or take) the three components, before anything is written
        self.dataset = self._resolve_data(data, oracle, components.get("data"))
        self._model_template = self._resolve_model(model, components.get("model"))
        self._strategy = self._resolve_strategy(strategy, components.get("strategy"))
        ds = self.dataset
        if cfg.labeler == "oracle" and ds.oracle is None:
            raise ValueError(
                "oracle: labeler='oracle' simulates annotators and needs true labels; pass "
                "oracle=<labels of the pool rows> or use labeler='human'"
            )
        if saved is None:
            labeled = set(ds.pool.ids[ds.pool.labeled_mask()].tolist())
            if store is not None and len(cons := store.consensus()):
                labeled |= set(cons["item_id"].astype(np.int64).tolist()) & set(ds.pool.ids.tolist())
            n_labeled = len(labeled)
            n_unlabeled = len(ds.pool) - n_labeled
            n_initial = cfg.n_initial if cfg.n_initial is not None else (0 if n_labeled else 20)
            if n_initial > n_unlabeled:
                raise ValueError(
                    f"n_initial: expected at most the {n_unlabeled} unlabeled pool items, got {n_initial}"
                )
            if cfg.budget > n_unlabeled:
                raise ValueError(
                    f"budget: expected at most the {n_unlabeled} unlabeled pool items, got {cfg.budget}"
                )
            if n_initial == 0 and n_labeled == 0:
                raise ValueError(
                    "n_initial: expected >= 1 when the pool and the store hold no labels yet "
                    "(the first model needs some), got 0"
                )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if store is None:
            if saved is None:
                project = self._new_project_name()
            else:  # a run made before runs had projects of their own used "default"
                project = saved.get("store_project") or "default"
            store = LabelStore(run_dir=self.run_dir, project=project)
        self.store = store
        self._init_store()
        self._model_cache: tuple[int, Any] | None = None
        self._arrays: dict[str, dict[str, np.ndarray]] = {}
        self._reference: dict[str, Any] | None = None
        if saved is not None:
            self.state = saved
            return
        labeled_ids, labeled_y = self._known_labels()
        self.state = {
            "config": dataclasses.asdict(cfg),
            "store_project": getattr(self.store, "project", None),
            "components": {
                "data": None if data is None else _component_record(data),
                "model": None if model is None else _component_record(model),
                "strategy": None if strategy is None else _component_record(strategy),
            },
            "round": -1 if n_initial > 0 else 0,
            "n_initial": n_initial,
            "step": 0,
            "done": False,
            "stop_reason": None,
            "labeled_ids": labeled_ids,
            "labeled_y": labeled_y,
            "given_labels": len(labeled_ids),
            "excluded_ids": [],
            "synthetic_ids": [],
            "synthetic_y": [],
            "synthetic_next": SYNTHETIC_ID_BASE,
            "batch": [],
            "batch_info": {},
            "strategy_state": {},
            "metrics": [],
            "history": [],
            "step_log": [],
        }
        self._save_state()

    # ------------------------------------------------------------------ components
    def _from_config(self, field: str, given: Any, record: Any, kind: str, **context: Any) -> Any:
        """The component ``given`` as an object, or built from the config's spec for ``field``.

        ``record`` is what the saved run noted of an object component: such a run cannot
        rebuild it, so it must be given again.
        """
        if given is not None:
            return given
        if record is not None:
            raise ValueError(
                f"{field}: this run was made with a {field} object ({record['object']}); pass "
                f"{field}=... again to resume it"
            )
        target, options = check_spec(getattr(self.config, field), name=field)
        extra = getattr(self.config, f"{field}_options")
        return resolve(kind, {"name": target, "options": {**options, **extra}}, name=field, **context)

    def _resolve_data(self, data: Any, oracle: Any, record: Any):
        from .data import Dataset, Pool

        data = self._from_config("data", data, record, "dataset", random_state=self.config.seed)
        if isinstance(data, Pool):
            data = Dataset.from_pool(data, oracle=oracle)
        elif isinstance(data, Dataset):
            if oracle is not None:
                data = dataclasses.replace(
                    data, oracle=Dataset.from_pool(data.pool, oracle=oracle).oracle
                )
        else:
            raise TypeError(
                f"data: expected a Pool, a Dataset or a spec that builds one, got {type(data).__name__}"
            )
        if len(data.pool) == 0:
            raise ValueError("data: expected a non-empty pool, got 0 items")
        return data

    def _resolve_model(self, model: Any, record: Any):
        cfg = self.config
        model = self._from_config(
            "model", model, record, "model",
            n_members=cfg.n_members, n_classes=self.dataset.n_classes, random_state=cfg.seed,
        )
        for method in ("fit", "predict_proba"):
            if not callable(getattr(model, method, None)):
                raise TypeError(
                    f"model: expected an object with fit(X, y) and predict_proba(X) -> (M, n, C), "
                    f"got {type(model).__name__} without {method}()"
                )
        return model

    def _resolve_strategy(self, strategy: Any, record: Any):
        strategy = self._from_config("strategy", strategy, record, "strategy")
        if not callable(strategy):
            raise TypeError(
                f"strategy: expected a callable strategy(budget, ctx), got {type(strategy).__name__}"
            )
        return strategy

    @property
    def model_template(self) -> Any:
        """The (unfitted) model each round fits a copy of."""
        return self._model_template

    @property
    def strategy(self) -> Any:
        """The strategy callable."""
        return self._strategy

    @property
    def synthesis_mode(self) -> str | None:
        """The synthesis mode: ``config.synthesis``, else the strategy's (a preset's)."""
        if self.config.synthesis is not None:
            return self.config.synthesis
        return getattr(self._strategy, "synthesis", None)

    # ------------------------------------------------------------------ public state
    @property
    def round(self) -> int:
        """Batches acquired so far (-1 while the bootstrap batch is pending)."""
        return int(self.state["round"])

    @property
    def done(self) -> bool:
        return bool(self.state["done"])

    @property
    def stop_reason(self) -> str | None:
        return self.state["stop_reason"]

    @property
    def next_step(self) -> str | None:
        if self.done:
            return None
        return self._steps()[self.state["step"]]

    @property
    def labeled_ids(self) -> list[int]:
        """Ids of the labeled real items in the training set, in the order they joined."""
        return list(self.state["labeled_ids"])

    @property
    def labeled_y(self) -> list[int]:
        return list(self.state["labeled_y"])

    @property
    def synthetic_ids(self) -> list[int]:
        """Ids of the accepted synthetic items in the training set."""
        return list(self.state["synthetic_ids"])

    @property
    def batch(self) -> list[int]:
        """Ids of the current batch (empty between rounds)."""
        return list(self.state["batch"])

    @property
    def history(self) -> list[dict]:
        """One record per integrated batch: round, item ids, labels, strategy info."""
        return copy.deepcopy(self.state["history"])

    @property
    def bandit_history(self) -> list[dict]:
        """Arm statistics per round of a bandit strategy (empty otherwise)."""
        return copy.deepcopy(self.state["strategy_state"].get("history", []))

    @property
    def step_log(self) -> list[dict]:
        """(round, step, seconds) of every step run."""
        return copy.deepcopy(self.state["step_log"])

    def results(self):
        """Per-round metrics as a pandas DataFrame (one row per evaluated round)."""
        import pandas as pd

        return pd.DataFrame(self.state["metrics"])

    # ------------------------------------------------------------------ helpers
    def _steps(self) -> tuple[str, ...]:
        return BOOTSTRAP_STEPS if self.round < 0 else STEPS

    def _rng(self, step: str) -> np.random.Generator:
        """The generator for (seed, round, step): the same on every resume."""
        return np.random.default_rng([self.config.seed, self.round + 1, STEPS.index(step)])

    def _seed_for(self, step: str) -> int:
        return int(self._rng(step).integers(0, 2**31 - 1))

    def _round_dir(self, r: int | None = None) -> Path:
        d = self.run_dir / f"round_{(self.round if r is None else r) + 1:03d}"
        d.mkdir(exist_ok=True)
        return d

    def _read_state(self, path: Path) -> dict:
        """The saved state, or a ValueError that names the file and the way back."""
        prev = self.run_dir / "state.prev.json"
        try:
            text = path.read_text()
            saved = json.loads(text)
            if not isinstance(saved, dict) or not isinstance(saved.get("config"), dict):
                raise ValueError("not a CurationLoop state (no 'config')")
        except (OSError, ValueError) as exc:
            if prev.exists():
                how = (
                    f"copy {str(prev)!r} over it to resume from one step earlier (every step is "
                    "idempotent, so the run ends the same)"
                )
            else:
                how = "restore it from a backup, or use a new run_dir to start the run again"
            raise ValueError(
                f"run_dir: cannot read the saved state {str(path)!r} (truncated or corrupt: "
                f"{exc}); {how}. The labels themselves are in the label store."
            ) from None
        self._saved_state_text = text
        return saved

    def _new_project_name(self) -> str:
        """A store project name unique to this run (saved in state.json)."""
        folder = re.sub(r"[^A-Za-z0-9_.-]", "_", self.run_dir.resolve().name)[:60] or "run"
        return f"run-{folder}-{uuid.uuid4().hex[:16]}"

    def _save_state(self) -> None:
        """Write state.json atomically, keeping the state before it as state.prev.json."""
        text = json.dumps(self.state, default=json_default)
        prev = self._saved_state_text
        if prev is not None and prev != text:
            atomic_write(self.run_dir / "state.prev.json", lambda p: p.write_text(prev))
        atomic_write(self.run_dir / "state.json", lambda p: p.write_text(text))
        self._saved_state_text = text

    def _annotators(self):
        """The simulated annotators (the oracle's), seeded by the run."""
        cfg = self.config
        rel = cfg.annotator_reliabilities or [1.0 - float(cfg.noise_rate)]
        assert self.dataset.oracle is not None
        return self.dataset.oracle.annotators([float(r) for r in rel], random_state=cfg.seed)

    def _init_store(self) -> None:
        ds = self.dataset
        self.store.set_schema(list(range(ds.n_classes)), tags=("blurry", "ambiguous", "atypical"))
        items = self.store.items()
        known = set(items["item_id"].astype(np.int64).tolist()) if len(items) else set()
        ids = [int(i) for i in ds.pool.ids if int(i) not in known]
        if ids:
            self.store.add_items(ids, dataset=ds.name, source="real", round=0)
        if self.config.labeler == "oracle":
            for a in self._annotators():
                self.store.add_annotator(a.name)

    def _known_labels(self) -> tuple[list[int], list[int]]:
        """Labels the data came with (written to the store) plus the store's consensus."""
        pool = self.dataset.pool
        given = np.flatnonzero(pool.labeled_mask())
        if given.size:
            self.store.add_annotator(GIVEN_ANNOTATOR)
            self.store.record_many(
                [
                    {
                        "item_id": int(pool.ids[i]),
                        "kind": "label",
                        "annotator": GIVEN_ANNOTATOR,
                        "label": int(pool.labels[i]),
                        "round": 0,
                        "cues": {"given": True},
                        "key": f"given-{int(pool.ids[i])}",
                    }
                    for i in given
                ]
            )
        lab = self._consensus()
        ids = [int(i) for i in pool.ids if int(i) in lab]
        return ids, [int(lab[i]) for i in ids]

    def _consensus(self) -> dict[int, int]:
        cons = self.store.consensus()
        if not len(cons):
            return {}
        return dict(
            zip(cons["item_id"].astype(np.int64).tolist(), cons["label"].astype(int).tolist(), strict=True)
        )

    # --------------------------------------------------------------- arrays
    def _pool_index(self, ids: Any) -> np.ndarray:
        return self.dataset.pool.index_of(np.asarray(ids, dtype=np.int64)) if len(ids) else np.zeros(0, np.int64)

    def _synthetic_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p = self.run_dir / "synthetic.npz"
        if not p.exists():
            shape = (0, *self.dataset.pool.X.shape[1:])
            return np.zeros(0, np.int64), np.zeros(shape, np.float32), np.zeros(0, np.int64)
        try:
            with np.load(p, allow_pickle=False) as z:
                return z["ids"], z["X"], z["y"]
        except Exception as exc:
            raise RuntimeError(
                f"{str(p)!r} cannot be read ({type(exc).__name__}: {exc}): the synthetic items of "
                "this run are lost unless it is restored from a backup; start a new run_dir"
            ) from None

    def _synthetic_rows(self, ids: Any) -> tuple[np.ndarray, np.ndarray]:
        """(X, y) of the synthetic items ``ids`` from synthetic.npz; a clear error if missing."""
        sids, sX, sy = self._synthetic_arrays()
        pos = {int(i): k for k, i in enumerate(sids)}
        missing = [int(i) for i in ids if int(i) not in pos]
        if missing:
            raise RuntimeError(
                f"{str(self.run_dir / 'synthetic.npz')!r} lacks {len(missing)} synthetic item(s) of "
                f"this run (e.g. id {missing[0]}): it was deleted or replaced; restore it from a "
                "backup or start a new run_dir"
            )
        take = np.asarray([pos[int(i)] for i in ids], dtype=np.int64)
        return sX[take], sy[take]

    def training_set(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(X, y, ids) of the current training set: labeled real items plus accepted synthetic ones."""
        pool = self.dataset.pool
        ids = np.asarray(self.state["labeled_ids"], dtype=np.int64)
        X = pool.X[self._pool_index(ids)]
        y = np.asarray(self.state["labeled_y"], dtype=np.int64)
        if self.state["synthetic_ids"]:
            sX, _sy = self._synthetic_rows(self.state["synthetic_ids"])
            X = np.concatenate([X, sX])
            y = np.concatenate([y, np.asarray(self.state["synthetic_y"], dtype=np.int64)])
            ids = np.concatenate([ids, np.asarray(self.state["synthetic_ids"], dtype=np.int64)])
        return X, y, ids

    def _unlabeled_mask(self) -> np.ndarray:
        """Pool items a strategy may pick: not labeled, not rejected or out of scope."""
        mask = np.ones(len(self.dataset.pool), dtype=bool)
        taken = self.state["labeled_ids"] + self.state["excluded_ids"]
        if taken:
            mask[self._pool_index(taken)] = False
        return mask

    # --------------------------------------------------------------- the model
    def fit_model(self, X: np.ndarray, y: np.ndarray, *, sample_weight: Any = None, seed: int):
        """A fresh copy of the model template fitted on (X, y) (the template stays unfitted).

        ``fit`` gets ``sample_weight``, ``n_classes`` and ``random_state`` when its signature
        takes them.
        """
        m = copy.deepcopy(self._model_template)
        out = call_with_accepted(
            m.fit, X, y, sample_weight=sample_weight, n_classes=self.dataset.n_classes, random_state=seed
        )
        return m if out is None else out

    def predict_proba(self, model: Any, X: np.ndarray) -> np.ndarray:
        """``model.predict_proba(X)`` checked to shape (M, n, C) (a 2-D answer gets M = 1)."""
        P = np.asarray(model.predict_proba(X), dtype=np.float32)
        if P.ndim == 2:
            P = P[None]
        C = self.dataset.n_classes
        if P.ndim != 3 or P.shape[1:] != (len(X), C):
            raise ValueError(
                f"model: predict_proba must return shape (M, {len(X)}, {C}) (or ({len(X)}, {C})), "
                f"got {P.shape} from {type(model).__name__}"
            )
        return P

    def _checkpointed(self) -> bool:
        """Whether the model offers ``save``/``load`` (only then is a round's model saved)."""
        t = self._model_template
        return callable(getattr(t, "save", None)) and callable(getattr(t, "load", None))

    def _model_path(self) -> Path:
        return self._round_dir() / "model.pt"

    def _save_model(self, model: Any) -> str | None:
        """Checkpoint ``model`` (when it has ``save``); returns what the file holds:
        ``"weights_only"`` (tensors and plain data), ``"pickle"`` or None (not saved)."""
        if not self._checkpointed():
            return None
        path = self._model_path()
        atomic_write(path, lambda p: model.save(p))
        kind, _why = _probe_checkpoint(path)
        return "weights_only" if kind == "weights_only" else "pickle"

    def _train_inputs(self, n_labeled: int | None = None, n_synthetic: int | None = None):
        """(X, y, sample_weight) the train step fits on: the training set, or its state when it
        held the first ``n_labeled`` real and ``n_synthetic`` synthetic items (both only grow)."""
        X, y, _ids = self.training_set()
        if n_labeled is not None and n_synthetic is not None:
            n_real = len(self.state["labeled_ids"])
            keep = np.r_[0:n_labeled, n_real : n_real + n_synthetic]
            X, y = X[keep], y[keep]
        sample_weight = None
        if self.config.balance and len(y):
            from .selection import cluster_inverse_weights

            # class-balanced training: weight each item by its class-cluster's inverse size
            sample_weight = cluster_inverse_weights(y) * len(y)
        return X, y, sample_weight

    def _trained_on(self) -> dict | None:
        rec = self.state.get("trained_on")
        return rec if isinstance(rec, dict) and rec.get("round") == self.round else None

    def _load_round_model(self) -> Any:
        """This round's model from its checkpoint, or None where it is to be refitted."""
        if not self._checkpointed():
            return None
        path = self._model_path()
        rec = self._trained_on() or {}
        expected = rec.get("checkpoint")
        refit = f"refitting round {self.round}'s model (the train step is seeded: the same model)"
        if not path.exists():
            if expected is not None:
                warnings.warn(f"{str(path)!r} is missing; {refit}", stacklevel=3)
            return None
        kind, why = _probe_checkpoint(path)
        if kind == "unreadable":
            warnings.warn(f"{str(path)!r} cannot be read ({why}); {refit}", stacklevel=3)
            return None
        if kind == "pickle" and not self.trust_checkpoints:
            if expected != "pickle":  # it was saved weights-only: someone replaced it
                warnings.warn(
                    f"{str(path)!r} holds pickled Python objects ({why}) where the loop saved a "
                    f"weights-only checkpoint; not unpickled; {refit}",
                    stacklevel=3,
                )
            return None
        try:
            return self._model_template.load(path)
        except Exception as exc:
            warnings.warn(
                f"{str(path)!r} cannot be loaded ({type(exc).__name__}: {exc}); {refit}", stacklevel=3
            )
            return None

    def _refit_round_model(self) -> Any:
        """Fit this round's model again, on the training set the train step had."""
        rec = self._trained_on()
        if rec is None and (self.round < 0 or self.state["step"] == 0):
            raise RuntimeError(f"no model checkpoint for round {self.round} yet (run the train step)")
        X, y, sw = self._train_inputs(
            None if rec is None else int(rec["n_labeled"]),
            None if rec is None else int(rec["n_synthetic"]),
        )
        return self.fit_model(X, y, sample_weight=sw, seed=self._seed_for("train"))

    def model(self) -> Any:
        """The model trained in the current round: from its checkpoint when that is safe to
        load (see the module notes), else refitted (seeded: the same model); loaded once."""
        if self._model_cache is None or self._model_cache[0] != self.round:
            loaded = self._load_round_model()
            if loaded is None:
                loaded = self._refit_round_model()
                path = self._model_path()
                rec = self._trained_on()
                if (
                    rec is not None
                    and rec.get("checkpoint") == "weights_only"
                    and _probe_checkpoint(path)[0] != "weights_only"
                ):
                    self._save_model(loaded)  # repair a torn or deleted checkpoint
            self._model_cache = (self.round, loaded)
        return self._model_cache[1]

    # --------------------------------------------------------------- lazy round arrays
    def _round_file(self, name: str) -> Path:
        return self._round_dir() / f"{name}.npz"

    def _cached(self, name: str, compute) -> dict[str, np.ndarray]:
        """Arrays of ``name`` for this round: from disk, or computed and saved atomically."""
        key = f"{self.round}:{name}"
        if key not in self._arrays:
            path = self._round_file(name)
            arrays = _read_npz(path) if path.exists() else None
            if arrays is None:  # missing (a deleted round folder) or unreadable: recompute
                arrays = compute()
                atomic_savez(path, **arrays)
                arrays = _read_npz(path)
                assert arrays is not None
            self._arrays[key] = arrays
        return self._arrays[key]

    def _round_array(self, what: str) -> np.ndarray:
        if what in ("probs", "embedding"):
            return self._cached("embed", self._compute_embed)[what]
        if what == "log_density":
            return self._cached("density", self._compute_density)["log_density"]
        if what == "clusters":
            return self._cached("clusters", self._compute_clusters)["clusters"]
        raise KeyError(what)

    def pool_view(self) -> dict[str, np.ndarray]:
        """This round's model view of the pool, for widgets: ``probs`` (M, n, C) and
        ``embedding`` (n, k), computed by the ``embed`` step (or now, once)."""
        return {k: self._round_array(k) for k in ("probs", "embedding")}

    def _score(self, name: str) -> np.ndarray:
        from . import scoring

        if name not in scoring.SCORES:
            raise ValueError(f"score: expected one of {sorted(scoring.SCORES)}, got {name!r}")
        probs = self._round_array("probs")
        need = scoring._IMPL[name][1]
        if probs.shape[0] < need:
            raise ValueError(
                f"score: {name!r} needs a model of >= {need} members (M); the model "
                f"{type(self._model_template).__name__} gives M = {probs.shape[0]}"
            )
        return self._cached(f"score_{name}", lambda: {"s": np.asarray(scoring.SCORES[name](probs))})["s"]

    def _compute_embed(self) -> dict[str, np.ndarray]:
        return self._embed_inputs(self.dataset.pool.X)

    def _embed_inputs(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """Probabilities (M, n, C) and embedding (n, k) of this round's model on ``X``."""
        model = self.model()
        if hasattr(model, "predict_proba_and_embed") or callable(getattr(model, "embed", None)):
            from .scoring import score_pool

            out = score_pool(model, X, scores=(), return_probs=True, return_embedding=True)
            probs, emb = out["probs"], out["embedding"]
        else:
            probs, emb = self.predict_proba(model, X), X.reshape(len(X), -1)
        probs = np.asarray(probs, np.float32)
        if probs.ndim == 2:
            probs = probs[None]
        return {"probs": probs, "embedding": np.asarray(emb, np.float32).reshape(len(X), -1)}

    def _compute_density(self) -> dict[str, np.ndarray]:
        from sklearn.decomposition import PCA

        from .density import GaussianKDE

        emb = self._round_array("embedding")
        labeled = np.zeros(len(emb), dtype=bool)
        labeled[self._pool_index(self.state["labeled_ids"])] = True
        # KDE in a few dimensions: a 256-d kernel density is all noise, so p(z) is estimated on
        # the leading principal components of the pool's embedding (fitted on the whole pool).
        k = max(1, min(self.config.density_dims, emb.shape[1], int(labeled.sum()) - 1))
        Zr = PCA(n_components=k, random_state=self.config.seed).fit_transform(emb).astype(np.float32)
        kde = GaussianKDE(bandwidth="scott").fit(Zr[labeled])
        return {"log_density": np.asarray(kde.score_samples(Zr), np.float64)}

    def _compute_clusters(self) -> dict[str, np.ndarray]:
        from .clustering import kmeans

        emb = self._round_array("embedding")
        clusters, _ = kmeans(emb, min(self.config.n_clusters, len(emb)), random_state=self._seed_for("select"))
        return {"clusters": np.asarray(clusters, np.int64)}

    def reference_space(self) -> dict:
        """A fixed space for diversity metrics: PCA of the pool inputs and its k-means clusters.

        Model embeddings change every round, so diversity is measured here instead, where
        rounds and strategies are comparable. Computed once per run and cached.
        """
        if self._reference is None:
            path = self.run_dir / "reference.npz"
            if path.exists() and _read_npz(path, keys=("Z", "clusters")) is None:
                path.unlink()  # unreadable: it is deterministic, so recompute it
            if not path.exists():
                from sklearn.decomposition import PCA

                from .clustering import kmeans

                Xf = self.dataset.pool.flat_X()
                k = min(16, Xf.shape[1], len(Xf))
                Z = PCA(n_components=k, random_state=self.config.seed).fit_transform(Xf).astype(np.float32)
                labels, _centers = kmeans(
                    Z, min(self.config.n_clusters, len(Z)), n_init=3, random_state=self.config.seed
                )
                atomic_savez(path, Z=Z, clusters=np.asarray(labels, dtype=np.int64))
            with np.load(path) as z:
                self._reference = {"Z": z["Z"], "clusters": z["clusters"]}
        return self._reference

    def _context(self, step: str, budget: int) -> StrategyContext:
        return StrategyContext(
            self, budget=budget, rng=self._rng(step), state=copy.deepcopy(self.state["strategy_state"])
        )

    # --------------------------------------------------------------- driving
    def step(self) -> str | None:
        """Run the next step, save, and return its name (None when the run is done)."""
        if self.done:
            return None
        name = self._steps()[self.state["step"]]
        t0 = time.perf_counter()
        getattr(self, f"_step_{name}")()
        self.state["step_log"].append(
            {"round": self.round, "step": name, "seconds": round(time.perf_counter() - t0, 4)}
        )
        if not self.done:
            self.state["step"] += 1
            if self.state["step"] >= len(self._steps()):
                self.state["round"] += 1
                self.state["step"] = 0
        self._save_state()
        return name

    def run(self, *, max_steps: int | None = None) -> CurationLoop:
        """Run steps until the run is done (or ``max_steps`` steps have run)."""
        n = 0
        while not self.done and (max_steps is None or n < max_steps):
            self.step()
            n += 1
        return self

    def run_round(self) -> CurationLoop:
        """Run the steps left in the current round."""
        r = self.round
        while not self.done and self.round == r:
            self.step()
        return self

    def _skipped_now(self, ids: list[int]) -> set[int]:
        """Items of ``ids`` with an effective ``skip`` event of the round being labeled.

        A skip resolves an item for that round only: an item skipped in an earlier round
        and proposed again is open again.
        """
        if not ids:
            return set()
        try:
            ev = self.store.events(item_ids=ids, include_undone=False)
        except KeyError:  # a store that raises while no event matches
            return set()
        if not len(ev):
            return set()
        now = ev[(ev["kind"] == "skip") & (ev["round"] == self.round + 1)]
        return set(now["item_id"].astype(np.int64).tolist())

    def _resolutions(self, real: list[int], synth: list[int]) -> tuple[dict, set, set]:
        """(consensus labels, real items resolved without a label, resolved synthetic items).

        A real item is resolved without a label by a reject or out-of-scope flag (it leaves
        the pool) or by a skip in this round; a synthetic item by a verdict (accept or
        reject), an out-of-scope flag or a skip in this round (only accepted ones integrate).
        """
        lab = self._consensus()
        ids_all = real + synth
        st = self.store.status(ids_all) if ids_all else None
        if st is None or not len(st):
            return lab, set(), set()
        ids = st["item_id"].astype(np.int64)
        oos = st["flag_out_of_scope"].to_numpy(bool)
        dropped = set(ids[st["last_kind"].isin(_DROP_KINDS).to_numpy(bool) | oos].tolist())
        skipped = self._skipped_now(ids_all)
        verdict = set(ids[st["accepted"].notna().to_numpy(bool) | oos].tolist())
        return lab, (dropped | skipped) - set(lab), verdict | skipped

    def pending(self) -> list:
        """Ids of the current batch (and synthetic batch) not yet resolved in the store.

        A real item is resolved by a consensus label (label, correction or accept of the
        model's label), a reject, an out-of-scope flag or a skip in the round being labeled
        (a skip from an earlier round does not count: the item is open again); a synthetic
        item by an accept or a reject (or an out-of-scope flag or a skip in this round: it
        then does not join the training set).
        """
        real = [int(i) for i in self.state["batch"]]
        synth = [int(i) for i in self.state.get("synthetic_batch", [])]
        lab, unlabeled_done, validated = self._resolutions(real, synth)
        return [i for i in real if i not in lab and i not in unlabeled_done] + [
            i for i in synth if i not in validated
        ]

    @property
    def synthetic_batch(self) -> list[int]:
        """Ids of this round's synthetic items waiting for validation (empty between rounds)."""
        return [int(i) for i in self.state.get("synthetic_batch", [])]

    def synthetic_items(self, ids: Any) -> tuple[np.ndarray, np.ndarray]:
        """(X, intended labels) of synthetic items ``ids`` from the run's ``synthetic.npz``.

        Returns
        -------
        X : array of shape (n, *feature_shape)
        y : int array of shape (n,)
            The generator's intended label of each item (-1 = none).
        """
        return self._synthetic_rows([int(i) for i in ids])

    def model_view(self, X: Any) -> dict[str, np.ndarray]:
        """This round's model on inputs ``X`` (e.g. synthetic items): ``probs`` (M, n, C) and
        ``embedding`` (n, k), in the same space as :meth:`pool_view`."""
        X = np.asarray(X, dtype=np.float32)
        if X.shape[1:] != self.dataset.pool.X.shape[1:]:
            raise ValueError(
                f"X: expected items of shape {self.dataset.pool.X.shape[1:]}, got {X.shape[1:]}"
            )
        return self._embed_inputs(X)

    def set_batch(self, ids: Any, *, source: str) -> CurationLoop:
        """Replace the current batch with pool items a person chose (a lasso, a sampler).

        Usable while the loop waits for labels (``next_step == "label"``). The new batch is
        saved in ``state.json`` (a restarted kernel shows it) and ``batch_info`` records
        ``source`` and what the strategy had proposed. This round's synthetic items stay.

        Parameters
        ----------
        ids : sequence of int
            Pool ids, unique, neither in the training set nor rejected / out of scope.
        source : str
            Where the batch comes from, e.g. ``"lasso"`` or ``"sampler"`` (shown as the
            batch's strategy).

        Raises
        ------
        ValueError
            Bad ``ids`` or ``source``, or the loop is not waiting for labels. Nothing
            stored changes.
        """
        if not isinstance(source, str) or not source.strip():
            raise ValueError(f"source: expected a non-empty str such as 'lasso', got {source!r}")
        if self.next_step != "label":
            raise ValueError(
                f"ids: a batch can be set only while the loop waits for labels; its next step "
                f"is {self.next_step!r}"
            )
        if isinstance(ids, (str, bytes)) or not hasattr(ids, "__len__"):
            raise ValueError(f"ids: expected a sequence of pool ids, got {type(ids).__name__}")
        vals = list(np.asarray(ids).ravel()) if isinstance(ids, np.ndarray) else list(ids)
        bad = [v for v in vals if not is_int(v)]
        if bad:
            raise ValueError(f"ids: expected integer pool ids, got {bad[0]!r}")
        new = [int(v) for v in vals]
        if not new:
            raise ValueError("ids: expected at least one pool id, got an empty batch")
        if len(set(new)) != len(new):
            dup = sorted({i for i in new if new.count(i) > 1})
            raise ValueError(f"ids: expected unique ids, got duplicates {dup[:5]}")
        known = set(self.dataset.pool.ids.tolist())
        unknown = [i for i in new if i not in known]
        if unknown:
            raise ValueError(f"ids: {len(unknown)} id(s) are not in the pool, e.g. {unknown[:5]}")
        for what, taken in (
            ("already labeled (in the training set)", self.state["labeled_ids"]),
            ("rejected or out of scope (excluded)", self.state["excluded_ids"]),
        ):
            taken_set = set(taken)
            hit = [i for i in new if i in taken_set]
            if hit:
                raise ValueError(f"ids: {len(hit)} id(s) are {what}, e.g. {hit[:5]}")
        old = dict(self.state["batch_info"])
        info: dict[str, Any] = {
            "strategy": source.strip(),
            "source": source.strip(),
            "replaced": {
                "batch": list(self.state["batch"]),
                **{k: v for k, v in old.items() if k != "synthesis"},
            },
        }
        if "synthesis" in old:
            info["synthesis"] = old["synthesis"]
        self.state["batch"] = new
        self.state["batch_info"] = info
        self._save_state()
        return self

    # --------------------------------------------------------------- steps
    def _step_train(self) -> None:
        n_labeled, n_synthetic = len(self.state["labeled_ids"]), len(self.state["synthetic_ids"])
        X, y, sample_weight = self._train_inputs()
        model = self.fit_model(X, y, sample_weight=sample_weight, seed=self._seed_for("train"))
        kind = self._save_model(model)
        # what a resume needs to refit this round's model, if it does not load the checkpoint
        self.state["trained_on"] = {
            "round": self.round,
            "n_labeled": n_labeled,
            "n_synthetic": n_synthetic,
            "checkpoint": kind,
        }
        self._model_cache = (self.round, model)

    def _cross_validated_probs(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, int]:
        """Out-of-fold mean probabilities on the labeled set (stratified folds)."""
        from sklearn.model_selection import KFold, StratifiedKFold

        counts = np.bincount(y, minlength=self.dataset.n_classes)
        k = int(min(self.config.cv_folds, len(y)))
        seed = self._seed_for("evaluate")
        present = counts[counts > 0]
        splitter: Any = (
            StratifiedKFold(k, shuffle=True, random_state=seed)
            if present.min() >= k
            else KFold(k, shuffle=True, random_state=seed)
        )
        P = np.zeros((len(y), self.dataset.n_classes), np.float32)
        for f, (tr, te) in enumerate(splitter.split(X, y)):
            m = self.fit_model(X[tr], y[tr], seed=seed + f)
            P[te] = self.predict_proba(m, X[te]).mean(axis=0)
        return P, k

    def _step_evaluate(self) -> None:
        from . import metrics as M

        ds = self.dataset
        model = self.model()
        info = ds.info
        row: dict[str, Any] = {"round": self.round}
        notes: list[str] = []

        def groups_of(split):
            attr = info.get("sensitive_attribute")
            return split.meta[attr].to_numpy() if attr and attr in split.meta.columns else None

        minority = info.get("minority_classes")
        if ds.test is not None:
            probs = self.predict_proba(model, ds.test.X).mean(axis=0)
            row.update(M.round_metrics(probs, ds.test.labels, minority_classes=minority, groups=groups_of(ds.test)))
            row["evaluation"] = f"test split ({len(ds.test)} items)"
            rare = ds.test.meta["rare"].to_numpy(bool) if "rare" in ds.test.meta.columns else None
            if rare is not None and rare.any():
                # recall of the planted rare groups: the share of their test items classified right
                row["rare_recall"] = M.accuracy(ds.test.labels[rare], probs[rare].argmax(1))
            row.update(self._mix_divergence())
        else:
            X, y, _ = self.training_set()
            n_real = len(self.state["labeled_ids"])
            X, y = X[:n_real], y[:n_real]
            if len(y) >= 2 and np.unique(y).size >= 2:
                P, folds = self._cross_validated_probs(X, y)
                row.update(M.round_metrics(P, y, minority_classes=minority))
                row["evaluation"] = f"{folds}-fold cross-validation on the {len(y)} labeled items"
            else:
                notes.append("too few labels (or one class) to cross-validate: no accuracy yet")
                row["evaluation"] = "none"
        if ds.shifted is not None:
            sh = self.predict_proba(model, ds.shifted.X).mean(axis=0)
            res = M.round_metrics(sh, ds.shifted.labels, minority_classes=minority, groups=groups_of(ds.shifted))
            for k in ("accuracy", "macro_f1", "auroc", "ece", "minority_recall", "subgroup_gap"):
                if k in res:
                    row[f"shifted_{k}"] = res[k]
        else:
            notes.append("no shifted split: robustness under shift not measured")
        # membership-inference risk: loss-threshold attack on training vs held-out real data
        X, y, _ = self.training_set()
        held = ds.val if ds.val is not None else ds.test
        if len(y) and held is not None:
            loss = M.per_item_loss(self.predict_proba(model, X).mean(axis=0), y)
            loss_held = M.per_item_loss(self.predict_proba(model, held.X).mean(axis=0), held.labels)
            n_real = len(self.state["labeled_ids"])
            row["mia_auc"] = M.membership_inference_auc(loss, loss_held)
            if n_real:
                row["mia_auc_real"] = M.membership_inference_auc(loss[:n_real], loss_held)
            if len(y) > n_real:
                row["mia_auc_synthetic"] = M.membership_inference_auc(loss[n_real:], loss_held)
        elif held is None:
            notes.append("no held-out labeled split: membership-inference risk not measured")
        ref = self.reference_space()
        row.update(M.diversity_metrics(ref["Z"], ref["clusters"], self._pool_index(self.state["labeled_ids"])))
        row["labels"] = len(self.state["labeled_ids"]) + self.state.get("validation_labels", 0)
        row["synthetic"] = len(self.state["synthetic_ids"])
        row["wall_time"] = round(sum(s["seconds"] for s in self.state["step_log"]), 3)
        if notes:
            row["notes"] = "; ".join(notes)
        self.state["metrics"].append(
            {
                k: (float(v) if isinstance(v, (np.floating, float)) else v)
                for k, v in row.items()
                if np.isscalar(v) or v is None
            }
        )
        reason = self._stop_reason()
        if reason:
            self.state["done"] = True
            self.state["stop_reason"] = reason

    def _mix_divergence(self) -> dict:
        """``mix_jsd``: Jensen-Shannon divergence (base 2) of the real labeled set's mix from the
        test split's (the deployment mix) -- over the data's ``group`` meta column when pool and
        test have one (e.g. mixture's main/rare subgroups), else over the classes."""
        from . import metrics as M

        ds, labeled = self.dataset, self.state["labeled_ids"]
        if not labeled or ds.test is None:
            return {}
        if "group" in ds.pool.meta.columns and "group" in ds.test.meta.columns:
            lab = ds.pool.meta["group"].to_numpy()[self._pool_index(labeled)]
            ref = ds.test.meta["group"].to_numpy()
            cats = np.unique(np.concatenate([ref, lab]).astype(str))
            lab_mix = np.array([(lab.astype(str) == c).sum() for c in cats], float)
            ref_mix = np.array([(ref.astype(str) == c).sum() for c in cats], float)
        else:
            C = ds.n_classes
            lab_mix = np.bincount(np.asarray(self.state["labeled_y"], np.int64), minlength=C).astype(float)
            ref_mix = np.bincount(ds.test.labels, minlength=C).astype(float)
        return {"mix_jsd": M.js_divergence(lab_mix / lab_mix.sum(), ref_mix / ref_mix.sum())}

    def _stop_reason(self) -> str | None:
        cfg = self.config
        if self.round >= cfg.rounds:
            return "budget spent"
        if not self._unlabeled_mask().any():
            return "pool exhausted"
        m = self.state["metrics"]
        k = cfg.stop_patience
        if len(m) > k:
            if cfg.stop_diversity_delta is not None:
                d = [r["d_score"] for r in m[-(k + 1) :]]
                if all(abs(b - a) < cfg.stop_diversity_delta for a, b in zip(d, d[1:], strict=False)):
                    return f"diversity converged (|dD_score| < {cfg.stop_diversity_delta} over {k} rounds)"
            if cfg.stop_gain_delta is not None and all("accuracy" in r for r in m[-(k + 1) :]):
                a = [r["accuracy"] for r in m[-(k + 1) :]]
                if all((b - a_) < cfg.stop_gain_delta for a_, b in zip(a, a[1:], strict=False)):
                    return f"diminishing returns (accuracy gain < {cfg.stop_gain_delta} over {k} rounds)"
        return None

    def _step_embed(self) -> None:
        self._round_array("probs")

    def _step_allocate(self) -> None:
        hook = getattr(self._strategy, "allocate", None)
        if callable(hook):
            ctx = self._context("allocate", self.config.budget)
            hook(ctx)
            self.state["strategy_state"] = ctx.state

    def _step_select(self) -> None:
        from .selection import select

        cfg = self.config
        unl = self._unlabeled_mask()
        if self.round < 0:  # bootstrap: a random batch, no model yet
            n = min(int(self.state["n_initial"]), int(unl.sum()))
            idx = select("random", n, scores=np.zeros(len(unl)), labeled_mask=~unl, random_state=self._rng("select"))
            self.state["batch"] = [int(i) for i in self.dataset.pool.ids[idx]]
            self.state["batch_info"] = {"strategy": "random (bootstrap)"}
            return
        budget = min(cfg.budget, int(unl.sum()))
        ctx = self._context("select", budget)
        idx = check_batch(self._strategy(budget, ctx), budget=budget, ctx=ctx, strategy=self._strategy)
        self.state["strategy_state"] = ctx.state
        self.state["batch"] = [int(i) for i in self.dataset.pool.ids[idx]]
        self.state["batch_info"] = {"strategy": component_name(self._strategy), **ctx.info}

    def _step_synthesize(self) -> None:
        mode = self.synthesis_mode
        T = self.config.synthesis_options.get("rounds")
        if mode is None or (T is not None and self.round >= T):
            return
        from . import synthesis

        cfg = self.config
        ds = self.dataset
        n = int(cfg.synthesis_options.get("n", cfg.budget))
        gen = self._generator()
        X, y, _ids = self.training_set()
        val = None
        if mode == "shaped":
            if ds.val is None:
                raise ValueError("synthesis: 'shaped' needs a labeled val split in the data to shape on")
            val = (ds.val.X, ds.val.labels)
            # its labels steer generation: they count as labels used
            self.state["validation_labels"] = len(ds.val)
        batch = synthesis.synthesize(
            mode,
            generator=gen,
            n=n,
            X_train=X,
            y_train=y,
            X_pool=ds.pool.X,
            pool_uncertainty=self._score("predictive_entropy"),
            classifier=self.model(),
            n_classes=ds.n_classes,
            shaper_state=self.state.get("shaper"),
            val=val,
            random_state=self._rng("synthesize"),
            **{k: v for k, v in cfg.synthesis_options.items() if k not in ("n", "generator", "rounds")},
        )
        if getattr(batch, "shaper_state", None) is not None:
            self.state["shaper"] = batch.shaper_state
        sids, sX, sy = self._synthetic_arrays()
        # ids continue after every id ever given out (state.json), so a resumed step that
        # already wrote synthetic.npz reuses its own ids instead of minting new ones
        start = int(self.state["synthetic_next"])
        new_ids = np.arange(start, start + len(batch.X), dtype=np.int64)
        if len(new_ids):
            self.store.add_items(
                [int(i) for i in new_ids],
                dataset=ds.name,
                source="synthetic",
                round=self.round + 1,
                provenance=list(batch.provenance),
            )
            keep = ~np.isin(sids, new_ids)
            atomic_savez(
                self.run_dir / "synthetic.npz",
                ids=np.concatenate([sids[keep], new_ids]),
                X=np.concatenate([sX[keep], batch.X.astype(np.float32)]),
                y=np.concatenate([sy[keep], np.asarray(batch.intended_labels, np.int64)]),
            )
        self.state["synthetic_next"] = start + len(new_ids)
        self.state["synthetic_batch"] = [int(i) for i in new_ids]
        self.state["batch_info"]["synthesis"] = {
            "mode": mode,
            "generated": int(len(new_ids)),
            "filter_report": batch.filter_report,
        }

    def _generator(self):
        """The run's generator: a (conditional) VAE fitted once on the unlabeled pool inputs.

        Saved as ``generator.pt`` (weights only); a torn, corrupt or crafted file is refitted
        (seeded, on the training set of its first fit) with a warning.
        """
        from .generators import ConditionalVAE

        path = self.run_dir / "generator.pt"
        if path.exists():
            try:
                return ConditionalVAE.load(path)
            except ValueError as exc:
                warnings.warn(
                    f"{exc}; recomputing the generator (its fit is seeded: the same generator)",
                    stacklevel=2,
                )
        ds = self.dataset
        gen = ConditionalVAE(
            n_classes=ds.n_classes,
            random_state=self.config.seed,
            **self.config.synthesis_options.get("generator", {}),
        )
        rec = self.state.get("generator_trained_on")
        if isinstance(rec, dict):
            n_labeled, n_synthetic = int(rec["n_labeled"]), int(rec["n_synthetic"])
        else:
            n_labeled, n_synthetic = len(self.state["labeled_ids"]), len(self.state["synthetic_ids"])
        X, y, _sw = self._train_inputs(n_labeled, n_synthetic)
        # the conditional part learns from labeled items; the VAE from the whole pool
        gen.fit(ds.pool.X, None, X_labeled=X, y_labeled=y)
        atomic_write(path, gen.save)
        self.state["generator_trained_on"] = {"n_labeled": n_labeled, "n_synthetic": n_synthetic}
        return gen

    def _step_label(self) -> None:
        cfg = self.config
        batch = list(self.state["batch"])
        synth = list(self.state.get("synthetic_batch", []))
        if cfg.labeler == "human":
            waiting = self.pending()
            if waiting:
                raise WaitingForLabels(waiting)
            return
        rnd = self.round + 1
        events = []
        # the same idempotency keys on a re-run of this step: nothing is written twice
        verdict: Any = self._validate_synthetic(synth) if synth else []
        for a in self._annotators():
            for item, lab in zip(batch, a.query(batch) if batch else [], strict=True):
                events.append(
                    {
                        "item_id": int(item),
                        "kind": "label",
                        "annotator": a.name,
                        "label": int(lab),
                        "round": rnd,
                        "cues": {"simulated": True, "reliability": a.reliability},
                        "key": f"{cfg.seed}-{rnd}-{a.name}-label-{item}",
                    }
                )
            for item, ok in zip(synth, verdict, strict=True):
                events.append(
                    {
                        "item_id": int(item),
                        "kind": "accept" if ok else "reject",
                        "annotator": a.name,
                        "round": rnd,
                        "cues": {"simulated": True, "proxy": "oracle"},
                        "key": f"{cfg.seed}-{rnd}-{a.name}-validate-{item}",
                    }
                )
        if events:
            self.store.record_many(events)

    def _validate_synthetic(self, synth_ids: list) -> np.ndarray:
        """Simulated validation of synthetic items (a stated proxy for a person's accept)."""
        from . import synthesis

        sX, sy = self._synthetic_rows(synth_ids)
        return synthesis.validate_with_oracle(self.dataset, sX, sy, random_state=self.config.seed)

    def _step_integrate(self) -> None:
        batch = [int(i) for i in self.state["batch"]]
        lab, unlabeled_done, _ = self._resolutions(batch, [])
        st = self.store.status(batch) if unlabeled_done else None
        dropped: set[int] = set()
        if st is not None and len(st):
            drop = st["last_kind"].isin(_DROP_KINDS) | st["flag_out_of_scope"]
            dropped = set(st.loc[drop, "item_id"].astype(np.int64).tolist()) & unlabeled_done
        labeled = [i for i in batch if i in lab]
        skipped = [i for i in batch if i not in lab and i not in dropped]
        if self.config.labeler == "oracle" and len(labeled) < len(batch):
            raise RuntimeError(
                f"integrate: {len(batch) - len(labeled)} batch item(s) have no consensus label"
            )
        self.state["labeled_ids"].extend(labeled)
        self.state["labeled_y"].extend(int(lab[i]) for i in labeled)
        # rejected / out-of-scope items leave the pool; skipped ones may be proposed again
        self.state["excluded_ids"].extend(sorted(dropped))
        record: dict[str, Any] = {
            "round": self.round,
            "batch": batch,
            "labeled": labeled,
            "labels": [int(lab[i]) for i in labeled],
            "dropped": sorted(dropped),
            "skipped": skipped,
            "info": self.state["batch_info"],
        }
        synth = [int(i) for i in self.state.get("synthetic_batch", [])]
        if synth:
            accepted = set(int(i) for i in self.store.accepted(self.config.q_min))
            sids, _sX, sy = self._synthetic_arrays()
            yid = dict(zip(sids.tolist(), sy.tolist(), strict=True))
            keep = [i for i in synth if i in accepted]
            self.state["synthetic_ids"].extend(keep)
            self.state["synthetic_y"].extend(int(yid[i]) for i in keep)
            self.state["batch_info"].setdefault("synthesis", {})["accepted"] = len(keep)
            self.state["synthetic_batch"] = []
            record["synthetic"] = synth
            record["synthetic_accepted"] = keep
        hook = getattr(self._strategy, "feedback", None)
        if callable(hook) and self.round >= 0 and batch:
            ctx = self._context("integrate", len(batch))
            hook(ctx, self._pool_index(batch))
            self.state["strategy_state"] = ctx.state
        self.state["history"].append(record)
        self.state["batch"] = []


def _probe_checkpoint(path: Path) -> tuple[str, str]:
    """What a checkpoint file holds, read with ``torch.load(weights_only=True)`` (which runs no
    code): ``("weights_only", "")``, ``("pickle", why)`` for pickled Python objects (refused),
    or ``("unreadable", why)`` for a torn or corrupt file."""
    import pickle

    import torch

    try:
        with warnings.catch_warnings():  # torch's notes on a foreign pickle's protocol
            warnings.simplefilter("ignore")
            torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        why = next((ln.strip() for ln in text.splitlines() if "Unsupported global" in ln), "")
        return "pickle", (why or text.strip().splitlines()[0] if text.strip() else "a pickle")[:300]
    except Exception as exc:
        return "unreadable", f"{type(exc).__name__}: {exc}"[:300]
    return "weights_only", ""


def _read_npz(path: Path, keys: tuple[str, ...] = ()) -> dict[str, np.ndarray] | None:
    """Every array of an ``.npz`` file (no pickles), or None when it cannot be read."""
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
    except Exception:
        return None
    if any(k not in out for k in keys):
        return None
    return out
