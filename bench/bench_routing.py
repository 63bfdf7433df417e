"""Echo's chat-or-change decision on the shipped held-out messages: the model vs the classifier (issue #15).

    python bench/bench_routing.py [--threads 2] [--model bundled:smollm2] [--limit N] [--show-errors]

Both ways, same run, same messages (agx/agent/routing_data/heldout.jsonl, never fitted on):

  model       agx.agent.route.ask_model: Echo's engine (EnginePool, role echo) answers the
              constrained yes/no JSON, greedy — what routing did before (config agent.route = "model");
  classifier  agx.agent.route.classify: TF-IDF + logistic regression fitted on train.jsonl
              (agent.route = "classifier", the default).

Prints accuracy, recall per class (change requests, conversation), ms per message (median and
mean), and the classifier's one-off cost (import + fit). Run under the CPU lock on a shared machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def score(name: str, rows: list[dict], decisions: list, times: list[float], show_errors: bool) -> dict:
    change = [(r, d) for r, d in zip(rows, decisions) if r["change_repo"]]
    chat = [(r, d) for r, d in zip(rows, decisions) if not r["change_repo"]]
    right = sum(d.change_repo == r["change_repo"] for r, d in zip(rows, decisions))
    res = {
        "accuracy": right / len(rows),
        "change_recall": sum(d.change_repo for _, d in change) / max(1, len(change)),
        "chat_recall": sum(not d.change_repo for _, d in chat) / max(1, len(chat)),
        "errors": sum(d.error is not None for d in decisions),
        "ms_median": statistics.median(times) * 1000,
        "ms_mean": statistics.fmean(times) * 1000,
    }
    print(f"{name:<11} accuracy {res['accuracy']:.3f} ({right}/{len(rows)})  change recall "
          f"{res['change_recall']:.3f} ({len(change)})  conversation recall {res['chat_recall']:.3f} ({len(chat)})  "
          f"{res['ms_median']:.1f} ms/message median, {res['ms_mean']:.1f} mean  failed decisions {res['errors']}")
    if show_errors:
        for r, d in zip(rows, decisions):
            if d.change_repo != r["change_repo"]:
                print(f"    wrong: {r['text']!r} -> {'change' if d.change_repo else 'chat'}  {d.raw or d.error}")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default="bundled:smollm2", help="Echo's model for the model-based decision")
    ap.add_argument("--limit", type=int, default=0, help="first N held-out messages only (0 = all)")
    ap.add_argument("--show-errors", action="store_true")
    args = ap.parse_args()

    from agx.agent import route
    from agx.config import load_config
    from agx.runtime.pool import EnginePool

    rows = route.load_routing_set("heldout")
    if args.limit:
        rows = rows[:args.limit]
    n_change = sum(r["change_repo"] for r in rows)
    print(f"held-out: {len(rows)} messages ({n_change} change requests, {len(rows) - n_change} conversation); "
          f"training set: {len(route.load_routing_set('train'))}")

    t0 = time.perf_counter()
    clf = route.routing_classifier()
    setup = time.perf_counter() - t0
    c_dec, c_times = [], []
    for r in rows:
        t = time.perf_counter()
        c_dec.append(route.classify(r["text"], clf))
        c_times.append(time.perf_counter() - t)

    tmp = Path(tempfile.mkdtemp(prefix="agx-bench-routing-"))
    cfg = load_config(tmp, overrides=[f"roles.echo.model={args.model}", "roles.echo.n_ctx=2048",
                                      f"roles.echo.n_threads={args.threads}"], use_user_file=False).config
    pool = EnginePool(cfg, tmp)
    try:
        engine = pool.engine("echo")
        engine.wait_loaded()
        m_dec, m_times = [], []
        for r in rows:
            t = time.perf_counter()
            m_dec.append(route.ask_model(engine, r["text"]))
            m_times.append(time.perf_counter() - t)
    finally:
        pool.close()

    print(f"model: {args.model}, {args.threads} threads")
    m = score("model", rows, m_dec, m_times, args.show_errors)
    c = score("classifier", rows, c_dec, c_times, args.show_errors)
    # Would the model help as a tie-breaker? Where the classifier is unsure (p within 0.15 of
    # 0.5), take the model's answer instead; same decisions as above, no new inference.
    import json

    unsure = [abs(json.loads(d.raw)["p"] - 0.5) < 0.15 if d.raw else True for d in c_dec]
    hybrid = [md if u else cd for cd, md, u in zip(c_dec, m_dec, unsure)]
    h_right = sum(d.change_repo == r["change_repo"] for r, d in zip(rows, hybrid))
    print(f"tie-breaker (model where the classifier's p is within 0.15 of 0.5: {sum(unsure)} messages): "
          f"accuracy {h_right / len(rows):.3f} ({h_right}/{len(rows)})")
    print(f"classifier one-off cost (scikit-learn import + fit on the training set): {setup * 1000:.0f} ms")
    print(f"accuracy: classifier {c['accuracy']:.3f} vs model {m['accuracy']:.3f}; "
          f"per message {c['ms_median']:.1f} vs {m['ms_median']:.1f} ms (median)")


if __name__ == "__main__":
    main()
