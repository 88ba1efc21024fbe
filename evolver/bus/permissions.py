"""Per-service NATS users and subject permissions, derived from the topology.

A service may publish only the events it emits, write only its own KV and Object Store buckets,
and ack only its own durable consumers; so an explorer pod cannot forge rollout.attributed
(training data) or rewrite a run. `nats_authorization()` renders the nats-server config block that
k8s/base/nats.yaml carries (a test checks the manifest is current: `python -m
evolver.bus.permissions > block` regenerates it), and tests/integration/test_nats_permissions.py
runs every service under its own user against a real nats-server with that block.

Left open by design (documented in docs/OPERATIONS.md): the JetStream API (`$JS.API.>`) is
allowed to every service, because each replica applies the topology at start and reads KV and
Object Store through it; a cluster that wants tighter control applies the topology once from the
bootstrap Job and narrows it.
"""

from __future__ import annotations

from evolver.bus import topology

EMITS: dict[str, tuple[str, ...]] = {
    "explorer": ("explore.completed", "rollout.completed"),
    "task_gen": ("explore.requested", "tasks.accepted"),
    "memory": ("experience.stored",),
    "attributor": ("rollout.attributed",),
    "trainer": ("rollout.requested", "policy.updated", "run.progress"),
}
# Core (non-JetStream) subscriptions a service makes besides its reply inboxes.
SUBSCRIBES: dict[str, tuple[str, ...]] = {"trainer": ("tasks.accepted",)}
WRITES_KV: dict[str, tuple[str, ...]] = {
    "task_gen": (topology.ENVIRONMENTS_BUCKET, topology.TASKS_BUCKET, topology.TASK_STATS_BUCKET),
    "trainer": (topology.RUNS_BUCKET, topology.RUN_CHECKPOINTS_BUCKET, topology.ROLLOUT_INDEX_BUCKET,
                topology.POLICIES_BUCKET),
}
WRITES_OBJECTS: dict[str, tuple[str, ...]] = {
    "trainer": (topology.ADAPTERS_BUCKET, topology.CHECKPOINTS_BUCKET),
}


def permissions(service: str) -> dict[str, dict[str, list[str]]]:
    """{"publish": {"allow": [...]}, "subscribe": {"allow": [...]}} for one service's user."""
    if service not in EMITS:
        raise KeyError(f"no service {service!r}; services are {sorted(EMITS)}")
    durables = [c for c in topology.consumers_of(service)] + [topology.consumer("dead-letter-sweeper")]
    publish = [*EMITS[service], f"diag.pong.{service}", "dead.>",
               f"$KV.{topology.SERVICES_BUCKET}.>", f"$O.{topology.PAYLOAD_BUCKET}.>",
               *(f"$KV.{b}.>" for b in WRITES_KV.get(service, ())),
               *(f"$O.{b}.>" for b in WRITES_OBJECTS.get(service, ())),
               "$JS.API.>", "$JS.FC.>",
               *sorted({f"$JS.ACK.{c.stream.name}.{c.durable}.>" for c in durables})]
    subscribe = ["_INBOX.>", *SUBSCRIBES.get(service, ())]
    return {"publish": {"allow": publish}, "subscribe": {"allow": subscribe}}


def nats_authorization(password_var: str = "NATS_{SERVICE}_PASSWORD", admin: bool = True) -> str:
    """The nats-server `authorization` block: one user per service (password from an environment
    variable of the NATS pod) and, optionally, an `admin` user for the CLI and the bootstrap Job."""
    lines = ["authorization {", "  users = ["]
    for service in sorted(EMITS):
        perms = permissions(service)
        var = password_var.format(SERVICE=service.upper())
        lines.append(f"    {{ user: {service}, password: ${var}, permissions: {{")
        lines.append(f"        publish: {{ allow: {_list(perms['publish']['allow'])} }}")
        lines.append(f"        subscribe: {{ allow: {_list(perms['subscribe']['allow'])} }} }} }}")
    if admin:
        lines.append(f"    {{ user: admin, password: ${password_var.format(SERVICE='ADMIN')} }}")
    lines += ["  ]", "}"]
    return "\n".join(lines)


def _list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


if __name__ == "__main__":
    print(nats_authorization())
