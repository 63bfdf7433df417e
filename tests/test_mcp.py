"""MCP servers' tools in agx, against real servers as subprocesses: the third-party
`mcp-server-time` and `mcp-server-git` (installed by the test extra) and tests/mcp_servers/
flaky_server.py (the SDK's MCPServer) for the failure cases. No mocks."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from agx.execution.executor import Executor, Status, run_plan
from agx.execution.policy import ApprovalMode, Policy
from agx.mcp.catalogue import mcp_tool_specs, with_mcp_tools
from agx.mcp.manager import McpCallError, McpManager, State, set_process_manager
from agx.mcp.settings import ServerSpec, read_mcp_json
from agx.execution.builtin_tools import builtin_catalogue
from agx.planning.plan import Plan
from agx.planning.tools import Risk

FLAKY = Path(__file__).parent / "mcp_servers" / "flaky_server.py"


def server_bin(name: str) -> str:
    """A console script of the test extra (mcp-server-time, mcp-server-git), beside this Python."""
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    assert found, f"{name} is not installed: pip install -e '.[test]'"
    return found


def flaky(name: str = "flaky", timeout_s: float = 30.0, **kw) -> ServerSpec:
    return ServerSpec(name, "test", command=sys.executable, args=(str(FLAKY),), timeout_s=timeout_s, **kw)


def time_server() -> ServerSpec:
    return ServerSpec("time", "test", command=server_bin("mcp-server-time"))


def git_server(repo: Path) -> ServerSpec:
    return ServerSpec("git", "test", command=server_bin("mcp-server-git"), args=("--repository", str(repo)))


@pytest.fixture()
def manager_of(tmp_path):
    made: list[McpManager] = []

    def make(*specs: ServerSpec) -> McpManager:
        m = McpManager(list(specs), base_dir=tmp_path)
        made.append(m)
        set_process_manager(m)  # what the executor's MCP runner uses
        return m

    yield make
    set_process_manager(None)
    for m in made:
        m.close()


def task(tid: str, tool: str, deps=(), **args) -> dict:
    return {"id": tid, "title": tid, "tool": tool, "args": args, "deps": list(deps)}


def run_tasks(catalogue, workdir: Path, *tasks: dict, policy=None, **kw) -> Executor:
    ex = Executor("p-mcp", catalogue, workdir, policy=policy or Policy(ApprovalMode.ALL), **kw)
    asyncio.run(run_plan(Plan.model_validate({"goal": "g", "tasks": list(tasks)}), ex))
    return ex


# -- real third-party servers ----------------------------------------------------------------
def test_real_servers_are_discovered_with_risk_from_annotations_and_called(manager_of, git_repo):
    m = manager_of(time_server(), git_server(git_repo))
    statuses = {s.name: s for s in m.wait_ready()}
    assert statuses["time"].state is State.UP and statuses["git"].state is State.UP
    assert {t.name for t in statuses["time"].tools} >= {"get_current_time", "convert_time"}
    specs, left_out = mcp_tool_specs(statuses.values())
    assert left_out == []
    by_name = {s.name: s for s in specs}
    assert by_name["time.get_current_time"].risk is Risk.READ
    assert by_name["git.git_status"].risk is Risk.READ  # readOnlyHint
    assert by_name["git.git_commit"].risk is Risk.EXEC  # not read-only: asks like a command
    assert by_name["git.git_reset"].risk is Risk.EXEC  # destructiveHint
    assert all(s.runnable for s in specs)
    assert by_name["time.get_current_time"].args_schema["required"] == ["timezone"]

    out = m.call("time.get_current_time", {"timezone": "Etc/UTC"})
    assert not out.is_error and json.loads(out.text)["timezone"] == "Etc/UTC"
    log = m.call("git.git_log", {"repo_path": str(git_repo)})
    assert "initial" in log.text
    bad = m.call("time.get_current_time", {"timezone": "Nowhere/Atlantis"})
    assert bad.is_error and "Nowhere/Atlantis" in bad.text
    assert m.counts() == (2, 2)


def test_a_plan_mixing_builtin_and_mcp_tools_passes_outputs_and_runs_in_parallel(manager_of, git_repo, tmp_path):
    m = manager_of(time_server(), git_server(git_repo), flaky())
    catalogue, _ = with_mcp_tools(builtin_catalogue(), m.wait_ready())
    work = tmp_path / "work"
    work.mkdir()
    ex = run_tasks(
        catalogue, work,
        task("t1", "time.get_current_time", timezone="Europe/Paris"),
        task("t2", "git.git_status", repo_path=str(git_repo)),
        task("t3", "write_file", ["t1", "t2"], path="report.txt", content="time: ${t1}\nstatus: ${t2}"),
        task("t4", "flaky.echo", ["t3"], text="wrote ${t3}"),
    )
    assert all(n.status is Status.SUCCEEDED for n in ex.nodes.values()), {i: n.error for i, n in ex.nodes.items()}
    report = (work / "report.txt").read_text()
    assert '"timezone": "Europe/Paris"' in report and "On branch main" in report
    assert ex.nodes["t4"].output.startswith("wrote wrote report.txt (")
    # t1 and t2 are independent: they ran at the same time.
    t1, t2 = ex.nodes["t1"], ex.nodes["t2"]
    assert max(t1.started, t2.started) < min(t1.finished, t2.finished)


# -- failure cases (flaky server) -------------------------------------------------------------
def test_servers_that_fail_to_start_are_reported_in_one_line_and_the_rest_go_on(manager_of, tmp_path):
    dies = ServerSpec("dies", "test", command="/bin/sh", args=("-c", "echo 'cannot open database' >&2; exit 3"))
    missing = ServerSpec("missing", "test", command="agx-no-such-server-binary")
    m = manager_of(dies, missing, time_server())
    statuses = {s.name: s for s in m.wait_ready()}
    assert statuses["time"].state is State.UP
    assert statuses["dies"].state is State.FAILED
    assert "\n" not in statuses["dies"].error
    assert "'dies'" in statuses["dies"].error and "/bin/sh -c" in statuses["dies"].error
    assert "status 3" in statuses["dies"].error and "cannot open database" in statuses["dies"].error
    assert "command not found" in statuses["missing"].error and "agx-no-such-server-binary" in statuses["missing"].error
    with pytest.raises(McpCallError, match="status 3"):
        m.call("dies.anything", {})
    assert not m.call("time.get_current_time", {"timezone": "Etc/UTC"}).is_error
    assert m.counts() == (1, 3)


def test_a_server_crashing_mid_call_fails_the_task_with_exit_status_and_stderr(manager_of, tmp_path):
    m = manager_of(flaky(), time_server())
    catalogue, _ = with_mcp_tools(builtin_catalogue(), m.wait_ready())
    ex = run_tasks(catalogue, tmp_path, task("t1", "flaky.crash"), task("t2", "time.get_current_time", timezone="Etc/UTC"))
    node = ex.nodes["t1"]
    assert node.status is Status.FAILED
    assert "exited with status 7" in node.error and "crashing on purpose" in node.error
    assert ex.nodes["t2"].status is Status.SUCCEEDED  # the other server goes on
    assert {s.name: s.state for s in m.statuses()}["flaky"] is State.FAILED


def test_a_dead_server_is_restarted_on_its_next_call_with_back_off_up_to_the_limit(manager_of, tmp_path):
    notices: list[str] = []
    m = manager_of(flaky(max_restarts=2, restart_backoff_s=0.3))
    m.on_notice = notices.append
    assert m.wait_ready()[0].state is State.UP
    with ThreadPoolExecutor(1) as pool:
        # A call in flight when the server dies fails with the death's report (it does not hang).
        in_flight = pool.submit(m.call, "flaky.sleep", {"seconds": 60})
        time.sleep(0.5)
        with pytest.raises(McpCallError) as crashed:
            m.call("flaky.crash", {})
        t_dead = time.perf_counter()
        with pytest.raises(McpCallError) as cut:
            in_flight.result(timeout=10)
    for err in (crashed, cut):
        msg = str(err.value)
        assert "'flaky'" in msg and "exited with status 7" in msg and "crashing on purpose" in msg and "\n" not in msg
        assert "restart limit" not in msg
    assert m.statuses()[0].state is State.FAILED and notices == []

    # The next call restarts it (after the back-off: 0.3 s, then 0.6 s) and succeeds.
    out = m.call("flaky.echo", {"text": "back"})
    assert out.text == "back" and not out.is_error
    assert time.perf_counter() - t_dead >= 0.2
    assert len(notices) == 1 and "\n" not in notices[0]
    assert "'flaky'" in notices[0] and "restarted (restart 1 of 2)" in notices[0] and "exited with status 7" in notices[0]
    assert m.notices() == notices
    st = m.statuses()[0]
    assert st.state is State.UP and st.restarts == 1 and st.error is None

    with pytest.raises(McpCallError, match="exited with status 7"):
        m.call("flaky.crash", {})
    t_dead = time.perf_counter()
    assert m.call("flaky.echo", {"text": "again"}).text == "again"
    assert time.perf_counter() - t_dead >= 0.5
    assert len(notices) == 2 and "restarted (restart 2 of 2)" in notices[1]

    # The third death is past the limit: it stays down, and calls fail at once saying why.
    with pytest.raises(McpCallError, match="restart limit reached") as last:
        m.call("flaky.crash", {})
    assert "exited with status 7" in str(last.value) and "2 restarts per session" in str(last.value)
    t0 = time.perf_counter()
    with pytest.raises(McpCallError, match="restart limit reached"):
        m.call("flaky.echo", {"text": "no"})
    assert time.perf_counter() - t0 < 1.0
    st = m.statuses()[0]
    assert st.state is State.FAILED and st.restarts == 2 and "restart limit reached" in st.error
    assert len(notices) == 2


def test_restart_settings_come_from_the_mcp_section_for_every_server(tmp_path):
    from agx.config import load_config
    from agx.mcp.settings import server_specs

    (tmp_path / "agx.toml").write_text(
        f'[mcp]\nmax_restarts = 5\nrestart_backoff_s = 0.25\n\n[mcp.servers.a]\ncommand = "{sys.executable}"\n')
    (tmp_path / ".mcp.json").write_text(json.dumps({"mcpServers": {"b": {"command": "mcp-b"}}}))
    specs = {s.name: s for s in server_specs(load_config(tmp_path).config, tmp_path, {})}
    assert {n: (s.max_restarts, s.restart_backoff_s) for n, s in specs.items()} == {"a": (5, 0.25), "b": (5, 0.25)}


def test_a_hung_call_times_out_and_is_cancelled_on_the_server(manager_of, tmp_path):
    m = manager_of(flaky())
    m.wait_ready()
    marker = tmp_path / "hang-marker"
    t0 = time.perf_counter()
    with pytest.raises(McpCallError, match="no result within 1s"):
        m.call("flaky.hang", {"marker": str(marker)}, timeout=1.0)
    assert time.perf_counter() - t0 < 5
    _wait_for(lambda: marker.exists())
    assert marker.read_text() == "cancelled"  # the server got notifications/cancelled
    assert m.call("flaky.echo", {"text": "still up"}).text == "still up"


def test_cancelling_a_running_mcp_task_cancels_the_request_on_the_server(manager_of, tmp_path):
    m = manager_of(flaky())
    catalogue, _ = with_mcp_tools(builtin_catalogue(), m.wait_ready())
    marker = tmp_path / "cancel-marker"
    ex = Executor("p-cancel", catalogue, tmp_path, policy=Policy(ApprovalMode.ALL))

    async def go():
        ex.add_plan(Plan.model_validate({"goal": "g", "tasks": [task("t1", "flaky.hang", marker=str(marker))]}))
        ex.close_plan()
        run = asyncio.ensure_future(ex.run())
        await asyncio.sleep(1.0)
        ex.cancel("t1")
        return await run

    asyncio.run(go())
    assert ex.nodes["t1"].status is Status.CANCELLED
    _wait_for(lambda: marker.exists())
    assert marker.read_text() == "cancelled"


def test_the_executors_task_timeout_also_cancels_on_the_server(manager_of, tmp_path):
    m = manager_of(flaky())
    catalogue, _ = with_mcp_tools(builtin_catalogue(), m.wait_ready())
    marker = tmp_path / "timeout-marker"
    ex = run_tasks(catalogue, tmp_path, task("t1", "flaky.hang", marker=str(marker)), task_timeout_s=1.0)
    assert ex.nodes["t1"].status is Status.FAILED and "timed out" in ex.nodes["t1"].error
    _wait_for(lambda: marker.exists())
    assert marker.read_text() == "cancelled"


def test_an_error_result_fails_the_task_with_the_servers_message(manager_of, tmp_path):
    m = manager_of(flaky())
    catalogue, _ = with_mcp_tools(builtin_catalogue(), m.wait_ready())
    ex = run_tasks(catalogue, tmp_path, task("t1", "flaky.fail", reason="disk on fire"), task("t2", "flaky.echo", ["t1"], text="x"))
    assert ex.nodes["t1"].status is Status.FAILED
    assert "flaky.fail" in ex.nodes["t1"].error and "disk on fire" in ex.nodes["t1"].error
    assert ex.nodes["t2"].status is Status.SKIPPED


def test_a_10_mb_result_is_capped_like_other_task_output(manager_of, tmp_path):
    m = manager_of(flaky(timeout_s=120))
    catalogue, _ = with_mcp_tools(builtin_catalogue(), m.wait_ready())
    ex = run_tasks(catalogue, tmp_path, task("t1", "flaky.big", megabytes=10), output_cap_bytes=1_000_000, task_timeout_s=120)
    node = ex.nodes["t1"]
    assert node.status is Status.SUCCEEDED, node.error
    assert node.output.startswith("x" * 1000)
    assert len(node.output.encode()) < 1_001_000 and "9485760 more bytes dropped" in node.output


def test_a_schema_the_grammar_cannot_express_is_reported_not_dropped(manager_of):
    m = manager_of(flaky())
    statuses = m.wait_ready()
    specs, left_out = mcp_tool_specs(statuses)
    assert [u.name for u in left_out] == ["flaky.odd_schema"]
    assert "cannot be turned into a grammar" in left_out[0].reason
    assert "flaky.echo" in {s.name for s in specs}
    # Still callable directly.
    assert m.call("flaky.odd_schema", {"code": "x1"}).text == "x1"


def test_independent_mcp_calls_run_concurrently(manager_of, tmp_path):
    m = manager_of(flaky())
    catalogue, _ = with_mcp_tools(builtin_catalogue(), m.wait_ready())
    tasks = [task(f"t{i}", "flaky.sleep", seconds=1.0, tag=str(i)) for i in range(1, 7)]
    t0 = time.perf_counter()
    ex = run_tasks(catalogue, tmp_path, *tasks, max_parallel=6)
    wall = time.perf_counter() - t0
    assert all(n.status is Status.SUCCEEDED for n in ex.nodes.values())
    # The server's own clock: every call's interval overlaps every other's.
    spans = [tuple(map(float, n.output.split()[1:3])) for n in ex.nodes.values()]
    assert max(s for s, _ in spans) < min(e for _, e in spans)
    assert wall < 3.0, wall  # six 1 s calls, one after another, would take 6 s


def test_per_node_approval_read_only_mcp_tools_run_and_exec_ones_wait(manager_of, tmp_path):
    m = manager_of(flaky())
    catalogue, _ = with_mcp_tools(builtin_catalogue(), m.wait_ready())
    assert catalogue.get("flaky.touch_nothing").risk is Risk.EXEC  # no annotations
    ex = Executor("p-appr", catalogue, tmp_path, policy=Policy(ApprovalMode.READ))

    async def go():
        ex.add_plan(Plan.model_validate({"goal": "g", "tasks": [
            task("t1", "flaky.echo", text="a"), task("t2", "flaky.touch_nothing", note="b"),
            task("t3", "flaky.touch_nothing", note="c")]}))
        ex.close_plan()
        run = asyncio.ensure_future(ex.run())
        await asyncio.sleep(0.2)
        assert ex.undecided() == ["t2", "t3"]
        ex.approve(["t2"])
        ex.deny(["t3"])
        return await run

    asyncio.run(go())
    assert [ex.nodes[i].status for i in ("t1", "t2", "t3")] == [Status.SUCCEEDED, Status.SUCCEEDED, Status.SKIPPED]
    assert ex.nodes["t2"].output == "noted: b"


def test_streamable_http_server_with_a_header_from_the_environment(manager_of, tmp_path):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, str(FLAKY), "--http", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: _port_open(port), timeout=30)
        spec = ServerSpec("remote", "test", url=f"http://127.0.0.1:{port}/mcp", headers={"X-Token": "secret"})
        m = manager_of(spec)
        assert m.wait_ready()[0].state is State.UP
        assert m.call("remote.echo", {"text": "over http"}).text == "over http"
    finally:
        proc.terminate()
        proc.wait(10)


# -- configuration ---------------------------------------------------------------------------
def test_mcp_json_is_read_with_variable_expansion(tmp_path):
    (tmp_path / ".mcp.json").write_text(json.dumps({"mcpServers": {
        "time": {"command": "${BIN_DIR}/mcp-server-time", "args": ["--local-timezone", "${TZ_NAME:-Etc/UTC}"]},
        "api": {"type": "http", "url": "https://example.invalid/mcp", "headers": {"Authorization": "Bearer ${TOKEN}"}},
    }}))
    specs = {s.name: s for s in read_mcp_json(tmp_path / ".mcp.json", {"BIN_DIR": "/opt/bin", "TOKEN": "t0k"})}
    assert specs["time"].command == "/opt/bin/mcp-server-time" and specs["time"].args == ("--local-timezone", "Etc/UTC")
    assert specs["api"].headers == {"Authorization": "Bearer t0k"} and specs["api"].url.endswith("/mcp")


def agx(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGX_")}
    return subprocess.run([sys.executable, "-m", "agx", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def _toml_servers(repo: Path, extra: str = "") -> None:
    (repo / "agx.toml").write_text(
        f'[mcp.servers.time]\ncommand = "{server_bin("mcp-server-time")}"\n\n'
        f'[mcp.servers.flaky]\ncommand = "{sys.executable}"\nargs = ["{FLAKY}"]\n{extra}')


def test_cli_mcp_list_and_call(git_repo):
    _toml_servers(git_repo)
    (git_repo / ".mcp.json").write_text(json.dumps({"mcpServers": {
        "git": {"command": server_bin("mcp-server-git"), "args": ["--repository", str(git_repo)]}}}))
    out = agx(git_repo, "mcp", "list")
    assert out.returncode == 0, out.stderr
    assert "time.get_current_time" in out.stdout and "[read]" in out.stdout
    assert "git.git_reset" in out.stdout and "[exec, destructive]" in out.stdout
    assert "flaky.odd_schema" in out.stdout and "not offered to Delta" in out.stdout
    listed = json.loads(agx(git_repo, "mcp", "list", "--json").stdout)
    assert {s["name"]: s["state"] for s in listed} == {"git": "up", "time": "up", "flaky": "up"}

    call = agx(git_repo, "mcp", "call", "time.get_current_time", '{"timezone": "Asia/Tokyo"}')
    assert call.returncode == 0 and json.loads(call.stdout)["timezone"] == "Asia/Tokyo"
    err = agx(git_repo, "mcp", "call", "flaky.fail", '{"reason": "nope"}')
    assert err.returncode == 1 and "flaky failure: nope" in err.stderr
    bad = agx(git_repo, "mcp", "call", "time.get_current_time", "{not json")
    assert bad.returncode == 2 and "invalid JSON" in bad.stderr and "Traceback" not in bad.stderr
    unknown = agx(git_repo, "mcp", "call", "nosuch.tool", "{}")
    assert unknown.returncode == 2 and "no MCP server named 'nosuch'" in unknown.stderr


def test_cli_mcp_list_reports_a_failed_server_and_exits_1(git_repo):
    _toml_servers(git_repo, '\n[mcp.servers.broken]\ncommand = "/bin/sh"\nargs = ["-c", "echo no-license >&2; exit 4"]\n')
    out = agx(git_repo, "mcp", "list")
    assert out.returncode == 1
    assert "broken" in out.stdout and "failed" in out.stdout and "status 4" in out.stdout and "no-license" in out.stdout
    assert "time.get_current_time" in out.stdout  # the others are listed


@pytest.mark.parametrize("toml, expected", [
    ('[mcp.servers.x]\ncommand = "a"\nurl = "http://b"\n', "mcp.servers.x: set either command"),
    ('[mcp.servers."bad.name"]\ncommand = "a"\n', "no dots"),
    ('[mcp.servers.x]\ncommand = "a"\ntimeout_s = -1\n', "mcp.servers.x.timeout_s"),
    ('[mcp]\nmax_restarts = -1\n', "mcp.max_restarts"),
    ('[mcp]\nrestart_backoff_s = "soon"\n', "mcp.restart_backoff_s"),
    ('[mcp.servers.x]\nurl = "http://b"\nheaders_env = {Authorization = "AGX_TEST_UNSET_VAR"}\n', "AGX_TEST_UNSET_VAR is not set"),
])
def test_bad_mcp_config_is_a_one_line_error_exit_2(git_repo, toml, expected):
    (git_repo / "agx.toml").write_text(toml)
    out = agx(git_repo, "mcp", "list")
    assert out.returncode == 2, out.stdout + out.stderr
    assert expected in out.stderr and "Traceback" not in out.stderr


def test_bad_mcp_json_names_the_file_and_key(git_repo):
    (git_repo / ".mcp.json").write_text(json.dumps({"mcpServers": {"x": {"command": 5}}}))
    out = agx(git_repo, "mcp", "list")
    assert out.returncode == 2 and ".mcp.json: mcpServers.x.command" in out.stderr and "Traceback" not in out.stderr


def test_agx_run_with_a_plan_of_mcp_and_builtin_tools_commits_only_file_changes(git_repo):
    _toml_servers(git_repo)
    plan = git_repo.parent / "plan.json"
    plan.write_text(json.dumps({"goal": "stamp the time", "tasks": [
        task("t1", "time.get_current_time", timezone="Etc/UTC"),
        task("t2", "flaky.touch_nothing", note="no files"),
        task("t3", "write_file", ["t1"], path="stamp.json", content="${t1}"),
    ]}))
    out = agx(git_repo, "run", "--plan", str(plan), "--yes")
    assert out.returncode == 0, out.stdout + out.stderr
    record = json.loads(next((git_repo / ".agx" / "plans").glob("*.json")).read_text())
    plan_id = record["plan_id"]
    log = subprocess.run(["git", "log", "--format=%s", f"{record['base_commit']}..agx/{plan_id}"], cwd=git_repo, capture_output=True,
                         text=True, check=True).stdout.split("\n")
    assert [line for line in log if line] == ["t3"]  # the MCP calls changed no file: no commit
    stamp = subprocess.run(["git", "show", f"agx/{plan_id}:stamp.json"], cwd=git_repo, capture_output=True, text=True,
                           check=True).stdout
    assert json.loads(stamp)["timezone"] == "Etc/UTC"


# -- helpers ---------------------------------------------------------------------------------
def _wait_for(check, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.05)
    assert check()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_doctor_starts_each_server_once_and_reports_it(git_repo):
    (git_repo / ".mcp.json").write_text(json.dumps({"mcpServers": {
        "time": {"command": server_bin("mcp-server-time")},
        "broken": {"command": "/bin/sh", "args": ["-c", "echo expired-key >&2; exit 6"]},
        "off": {"command": "/bin/false", "disabled": True}}}))
    out = agx(git_repo, "doctor", timeout=300)
    assert "[mcp] 3 servers configured" in out.stdout
    assert "time           up, 2 tools" in out.stdout
    assert "broken         FAILED" in out.stdout and "status 6" in out.stdout and "expired-key" in out.stdout
    assert "off            disabled" in out.stdout
    assert out.returncode == 1  # a configured server that fails is a problem to fix
