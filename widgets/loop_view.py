"""LoopView: the loop a person drives -- label the batch, retrain in the background, next batch.

A view over one :class:`gapscope.helpers.loop.CurationLoop` with ``labeler="human"``: it holds
the loop and the widgets and only wires their callbacks (no data of its own that is not also
in the loop's folder or its label store, so a restarted kernel continues where it stopped).

* the :class:`~gapscope.widgets.Labeler` shows the loop's current batch with the model's label,
  its confidence (ensemble agreement: the share of members whose vote is the shown label;
  the card says so) and the nearest labeled exemplars in the model's embedding;
* "Retrain" (the button, or ``r`` in the Labeler) runs the loop's steps in a background thread
  with a progress bar: integrate the labels, train, evaluate, embed, select; the widgets keep
  answering meanwhile, and the next batch appears when the loop waits for labels again;
* with synthesis on, the round's synthetic items are on the same cards, marked "synthetic",
  with the label they were generated as: accept or reject validates them (q(x) in the store)
  and accepted ones join the next round's training set;
* :meth:`LoopView.use_as_batch` replaces the batch with items a person chose (a lasso on the
  map, a sampler's proposal);
* the :class:`~gapscope.widgets.LoopDashboard` gains a round;
* the map is the 2-D PCA of this round's model embedding, rebuilt after every retrain.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import traitlets

__all__ = ["LoopBar", "LoopView", "ensemble_agreement"]


def ensemble_agreement(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(label, agreement) per item from member probabilities of shape (M, n, C).

    ``label`` is the argmax of the mean probability; ``agreement`` the share of the M
    members whose own argmax is that label (1/M steps). With M = 1 it is the member's
    probability of the label instead (the only number a single model gives).
    """
    P = np.asarray(probs, dtype=np.float64)
    if P.ndim != 3:
        raise ValueError(f"probs: expected shape (M, n, C), got {P.shape}")
    label = P.mean(axis=0).argmax(axis=1)
    if P.shape[0] == 1:
        return label, P[0, np.arange(P.shape[1]), label]
    votes = P.argmax(axis=2)
    return label, (votes == label[None]).mean(axis=0)


def _agreement_with(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Share of the M members whose vote is ``labels`` (the member's probability of it when
    M = 1), from probabilities of shape (M, n, C): the same number the cards show for real
    items, here for a label the model did not choose (a synthetic item's intended label)."""
    P = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if P.shape[0] == 1:
        return P[0, np.arange(P.shape[1]), y]
    return (P.argmax(axis=2) == y[None]).mean(axis=0)


def _thread(target: Any) -> threading.Thread:
    """A daemon thread for the retrain; in marimo a ``mo.Thread``, which also routes the
    thread's ``print`` to the page and is told to stop when its cell is re-run (widget
    updates from any thread reach marimo's page: each comm keeps its session)."""
    if "marimo" in sys.modules:
        try:
            import marimo as mo

            if mo.running_in_notebook():
                return mo.Thread(target=target, name="gapscope-retrain", daemon=True)
        except Exception:  # an old marimo, or not inside a marimo kernel
            pass
    return threading.Thread(target=target, name="gapscope-retrain", daemon=True)


def _round_name(r: int) -> str:
    """What a person reads for the loop's round: the bootstrap batch is round -1 inside."""
    return "bootstrap" if r < 0 else f"round {r}"


class LoopView:
    """Label -> retrain -> next batch over a ``CurationLoop(labeler="human")``.

    Parameters
    ----------
    loop : gapscope.helpers.loop.CurationLoop
        A loop with ``labeler="human"``; its store is where the Labeler writes.
    annotator : str
        Who labels (written with every event).
    content : mapping, callable or None
        The items for previews (default: the pool's features by id).
    kind : {"image", "signal", "vector", "text"}, optional
        Preview kind (default: the dataset's kind).
    show_map : bool, default True
        Show the 2-D map of the model embedding (PCA), rebuilt after each retrain.

    Attributes
    ----------
    labeler, dashboard, map : the widgets
    busy : bool
        True while the background thread runs loop steps.
    """

    def __init__(
        self,
        loop: Any,
        *,
        annotator: str = "annotator",
        content: Any = None,
        kind: str | None = None,
        show_map: bool = True,
    ) -> None:
        import ipywidgets as W

        from .dashboard import LoopDashboard
        from .labeler import Labeler

        if getattr(loop.config, "labeler", None) != "human":
            raise ValueError(
                f"loop: expected a CurationLoop with labeler='human', got labeler={loop.config.labeler!r}"
            )
        self.loop = loop
        ds = loop.dataset
        self.kind = kind or ("image" if ds.kind == "image" else "signal" if ds.kind == "signal" else "vector")
        pos = {int(i): k for k, i in enumerate(ds.pool.ids)}
        self.content = content if content is not None else (lambda i: ds.pool.X[pos[int(i)]])
        self._synthetic_content: dict[str, Any] = {}  # this round's synthetic items, by str id
        self.show_map = show_map
        self.busy = False
        self.error: str | None = None
        self._thread: threading.Thread | None = None
        self.dashboard = LoopDashboard()
        self.bar = LoopBar(on_retrain=lambda: self.retrain(), on_use_selection=lambda: self.use_selection())
        self.map: Any = None
        # the map fills what the dashboard leaves of the row (at least 440 px); the
        # dashboard wraps under the map when the notebook is narrower than both
        self.map_round: int | None = None
        self.labeler = Labeler(
            loop.store,
            [str(i) for i in ds.pool.ids[:1]],
            content=self._item_content,
            kind=self.kind,
            label_names=ds.class_names,
            annotator=annotator,
            round=max(0, loop.round + 1),
            title="",
        )
        self.labeler.on_key("r", lambda: self.retrain())
        # a decision gives the item its "labeled" ring on the map
        self.labeler.on_action(lambda _info: self.map.refresh() if self.map is not None else None)
        if show_map:  # one map for the whole session, updated in place after each retrain
            self._draw_map()
        row = ([W.Box([self.map], layout={"flex": "1 1 560px", "min_width": "440px"})] if show_map else []) + [
            W.Box([self.dashboard.figure], layout={"flex": "0 0 auto"})
        ]
        self.widget = W.VBox(
            [
                self.bar,
                self.labeler,
                W.Box(row, layout={"display": "flex", "flex_flow": "row wrap", "align_items": "flex-start"}),
            ]
        )
        if loop.next_step == "label" and loop.pending():
            self._show_round()  # a restarted kernel: the saved batch, with what is done
        else:
            self.retrain(background=False)

    @property
    def parts(self) -> dict[str, Any]:
        """The anywidgets this view is made of, for hosts that lay them out themselves
        (marimo: ``mo.ui.anywidget(view.parts["labeler"])``): bar, labeler, map, dashboard."""
        return {"bar": self.bar, "labeler": self.labeler, "map": self.map, "dashboard": self.dashboard.figure}

    def _ipython_display_(self) -> None:  # pragma: no cover - display hook
        from IPython.display import display

        display(self.widget)

    # ------------------------------------------------------------------ driving
    def retrain(self, *, background: bool = True) -> None:
        """Run the loop until it waits for labels again (in a thread unless ``background=False``).

        If the batch is not fully resolved yet, nothing runs and the status says how many
        items are still open.
        """
        if self.busy:
            self.bar.say("already retraining…")
            return
        if self.loop.next_step == "label" and self.loop.pending():
            n = len(self.loop.pending())
            self.bar.say(f"{n} item(s) of the batch are still open: label, skip, reject or mark them first")
            return
        self.busy = True
        self.bar.busy = True
        # the batch is being integrated and trained on: a decision now would reach the
        # store but not this round's training set, so the cards take none (moving still works)
        self.labeler.locked = "the loop is retraining on this batch; the next batch comes when it is done"
        if background:
            self._thread = _thread(self._advance)
            self._thread.start()
        else:
            self._advance()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a background retrain has finished (for scripts and tests)."""
        t = self._thread
        if t is not None:
            t.join(timeout)
            return not t.is_alive()
        return True

    def _advance(self) -> None:
        from gapscope.helpers.loop import STEPS, WaitingForLabels

        loop = self.loop
        t0 = time.perf_counter()
        try:
            done = 0
            total = len(STEPS) + 2
            while not loop.done:
                name = loop.next_step
                self.bar.say(f"running {name} ({_round_name(loop.round)})…")
                try:
                    loop.step()
                except WaitingForLabels:
                    break
                done += 1
                self.bar.progress = min(1.0, done / total)
            self.bar.progress = 1.0
            self._show_round()
            took = time.perf_counter() - t0
            self.bar.say(
                f"done: {loop.stop_reason}" if loop.done else f"{_round_name(loop.round)}: batch of {len(loop.batch)} ready ({took:.1f} s)"
            )
            self.error = None
        except Exception as exc:  # shown in the widget; the loop's saved state is unchanged
            self.error = f"{type(exc).__name__}: {exc}"
            self.bar.say(self.error, "error")
        finally:
            self.busy = False
            self.bar.busy = False
            self.labeler.locked = ""

    def use_as_batch(self, ids: Any, *, source: str = "lasso") -> None:
        """Make ``ids`` (pool ids, e.g. a lasso selection on the map or a sampler's proposal)
        the batch on the cards, in place of the one the strategy proposed.

        The loop must be waiting for labels; :meth:`CurationLoop.set_batch` validates the
        ids and saves the batch (a restarted kernel shows it). This round's synthetic items
        stay on the cards.

        Raises
        ------
        ValueError
            From ``set_batch`` (unknown, labeled or excluded ids, an empty batch), or the
            view is retraining; nothing changes.
        """
        if self.busy:
            raise ValueError("ids: the loop is retraining; choose the batch when it is done")
        if isinstance(ids, (str, bytes)):
            raise ValueError(f"ids: expected a sequence of pool ids, got {ids!r}")
        # a map's selection gives the ids as str
        as_int = [int(i) if isinstance(i, str) and i.strip().isdigit() else i for i in ids]
        self.loop.set_batch(as_int, source=source)
        self._show_batch()
        if self.map is not None:
            self.map.mark_batch([str(i) for i in self.loop.batch])
        n = len(self.loop.batch)
        self.bar.say(f"{_round_name(self.loop.round)}: batch of {n} from {source}")

    # ------------------------------------------------------------------ views
    def _item_content(self, item_id: Any) -> Any:
        """The item for a card's preview: a synthetic item from the loop, else ``content``."""
        key = str(item_id)
        if key in self._synthetic_content:
            return self._synthetic_content[key]
        c = self.content
        return c(item_id) if callable(c) else c[item_id]

    def _show_round(self) -> None:
        self.dashboard.update_from_loop(self.loop)
        self._show_batch()
        if self.show_map:
            self._draw_map()

    def _show_batch(self) -> None:
        """The loop's batch on the cards: its real items, then its synthetic ones."""
        loop = self.loop
        real = [int(i) for i in loop.batch]
        synth = loop.synthetic_batch
        if not real and not synth:
            return
        ids = [str(i) for i in real + synth]
        model_labels = conf = exemplars = None  # the bootstrap batch: no model yet
        if synth:  # (synthesis runs in model rounds only)
            sX, sy = loop.synthetic_items(synth)
            self._synthetic_content = {str(i): x for i, x in zip(synth, sX, strict=True)}
        if loop.round >= 0:
            view = loop.pool_view()
            idx = loop.dataset.pool.index_of(real) if real else np.zeros(0, np.int64)
            lab, agree = ensemble_agreement(view["probs"][:, idx])
            labels, conf, E = [int(v) for v in lab], np.asarray(agree), view["embedding"][idx]
            if synth:
                sv = loop.model_view(sX)
                own, own_agree = ensemble_agreement(sv["probs"])
                # the label each item was generated as (the model's where the generator gave none)
                shown = np.where(sy >= 0, sy, own)
                labels += [int(v) for v in shown]
                conf = np.concatenate([conf, _agreement_with(sv["probs"], shown)])
                E = np.concatenate([E, sv["embedding"]])
            model_labels = labels
            have = loop.labeled_ids
            if have:
                from ._common import nearest_exemplars

                ref = loop.dataset.pool.index_of(have)
                exemplars = nearest_exemplars(E, view["embedding"][ref], [str(i) for i in have], k=3)
        strategy = (loop.state.get("batch_info") or {}).get("strategy", "")
        self.labeler.round = loop.round + 1
        self.labeler.confidence_name = "agreement" if (conf is not None and self._members() > 1) else "p"
        title = f"{_round_name(loop.round)} · {strategy} · {len(real)} items"
        self.labeler.title = title + (f" + {len(synth)} synthetic" if synth else "")
        self.labeler.set_batch(ids, model_labels=model_labels, confidence=conf, exemplars=exemplars)

    def _members(self) -> int:
        try:
            return int(self.loop.pool_view()["probs"].shape[0])
        except Exception:  # no model yet
            return 0

    def _draw_map(self) -> None:
        """The 2-D PCA of this round's model embedding, drawn into the same map in place
        (before the first model: the PCA of the pool's features, coloured by label).

        PCA axes have arbitrary signs; each axis is flipped to agree with the previous
        round's map, so a retrain moves points rather than mirroring the picture.
        """
        from sklearn.decomposition import PCA

        from gapscope.helpers.scoring import predictive_entropy

        from .latent_map import LatentMap

        loop = self.loop
        have_model = loop.round >= 0 and self._members() > 0
        if have_model:
            view = loop.pool_view()
            E = np.asarray(view["embedding"], dtype=np.float64)
            u = np.asarray(predictive_entropy(view["probs"]))
            title = f"model embedding (PCA), round {loop.round}"
        else:
            E = np.asarray(loop.dataset.pool.X, dtype=np.float64).reshape(len(loop.dataset.pool), -1)
            u = None
            title = "pool features (PCA), before the first model"
        xy = PCA(n_components=2, random_state=loop.config.seed).fit_transform(E) if E.shape[1] > 2 else E[:, :2].copy()
        if self.map is not None:
            prev = self.map.xy
            for j in range(2):
                if float(np.dot(xy[:, j] - xy[:, j].mean(), prev[:, j] - prev[:, j].mean())) < 0:
                    xy[:, j] = -xy[:, j]
        if self.map is None:
            self.map = LatentMap(
                xy,
                [str(i) for i in loop.dataset.pool.ids],
                color_by="uncertainty" if u is not None else "label",
                uncertainty=u,
                store=loop.store,
                content=self.content,
                kind=self.kind,
                height=420,
                title=title,
            )
            self.map.on_select(self._on_map_select)
        elif u is not None:
            first = "uncertainty" not in self.map.color_options
            self.map.update(xy, uncertainty=u, title=title)
            if first:  # the first model: what a person looks at is where it is unsure
                self.map.color_by = "uncertainty"
        else:
            self.map.update(xy, title=title)
        self.map.mark_batch([str(i) for i in loop.batch])
        self.map_round = loop.round

    def _on_map_select(self, ids: list[str]) -> None:
        self.bar.n_selected = len(ids)

    def use_selection(self) -> None:
        """The map's selection becomes the batch (:meth:`use_as_batch`, source "lasso").

        Items already labeled, rejected or out of scope are left out (a lasso over a region
        takes them too); the status line says how many.
        """
        ids = [int(i) for i in (self.map.selected_ids if self.map is not None else [])]
        st = self.loop.state
        taken = set(st["labeled_ids"]) | set(st["excluded_ids"])
        open_ids = [i for i in ids if i not in taken]
        if not open_ids:
            self.bar.say(
                f"ids: none of the {len(ids)} selected items is open (all labeled, rejected or out of scope)", "error"
            )
            return
        try:
            self.use_as_batch(open_ids, source="lasso")
        except ValueError as exc:
            self.bar.say(str(exc), "error")
            return
        left = len(ids) - len(open_ids)
        self.bar.say(
            f"the batch is now the {len(open_ids)} items selected on the map"
            + (f" ({left} already labeled or excluded left out)" if left else "")
        )


_STATIC = Path(__file__).parent / "static"


class LoopBar(anywidget.AnyWidget):
    """The LoopView's controls as one anywidget (works in JupyterLab and marimo alike):
    Retrain, a progress bar, the status line, and "use the map's selection as the batch".

    Clicks arrive as custom messages and call ``on_retrain`` / ``on_use_selection``.
    """

    _esm = (_STATIC / "loopbar.js").read_text(encoding="utf-8")
    _css = (_STATIC / "loopbar.css").read_text(encoding="utf-8")

    busy = traitlets.Bool(False).tag(sync=True)
    progress = traitlets.Float(0.0).tag(sync=True)
    status = traitlets.Unicode("").tag(sync=True)
    status_kind = traitlets.Unicode("").tag(sync=True)
    n_selected = traitlets.Int(0).tag(sync=True)

    def __init__(self, on_retrain: Any, on_use_selection: Any) -> None:
        super().__init__()
        self._on_retrain, self._on_use = on_retrain, on_use_selection
        self.on_msg(self._on_frontend_msg)

    def _on_frontend_msg(self, _w: Any, content: Any, _buffers: Any) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "retrain":
            self._on_retrain()
        elif kind == "use_selection":
            self._on_use()

    def say(self, text: str, kind: str = "") -> None:
        self.status, self.status_kind = text, kind
