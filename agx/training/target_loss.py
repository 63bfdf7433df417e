"""The SFT loss computed from the LM head's output at the trained positions only.

Why: a plan record is ~70% prompt (rules, the tool catalogue, the request) whose labels are
masked, yet a causal LM's forward projects every position onto the whole vocabulary (SmolLM2:
576 x 49,152, a fifth of the model's multiply-adds per token) before the masked positions are
thrown away. trl's fused head skips them only on Triton devices; on a CPU it scores them all.
Here the model is asked for logits at the positions whose *next* token is trained
(`logits_to_keep` as an index tensor, which transformers' causal LMs accept), and the
cross-entropy is the same sum over trained tokens, divided the same way (by the accumulation
batch's trained-token count when the Trainer passes it), so the gradients equal the full
computation's up to float rounding (tests/test_target_loss.py checks both).
"""

from __future__ import annotations

from typing import Any

IGNORE_INDEX = -100


def trained_positions(labels) -> Any:
    """Sequence positions whose next token carries a label (union over the batch), ascending."""
    import torch

    shifted = labels[:, 1:] != IGNORE_INDEX
    return torch.nonzero(shifted.any(dim=0), as_tuple=False).flatten()


def target_only_loss(model, inputs: dict[str, Any], num_items_in_batch=None):
    """(loss, number of trained tokens) for one micro-batch, logits only where they are scored."""
    import torch
    import torch.nn.functional as F

    labels = inputs["labels"]
    positions = trained_positions(labels)
    model_inputs = {k: v for k, v in inputs.items() if k not in ("labels", "num_items_in_batch")}
    model_inputs["use_cache"] = False
    if positions.numel() == 0:
        # Nothing to learn in this micro-batch: a zero that is still connected to the graph.
        out = model(**model_inputs, logits_to_keep=1)
        return out.logits.sum() * 0.0, 0
    out = model(**model_inputs, logits_to_keep=positions)
    logits = out.logits.float()  # [batch, len(positions), vocab]
    targets = labels[:, positions + 1]  # the token each kept position predicts
    summed = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1),
                             ignore_index=IGNORE_INDEX, reduction="sum")
    count = int((targets != IGNORE_INDEX).sum())
    divisor = num_items_in_batch if num_items_in_batch is not None else max(count, 1)
    return summed / torch.as_tensor(divisor, dtype=summed.dtype, device=summed.device), count
