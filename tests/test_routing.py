"""Echo's chat-or-change routing (agx/agent/route.py): the shipped classifier on the shipped
held-out messages, the issue's two examples, the data's independence, and the switch back to the
model (real bundled model, one message)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from agx.agent import route
from agx.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def _norm(text: str) -> str:
    return " ".join("".join(c for c in text.lower() if c.isalnum() or c.isspace()).split())


def test_classifier_is_accurate_on_the_held_out_messages():
    rows = route.load_routing_set("heldout")
    clf = route.routing_classifier()
    decisions = [route.classify(r["text"], clf) for r in rows]
    assert all(d.error is None for d in decisions)
    right = [d.change_repo == r["change_repo"] for r, d in zip(rows, decisions)]
    accuracy = sum(right) / len(rows)
    wrong = [r["text"] for r, ok in zip(rows, right) if not ok]
    assert accuracy >= 0.95, (accuracy, wrong)
    for label in (True, False):  # neither kind may be sacrificed for the other
        of_kind = [ok for r, ok in zip(rows, right) if r["change_repo"] is label]
        assert sum(of_kind) / len(of_kind) >= 0.9, (label, wrong)


def test_the_issues_examples_are_routed_right():
    d = route.decide(None, "add a farewell function to src/greet.py")
    assert d.change_repo is True and d.error is None
    raw = json.loads(d.raw)
    assert raw["by"] == "classifier" and raw["change_repo"] is True and raw["p"] >= 0.5
    d = route.decide(None, "What is the capital of France?")
    assert d.change_repo is False and d.error is None
    assert json.loads(d.raw)["p"] < 0.5


def test_training_and_held_out_sets_are_independent():
    train, heldout = route.load_routing_set("train"), route.load_routing_set("heldout")
    assert len(heldout) >= 120 and len(train) >= 200
    for rows in (train, heldout):
        n_change = sum(r["change_repo"] for r in rows)
        assert 0.4 <= n_change / len(rows) <= 0.6  # roughly balanced
        assert all(isinstance(r["change_repo"], bool) and r["text"].strip() for r in rows)
    train_norm = {_norm(r["text"]) for r in train}
    assert not [r["text"] for r in heldout if _norm(r["text"]) in train_norm]
    assert len({_norm(r["text"]) for r in heldout}) == len(heldout)
    # No near-duplicates either: character 3-5 gram TF-IDF cosine below 0.8 for every pair.
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics.pairwise import cosine_similarity

    vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5)).fit([r["text"] for r in train + heldout])
    sim = cosine_similarity(vec.transform([r["text"] for r in heldout]), vec.transform([r["text"] for r in train]))
    worst = sim.max(axis=1)
    close = [(heldout[i]["text"], train[int(sim[i].argmax())]["text"], round(float(worst[i]), 3))
             for i in range(len(heldout)) if worst[i] >= 0.8]
    assert not close, close


def test_fitting_is_deterministic():
    rows = route.load_routing_set("train")
    texts = [r["text"] for r in route.load_routing_set("heldout")]
    a, b = route.fit_classifier(rows), route.fit_classifier(rows)
    assert (a.predict_proba(texts) == b.predict_proba(texts)).all()


def test_routing_data_ships_with_the_package():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["agx"]
    pkg = ROOT / "agx"
    for name in ("train.jsonl", "heldout.jsonl"):
        path = route.ROUTING_DATA / name
        assert path.is_file()
        assert any(path in set(pkg.glob(g)) for g in globs), f"{name} is not in pyproject's package-data"
    assert any(dep.startswith("scikit-learn") for dep in pyproject["project"]["dependencies"])


def test_unknown_method_and_missing_engine_fall_back_to_chat_with_a_reason():
    d = route.decide(None, "delete everything", "coin-toss")
    assert d.change_repo is False and "coin-toss" in d.error
    d = route.decide(None, "delete the build folder", "model")  # the model way needs Echo's engine
    assert d.change_repo is False and d.error


def test_config_switch_to_model_asks_echos_engine(tmp_path):
    from agx.runtime.pool import EnginePool

    assert load_config(tmp_path, use_user_file=False).config.agent.route == "classifier"
    cfg = load_config(tmp_path, overrides=["roles.echo.n_ctx=2048", "roles.echo.n_threads=2", "agent.route=model"],
                      use_user_file=False).config
    assert cfg.agent.route == "model"
    pool = EnginePool(cfg, tmp_path)
    try:
        engine = pool.engine("echo")
        engine.wait_loaded()
        d = route.decide(engine, "What is the capital of France?", cfg.agent.route)
    finally:
        pool.close()
    assert d.error is None, d.error
    raw = json.loads(d.raw)  # the model's own constrained answer, not the classifier's record
    assert set(raw) == {"change_repo"} and raw["change_repo"] == d.change_repo
