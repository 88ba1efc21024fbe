"""Imported once by the environment server's fork server (BfclEnvironment.preload): the task data,
tool schemas and API classes are loaded there, so every instance's worker process starts with
them instead of parsing them again (~170 ms each)."""

from evolver.envs.bfcl import catalog, tasks

tasks.by_id()
for _name in catalog.CLASSES:
    catalog._docs(_name)
    catalog._class(_name)
