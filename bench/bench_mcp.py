"""MCP benchmarks: the cost of a tool call through agx, and parallel MCP calls in a DAG.

    python bench/bench_mcp.py [--calls 300] [--width 16] [--sleep 1.0]

Both against tests/mcp_servers/flaky_server.py (the SDK's MCPServer, stdio), started once.

1. Call overhead, same server, same run: N sequential `echo` calls
   a. with the SDK client alone (ClientSession.call_tool on its own event loop) — the floor;
   b. through agx's manager from a plain thread (`McpManager.call`: the hop onto agx's MCP loop);
   c. through agx's manager from another event loop (`call_async`: what the executor does);
   d. as tasks of plans run by the executor (one-task plans: scheduling, events, output capture).
   Reported: median and mean milliseconds per call; agx's overhead = (b|c|d) - a.
2. Parallel efficiency: a wide DAG of W independent `sleep(D)` calls to the server, run by the
   executor with max_parallel = W. Ideal wall time = D (all at once). Efficiency = D / wall.
   Target >= 0.9. Overlap is also checked on the server's clock (every call's interval
   overlaps every other's).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLAKY = ROOT / "tests" / "mcp_servers" / "flaky_server.py"


def ms(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:.3f} ms, mean {statistics.mean(values) * 1000:.3f} ms"


async def sdk_alone(calls: int) -> list[float]:
    from mcp import ClientSession, StdioServerParameters, stdio_client

    times = []
    params = StdioServerParameters(command=sys.executable, args=[str(FLAKY)])
    with open("/dev/null", "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                await session.list_tools()
                for _ in range(20):  # warm-up
                    await session.call_tool("echo", {"text": "hi"})
                for _ in range(calls):
                    t0 = time.perf_counter()
                    await session.call_tool("echo", {"text": "hi"})
                    times.append(time.perf_counter() - t0)
    return times


def agx_sync(manager, calls: int) -> list[float]:
    for _ in range(20):
        manager.call("flaky.echo", {"text": "hi"})
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        manager.call("flaky.echo", {"text": "hi"})
        times.append(time.perf_counter() - t0)
    return times


async def agx_async(manager, calls: int) -> list[float]:
    for _ in range(20):
        await manager.call_async("flaky.echo", {"text": "hi"})
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        await manager.call_async("flaky.echo", {"text": "hi"})
        times.append(time.perf_counter() - t0)
    return times


async def agx_executor(catalogue, workdir: Path, calls: int) -> list[float]:
    from agx.execution.executor import Executor, run_plan
    from agx.execution.policy import ApprovalMode, Policy
    from agx.planning.plan import Plan

    plan = Plan.model_validate({"goal": "g", "tasks": [
        {"id": "t1", "title": "echo", "tool": "flaky.echo", "args": {"text": "hi"}, "deps": []}]})
    times = []
    for i in range(calls + 20):
        ex = Executor(f"p{i}", catalogue, workdir, policy=Policy(ApprovalMode.ALL))
        t0 = time.perf_counter()
        result = await run_plan(plan, ex)
        if i >= 20:
            times.append(time.perf_counter() - t0)
        assert result.ok, ex.nodes["t1"].error
    return times


async def wide_dag(catalogue, workdir: Path, width: int, sleep: float) -> tuple[float, list[tuple[float, float]]]:
    from agx.execution.executor import Executor, run_plan
    from agx.execution.policy import ApprovalMode, Policy
    from agx.planning.plan import Plan

    plan = Plan.model_validate({"goal": "wide", "tasks": [
        {"id": f"t{i}", "title": f"sleep {i}", "tool": "flaky.sleep", "args": {"seconds": sleep, "tag": str(i)},
         "deps": []} for i in range(1, width + 1)]})
    ex = Executor("p-wide", catalogue, workdir, max_parallel=width, policy=Policy(ApprovalMode.ALL))
    t0 = time.perf_counter()
    result = await run_plan(plan, ex)
    wall = time.perf_counter() - t0
    assert result.ok, {i: n.error for i, n in ex.nodes.items() if n.error}
    spans = [tuple(map(float, n.output.split()[1:3])) for n in ex.nodes.values()]
    return wall, spans


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--sleep", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=3, help="wide-DAG repetitions")
    args = ap.parse_args()

    from agx.execution.builtin_tools import builtin_catalogue
    from agx.mcp.catalogue import with_mcp_tools
    from agx.mcp.manager import McpManager, set_process_manager
    from agx.mcp.settings import ServerSpec

    print(f"1. call overhead, {args.calls} sequential echo calls to one stdio server (tests/mcp_servers/flaky_server.py)")
    sdk = asyncio.run(sdk_alone(args.calls))
    print(f"   SDK ClientSession alone:          {ms(sdk)}")
    workdir = Path(tempfile.mkdtemp(prefix="agx-bench-mcp-"))
    manager = McpManager([ServerSpec("flaky", "bench", command=sys.executable, args=(str(FLAKY),))], base_dir=workdir)
    set_process_manager(manager)
    try:
        t0 = time.perf_counter()
        statuses = manager.wait_ready()
        print(f"   (agx: server up with {len(statuses[0].tools)} tools in {time.perf_counter() - t0:.2f} s)")
        catalogue, _ = with_mcp_tools(builtin_catalogue(), statuses)
        sync = agx_sync(manager, args.calls)
        print(f"   agx McpManager.call (a thread):   {ms(sync)}; overhead {1000 * (statistics.median(sync) - statistics.median(sdk)):+.3f} ms")
        aio = asyncio.run(agx_async(manager, args.calls))
        print(f"   agx call_async (another loop):    {ms(aio)}; overhead {1000 * (statistics.median(aio) - statistics.median(sdk)):+.3f} ms")
        exe = asyncio.run(agx_executor(catalogue, workdir, args.calls))
        print(f"   agx executor, one-task plans:     {ms(exe)}; overhead {1000 * (statistics.median(exe) - statistics.median(sdk)):+.3f} ms")

        print(f"2. parallel efficiency: {args.width} independent sleep({args.sleep:g} s) MCP calls, max_parallel {args.width}")
        effs = []
        for r in range(args.rounds):
            wall, spans = asyncio.run(wide_dag(catalogue, workdir, args.width, args.sleep))
            overlap = max(s for s, _ in spans) < min(e for _, e in spans)
            eff = args.sleep / wall
            effs.append(eff)
            print(f"   round {r + 1}: wall {wall:.3f} s (ideal {args.sleep:g} s), efficiency {eff:.3f}; "
                  f"all calls overlapped on the server's clock: {overlap}")
        print(f"   median efficiency {statistics.median(effs):.3f} (target >= 0.9)")
    finally:
        set_process_manager(None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
