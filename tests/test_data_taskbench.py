"""TaskBench multimedia -> agx plan records: split, placeholders, validation, the catalogue in the prompt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agx.planning.prompt import build_plan_messages
from agx.planning.schema_grammar import canonical_plan_json
from agx.planning.tools import load_catalogue_file
from agx.planning.validate import validate_plan
from agx.training.records import DatasetError
from agx.training.taskbench import convert_taskbench, sample_to_plan

TASKBENCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "taskbench" / "multimedia"
needs_data = pytest.mark.skipif(not TASKBENCH.is_dir(), reason="TaskBench data (../shared/data/taskbench) not present")


@needs_data
def test_real_multimedia_conversion_split_and_validity():
    conv = convert_taskbench(TASKBENCH)
    held = [r for r in conv.records if r["split"] == "validation"]
    train = [r for r in conv.records if r["split"] == "train"]
    assert len(held) == 128  # every id ending 0-2 is kept: figures stay comparable
    assert all(r["id"][-1] in "012" for r in held)
    assert len(train) + conv.dropped_invalid_train == 337
    for r in train:
        assert validate_plan(r["plan"], conv.catalogue).ok, r["id"]
    # The prompt is Delta's own, with the domain's tools listed; the answer is the canonical plan JSON.
    r = train[0]
    assert r["messages"][:2] == build_plan_messages(r["request"], conv.catalogue)
    assert "Video-to-Audio" in r["messages"][0]["content"]
    assert r["messages"][2] == {"role": "assistant", "content": canonical_plan_json(r["plan"])}


def test_node_references_become_deps_and_placeholders():
    # 1-based `<node-j>` (as some upstream samples use) and a dict argument naming its source.
    sample = {
        "id": "123", "instruction": "Stabilize example.mp4, extract the audio and transcribe it.",
        "task_nodes": [
            {"task": "Video Stabilizer", "arguments": ["example.mp4"]},
            {"task": "Video-to-Audio", "arguments": ["<node-1>"]},
            {"task": "Audio-to-Text", "arguments": [{"source": "Video-to-Audio", "output": "audio"}, 3]},
        ],
        "task_links": [{"source": "Video Stabilizer", "target": "Video-to-Audio"},
                       {"source": "Video-to-Audio", "target": "Audio-to-Text"}],
        "task_steps": ["Step 1: Stabilize the video", "Step 2: Extract audio", "Step 3: Transcribe"],
    }
    plan = sample_to_plan(sample)
    t1, t2, t3 = plan["tasks"]
    assert (t1["deps"], t2["deps"], t3["deps"]) == ([], ["t1"], ["t2"])
    assert t2["args"] == {"inputs": ["${t1}"]}
    assert t3["args"] == {"inputs": ["${t2}", "3"]}
    assert t1["title"] == "Stabilize the video"
    # The goal numbers the steps (a small planner then knows how many tasks to write) ...
    assert plan["goal"] == "1) Stabilize the video; 2) Extract audio; 3) Transcribe"
    # ... or, in the older style, repeats the request's first sentence.
    assert sample_to_plan(sample, "request")["goal"] == "Stabilize example.mp4, extract the audio and transcribe it."
    with pytest.raises(ValueError, match="goal_style"):
        sample_to_plan(sample, "prose")


def test_cyclic_links_are_dropped_to_keep_a_dag():
    sample = {"id": "9", "instruction": "x", "task_nodes": [{"task": "A", "arguments": ["<node-1>"]}, {"task": "B", "arguments": ["<node-0>"]}],
              "task_links": [{"source": "A", "target": "B"}, {"source": "B", "target": "A"}]}
    plan = sample_to_plan(sample)
    edges = {(d, t["id"]) for t in plan["tasks"] for d in t["deps"]}
    assert edges == {("t1", "t2")}
    assert plan["tasks"][0]["args"]["inputs"] == ["<node-1>"]  # no placeholder without a dependency


def test_catalogue_file_written_and_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="not a folder"):
        convert_taskbench(tmp_path / "nope")
    (tmp_path / "dom").mkdir()
    with pytest.raises(DatasetError, match="needs data.jsonl and tool_desc.json"):
        convert_taskbench(tmp_path / "dom")
    (tmp_path / "dom" / "tool_desc.json").write_text(json.dumps({"nodes": [{"id": "A", "desc": "a"}, {"id": "B", "desc": "b"}]}))
    (tmp_path / "dom" / "data.jsonl").write_text(
        json.dumps({"id": "15", "instruction": "do A then B", "task_nodes": [{"task": "A", "arguments": ["x"]}, {"task": "B", "arguments": ["<node-0>"]}],
                    "task_links": [{"source": "A", "target": "B"}]}) + "\n")
    from agx.training.taskbench import write_catalogue

    conv = convert_taskbench(tmp_path / "dom")
    path = write_catalogue(conv, tmp_path / "out")
    assert load_catalogue_file(path).names() == ["A", "B"]
    assert conv.records[0]["gold"] == {"nodes": ["A", "B"], "links": [["A", "B"]]}
