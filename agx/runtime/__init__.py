"""Runtime: the one engine interface (engine.py) and its backends.

Everything above this layer (planner, executor, shell, CLI) talks to models only through
`Engine.chat(ChatRequest, CancelToken) -> ChatStream`.
"""

from agx.runtime.engine import (
    CancelToken,
    ChatRequest,
    ChatStream,
    Engine,
    EngineError,
    EngineInfo,
    GenerationCancelled,
    GenerationStats,
)

__all__ = [
    "CancelToken",
    "ChatRequest",
    "ChatStream",
    "Engine",
    "EngineError",
    "EngineInfo",
    "GenerationCancelled",
    "GenerationStats",
]
