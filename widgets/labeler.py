"""Labeler: a keyboard-first batch labeling widget (anywidget with its own front end).

The widget is a view over a :class:`gapscope.helpers.store.LabelStore`: every action is written to
the store at once (append-only events with provenance cues) and the per-item state the
grid shows is read back from ``store.status``. Re-opened on the same store (for example
after a kernel restart) it therefore shows what was already done and continues.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import traitlets

from ._common import ITEM_KINDS, WIDGETS_VERSION, item_preview, svg_data_uri

_STATIC = Path(__file__).parent / "static"

#: key -> action, the one mapping used by the browser and by :meth:`Labeler.press`.
KEYMAP: dict[str, str] = {
    "a": "accept",
    "x": "reject",
    " ": "skip",
    "Backspace": "undo",
    "f": "flag_bias",
    "o": "flag_out_of_scope",
    "ArrowRight": "next",
    "ArrowDown": "next",
    "ArrowLeft": "prev",
    "ArrowUp": "prev",
}

#: actions that finish an item (the cursor moves on)
_FINISHING = {"accept", "reject", "relabel", "skip", "flag_out_of_scope"}
_ACTIONS = {
    "accept",
    "reject",
    "relabel",
    "skip",
    "undo",
    "flag_bias",
    "flag_out_of_scope",
    "tag",
    "accept_all",
    "next",
    "prev",
    "goto",
}
_DONE = {"accept", "reject", "correct", "label", "flag_out_of_scope"}


class LabelerError(ValueError):
    """An action the Labeler refused (the message is also shown in the widget)."""


def label_keys(names: Sequence[str]) -> list[str]:
    """The digit key of each label: the label's own name when the labels are digits (0-9),
    otherwise ``"1"``-``"9"`` for the first nine labels in order and ``""`` for the rest."""
    names = [str(n) for n in names]
    if len(set(names)) == len(names) and all(len(n) == 1 and n.isdigit() for n in names):
        return names
    return [str(k + 1) if k < 9 else "" for k in range(len(names))]


def _schema(store_schema: Any) -> tuple[list[Any], list[str]]:
    """(labels as stored, tags) from ``store.schema()``."""
    if not isinstance(store_schema, Mapping) or "labels" not in store_schema:
        raise TypeError(
            f"store.schema(): expected {{'labels': [...], 'tags': [...]}}, got {store_schema!r:.80}"
        )
    return list(store_schema["labels"]), [str(t) for t in store_schema.get("tags", ())]


def _store_item_ids(store: Any) -> tuple[dict[str, Any], set[str]]:
    """``{str(id): id}`` of every item in the store (ids keep the store's int/str kind), and
    the str ids of the store's synthetic items (``source == "synthetic"``)."""
    items = store.items()
    col = "item_id" if "item_id" in items.columns else items.columns[0]
    ids = items[col].tolist()
    sources = items["source"].tolist() if "source" in items.columns else [None] * len(ids)
    synthetic = {str(v) for v, src in zip(ids, sources, strict=True) if src == "synthetic"}
    return {str(v): v for v in ids}, synthetic


#: below this many dimensions a vector is drawn as bars (a sparkline of 4 values says nothing)
BAR_MAX_DIMS = 16


def bars_svg(v: Any, *, width: int = 56, height: int = 56) -> str:
    """An inline SVG bar chart of a short vector: one bar per value from a zero line
    (up for positive, down for negative), scaled by the largest magnitude."""
    a = np.nan_to_num(np.asarray(v, dtype=np.float64).ravel(), nan=0.0)
    if a.size == 0:
        raise ValueError("v: expected a non-empty vector, got 0 values")
    top = float(np.abs(a).max()) or 1.0
    lo, hi = min(float(a.min()), 0.0), max(float(a.max()), 0.0)
    span = (hi - lo) / top or 1.0
    zero = 2 + (hi / top) / span * (height - 4)
    w = (width - 2) / a.size
    bars = []
    for k, x in enumerate(a):
        h = abs(x) / top / span * (height - 4)
        y = zero - h if x >= 0 else zero
        colour = "#1f77b4" if x >= 0 else "#d62728"
        bars.append(
            f'<rect x="{1 + k * w + 0.1 * w:.1f}" y="{y:.1f}" width="{0.8 * w:.1f}" '
            f'height="{max(h, 0.5):.1f}" fill="{colour}"/>'
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><line x1="0" x2="{width}" y1="{zero:.1f}" '
        f'y2="{zero:.1f}" stroke="#999" stroke-width="0.5"/>{"".join(bars)}</svg>'
    )


def card_preview(x: Any, kind: str) -> dict[str, str]:
    """The card preview of one item: :func:`~gapscope.widgets.item_preview`, except that a
    ``"vector"`` of fewer than ``BAR_MAX_DIMS`` values is a bar chart with the values as its
    tooltip (``{"src": ..., "title": "0.12 -1.3 ..."}``)."""
    if kind == "vector":
        a = np.asarray(x, dtype=np.float64).ravel()
        if 0 < a.size < BAR_MAX_DIMS:
            return {
                "src": svg_data_uri(bars_svg(a)),
                "title": " ".join(f"{v:.3g}" for v in a),
            }
    return item_preview(x, kind)


class Labeler(anywidget.AnyWidget):
    """Label a batch of items with the keyboard or the mouse; every action goes to the store.

    Parameters
    ----------
    store : helpers.store.LabelStore
        Open store whose schema holds the label names (``set_schema``) and that already
        holds every item of the batch (``add_items``).
    item_ids : sequence of str, length n (typically 20-50)
        The batch, in display order.
    content : mapping or callable, optional
        ``content[item_id]`` or ``content(item_id)`` gives the item for its preview:
        an image (h, w) in [0, 1], a 1-D signal, a vector, or text.
    kind : {"image", "signal", "vector", "text"}
        How to preview items (thumbnail, sparkline, sparkline, text).
    model_labels : sequence of length n, optional
        The model's label per item (a label name or an index into the schema's labels).
    confidence : array of shape (n,), optional
        The model's confidence in ``model_labels`` (values in [0, 1]).
    exemplars : sequence of n sequences of item ids, optional
        Nearest labeled exemplars per item (see ``widgets.nearest_exemplars``); up to 3
        are shown, with their current label from the store and their preview.
    exemplar_labels : sequence of n sequences, optional
        Labels of those exemplars (schema labels); default: their current label in the
        store (exemplars from a seed set outside the store need this).
    label_names : sequence of str, optional
        Display names of the schema's labels (e.g. a dataset's ``class_names``). Digit
        keys pick them: the label named by the digit when the labels are ``0``-``9``,
        otherwise ``1``-``9`` the first nine labels in order (:func:`label_keys`; the key is
        shown beside each name in the card's menu).
    annotator : str
        Who is labeling; written with every event.
    round : int
        The loop round written with every event.
    title : str
        Heading shown above the grid.

    Attributes
    ----------
    cursor : int
        Index of the focused item (synced with the browser).
    done, total : int
        Progress: items with a finished action / batch size.
    message : str
        Last error or notice shown in the widget ("" when none).
    locked : str
        When not empty, why the batch takes no decisions now (e.g. the loop is training
        on it): actions other than moving are refused with this message and the cards
        are dimmed. "" (the default) allows every action.

    Notes
    -----
    Keys (while the widget has focus): ``a`` accept, ``x`` reject, space skip, backspace
    undo, ``f`` flag bias, ``o`` out of scope, digits choose a label (see ``label_keys``),
    arrows move.
    Buttons on each card do the same; "Accept all" accepts every open item in one
    transaction after a confirming second click, and one undo reverts all of it.

    ``done`` counts every finished item: labeled, accepted, rejected, out of scope, or
    skipped in this ``round`` (a skip from an earlier round leaves the item open).
    Synthetic items (``source="synthetic"`` in the store) carry ``"synthetic": True`` in
    ``items`` and a badge on their card; their model label is the label they were generated
    as, so they are validated by accept / reject (a different label is refused).
    """

    _esm = (_STATIC / "labeler.js").read_text(encoding="utf-8")
    _css = (_STATIC / "labeler.css").read_text(encoding="utf-8")

    items = traitlets.List(traitlets.Dict()).tag(sync=True)
    previews = traitlets.Dict().tag(sync=True)
    states = traitlets.List(traitlets.Dict()).tag(sync=True)
    label_names = traitlets.List(traitlets.Unicode()).tag(sync=True)
    #: the key that picks each label ("" for labels reached only through the menu)
    label_keys = traitlets.List(traitlets.Unicode()).tag(sync=True)
    #: keys the owner handles (``on_key``), forwarded by the browser like the labeler's own
    extra_keys = traitlets.List(traitlets.Unicode()).tag(sync=True)
    #: what the confidence number is, shown beside it on each card ("agreement", "p", ...)
    confidence_name = traitlets.Unicode("").tag(sync=True)
    tag_names = traitlets.List(traitlets.Unicode()).tag(sync=True)
    cursor = traitlets.Int(0).tag(sync=True)
    done = traitlets.Int(0).tag(sync=True)
    total = traitlets.Int(0).tag(sync=True)
    message = traitlets.Unicode("").tag(sync=True)
    message_kind = traitlets.Unicode("").tag(sync=True)
    locked = traitlets.Unicode("").tag(sync=True)
    #: uid of the last browser message applied: until it catches up, a card the page marked
    #: as decided shows "saving…"
    acked = traitlets.Unicode("").tag(sync=True)
    title = traitlets.Unicode("").tag(sync=True)
    annotator = traitlets.Unicode("annotator").tag(sync=True)
    #: {} or, after a first "Accept all" click, ``{"text", "n", "seconds", "seq"}``: the
    #: button asks for the confirming click for ``seconds``
    accept_all_confirm = traitlets.Dict().tag(sync=True)
    version = traitlets.Unicode(WIDGETS_VERSION).tag(sync=True)

    def __init__(
        self,
        store: Any,
        item_ids: Sequence[Any],
        *,
        content: Mapping[Any, Any] | Callable[[Any], Any] | None = None,
        kind: str = "image",
        model_labels: Sequence[Any] | None = None,
        confidence: Any = None,
        exemplars: Sequence[Sequence[Any]] | None = None,
        exemplar_labels: Sequence[Sequence[Any]] | None = None,
        label_names: Sequence[str] | None = None,
        annotator: str = "annotator",
        round: int = 0,
        title: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if kind not in ITEM_KINDS:
            raise ValueError(f"kind: expected one of {ITEM_KINDS}, got {kind!r}")
        if not isinstance(annotator, str) or not annotator:
            raise ValueError(f"annotator: expected a non-empty str, got {annotator!r}")
        self.store = store
        self.kind = kind
        self.content = content
        self.round = int(round)
        self.annotator = annotator
        self.title = title
        self._session = uuid.uuid4().hex[:12]
        # what undo reverts, newest last: groups of (item_id, event_id) written here (one
        # group per action; an accept-all is one group of all the items it accepted)
        self._undo_stack: list[list[tuple[str, Any]]] = []
        self._armed: tuple[float, tuple[str, ...]] | None = None  # accept all, first click
        # items of the batch this annotator skipped in this round: read from the store with
        # the batch, then kept up to date by this widget's own skips and undos (a skip
        # resolves an item for its round only, and store.status does not know rounds)
        self._skipped: set[str] = set()
        #: seconds a first "Accept all" click waits for the confirming second click
        self.confirm_seconds = 4.0
        self._sid: dict[str, Any] = {}  # str(id) -> id as the store keeps it (int or str)
        self._inbox: dict[str, dict] = {}  # browser view -> next seq and held messages
        self._t_item = time.monotonic()
        # the browser's clock (ms) when the focused item became current, and of the message
        # being applied: ms_on_item is the difference of two browser timestamps, exact
        # whatever the kernel's latency (None until the browser has said when it showed it)
        self._t_since: float | None = None
        self._msg_t: float | None = None
        self._action_callbacks: list[Callable[[dict], Any]] = []
        self._key_callbacks: dict[str, Callable[[], Any]] = {}
        self._labels, tags = _schema(self._call("schema"))
        if not self._labels:
            raise ValueError("store: its schema has no labels; call store.set_schema(labels) first")
        if label_names is None:
            names = [str(v) for v in self._labels]
        else:
            names = [str(v) for v in label_names]
            if len(names) != len(self._labels):
                raise ValueError(
                    f"label_names: expected {len(self._labels)} names (one per schema label "
                    f"{self._labels}), got {len(names)}"
                )
        self.label_names, self.tag_names = names, tags
        self.label_keys = label_keys(names)
        self.on_msg(self._on_frontend_msg)
        self.observe(self._on_cursor, names="cursor")
        self.set_batch(
            item_ids,
            model_labels=model_labels,
            confidence=confidence,
            exemplars=exemplars,
            exemplar_labels=exemplar_labels,
        )

    # ------------------------------------------------------------------ batch
    def set_batch(
        self,
        item_ids: Sequence[Any],
        *,
        model_labels: Sequence[Any] | None = None,
        confidence: Any = None,
        exemplars: Sequence[Sequence[Any]] | None = None,
        exemplar_labels: Sequence[Sequence[Any]] | None = None,
    ) -> None:
        """Show a new batch. On bad input the old batch stays, the widget shows why, and
        ``ValueError`` is raised."""
        try:
            items, previews = self._build_batch(
                item_ids, model_labels, confidence, exemplars, exemplar_labels
            )
            self._pending_items = items
            try:
                new_ids = [it["id"] for it in items]
                undo_stack, skipped = self._batch_history(new_ids)
                states = self._read_states(new_ids, skipped)
            finally:
                del self._pending_items
        except (ValueError, TypeError) as e:
            self._show(str(e), "error")
            raise
        with self.hold_sync():
            self.items, self.previews, self.states = items, previews, states
            self.total = len(items)
            self.done = sum(s["done"] for s in states)
            nxt = [i for i, s in enumerate(states) if not s["done"]]
            self.cursor = nxt[0] if nxt else 0
            self.message, self.message_kind = "", ""
        self._undo_stack, self._skipped = undo_stack, skipped
        self._disarm()
        self._t_since = None

    def _build_batch(
        self,
        item_ids: Any,
        model_labels: Sequence[Any] | None,
        confidence: Any,
        exemplars: Sequence[Sequence[Any]] | None,
        exemplar_labels: Sequence[Sequence[Any]] | None,
    ) -> tuple[list[dict[str, Any]], dict[str, dict]]:
        if isinstance(item_ids, str) or not isinstance(item_ids, Sequence | np.ndarray):
            raise TypeError(
                f"item_ids: expected a sequence of item ids, got {type(item_ids).__name__}"
            )
        ids = [str(i) for i in item_ids]
        n = len(ids)
        if n == 0:
            raise ValueError("item_ids: expected at least one item, got an empty batch")
        if len(set(ids)) != n:
            dup = sorted({i for i in ids if ids.count(i) > 1})
            raise ValueError(f"item_ids: expected unique ids, got duplicates {dup[:5]}")
        known, synthetic = _store_item_ids(self._store_or_raise())
        missing = [i for i in ids if i not in known]
        if missing:
            raise ValueError(
                f"item_ids: {len(missing)} of {n} items are not in the label store "
                f"(first: {missing[:5]}); add them with store.add_items first"
            )
        self._sid.update({i: known[i] for i in ids})
        mlab: list[str | None] = [None] * n
        if model_labels is not None:
            if len(model_labels) != n:
                raise ValueError(
                    f"model_labels: expected {n} entries (one per item), got {len(model_labels)}"
                )
            for j, v in enumerate(model_labels):
                mlab[j] = self._label_name(v, name="model_labels")
        conf: list[float | None] = [None] * n
        if confidence is not None:
            c = np.asarray(confidence, dtype=np.float64).ravel()
            if c.shape != (n,):
                raise ValueError(f"confidence: expected shape ({n},), got {c.shape}")
            if not np.all((c >= 0) & (c <= 1)):
                raise ValueError(
                    f"confidence: expected values in [0, 1], got min {np.nanmin(c):.3g} "
                    f"max {np.nanmax(c):.3g}"
                )
            conf = [float(v) for v in c]
        ex: list[list[str]] = [[] for _ in range(n)]
        if exemplars is not None:
            if len(exemplars) != n:
                raise ValueError(
                    f"exemplars: expected {n} lists (one per item), got {len(exemplars)}"
                )
            ex = [[str(e) for e in list(row)[:3]] for row in exemplars]
        ex_lab: list[list[str | None]] = [[None] * len(row) for row in ex]
        if exemplar_labels is not None:
            if len(exemplar_labels) != n or any(
                len(a) < len(b) for a, b in zip(exemplar_labels, ex, strict=True)
            ):
                raise ValueError("exemplar_labels: expected one label per exemplar of each item")
            ex_lab = [
                [self._label_name(v, name="exemplar_labels") for v in list(row)[: len(ex[j])]]
                for j, row in enumerate(exemplar_labels)
            ]
        elif any(ex):
            cur = self._call("current_labels")
            known_lab = {str(i): v for i, v in zip(cur["item_id"], cur["label"], strict=True)}
            ex_lab = [
                [
                    self._label_name(known_lab[e], name="store label") if e in known_lab else None
                    for e in row
                ]
                for row in ex
            ]
        ex_ids = sorted({e for row in ex for e in row})
        previews: dict[str, dict] = {}
        if self.content is not None:
            for i in list(ids) + ex_ids:
                previews[i] = card_preview(self._content_of(i), self.kind)
        items = [
            {
                "id": ids[j],
                "synthetic": ids[j] in synthetic,
                "model_label": mlab[j],
                "confidence": conf[j],
                "exemplars": [
                    {"id": e, "label": lab} for e, lab in zip(ex[j], ex_lab[j], strict=True)
                ],
            }
            for j in range(n)
        ]
        return items, previews

    def _content_of(self, item_id: str) -> Any:
        c = self.content
        try:
            return c(item_id) if callable(c) else c[item_id]  # type: ignore[index]
        except (KeyError, IndexError) as e:
            raise ValueError(f"content: no item {item_id!r} ({e})") from None

    # ------------------------------------------------------------------ store access
    def _store_or_raise(self) -> Any:
        if self.store is None:
            raise ValueError("store: expected an open LabelStore, got None")
        if getattr(self.store, "closed", False):
            raise ValueError("store: the label store is closed; open it again to label")
        return self.store

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        store = self._store_or_raise()
        try:
            return getattr(store, method)(*args, **kwargs)
        except (ValueError, TypeError, KeyError):
            raise
        except Exception as e:  # closed store / database errors -> one error type
            raise ValueError(f"store.{method}: {type(e).__name__}: {e}") from e

    def _read_states(self, ids: list[str], skipped: set[str] | None = None) -> list[dict]:
        """Per-item state of this annotator, read back from ``store.status`` (``skipped``:
        the items skipped in this round, default ``self._skipped``)."""
        try:
            st = self._call("status", [self._sid[i] for i in ids], annotator=self.annotator)
            recs = st.to_dict("records")
        except KeyError:  # helpers.store (2026-11-23) raises KeyError while no event matches
            recs = []
        rows = {str(r["item_id"]): r for r in recs}
        model = {it["id"]: it["model_label"] for it in getattr(self, "_pending_items", self.items)}
        skipped = self._skipped if skipped is None else skipped
        return [self._normalise_state(rows.get(i), model.get(i), i in skipped) for i in ids]

    def _skipped_now(self, ids: list[str]) -> set[str]:
        """Items this annotator skipped in this round (``self.round``), from the store."""
        return self._batch_history(ids)[1]

    def _normalise_state(
        self, r: Mapping | None, model_label: str | None, skipped_now: bool = False
    ) -> dict:
        if not r:
            return {
                "action": None,
                "label": None,
                "tags": [],
                "bias": False,
                "oos": False,
                "done": False,
            }
        label = None if r.get("label") is None else self._label_name(r["label"], name="store label")
        accepted = r.get("accepted")
        oos = bool(r.get("flag_out_of_scope"))
        last = r.get("last_kind")
        if last == "skip" and not skipped_now:
            last = None  # a skip of an earlier round: open again
        if last in ("accept", "reject", "correct", "label", "skip", "flag_out_of_scope"):
            action = last
        elif skipped_now:
            action = "skip"
        elif oos:
            action = "flag_out_of_scope"
        elif accepted is False:
            action = "reject"
        elif label is not None:
            action = "accept" if label == model_label else ("correct" if model_label else "label")
        elif accepted is True:
            action = "accept"
        else:
            action = None
        done = label is not None or accepted is not None or oos or skipped_now
        tags = r.get("tags") or []
        return {
            "action": action,
            "label": label,
            "tags": sorted(str(t) for t in tags),
            "bias": bool(r.get("flag_bias")),
            "oos": oos,
            "done": bool(done),
        }

    def _batch_history(self, ids: list[str]) -> tuple[list[list[tuple[str, Any]]], set[str]]:
        """From this annotator's effective events on ``ids`` (oldest first): what undo
        undoes, grouped as it was written (an accept-all is one group), also after a kernel
        restart; and the items skipped in this round (``self.round``)."""
        try:
            evs = self._call(
                "events", item_ids=[self._sid[i] for i in ids], annotator=self.annotator
            )
            if not len(evs):
                return [], set()
        except KeyError:  # helpers.store (2026-11-23) raises KeyError while no event matches
            return [], set()
        keep = evs[evs["effective"] & (evs["kind"] != "undo")]
        now = (keep["kind"] == "skip") & (keep["round"] == self.round)
        skipped = {str(i) for i in keep.loc[now, "item_id"]}
        groups: list[list[tuple[str, Any]]] = []
        last_batch = None
        for i, e, cues in zip(keep["item_id"], keep["event_id"], keep["cues"], strict=True):
            batch = cues.get("batch_id") if isinstance(cues, Mapping) else None
            if batch is not None and batch == last_batch:
                groups[-1].append((str(i), int(e)))
            else:
                groups.append([(str(i), int(e))])
            last_batch = batch
        return groups, skipped

    # ------------------------------------------------------------------ messages
    def _show(self, text: str, kind: str = "info") -> None:
        self.message, self.message_kind = text, kind

    def _on_cursor(self, change: dict) -> None:
        self._t_item = time.monotonic()
        self._t_since = self._msg_t

    def on_action(self, callback: Callable[[dict], Any], *, remove: bool = False) -> None:
        """Call ``callback(info)`` after each action was stored; ``info`` has ``action``,
        ``item_ids``, ``event_ids`` and ``label``."""
        if remove:
            self._action_callbacks.remove(callback)
        else:
            self._action_callbacks.append(callback)

    def on_key(self, key: str, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` when ``key`` is pressed in the widget (e.g. ``"r"`` to retrain).

        Raises
        ------
        ValueError
            ``key`` is one of the Labeler's own keys or a digit.
        """
        if not isinstance(key, str) or len(key) != 1 or key in KEYMAP or key.isdigit():
            raise ValueError(f"key: expected one character that is not a Labeler key, got {key!r}")
        self._key_callbacks[key] = callback
        self.extra_keys = sorted(self._key_callbacks)

    def _on_frontend_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        """Messages from the browser: {"type": "key"|"action", "uid": "<view>:<seq>", ...}.

        Custom messages can reach the kernel out of order (seen with fast key presses), so
        each browser view numbers its messages and they are applied in that order.
        """
        if not isinstance(content, Mapping):
            return
        uid = str(content.get("uid") or "")
        view, _, seq = uid.rpartition(":")
        if not view or not seq.isdigit():
            self._apply_msg(content)
            return
        q = self._inbox.setdefault(view, {"next": 1, "held": {}})
        n = int(seq)
        if n < q["next"] or n in q["held"]:
            return  # a duplicate
        q["held"][n] = content
        if len(q["held"]) > 32:  # a message never came: do not stall the labeler
            q["next"] = min(q["held"])
        while q["next"] in q["held"]:
            msg = q["held"].pop(q["next"])
            try:
                self._apply_msg(msg)
            finally:  # the page repaints what it guessed from the state it now has
                self.acked = str(msg.get("uid") or "")
            q["next"] += 1

    def _apply_msg(self, content: Mapping) -> None:
        t = content.get("t")
        t = float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else None
        kind = content.get("type")
        if kind == "shown":  # the browser drew this batch: its first item is current from t
            if self._t_since is None and content.get("first") == (self.items[0]["id"] if self.items else None):
                self._t_since = t
            return
        ms = content.get("ms")
        if t is not None and self._t_since is not None:
            ms = max(0.0, t - self._t_since)
        self._msg_t = t
        try:
            if kind == "key":
                self.press(
                    str(content.get("key", "")),
                    index=content.get("index"),
                    ms=ms,
                    source="key",
                    uid=content.get("uid"),
                )
            elif kind == "action":
                self.act(
                    str(content.get("action", "")),
                    index=content.get("index"),
                    label=content.get("label"),
                    tag=content.get("tag"),
                    ms=ms,
                    source="click",
                    uid=content.get("uid"),
                )
        except ValueError:
            pass  # already shown in the widget by act(); the browser cannot take an exception
        finally:
            self._msg_t = None

    # ------------------------------------------------------------------ public actions
    def press(self, key: str, *, index: int | None = None, **kw: Any) -> list[Any]:
        """Handle a key exactly as the browser does (``"a"``, ``" "``, ``"3"``, ...)."""
        if key in self._key_callbacks:
            self._key_callbacks[key]()
            return []
        if key in KEYMAP:
            return self.act(KEYMAP[key], index=index, **kw)
        if len(key) == 1 and key.isdigit():
            keys = list(self.label_keys)
            if key not in keys:
                names = ", ".join(f"{k} {n}" for k, n in zip(keys, self.label_names, strict=True) if k)
                msg = f"key {key!r}: there is no label for key {key} (keys: {names})"
                self._show(msg, "error")
                raise LabelerError(msg)
            return self.act("relabel", index=index, label=self.label_names[keys.index(key)], **kw)
        msg = f"key {key!r}: not a Labeler key (a, x, space, backspace, f, o, digits, arrows)"
        self._show(msg, "error")
        raise LabelerError(msg)

    def accept(self, index: int | None = None) -> list[Any]:
        """Accept the model's label of item ``index`` (default: the focused item)."""
        return self.act("accept", index=index)

    def reject(self, index: int | None = None) -> list[Any]:
        return self.act("reject", index=index)

    def relabel(self, label: Any, index: int | None = None) -> list[Any]:
        """Give item ``index`` the label ``label`` (a name or a 0-based index into labels)."""
        return self.act("relabel", index=index, label=label)

    def skip(self, index: int | None = None) -> list[Any]:
        return self.act("skip", index=index)

    def undo(self) -> list[Any]:
        """Undo the last action written by this widget on this batch."""
        return self.act("undo")

    def flag_bias(self, index: int | None = None) -> list[Any]:
        return self.act("flag_bias", index=index)

    def flag_out_of_scope(self, index: int | None = None) -> list[Any]:
        return self.act("flag_out_of_scope", index=index)

    def toggle_tag(self, tag: str, index: int | None = None) -> list[Any]:
        return self.act("tag", index=index, tag=tag)

    def accept_all(self) -> list[Any]:
        """Accept every item that has no finished action yet, in one transaction.

        Called from Python it acts at once; from the browser (the "Accept all" button) the
        first click only asks "Confirm accept N?" and a second click within
        ``confirm_seconds`` does it. One undo reverts the whole accept-all.
        """
        return self.act("accept_all")

    def act(
        self,
        action: str,
        *,
        index: int | None = None,
        label: Any = None,
        tag: str | None = None,
        ms: float | None = None,
        source: str = "api",
        uid: str | None = None,
    ) -> list[Any]:
        """Apply one action and write it to the store at once; return the new event ids.

        Raises
        ------
        ValueError
            Unknown action, label or tag, an index outside the batch, or a store that
            refused the write (closed, database error). The widget shows the message and
            nothing is written.
        """
        try:
            return self._act(action, index, label, tag, ms, source, uid)
        except ValueError as e:
            self._show(str(e), "error")
            raise

    def _act(self, action, index, label, tag, ms, source, uid) -> list[Any]:
        if action not in _ACTIONS:
            raise LabelerError(f"action: expected one of {sorted(_ACTIONS)}, got {action!r}")
        n = len(self.items)
        i = self.cursor if index is None else index
        if not isinstance(i, int | np.integer) or isinstance(i, bool) or not 0 <= i < n:
            raise LabelerError(f"index: expected an int in [0, {n}), got {index!r}")
        i = int(i)
        if action != "accept_all":
            self._disarm()  # any other action cancels a pending "Confirm accept N?"
        if action in ("next", "prev", "goto"):
            self.cursor = (
                min(n - 1, i + 1)
                if action == "next"
                else (max(0, i - 1) if action == "prev" else i)
            )
            return []
        if self.locked:
            raise LabelerError(f"{action}: {self.locked}")
        if action == "undo":
            return self._do_undo(source, uid)
        if action == "accept_all":
            return self._do_accept_all(ms, source)
        item = self.items[i]
        state = self.states[i]
        cues = self._cues(item, ms, source)
        kw: dict[str, Any] = {}
        if action == "accept":
            kind = "accept"
            if item["model_label"] is not None:
                kw["label"] = self._store_label(item["model_label"])
        elif action == "reject":
            kind = "reject"
        elif action == "skip":
            kind = "skip"
        elif action == "flag_bias":
            kind = "flag_bias"
        elif action == "flag_out_of_scope":
            kind = "flag_out_of_scope"
        elif action == "relabel":
            name = self._label_name(label, name="label")
            if item.get("synthetic") and name != item["model_label"]:
                raise LabelerError(
                    f"{item['id']}: a synthetic item keeps the label it was generated as "
                    f"({item['model_label']}); accept (a) it if it is one, reject (x) it if not"
                )
            kw["label"] = self._store_label(name)
            if item["model_label"] is None:
                kind = "label"
            elif name == item["model_label"]:
                kind = "accept"
            else:
                kind = "correct"
        else:  # tag: toggle one tag, the event carries the item's full tag set
            if tag not in self.tag_names:
                raise LabelerError(f"tag: expected one of {self.tag_names}, got {tag!r}")
            tags = set(state["tags"])
            tags ^= {tag}
            kind, kw["tags"] = "tag", sorted(tags)
        ev = self._call(
            "record",
            self._sid[item["id"]],
            kind,
            annotator=self.annotator,
            round=self.round,
            cues=cues,
            key=uid,
            **kw,
        )
        self._undo_stack.append([(item["id"], ev)])
        if kind == "skip":
            self._skipped.add(item["id"])
        self._refresh([i])
        if action in _FINISHING:
            nxt = self._next_open(i)
            self.cursor = nxt
        else:  # the time on the item counts again from this action
            self._t_item = time.monotonic()
            if self._msg_t is not None:
                self._t_since = self._msg_t
        shown = self._label_name(kw["label"], name="label") if "label" in kw else None
        self._show(f"{item['id']}: {kind}" + (f" {shown}" if shown is not None else ""))
        self._emit(
            {
                "action": action,
                "kind": kind,
                "item_ids": [item["id"]],
                "event_ids": [ev],
                "label": kw.get("label"),
            }
        )
        return [ev]

    def _do_undo(self, source: str, uid: str | None = None) -> list[Any]:
        if not self._undo_stack:
            raise LabelerError("undo: nothing to undo in this batch")
        group = self._undo_stack[-1]
        where = {it["id"]: j for j, it in enumerate(self.items)}
        idx = [where[item_id] for item_id, _ref in group]
        events = [
            {
                "item_id": self._sid[item_id],
                "kind": "undo",
                "annotator": self.annotator,
                "ref_event": ref,
                "round": self.round,
                "cues": self._cues(self.items[j], None, source, batch=len(group) > 1),
                "key": None if uid is None else (uid if len(group) == 1 else f"{uid}:{k}"),
            }
            for k, ((item_id, ref), j) in enumerate(zip(group, idx, strict=True))
        ]
        ids = list(self._call("record_many", events))
        self._undo_stack.pop()
        item_ids = [item_id for item_id, _ref in group]
        self._skipped = (self._skipped - set(item_ids)) | self._skipped_now(item_ids)
        self._refresh(idx)
        self.cursor = min(idx)
        one = len(group) == 1
        self._show(f"{item_ids[0]}: undone" if one else f"undone: accept of {len(group)} items")
        self._emit(
            {
                "action": "undo",
                "kind": "undo",
                "item_ids": item_ids,
                "event_ids": ids,
                "label": None,
            }
        )
        return ids

    def _disarm(self) -> None:
        self._armed = None
        if self.accept_all_confirm:
            self.accept_all_confirm = {}

    def _do_accept_all(self, ms: float | None, source: str) -> list[Any]:
        open_idx = [j for j, s in enumerate(self.states) if not s["done"]]
        if not open_idx:
            self._show("accept all: every item already has a decision")
            return []
        missing = [self.items[j]["id"] for j in open_idx if self.items[j]["model_label"] is None]
        if missing:
            self._disarm()
            raise LabelerError(
                f"accept all: {len(missing)} open items have no model label to accept "
                f"(first: {missing[:5]}); label them one by one"
            )
        open_ids = tuple(self.items[j]["id"] for j in open_idx)
        if source != "api":  # from the browser: a first click asks, a second one acts
            armed = self._armed
            if armed is None or time.monotonic() > armed[0] or armed[1] != open_ids:
                self._armed = (time.monotonic() + float(self.confirm_seconds), open_ids)
                seq = int(self.accept_all_confirm.get("seq", 0)) + 1
                self.accept_all_confirm = {
                    "text": f"Confirm accept {len(open_ids)}?",
                    "n": len(open_ids),
                    "seconds": float(self.confirm_seconds),
                    "seq": seq,
                }
                self._show(
                    f"accept all: click again within {self.confirm_seconds:g} s to accept the "
                    f"{len(open_ids)} open items"
                )
                return []
        self._disarm()
        batch_id = uuid.uuid4().hex[:12]
        events = [
            {
                "item_id": self._sid[self.items[j]["id"]],
                "kind": "accept",
                "annotator": self.annotator,
                "label": self._store_label(self.items[j]["model_label"]),
                "round": self.round,
                "cues": {
                    **self._cues(self.items[j], ms, source, batch=True),
                    "batch_id": batch_id,
                },
            }
            for j in open_idx
        ]
        ids = list(self._call("record_many", events))
        self._undo_stack.append(
            [(self.items[j]["id"], ev) for j, ev in zip(open_idx, ids, strict=True)]
        )
        self._refresh(open_idx)
        self._show(f"accepted {len(ids)} items")
        self._emit(
            {
                "action": "accept_all",
                "kind": "accept",
                "item_ids": [self.items[j]["id"] for j in open_idx],
                "event_ids": ids,
                "label": None,
            }
        )
        return ids

    # ------------------------------------------------------------------ internals
    def _label_name(self, v: Any, *, name: str) -> str:
        """Display name of ``v``: a display name, a schema label, or (for a schema of
        string labels) a 0-based index into it."""
        names, labels = self.label_names, self._labels
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, str) and v in names:
            return v
        if v in labels and not isinstance(v, bool):
            return names[labels.index(v)]
        if (
            isinstance(v, int)
            and not isinstance(v, bool)
            and all(isinstance(x, str) for x in labels)
            and 0 <= v < len(names)
        ):
            return names[v]
        raise LabelerError(f"{name}: expected one of {names}, got {v!r}")

    def _store_label(self, display_name: str) -> Any:
        return self._labels[self.label_names.index(display_name)]

    def _cues(self, item: dict, ms: float | None, source: str, *, batch: bool = False) -> dict:
        if ms is None:
            ms = (time.monotonic() - self._t_item) * 1000.0
        return {
            "widget": "gapscope.widgets.Labeler",
            "widget_version": WIDGETS_VERSION,
            "session": self._session,
            "input": source,
            "batch_action": batch,
            "model_label_shown": item["model_label"],
            "confidence_shown": item["confidence"],
            "exemplars_shown": [e["id"] for e in item["exemplars"]],
            "ms_on_item": float(ms),
        }

    def _refresh(self, idx: list[int]) -> None:
        fresh = self._read_states([self.items[j]["id"] for j in idx])
        states = list(self.states)
        for j, s in zip(idx, fresh, strict=True):
            states[j] = s
        self.states = states
        self.done = sum(s["done"] for s in states)

    def _next_open(self, i: int) -> int:
        n = len(self.states)
        for j in list(range(i + 1, n)) + list(range(0, i)):
            if not self.states[j]["done"]:
                return j
        return min(i + 1, n - 1)

    def _emit(self, info: dict) -> None:
        for cb in list(self._action_callbacks):
            cb(info)

    @property
    def item_ids(self) -> list[str]:
        """The batch's item ids in display order."""
        return [it["id"] for it in self.items]
