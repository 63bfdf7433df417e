#!/usr/bin/env bash
# The fine-tuning loop in one command (for a worker, or a laptop for a tiny run):
#   build data -> train a LoRA (scripts/train.py) -> convert to a GGUF adapter -> evaluate ->
#   install into adapters/<name>/ with manifest.json (base name + sha256, rank, alpha, targets,
#   dataset sha256, eval metrics).
#
#   scripts/train_and_convert.sh --role delta --name agenix-delta-v1 \
#       --base-gguf models/qwen2.5-coder-32b-instruct-q4_k_m.gguf --base-hf Qwen/Qwen2.5-Coder-32B-Instruct \
#       --taskbench ../shared/data/taskbench/multimedia --epochs 2
#   scripts/train_and_convert.sh --role echo --name agenix-echo-v1 --sessions ~/src/repo1 --sessions ~/src/repo2 \
#       --base-gguf models/llama-3.1-8b-instruct-q4_k_m.gguf --base-hf meta-llama/Llama-3.1-8B-Instruct
#   scripts/train_and_convert.sh --name tiny --max-steps 3 --count 40 --eval-limit 2   # CPU smoke run
#   scripts/train_and_convert.sh --name agenix-delta-smollm2 --mix --count 300 --taskbench ../shared/data/taskbench/multimedia \
#       --max-steps 126 --lr 6e-4 --time-budget-min 68 --group-by-length --eval-limit 0 --default-for delta --outtype f16
#       # the shipped Delta adapter (agx/training/delta_mix.py, compact prompt; README Fine-tuning)
#   --mix --composed N adds N train records that ask two TaskBench train requests in one message
#       (delta_mix.compose_plans: both plans side by side); --coding-train N keeps N coding requests (0: all);
#       --io-types ends each TaskBench tool's description with its input and output types;
#       --chains N adds N synthetic multi-tool requests walked over the catalogue's types (tool_chains.py);
#       --singles N adds N synthetic one-tool requests from the same clauses (--singles-context:
#       each wrapped in a backstory and maybe a purpose, as TaskBench's one-tool requests are)
#   --init-adapter FILE_OR_DIR continues training an adapter (train.py); --scale S records the LoRA scale it is measured best at
#   --dropout P, --cpu-bf16 auto|on|off go to train.py; --no-install stops after step 4 (a first stage:
#       scripts/train_delta_smollm2.sh chains two runs into the shipped Delta adapter)
#
# --base-gguf is what agx runs (the adapter is converted for it); --base-hf is what trains (the
# same weights unquantized; default: the GGUF itself, dequantized by transformers). Extra
# arguments after `--` go to scripts/train.py. With several GPUs it trains under
# `accelerate launch` (NUM_GPUS overrides the count).
set -euo pipefail

ROLE=delta
NAME=""
BASE_GGUF="bundled:smollm2"
BASE_HF=""
OUT=""
COUNT=600
TEACHER=""
DISTILL=50
TASKBENCH=()
SESSIONS=()
EVAL_LIMIT=50
MIX=0
MIX_STYLE=compact
COMPOSED=0
IO_TYPES=0
CHAINS=0
SINGLES=0
SINGLES_CONTEXT=0
CODING_TRAIN=""  # coding requests kept for training; empty: delta_mix's own default (0: all)
TRAIN_ARGS=()
INSTALL_ARGS=()
INSTALL=1
COMMAND_LINE="${TRAINING_COMMAND_LINE:-scripts/train_and_convert.sh $*}"  # recorded in the manifest (training_command)
usage() { sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --role) ROLE="$2"; shift 2 ;;
    --name) NAME="$2"; shift 2 ;;
    --base-gguf) BASE_GGUF="$2"; shift 2 ;;
    --base-hf) BASE_HF="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --count) COUNT="$2"; shift 2 ;;
    --teacher) TEACHER="$2"; shift 2 ;;
    --distill) DISTILL="$2"; shift 2 ;;
    --taskbench) TASKBENCH+=("$2"); shift 2 ;;
    --sessions) SESSIONS+=("$2"); shift 2 ;;
    --eval-limit) EVAL_LIMIT="$2"; shift 2 ;;
    --mix) MIX=1; shift ;;
    --mix-style) MIX_STYLE="$2"; shift 2 ;;
    --composed) COMPOSED="$2"; shift 2 ;;
    --coding-train) CODING_TRAIN="$2"; shift 2 ;;
    --io-types) IO_TYPES=1; shift ;;
    --chains) CHAINS="$2"; shift 2 ;;
    --singles) SINGLES="$2"; shift 2 ;;
    --singles-context) SINGLES_CONTEXT=1; shift ;;
    --default-for) INSTALL_ARGS+=(--default-for "$2"); shift 2 ;;
    --outtype) INSTALL_ARGS+=(--outtype "$2"); shift 2 ;;
    --scale) INSTALL_ARGS+=(--scale "$2"); shift 2 ;;
    --group-by-length) TRAIN_ARGS+=("$1"); shift ;;
    --no-install) INSTALL=0; shift ;;
    --epochs|--max-steps|--lr|--rank|--alpha|--targets|--batch-size|--grad-accum|--max-seq-len|--time-budget-min|--threads|--init-adapter|--warmup-ratio|--dropout|--cpu-bf16)
      TRAIN_ARGS+=("$1" "$2"); shift 2 ;;
    -h|--help) usage 0 ;;
    --) shift; TRAIN_ARGS+=("$@"); break ;;
    *) echo "train_and_convert.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ -n "$NAME" ]] || { echo "train_and_convert.sh: --name is required (e.g. agenix-delta-v1)" >&2; exit 2; }
[[ "$ROLE" == delta || "$ROLE" == echo ]] || { echo "train_and_convert.sh: --role is delta or echo" >&2; exit 2; }
HERE="$(cd "$(dirname "$0")" && pwd)"
PY="${PYTHON:-python3}"
AGX=("$PY" -m agx)
OUT="${OUT:-runs/$NAME}"
DATA="$OUT/data"
PEFT="$OUT/peft"
mkdir -p "$OUT"
log() { printf '\n== %s\n' "$*" >&2; }

# The GGUF base as a file path (bundled:/hf:// resolved by agx).
GGUF_PATH="$("$PY" - "$BASE_GGUF" <<'PY'
import sys
from pathlib import Path
from agx.config import load_config
from agx.runtime.models import resolve_model
spec = sys.argv[1]
try:
    r = resolve_model(spec, load_config(Path.cwd(), use_user_file=False).config, Path.cwd())
except Exception as exc:
    sys.exit(f"train_and_convert.sh: --base-gguf {spec}: {exc}")
if r.path is None or not r.present:
    sys.exit(f"train_and_convert.sh: base {spec} is not available locally (agx models pull?)")
print(r.path)
PY
)"
TRAIN_BASE="${BASE_HF:-$GGUF_PATH}"

log "1/5 data ($ROLE)"
if [[ "$ROLE" == delta && "$MIX" == 1 ]]; then
  MIX_ARGS=(-o "$DATA" --coding "$COUNT" --style "$MIX_STYLE" --composed "$COMPOSED" --chains "$CHAINS")
  [[ "$SINGLES" = 0 ]] || MIX_ARGS+=(--singles "$SINGLES")
  [[ "$SINGLES_CONTEXT" = 0 ]] || MIX_ARGS+=(--singles-context)
  [[ -z "$CODING_TRAIN" ]] || MIX_ARGS+=(--coding-train "$CODING_TRAIN")
  [[ "$IO_TYPES" = 0 ]] || MIX_ARGS+=(--io-types)
  for tb in "${TASKBENCH[@]+"${TASKBENCH[@]}"}"; do MIX_ARGS+=(--taskbench "$tb"); done
  "$PY" -m agx.training.delta_mix "${MIX_ARGS[@]}"
elif [[ "$ROLE" == delta ]]; then
  DATA_ARGS=(data delta -o "$DATA" --count "$COUNT")
  [[ -n "$TEACHER" ]] && DATA_ARGS+=(--teacher "$TEACHER" --distill "$DISTILL")
  for tb in "${TASKBENCH[@]+"${TASKBENCH[@]}"}"; do DATA_ARGS+=(--taskbench "$tb"); done
  "${AGX[@]}" "${DATA_ARGS[@]}"
else
  "${AGX[@]}" data echo -o "$DATA" "${SESSIONS[@]+"${SESSIONS[@]}"}"
fi
TRAIN_FILE="$DATA/$ROLE-train.jsonl"
VAL_FILE="$DATA/$ROLE-validation.jsonl"
EVAL_DATA=()
[[ -s "$VAL_FILE" ]] && EVAL_DATA=(--eval-data "$VAL_FILE")

log "2/5 train (base $TRAIN_BASE)"
NGPU="${NUM_GPUS:-$("$PY" -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 0)}"
LAUNCH=("$PY")
if [[ "$NGPU" -gt 1 ]]; then LAUNCH=(accelerate launch --num_processes "$NGPU"); fi
"${LAUNCH[@]}" "$HERE/train.py" --base "$TRAIN_BASE" --data "$TRAIN_FILE" "${EVAL_DATA[@]+"${EVAL_DATA[@]}"}" \
  --out "$PEFT" "${TRAIN_ARGS[@]+"${TRAIN_ARGS[@]}"}"

log "3/5 convert to GGUF"
"${AGX[@]}" adapters convert "$PEFT" --base "$GGUF_PATH" -o "$OUT/adapter.gguf"

log "4/5 evaluate"
METRICS="$OUT/eval-metrics.json"
EVAL_SUMMARIES=()
if [[ "$ROLE" == delta && "$EVAL_LIMIT" -gt 0 ]]; then
  for set in "$VAL_FILE" "$DATA"/taskbench-*-validation.jsonl "$DATA"/taskbench-*-renamed.jsonl "$DATA"/taskbench-*-unseen-tools.jsonl; do
    [[ -s "$set" ]] || continue
    res="$OUT/eval-$(basename "$set" .jsonl).jsonl"
    "${AGX[@]}" --set "roles.delta.model=$GGUF_PATH" eval plans "$set" --adapter "$OUT/adapter.gguf" \
      --limit "$EVAL_LIMIT" --out "$res" --quiet
    EVAL_SUMMARIES+=("${res%.jsonl}.summary.json")
  done
fi
"$PY" - "$METRICS" "$PEFT/metrics.json" "${EVAL_SUMMARIES[@]+"${EVAL_SUMMARIES[@]}"}" <<'PY'
import json, sys
out, train, *evals = sys.argv[1:]
t = json.load(open(train))
metrics = {"train": {k: t.get(k) for k in ("train_loss", "eval_loss", "eval_perplexity", "steps", "tokens_per_second", "stopped_by_time_budget")}}
for path in evals:
    s = json.load(open(path))
    key = s["dataset"].rsplit("/", 1)[-1].removesuffix(".jsonl")
    metrics[key] = {k: s[k] for k in ("samples", "parseable_pct", "valid_pct", "node_f1", "edge_f1")}
json.dump(metrics, open(out, "w"), indent=2)
print(json.dumps(metrics, indent=2))
PY

if [[ "$INSTALL" == 0 ]]; then
  echo "done: PEFT adapter in $PEFT, GGUF adapter $OUT/adapter.gguf (not installed: --no-install)"
  exit 0
fi
log "5/5 install adapters/$NAME"
[[ "$ROLE" == delta && "$MIX" == 1 ]] && INSTALL_ARGS+=(--prompt-style "$MIX_STYLE" --purpose plan)  # a plans-only mix
"${AGX[@]}" adapters install "$PEFT" --base "$GGUF_PATH" --name "$NAME" --dataset "$TRAIN_FILE" --metrics "$METRICS" --force \
  --training-command "$COMMAND_LINE" "${INSTALL_ARGS[@]+"${INSTALL_ARGS[@]}"}"
echo "done: select it with --set roles.$ROLE.adapter=$NAME (or roles.$ROLE.adapter in agx.toml)"
