"""The local stack: processes (Prometheus, Alertmanager, perfgen commands), their configs,
a webhook receiver, and the demo that ties them together.

docs/demo.md describes it.
"""
