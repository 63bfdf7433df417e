"""Grammar-constrained sampling, "fast" path vs llama-cpp-python's grammar-first chain, on the
real bundled model (agx/runtime/constrained.py).

The byte-identity check runs every prompt through both paths from the same model state: two
tokens are generated first, so the prompt sits in the KV cache and both paths then re-evaluate
only its last token (llama-cpp-python's prefix reuse). Their logits are then computed
identically, and any difference in output comes from the samplers alone. (With one warm-up
token the first path would sample from the warm-up's logits, computed in a prompt-sized batch,
and the second from a re-evaluation of one token: llama.cpp's batched and single-token matmuls
round differently, enough to flip a near tie.)
"""

from __future__ import annotations


import pytest

from agx.execution.builtin_tools import builtin_catalogue
from agx.planning.prompt import build_plan_messages
from agx.planning.schema_grammar import plan_gbnf
from agx.runtime import constrained
from agx.runtime.engine import CancelToken, ChatRequest, EngineError

PLAN_REQUESTS = [
    "Read README.md and summarise it.",
    "Search the code for TODO comments.",
    "Run the tests and report failures.",
    "Add a docstring to greet in src/app.py.",
    "Rename the function greet to welcome everywhere.",
    "Write a CHANGELOG.md with one entry for version 0.1.",
    "Find where the config file is parsed and explain it.",
    "Commit the current changes with a clear message.",
    "Create a .gitignore for a Python project.",
    "Read src/app.py, then write tests for it in tests/test_app.py.",
    "Search for print statements and replace them with logging.",
    "Check which files import os.",
    "Ask the model to suggest a better name for the project.",
    "Run the shell command ls -la and show the output.",
    "Fix the typo 'helo' in README.md.",
    "Add a LICENSE file with the MIT license text.",
    "Search for the word deprecated and list the files.",
    "Read setup.py and pyproject.toml and compare them.",
    "Run the tests, then commit if they pass.",
    "Write a hello world script in scripts/hello.sh and run it.",
    "Delete the unused function old_greet from src/app.py.",
    "List the open TODO items and write them to TODO.md.",
]

# The file-grounded edit grammar of the `code` tool (issue #12, agx/execution/grounded_edit.py),
# built from these files as the tool builds it when a task runs.
REPO_FILES = {
    "src/app.py": "import sys\n\n\ndef greet(name):\n    return 'hello ' + name\n\n\ndef main():\n    print(greet(sys.argv[1]))\n",
    "README.md": "# demo\n\nA demo project that greets people.\n\nRun it with python src/app.py NAME.\n",
}
EDIT_REQUESTS = [
    "Make greet return 'hi ' + name.",
    "Rename greet to welcome everywhere.",
    "Replace 'demo' with 'greeter' in the README.",
    "Make the README title '# Greeter'.",
    "Add a return type hint to greet.",
    "Make greet strip whitespace from name.",
    "Use an f-string in greet.",
    "Print a usage message when no name is given.",
    "Add a docstring to greet.",
    "Add a usage section to the README.",
    "Make main return 0.",
    "Greet in upper case.",
    "Import os as well as sys.",
    "Call main when the module is run as a script.",
    "Say 'A tiny project' instead of 'A demo project' in the README.",
    "Make greet add an exclamation mark.",
    "Rename main to run.",
    "Document the NAME argument in the README.",
    "Greet everyone given on the command line.",
    "Add a license line to the README.",
]


@pytest.fixture()
def engines(pool):
    delta, echo = pool.engine("delta"), pool.engine("echo")
    delta.wait_loaded()
    # Delta samples with repeat_penalty 1.0, Echo with 1.1: one grammar each way, so the
    # penalties sampler is part of the comparison too.
    assert delta.role.sampling.repeat_penalty != echo.role.sampling.repeat_penalty
    yield delta, echo
    delta.constrained_sampling = echo.constrained_sampling = "fast"


def _run(engine, request: ChatRequest, mode: str, cancel: CancelToken | None = None):
    engine.constrained_sampling = mode
    stream = engine.chat(request, cancel)
    return stream.read(), stream.stats


def _both(engine, request: ChatRequest):
    """(fast output, stats), (grammar-first output, stats) from the same cached prompt."""
    # Under the grammar, so the warm-up cannot end after one token (an end-of-text would leave
    # the prompt's batch-computed logits for the first path only).
    warm = ChatRequest(messages=request.messages, grammar=request.grammar, json_schema=request.json_schema,
                       max_tokens=2, temperature=0.0)
    engine.complete(warm)
    fast = _run(engine, request, "fast")
    first = _run(engine, request, "grammar_first")
    return fast, first


def _plan_request(text: str, max_tokens: int = 32) -> ChatRequest:
    messages = build_plan_messages(text, builtin_catalogue(), None, max_tasks=10)
    return ChatRequest(messages=messages, grammar=plan_gbnf(builtin_catalogue()), max_tokens=max_tokens, temperature=0.0)


def _edit_request(text: str, max_tokens: int = 24) -> ChatRequest:
    from agx.execution.code_tool import build_messages
    from agx.execution.grounded_edit import FileView, edit_grammar

    views = [FileView(path, content) for path, content in REPO_FILES.items()]
    return ChatRequest(messages=build_messages(text, views, {}), grammar=edit_grammar(views), max_tokens=max_tokens, temperature=0.0)


@pytest.mark.parametrize("grammar", ["plan", "edit"])
def test_greedy_output_is_byte_identical_to_grammar_first(engines, grammar):
    delta, echo = engines
    if grammar == "plan":
        cases = [(delta, _plan_request(r)) for r in PLAN_REQUESTS]
    else:
        cases = [(echo, _edit_request(r)) for r in EDIT_REQUESTS]
    assert len(cases) >= 20
    rejections = 0
    mismatches = []
    for engine, request in cases:
        (fast_text, fast_stats), (first_text, first_stats) = _both(engine, request)
        if fast_text.encode() != first_text.encode() or fast_stats.finish_reason != first_stats.finish_reason:
            mismatches.append((request.messages[-1]["content"], fast_text, first_text))
        assert fast_stats.completion_tokens == first_stats.completion_tokens
        assert first_stats.grammar_rejections == 0, "grammar-first never asks the grammar about one token"
        rejections += fast_stats.grammar_rejections
    assert not mismatches, mismatches[:3]
    # The model's first choice breaks these grammars now and then: the resampling path was
    # part of what was compared, not only the accept path.
    assert rejections > 0


def test_rejected_argmax_is_resampled_under_the_grammar(engines):
    delta, _ = engines
    messages = [{"role": "user", "content": "Say hello to me in one friendly sentence."}]
    free_text, _ = delta.complete(ChatRequest(messages=messages, max_tokens=1, temperature=0.0))
    assert not free_text.lstrip().startswith("{"), "unconstrained, the model's first token is not JSON"
    request = ChatRequest(messages=messages, grammar=plan_gbnf(builtin_catalogue()), max_tokens=24, temperature=0.0)
    (fast_text, fast_stats), (first_text, _) = _both(delta, request)
    assert fast_stats.grammar_rejections > 0
    assert fast_text.startswith('{')
    assert fast_text == first_text


def test_full_vocabulary_pass_matches_grammar_first(engines, monkeypatch):
    """With the candidate window off, every rejection takes the whole-vocabulary pass."""
    delta, _ = engines
    monkeypatch.setattr(constrained, "FIRST_WINDOW", 10**9)
    request = _plan_request("Say hello to me in one friendly sentence.", max_tokens=24)
    (fast_text, fast_stats), (first_text, _) = _both(delta, request)
    assert fast_stats.grammar_full_passes == fast_stats.grammar_rejections > 0
    assert fast_text == first_text


@pytest.mark.parametrize("mode", constrained.SAMPLING_MODES)
def test_stop_strings_and_max_tokens_behave_as_before(engines, mode):
    delta, _ = engines
    request = _plan_request("Read README.md and summarise it.", max_tokens=48)
    request.stop = ['"tasks"']
    text, stats = _run(delta, request, mode)
    assert '"tasks"' not in text and text.startswith('{')
    assert stats.finish_reason == "stop"
    text, stats = _run(delta, _plan_request("Read README.md and summarise it.", max_tokens=7), mode)
    assert stats.completion_tokens == 7 and stats.finish_reason == "length"


def test_stop_and_length_match_between_modes(engines):
    delta, _ = engines
    request = _plan_request("Run the tests and report failures.", max_tokens=48)
    request.stop = ['"tasks"']
    (fast_text, fast_stats), (first_text, first_stats) = _both(delta, request)
    assert (fast_text, fast_stats.finish_reason, fast_stats.completion_tokens) == (
        first_text, first_stats.finish_reason, first_stats.completion_tokens)


def test_cancel_stops_a_fast_constrained_generation_and_frees_its_sampler(engines):
    delta, _ = engines
    delta.constrained_sampling = "fast"
    token = CancelToken()
    stream = delta.chat(_plan_request("Write tests for every function.", max_tokens=200), token)
    after = 0
    for i, _ in enumerate(stream):
        if token.cancelled:
            after += 1
        if i == 4:
            token.cancel()
    assert stream.stats.finish_reason == "cancelled"
    assert after <= 1 and stream.stats.completion_tokens <= 7
    llama = delta.model.llama
    assert llama._sampler is None, "the fast sampler (and its grammar state) is freed at once"
    # The model is usable again at once, constrained or not.
    text, stats = delta.complete(_plan_request("Read README.md.", max_tokens=6))
    assert text.startswith("{") and stats.finish_reason == "length"


def test_temperature_sampling_stays_inside_the_grammar(engines):
    _, echo = engines
    grammar = 'root ::= ("red" | "green" | "blue") "."'
    messages = [{"role": "user", "content": "Name a colour you like, and say why in detail."}]
    echo.constrained_sampling = "fast"
    rejections = 0
    for seed in range(12):
        text, stats = echo.complete(ChatRequest(messages=messages, grammar=grammar, temperature=1.5, seed=seed, max_tokens=8))
        assert text in ("red.", "green.", "blue."), text
        rejections += stats.grammar_rejections
    assert rejections > 0, "the sampled first draw was refused and redrawn under the grammar"


def test_invalid_grammar_is_a_clear_error_in_both_modes(engines):
    delta, _ = engines
    for mode in constrained.SAMPLING_MODES:
        delta.constrained_sampling = mode
        with pytest.raises(EngineError, match="grammar"):
            delta.complete(ChatRequest(messages=[{"role": "user", "content": "hi"}], grammar="root ::= (", max_tokens=4))


def test_compiled_grammars_are_parsed_once(engines):
    delta, _ = engines
    cache = delta.model.llama.agx_grammars
    request = _plan_request("Read README.md.", max_tokens=2)
    delta.complete(request)
    misses = cache.misses
    delta.complete(request)
    delta.complete(_plan_request("Run the tests.", max_tokens=2))
    assert cache.misses == misses, "the same grammar text is not parsed again"
    assert cache.hits >= 2


def test_plan_grammar_text_is_cached_per_catalogue():
    from agx.planning import schema_grammar as sg
    from agx.planning.tools import ToolCatalogue

    sg.clear_grammar_cache()
    cat = builtin_catalogue()
    first = sg.plan_gbnf(cat)
    assert sg.plan_gbnf(cat) is first
    assert sg.plan_gbnf(cat) == sg.build_plan_gbnf(cat)
    smaller = ToolCatalogue.of(list(cat)[:3])
    assert sg.plan_gbnf(smaller) != first
    assert sg.plan_gbnf(cat, max_tasks=4) != first


def test_unknown_mode_is_refused(agx_config, tmp_path):
    from agx.config import load_config

    with pytest.raises(Exception, match="constrained_sampling"):
        load_config(tmp_path, overrides=["roles.delta.constrained_sampling=fastest"], use_user_file=False)
