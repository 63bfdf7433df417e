"""Echo's first decision about a message: conversation, or a change request for Delta.

Two ways to decide (config `agent.route`):

  "classifier" (default)  a TF-IDF (word 1-2 grams + character 2-5 grams) logistic regression
                          fitted, deterministically and in ~30 ms, on the labelled messages
                          shipped in agx/agent/routing_data/train.jsonl the first time it is
                          needed. Needs no model, and is right where the tiny embedded model is
                          not (bench/bench_routing.py: held-out accuracy, both ways, same run).
  "model"                 Echo's engine answers a constrained yes/no (a JSON schema with one
                          boolean), so even the tiny model answers in form.

Policy for the borderline cases (what the data is labelled by): a message is a change request
when it asks agx to act on the repository: edit, add, create, delete, rename, refactor, fix,
write tests or code, update dependencies, run commands or tests, commit, revert, whether phrased
as an order, a wish ("I need ...") or a polite question ("can you add ...?"). Everything else is
conversation: greetings, thanks, general knowledge, opinions, explanations, and questions ABOUT
the code that ask for no change ("what does greet() do?", "why is this test failing?", "how do
I add an endpoint?"): Echo answers those; `/plan` sends any message to Delta regardless.

Front ends call `decide` and only show the result."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

ROUTE_METHODS = ("classifier", "model")
ROUTING_DATA = Path(__file__).with_name("routing_data")

ROUTE_SCHEMA = {
    "type": "object",
    "properties": {"change_repo": {"type": "boolean"}},
    "required": ["change_repo"],
    "additionalProperties": False,
}
ROUTE_SYSTEM_PROMPT = (
    "Decide whether the user's message asks to change files in their code repository (edit, add, "
    "fix, refactor, write code, run commands) or is conversation (questions, explanations, chat). "
    'Answer only JSON: {"change_repo": true} or {"change_repo": false}.'
)


@dataclass(frozen=True)
class RouteDecision:
    change_repo: bool
    raw: str = ""
    error: str | None = None  # set when Echo could not decide: the message is then treated as chat


def load_routing_set(name: str = "train") -> list[dict]:
    """The shipped labelled messages: `train` (what the classifier is fitted on) or `heldout`
    (what it is measured on; never fitted on). Rows: {"text": str, "change_repo": bool}."""
    path = ROUTING_DATA / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


_classifier = None
_classifier_lock = threading.Lock()


def fit_classifier(rows: list[dict]):
    """A scikit-learn pipeline fitted on `rows`: word 1-2 gram and character 2-5 gram TF-IDF,
    logistic regression (liblinear: deterministic). Settings chosen by 10-fold cross-validation
    on the training set alone (0.94), not on the held-out set."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    features = make_union(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True),
    )
    model = make_pipeline(features, LogisticRegression(C=10.0, solver="liblinear", max_iter=1000))
    model.fit([r["text"] for r in rows], [bool(r["change_repo"]) for r in rows])
    return model


def routing_classifier():
    """The shipped classifier, fitted on first use (once per process)."""
    global _classifier
    with _classifier_lock:
        if _classifier is None:
            _classifier = fit_classifier(load_routing_set("train"))
        return _classifier


def classify(text: str, model=None) -> RouteDecision:
    """The classifier's decision; `raw` says so, with its probability of a change request."""
    try:
        model = model if model is not None else routing_classifier()
        proba = model.predict_proba([text])[0]
        p = float(proba[list(model.classes_).index(True)])
    except (ImportError, OSError, ValueError) as exc:
        return RouteDecision(False, error=f"routing classifier: {exc}")
    change = p >= 0.5
    return RouteDecision(change, json.dumps({"change_repo": change, "by": "classifier", "p": round(p, 3)}))


def ask_model(engine, text: str) -> RouteDecision:
    """Ask `engine` (Echo's) the constrained yes/no. Blocks; never raises for a model failure
    (the decision then says why and falls back to chat)."""
    from agx.runtime.engine import ChatRequest, EngineError

    try:
        out, _ = engine.complete(ChatRequest(
            messages=[{"role": "system", "content": ROUTE_SYSTEM_PROMPT}, {"role": "user", "content": text}],
            json_schema=ROUTE_SCHEMA, temperature=0.0, max_tokens=16))
        return RouteDecision(bool(json.loads(out).get("change_repo")), out)
    except (EngineError, ValueError, AttributeError) as exc:
        return RouteDecision(False, error=str(exc))


def decide(engine, text: str, method: str = "classifier") -> RouteDecision:
    """Does `text` ask to change the repository? `method` is config `agent.route`: "classifier"
    (no engine needed; `engine` may be None) or "model" (Echo's engine)."""
    if method == "model":
        return ask_model(engine, text)
    if method != "classifier":
        return RouteDecision(False, error=f"unknown routing method {method!r} (one of {', '.join(ROUTE_METHODS)})")
    return classify(text)
