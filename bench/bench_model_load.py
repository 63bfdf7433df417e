"""Model load time: agx's engine (header check + llama.cpp load) vs a bare llama_cpp.Llama.

Each sample loads the bundled model fresh (a new EnginePool / a new Llama), so the page cache
is warm for both after the first. Also times the GGUF header read alone: agx's parser vs the
`gguf` package's GGUFReader, which agx used before (it decodes every vocabulary string).

    python bench/bench_model_load.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from agx.config import load_config
from agx.runtime.gguf_info import read_gguf_info
from agx.runtime.pool import EnginePool


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    config = load_config(tmp, overrides=["roles.echo.n_ctx=2048", "roles.echo.n_threads=2"],
                         use_user_file=False).config
    from llama_cpp import Llama
    from gguf import GGUFReader

    agx_s, bare_s, header_s, reader_s = [], [], [], []
    path = None
    for _ in range(args.runs):
        pool = EnginePool(config, tmp)
        engine = pool.engine("echo")
        t = time.perf_counter()
        engine.start_loading()
        engine.wait_loaded()
        agx_s.append(time.perf_counter() - t)
        path = engine.model.settings.path
        pool.close()
        t = time.perf_counter()
        llama = Llama(model_path=path, n_ctx=2048, n_threads=2, n_threads_batch=2, n_batch=512, verbose=False)
        bare_s.append(time.perf_counter() - t)
        llama.close()
        t = time.perf_counter()
        read_gguf_info(path)
        header_s.append(time.perf_counter() - t)
    for _ in range(min(args.runs, 3)):
        t = time.perf_counter()
        GGUFReader(path, "r")
        reader_s.append(time.perf_counter() - t)
    med = statistics.median
    print(f"model load, bundled {Path(path).name} (median of {args.runs}, seconds):")
    print(f"  agx engine {med(agx_s):.3f}   bare llama_cpp.Llama {med(bare_s):.3f}   ratio {med(agx_s) / med(bare_s):.2f}")
    print(f"  header read: agx {med(header_s) * 1000:.1f} ms   gguf.GGUFReader {med(reader_s) * 1000:.0f} ms "
          f"({med(reader_s) / med(header_s):.0f}x)")


if __name__ == "__main__":
    main()
