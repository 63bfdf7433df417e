"""Delta's dataset: the synthetic generator, `agx data delta`, and distillation from a real teacher."""

from __future__ import annotations

import json
from pathlib import Path

from agx.cli.main import main
from agx.execution.builtin_tools import builtin_catalogue
from agx.planning.prompt import build_plan_messages
from agx.planning.validate import validate_plan
from agx.training import data_delta

TASKBENCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "taskbench" / "multimedia"


def test_generator_is_deterministic_valid_and_varied():
    contexts = data_delta.project_contexts()
    a = data_delta.generate_synthetic(60, seed=3, contexts=contexts)
    b = data_delta.generate_synthetic(60, seed=3, contexts=contexts)
    assert a == b
    assert a != data_delta.generate_synthetic(60, seed=4, contexts=contexts)
    cat = builtin_catalogue()
    tools_used = set()
    widths = set()
    for r in a:
        report = validate_plan(r["plan"], cat)
        assert report.ok, (r["request"], report.errors)
        tools_used |= {t["tool"] for t in r["plan"]["tasks"]}
        widths.add(report.width)
    assert tools_used == set(cat.names())  # every builtin tool appears in some gold plan
    assert 2 in widths  # some plans have parallel branches, not only chains


def test_prompt_is_delta_inference_prompt_with_real_repo_context():
    with data_delta.project_repos(data_delta.PROJECTS[:1]) as repos:
        repo = repos["invoicer"]
        context = data_delta.repo_context(repo)
    assert "src/invoicer/" in context and "Git status: clean" in context
    rec = data_delta.generate_synthetic(1, seed=0, contexts={p.name: context for p in data_delta.PROJECTS})[0]
    assert rec["messages"][:2] == build_plan_messages(rec["request"], builtin_catalogue(), context)
    assert json.loads(rec["messages"][2]["content"]) == rec["plan"]


def test_cli_builds_split_files_with_manifest(tmp_path, capsys):
    args = ["-C", str(tmp_path), "data", "delta", "-o", "out", "--count", "80", "--validation-fraction", "0.2"]
    if TASKBENCH.is_dir():
        args += ["--taskbench", str(TASKBENCH)]
    assert main(args) == 0
    out = tmp_path / "out"
    manifest = json.loads((out / "delta-dataset.json").read_text())
    train = [json.loads(line) for line in (out / "delta-train.jsonl").open()]
    val = [json.loads(line) for line in (out / "delta-validation.jsonl").open()]
    assert len(train) == manifest["files"]["train"]["records"] and val
    keys = [json.dumps(r["messages"]) for r in train + val]
    assert len(keys) == len(set(keys))  # deduplicated
    assert {r["id"] for r in train}.isdisjoint({r["id"] for r in val})
    assert len(manifest["files"]["train"]["sha256"]) == 64
    if TASKBENCH.is_dir():
        held = [json.loads(line) for line in (out / "taskbench-multimedia-validation.jsonl").open()]
        assert len(held) == 128
        assert any(r["source"] == "taskbench-multimedia" for r in train)
    assert "train" in capsys.readouterr().out


def test_cli_bad_input_is_one_line_error(tmp_path, capsys):
    assert main(["-C", str(tmp_path), "data", "delta", "--validation-fraction", "1.5"]) == 2
    assert main(["-C", str(tmp_path), "data", "delta", "--count", "5", "--taskbench", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("agx: ") and "not a folder" in err[-1]


def test_distillation_keeps_only_valid_teacher_plans(pool):
    """The bundled model as the teacher: whatever it writes, only validated plans are kept."""
    requests = [("invoicer", "Explain what src/invoicer/tax.py does."), ("tinygrep", "Run the tests.")]
    with data_delta.project_repos() as repos:
        report = data_delta.distill(pool.engine("delta"), requests, repos, repair_rounds=0, max_tokens=200)
    assert report.attempted == 2
    assert len(report.records) + report.rejected == 2
    for r in report.records:
        assert validate_plan(r["plan"], builtin_catalogue()).ok
        assert r["source"] == "agx-distilled"
