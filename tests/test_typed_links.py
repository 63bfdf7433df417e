"""Typed links (schema_grammar._typed_task_rules): over tools that declare what they take and
give, a task wired to the task just before it may only use a tool that accepts that output.

The grammar is checked the way llama.cpp applies it while decoding: the real bundled model's
vocabulary, llama.cpp's grammar sampler, a plan fed token by token."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agx.planning.schema_grammar import canonical_plan_json, plan_gbnf
from agx.planning.tools import ToolCatalogue, load_catalogue_file
from agx.training.records import catalogue_to_json

TASKBENCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "taskbench" / "multimedia" / "tool_desc.json"
INPUTS = {"type": "object", "properties": {"inputs": {"type": "array", "items": {"type": "string"}}},
          "required": ["inputs"], "additionalProperties": False}


def _catalogue(tmp_path: Path) -> ToolCatalogue:
    tools = [
        {"name": "Video-to-Audio", "description": "Extracts the sound of a video.", "args_schema": INPUTS,
         "input_types": ["video"], "output_types": ["audio"]},
        {"name": "Audio-to-Text", "description": "Transcribes speech.", "args_schema": INPUTS,
         "input_types": ["audio"], "output_types": ["text"]},
        {"name": "Text-to-Image", "description": "Draws a picture from text.", "args_schema": INPUTS,
         "input_types": ["text"], "output_types": ["image"]},
        {"name": "Note", "description": "Writes a note (untyped).", "args_schema": INPUTS},
    ]
    path = tmp_path / "tools.json"
    path.write_text(json.dumps(tools), encoding="utf-8")
    return load_catalogue_file(path)


def _plan(*tasks: tuple[str, list[str]]) -> str:
    return canonical_plan_json({"goal": "g", "tasks": [
        {"id": f"t{k}", "title": f"step {k}", "deps": deps, "tool": tool, "args": {"inputs": ["x"]}}
        for k, (tool, deps) in enumerate(tasks, start=1)]})


def test_declared_types_are_loaded_lower_cased_and_written_back(tmp_path):
    cat = _catalogue(tmp_path)
    assert cat.typed()
    assert (cat.get("Video-to-Audio").input_types, cat.get("Video-to-Audio").output_types) == (("video",), ("audio",))
    assert cat.get("Note").input_types == () and cat.get("Note").output_types == ()
    again = tmp_path / "again.json"
    again.write_text(json.dumps(catalogue_to_json(cat)), encoding="utf-8")
    assert [(t.input_types, t.output_types) for t in load_catalogue_file(again)] == [
        (t.input_types, t.output_types) for t in cat]
    # an untyped tool's entry has no type keys: untyped catalogue files keep their bytes
    assert set(catalogue_to_json(cat)[3]) == {"name", "description", "args_schema", "risk"}


def test_taskbench_types_are_read_from_its_tool_file():
    if not TASKBENCH.is_file():
        pytest.skip(f"TaskBench data not on this machine ({TASKBENCH})")
    cat = load_catalogue_file(TASKBENCH)
    assert cat.get("Image Search").output_types == ("image",)  # "Image" in the file
    assert cat.get("Video-to-Audio").input_types == ("video",)


def test_untyped_catalogues_get_the_grammar_they_had(tmp_path):
    from agx.execution.builtin_tools import builtin_catalogue

    builtin = builtin_catalogue()
    assert not builtin.typed()
    assert plan_gbnf(builtin, typed_links=True) == plan_gbnf(builtin, typed_links=False)
    typed = _catalogue(tmp_path)
    assert plan_gbnf(typed, typed_links=True) != plan_gbnf(typed, typed_links=False)
    # count_steps keeps its own rules (typed links are not combined with them)
    assert plan_gbnf(typed, typed_links=True, count_steps=True) == plan_gbnf(typed, count_steps=True)


def test_a_link_to_the_previous_task_needs_a_tool_that_takes_its_output(tmp_path, accepts):
    cat = _catalogue(tmp_path)
    typed, free = plan_gbnf(cat, typed_links=True), plan_gbnf(cat, typed_links=False)
    right = _plan(("Video-to-Audio", []), ("Audio-to-Text", ["t1"]), ("Text-to-Image", ["t2"]))
    wrong = _plan(("Video-to-Audio", []), ("Text-to-Image", ["t1"]))  # audio into a text tool
    assert accepts(typed, right) and accepts(free, right)
    assert not accepts(typed, wrong)
    assert accepts(free, wrong)  # the untyped grammar allows it: the rule is what stops it


def test_unlinked_untyped_and_older_links_stay_free(tmp_path, accepts):
    typed = plan_gbnf(_catalogue(tmp_path), typed_links=True)
    # no dependency: any tool
    assert accepts(typed, _plan(("Video-to-Audio", []), ("Text-to-Image", [])))
    # an untyped tool takes anything, and after it anything may follow
    assert accepts(typed, _plan(("Video-to-Audio", []), ("Note", ["t1"]), ("Text-to-Image", ["t2"])))
    # a link to an older task only is not checked (the grammar remembers the last task's type)
    assert accepts(typed, _plan(("Video-to-Audio", []), ("Audio-to-Text", []), ("Text-to-Image", ["t1"])))
    # ... but deps that end with the previous task are, older ones beside it or not
    assert not accepts(typed, _plan(("Audio-to-Text", []), ("Video-to-Audio", []), ("Text-to-Image", ["t1", "t2"])))
    assert accepts(typed, _plan(("Video-to-Audio", []), ("Audio-to-Text", ["t1"]), ("Text-to-Image", ["t1", "t2"])))


def test_typed_links_follow_the_role_config(tiny_model_path, tmp_path):
    from agx.config import load_config
    from agx.planning.planner import plan_grammar
    from agx.runtime.pool import EnginePool

    cat = _catalogue(tmp_path)
    for value, expected in (("true", plan_gbnf(cat, typed_links=True)), ("false", plan_gbnf(cat))):
        cfg = load_config(tmp_path, overrides=[f"roles.delta.typed_links={value}", "roles.delta.adapter=none"],
                          use_user_file=False).config
        pool = EnginePool(cfg, tmp_path)
        try:
            assert plan_grammar(pool.engine("delta"), cat) == expected
        finally:
            pool.close()
