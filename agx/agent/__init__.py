"""One request's whole life, below both front ends: plan, approve, run, observe, replan, report.

`agx run` and the shell only ask (approval callbacks) and show (the event stream)."""
