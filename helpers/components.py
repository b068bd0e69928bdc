"""The seam: the user's data, model and strategy, given as objects or as JSON-able specs.

The curation loop works on three components (DESIGN.md, "The seam"):

``data``
    a :class:`~gapscope.helpers.data.Pool` with the labels it already has (-1 = none), or a
    :class:`~gapscope.helpers.data.Dataset` (a pool plus optional evaluation splits and an
    optional oracle for simulation).
``model``
    anything with ``fit(X, y) -> self`` and ``predict_proba(X) -> (M, n, C)``, optionally
    ``embed(X) -> (n, k)`` and ``save(path)`` / ``load(path)``
    (:class:`gapscope.helpers.models.Model`).
``strategy``
    a callable ``strategy(budget, ctx) -> pool positions``; ``ctx`` is a
    :class:`StrategyContext` that computes scores, embeddings, density and clusters lazily,
    carries the round's rng and the strategy's own persistent state (a bandit).

Each may be given as an object or as a **spec**, which keeps a
:class:`~gapscope.helpers.loop.LoopConfig` JSON, so a resumed run, or a papermill kernel,
rebuilds the same component:

* a registered name: ``"digits-lt"``, ``"sklearn"``, ``"entropy"`` (:func:`registered`);
* ``"package.module:factory"``: any importable callable (a class, a function);
* ``{"name": <either of the above>, "options": {...}}``: keyword options for the factory.
  Options that are themselves specs are resolved by the factories that expect them (e.g.
  the ``estimator`` of ``"sklearn"``).

:func:`register_dataset`, :func:`register_model` and :func:`register_strategy` add names;
a registration made in a user module is seen in a papermill kernel when the grid names
that module (``modules:`` in the grid, see :mod:`gapscope.helpers.experiments`).
"""

from __future__ import annotations

import importlib
import inspect
import numbers
from collections.abc import Callable, Mapping
from typing import Any, cast

import numpy as np

__all__ = [
    "KINDS",
    "register_dataset",
    "register_model",
    "register_strategy",
    "registered",
    "resolve",
    "resolve_object",
    "check_spec",
    "spec_name",
    "describe_object",
    "component_name",
    "call_with_accepted",
    "StrategyContext",
    "BuiltinStrategy",
]

#: The component kinds of the seam.
KINDS = ("dataset", "model", "strategy")

_REGISTRY: dict[str, dict[str, Callable[..., Any]]] = {k: {} for k in KINDS}


def _register(kind: str, name: str, factory: Callable[..., Any] | None):
    if not isinstance(name, str) or not name or ":" in name:
        raise ValueError(f"name: expected a non-empty string without ':', got {name!r}")

    def add(f: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(f):
            raise TypeError(f"factory: expected a callable, got {type(f).__name__}")
        _REGISTRY[kind][name] = f
        return f

    return add if factory is None else add(factory)


def register_dataset(name: str, factory: Callable[..., Any] | None = None):
    """Register ``factory(**options) -> Pool | Dataset`` under ``name`` (usable as a decorator).

    A factory that accepts ``random_state`` gets the run's seed.
    """
    return _register("dataset", name, factory)


def register_model(name: str, factory: Callable[..., Any] | None = None):
    """Register ``factory(**options) -> model`` under ``name`` (usable as a decorator).

    A factory that accepts ``n_classes`` / ``random_state`` / ``n_members`` gets the run's.
    """
    return _register("model", name, factory)


def register_strategy(name: str, factory: Callable[..., Any] | None = None):
    """Register ``factory(**options) -> strategy(budget, ctx)`` under ``name`` (decorator too).

    A plain strategy function (one taking ``(budget, ctx)``) may be registered directly; it
    is then used as it is when the spec has no options.
    """
    return _register("strategy", name, factory)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {list(KINDS)}, got {kind!r}")


def registered(kind: str) -> list[str]:
    """The names registered for ``kind`` (built-ins included), sorted."""
    _check_kind(kind)
    _ensure_builtins()
    return sorted(_REGISTRY[kind])


def check_spec(spec: Any, *, name: str) -> tuple[str, dict]:
    """Split a spec into ``(target, options)``; a clear error for anything else.

    ``target`` is a registered name or ``"module:attr"``.
    """
    if isinstance(spec, str):
        if not spec:
            raise ValueError(f"{name}: expected a non-empty name or 'package.module:factory', got ''")
        return spec, {}
    if isinstance(spec, Mapping):
        extra = sorted(set(spec) - {"name", "options"})
        if "name" not in spec or extra:
            raise ValueError(
                f"{name}: expected a spec {{'name': ..., 'options': {{...}}}}, got keys {sorted(spec)}"
            )
        target, options = spec["name"], spec.get("options") or {}
        if not isinstance(target, str) or not target:
            raise ValueError(f"{name}['name']: expected a non-empty string, got {target!r}")
        if not isinstance(options, Mapping):
            raise TypeError(
                f"{name}['options']: expected a dict of keyword options, got {type(options).__name__}"
            )
        return target, dict(options)
    raise TypeError(
        f"{name}: expected a registered name, 'package.module:factory' or "
        f"{{'name': ..., 'options': {{...}}}}, got {type(spec).__name__}"
    )


def spec_name(spec: Any) -> str:
    """A short readable name of a spec (for run ids and tables)."""
    if isinstance(spec, str):
        return spec
    if isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
        return spec["name"]
    return describe_object(spec)["object"]


def _import_target(target: str, *, name: str) -> Any:
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ValueError(f"{name}: expected 'package.module:factory', got {target!r}")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"{name}: cannot import module {module_name!r} of {target!r}: {exc}") from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{name}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def resolve_object(spec: Any, *, name: str = "spec") -> Any:
    """Build an object from ``"module:factory"`` or ``{"name": "module:factory", "options": ...}``.

    Non-spec values are returned unchanged (an estimator object, a number).
    """
    if isinstance(spec, str) and ":" in spec or isinstance(spec, Mapping) and ":" in str(
        spec.get("name", "")
    ):
        target, options = check_spec(spec, name=name)
        factory = _import_target(target, name=name)
        return factory(**options) if callable(factory) else factory
    return spec


def _accepts(fn: Callable[..., Any], param: str) -> bool:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    p = sig.parameters.get(param)
    return p is not None and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)


def call_with_accepted(fn: Callable[..., Any], *args: Any, **optional: Any) -> Any:
    """Call ``fn(*args, **kw)`` with only those optional keyword arguments it names.

    A ``**kwargs`` catch-all does not count: the loop's optional values (``n_classes``,
    ``random_state``, ...) reach a function only where its signature names them.
    """
    kw = {k: v for k, v in optional.items() if v is not None and _accepts(fn, k)}
    return fn(*args, **kw)


def resolve(kind: str, spec: Any, *, name: str | None = None, **context: Any) -> Any:
    """The component of ``kind`` that ``spec`` names, built with its options.

    Parameters
    ----------
    kind : {"dataset", "model", "strategy"}
    spec : str or dict
        A registered name, ``"package.module:factory"``, or ``{"name": ..., "options": ...}``.
    name : str, optional
        The argument name used in error messages (default: ``kind``).
    **context
        Values a factory gets when its signature accepts them (``random_state``,
        ``n_classes``, ``n_members``), unless the spec's options set them.

    Raises
    ------
    ValueError
        An unknown name (the registered ones are listed), a module or attribute that
        cannot be imported, options the factory does not accept.
    """
    _check_kind(kind)
    _ensure_builtins()
    arg = name or kind
    target, options = check_spec(spec, name=arg)
    if ":" in target:
        factory = _import_target(target, name=arg)
    elif target in _REGISTRY[kind]:
        factory = _REGISTRY[kind][target]
    else:
        raise ValueError(
            f"{arg}: expected a registered {kind} name {registered(kind)} or "
            f"'package.module:factory', got {target!r}"
        )
    if not callable(factory):
        raise TypeError(f"{arg}: {target!r} is not callable (got {type(factory).__name__})")
    if kind == "strategy" and not options and _is_strategy_function(factory):
        return factory
    extra = {k: v for k, v in context.items() if k not in options and v is not None and _accepts(factory, k)}
    try:
        return factory(**options, **extra)
    except TypeError as exc:
        raise ValueError(f"{arg}: {target!r} refused its options {sorted(options)}: {exc}") from exc


def _is_strategy_function(f: Any) -> bool:
    """A plain ``strategy(budget, ctx)`` function rather than a factory."""
    if inspect.isclass(f):
        return False
    try:
        params = list(inspect.signature(f).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) == 2 and all(p.default is p.empty for p in positional)


def component_name(obj: Any) -> str:
    """A component's readable name: its ``name`` attribute, its ``__name__``, or module:class."""
    name = getattr(obj, "name", None) or getattr(obj, "__name__", None)
    return str(name) if name else describe_object(obj)["object"]


def describe_object(obj: Any) -> dict:
    """A JSON record of a component given as an object (it cannot be rebuilt from JSON)."""
    qual = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    module = getattr(obj, "__module__", None) or type(obj).__module__
    return {"object": f"{module}:{qual}", "repr": repr(obj)[:200]}


# --------------------------------------------------------------------------------------
# The strategy's view of one round
# --------------------------------------------------------------------------------------
_WHERE = ("unlabeled", "pool", "labeled")


class StrategyContext:
    """What a strategy may read in one round; every array is computed on first use.

    Attributes
    ----------
    round : int
        Batches acquired so far (0 in the first acquisition round).
    budget : int
    n_classes : int
    unlabeled, labeled : ndarray of int64
        Pool positions of the unlabeled / labeled items; a strategy returns positions taken
        from ``unlabeled``.
    labeled_y : ndarray of int64
        The labels of ``labeled`` (the training labels of this round's model).
    rng : numpy.random.Generator
        This round's generator: the same on every resume.
    state : dict
        The strategy's own JSON state, saved with the run and restored on resume (e.g. a
        bandit). Write JSON-able values only.
    info : dict
        Anything JSON-able the strategy wants recorded with the batch.

    Methods ``probs``, ``embeddings``, ``scores``, ``log_density`` and ``clusters`` take
    ``where`` = ``"unlabeled"`` (default: rows aligned with ``ctx.unlabeled``), ``"pool"``
    or ``"labeled"``.
    """

    def __init__(self, loop: Any, *, budget: int, rng: np.random.Generator, state: dict):
        self._loop = loop
        self.round = int(loop.round)
        self.budget = int(budget)
        self.n_classes = int(loop.dataset.n_classes)
        mask = loop._unlabeled_mask()
        self.unlabeled = np.flatnonzero(mask).astype(np.int64)
        self.labeled = loop._pool_index(loop.state["labeled_ids"])
        self.labeled_y = np.asarray(loop.state["labeled_y"], dtype=np.int64)
        #: True for pool items a strategy may not pick (labeled, rejected, out of scope)
        self.labeled_mask = ~mask
        self.rng = rng
        self.state = state
        self.info: dict = {}

    @property
    def X(self) -> np.ndarray:
        """Pool features, shape (n_pool, *feature_shape)."""
        return self._loop.dataset.pool.X

    @property
    def n_pool(self) -> int:
        return len(self._loop.dataset.pool)

    def _rows(self, a: np.ndarray, where: str) -> np.ndarray:
        if where not in _WHERE:
            raise ValueError(f"where: expected one of {list(_WHERE)}, got {where!r}")
        if where == "pool":
            return a
        idx = self.unlabeled if where == "unlabeled" else self.labeled
        return a[:, idx] if a.ndim == 3 else a[idx]

    def probs(self, where: str = "unlabeled") -> np.ndarray:
        """Member probabilities, shape (M, n, C)."""
        return self._rows(self._loop._round_array("probs"), where)

    def embeddings(self, where: str = "unlabeled") -> np.ndarray:
        """The model's embedding (or the flattened input when it has none), shape (n, k)."""
        return self._rows(self._loop._round_array("embedding"), where)

    def scores(
        self, name: str = "predictive_entropy", where: str = "unlabeled", **options: Any
    ) -> np.ndarray:
        """An uncertainty score of :data:`gapscope.helpers.scoring.SCORES`, shape (n,).

        ``options`` are the score's keyword options (``alpha`` of ``ensemble_uncertainty``);
        without them the round's cached score is returned.

        Raises
        ------
        ValueError
            Unknown name, a bad option, or a score that needs M >= 2 members from a model
            with M = 1.
        """
        if not options:
            return self._rows(self._loop._score(name), where)
        from .scoring import get_score

        fn = get_score(name)
        return self._rows(np.asarray(fn(self._loop._round_array("probs"), **options)), where)

    def log_density(self, where: str = "unlabeled") -> np.ndarray:
        """log p(z) of a KDE of the labeled items' embeddings (leading PCs), shape (n,)."""
        return self._rows(self._loop._round_array("log_density"), where)

    def clusters(self, where: str = "unlabeled") -> np.ndarray:
        """k-means cluster of each item's embedding (``n_clusters`` of the config), shape (n,)."""
        return self._rows(self._loop._round_array("clusters"), where)


# --------------------------------------------------------------------------------------
# The built-in strategies as seam strategies
# --------------------------------------------------------------------------------------
#: Names for ``strategy``: (selection strategy, its options, synthesis mode).
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
    "counter_bias_synthesis": ("uncertainty", {"score": "predictive_entropy"}, "counter_bias"),
}

_NEEDS_DENSITY = ("density_weighted", "low_density")
# strategies that read an uncertainty score (the rest ignore ``scores``)
_NEEDS_SCORE = ("uncertainty", "uncertainty_diversity", "cluster_bandit", "density_weighted")


def _check_score_options(fn: Callable[..., Any], score: str, options: Any) -> None:
    """``strategy_options['score_options']``: a dict of ``fn``'s keyword-only options, with
    values ``fn`` accepts (checked on a tiny uniform ensemble), else ValueError."""
    where = "strategy_options['score_options']"
    if not isinstance(options, Mapping):
        raise ValueError(f"{where}: expected a dict, got {type(options).__name__}")
    known = [
        p.name for p in inspect.signature(fn).parameters.values() if p.kind is p.KEYWORD_ONLY
    ]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(
            f"{where}: unknown option(s) {unknown} for score {score!r}; expected some of {known}"
        )
    if options:
        try:
            fn(np.full((2, 1, 2), 0.5), **options)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from None


class BuiltinStrategy:
    """A strategy of :mod:`gapscope.helpers.selection` (or a preset) behind the seam.

    Parameters
    ----------
    name : str
        A preset of :data:`STRATEGY_PRESETS` or a key of
        :data:`gapscope.helpers.selection.STRATEGIES`.
    **options
        The selection strategy's options (``score`` picks the uncertainty score;
        ``score_options`` are that score's keyword options, e.g. ``{"alpha": 0.25}`` for
        ``ensemble_uncertainty``'s U(x) = alpha * expected entropy + (1 - alpha) * variance;
        for ``cluster_bandit``: ``bandit`` = "ucb1" | "thompson", ``n_clusters``).

    The bandit of ``cluster_bandit`` lives in ``ctx.state`` (restored every round, saved
    with the run); :meth:`feedback` books its rewards once the batch is labeled.
    """

    def __init__(self, name: str, **options: Any):
        from .selection import STRATEGIES

        if name in STRATEGY_PRESETS:
            sel, opts, synth = STRATEGY_PRESETS[name]
        elif name in STRATEGIES:
            sel, opts, synth = name, {}, None
        else:
            valid = sorted(set(STRATEGY_PRESETS) | set(STRATEGIES))
            raise ValueError(f"strategy: expected one of {valid}, got {name!r}")
        self.name = name
        self.selection = sel
        self.options = {**opts, **options}
        #: synthesis mode of the preset (None: real items only)
        self.synthesis = synth
        score = self.options.get("score", "predictive_entropy")
        from .scoring import SCORES

        if score not in SCORES:
            raise ValueError(f"strategy_options['score']: expected one of {sorted(SCORES)}, got {score!r}")
        _check_score_options(SCORES[score], score, self.options.get("score_options", {}))

    def __repr__(self) -> str:
        return f"BuiltinStrategy({self.name!r}, {self.options})"

    # -- the bandit of cluster_bandit --------------------------------------------------
    def _bandit(self, ctx: StrategyContext):
        from .bandits import BANDITS, make_bandit

        if ctx.state.get("bandit") is not None:
            return cast(Any, BANDITS[ctx.state["bandit_kind"]]).from_state(ctx.state["bandit"])
        kind = self.options.get("bandit", "ucb1")
        ctx.state["bandit_kind"] = kind
        n_arms = int(self.options.get("n_clusters", ctx._loop.config.n_clusters))
        return make_bandit(kind, n_arms, random_state=int(ctx.rng.integers(0, 2**31 - 1)))

    def allocate(self, ctx: StrategyContext) -> None:
        """Record the bandit's arm statistics before this round's split (bandit strategies)."""
        if self.selection != "cluster_bandit":
            return
        bandit = self._bandit(ctx)
        ctx.state["bandit"] = bandit.get_state()
        ctx.state.setdefault("history", []).append(
            {
                "round": ctx.round,
                "pulls": bandit.counts.tolist(),
                "means": [None if not np.isfinite(m) else float(m) for m in bandit.means],
            }
        )

    def __call__(self, budget: int, ctx: StrategyContext) -> np.ndarray:
        from .selection import select

        opts = dict(self.options)
        score = opts.pop("score", "predictive_entropy")
        score_options = opts.pop("score_options", {})
        opts.pop("density_dims", None)
        bandit = None
        if self.selection == "cluster_bandit":
            bandit = self._bandit(ctx)
            opts["bandit"] = bandit
            opts["n_clusters"] = bandit.n_arms
            if ctx.state.get("centers") is not None:
                opts["previous_centers"] = np.asarray(ctx.state["centers"], dtype=np.float64)
        info: dict = {}
        needs_scores = self.selection in _NEEDS_SCORE
        idx = select(
            self.selection,
            budget,
            scores=(
                ctx.scores(score, where="pool", **score_options)
                if needs_scores
                else np.zeros(ctx.n_pool)
            ),
            embeddings=ctx.embeddings(where="pool"),
            probs=ctx.probs(where="pool") if self.selection in ("margin", "badge") else None,
            labeled_mask=ctx.labeled_mask,
            log_density=ctx.log_density(where="pool") if self.selection in _NEEDS_DENSITY else None,
            random_state=ctx.rng,
            info=info,
            **opts,
        )
        ctx.info.update(
            {
                "strategy": self.name,
                **({"score": score} if needs_scores else {}),
                **({"score_options": score_options} if needs_scores and score_options else {}),
            },
            **{k: v for k, v in info.items() if isinstance(v, (int, float, str, list, dict))},
        )
        if bandit is not None:
            ctx.state["bandit"] = bandit.get_state()
            ctx.state["centers"] = np.asarray(info["centers"]).tolist()
            ctx.state["arms"] = np.asarray(info["arms"]).tolist()
            ctx.info["arms"] = ctx.state["arms"]
            ctx.info["allocation"] = np.asarray(info["allocation"]).tolist()
        return idx

    def feedback(self, ctx: StrategyContext, batch: np.ndarray) -> None:
        """Book the bandit's rewards for the labeled batch (pool positions, in order)."""
        arms = ctx.state.pop("arms", None)
        if self.selection != "cluster_bandit" or not arms or ctx.state.get("bandit") is None:
            return
        from .bandits import BANDITS, reward_mean_uncertainty

        # reward of an arm: mean U(x) of the batch items it gave, scaled by log C to [0, ~1]
        bandit = cast(Any, BANDITS[ctx.state["bandit_kind"]]).from_state(ctx.state["bandit"])
        score = self.options.get("score", "ensemble_uncertainty")
        score_options = self.options.get("score_options") or {}
        u = ctx.scores(score, where="pool", **score_options)[batch] / np.log(ctx.n_classes)
        rewards = reward_mean_uncertainty(u, np.asarray(arms, dtype=np.int64), bandit.n_arms)
        bandit.update_many(np.clip(rewards, 0.0, 1.0))
        ctx.state["bandit"] = bandit.get_state()


def check_batch(idx: Any, *, budget: int, ctx: StrategyContext, strategy: Any) -> np.ndarray:
    """Validate what a strategy returned: ``budget`` unique, unlabeled pool positions."""
    who = f"strategy {component_name(strategy)}"
    arr = np.asarray(idx)
    if arr.ndim != 1:
        raise ValueError(f"{who}: expected a 1-D array of pool positions, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{who}: expected integer pool positions, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size != budget:
        raise ValueError(f"{who}: expected {budget} positions (the budget), got {arr.size}")
    bad = arr[(arr < 0) | (arr >= ctx.n_pool)]
    if bad.size:
        raise ValueError(
            f"{who}: expected positions in [0, {ctx.n_pool}), got out-of-range {bad[:5].tolist()}"
        )
    uniq, counts = np.unique(arr, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"{who}: expected unique positions, got duplicates {uniq[counts > 1][:5].tolist()}")
    lab = arr[ctx.labeled_mask[arr]]
    if lab.size:
        raise ValueError(
            f"{who}: expected unlabeled pool positions (from ctx.unlabeled), got {lab.size} "
            f"already labeled such as {lab[:5].tolist()}"
        )
    return arr


# --------------------------------------------------------------------------------------
# Built-in registrations
# --------------------------------------------------------------------------------------
_BUILTINS_DONE = False


def _ensure_builtins() -> None:
    global _BUILTINS_DONE
    if _BUILTINS_DONE:
        return
    _BUILTINS_DONE = True
    from . import data, models
    from .selection import STRATEGIES

    for ds_name in data.DATASETS:
        _REGISTRY["dataset"].setdefault(
            ds_name,
            (lambda n: lambda random_state=None, **o: data.load_dataset(n, random_state=random_state, **o))(
                ds_name
            ),
        )
    for loader in ("from_parquet", "from_arrow", "from_csv", "from_image_folder", "from_texts"):
        if hasattr(data.Pool, loader):
            _REGISTRY["dataset"].setdefault(loader[5:], getattr(data.Pool, loader))
    def ensemble_factory(**options: Any) -> Any:
        # the loop's defaults: at least 100 optimizer steps (a 20-item set is one step per
        # epoch), early stopping on 20% of the labeled set, so every label used is counted
        return models.Ensemble(**{"min_steps": 100, "validation_fraction": 0.2, **options})

    model_factories: dict[str, Callable[..., Any]] = {
        "ensemble": _with_context(ensemble_factory),
        "sklearn": _with_context(
            lambda estimator, **o: models.SklearnEnsemble(resolve_object(estimator, name="estimator"), **o)
        ),
        "torch": _with_context(
            lambda module_factory, **o: models.TorchEnsemble(
                _import_target(module_factory, name="module_factory")
                if isinstance(module_factory, str)
                else module_factory,
                **o,
            )
        ),
        "frozen_encoder": _with_context(
            lambda encoder=None, **o: models.FrozenEncoder(
                _import_target(encoder, name="encoder") if isinstance(encoder, str) else encoder, **o
            )
        ),
    }
    for k, f in model_factories.items():
        _REGISTRY["model"].setdefault(k, f)
    for s in sorted(set(STRATEGY_PRESETS) | set(STRATEGIES)):
        _REGISTRY["strategy"].setdefault(s, (lambda n: lambda **o: BuiltinStrategy(n, **o))(s))


def _with_context(make: Callable[..., Any]) -> Callable[..., Any]:
    """A model factory that takes the loop's ``n_members``, ``n_classes`` and ``random_state``
    by name and forwards those that are set (the spec's own options win)."""

    def factory(*args: Any, n_members: Any = None, n_classes: Any = None, random_state: Any = None, **options: Any):
        given = {"n_members": n_members, "n_classes": n_classes, "random_state": random_state}
        return make(*args, **{k: v for k, v in given.items() if v is not None}, **options)

    return factory


def is_int(v: Any) -> bool:
    """An integer that is not a bool."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)
