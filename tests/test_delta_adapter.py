"""The shipped Delta adapter (adapters/agenix-delta-smollm2/) on the real bundled model.

It is what a fresh install plans with: roles.delta.adapter = "auto" loads it for the bundled
model, and roles.delta.prompt_style = "auto" gives it the compact prompt it was trained on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agx.config import load_config
from agx.runtime.adapters import (adapter_prompt_style, adapter_scale_for, adapters_dir, check_adapter_against_base,
                                  file_sha256, read_manifest, role_adapter, shipped_adapter_for, switch_role_adapter,
                                  write_manifest)
from agx.runtime.bundled import bundled_model_path
from agx.runtime.gguf_info import read_gguf_info
from agx.runtime.pool import EnginePool

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "adapters" / "agenix-delta-smollm2"

GREET = '''def greet(name):
    """Say hello."""
    return f"Hello, {name}!"


def shout(text):
    return text.upper() + "!"
'''
GREET_TEST = '''from greet import greet, shout


def test_greet():
    assert greet("Ada") == "Hello, Ada!"


def test_shout():
    assert shout("hi") == "HI!"
'''


def _config(tmp_path):
    return load_config(tmp_path, use_user_file=False).config


def test_the_adapter_is_shipped_with_a_manifest_that_names_the_bundled_base():
    manifest = read_manifest(SHIPPED)
    gguf = SHIPPED / "adapter.gguf"
    assert gguf.is_file() and gguf.stat().st_size == manifest["size_bytes"]
    base = bundled_model_path()
    assert manifest["base_file"] == base.name
    assert manifest["base_sha256"] == file_sha256(base)  # trained and converted for this exact file
    assert manifest["dataset_sha256"] and len(manifest["dataset_sha256"]) == 64
    assert manifest["default_for"] == ["delta"] and manifest["prompt_style"] == "compact" and manifest["purpose"] == "plan"
    assert "goal_style" not in manifest  # count_steps stays off for it: measured no better (README)
    for key in ("delta-validation", "taskbench-multimedia-validation"):
        assert 0 <= manifest["eval"][key]["valid_pct"] <= 100
    check_adapter_against_base(gguf, read_gguf_info(base))  # tensor names and shapes fit


def test_auto_selects_it_for_delta_on_the_bundled_model_and_none_turns_it_off(tmp_path):
    config = _config(tmp_path)
    base = bundled_model_path()
    assert config.role("delta").adapter == "auto" and config.role("delta").prompt_style == "auto"
    assert adapters_dir(config) == ROOT / "adapters"
    assert shipped_adapter_for("delta", base, config) == SHIPPED / "adapter.gguf"
    assert shipped_adapter_for("echo", base, config) is None  # shipped for Delta only
    assert role_adapter("delta", "none", base, config) is None
    assert role_adapter("delta", "auto", tmp_path / "other.gguf", config) is None  # another base: nothing
    assert adapter_prompt_style(SHIPPED / "adapter.gguf") == "compact"


def test_the_pool_loads_it_for_delta_and_the_planner_uses_its_prompt_style(tmp_path):
    from agx.execution.builtin_tools import builtin_catalogue
    from agx.planning.planner import Planner

    pool = EnginePool(_config(tmp_path), tmp_path)
    try:
        delta = pool.engine("delta")
        assert delta.info().adapter == "agenix-delta-smollm2"
        assert pool.engine("echo").info().adapter is None
        assert Planner(delta, builtin_catalogue()).prompt_style == "compact"
    finally:
        pool.close()
    off = load_config(tmp_path, use_user_file=False, overrides=["roles.delta.adapter=none"]).config
    pool = EnginePool(off, tmp_path)
    try:
        assert pool.engine("delta").info().adapter is None
        assert Planner(pool.engine("delta"), builtin_catalogue()).prompt_style == "full"
    finally:
        pool.close()


def test_the_plan_only_adapter_is_applied_to_plans_alone(tmp_path):
    """Its manifest says purpose "plan": code and answers from Delta run on the bare base."""
    from agx.runtime.engine import ChatRequest

    pool = EnginePool(_config(tmp_path), tmp_path)
    try:
        delta = pool.engine("delta")
        ask = ChatRequest(messages=[{"role": "user", "content": "Say hi"}], max_tokens=3, temperature=0.0)
        delta.complete(ask)
        assert delta.model.active_adapter[0] is None
        delta.complete(ChatRequest(messages=ask.messages, max_tokens=3, temperature=0.0, purpose="plan"))
        assert delta.model.active_adapter[0] == str(SHIPPED / "adapter.gguf")
    finally:
        pool.close()


def test_it_runs_at_its_manifest_scale_unless_the_role_sets_one(tmp_path):
    """The manifest's "scale" (1.15: its plans score best there, README) is what agx applies when
    roles.delta.adapter_scale is unset; a set value wins; an adapter whose manifest has no usable
    scale runs at 1.0."""
    from agx.runtime.engine import ChatRequest

    gguf = SHIPPED / "adapter.gguf"
    assert read_manifest(SHIPPED)["scale"] == 1.15
    assert adapter_scale_for(gguf, None) == 1.15 and adapter_scale_for(gguf, 1.0) == 1.0
    own = tmp_path / "adapters" / "mine"
    own.mkdir(parents=True)
    (own / "adapter.gguf").write_bytes(b"")
    for value in (None, True, "1.3", -1, 0):  # absent, or not a positive number: 1.0
        write_manifest(own, {} if value is None else {"scale": value})
        assert adapter_scale_for(own / "adapter.gguf", None) == 1.0, value
    assert adapter_scale_for(tmp_path / "loose.gguf", None) == 1.0  # no manifest beside a loose file

    plan = ChatRequest(messages=[{"role": "user", "content": "Say hi"}], max_tokens=1, temperature=0.0, purpose="plan")
    pool = EnginePool(_config(tmp_path), tmp_path)
    try:
        delta = pool.engine("delta")
        delta.complete(plan)
        assert delta.model.active_adapter == (str(gguf), 1.15)
        switch_role_adapter(pool, "delta", "none")
        assert delta.adapter_path is None
        switch_role_adapter(pool, "delta", "auto")  # back on: at its manifest's scale again
        delta.complete(plan)
        assert delta.model.active_adapter == (str(gguf), 1.15)
    finally:
        pool.close()
    set_one = load_config(tmp_path, use_user_file=False, overrides=["roles.delta.adapter_scale=1.0"]).config
    pool = EnginePool(set_one, tmp_path)
    try:
        delta = pool.engine("delta")
        delta.complete(plan)
        assert delta.model.active_adapter == (str(gguf), 1.0)
    finally:
        pool.close()


def test_doctor_says_the_adapter_is_on_and_its_base_matches(tmp_path):
    env = {**os.environ, "AGX_SKIP_BUILD_CHECK": "1"}
    out = subprocess.run([sys.executable, "-m", "agx", "doctor"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    delta = out.stdout.split("[delta]", 1)[1]
    line = next(ln for ln in delta.splitlines() if ln.strip().startswith("adapter:"))
    assert "agenix-delta-smollm2" in line and "base sha256 matches" in line and "on by default" in line
    assert "scale 1.15 (its manifest)" in line
    off = subprocess.run([sys.executable, "-m", "agx", "--set", "roles.delta.adapter=none", "doctor"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=300)
    assert 'adapter: none (off: roles.delta.adapter = "none")' in off.stdout.split("[delta]", 1)[1]


def _greet_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "greet"
    (repo / "src").mkdir(parents=True)
    (repo / "tests").mkdir()
    (repo / "src" / "greet.py").write_text(GREET)
    (repo / "tests" / "test_greet.py").write_text(GREET_TEST)
    (repo / "README.md").write_text("# greet\n\nGreetings.\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.email=t@agx", "-c", "user.name=t", "commit", "-q", "-m", "initial"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    return repo


def _ancestors(tasks: dict, tid: str) -> set[str]:
    seen, todo = set(), list(tasks[tid]["deps"])
    while todo:
        t = todo.pop()
        if t not in seen:
            seen.add(t)
            todo.extend(tasks[t]["deps"])
    return seen


EDIT_TOOLS = {"code", "edit_file", "write_file"}


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("request_text", [
    "Add a function farewell(name) to src/greet.py that returns 'Goodbye, NAME!' and add a test for it",
    "Fix the bug in shout in src/greet.py: it adds two exclamation marks",
    "Add a test for greet with an empty name to tests/test_greet.py",
])
def test_agx_plan_with_the_adapter_reads_then_edits_then_runs_the_tests(tmp_path, request_text):
    repo = _greet_repo(tmp_path)
    out = subprocess.run([sys.executable, "-m", "agx", "plan", "--json", "--no-log", request_text], cwd=repo,
                         capture_output=True, text=True, timeout=600, env={**os.environ, "AGX_SKIP_BUILD_CHECK": "1"})
    assert out.returncode == 0, out.stderr  # 0: a valid plan
    plan = json.loads(out.stdout)
    tasks = {t["id"]: t for t in plan["tasks"]}
    reads = {tid for tid, t in tasks.items() if t["tool"] == "read_files"}
    edits = [tid for tid, t in tasks.items() if t["tool"] in EDIT_TOOLS]
    runs = [tid for tid, t in tasks.items() if t["tool"] == "run_tests"]
    assert reads and edits and runs, plan
    assert all(_ancestors(tasks, e) & reads for e in edits), plan  # a read before each edit
    assert any(set(edits) <= _ancestors(tasks, r) for r in runs), plan  # the tests run after the edits
    assert any("greet.py" in json.dumps(tasks[e]["args"]) for e in edits), plan  # the file the request names


TASKBENCH = ROOT.parent / "shared" / "data" / "taskbench" / "multimedia"


def _numbered_steps(goal: str) -> int | None:
    """How many steps a goal numbers ("1) a; 2) b" -> 2); None for any other goal."""
    import re

    if not re.fullmatch(r"1\) [^;]+(?:; \d+\) [^;]+)*", goal):
        return None
    numbers = [int(n) for n in re.findall(r"(?:^|; )(\d+)\) ", goal)]
    return len(numbers) if numbers == list(range(1, len(numbers) + 1)) else None


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(not TASKBENCH.is_dir(), reason="TaskBench data (../shared/data/taskbench) not present")
def test_count_steps_holds_the_adapter_to_a_task_per_numbered_step(tmp_path):
    """Planner(count_steps=True) (on by default for adapters whose manifest says goal_style
    "steps"): the step count the adapter writes in its goal is a floor for the number of tasks."""
    from agx.planning.planner import Planner, counts_steps
    from agx.training.delta_mix import prompt_catalogue
    from agx.training.taskbench import convert_taskbench

    conv = convert_taskbench(TASKBENCH)
    multi = [r for r in conv.records if r["split"] == "validation" and len(r["gold"]["nodes"]) > 2][:4]
    pool = EnginePool(_config(tmp_path), tmp_path)
    try:
        delta = pool.engine("delta")
        assert not counts_steps(delta)  # the shipped manifest does not ask for it
        numbered = 0
        for record in multi:
            planner = Planner(delta, prompt_catalogue(conv.catalogue, record["request"], 20), count_steps=True)
            result = planner.plan(record["request"])
            assert result.plan_dict is not None, result.raw_outputs
            steps = _numbered_steps(result.plan_dict["goal"])
            if steps is not None:
                numbered += 1
                assert len(result.plan_dict["tasks"]) >= steps, result.raw_outputs
        assert numbered >= 3  # it numbers its goals, so the check above ran
    finally:
        pool.close()
