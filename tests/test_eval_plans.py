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
