"""The curation loop under hostile conditions (issue 14): a crash between any step's file
writes and its state save, torn or crafted checkpoints, a damaged state.json or round folder,
and runs that share one label database."""

from __future__ import annotations

import gc
import json
import os
import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from gapscope.helpers.loop import BOOTSTRAP_STEPS, STEPS, CurationLoop, LoopConfig

SMALL = {
    "data": "mixture",
    "data_options": {"n_pool": 300, "n_val": 80, "n_test": 200, "separation": 1.5},
    "budget": 8,
    "rounds": 1,
    "n_initial": 12,
    "n_members": 2,
    "n_clusters": 4,
    "model_options": {"epochs": 8, "hidden": [32], "patience": None},
}
#: a bandit (allocate and feedback hooks, strategy state) plus synthesis (generator.pt,
#: synthetic.npz, synthetic store items): every step of a round writes something
SYNTH = {
    **SMALL,
    "strategy": "cluster_bandit",
    "synthesis": "active",
    "synthesis_options": {"n": 10, "generator": {"epochs": 5}},
}


class SimulatedCrash(RuntimeError):
    """Raised from CurationLoop._save_state: the process 'died' before the state was saved."""


def crash_once_after(monkeypatch, rnd: int, step: str) -> dict:
    """Make the state save right after ``step`` of round ``rnd`` raise, once."""
    real = CurationLoop._save_state
    fired: dict = {}

    def save(self):
        log = self.state["step_log"]
        if not fired and log and (log[-1]["round"], log[-1]["step"]) == (rnd, step):
            fired["at"] = (rnd, step)
            raise SimulatedCrash(f"killed after {step} of round {rnd}, before state.json")
        real(self)

    monkeypatch.setattr(CurationLoop, "_save_state", save)
    return fired


def outcome(loop: CurationLoop) -> dict:
    """Everything a run produced, wall times left out."""
    items = loop.store.items()
    events = loop.store.events()
    return {
        "metrics": [
            {k: v for k, v in m.items() if k != "wall_time"} for m in loop.state["metrics"]
        ],
        "labeled_ids": loop.labeled_ids,
        "labeled_y": loop.labeled_y,
        "synthetic_ids": loop.synthetic_ids,
        "history": loop.history,
        "strategy_state": loop.state["strategy_state"],
        "synthetic_next": loop.state["synthetic_next"],
        "items": items["source"].value_counts().sort_index().to_dict(),
        "synthetic_item_ids": sorted(
            items.loc[items["source"] == "synthetic", "item_id"].astype(int)
        ),
        "events": len(events),
        "done": loop.done,
        "stop_reason": loop.stop_reason,
    }


def _fresh(run_dir: Path, **kw) -> CurationLoop:
    gc.collect()  # the crashed loop's store connections go away, as in a dead process
    return CurationLoop(run_dir, **kw)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """The uninterrupted run every interrupted one must equal."""
    loop = CurationLoop(tmp_path_factory.mktemp("ref") / "run", LoopConfig(**SYNTH)).run()
    out = outcome(loop)
    assert out["items"].get("synthetic") == 10 and out["strategy_state"]
    return out


# ------------------------------------------------------------------ items 3 and 9
CRASH_POINTS = [(-1, s) for s in BOOTSTRAP_STEPS] + [(0, s) for s in STEPS]


@pytest.mark.parametrize("rnd,step", CRASH_POINTS, ids=[f"r{r}-{s}" for r, s in CRASH_POINTS])
def test_a_crash_after_any_step_before_its_state_save_resumes_to_the_same_run(
    tmp_path, monkeypatch, reference, rnd, step
):
    run_dir = tmp_path / "run"
    fired = crash_once_after(monkeypatch, rnd, step)
    with pytest.raises(SimulatedCrash):
        CurationLoop(run_dir, LoopConfig(**SYNTH)).run()
    assert fired["at"] == (rnd, step)
    resumed = _fresh(run_dir).run()
    assert outcome(resumed) == reference


def test_synthesis_repeated_after_a_crash_mints_the_same_ids(tmp_path, monkeypatch, reference):
    """Issue 14 item 3: killed after synthetic.npz was written, before state.json was saved."""
    run_dir = tmp_path / "run"
    crash_once_after(monkeypatch, 0, "synthesize")
    with pytest.raises(SimulatedCrash):
        CurationLoop(run_dir, LoopConfig(**SYNTH)).run()
    first = np.load(run_dir / "synthetic.npz")["ids"].tolist()
    assert len(first) == 10
    resumed = _fresh(run_dir).run()
    again = np.load(run_dir / "synthetic.npz")["ids"].tolist()
    assert again == first  # the same ids, not 10 further on
    got = outcome(resumed)
    assert got["items"]["synthetic"] == 10
    assert got["synthetic_item_ids"] == reference["synthetic_item_ids"] == first
    assert got == reference


# ------------------------------------------------------------------ item 4: torn checkpoints
def _tear(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


class _Payload:
    """A pickle that, unpickled, writes a marker file (a stand-in for any code)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def _craft(path: Path, marker: Path, *, torch_zip: bool = True) -> None:
    """Overwrite ``path`` with a crafted pickle (inside a torch zip archive, or bare)."""
    if torch_zip:
        import torch

        torch.save({"weights": _Payload(marker)}, str(path))
    else:
        path.write_bytes(pickle.dumps(_Payload(marker)))


@pytest.mark.parametrize("damage", ["torn", "crafted"])
@pytest.mark.parametrize("name", ["generator.pt", "round_001/model.pt"])
def test_a_torn_or_crafted_checkpoint_is_recomputed_with_a_warning(
    tmp_path, monkeypatch, reference, name, damage
):
    run_dir = tmp_path / "run"
    crash_once_after(monkeypatch, 0, "synthesize")  # generator.pt and model.pt both exist
    with pytest.raises(SimulatedCrash):
        CurationLoop(run_dir, LoopConfig(**SYNTH)).run()
    marker = tmp_path / "marker"
    if damage == "torn":
        _tear(run_dir / name)
    else:
        _craft(run_dir / name, marker)
    with pytest.warns(UserWarning, match=Path(name).name) as rec:
        resumed = _fresh(run_dir).run()
    assert any("refit" in str(w.message) or "recomput" in str(w.message) for w in rec)
    assert not marker.exists(), "the crafted checkpoint ran code"
    assert outcome(resumed) == reference


def test_a_deleted_round_folder_is_recomputed(tmp_path, monkeypatch, reference):
    run_dir = tmp_path / "run"
    crash_once_after(monkeypatch, 0, "label")
    with pytest.raises(SimulatedCrash):
        CurationLoop(run_dir, LoopConfig(**SYNTH)).run()
    shutil.rmtree(run_dir / "round_001")  # model.pt, embed.npz, scores, clusters
    with pytest.warns(UserWarning, match=r"round_001/model\.pt' is missing; refitting"):
        resumed = _fresh(run_dir).run()
    assert outcome(resumed) == reference


def test_a_truncated_state_json_names_the_file_and_the_way_back(tmp_path, reference):
    run_dir = tmp_path / "run"
    CurationLoop(run_dir, LoopConfig(**SYNTH)).run(max_steps=7)
    state = run_dir / "state.json"
    _tear(state)
    gc.collect()
    with pytest.raises(ValueError) as exc:
        CurationLoop(run_dir)
    msg = str(exc.value)
    assert str(state) in msg and "state.prev.json" in msg, msg
    # following the message: the previous state, one step back, resumes to the same run
    shutil.copyfile(run_dir / "state.prev.json", state)
    assert outcome(_fresh(run_dir).run()) == reference


# ------------------------------------------------------------------ item 12: no unpickling
def test_vae_checkpoints_load_weights_only_and_refuse_a_crafted_pickle(tmp_path):
    from gapscope.helpers.generators import VAE, ConditionalVAE

    rng = np.random.default_rng(0)
    X = rng.random((60, 6)).astype(np.float32)
    y = np.arange(60) % 3
    vae = ConditionalVAE(latent_dim=2, hidden=(8,), epochs=2, n_classes=3, random_state=0)
    vae.fit(X, None, X_labeled=X[:12], y_labeled=y[:12])
    path = tmp_path / "generator.pt"
    vae.save(path)
    import torch

    blob = torch.load(str(path), weights_only=True)  # tensors, strings and numbers only
    assert set(blob) >= {"meta", "weights", "arrays"}
    back = ConditionalVAE.load(path, device="cpu")
    np.testing.assert_array_equal(back.encode(X), vae.encode(X))
    assert back.hidden == (8,) and back.input_shape_ == (6,)
    assert back.history_ == vae.history_
    marker = tmp_path / "marker"
    for torch_zip in (True, False):
        _craft(path, marker, torch_zip=torch_zip)
        with pytest.raises(ValueError, match=r"generator\.pt.*(weights-only|weights_only)"):
            ConditionalVAE.load(path)
        assert not marker.exists(), "loading a crafted generator.pt ran its payload"
    _tear_me = tmp_path / "torn.pt"
    vae.save(_tear_me)
    _tear(_tear_me)
    with pytest.raises(ValueError, match=r"torn\.pt"):
        VAE.load(_tear_me)


def test_a_vae_save_killed_midway_leaves_the_old_checkpoint(tmp_path, monkeypatch):
    """generator.pt is written atomically: a save that dies halfway changes nothing."""
    import torch

    from gapscope.helpers.generators import VAE

    X = np.random.default_rng(1).random((40, 5)).astype(np.float32)
    vae = VAE(latent_dim=2, hidden=(8,), epochs=1, random_state=0).fit(X)
    path = tmp_path / "generator.pt"
    vae.save(path)
    before = path.read_bytes()
    real_save = torch.save

    def dying_save(obj, f, *a, **k):
        real_save(obj, f, *a, **k)
        if hasattr(f, "truncate"):
            f.truncate(len(before) // 3)  # a third of a file, then the "kill"
        else:
            os.truncate(f, len(before) // 3)
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        vae.save(path)
    monkeypatch.setattr(torch, "save", real_save)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["generator.pt"], "a temporary file was left"
    np.testing.assert_array_equal(VAE.load(path, device="cpu").encode(X), vae.encode(X))


class PlainCentroids:
    """A user model with fit/predict_proba and no save/load (the loop must not pickle it)."""

    def __init__(self, n_classes: int = 2):
        self.n_classes = n_classes

    def fit(self, X, y, random_state=None):
        X = np.asarray(X, np.float64).reshape(len(X), -1)
        self.centers_ = np.stack(
            [
                X[y == c].mean(0) if (y == c).any() else np.zeros(X.shape[1])
                for c in range(self.n_classes)
            ]
        )
        return self

    def predict_proba(self, X):
        X = np.asarray(X, np.float64).reshape(len(X), -1)
        d = ((X[:, None, :] - self.centers_[None]) ** 2).sum(-1)
        p = np.exp(-(d - d.min(1, keepdims=True)))
        return (p / p.sum(1, keepdims=True))[None].astype(np.float32)


@pytest.mark.parametrize("kind", ["plain", "sklearn"])
def test_a_resumed_loop_refits_rather_than_unpickles_a_model(tmp_path, kind):
    cfg = {**SMALL, "strategy": "entropy"}
    kw: dict = {}
    if kind == "plain":
        kw["model"] = PlainCentroids(n_classes=4)
        cfg.pop("model_options")
    else:
        cfg["model"] = {
            "name": "sklearn",
            "options": {"estimator": "sklearn.linear_model:LogisticRegression"},
        }
        cfg.pop("model_options")
    full = outcome(CurationLoop(tmp_path / "full", LoopConfig(**cfg), **kw).run())
    run_dir = tmp_path / "run"
    CurationLoop(run_dir, LoopConfig(**cfg), **kw).run(max_steps=5)  # round 0: train, evaluate
    marker = tmp_path / "marker"
    rdir = run_dir / "round_001"
    if kind == "plain":
        assert not (rdir / "model.pkl").exists(), "a model without save() is not pickled"
        rdir.mkdir(exist_ok=True)
        _craft(rdir / "model.pkl", marker, torch_zip=False)  # an old run folder, or an attacker
    else:
        assert (rdir / "model.pt").exists()
        _craft(rdir / "model.pt", marker, torch_zip=False)
    gc.collect()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # refitting a pickle-checkpointed model is the rule, silent
        resumed = CurationLoop(run_dir, **kw).run()
    assert not marker.exists(), "the resumed loop unpickled a model checkpoint"
    assert outcome(resumed) == full


def test_trust_checkpoints_loads_a_pickled_model_checkpoint(tmp_path):
    cfg = LoopConfig(
        **{k: v for k, v in SMALL.items() if k != "model_options"},
        strategy="entropy",
        model={
            "name": "sklearn",
            "options": {"estimator": "sklearn.linear_model:LogisticRegression"},
        },
    )
    run_dir = tmp_path / "run"
    CurationLoop(run_dir, cfg).run(max_steps=5)
    gc.collect()
    loop = CurationLoop(run_dir, trust_checkpoints=True)
    fits = []
    real_fit = loop.fit_model
    loop.fit_model = lambda *a, **k: fits.append(1) or real_fit(*a, **k)  # type: ignore[method-assign]
    loop.model()
    assert fits == [], "with trust_checkpoints=True the saved model is loaded, not refitted"
    loop2 = CurationLoop(run_dir)
    loop2.fit_model = lambda *a, **k: fits.append(1) or real_fit(*a, **k)  # type: ignore[method-assign]
    loop2.model()
    assert fits == [1]


# ------------------------------------------------------------------ item 6: shared store
def test_runs_sharing_one_database_do_not_mix(tmp_path, monkeypatch):
    monkeypatch.setenv("GAPSCOPE_STORE_URL", f"sqlite:///{tmp_path / 'shared.sqlite'}")
    cfg = {**SMALL, "strategy": "entropy"}
    a = CurationLoop(tmp_path / "a", LoopConfig(**cfg, seed=1)).run()
    b = CurationLoop(tmp_path / "b", LoopConfig(**cfg, seed=2)).run()
    pa, pb = a.state["store_project"], b.state["store_project"]
    assert pa != pb and a.store.project == pa and b.store.project == pb
    # b started from its own bootstrap batch, not from a's labels
    assert b.results()["labels"].tolist() == [12, 20]
    for loop in (a, b):
        ev = loop.store.events()
        assert sorted(ev["item_id"].astype(int)) == sorted(loop.labeled_ids)
    gc.collect()
    again = CurationLoop(tmp_path / "b")
    assert again.store.project == pb and len(again.store.events()) == 20
    assert json.loads((tmp_path / "b" / "state.json").read_text())["store_project"] == pb
