"""The shell's panes: chat, plan, task, git, status bar."""

from agx.ui.widgets.chat import ChatPane, MessageInput
from agx.ui.widgets.git import GitPane
from agx.ui.widgets.plan import PlanPane
from agx.ui.widgets.status import StatusBar
from agx.ui.widgets.task import TaskPane

__all__ = ["ChatPane", "GitPane", "MessageInput", "PlanPane", "StatusBar", "TaskPane"]
