"""The curation loop: one round at a time, saved after every step, resumable.

A round of :class:`CurationLoop` runs these explicit steps, in order (``STEPS``)::

    train -> evaluate -> embed -> density -> score -> allocate -> select
          -> synthesize -> label -> integrate

* ``train``      fit the ensemble on the current training set (real labels from the store's
                 consensus plus accepted synthetic items; optionally cluster-balanced);
* ``evaluate``   metrics of that model on the test and shifted splits, and diversity of the
                 labeled set; this is the learning-curve point of round ``k`` (``k`` batches
                 acquired so far);
* ``embed``      one pass of the pool through the ensemble: probabilities (M, n, C) and the
                 fused embedding e(x);
* ``density``    KDE of the labeled set's embeddings evaluated on the pool (log p(z)) and
                 k-means clusters of the pool embedding;
* ``score``      uncertainty scores of the pool;
* ``allocate``   for bandit strategies, the bandit's split of the budget over clusters;
* ``select``     the batch (a strategy from :mod:`helpers.selection`);
* ``synthesize`` optional synthetic items (:mod:`helpers.synthesis`), entered in the store as
                 ``source="synthetic"``;
* ``label``      a simulated labeler (the :class:`~helpers.data.Oracle`, optionally noisy and
                 several annotators) writes events to the store; with ``labeler="human"`` the
                 loop waits for the widgets to have written labels for the batch;
* ``integrate``  labels and accepted synthetic items (q(x) > q_min) join the training set;
                 bandit rewards are booked.

Before round 0 a bootstrap batch of ``n_initial`` pool items, drawn at random, is labeled the
same way. The loop stops after round ``rounds`` (the budget is spent) or when a stopping
criterion fires.

Every step writes its arrays to ``run_dir/round_XXX/`` and then the small JSON state
``run_dir/state.json`` (atomically). A new :class:`CurationLoop` on the same ``run_dir``
resumes at the first step not yet done. Each step's randomness is derived from
``(seed, round, step)``, so a resumed run gives exactly the results of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any, cast

import numpy as np

__all__ = [
    "STEPS",
    "STRATEGY_PRESETS",
    "LoopConfig",
    "CurationLoop",
    "WaitingForLabels",
    "SYNTHETIC_ID_BASE",
]

STEPS = (
    "train",
    "evaluate",
    "embed",
    "density",
    "score",
    "allocate",
    "select",
    "synthesize",
    "label",
    "integrate",
)
BOOTSTRAP_STEPS = ("select", "label", "integrate")

#: Synthetic items get ids from here upwards, so they never clash with pool ids.
SYNTHETIC_ID_BASE = 1 << 40

#: Names an experiment may use for ``strategy``: (selection strategy, its options, synthesis mode).
STRATEGY_PRESETS: dict[str, tuple[str, dict, str | None]] = {
    "random": ("random", {}, None),
    "entropy": ("uncertainty", {"score": "predictive_entropy"}, None),
    "bald": ("uncertainty", {"score": "mutual_information"}, None),
    "umc_uncertainty": ("uncertainty", {"score": "ensemble_uncertainty"}, None),
    "margin": ("margin", {}, None),
    "kcenter": ("kcenter", {}, None),
    "uncertainty_diversity": ("uncertainty_diversity", {"score": "ensemble_uncertainty"}, None),
    "cluster_bandit": ("cluster_bandit", {"score": "ensemble_uncertainty", "bandit": "ucb1"}, None),
    "cluster_thompson": (
        "cluster_bandit",
        {"score": "ensemble_uncertainty", "bandit": "thompson"},
        None,
    ),
    "density_weighted": ("density_weighted", {"score": "predictive_entropy"}, None),
    "low_density": ("low_density", {}, None),
    "typiclust": ("typiclust", {}, None),
    "badge": ("badge", {}, None),
    # synthesis baselines: real selection by entropy plus synthetic items of a kind
    "random_synthesis": ("uncertainty", {"score": "predictive_entropy"}, "random"),
    "low_density_synthesis": ("uncertainty", {"score": "predictive_entropy"}, "low_density"),
    "active_synthesis": ("uncertainty", {"score": "predictive_entropy"}, "active"),
    "shaped_synthesis": ("uncertainty", {"score": "predictive_entropy"}, "shaped"),
}


class WaitingForLabels(RuntimeError):
    """Raised by the ``label`` step when a human labeler has not labeled the whole batch yet.

    ``pending`` holds the item ids still waiting. Nothing is changed: call
    :meth:`CurationLoop.step` (or ``run``) again once the widgets have written labels.
    """

    def __init__(self, pending: list):
        self.pending = pending
        super().__init__(f"{len(pending)} item(s) of the batch still wait for a label")


@dataclasses.dataclass
class LoopConfig:
    """Everything that defines a run (JSON-serialisable, saved in ``state.json``).

    Parameters
    ----------
    dataset : str
        A built-in dataset name (see :data:`helpers.data.DATASETS`).
    strategy : str
        A preset name from :data:`STRATEGY_PRESETS` or a strategy of
        :data:`helpers.selection.STRATEGIES`.
    budget : int
        Items acquired per round.
    rounds : int
        Acquisition rounds after the bootstrap batch; the run evaluates ``rounds + 1`` models.
    n_initial : int
        Size of the random bootstrap batch.
    labeler : {"oracle", "human"}
        ``"oracle"`` simulates annotators; ``"human"`` waits for labels in the store.
    annotator_reliabilities : list of float or None
        Simulated annotators (probability of a correct label each); None means one
        annotator with error rate ``noise_rate``.
    q_min : float
        Synthetic items join the training set when their quality q(x) > q_min (store view).
    balance : bool
        Cluster-balanced training: each item's loss is weighted by the design's
        w_c = (1/|c|) / sum_c' (1/|c'|) (:func:`helpers.selection.cluster_inverse_weights`),
        with the classes of the training set as the clusters (synthetic items have no place
        in the pool's cluster map, their class they do have). Equal expected total weight per
        class, like ``helpers.selection.balance`` resampling, without duplicating items.
    synthesis : {None, "random", "low_density", "active", "shaped"}
        Synthetic items per round (``synthesis_options["n"]``, default ``budget``); overrides
        the preset's synthesis mode when given.
    stop_diversity_delta, stop_gain_delta : float or None
        Stop when |change of D_score| (resp. accuracy gain) stays below delta for
        ``stop_patience`` consecutive rounds.
    """

    dataset: str = "digits-lt"
    dataset_options: dict = dataclasses.field(default_factory=dict)
    strategy: str = "entropy"
    strategy_options: dict = dataclasses.field(default_factory=dict)
    budget: int = 20
    rounds: int = 5
    n_initial: int = 20
    n_members: int = 3
    ensemble_options: dict = dataclasses.field(default_factory=dict)
    labeler: str = "oracle"
    noise_rate: float = 0.0
    annotator_reliabilities: list | None = None
    q_min: float = 0.5
    balance: bool = False
    n_clusters: int = 10
    synthesis: str | None = None
    synthesis_options: dict = dataclasses.field(default_factory=dict)
    stop_diversity_delta: float | None = None
    stop_gain_delta: float | None = None
    stop_patience: int = 2
    seed: int = 0

    def validate(self) -> LoopConfig:
        from .data import DATASETS

        if self.dataset not in DATASETS:
            raise ValueError(f"dataset: expected one of {sorted(DATASETS)}, got {self.dataset!r}")
        for name in ("budget", "rounds", "n_initial", "n_members", "n_clusters", "stop_patience"):
            v = getattr(self, name)
            low = 0 if name == "rounds" else 1
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{name}: expected an int >= {low}, got {v!r}")
        if self.labeler not in ("oracle", "human"):
            raise ValueError(f"labeler: expected 'oracle' or 'human', got {self.labeler!r}")
        if not 0.0 <= float(self.noise_rate) < 1.0:
            raise ValueError(f"noise_rate: expected a number in [0, 1), got {self.noise_rate!r}")
        if self.synthesis not in (None, "random", "low_density", "active", "shaped"):
            raise ValueError(
                "synthesis: expected None, 'random', 'low_density', 'active' or 'shaped', "
                f"got {self.synthesis!r}"
            )
        self.resolved_strategy()  # raises for an unknown name
        return self

    def resolved_strategy(self) -> tuple[str, dict, str | None]:
        """(selection strategy, options, synthesis mode) after applying the preset."""
        from .selection import STRATEGIES

        if self.strategy in STRATEGY_PRESETS:
            name, opts, synth = STRATEGY_PRESETS[self.strategy]
        elif self.strategy in STRATEGIES:
            name, opts, synth = self.strategy, {}, None
        else:
            valid = sorted(set(STRATEGY_PRESETS) | set(STRATEGIES))
            raise ValueError(f"strategy: expected one of {valid}, got {self.strategy!r}")
        opts = {**opts, **self.strategy_options}
        return name, opts, self.synthesis if self.synthesis is not None else synth


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def _atomic_write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(obj, fh, default=_json_default)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _atomic_savez(path: Path, **arrays: Any) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


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
    store : helpers.store.LabelStore, optional
        Where labels live; default: a SQLite store in ``run_dir``. For ``labeler="human"``
        pass the store the widgets write to.

    Examples
    --------
    >>> loop = CurationLoop("runs/demo", LoopConfig(dataset="mixture", rounds=2))  # doctest: +SKIP
    >>> loop.run()  # doctest: +SKIP
    >>> loop.results()  # doctest: +SKIP
    """

    annotator_prefix = "sim"

    def __init__(
        self,
        run_dir: str | os.PathLike,
        config: LoopConfig | dict | None = None,
        *,
        store: Any = None,
    ):
        from .data import load_dataset
        from .store import LabelStore

        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        state_path = self.run_dir / "state.json"
        if isinstance(config, dict):
            config = LoopConfig(**config)
        if state_path.exists():
            saved = json.loads(state_path.read_text())
            saved_cfg = LoopConfig(**saved["config"])
            if config is not None and dataclasses.asdict(config) != dataclasses.asdict(saved_cfg):
                raise ValueError(
                    f"config: run_dir {str(self.run_dir)!r} holds a run with a different config; "
                    "pass config=None to resume it or use another run_dir"
                )
            self.config = saved_cfg.validate()
            self.state = saved
        else:
            if config is None:
                raise ValueError(
                    f"config: expected a LoopConfig for a new run in {str(self.run_dir)!r}, got None"
                )
            self.config = config.validate()
            self.state = {
                "config": dataclasses.asdict(self.config),
                "round": -1,
                "step": 0,
                "done": False,
                "stop_reason": None,
                "labeled_ids": [],
                "labeled_y": [],
                "synthetic_ids": [],
                "synthetic_y": [],
                "batch": [],
                "batch_info": {},
                "bandit": None,
                "metrics": [],
                "step_log": [],
            }
        cfg = self.config
        self.dataset = load_dataset(cfg.dataset, random_state=cfg.seed, **cfg.dataset_options)
        self.store = store if store is not None else LabelStore(run_dir=self.run_dir)
        self._init_store()
        self._ensemble: tuple[int, Any] | None = None
        self._reference: dict[str, Any] | None = None
        if not state_path.exists():
            self._save_state()

    # ------------------------------------------------------------------ helpers
    @property
    def round(self) -> int:
        """Batches acquired so far (-1 while the bootstrap batch is pending)."""
        return int(self.state["round"])

    @property
    def done(self) -> bool:
        return bool(self.state["done"])

    @property
    def next_step(self) -> str | None:
        if self.done:
            return None
        return self._steps()[self.state["step"]]

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

    def _save_state(self) -> None:
        _atomic_write_json(self.run_dir / "state.json", self.state)

    def _annotators(self) -> list[tuple[str, float]]:
        cfg = self.config
        if cfg.annotator_reliabilities:
            return [
                (f"{self.annotator_prefix}{i}", float(r))
                for i, r in enumerate(cfg.annotator_reliabilities)
            ]
        return [(f"{self.annotator_prefix}0", 1.0 - float(cfg.noise_rate))]

    def _init_store(self) -> None:
        ds = self.dataset
        self.store.set_schema(list(range(ds.n_classes)), tags=("blurry", "ambiguous", "atypical"))
        known = set(self.store.items()["item_id"].tolist()) if len(self.store.items()) else set()
        ids = [int(i) for i in ds.pool.ids if int(i) not in known]
        if ids:
            self.store.add_items(ids, dataset=ds.name, source="real", round=0)
        if self.config.labeler == "oracle":
            for name, _rel in self._annotators():
                self.store.add_annotator(name)

    # --------------------------------------------------------------- arrays
    def _pool_index(self, ids: Any) -> np.ndarray:
        pos = {int(i): k for k, i in enumerate(self.dataset.pool.ids)}
        return np.asarray([pos[int(i)] for i in ids], dtype=np.int64)

    def _synthetic_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p = self.run_dir / "synthetic.npz"
        if not p.exists():
            shape = (0, *self.dataset.pool.X.shape[1:])
            return np.zeros(0, np.int64), np.zeros(shape, np.float32), np.zeros(0, np.int64)
        z = np.load(p)
        return z["ids"], z["X"], z["y"]

    def training_set(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(X, y, ids) of the current training set: labeled real items plus accepted synthetic ones."""
        pool = self.dataset.pool
        ids = np.asarray(self.state["labeled_ids"], dtype=np.int64)
        X = (
            pool.X[self._pool_index(ids)]
            if len(ids)
            else np.zeros((0, *pool.X.shape[1:]), np.float32)
        )
        y = np.asarray(self.state["labeled_y"], dtype=np.int64)
        if self.state["synthetic_ids"]:
            sids, sX, _sy = self._synthetic_arrays()
            pos = {int(i): k for k, i in enumerate(sids)}
            take = np.asarray([pos[int(i)] for i in self.state["synthetic_ids"]], dtype=np.int64)
            X = np.concatenate([X, sX[take]])
            y = np.concatenate([y, np.asarray(self.state["synthetic_y"], dtype=np.int64)])
            ids = np.concatenate([ids, np.asarray(self.state["synthetic_ids"], dtype=np.int64)])
        return X, y, ids

    def _load(self, name: str) -> dict:
        return dict(np.load(self._round_dir() / f"{name}.npz", allow_pickle=False))

    def ensemble(self):
        """The ensemble trained in the current round (loaded from its checkpoint)."""
        from .models import Ensemble

        if self._ensemble is None or self._ensemble[0] != self.round:
            path = self._round_dir() / "ensemble.pt"
            if not path.exists():
                raise RuntimeError(
                    f"no ensemble checkpoint for round {self.round} yet (run the train step)"
                )
            self._ensemble = (self.round, Ensemble.load(path))
        return self._ensemble[1]

    def reference_space(self) -> dict:
        """A fixed space for diversity metrics: PCA of the pool inputs and its k-means clusters.

        Model embeddings change every round, so diversity is measured here instead, where
        rounds and strategies are comparable. Computed once per run and cached.
        """
        if self._reference is None:
            path = self.run_dir / "reference.npz"
            if not path.exists():
                from sklearn.decomposition import PCA

                from .clustering import kmeans

                Xf = self.dataset.pool.flat_X()
                k = min(16, Xf.shape[1])
                Z = (
                    PCA(n_components=k, random_state=self.config.seed)
                    .fit_transform(Xf)
                    .astype(np.float32)
                )
                labels, _centers = kmeans(
                    Z, self.config.n_clusters, n_init=3, random_state=self.config.seed
                )
                _atomic_savez(path, Z=Z, clusters=np.asarray(labels, dtype=np.int64))
            z = np.load(path)
            self._reference = {"Z": z["Z"], "clusters": z["clusters"]}
        return self._reference

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

    def results(self):
        """Per-round metrics as a pandas DataFrame (one row per evaluated round)."""
        import pandas as pd

        return pd.DataFrame(self.state["metrics"])

    def pending(self) -> list:
        """Ids of the current batch still waiting for a label (human labeler)."""
        batch = self.state["batch"]
        if not batch:
            return []
        cur = self.store.consensus()
        done = set(cur["item_id"].astype(np.int64).tolist()) if len(cur) else set()
        return [i for i in batch if int(i) not in done]

    # --------------------------------------------------------------- steps
    def _step_train(self) -> None:
        from .models import Ensemble

        X, y, _ids = self.training_set()
        sample_weight = None
        if self.config.balance and len(y):
            from .selection import cluster_inverse_weights

            # cluster-balanced training: weight each item by its class-cluster's inverse size
            sample_weight = cluster_inverse_weights(y) * len(y)
        ds = self.dataset
        # min_steps: a bootstrap set of 20 items is one optimizer step per epoch; without a
        # floor the first rounds' models stay at chance level
        opts = {"n_classes": ds.n_classes, "min_steps": 100, **self.config.ensemble_options}
        ens = Ensemble(
            n_members=self.config.n_members, random_state=self._seed_for("train"), **opts
        )
        ens.fit(X, y, X_val=ds.val.X, y_val=ds.val.labels, sample_weight=sample_weight)
        ens.save(self._round_dir() / "ensemble.pt")
        self._ensemble = (self.round, ens)

    def _step_evaluate(self) -> None:
        from . import metrics as M

        ds = self.dataset
        ens = self.ensemble()
        info = ds.info
        groups = None
        attr = info.get("sensitive_attribute")
        if attr and attr in ds.test.meta.columns:
            groups = ds.test.meta[attr].to_numpy()
        probs = ens.predict_proba(ds.test.X).mean(axis=0)
        row: dict[str, Any] = {"round": self.round}
        minority = info.get("minority_classes")
        row.update(self._flat_metrics(M.evaluate(probs, ds.test.labels, minority_classes=minority, groups=groups)))
        # the same metrics on the shifted (corrupted / distribution-shifted) split, prefixed
        sh_groups = None
        if attr and attr in ds.shifted.meta.columns:
            sh_groups = ds.shifted.meta[attr].to_numpy()
        shifted = ens.predict_proba(ds.shifted.X).mean(axis=0)
        sh = M.evaluate(shifted, ds.shifted.labels, minority_classes=minority, groups=sh_groups)
        for k in ("accuracy", "macro_f1", "auroc", "ece", "minority_recall", "subgroup_gap"):
            if k in sh:
                row[f"shifted_{k}"] = sh[k]
        # membership-inference risk: loss-threshold attack on training vs held-out real data
        X, y, _ = self.training_set()
        if len(y):
            p_tr = ens.predict_proba(X).mean(axis=0)
            p_ho = ens.predict_proba(ds.val.X).mean(axis=0)
            loss_tr = -np.log(np.clip(p_tr[np.arange(len(y)), y], 1e-12, None))
            loss_ho = -np.log(
                np.clip(p_ho[np.arange(len(ds.val.labels)), ds.val.labels], 1e-12, None)
            )
            row["mia_auc"] = M.membership_inference_auc(loss_tr, loss_ho)
        # diversity of the labeled real set, in the fixed reference space
        ref = self.reference_space()
        idx = self._pool_index(self.state["labeled_ids"])
        lab_clusters = ref["clusters"][idx]
        row["d_score"] = M.cluster_entropy(lab_clusters)
        row["evenness"] = M.evenness(lab_clusters)
        row["coverage"] = M.coverage(ref["Z"][idx], ref["Z"])
        pool_mix = np.bincount(ref["clusters"], minlength=self.config.n_clusters).astype(float)
        lab_mix = np.bincount(lab_clusters, minlength=self.config.n_clusters).astype(float)
        row["cluster_jsd"] = M.js_divergence(lab_mix / lab_mix.sum(), pool_mix / pool_mix.sum())
        row["labels"] = len(self.state["labeled_ids"])
        row["synthetic"] = len(self.state["synthetic_ids"])
        row["wall_time"] = round(sum(s["seconds"] for s in self.state["step_log"]), 3)
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

    @staticmethod
    def _flat_metrics(res: dict) -> dict:
        """Scalars as they are; per-class recall and per-group accuracy as one column each."""
        out: dict[str, Any] = {}
        for k, v in res.items():
            if k == "per_class_recall":
                out.update({f"recall_class_{c}": r for c, r in enumerate(v)})
            elif k == "per_group_accuracy":
                out.update({f"accuracy_group_{g}": a for g, a in dict(v).items()})
            else:
                out[k] = v
        return out

    def _stop_reason(self) -> str | None:
        cfg = self.config
        if self.round >= cfg.rounds:
            return "budget spent"
        m = self.state["metrics"]
        k = cfg.stop_patience
        if len(m) > k:
            if cfg.stop_diversity_delta is not None:
                d = [r["d_score"] for r in m[-(k + 1) :]]
                if all(
                    abs(b - a) < cfg.stop_diversity_delta for a, b in zip(d, d[1:], strict=False)
                ):
                    return f"diversity converged (|dD_score| < {cfg.stop_diversity_delta} over {k} rounds)"
            if cfg.stop_gain_delta is not None:
                a = [r["accuracy"] for r in m[-(k + 1) :]]
                if all((b - a_) < cfg.stop_gain_delta for a_, b in zip(a, a[1:], strict=False)):
                    return f"diminishing returns (accuracy gain < {cfg.stop_gain_delta} over {k} rounds)"
        return None

    def _unlabeled_mask(self) -> np.ndarray:
        mask = np.ones(len(self.dataset.pool), dtype=bool)
        if self.state["labeled_ids"]:
            mask[self._pool_index(self.state["labeled_ids"])] = False
        return mask

    def _step_embed(self) -> None:
        from .scoring import score_pool

        out = score_pool(
            self.ensemble(),
            self.dataset.pool.X,
            scores=(),
            return_probs=True,
            return_embedding=True,
        )
        _atomic_savez(
            self._round_dir() / "embed.npz",
            probs=out["probs"].astype(np.float32),
            embedding=out["embedding"].astype(np.float32),
        )

    def _step_density(self) -> None:
        from sklearn.decomposition import PCA

        from .clustering import kmeans
        from .density import GaussianKDE

        emb = self._load("embed")["embedding"]
        labeled = ~self._unlabeled_mask()
        # KDE in a few dimensions: a 256-d kernel density is all noise, so p(z) is estimated on
        # the leading principal components of the pool's embedding (fitted on the whole pool).
        k = int(self.config.strategy_options.get("density_dims", 8))
        k = max(1, min(k, emb.shape[1], int(labeled.sum()) - 1))
        Zr = PCA(n_components=k, random_state=self.config.seed).fit_transform(emb).astype(np.float32)
        kde = GaussianKDE(bandwidth="scott").fit(Zr[labeled])
        log_p = kde.score_samples(Zr)
        clusters, _ = kmeans(
            emb, min(self.config.n_clusters, len(emb)), random_state=self._seed_for("density")
        )
        _atomic_savez(
            self._round_dir() / "density.npz",
            log_density=np.asarray(log_p, np.float64),
            clusters=np.asarray(clusters, np.int64),
        )

    def _step_score(self) -> None:
        from . import scoring

        probs = self._load("embed")["probs"]
        names = (
            "predictive_entropy",
            "mutual_information",
            "ensemble_uncertainty",
            "margin",
            "variance",
        )
        _atomic_savez(
            self._round_dir() / "scores.npz",
            **{n: np.asarray(scoring.SCORES[n](probs)) for n in names},
        )

    def _bandit(self):
        """The run's bandit (restored from the state, or new with one arm per cluster)."""
        from .bandits import BANDITS, make_bandit

        _name, opts, _s = self.config.resolved_strategy()
        if self.state["bandit"] is not None:
            return BANDITS[self.state["bandit_kind"]].from_state(self.state["bandit"])
        kind = opts.get("bandit", "ucb1")
        self.state["bandit_kind"] = kind
        n_arms = int(opts.get("n_clusters", self.config.n_clusters))
        return make_bandit(kind, n_arms, random_state=self._seed_for("allocate"))

    def _step_allocate(self) -> None:
        """Bandit strategies: restore (or create) the bandit and record its arm statistics.

        The split of this round's budget over clusters happens in ``select``, once this
        round's clusters exist (``helpers.selection.cluster_bandit`` re-matches the arms to
        them by nearest center and calls ``bandit.allocate``).
        """
        name, _opts, _s = self.config.resolved_strategy()
        if name != "cluster_bandit":
            return
        bandit = self._bandit()
        self.state["bandit"] = bandit.get_state()
        self.state.setdefault("bandit_history", []).append({
            "round": self.round,
            "pulls": bandit.counts.tolist(),
            "means": [None if not np.isfinite(m) else float(m) for m in bandit.means],
        })

    def _selection_inputs(self) -> dict:
        emb = self._load("embed")
        scores = self._load("scores")
        dens = self._load("density")
        return {
            "probs": emb["probs"],
            "embeddings": emb["embedding"],
            "scores_by_name": scores,
            "log_density": dens["log_density"],
        }

    def _step_select(self) -> None:
        from .selection import select

        cfg = self.config
        rng = self._rng("select")
        unl = self._unlabeled_mask()
        if self.round < 0:  # bootstrap: a random batch, no model yet
            n = min(cfg.n_initial, int(unl.sum()))
            idx = select("random", n, scores=np.zeros(len(unl)), labeled_mask=~unl, random_state=rng)
            self.state["batch"] = [int(i) for i in self.dataset.pool.ids[idx]]
            self.state["batch_info"] = {"strategy": "random (bootstrap)"}
            return
        name, opts, _synth = cfg.resolved_strategy()
        opts = dict(opts)
        inputs = self._selection_inputs()
        score_name = opts.pop("score", "predictive_entropy")
        bandit = None
        if name == "cluster_bandit":
            bandit = self._bandit()
            opts["bandit"] = bandit
            opts["n_clusters"] = bandit.n_arms
            if self.state.get("bandit_centers") is not None:
                opts["previous_centers"] = np.asarray(self.state["bandit_centers"], dtype=np.float64)
        info: dict = {}
        budget = min(cfg.budget, int(unl.sum()))
        idx = select(
            name,
            budget,
            scores=inputs["scores_by_name"][score_name],
            embeddings=inputs["embeddings"],
            probs=inputs["probs"],
            labeled_mask=~unl,
            log_density=inputs["log_density"],
            random_state=rng,
            info=info,
            **opts,
        )
        self.state["batch"] = [int(i) for i in self.dataset.pool.ids[idx]]
        self.state["batch_info"] = {
            "strategy": name,
            "score": score_name,
            **{k: v for k, v in info.items() if isinstance(v, (int, float, str, list, dict))},
        }
        if bandit is not None:
            self.state["bandit"] = bandit.get_state()
            self.state["bandit_centers"] = np.asarray(info["centers"]).tolist()
            self.state["batch_info"]["arms"] = np.asarray(info["arms"]).tolist()
            self.state["batch_info"]["allocation"] = np.asarray(info["allocation"]).tolist()

    def _step_synthesize(self) -> None:
        _name, _opts, mode = self.config.resolved_strategy()
        if mode is None:
            return
        from . import synthesis

        cfg = self.config
        n = int(cfg.synthesis_options.get("n", cfg.budget))
        gen = self._generator()
        X, y, _ids = self.training_set()
        inputs = self._selection_inputs()
        batch = synthesis.synthesize(
            mode,
            generator=gen,
            n=n,
            X_train=X,
            y_train=y,
            X_pool=self.dataset.pool.X,
            pool_uncertainty=inputs["scores_by_name"]["predictive_entropy"],
            classifier=self.ensemble(),
            n_classes=self.dataset.n_classes,
            shaper_state=self.state.get("shaper"),
            val=(self.dataset.val.X, self.dataset.val.labels),
            random_state=self._rng("synthesize"),
            **{k: v for k, v in cfg.synthesis_options.items() if k not in ("n", "generator")},
        )
        if getattr(batch, "shaper_state", None) is not None:
            self.state["shaper"] = batch.shaper_state
        sids, sX, sy = self._synthetic_arrays()
        start = SYNTHETIC_ID_BASE + len(sids)
        new_ids = np.arange(start, start + len(batch.X), dtype=np.int64)
        if len(new_ids):
            self.store.add_items(
                [int(i) for i in new_ids],
                dataset=self.dataset.name,
                source="synthetic",
                round=self.round + 1,
                provenance=list(batch.provenance),
            )
            _atomic_savez(
                self.run_dir / "synthetic.npz",
                ids=np.concatenate([sids, new_ids]),
                X=np.concatenate([sX, batch.X.astype(np.float32)]),
                y=np.concatenate([sy, np.asarray(batch.intended_labels, np.int64)]),
            )
        self.state["synthetic_batch"] = [int(i) for i in new_ids]
        self.state["batch_info"]["synthesis"] = {
            "mode": mode,
            "generated": int(len(new_ids)),
            "filter_report": batch.filter_report,
        }

    def _generator(self):
        """The run's generator: a (conditional) VAE fitted once on the unlabeled pool inputs."""
        from .generators import ConditionalVAE

        path = self.run_dir / "generator.pt"
        if path.exists():
            return ConditionalVAE.load(path)
        ds = self.dataset
        gen = ConditionalVAE(
            n_classes=ds.n_classes,
            random_state=self.config.seed,
            **self.config.synthesis_options.get("generator", {}),
        )
        X, y, _ = self.training_set()
        # the conditional part learns from labeled items; the VAE from the whole pool
        gen.fit(ds.pool.X, None, X_labeled=X, y_labeled=y)
        gen.save(path)
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
        oracle = self.dataset.oracle
        for a, (name, reliability) in enumerate(self._annotators()):
            rng = np.random.default_rng([cfg.seed, rnd, 1000 + a])
            if batch:
                true = oracle.query(batch)
                noisy = true.copy()
                flip = rng.random(len(true)) > reliability
                if flip.any():
                    shift = rng.integers(1, self.dataset.n_classes, size=int(flip.sum()))
                    noisy[flip] = (true[flip] + shift) % self.dataset.n_classes
                for item, lab in zip(batch, noisy, strict=True):
                    events.append(
                        {
                            "item_id": int(item),
                            "kind": "label",
                            "annotator": name,
                            "label": int(lab),
                            "round": rnd,
                            "cues": {"simulated": True, "reliability": reliability},
                            "key": f"{cfg.seed}-{rnd}-{name}-label-{item}",
                        }
                    )
            if synth:
                verdict = self._validate_synthetic(synth)
                for item, ok in zip(synth, verdict, strict=True):
                    events.append(
                        {
                            "item_id": int(item),
                            "kind": "accept" if ok else "reject",
                            "annotator": name,
                            "round": rnd,
                            "cues": {"simulated": True, "proxy": "oracle"},
                            "key": f"{cfg.seed}-{rnd}-{name}-validate-{item}",
                        }
                    )
        if events:
            self.store.record_many(events)

    def _validate_synthetic(self, synth_ids: list) -> np.ndarray:
        """Simulated validation of synthetic items (a stated proxy for a person's accept)."""
        from . import synthesis

        sids, sX, sy = self._synthetic_arrays()
        pos = {int(i): k for k, i in enumerate(sids)}
        take = np.asarray([pos[int(i)] for i in synth_ids], dtype=np.int64)
        return synthesis.validate_with_oracle(
            self.dataset, sX[take], sy[take], random_state=self.config.seed
        )

    def _step_integrate(self) -> None:
        batch = [int(i) for i in self.state["batch"]]
        cons = self.store.consensus()
        lab = (
            dict(
                zip(cons["item_id"].astype(np.int64).tolist(), cons["label"].tolist(), strict=True)
            )
            if len(cons)
            else {}
        )
        missing = [i for i in batch if i not in lab]
        if missing:
            raise RuntimeError(
                f"integrate: {len(missing)} batch item(s) have no consensus label: {missing[:5]}"
            )
        self.state["labeled_ids"].extend(batch)
        self.state["labeled_y"].extend(int(lab[i]) for i in batch)
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
        arms = self.state["batch_info"].get("arms")
        if self.state["bandit"] is not None and arms:
            from .bandits import BANDITS, reward_mean_uncertainty

            # reward of an arm: mean U(x) of the batch items it gave, scaled by log C to [0, ~1]
            bandit = cast(Any, BANDITS[self.state["bandit_kind"]]).from_state(self.state["bandit"])
            u = self._load("scores")["ensemble_uncertainty"][self._pool_index(batch)] / np.log(self.dataset.n_classes)
            rewards = reward_mean_uncertainty(u, np.asarray(arms, dtype=np.int64), bandit.n_arms)
            bandit.update_many(np.clip(rewards, 0.0, 1.0))
            self.state["bandit"] = bandit.get_state()
        self.state["batch"] = []
