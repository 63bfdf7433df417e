"""Execution: the asyncio DAG executor, tool runners, approval policy, and the event stream."""
