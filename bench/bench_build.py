"""What the portable llama.cpp build costs: decode tok/s of the installed build vs another build.

    scripts/install.sh --native --venv /tmp/agx-native          # a -march=native build, once
    python bench/bench_build.py --other-lib /tmp/agx-native/lib/python3.11/site-packages/llama_cpp/lib \
        --other-name native [--reps 5] [--tokens 128] [--threads 2]

Each measurement is a fresh child process (llama-cpp-python picks its libraries at import, and
LLAMA_CPP_LIB_PATH points it at the other build), loading the bundled model and decoding greedily
with a bare `Llama.generate` loop; the two builds alternate so drift on a shared VM hits both.
A child that dies from a signal is reported as such (a native build that uses instructions the
CPU cannot execute dies with SIGILL: that is the point of the portable build).
Prints the median tok/s per build and the ratio installed / other.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CHILD = r"""
import json, sys, time
from llama_cpp import Llama, llama_print_system_info
model, n, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
llm = Llama(model_path=model, n_ctx=512, n_threads=threads, n_threads_batch=threads, verbose=False)
tokens = llm.tokenize(b"Write a long, detailed story about a lighthouse keeper who finds a map.")
count, first = 0, None
for tok in llm.generate(tokens, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0):
    count += 1
    if first is None:
        first = time.perf_counter()
    if count >= n:
        break
end = time.perf_counter()
info = llama_print_system_info().decode()
sets = [p.split("=")[0].split(":")[-1].strip() for p in info.split("|") if p.strip().endswith("= 1")]
print(json.dumps({"tok_s": (count - 1) / (end - first), "sets": sets}))
"""


def run_child(model: str, tokens: int, threads: int, lib: str | None) -> dict:
    env = dict(os.environ)
    if lib:
        env["LLAMA_CPP_LIB_PATH"] = lib
    done = subprocess.run([sys.executable, "-c", CHILD, model, str(tokens), str(threads)], env=env,
                          capture_output=True, text=True, timeout=600)
    if done.returncode < 0:
        return {"died": signal.Signals(-done.returncode).name}
    if done.returncode != 0:
        return {"died": f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    from agx.runtime.bundled import bundled_model_path

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--other-lib", required=True, help="the other build's llama_cpp/lib folder")
    ap.add_argument("--other-name", default="other")
    ap.add_argument("--model", default=None)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    model = args.model or str(bundled_model_path())
    results: dict[str, list[dict]] = {"installed": [], args.other_name: []}
    for rep in range(args.reps):
        for name, lib in (("installed", None), (args.other_name, args.other_lib)):
            r = run_child(model, args.tokens, args.threads, lib)
            results[name].append(r)
            print(f"rep {rep + 1} {name:>10}: " + (f"{r['tok_s']:.1f} tok/s" if "tok_s" in r else f"DIED ({r['died']})"),
                  flush=True)
    print()
    medians = {}
    for name, runs in results.items():
        ok = [r["tok_s"] for r in runs if "tok_s" in r]
        died = [r["died"] for r in runs if "died" in r]
        sets = next((r["sets"] for r in runs if "sets" in r), [])
        if ok:
            medians[name] = statistics.median(ok)
            print(f"{name:>10}: median {medians[name]:.1f} tok/s over {len(ok)} runs "
                  f"(min {min(ok):.1f}, max {max(ok):.1f}); instruction sets: {', '.join(sets)}")
        if died:
            print(f"{name:>10}: died {len(died)}× — {died[0]}")
    if len(medians) == 2:
        ratio = medians["installed"] / medians[args.other_name]
        print(f"\nratio installed / {args.other_name}: {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
