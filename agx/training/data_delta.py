"""Delta's fine-tuning set: (request -> plan JSON) pairs over agx's builtin tools.

Two sources:
- a deterministic generator (`generate_synthetic`): varied repository requests — explain,
  search, test, fix, document, refactor, lint, commit... — each with a hand-designed gold plan,
  phrased several ways, over a handful of made-up projects (Python, JavaScript, Go, Rust);
- distillation (`distill`): a teacher engine (any role, local or remote) plans seed requests
  through agx's own Planner and only plans that pass `validate_plan` are kept.

Each record's prompt is `build_plan_messages(request, catalogue, repo_context)` exactly as Delta
gets it at inference, with the repository context computed by `repo_context()` from a real
temporary git repository of the project — so the catalogue and the context are in every
training prompt (a planner trained without its catalogue in the prompt memorises one domain).
"""

from __future__ import annotations

import hashlib
import random
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from agx.execution.builtin_tools import builtin_catalogue
from agx.planning.prompt import build_plan_messages, repo_context
from agx.planning.schema_grammar import canonical_plan_json
from agx.planning.tools import ToolCatalogue
from agx.planning.validate import validate_plan
from agx.training.records import BUILTIN_CATALOGUE
from agx.workspace import gitread


# -- the made-up projects -------------------------------------------------------------------
@dataclass(frozen=True)
class Project:
    name: str
    language: str
    sources: tuple[str, ...]  # source files (paths)
    tests: tuple[str, ...]
    symbols: tuple[tuple[str, str], ...]  # (symbol, file defining it)
    extra_files: tuple[str, ...]
    test_command: str
    lint_command: str
    readme: str
    config_edit: tuple[str, str, str]  # (file, search text, replace text) for a literal edit

    def test_path_for(self, source: str) -> str:
        stem = Path(source).stem
        return {
            "python": f"tests/test_{stem}.py",
            "javascript": f"test/{stem}.test.js",
            "go": str(Path(source).with_name(f"{stem}_test.go")),
            "rust": f"tests/{stem}_test.rs",
        }[self.language]


PROJECTS: tuple[Project, ...] = (
    Project("invoicer", "python", ("src/invoicer/models.py", "src/invoicer/pdf.py", "src/invoicer/cli.py", "src/invoicer/tax.py"),
            ("tests/test_models.py", "tests/test_tax.py"),
            (("compute_total", "src/invoicer/models.py"), ("render_pdf", "src/invoicer/pdf.py"), ("vat_rate", "src/invoicer/tax.py"), ("main", "src/invoicer/cli.py")),
            ("pyproject.toml", "README.md", ".gitignore"), "pytest -q", "ruff check .",
            "# invoicer\n\nCreate PDF invoices from YAML files.", ("src/invoicer/tax.py", "DEFAULT_RATE = 0.20", "DEFAULT_RATE = 0.21")),
    Project("weatherd", "python", ("weatherd/server.py", "weatherd/cache.py", "weatherd/providers.py", "weatherd/config.py"),
            ("tests/test_cache.py", "tests/test_server.py"),
            (("fetch_forecast", "weatherd/providers.py"), ("TTLCache", "weatherd/cache.py"), ("load_config", "weatherd/config.py"), ("create_app", "weatherd/server.py")),
            ("requirements.txt", "README.md", "Dockerfile"), "python -m pytest", "flake8 weatherd",
            "# weatherd\n\nA small caching proxy for weather APIs.", ("weatherd/config.py", "PORT = 8000", "PORT = 8080")),
    Project("todo-web", "javascript", ("src/app.js", "src/store.js", "src/api.js", "src/components/List.js"),
            ("test/store.test.js", "test/api.test.js"),
            (("createStore", "src/store.js"), ("fetchTodos", "src/api.js"), ("renderList", "src/components/List.js"), ("startApp", "src/app.js")),
            ("package.json", "README.md", ".eslintrc.json"), "npm test", "npx eslint src",
            "# todo-web\n\nA to-do list in plain JavaScript.", ("src/api.js", "const TIMEOUT_MS = 5000;", "const TIMEOUT_MS = 10000;")),
    Project("linkcheck", "go", ("main.go", "crawler/crawler.go", "crawler/parse.go", "report/report.go"),
            ("crawler/crawler_test.go",),
            (("Crawl", "crawler/crawler.go"), ("ExtractLinks", "crawler/parse.go"), ("WriteReport", "report/report.go"), ("main", "main.go")),
            ("go.mod", "README.md", "Makefile"), "go test ./...", "go vet ./...",
            "# linkcheck\n\nFinds broken links on a website.", ("crawler/crawler.go", "const maxDepth = 3", "const maxDepth = 5")),
    Project("tinygrep", "rust", ("src/main.rs", "src/search.rs", "src/args.rs", "src/output.rs"),
            ("tests/cli.rs",),
            (("search_file", "src/search.rs"), ("parse_args", "src/args.rs"), ("print_match", "src/output.rs"), ("main", "src/main.rs")),
            ("Cargo.toml", "README.md", ".gitignore"), "cargo test", "cargo clippy",
            "# tinygrep\n\nA minimal grep clone in Rust.", ("src/args.rs", "const DEFAULT_CONTEXT: usize = 0;", "const DEFAULT_CONTEXT: usize = 2;")),
    Project("ml-pipeline", "python", ("pipeline/train.py", "pipeline/features.py", "pipeline/data.py", "pipeline/evaluate.py"),
            ("tests/test_features.py",),
            (("build_features", "pipeline/features.py"), ("load_dataset", "pipeline/data.py"), ("train_model", "pipeline/train.py"), ("score", "pipeline/evaluate.py")),
            ("setup.cfg", "README.md", "params.yaml"), "pytest", "mypy pipeline",
            "# ml-pipeline\n\nTrains and evaluates a churn model.", ("params.yaml", "learning_rate: 0.1", "learning_rate: 0.05")),
)

_TOPICS = ("input validation", "error handling", "logging", "retries", "caching", "configuration", "pagination",
           "timeouts", "unicode handling", "command-line flags")
_COMMIT_MESSAGES = ("Fix failing tests", "Add tests", "Document public functions", "Update README",
                    "Refactor for readability", "Bump timeout", "Add license")
_POLITE = ("", "", "Please ", "Could you ", "I need you to ", "Can you ")


def _phrase(rng: random.Random, options: tuple[str, ...], polite: tuple[str, ...] = _POLITE, **values: str) -> str:
    """One of `options` filled with `values`, sometimes with a polite opening (a question for "Could/Can")."""
    text = rng.choice(options).format(**values)
    prefix = rng.choice(polite)
    if prefix:
        text = prefix + text[0].lower() + text[1:]
        if prefix.startswith(("Could", "Can")):
            text = text.rstrip(".") + "?"
    return text


def _t(tid: str, title: str, tool: str, deps: list[str], args: dict[str, Any]) -> dict[str, Any]:
    return {"id": tid, "title": title, "tool": tool, "deps": deps, "args": args}


# -- intents: each returns (request, plan) ----------------------------------------------------
def _explain_file(rng, p: Project):
    f = rng.choice(p.sources)
    req = _phrase(rng, ("Explain what {f} does.", "Give me an overview of {f}.", "What is the purpose of {f}?",
                        "Summarize the code in {f}."), f=f)
    return req, {"goal": f"Explain {f}", "tasks": [
        _t("t1", "Read the file", "read_files", [], {"paths": [f]}),
        _t("t2", "Explain it", "ask_model", ["t1"], {"prompt": f"Explain what this code in {f} does:\n${{t1}}"}),
    ]}


def _find_usages(rng, p: Project):
    sym, _ = rng.choice(p.symbols)
    req = _phrase(rng, ("Where is {s} used?", "Find all usages of {s}.", "List the places that call {s}.",
                        "Show me every call site of {s}."), s=sym)
    return req, {"goal": f"Find usages of {sym}", "tasks": [
        _t("t1", f"Search for {sym}", "search", [], {"pattern": rf"\b{sym}\b"}),
        _t("t2", "Summarize the call sites", "ask_model", ["t1"], {"prompt": f"List where {sym} is used, by file:\n${{t1}}"}),
    ]}


def _run_tests_summary(rng, p: Project):
    req = _phrase(rng, ("Run the tests and tell me what fails.", "Run the test suite and summarize the failures.",
                        "Check whether the tests pass.", "Run the tests and explain any errors."))
    return req, {"goal": "Run the tests and report failures", "tasks": [
        _t("t1", "Run the tests", "run_tests", [], {}),
        _t("t2", "Summarize the results", "ask_model", ["t1"], {"prompt": "Summarize which tests fail and why:\n${t1}"}),
    ]}


def _fix_failing_tests(rng, p: Project):
    f = rng.choice(p.sources)
    req = _phrase(rng, ("The tests fail because of a bug in {f}. Fix it.", "Fix the failing tests; the bug is in {f}.",
                        "Make the test suite pass again by fixing {f}."), f=f)
    return req, {"goal": f"Fix the bug in {f} so the tests pass", "tasks": [
        _t("t1", "Run the tests", "run_tests", [], {}),
        _t("t2", "Fix the bug", "code", ["t1"],
           {"paths": [f], "instruction": "Fix the bug that makes these tests fail (their report is t1's output)."}),
        _t("t3", "Run the tests again", "run_tests", ["t2"], {}),
    ]}


def _add_tests(rng, p: Project):
    sym, f = rng.choice(p.symbols)
    test = p.test_path_for(f)
    req = _phrase(rng, ("Add unit tests for {s} in {f}.", "Write tests for {s}.", "Cover {s} with tests.",
                        "Create a test file for {s} from {f}."), s=sym, f=f)
    return req, {"goal": f"Add tests for {sym}", "tasks": [
        _t("t1", "Read the code", "read_files", [], {"paths": [f]}),
        _t("t2", "Write the tests", "code", ["t1"], {"paths": [test], "instruction": f"Write {p.language} unit tests for {sym} (its code is t1's output)."}),
        _t("t3", "Run the tests", "run_tests", ["t2"], {}),
    ]}


def _add_docs(rng, p: Project):
    f = rng.choice(p.sources)
    req = _phrase(rng, ("Add docstrings to the functions in {f}.", "Document every function in {f}.",
                        "Write doc comments for {f}."), f=f)
    return req, {"goal": f"Document the functions in {f}", "tasks": [
        _t("t1", "Document the functions", "code", [], {"paths": [f], "instruction": "Add documentation comments to every function; change nothing else."}),
    ]}


def _todos(rng, p: Project):
    req = _phrase(rng, ("List the TODO and FIXME comments.", "What TODOs are left in the code?", "Find unfinished work marked TODO."))
    return req, {"goal": "List TODO and FIXME comments", "tasks": [
        _t("t1", "Search for TODO/FIXME", "search", [], {"pattern": "TODO|FIXME"}),
        _t("t2", "Group them", "ask_model", ["t1"], {"prompt": "Group these TODO/FIXME comments by file and urgency:\n${t1}"}),
    ]}


def _lint(rng, p: Project):
    req = _phrase(rng, ("Run the linter and summarize the warnings.", "Check the code style.", "Lint the project."))
    return req, {"goal": "Lint the project and summarize", "tasks": [
        _t("t1", "Run the linter", "shell", [], {"command": p.lint_command}),
        _t("t2", "Summarize the warnings", "ask_model", ["t1"], {"prompt": "Summarize these lint warnings, most important first:\n${t1}"}),
    ]}


def _history(rng, p: Project):
    n = rng.choice((5, 10, 20))
    req = _phrase(rng, ("What changed in the last {n} commits?", "Summarize the recent git history.",
                        "Give me a changelog of the last {n} commits."), n=str(n))
    return req, {"goal": "Summarize recent commits", "tasks": [
        _t("t1", "Read the git log", "shell", [], {"command": f"git log --oneline -n {n}"}),
        _t("t2", "Summarize", "ask_model", ["t1"], {"prompt": "Write a short changelog from these commits:\n${t1}"}),
    ]}


def _compare(rng, p: Project):
    a, b = rng.sample(p.sources, 2)
    req = _phrase(rng, ("Compare {a} and {b}.", "How do {a} and {b} differ?", "Is there duplicated logic between {a} and {b}?"), a=a, b=b)
    return req, {"goal": f"Compare {a} and {b}", "tasks": [
        _t("t1", f"Read {Path(a).name}", "read_files", [], {"paths": [a]}),
        _t("t2", f"Read {Path(b).name}", "read_files", [], {"paths": [b]}),
        _t("t3", "Compare them", "ask_model", ["t1", "t2"], {"prompt": f"Compare {a}:\n${{t1}}\nwith {b}:\n${{t2}}\nPoint out differences and duplicated logic."}),
    ]}


def _literal_edit(rng, p: Project):
    f, search, replace = p.config_edit
    req = _phrase(rng, ("In {f}, change `{a}` to `{b}`.", "Replace `{a}` with `{b}` in {f} and run the tests.",
                        "Update {f}: `{b}` instead of `{a}`."), f=f, a=search, b=replace)
    return req, {"goal": f"Change a setting in {f}", "tasks": [
        _t("t1", "Edit the line", "edit_file", [], {"path": f, "edits": [{"search": search, "replace": replace}]}),
        _t("t2", "Run the tests", "run_tests", ["t1"], {}),
        _t("t3", "Commit", "git_commit", ["t2"], {"message": f"Change {search.split()[0]} in {Path(f).name}"}),
    ]}


def _exact_file(rng, p: Project):
    # The user gives the exact text: write_file, no model in the loop.
    name, text = rng.choice(((".editorconfig", "root = true"), ("CODEOWNERS", "* @team"), (".nvmrc", "20")))
    req = _phrase(rng, ("Create {n} containing exactly: {t}", "Add a file {n} with the line `{t}`."), n=name, t=text)
    return req, {"goal": f"Create {name}", "tasks": [
        _t("t1", f"Write {name}", "write_file", [], {"path": name, "content": text + "\n"}),
    ]}


def _readme(rng, p: Project):
    topic = rng.choice(_TOPICS)
    f = rng.choice(p.sources)
    req = _phrase(rng, ("Document the {t} of {f} in the README.", "Update the README to explain {t}.",
                        "Add a README section about {t}."), t=topic, f=f)
    return req, {"goal": f"Document {topic} in the README", "tasks": [
        _t("t1", "Read the code", "read_files", [], {"paths": [f]}),
        _t("t2", "Write the README section", "code", ["t1"], {"paths": ["README.md"], "instruction": f"Add a section on {topic}, based on the code in t1's output."}),
    ]}


def _improve(rng, p: Project):
    topic = rng.choice(_TOPICS)
    sym, f = rng.choice(p.symbols)
    req = _phrase(rng, ("Improve the {t} in {s}.", "Add {t} to {s} in {f}.", "Make {s} more robust: better {t}."), t=topic, s=sym, f=f)
    return req, {"goal": f"Improve {topic} in {sym}", "tasks": [
        _t("t1", f"Find callers of {sym}", "search", [], {"pattern": rf"\b{sym}\b"}),
        _t("t2", "Improve it", "code", ["t1"], {"paths": [f], "instruction": f"Improve {topic} in {sym} without breaking its callers (t1's output lists them)."}),
        _t("t3", "Run the tests", "run_tests", ["t2"], {}),
    ]}


def _single(rng, p: Project):
    kind = rng.randrange(4)
    if kind == 0:
        req = _phrase(rng, ("Run the tests.", "Run the test suite.", "Execute the tests."))
        return req, {"goal": "Run the tests", "tasks": [_t("t1", "Run the tests", "run_tests", [], {})]}
    if kind == 1:
        msg = rng.choice(_COMMIT_MESSAGES)
        req = _phrase(rng, ("Commit everything with the message \"{m}\".", "Commit my changes: {m}."), m=msg)
        return req, {"goal": "Commit the changes", "tasks": [_t("t1", "Commit", "git_commit", [], {"message": msg})]}
    if kind == 2:
        f = rng.choice(p.sources + p.extra_files)
        req = _phrase(rng, ("Show me {f}.", "Open {f}.", "Print the contents of {f}."), f=f)
        return req, {"goal": f"Show {f}", "tasks": [_t("t1", f"Read {Path(f).name}", "read_files", [], {"paths": [f]})]}
    sym, _ = rng.choice(p.symbols)
    req = _phrase(rng, ("Where is {s} defined?", "Find the definition of {s}."), s=sym)
    return req, {"goal": f"Find {sym}", "tasks": [_t("t1", f"Search for {sym}", "search", [], {"pattern": sym})]}


INTENTS: tuple[Callable[[random.Random, Project], tuple[str, dict[str, Any]]], ...] = (
    _explain_file, _find_usages, _run_tests_summary, _fix_failing_tests, _add_tests, _add_docs, _todos, _lint,
    _history, _compare, _literal_edit, _exact_file, _readme, _improve, _single,
)


# -- project repositories, for the exact repository context ---------------------------------------
def _git(repo: Path, *args: str) -> None:
    if args[0] == "init":
        gitread.init(repo, initial_branch="main")
    else:
        gitread.run(repo, *args)


@contextmanager
def project_repos(projects: tuple[Project, ...] = PROJECTS) -> Iterator[dict[str, Path]]:
    """Real throwaway git repositories of the projects (files with placeholder content)."""
    with tempfile.TemporaryDirectory(prefix="agx-data-") as tmp:
        repos = {}
        for p in projects:
            repo = Path(tmp) / p.name
            repo.mkdir()
            for rel in (*p.sources, *p.tests, *p.extra_files):
                path = repo / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(p.readme + "\n" if rel == "README.md" else f"# {rel}\n", encoding="utf-8")
            _git(repo, "init", "-q", "-b", "main")
            _git(repo, "add", "-A")
            _git(repo, "-c", "user.email=data@agx", "-c", "user.name=agx", "commit", "-q", "-m", "initial")
            repos[p.name] = repo
        yield repos


def project_contexts(projects: tuple[Project, ...] = PROJECTS) -> dict[str, str]:
    """`repo_context()` of each project, computed from a real repository."""
    with project_repos(projects) as repos:
        return {name: repo_context(path) for name, path in repos.items()}


# -- records ------------------------------------------------------------------------------------
def plan_record(request: str, plan: dict[str, Any], catalogue: ToolCatalogue, context: str | None,
                source: str, record_id: str, catalogue_ref: str = BUILTIN_CATALOGUE) -> dict[str, Any]:
    """A training record: the inference prompt plus the canonical plan JSON as the answer."""
    messages = build_plan_messages(request, catalogue, context)
    messages.append({"role": "assistant", "content": canonical_plan_json(plan)})
    return {"id": record_id, "source": source, "request": request, "catalogue": catalogue_ref,
            "plan": plan, "messages": messages}


def synthetic_requests(count: int, seed: int = 0) -> list[tuple[str, str, dict[str, Any]]]:
    """`count` (project name, request, gold plan) triples, deterministic in `seed`; intents are
    drawn round-robin so every kind of plan is represented."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        project = rng.choice(PROJECTS)
        request, plan = INTENTS[i % len(INTENTS)](rng, project)
        out.append((project.name, request, plan))
    return out


def generate_synthetic(count: int, seed: int = 0, contexts: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Synthetic plan records; every gold plan is checked by the validator (a failure is a bug here)."""
    catalogue = builtin_catalogue()
    contexts = contexts if contexts is not None else project_contexts()
    records = []
    for project, request, plan in synthetic_requests(count, seed):
        report = validate_plan(plan, catalogue)
        if not report.ok:
            raise AssertionError(f"generator produced an invalid plan for {request!r}: {report.errors}")
        rid = "agx-" + hashlib.sha256(f"{project}\n{request}".encode()).hexdigest()[:12]
        records.append(plan_record(request, plan, catalogue, contexts.get(project), "agx-synthetic", rid))
    return records


@dataclass
class DistillReport:
    records: list[dict[str, Any]] = field(default_factory=list)
    attempted: int = 0
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)


def distill(engine, requests: list[tuple[str, str]], repos: dict[str, Path], repair_rounds: int = 1,
            max_tokens: int | None = 1024, on_progress: Callable[[int, int, bool], None] | None = None,
            cancel=None) -> DistillReport:
    """Plan each (project, request) with the teacher through agx's Planner (the same prompt,
    grammar and repair loop Delta uses); keep only plans that pass validation."""
    from agx.planning.planner import Planner

    catalogue = builtin_catalogue()
    report = DistillReport()
    planners = {name: Planner(engine, catalogue, repo_dir=path, repair_rounds=repair_rounds, max_tokens=max_tokens)
                for name, path in repos.items()}
    contexts = {name: repo_context(path) for name, path in repos.items()}
    for i, (project, request) in enumerate(requests):
        if cancel is not None and cancel.cancelled:
            break
        report.attempted += 1
        result = planners[project].plan(request, cancel=cancel)
        ok = result.ok and result.plan is not None and validate_plan(result.plan, catalogue).ok
        if ok:
            plan = result.plan.model_dump()
            rid = "distill-" + hashlib.sha256(f"{project}\n{request}".encode()).hexdigest()[:12]
            report.records.append(plan_record(request, plan, catalogue, contexts[project], "agx-distilled", rid))
        else:
            report.rejected += 1
            if len(report.reasons) < 20:
                report.reasons.append(f"{request[:60]!r}: {'; '.join(result.errors[:2]) or 'no plan'}")
        if on_progress is not None:
            on_progress(i + 1, len(requests), ok)
    return report
