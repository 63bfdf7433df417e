"""Delta's training mix (agx/training/delta_mix.py): deterministic, no held-out data in training,
gold coding plans valid over the built-in tools, prompts byte-identical to the planner's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agx.execution.builtin_tools import builtin_catalogue
from agx.planning.planner import Planner
from agx.planning.prompt import PROMPT_STYLES, build_plan_messages
from agx.planning.retrieval import select_tools
from agx.planning.tools import ToolCatalogue, ToolSpec, io_types_note, load_catalogue_file
from agx.planning.validate import validate_plan
from agx.training import delta_mix
from agx.training.taskbench import is_eval_id

TASKBENCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "taskbench" / "multimedia"
needs_taskbench = pytest.mark.skipif(not TASKBENCH.is_dir(), reason="shared/data/taskbench is absent")


def _options(**kw) -> delta_mix.MixOptions:
    base = dict(taskbench=str(TASKBENCH) if TASKBENCH.is_dir() else None, coding_count=90, seed=0)
    base.update(kw)
    return delta_mix.MixOptions(**base)


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open(encoding="utf-8")]


@pytest.fixture(scope="module")
def counter():
    return delta_mix.chatml_counter()  # the bundled model's tokenizer (vocabulary only)


@pytest.fixture(scope="module")
def built(tmp_path_factory, counter):
    out = tmp_path_factory.mktemp("mix")
    manifest = delta_mix.write_mix(out, _options(), counter=counter)
    return out, manifest


def test_same_inputs_same_sha256_and_seed_changes_it(built, tmp_path, counter):
    out, manifest = built
    again = delta_mix.write_mix(tmp_path / "again", _options(), counter=counter)
    assert again["data_sha256"] == manifest["data_sha256"]
    for name, f in manifest["files"].items():
        assert (tmp_path / "again" / name).read_bytes() == (out / name).read_bytes(), name
        assert again["files"][name]["sha256"] == f["sha256"] == delta_mix.file_sha256(out / name)
    other = delta_mix.write_mix(tmp_path / "seed1", _options(seed=1), counter=counter)
    assert other["data_sha256"] != manifest["data_sha256"]
    assert json.loads((out / delta_mix.MANIFEST).read_text()) == manifest


def test_token_counts_are_recorded_for_bucketing(built, counter):
    out, manifest = built
    train = _read(out / delta_mix.TRAIN_FILE)
    assert all(r["tokens"]["total"] == r["tokens"]["prompt"] + r["tokens"]["target"] > 0 for r in train)
    f = manifest["files"][delta_mix.TRAIN_FILE]
    assert f["tokens"] == sum(r["tokens"]["total"] for r in train)
    assert sum(f["length_buckets"].values()) == f["records"] == len(train)
    # A longer conversation counts more tokens (the counter really tokenizes).
    short = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "{}"}]
    long = [{"role": "user", "content": "hi " * 50}, {"role": "assistant", "content": "{}"}]
    assert counter(long)["prompt"] > counter(short)["prompt"] + 40


def test_no_held_out_data_in_training(built):
    out, manifest = built
    train = _read(out / delta_mix.TRAIN_FILE)
    coding_eval = _read(out / delta_mix.CODING_EVAL_FILE)
    assert train and coding_eval
    # Coding: whole projects held out, and no held-out request trained on.
    assert {r["project"] for r in coding_eval} == set(delta_mix.CODING_EVAL_PROJECTS)
    train_coding = [r for r in train if r["source"] == "agx-coding"]
    assert train_coding and not {r["project"] for r in train_coding} & set(delta_mix.CODING_EVAL_PROJECTS)
    assert not {r["request"] for r in train_coding} & {r["request"] for r in coding_eval}
    if not TASKBENCH.is_dir():
        return
    held = _read(out / "taskbench-multimedia-validation.jsonl")
    assert len(held) == 128 and all(is_eval_id(r["id"]) for r in held)
    tb_train = [r for r in train if r["source"].startswith("taskbench")]
    assert {r["source"] for r in tb_train} == {"taskbench-multimedia", "taskbench-multimedia-shuffled"}
    base_ids = {r["id"].split("-shuffled")[0] for r in tb_train}
    assert not any(is_eval_id(i) for i in base_ids)
    assert not base_ids & {r["id"] for r in held}
    # Mix v2 trains on every train record: none dropped for a held-out tool or a retrieval miss.
    assert len(base_ids) == 322 and manifest["unseen_tools"] == []
    assert manifest["notes"]["taskbench_train_retrieval_miss_filled"] > 0
    for r in tb_train:
        system = r["messages"][0]["content"]
        assert all(f"- {t['tool']}(" in system for t in r["plan"]["tasks"]), r["id"]  # every gold tool shown


def test_unseen_tools_are_in_no_training_prompt_or_plan(tmp_path, counter):
    if not TASKBENCH.is_dir():
        pytest.skip("shared/data/taskbench is absent")
    manifest = delta_mix.write_mix(tmp_path, _options(unseen_tools=4, renamed_eval=False), counter=counter)
    train = _read(tmp_path / delta_mix.TRAIN_FILE)
    unseen_eval = _read(tmp_path / "taskbench-multimedia-unseen-tools.jsonl")
    unseen = manifest["unseen_tools"]
    assert len(unseen) == 4 and not (tmp_path / "taskbench-multimedia-renamed.jsonl").exists()
    for r in train:
        system = r["messages"][0]["content"]
        assert not any(f"- {name}(" in system for name in unseen), r["id"]
        assert not {t["tool"] for t in r["plan"]["tasks"]} & set(unseen)
    assert unseen_eval and all(set(r["gold"]["nodes"]) & set(unseen) for r in unseen_eval)


@needs_taskbench
def test_renamed_catalogue_file_has_new_names_only(built):
    """The renamed-catalogue set: the held-out requests, every tool under a name training never
    showed, gold renamed the same way, prompts over the renamed tools."""
    out, manifest = built
    held = {r["id"]: r for r in _read(out / "taskbench-multimedia-validation.jsonl")}
    renamed = _read(out / "taskbench-multimedia-renamed.jsonl")
    cat = load_catalogue_file(out / "catalogue-taskbench-multimedia-renamed.json")
    old_names = set(delta_mix.RENAMED_TOOLS)
    assert len(renamed) == 128 and set(cat.names()) == set(delta_mix.RENAMED_TOOLS.values())
    train_text = (out / delta_mix.TRAIN_FILE).read_text(encoding="utf-8")
    assert not any(f'"{new}"' in train_text for new in cat.names())  # no new name in any training record
    for r in renamed:
        orig = held[r["id"].removesuffix("-renamed")]
        assert r["request"] == orig["request"]
        assert r["gold"]["nodes"] == [delta_mix.RENAMED_TOOLS.get(n, n) for n in orig["gold"]["nodes"]]
        assert set(r["prompt_tools"]) <= set(cat.names()) and not set(r["prompt_tools"]) & old_names
        assert all(f"- {name}(" in r["messages"][0]["content"] for name in r["prompt_tools"])


def test_retrieval_miss_is_filled_with_the_gold_tools():
    cat = load_catalogue_file(TASKBENCH / "tool_desc.json") if TASKBENCH.is_dir() else builtin_catalogue()
    names = cat.names()
    shown = delta_mix.ToolCatalogue.of(cat.get(n) for n in names[:5])
    filled = delta_mix.with_tools(shown, cat, [names[1], names[7]])
    assert filled.names() == [*names[:4], names[7]]  # the lowest-ranked other gives way, size kept
    assert delta_mix.with_tools(shown, cat, [names[0]]).names() == names[:5]


def test_coding_training_records_are_capped(tmp_path):
    res = delta_mix.build_mix(_options(taskbench=None, coding_count=90, coding_train_max=20), {p.name: "" for p in delta_mix.CODING_PROJECTS})
    assert res.notes["coding_train"] == len(res.files[delta_mix.TRAIN_FILE]) == 20
    uncapped = delta_mix.build_mix(_options(taskbench=None, coding_count=90, coding_train_max=None), {p.name: "" for p in delta_mix.CODING_PROJECTS})
    assert len(uncapped.files[delta_mix.TRAIN_FILE]) > 20
    assert {r["id"] for r in res.files[delta_mix.TRAIN_FILE]} < {r["id"] for r in uncapped.files[delta_mix.TRAIN_FILE]}


def test_coding_gold_plans_validate_and_read_then_code_then_test():
    cat = builtin_catalogue()
    requests = delta_mix.coding_requests(200, seed=0)
    assert len({r for _, r, _ in requests}) == 200
    assert {p.name for p, _, _ in requests} == {p.name for p in delta_mix.CODING_PROJECTS}
    for project, request, plan in requests:
        report = validate_plan(plan, cat)
        assert report.ok, (request, report.errors)
        tasks = plan["tasks"]
        assert [t["tool"] for t in tasks] == ["read_files", "code", "run_tests"]
        assert tasks[1]["deps"] == ["t1"] and tasks[2]["deps"] == ["t2"]
        assert project.source in tasks[0]["args"]["paths"]
        assert set(tasks[1]["args"]["paths"]) <= {project.source, project.test}


def test_shuffled_catalogue_keeps_gold_and_varies_order():
    import random

    cat = load_catalogue_file(TASKBENCH / "tool_desc.json") if TASKBENCH.is_dir() else builtin_catalogue()
    gold = cat.names()[2:4]
    rng = random.Random(0)
    orders = set()
    for _ in range(10):
        sub = delta_mix.shuffled_catalogue(cat, gold, rng, (2, 5))
        assert set(gold) <= set(sub.names()) and 4 <= len(sub) <= 7
        orders.add(tuple(sub.names()))
    assert len(orders) > 1


@pytest.mark.parametrize("style", PROMPT_STYLES)
def test_prompts_are_the_planners_prompts(pool, style):
    """Coding records: the planner's own messages_for in the record's repository; TaskBench
    records: the planner's messages over the tools retrieval keeps past the limit."""
    engine = pool.engine("delta")
    opts = _options(style=style, coding_count=24)
    with delta_mix.coding_repos() as repos:
        contexts = {name: delta_mix.repo_context(path) for name, path in repos.items()}
        res = delta_mix.build_mix(opts, contexts)
        coding = [r for name in (delta_mix.TRAIN_FILE, delta_mix.CODING_EVAL_FILE) for r in res.files[name]
                  if r["source"] == "agx-coding"]
        assert coding
        for r in coding[:8]:
            planner = Planner(engine, builtin_catalogue(), repo_dir=repos[r["project"]], prompt_style=style)
            assert r["messages"][:-1] == planner.messages_for(r["request"])
            assert json.loads(r["messages"][-1]["content"]) == r["plan"]
    if not TASKBENCH.is_dir():
        return
    full = load_catalogue_file(TASKBENCH / "tool_desc.json")
    assert len(full) > opts.retrieval_limit  # retrieval applies to this catalogue
    for r in res.files["taskbench-multimedia-validation.jsonl"][:5]:
        planner = Planner(engine, select_tools(full, r["request"], opts.retrieval_limit), prompt_style=style)
        assert r["messages"][:-1] == planner.messages_for(r["request"])
    plain = [r for r in res.files[delta_mix.TRAIN_FILE] if r["source"] == "taskbench-multimedia"][:12]
    filled = 0
    for r in plain:
        shown = select_tools(full, r["request"], 20)
        gold = [t["tool"] for t in r["plan"]["tasks"]]
        if not set(gold) <= set(shown.names()):  # a retrieval miss, filled with the gold tools
            shown, filled = delta_mix.with_tools(shown, full, gold), filled + 1
        assert r["messages"][:-1] == build_plan_messages(r["request"], shown, None, style=style)
    assert filled < len(plain)
    renamed = delta_mix.renamed_catalogue(full)
    for r in res.files["taskbench-multimedia-renamed.jsonl"][:3]:
        planner = Planner(engine, select_tools(renamed, r["request"], opts.retrieval_limit), prompt_style=style)
        assert r["messages"][:-1] == planner.messages_for(r["request"])


def test_planner_takes_its_prompt_style_from_the_role_config(tmp_path):
    """roles.delta.prompt_style selects the style (default auto: the adapter's, else full); an explicit
    argument wins."""
    from agx.config import load_config
    from agx.runtime.pool import EnginePool

    cat = builtin_catalogue()
    for style in ("full", "compact"):
        config = load_config(tmp_path, use_user_file=False, overrides=[f"roles.delta.prompt_style={style}"]).config
        pool = EnginePool(config, tmp_path)
        try:
            engine = pool.engine("delta")
            assert Planner(engine, cat).messages_for("Run the tests") == build_plan_messages("Run the tests", cat, style=style)
            assert Planner(engine, cat, prompt_style="compact_example").prompt_style == "compact_example"
        finally:
            pool.close()
    assert load_config(tmp_path, use_user_file=False).config.role("delta").prompt_style == "auto"
    bare = load_config(tmp_path, use_user_file=False, overrides=["roles.delta.adapter=none"]).config
    pool = EnginePool(bare, tmp_path)
    try:  # auto without an adapter that names a style: full
        assert Planner(pool.engine("delta"), cat).prompt_style == "full"
    finally:
        pool.close()
    compact = build_plan_messages("Run the tests", cat, style="compact")[0]["content"]
    full = build_plan_messages("Run the tests", cat)[0]["content"]
    assert "- run_tests(command?): Run the project" in compact and "[exec]" not in compact
    assert "Example plan:" in full and len(compact) < len(full) * 0.75


def test_negative_counts_are_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        delta_mix.main(["-o", str(tmp_path / "mix"), "--coding-train", "-5"])
    assert exc.value.code == 2 and "--coding-train must be 0 or more" in capsys.readouterr().err
    assert not (tmp_path / "mix").exists()  # nothing written


def test_compose_plans_moves_the_second_plan_past_the_first():
    a = {"goal": "1) Stabilize", "tasks": [
        {"id": "t1", "title": "Stabilize the video", "deps": [], "tool": "Video Stabilizer", "args": {"inputs": ["v.mp4"]}}]}
    b = {"goal": "1) Transcribe; 2) Summarize", "tasks": [
        {"id": "t1", "title": "Transcribe the audio", "deps": [], "tool": "Audio-to-Text", "args": {"inputs": ["a.wav"]}},
        {"id": "t2", "title": "Summarize it", "deps": ["t1"], "tool": "Text Summarizer", "args": {"inputs": ["${t1}"]}}]}
    plan = delta_mix.compose_plans(a, b)
    assert [t["id"] for t in plan["tasks"]] == ["t1", "t2", "t3"]
    assert plan["tasks"][2]["deps"] == ["t2"] and plan["tasks"][2]["args"] == {"inputs": ["${t2}"]}
    assert plan["tasks"][1]["deps"] == [] and plan["tasks"][1]["args"] == {"inputs": ["a.wav"]}
    assert plan["goal"] == "1) Stabilize the video; 2) Transcribe the audio; 3) Summarize it"
    assert b["tasks"][1]["deps"] == ["t1"]  # the inputs are not changed


@needs_taskbench
def test_composed_records_ask_both_requests_and_plan_both(built, tmp_path, counter):
    out, _ = built  # the default mix (v2) has none
    assert not [r for r in _read(out / delta_mix.TRAIN_FILE) if r["source"] == "taskbench-composed"]
    manifest = delta_mix.write_mix(tmp_path / "a", _options(composed=30), counter=counter)
    again = delta_mix.write_mix(tmp_path / "b", _options(composed=30), counter=counter)
    assert manifest["data_sha256"] == again["data_sha256"] and manifest["notes"]["taskbench_composed"] == 30
    train = _read(tmp_path / "a" / delta_mix.TRAIN_FILE)
    plain = {r["id"]: r for r in train if r["source"] == "taskbench-multimedia"}
    composed = [r for r in train if r["source"] == "taskbench-composed"]
    assert len(composed) == 30
    pairs = {r["id"]: [i for i in plain if r["id"] in (f"composed-{i}-{j}" for j in plain)] for r in composed}
    catalogue = load_catalogue_file(tmp_path / "a" / "catalogue-taskbench-multimedia.json")
    for r in composed:
        (first_id,) = pairs[r["id"]]
        first, second = plain[first_id], plain[r["id"].removeprefix(f"composed-{first_id}-")]
        assert not is_eval_id(first_id) and not is_eval_id(second["id"])
        assert r["request"] == f"{first['request'].rstrip()} {second['request'].lstrip()}"
        assert [t["tool"] for t in r["plan"]["tasks"]] == [t["tool"] for t in first["plan"]["tasks"] + second["plan"]["tasks"]]
        assert 2 <= len(r["plan"]["tasks"]) <= delta_mix.MixOptions.composed_max_tasks
        assert validate_plan(r["plan"], catalogue).ok
        system = r["messages"][0]["content"]
        assert all(f"- {t['tool']}(" in system for t in r["plan"]["tasks"]), r["id"]  # every gold tool shown


def test_io_types_note_and_loader(tmp_path):
    entry = {"id": "Video-to-Audio", "desc": "Extracts the audio of a video.", "input-type": ["video"],
             "output-type": ["Audio"]}
    assert io_types_note(entry) == "Input: video. Output: audio."
    assert io_types_note({"id": "x", "desc": "d", "input-type": ["text", "image"]}) == "Input: text, image."
    assert io_types_note({"id": "x", "desc": "d"}) == ""
    path = tmp_path / "tool_desc.json"
    path.write_text(json.dumps({"nodes": [entry, {"id": "Plain", "desc": "No types."}]}))
    plain, typed = load_catalogue_file(path), load_catalogue_file(path, io_types=True)
    assert plain.get("Video-to-Audio").description == "Extracts the audio of a video."
    assert typed.get("Video-to-Audio").description == "Extracts the audio of a video. Input: video. Output: audio."
    assert typed.get("Plain").description == "No types."


@needs_taskbench
def test_io_types_mix_shows_types_in_every_taskbench_prompt(built, tmp_path, counter):
    out, manifest = built
    typed = delta_mix.write_mix(tmp_path / "io", _options(io_types=True), counter=counter)
    assert typed["options"]["io_types"] is True and manifest["options"]["io_types"] is False
    # the coding records (built-in tools) are the same bytes; the TaskBench ones differ
    assert typed["files"][delta_mix.CODING_EVAL_FILE]["sha256"] == manifest["files"][delta_mix.CODING_EVAL_FILE]["sha256"]
    held = _read(tmp_path / "io" / "taskbench-multimedia-validation.jsonl")
    renamed = _read(tmp_path / "io" / "taskbench-multimedia-renamed.jsonl")
    for rec in held[:20] + renamed[:20]:
        tool_lines = [ln for ln in rec["messages"][0]["content"].splitlines() if ln.startswith("- ")]
        assert tool_lines and all("Input: " in ln and "Output: " in ln for ln in tool_lines), rec["id"]
    plain = _read(out / "taskbench-multimedia-validation.jsonl")
    assert not any("Output: " in rec["messages"][0]["content"] for rec in plain)


def test_prompt_catalogue_index_is_not_shared_across_descriptions():
    schema = {"type": "object", "properties": {}}

    def cat(desc_a: str, desc_b: str) -> ToolCatalogue:
        specs = [ToolSpec(f"tool{i}", "filler words only", schema) for i in range(6)]
        return ToolCatalogue.of([ToolSpec("a", desc_a, schema), ToolSpec("b", desc_b, schema), *specs])

    first = delta_mix.prompt_catalogue(cat("resize photos", "count words"), "resize my photos", 1)
    second = delta_mix.prompt_catalogue(cat("count words", "resize photos"), "resize my photos", 1)
    assert first.names() == ["a"] and second.names() == ["b"]
