"""Prefect 3 flows over the ferops commands: retraining, its triggers, drift monitoring.

Adapters only (DESIGN.md): every step is a `dvc`/`ferops` command or a ferops function;
no ML logic lives here. Nothing happens at import time.
"""
