"""Echo's dataset from real session logs: usable turns only, deduplicated, split."""

from __future__ import annotations

import json

from agx.cli.main import main
from agx.conversation import Conversation
from agx.workspace.sessionlog import SessionLog


def _turn(log, user, reply, **extra):
    fields = dict(role="echo", model="m", adapter=None,
                  messages=[{"role": "system", "content": "You are Echo."}, {"role": "user", "content": user}],
                  response=reply, error=None, stats={"finish_reason": "stop"})
    fields.update(extra)
    log.append("chat", **fields)


def test_agx_data_echo_from_session_logs(git_repo, pool, capsys):
    # One real turn with the bundled model, logged by Conversation as `agx chat` logs it.
    log = SessionLog.open(git_repo)
    conv = Conversation("echo", pool.engine("echo"), log)
    stream = conv.send("Say hello.", max_tokens=8)
    real_kept = bool(stream.read().strip()) and stream.stats.finish_reason == "stop"
    for i in range(12):
        _turn(log, f"What does file {i} do?", f"It handles part {i}.")
    _turn(log, "What does file 0 do?", "It handles part 0.")  # duplicate
    _turn(log, "broken", "", error="model crashed")
    _turn(log, "cut", "partial", stats={"finish_reason": "length"})
    _turn(log, "delta's", "plan", role="delta")
    with open(log.path, "a") as fh:
        fh.write('{"torn": ')  # a crash mid-line

    assert main(["-C", str(git_repo), "data", "echo", "-o", "out", "--validation-fraction", "0.3"]) == 0
    out = git_repo / "out"
    train = [json.loads(line) for line in (out / "echo-train.jsonl").open()]
    val = [json.loads(line) for line in (out / "echo-validation.jsonl").open()]
    records = train + val
    manifest = json.loads((out / "echo-dataset.json").read_text())
    # 12 distinct turns, plus the real one unless max_tokens cut it (a truncated reply is not trained on).
    assert len(records) == 12 + real_kept
    assert manifest["duplicates"] == 1
    assert manifest["skipped"] == {"error": 1, "finish=length": 1 + (not real_kept)}
    for r in records:
        assert r["messages"][-1]["role"] == "assistant" and r["messages"][-1]["content"]
        assert r["messages"][-2]["role"] == "user"
    assert "echo:" in capsys.readouterr().out


def test_agx_data_echo_without_logs_is_usage_error(git_repo, capsys):
    assert main(["-C", str(git_repo), "data", "echo"]) == 2
    assert "no session logs" in capsys.readouterr().err
