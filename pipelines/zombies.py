"""Flow runs whose process was killed are marked Crashed, so they cannot block retraining.

A SIGKILLed worker, an evicted container or a lost machine leaves its flow runs `Running` on
the Prefect server forever, and the retrain deployment's concurrency limit (1, ENQUEUE) then
holds every later retraining in the queue. Flow runs of deployments send a heartbeat every
`pipelines.heartbeat_s` seconds (PREFECT_FLOWS_HEARTBEAT_FREQUENCY); this automation crashes a
run that sent one and then neither another nor a final state within three of them: the
self-hosted recipe of Prefect's docs ("detect zombie flows"). The next retraining then runs
and resumes the killed training from its checkpoint (ferops.training.checkpoint).

    python -m pipelines.zombies [--project-dir .]   # create or update it; prints heartbeat_s

The stack's worker (deploy/worker.sh) runs this and exports the printed frequency.
"""

from __future__ import annotations

import argparse
from datetime import timedelta

from prefect.automations import Automation
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification

from pipelines.common import project_params, resolve_project

NAME = "ferops: crash flow runs that stopped sending heartbeats"
MISSED = 3   # heartbeats a run may miss (a busy 2-core machine delays some) before it is crashed


def automation(heartbeat_s: int) -> Automation:
    final = {f"prefect.flow-run.{s}" for s in ("Completed", "Failed", "Cancelled", "Crashed")}
    return Automation(
        name=NAME,
        description="A flow run whose heartbeats stopped (its process was killed) is marked "
                    "Crashed, which also frees its deployment's concurrency slot.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *final},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=MISSED * heartbeat_s)),
        actions=[ChangeFlowRunState(
            state=StateType.CRASHED,
            message=f"No heartbeat for {MISSED * heartbeat_s} s: the flow run's process "
                    "was killed (worker or container gone).")])


def ensure(heartbeat_s: int) -> Automation:
    """Create the automation, or update one of the same name whose definition differs.

    An unchanged one is left alone: recreating it at every worker start would forget the
    heartbeats it has seen, and with them the runs of the worker that was just killed."""
    wanted = automation(heartbeat_s)
    try:
        current = Automation.read(name=NAME)
    except ValueError:
        return wanted.create()
    if _definition(current) == _definition(wanted):
        return current
    wanted.id = current.id
    wanted.update()
    return wanted


def _definition(a: Automation) -> dict:
    return {"trigger": a.trigger.model_dump(mode="json", exclude={"id"}),
            "actions": [x.model_dump(mode="json") for x in a.actions],
            "enabled": a.enabled, "description": a.description}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.zombies",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--project-dir", default=".")
    args = parser.parse_args(argv)
    heartbeat_s = project_params(resolve_project(args.project_dir)).pipelines.heartbeat_s
    ensure(heartbeat_s)
    print(heartbeat_s)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
