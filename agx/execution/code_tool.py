"""The `code` tool: Delta's engine edits files with their current text in view.

When the task runs (not when the plan is written), the model gets the instruction, the files'
current contents in the worktree, and the outputs of the task's dependencies, and answers in
the edit language of agx/execution/grounded_edit.py under a grammar built from those files, so
every edit it writes applies. agx applies them; the executor commits them as the task's commit.
"""

from __future__ import annotations

import asyncio

from agx.execution.grounded_edit import (MAX_FILE_LINES, EditFormatError, FileView, apply_file_edit, complete_part,
                                         describe, edit_grammar, parse_edits)
from agx.execution.runners import RunnerResult, TaskContext, TaskError, _safe
from agx.workspace.files import atomic_write

MAX_DEP_CHARS = 4000  # dependency outputs shown to the model (the rest is cut, and it says so)
MAX_FILE_CHARS = 24000  # the files in the prompt, together

SYSTEM = """\
You are Delta, editing files. Answer only with edits in this format, nothing else:

### path/of/file
@@
-a line copied exactly from the file (one that occurs only once in it)
-the next line of the file (copy every line the edit replaces, in order)
+a new line that replaces them
+another new line
@@
-a later line of the same file
+its replacement

To write a whole file (a new file, or a full rewrite), use "=" instead of "@@":

### path/of/new_file
=
+first line
+second line

Every changed line starts with "-" (old) or "+" (new). To insert lines, remove a line and add it
back together with the new ones. Keep the file's indentation."""


def _clip(text: str, limit: int, what: str) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[agx: {what} cut at {limit} characters]"


# One worked exchange: small models copy the format of an example far better than a description.
EXAMPLE_USER = """Instruction: greet should say hi instead of hello.

File src/app.py:
```
import sys


def greet(name):
    return "hello " + name
```"""
EXAMPLE_ANSWER = """### src/app.py
@@
-    return "hello " + name
+    return "hi " + name
"""


def build_messages(instruction: str, views: list[FileView], dep_outputs: dict[str, str]) -> list[dict[str, str]]:
    parts = [f"Instruction: {instruction.strip()}"]
    for tid, out in dep_outputs.items():
        if out.strip():
            parts.append(f"Output of task {tid}:\n{_clip(out.strip(), MAX_DEP_CHARS, 'output')}")
    for v in views:
        if v.text is None:
            parts.append(f"File {v.path} does not exist yet (create it with =).")
        else:
            parts.append(f"File {v.path}:\n```\n{v.text}{'' if v.text.endswith(chr(10)) or not v.text else chr(10)}```")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": EXAMPLE_USER},
            {"role": "assistant", "content": EXAMPLE_ANSWER}, {"role": "user", "content": "\n\n".join(parts)}]


def _views(ctx: TaskContext, paths: list[str]) -> list[FileView]:
    views, total = [], 0
    for rel in dict.fromkeys(paths):
        path = _safe(ctx, rel, for_write=True)
        if path.is_dir():
            raise TaskError(f"{rel}: is a directory")
        if not path.exists():
            views.append(FileView(rel, None))
            continue
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise TaskError(f"{rel}: not UTF-8 text; code edits text files (use write_file or shell)") from None
        total += len(text)
        if text.count("\n") > MAX_FILE_LINES or total > MAX_FILE_CHARS:
            raise TaskError(f"{rel}: too large to show the model whole ({len(text)} characters; "
                            f"at most {MAX_FILE_CHARS} for all of a task's files): split the task by file")
        views.append(FileView(rel, text))
    return views


# Characters per token, pessimistic for code; and tokens kept free for the answer.
CHARS_PER_TOKEN = 3
ANSWER_RESERVE_TOKENS = 512


def _check_fits(engine, views: list[FileView]) -> None:
    """Refuse, with the numbers, files that cannot fit the engine's context with room to answer."""
    try:
        n_ctx = engine.info().n_ctx
    except Exception:  # an engine that cannot describe itself: let the model server decide
        return
    if not n_ctx:
        return  # remote: the server's context is not known here
    shown = sum(len(v.text or "") for v in views) + len(SYSTEM) + len(EXAMPLE_USER) + len(EXAMPLE_ANSWER)
    room = (n_ctx - ANSWER_RESERVE_TOKENS) * CHARS_PER_TOKEN
    if shown > room:
        raise TaskError(f"code: the files ({shown} characters with the prompt) do not fit Delta's context of {n_ctx} "
                        f"tokens with room to answer; give the task fewer or smaller files, or raise roles.delta.n_ctx")


async def run_code(ctx: TaskContext) -> RunnerResult:
    from agx.runtime.engine import CancelToken, ChatRequest

    engine = ctx.code_engine or ctx.engine
    if engine is None:
        raise TaskError("code: no model available to this run")
    paths = ctx.args.get("paths") or []
    if isinstance(paths, str):
        paths = [paths]
    instruction = ctx.args.get("instruction")
    if not paths or not all(isinstance(p, str) and p for p in paths):
        raise TaskError("code: no paths given")
    if not isinstance(instruction, str) or not instruction.strip():
        raise TaskError("code: empty instruction")
    views = await asyncio.to_thread(_views, ctx, paths)
    _check_fits(engine, views)
    request = ChatRequest(messages=build_messages(instruction, views, ctx.dep_outputs), grammar=edit_grammar(views),
                          temperature=0.0)
    loop = asyncio.get_running_loop()
    token = CancelToken()

    def generate() -> tuple[str, str]:
        stream = engine.chat(request, cancel=token)
        for piece in stream:
            loop.call_soon_threadsafe(ctx.write, piece)
        return stream.text, stream.stats.finish_reason

    fut = loop.run_in_executor(None, generate)
    try:
        text, finish = await asyncio.shield(fut)
    except asyncio.CancelledError:
        token.cancel()
        try:
            await asyncio.wait_for(fut, 10.0)
        except Exception:
            pass
        raise
    except Exception as exc:  # EngineError: a message for the user
        raise TaskError(f"code: {exc}") from None
    await asyncio.sleep(0)
    if finish == "error":
        raise TaskError("code: generation failed")
    cut = finish == "length"
    if cut:
        text = complete_part(text)
    try:
        edits = parse_edits(text, views)
    except EditFormatError as exc:
        # Only a model without the grammar (a remote engine) or an empty answer gets here.
        raise TaskError(f"code: the model's answer is not an edit ({exc})") from None
    by_path = {v.path: v for v in views}
    if cut and any(e.rewrite is not None for e in edits[-1:]):
        # A whole file cut short by max_tokens would lose its end: refuse it rather than truncate.
        raise TaskError(f"code: the answer was cut at max_tokens while writing {edits[-1].path} whole; nothing applied")
    changed, report = [], []
    for edit in edits:
        view = by_path[edit.path]
        new_text = apply_file_edit(view, edit)
        report.append(describe(view, edit))
        if new_text != (view.text or "") or view.text is None:
            await asyncio.to_thread(atomic_write, _safe(ctx, edit.path, for_write=True), new_text.encode("utf-8"))
            changed.append(edit.path)
    summary = "\n".join(report) + ("\n[agx: the answer was cut at max_tokens; its complete edits were applied]" if cut else "")
    ctx.write(("\n" if text and not text.endswith("\n") else "") + summary + "\n")
    return RunnerResult(ctx.output.text, changed_paths=changed)
