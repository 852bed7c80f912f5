"""The zombie-run automation on a real Prefect server (the session's test server)."""

from __future__ import annotations

import time
from datetime import timedelta

from prefect import flow
from prefect.automations import Automation
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.events import emit_event
from prefect.states import Running

from pipelines import zombies


@flow(name="ferops-zombie-probe")
def probe() -> None:
    pass


def test_ensure_is_idempotent_and_follows_the_heartbeat(prefect_api):
    first = zombies.ensure(30)
    assert zombies.ensure(30).id == first.id        # unchanged: kept, with what it has seen
    assert first.trigger.within == timedelta(seconds=90)
    changed = zombies.ensure(45)
    assert changed.id == first.id
    assert Automation.read(name=zombies.NAME).trigger.within == timedelta(seconds=135)
    with get_client(sync_client=True) as client:
        assert len(client.read_automations_by_name(zombies.NAME)) == 1


def test_a_run_whose_heartbeats_stop_is_crashed(prefect_api):
    """The real trigger engine: one heartbeat, then silence -> Crashed (a short window here;
    the shipped one is 3 x pipelines.heartbeat_s)."""
    auto = zombies.automation(30)
    auto.name = "ferops test: crash silent runs"
    auto.trigger.within = timedelta(seconds=10)
    auto = auto.create()
    try:
        with get_client(sync_client=True) as client:
            silent = client.create_flow_run(probe, state=Running())
            alive = client.create_flow_run(probe, state=Running())
            for run in (silent, alive):
                emit_event("prefect.flow-run.heartbeat",
                           resource={"prefect.resource.id": f"prefect.flow-run.{run.id}"})
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                emit_event("prefect.flow-run.heartbeat",
                           resource={"prefect.resource.id": f"prefect.flow-run.{alive.id}"})
                state = client.read_flow_run(silent.id).state
                if state.type == StateType.CRASHED:
                    break
                time.sleep(2)
            assert state.type == StateType.CRASHED, state
            assert "No heartbeat" in (state.message or "")
            assert client.read_flow_run(alive.id).state.type == StateType.RUNNING
    finally:
        auto.delete()
