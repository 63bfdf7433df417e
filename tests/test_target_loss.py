"""The target-only SFT loss (agx/training/target_loss.py) equals the full-logits loss, value and
gradients, on the real bundled model with a real LoRA, for a real masked plan conversation."""

from __future__ import annotations

import pytest

from agx.training.chat_tokens import IGNORE_INDEX, tokenize_conversation
from agx.training.target_loss import target_only_loss, trained_positions

torch = pytest.importorskip("torch")
pytest.importorskip("peft")


@pytest.fixture(scope="module")
def lora_model_and_batch(tiny_model_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = dict(pretrained_model_name_or_path=str(tiny_model_path.parent), gguf_file=tiny_model_path.name)
    tokenizer = AutoTokenizer.from_pretrained(**src)
    model = AutoModelForCausalLM.from_pretrained(**src, dtype=torch.float32)
    model.hf_quantizer = None
    torch.manual_seed(0)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "down_proj"],
                                             init_lora_weights=False, task_type="CAUSAL_LM"))
    messages = [
        {"role": "system", "content": "Plan the request with the tools below.\n- read_files(paths): read files"},
        {"role": "user", "content": "Request: read src/app.py"},
        {"role": "assistant", "content": '{"goal": "Read it", "tasks": [{"id": "t1", "tool": "read_files"}]}'},
    ]
    ex = tokenize_conversation(tokenizer, messages)
    return model, ex


def _full_loss(model, input_ids, labels, divisor):
    logits = model(input_ids=input_ids, use_cache=False).logits.float()
    shift_logits, shift_labels = logits[:, :-1], labels[:, 1:]
    summed = torch.nn.functional.cross_entropy(shift_logits.reshape(-1, shift_logits.size(-1)),
                                               shift_labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum")
    return summed / divisor


def _lora_grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def test_same_loss_and_gradients_as_the_full_logits(lora_model_and_batch):
    model, ex = lora_model_and_batch
    input_ids = torch.tensor([ex["input_ids"]])
    labels = torch.tensor([ex["labels"]])
    trained = int((labels[:, 1:] != IGNORE_INDEX).sum())
    assert 0 < trained < input_ids.size(1) // 2  # a prompt-heavy record, as plan records are

    for divisor in (None, trained + 7):  # per micro-batch mean, and the Trainer's accumulation count
        model.zero_grad()
        full = _full_loss(model, input_ids, labels, divisor or trained)
        full.backward()
        full_grads = _lora_grads(model)
        model.zero_grad()
        fast, count = target_only_loss(model, {"input_ids": input_ids, "labels": labels}, divisor)
        fast.backward()
        fast_grads = _lora_grads(model)
        assert count == trained
        assert fast.item() == pytest.approx(full.item(), rel=1e-5)
        assert full_grads and full_grads.keys() == fast_grads.keys()
        for name, g in full_grads.items():
            assert g.abs().max() > 0, name
            assert torch.allclose(g, fast_grads[name], rtol=1e-4, atol=1e-7), name


def test_trained_positions_are_the_union_over_the_batch():
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 5, 6, IGNORE_INDEX],
                           [IGNORE_INDEX, 7, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]])
    assert trained_positions(labels).tolist() == [0, 1, 2]


def test_a_batch_without_trained_tokens_gives_a_connected_zero(lora_model_and_batch):
    model, ex = lora_model_and_batch
    input_ids = torch.tensor([ex["input_ids"][:12]])
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    loss, count = target_only_loss(model, {"input_ids": input_ids, "labels": labels})
    assert count == 0 and loss.item() == 0.0
    loss.backward()  # no error: still part of the graph
