"""Assistant-only loss masks with SmolLM2's real tokenizer (its chat template has no
{% generation %} markers, so trl's assistant_only_loss cannot be used)."""

from __future__ import annotations

import pytest

from agx.training.chat_tokens import IGNORE_INDEX, ChatTemplateError, tokenize_conversation, trained_text

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tokenizer(tiny_model_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model_path.parent), gguf_file=tiny_model_path.name)


def test_only_assistant_content_and_end_of_turn_are_trained(tokenizer):
    messages = [
        {"role": "system", "content": "You are Delta."},
        {"role": "user", "content": "Plan: run the tests"},
        {"role": "assistant", "content": '{"goal": "Run tests"}'},
        {"role": "user", "content": "Again"},
        {"role": "assistant", "content": "ok then"},
    ]
    ex = tokenize_conversation(tokenizer, messages)
    assert len(ex["input_ids"]) == len(ex["labels"])
    assert trained_text(tokenizer, ex) == '{"goal": "Run tests"}<|im_end|>ok then<|im_end|>'
    # The whole sequence is the chat template's rendering; masked labels never leak prompt text.
    assert tokenizer.decode(ex["input_ids"]) == tokenizer.apply_chat_template(messages, tokenize=False)
    masked = [t for t, l in zip(ex["input_ids"], ex["labels"]) if l == IGNORE_INDEX]
    assert "Plan: run the tests" in tokenizer.decode(masked)


def test_prompt_tokens_match_inference_tokenization(tokenizer):
    """Training sees the prompt tokenised exactly as a whole, as llama.cpp does at inference."""
    messages = [{"role": "user", "content": 'Request: explain {"x": 1}'}, {"role": "assistant", "content": '{"goal": "x"}'}]
    ex = tokenize_conversation(tokenizer, messages)
    prompt = tokenizer.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert ex["input_ids"][: len(prompt_ids)] == list(prompt_ids)
    assert all(label == IGNORE_INDEX for label in ex["labels"][: len(prompt_ids)])
    assert ex["labels"][len(prompt_ids)] != IGNORE_INDEX


def test_conversation_without_answer_is_rejected(tokenizer):
    with pytest.raises(ChatTemplateError):
        tokenize_conversation(tokenizer, [{"role": "user", "content": "hi"}])
