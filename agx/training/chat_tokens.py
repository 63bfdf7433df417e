"""Tokenise chat conversations for SFT with the loss on assistant tokens only.

Why not trl's `assistant_only_loss`: it needs `{% generation %}` markers in the chat template,
and SmolLM2's (like most GGUF-embedded templates) has none. Instead the conversation is rendered
with the model's own template and cut into segments at each assistant turn:

    render(messages[:i], add_generation_prompt=True)  -> everything the model is given
    render(messages[:i+1])                            -> ... plus the assistant's answer

Each segment is tokenised on its own and the ids concatenated. That mirrors inference exactly:
llama.cpp tokenises the prompt as a whole and the answer is generated token by token after it,
so no BPE merge across the prompt/answer boundary can make training see other tokens than
inference does. Labels are -100 except on assistant content and the end-of-turn token that
closes it (the model must learn to stop); whitespace the template adds after that token is
not trained on.
"""

from __future__ import annotations

from typing import Any

IGNORE_INDEX = -100


class ChatTemplateError(ValueError):
    """The tokenizer's chat template does not render conversations incrementally."""


def _render(tokenizer, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def _ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def tokenize_conversation(tokenizer, messages: list[dict[str, Any]]) -> dict[str, list[int]]:
    """input_ids and labels (assistant tokens only) for one conversation."""
    if not any(m.get("role") == "assistant" for m in messages):
        raise ChatTemplateError("the conversation has no assistant message to learn from")
    input_ids: list[int] = []
    labels: list[int] = []
    rendered = ""
    for i, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        prompt_text = _render(tokenizer, messages[:i], add_generation_prompt=True)
        full_text = _render(tokenizer, messages[: i + 1], add_generation_prompt=False)
        if not prompt_text.startswith(rendered) or not full_text.startswith(prompt_text):
            raise ChatTemplateError(
                "the chat template does not render a conversation as a prefix of its continuation; "
                "cannot tell the assistant's tokens apart"
            )
        context_ids = _ids(tokenizer, prompt_text[len(rendered):])
        answer_text = full_text[len(prompt_text):]
        # The template's whitespace after the end-of-turn token belongs to the next context.
        stripped = answer_text.rstrip()
        trailing = answer_text[len(stripped):]
        answer_ids = _ids(tokenizer, stripped)
        input_ids += context_ids + answer_ids
        labels += [IGNORE_INDEX] * len(context_ids) + answer_ids
        if trailing:
            trail_ids = _ids(tokenizer, trailing)
            input_ids += trail_ids
            labels += [IGNORE_INDEX] * len(trail_ids)
        rendered = full_text
    return {"input_ids": input_ids, "labels": labels}


def trained_text(tokenizer, example: dict[str, list[int]]) -> str:
    """The text the loss is computed on (for checking masks by eye and in tests)."""
    return tokenizer.decode([t for t, l in zip(example["input_ids"], example["labels"]) if l != IGNORE_INDEX])
