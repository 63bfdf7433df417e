"""`agx eval plans` with the real bundled model: per-sample results, table, clear errors."""

from __future__ import annotations

import json

from agx.cli.main import main
from agx.training import data_delta
from agx.training.records import write_jsonl


def _dataset(tmp_path):
    records = data_delta.generate_synthetic(3, seed=1)
    path = tmp_path / "plans.jsonl"
    write_jsonl(path, records)
    return path


def test_eval_plans_writes_results_and_prints_table(tmp_path, capsys):
    ds = _dataset(tmp_path)
    out = tmp_path / "res.jsonl"
    code = main(["-C", str(tmp_path), "--set", "roles.delta.n_threads=2", "--set", "roles.delta.n_ctx=2048",
                 "eval", "plans", str(ds), "--limit", "1", "--max-tokens", "48", "--out", str(out), "--quiet"])
    assert code == 0
    rows = [json.loads(line) for line in out.open()]
    assert len(rows) == 1
    r = rows[0]
    assert r["gold_nodes"] and r["completion_tokens"] > 0
    if not r["parseable"]:  # 48 tokens rarely finish a plan: scored as an empty prediction, not skipped
        assert r["node_f1"] == 0.0 and r["pred_nodes"] == []
    summary = json.loads(out.with_suffix(".summary.json").read_text())
    assert summary["samples"] == 1
    # Delta's default on the bundled model: the shipped adapter, at the scale its manifest gives.
    assert summary["adapter"] == "agenix-delta-smollm2" and summary["adapter_scale"] == 1.15
    assert summary["label"].endswith("+ agenix-delta-smollm2 @ 1.15")
    text = capsys.readouterr().out
    assert "nodeF1" in text and "per-sample results" in text


def test_eval_plans_bad_inputs(tmp_path, capsys):
    assert main(["-C", str(tmp_path), "eval", "plans", str(tmp_path / "missing.jsonl")]) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": []}\n')
    assert main(["-C", str(tmp_path), "eval", "plans", str(bad)]) == 2
    ds = _dataset(tmp_path)
    assert main(["-C", str(tmp_path), "eval", "plans", str(ds), "--adapter", "no-such-adapter"]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("agx:")]
    assert len(err) == 3 and "file not found" in err[0] and "not a plan record" in err[1] and "no-such-adapter" in err[2]


def test_planner_decoding_is_what_agx_plan_decodes_with(tmp_path):
    """`--decoding planner` (the default) sends the planner's own grammar, count_steps included;
    `--decoding schema` the plan's JSON schema. The engine is the real bundled model; the wrapper
    only records the requests it is sent."""
    import pytest

    from agx.config import load_config
    from agx.execution.builtin_tools import builtin_catalogue
    from agx.planning.planner import Planner
    from agx.planning.schema_grammar import plan_gbnf, plan_json_schema
    from agx.runtime.pool import EnginePool
    from agx.training.eval_plans import EvalOptions, evaluate_record

    class Recording:
        def __init__(self, engine):
            self._engine, self.requests = engine, []

        def __getattr__(self, name):
            return getattr(self._engine, name)

        def chat(self, request, cancel=None):
            self.requests.append(request)
            return self._engine.chat(request, cancel)

    pool = EnginePool(load_config(tmp_path, use_user_file=False).config, tmp_path)
    try:
        delta = Recording(pool.engine("delta"))
        record, catalogue = data_delta.generate_synthetic(1, seed=1)[0], builtin_catalogue()
        for options in (EvalOptions(max_tokens=8), EvalOptions(max_tokens=8, decoding="schema"),
                        EvalOptions(max_tokens=8, count_steps=True)):
            evaluate_record(record, delta, catalogue, options)
        planner_request, schema_request, steps_request = delta.requests
        # the shipped adapter's manifest has no goal_style: count_steps is off
        assert planner_request.grammar == Planner(delta, catalogue).grammar == plan_gbnf(catalogue)
        assert planner_request.json_schema is None
        assert schema_request.grammar is None and schema_request.json_schema == plan_json_schema(catalogue)
        assert steps_request.grammar == plan_gbnf(catalogue, count_steps=True) != planner_request.grammar
        with pytest.raises(ValueError, match="unknown decoding"):
            evaluate_record(record, delta, catalogue, EvalOptions(decoding="fast"))
    finally:
        pool.close()
