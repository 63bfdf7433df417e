"""Synthetic multi-tool requests (agx/training/tool_chains.py) and `delta_mix --chains N`:
chains follow the catalogue's types, plans are valid TaskBench-shaped chains, the mix stays
deterministic and the default (0) leaves earlier mixes alone. The same for the one-tool
requests of `--singles N`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agx.planning.tools import load_catalogue_file
from agx.planning.validate import validate_plan
from agx.training import delta_mix, tool_chains
from agx.training.taskbench import sample_to_plan
from agx.training.tool_chains import CLAUSES, chain_samples, description_clause, single_samples, typed_tools

TASKBENCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "taskbench" / "multimedia"
needs_taskbench = pytest.mark.skipif(not TASKBENCH.is_dir(), reason="shared/data/taskbench is absent")


def _tiny_catalogue(tmp_path: Path) -> Path:
    nodes = [
        {"id": "Fetch Video", "desc": "Downloads a video from a URL.", "input-type": ["url"], "output-type": ["video"]},
        {"id": "Video Audio", "desc": "Extracts the audio of a video.", "input-type": ["video"], "output-type": ["audio"]},
        {"id": "Transcriber", "desc": "Transcribes speech from an audio file into text.", "input-type": ["audio"],
         "output-type": ["text"]},
        {"id": "Mixer", "desc": "Applies an effect to audio.", "input-type": ["audio", "text"], "output-type": ["audio"]},
        {"id": "Untyped", "desc": "No types at all."},
    ]
    path = tmp_path / "tool_desc.json"
    path.write_text(json.dumps({"nodes": nodes}))
    return path


def test_chains_follow_first_input_types_and_reproduce(tmp_path):
    path = _tiny_catalogue(tmp_path)
    types = typed_tools(path)
    assert "Untyped" not in types and types["Mixer"] == (["audio", "text"], ["audio"])
    samples = chain_samples(path, 12, seed=3)
    assert samples == chain_samples(path, 12, seed=3) and samples != chain_samples(path, 12, seed=4)
    assert samples and all(s["n_tools"] >= 2 for s in samples)
    for s in samples:
        tools = [n["task"] for n in s["task_nodes"]]
        assert len(set(tools)) == len(tools)
        for prev, nxt in zip(tools, tools[1:]):
            assert types[nxt][0][0] == types[prev][1][0], (prev, nxt)  # output feeds the first input
        assert s["task_links"] == [{"source": a, "target": b} for a, b in zip(tools, tools[1:])]
        assert all(n["arguments"][0] == f"<node-{i - 1}>" for i, n in enumerate(s["task_nodes"]) if i)
        assert len(s["task_steps"]) == len(tools)


def test_singles_take_every_typed_tool_in_turn_and_reproduce(tmp_path):
    path = _tiny_catalogue(tmp_path)
    samples = single_samples(path, 8, seed=1)
    assert samples == single_samples(path, 8, seed=1) and samples != single_samples(path, 8, seed=2)
    tools = [s["task_nodes"][0]["task"] for s in samples]
    assert len(samples) == 8 and all(s["n_tools"] == 1 and len(s["task_nodes"]) == 1 for s in samples)
    assert sorted(tools[:4]) == sorted(typed_tools(path)) == sorted(tools[4:])  # each typed tool once a round
    assert all(s["task_links"] == [] and len(s["task_steps"]) == 1 for s in samples)
    assert len({s["instruction"] for s in samples}) == 8 and not any("{" in s["instruction"] for s in samples)


def test_description_clause_makes_the_verb_imperative():
    assert description_clause("Transcribes speech from an audio file into text.") == \
        "take {obj} and transcribe speech from an audio file into text"
    assert description_clause("Searches for images.").startswith("take {obj} and search for")
    assert description_clause("Applies an effect.").endswith("and apply an effect")


@needs_taskbench
def test_multimedia_chains_use_our_clauses_and_give_valid_plans():
    tool_desc = TASKBENCH / "tool_desc.json"
    catalogue = load_catalogue_file(tool_desc)
    assert set(typed_tools(tool_desc)) <= set(CLAUSES)  # every typed multimedia tool has written clauses
    samples = chain_samples(tool_desc, 60)
    assert len(samples) == 60 and len({s["instruction"] for s in samples}) == 60
    for s in samples:
        plan = sample_to_plan(s)
        assert validate_plan(plan, catalogue).ok, s["id"]
        tasks = plan["tasks"]
        assert [t["deps"] for t in tasks] == [[]] + [[f"t{i}"] for i in range(1, len(tasks))]
        assert all(t["args"]["inputs"][0] == f"${{t{i}}}" for i, t in enumerate(tasks) if i)
        assert "{obj}" not in s["instruction"]
        assert plan["goal"].startswith("1) ") and f"{len(tasks)}) " in plan["goal"]


@needs_taskbench
def test_multimedia_singles_give_one_task_plans_that_name_their_input():
    tool_desc = TASKBENCH / "tool_desc.json"
    catalogue = load_catalogue_file(tool_desc)
    samples = single_samples(tool_desc, 120)
    assert len(samples) == 120 and {s["task_nodes"][0]["task"] for s in samples} == set(typed_tools(tool_desc))
    for s in samples:
        plan = sample_to_plan(s)
        assert validate_plan(plan, catalogue).ok, s["id"]
        assert [t["tool"] for t in plan["tasks"]] == [s["task_nodes"][0]["task"]] and plan["tasks"][0]["deps"] == []
        first = s["task_nodes"][0]["arguments"][0]
        assert first.strip("'") in s["instruction"] and first.strip("'") in s["task_steps"][0], s["id"]
        assert " it" not in s["task_steps"][0]  # a step names its input even where the request says "it"


def test_singles_context_wraps_the_ask_and_leaves_bare_singles_alone(tmp_path):
    path = _tiny_catalogue(tmp_path)
    bare, wrapped = single_samples(path, 8, seed=1), single_samples(path, 8, seed=1, context=True)
    assert bare == single_samples(path, 8, seed=1, context=False)  # the default stays byte for byte
    assert wrapped == single_samples(path, 8, seed=1, context=True)
    first_bare, first_wrapped = bare[0]["instruction"], wrapped[0]["instruction"]
    # The first sample draws its tool, input and ask as the bare one does, then the story around it.
    assert first_wrapped != first_bare and f" {first_bare}" in first_wrapped
    assert wrapped[0]["task_nodes"] == bare[0]["task_nodes"] and wrapped[0]["task_steps"] == bare[0]["task_steps"]
    for s in wrapped:
        story = s["instruction"].split(". ", 1)[0] + "."
        assert story in {*tool_chains._ANY_BACKSTORIES, *(b for bs in tool_chains._BACKSTORIES.values() for b in bs)}
        assert len(s["task_nodes"]) == 1 and not s["task_links"] and s["task_steps"][0].startswith("Step 1: ")
        assert story not in s["task_steps"][0]  # the backstory is not a step


@needs_taskbench
def test_mix_with_singles_adds_exactly_them(tmp_path):
    base = dict(taskbench=str(TASKBENCH), coding_count=30, seed=0, renamed_eval=False, chains=10)
    plain = delta_mix.build_mix(delta_mix.MixOptions(**base))
    mixed = delta_mix.build_mix(delta_mix.MixOptions(**base, singles=20))
    train = mixed.files[delta_mix.TRAIN_FILE]
    singles = [r for r in train if r["source"] == "taskbench-singles"]
    assert len(singles) == 20 == mixed.notes["taskbench_singles"] and "taskbench_singles" not in plain.notes
    assert [r for r in train if r["source"] != "taskbench-singles"] == plain.files[delta_mix.TRAIN_FILE]
    assert all(r["type"] == "single" and len(r["plan"]["tasks"]) == 1 for r in singles)
    assert all(f"- {r['plan']['tasks'][0]['tool']}(" in r["messages"][0]["content"] for r in singles)
    context = delta_mix.build_mix(delta_mix.MixOptions(**base, singles=20, singles_context=True))
    told = [r for r in context.files[delta_mix.TRAIN_FILE] if r["source"] == "taskbench-singles"]
    assert len(told) == 20 and [r for r in context.files[delta_mix.TRAIN_FILE] if r["source"] != "taskbench-singles"] \
        == plain.files[delta_mix.TRAIN_FILE]
    assert {r["request"] for r in told}.isdisjoint(r["request"] for r in singles)
    assert all(r["type"] == "single" and len(r["plan"]["tasks"]) == 1 for r in told)


@needs_taskbench
def test_mix_with_chains_is_deterministic_and_zero_adds_none(tmp_path):
    base = dict(taskbench=str(TASKBENCH), coding_count=30, seed=0, renamed_eval=False)
    plain = delta_mix.build_mix(delta_mix.MixOptions(**base))
    with_chains = delta_mix.build_mix(delta_mix.MixOptions(**base, chains=25))
    again = delta_mix.build_mix(delta_mix.MixOptions(**base, chains=25))
    train = with_chains.files[delta_mix.TRAIN_FILE]
    chains = [r for r in train if r["source"] == "taskbench-chains"]
    assert len(chains) == 25 == with_chains.notes["taskbench_chains"] and plain.notes["taskbench_chains"] == 0
    assert [r for r in train if r["source"] != "taskbench-chains"] == plain.files[delta_mix.TRAIN_FILE]
    assert train == again.files[delta_mix.TRAIN_FILE]
    catalogue = load_catalogue_file(TASKBENCH / "tool_desc.json")
    for r in chains:
        assert validate_plan(r["plan"], catalogue).ok
        system = r["messages"][0]["content"]
        assert all(f"- {t['tool']}(" in system for t in r["plan"]["tasks"]), r["id"]  # every chain tool shown
        assert r["gold"]["nodes"] == [t["tool"] for t in r["plan"]["tasks"]]
    held = {r["request"] for r in with_chains.files["taskbench-multimedia-validation.jsonl"]}
    assert not held & {r["request"] for r in chains}


@pytest.mark.parametrize("flag", ["--chains", "--singles"])
def test_negative_synthetic_count_is_a_usage_error(tmp_path, capsys, flag):
    with pytest.raises(SystemExit) as exc:
        delta_mix.main(["-o", str(tmp_path), flag, "-1"])
    assert exc.value.code == 2 and f"{flag} must be 0 or more" in capsys.readouterr().err


def test_singles_context_without_singles_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        delta_mix.main(["-o", str(tmp_path), "--singles-context"])
    assert exc.value.code == 2 and "give --singles N" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written
