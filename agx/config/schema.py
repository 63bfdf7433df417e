"""The shape of agx.toml, validated by pydantic v2.

Every model forbids unknown keys so a typo is an error naming its key path rather than a
setting silently ignored.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agx.config.roles import ROLE_NAMES


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SamplingConfig(_Strict):
    temperature: float = Field(0.2, ge=0.0, le=5.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    top_k: int = Field(40, ge=0)
    min_p: float = Field(0.05, ge=0.0, le=1.0)
    repeat_penalty: float = Field(1.1, ge=0.0)
    seed: int = -1
    max_tokens: int = Field(1024, ge=1)


class RoleConfig(_Strict):
    """One role (Echo or Delta): which model, where it runs, how it samples."""

    backend: Literal["llama_cpp", "openai"] = "llama_cpp"
    # A local path, hf://owner/repo/file.gguf, or bundled:smollm2.
    model: str = "bundled:smollm2"
    n_ctx: int = Field(4096, ge=256)
    # -1 offloads every layer the build supports; 0 keeps the model on the CPU.
    n_gpu_layers: int = Field(-1, ge=-1)
    n_threads: int | None = Field(None, ge=1)
    n_batch: int = Field(512, ge=1)
    # Overrides the chat template from GGUF metadata (a llama-cpp-python chat_format name).
    chat_format: str | None = None
    # LoRA adapter: a name under adapters/, a path to a .gguf adapter, "auto" (the adapter
    # shipped for this role on this base model, if installed: agenix-delta-smollm2 for Delta
    # on the bundled model) or "none".
    adapter: str | None = "auto"
    # How strongly the adapter is applied (llama.cpp scales its delta). Unset: the scale its
    # manifest was measured at ("scale": agenix-delta-smollm2 plans best at 1.15), else 1.0.
    adapter_scale: float | None = Field(None, ge=0)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    # In-process grammar-constrained output (plans): "fast" checks the model's own choice
    # against the grammar and applies the grammar to candidates only when it is refused;
    # "grammar_first" is llama-cpp-python's chain (grammar over the whole vocabulary each
    # token). Greedy output is identical; "fast" is much quicker on large vocabularies.
    constrained_sampling: Literal["fast", "grammar_first"] = "fast"
    # Delta's planning prompt (agx/planning/prompt.py): "full" (rules, typed tool lines, an
    # example over the catalogue's tools) or "compact" (one instruction line, one short line per
    # tool), "compact_example" (+ a generic example). The bundled 135M model copies the full
    # prompt's example plan; compact costs a third fewer prompt tokens (README, Performance).
    # "auto": the style the role's adapter was trained with (its manifest), else "full".
    prompt_style: Literal["auto", "full", "compact", "compact_example"] = "auto"
    # Delta in-process: over a catalogue whose tools declare input/output types (TaskBench's
    # tool files; agx's catalogue files with input_types / output_types), a task that depends
    # on the task just before it may only use a tool that accepts that task's output
    # (schema_grammar, "typed links"). Untyped tools (built-in, MCP) are never constrained.
    typed_links: bool = True
    system_prompt: str | None = None
    # Remote backend (backend = "openai").
    base_url: str | None = None
    api_key_env: str | None = None
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(2, ge=0)
    # What the server understands for constrained output: vLLM / llama-server take
    # response_format with a JSON schema, Ollama takes `format`.
    schema_mode: Literal["response_format", "ollama_format", "none"] = "response_format"

    @model_validator(mode="after")
    def _remote_needs_url(self) -> "RoleConfig":
        if self.backend == "openai" and not self.base_url:
            raise ValueError("backend = 'openai' needs base_url (e.g. http://worker2:8000/v1)")
        return self


class RolesConfig(_Strict):
    echo: RoleConfig = Field(default_factory=RoleConfig)
    delta: RoleConfig = Field(default_factory=RoleConfig)


class SandboxConfig(_Strict):
    """The OS sandbox around command tasks (agx/execution/sandbox.py)."""

    # workspace-write: writes only in the plan's worktree and temp dirs; read-only: temp dirs only.
    mode: Literal["workspace-write", "read-only", "off"] = "workspace-write"
    network: bool = False
    # Extra directories commands may write to (e.g. "~/.cache/pip").
    allow_write: list[str] = Field(default_factory=list)


class ExecutionConfig(_Strict):
    max_parallel: int = Field(4, ge=1)
    task_timeout_s: float = Field(300.0, gt=0)
    output_cap_bytes: int = Field(1_000_000, ge=1024)
    repair_rounds: int = Field(2, ge=0)
    test_command: str | None = None
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)


class AgentConfig(_Strict):
    # Plan -> run -> observe rounds per request; after a round that misses the goal, Delta
    # replans on the same plan branch until this many rounds have run.
    max_rounds: int = Field(3, ge=1, le=20)
    # Characters of a failed task's output (and of the test report) Delta sees when it replans.
    observe_chars: int = Field(1500, ge=200, le=20000)
    # Offer Delta the `code` tool (edits written with the file in view). false: only
    # write_file/edit_file, edits written blind in the plan (bench_agent's baseline).
    code_tool: bool = True
    # After the summary, Echo says what happened in a few sentences (from the session's record).
    echo_report: bool = True
    # How a plain message in the shell is judged chat or a change request for Delta:
    # "classifier" (agx/agent/route.py: fitted on shipped labelled messages, no model needed)
    # or "model" (Echo's engine answers a constrained yes/no).
    route: Literal["classifier", "model"] = "classifier"
    # The project's tests before round 1 (while Delta plans), so the report can say before/after.
    # "auto": only when the approval policy runs tests without asking (agx run --yes);
    # "ask": also when that needs a yes; "off": never.
    tests_before: Literal["auto", "ask", "off"] = "auto"


class UIConfig(_Strict):
    # Action name -> key, e.g. approve_all = "a".
    keymap: dict[str, str] = Field(default_factory=dict)
    max_fps: int = Field(30, ge=1, le=240)
    # Share of one CPU core the shell's drawing may use while a local model decodes with no
    # core to spare (frames are spaced out to stay under it; 1.0 turns the limit off).
    render_budget: float = Field(0.06, gt=0, le=1)
    # Show the last start's first frame while Python loads the shell (ui/instant_frame.py).
    instant_frame: bool = True


MCP_SERVER_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"  # no dots: tools are named SERVER.TOOL


class McpServerConfig(_Strict):
    """One MCP server (agx/mcp): a stdio `command`, or a streamable-HTTP `url`."""

    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)  # added to a small inherited set (PATH, HOME, ...)
    cwd: str | None = None  # default: the repository
    url: str | None = None
    # HTTP header -> name of the environment variable holding its value (never the value itself).
    headers_env: dict[str, str] = Field(default_factory=dict)
    enabled: bool = True
    timeout_s: float = Field(60.0, gt=0)  # per tool call (and for the server's start)

    @model_validator(mode="after")
    def _one_transport(self) -> "McpServerConfig":
        if bool(self.command) == bool(self.url):
            raise ValueError("set either command (a stdio server) or url (streamable HTTP), not both or neither")
        return self


class McpConfig(_Strict):
    servers: dict[str, McpServerConfig] = Field(default_factory=dict)
    # Also read the project's .mcp.json ({"mcpServers": {...}}, as other agent shells do).
    read_mcp_json: bool = True
    # Above this many tools, Delta's prompt and grammar get only the most relevant ones.
    max_tools: int = Field(20, ge=1, le=200)
    # A server that dies after it was up is restarted on its next use, at most this many times
    # per agx process; the first restart waits restart_backoff_s after the death, each next one
    # twice as long. A server that never came up is not restarted (fix its settings).
    max_restarts: int = Field(3, ge=0, le=100)
    restart_backoff_s: float = Field(1.0, ge=0, le=300)

    @model_validator(mode="after")
    def _server_names(self) -> "McpConfig":
        import re

        for name in self.servers:
            if not re.match(MCP_SERVER_NAME_PATTERN, name):
                raise ValueError(f"server name {name!r}: use letters, digits, _ and - (no dots), at most 32")
        return self


class ProfileConfig(_Strict):
    description: str = ""
    roles: dict[str, dict] = Field(default_factory=dict)


class AgxConfig(_Strict):
    profile: str | None = None
    models_dir: str | None = None
    adapters_dir: str | None = None
    roles: RolesConfig = Field(default_factory=RolesConfig)
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)
    agent: AgentConfig = Field(default_factory=AgentConfig)
    ui: UIConfig = Field(default_factory=UIConfig)
    mcp: McpConfig = Field(default_factory=McpConfig)
    profiles: dict[str, ProfileConfig] = Field(default_factory=dict)

    def role(self, name: str) -> RoleConfig:
        if name not in ROLE_NAMES:
            raise KeyError(f"unknown role {name!r}; roles are {', '.join(ROLE_NAMES)}")
        return getattr(self.roles, name)
