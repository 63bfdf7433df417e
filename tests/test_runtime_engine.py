"""The in-process engine on the real bundled model."""

from __future__ import annotations

import json
import threading
import time

import pytest

from agx.runtime.engine import CancelToken, ChatRequest, EngineError


def _ask(text: str, **kw) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], **kw)


def test_streaming_yields_text_and_stats(pool):
    engine = pool.engine("echo")
    stream = engine.chat(_ask("Name three colours.", max_tokens=24, temperature=0.0))
    pieces = list(stream)
    assert len(pieces) >= 2, "a streamed answer arrives in several pieces"
    assert "".join(pieces) == stream.text and stream.text.strip()
    s = stream.stats
    assert s.prompt_tokens > 5
    assert 1 <= s.completion_tokens <= 24
    assert 0 < s.time_to_first_token_s <= s.total_s
    assert s.finish_reason in ("stop", "length")
    if s.completion_tokens > 2:
        assert s.tokens_per_s > 0


def test_max_tokens_is_respected(pool):
    stream = pool.engine("echo").chat(_ask("Count from one to one hundred in words.", max_tokens=8, temperature=0.0))
    stream.read()
    assert stream.stats.completion_tokens <= 8
    assert stream.stats.finish_reason == "length"


def test_schema_constrained_output_validates(pool):
    import jsonschema

    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 30},
            "country": {"enum": ["France", "Germany", "Italy"]},
            "population_millions": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 3},
        },
        "required": ["city", "country", "population_millions", "tags"],
        "additionalProperties": False,
    }
    text, stats = pool.engine("delta").complete(
        _ask("Describe Paris as JSON.", json_schema=schema, max_tokens=120, temperature=0.0)
    )
    data = json.loads(text)
    jsonschema.validate(data, schema)
    assert stats.finish_reason == "stop"


def test_stop_strings_end_generation(pool):
    text, stats = pool.engine("echo").complete(
        _ask("List the numbers 1, 2, 3, 4, 5 separated by commas.", stop=["3"], max_tokens=40, temperature=0.0)
    )
    assert "3" not in text and "4" not in text


def test_cancel_stops_within_a_token(pool):
    engine = pool.engine("echo")
    engine.wait_loaded()
    token = CancelToken()
    stream = engine.chat(_ask("Write a very long story about a dragon.", max_tokens=400, temperature=0.7), token)
    seen_after_cancel = 0
    for i, _ in enumerate(stream):
        if token.cancelled:
            seen_after_cancel += 1
        if i == 5:
            t0 = time.perf_counter()
            token.cancel()
    elapsed = time.perf_counter() - t0
    assert stream.stats.finish_reason == "cancelled"
    assert seen_after_cancel <= 1, "at most the token already in flight arrives after cancel"
    assert stream.stats.completion_tokens <= 8
    assert elapsed < 1.0


def test_cancel_before_start_generates_nothing(pool):
    token = CancelToken()
    token.cancel()
    stream = pool.engine("echo").chat(_ask("Hello", max_tokens=50), token)
    assert stream.read() == ""
    assert stream.stats.finish_reason == "cancelled"


def test_two_threads_on_one_model_are_serialized(pool):
    engine = pool.engine("echo")
    engine.wait_loaded()
    model = engine.model
    results: dict[int, str] = {}
    errors: list[BaseException] = []
    overlap = {"max": 0, "now": 0}
    guard = threading.Lock()
    real_generate = model.llama.generate

    def counting_generate(*a, **kw):
        with guard:
            overlap["now"] += 1
            overlap["max"] = max(overlap["max"], overlap["now"])
        try:
            yield from real_generate(*a, **kw)
        finally:
            with guard:
                overlap["now"] -= 1

    model.llama.generate = counting_generate  # instrument the real model: how many run at once
    try:
        def worker(i: int) -> None:
            try:
                results[i] = engine.complete(_ask(f"Say the number {i}.", max_tokens=16, temperature=0.0))[0]
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        del model.llama.generate
    assert not errors
    assert sorted(results) == [0, 1, 2] and all(results.values())
    assert overlap["max"] == 1, "generations on one llama.cpp context never overlap"


def test_roles_sharing_a_file_share_one_load(pool):
    echo, delta = pool.engine("echo"), pool.engine("delta")
    assert echo is not delta, "each role keeps its own sampling"
    assert echo.model is delta.model and pool.shared_models() == 1
    echo.wait_loaded()
    assert delta.loaded, "loading one role loaded the other"


def test_roles_with_different_context_load_separately(agx_config, tmp_path):
    from agx.runtime.pool import EnginePool

    agx_config.roles.delta.n_ctx = 1024
    p = EnginePool(agx_config, tmp_path)
    try:
        assert p.engine("echo").model is not p.engine("delta").model
        assert p.shared_models() == 2
    finally:
        p.close()


def test_concurrent_loads_leave_stdout_and_stderr_alone(agx_config, tmp_path):
    """Regression: llama-cpp-python points fds 1 and 2 at /dev/null while it loads; two loads at
    once (Echo and Delta at start-up) interleaved that and left fd 1 or 2 on /dev/null for
    good, so everything printed afterwards vanished. Loads now take turns."""
    import os

    from agx.runtime.pool import EnginePool

    before = [os.fstat(1), os.fstat(2)]
    for round_ in range(3):
        agx_config.roles.delta.n_ctx = 1024 + 256 * round_  # a second model, loaded beside Echo's
        p = EnginePool(agx_config, tmp_path)
        try:
            engines = [p.engine("echo"), p.engine("delta")]
            assert engines[0].model is not engines[1].model
            for e in engines:
                e.start_loading()
            for e in engines:
                e.wait_loaded(timeout=120)
        finally:
            p.close()
        after = [os.fstat(1), os.fstat(2)]
        assert all(os.path.samestat(a, b) for a, b in zip(before, after)), f"round {round_}: fd 1/2 redirected"


def test_background_load_then_chat(pool):
    engine = pool.engine("echo")
    engine.start_loading()
    engine.wait_loaded(timeout=60)
    assert engine.loaded and engine.load_seconds is not None
    info = engine.info()
    assert info.backend == "llama_cpp" and info.is_tiny_default and info.accelerator in ("CPU", "CUDA", "Metal", "GPU", "Vulkan")


def test_corrupt_model_gives_clear_error(agx_config, tmp_path):
    from agx.runtime.pool import EnginePool

    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\x00" * 20)
    agx_config.roles.echo.model = str(bad)
    p = EnginePool(agx_config, tmp_path)
    with pytest.raises(EngineError) as exc:
        p.engine("echo").chat(_ask("hi")).read()
    assert "broken.gguf" in str(exc.value)
    p.close()


def test_missing_model_file_names_the_role(agx_config, tmp_path):
    from agx.runtime.pool import EnginePool

    agx_config.roles.delta.model = "hf://someone/some-repo/model-Q4_K_M.gguf"
    with pytest.raises(EngineError, match=r"roles\.delta\.model: .*agx models pull delta"):
        EnginePool(agx_config, tmp_path).engine("delta")
