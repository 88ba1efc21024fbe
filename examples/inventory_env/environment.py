"""Inventory and orders: stock per SKU, orders that reserve stock, cancellations that return it.

State is plain JSON, so GetState is exact and synthetic tasks can be verified by state match.
Seed tasks are scored by comparing the end state with the state the reference calls produce.
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

from evolver.envs.arguments import check_object
from evolver.envs.base import Call, CallResult, Score, SeedTask, StepOutcome, Tool
from evolver.errors import FailedPrecondition, InvalidArgument, NotFound

INITIAL = {
    "items": {
        "SKU-1": {"name": "blue mug", "qty": 10, "price": 8.5},
        "SKU-2": {"name": "red kettle", "qty": 2, "price": 30.0},
        "SKU-3": {"name": "tea sampler", "qty": 0, "price": 12.0},
    },
    "orders": {},
    "next_order": 1,
}

TOOLS = [
    Tool("list_items", "List every SKU with its name, stock and price.", {"type": "object", "properties": {}}),
    Tool("get_item", "Show one SKU.", {"type": "object", "properties": {"sku": {"type": "string"}}, "required": ["sku"]}),
    Tool("add_stock", "Receive stock for a SKU.", {"type": "object", "properties": {
        "sku": {"type": "string"}, "qty": {"type": "integer"}}, "required": ["sku", "qty"]}),
    Tool("create_order", "Order qty units of a SKU; fails when stock is short.", {"type": "object", "properties": {
        "sku": {"type": "string"}, "qty": {"type": "integer"}}, "required": ["sku", "qty"]}),
    Tool("cancel_order", "Cancel an order and return its stock.", {"type": "object", "properties": {
        "order_id": {"type": "string"}}, "required": ["order_id"]}),
    Tool("get_order", "Show one order.", {"type": "object", "properties": {"order_id": {"type": "string"}},
                                          "required": ["order_id"]}),
]

# (id, split, request, reference calls)
SEEDS = [
    ("inv-0", "train", "Order 3 blue mugs.", [Call("create_order", {"sku": "SKU-1", "qty": 3})]),
    ("inv-1", "train", "We received 5 tea samplers; record it and then order 2 of them.",
     [Call("add_stock", {"sku": "SKU-3", "qty": 5}), Call("create_order", {"sku": "SKU-3", "qty": 2})]),
    ("inv-2", "test", "Order both red kettles, then cancel that order.",
     [Call("create_order", {"sku": "SKU-2", "qty": 2}), Call("cancel_order", {"order_id": "O-1"})]),
]


class Inventory:
    def __init__(self, state: dict[str, Any]):
        self.state = copy.deepcopy(state)

    def _item(self, sku: str) -> dict[str, Any]:
        if sku not in self.state["items"]:
            raise KeyError(f"unknown sku {sku}")
        return self.state["items"][sku]

    def call(self, name: str, args: dict[str, Any]) -> Any:
        items, orders = self.state["items"], self.state["orders"]
        if name == "list_items":
            return items
        if name == "get_item":
            return self._item(args["sku"])
        if name == "add_stock":
            if args["qty"] <= 0:
                raise ValueError("qty must be positive")
            self._item(args["sku"])["qty"] += args["qty"]
            return self._item(args["sku"])
        if name == "create_order":
            item = self._item(args["sku"])
            if args["qty"] <= 0 or args["qty"] > item["qty"]:
                raise ValueError(f"cannot order {args['qty']} of {args['sku']}: {item['qty']} in stock")
            order_id = f"O-{self.state['next_order']}"
            self.state["next_order"] += 1
            item["qty"] -= args["qty"]
            orders[order_id] = {"sku": args["sku"], "qty": args["qty"], "status": "open"}
            return {"order_id": order_id, **orders[order_id]}
        if name == "cancel_order":
            order = orders.get(args["order_id"])
            if order is None or order["status"] != "open":
                raise ValueError(f"no open order {args['order_id']}")
            order["status"] = "cancelled"
            self._item(order["sku"])["qty"] += order["qty"]
            return order
        if name == "get_order":
            if args["order_id"] not in orders:
                raise KeyError(f"unknown order {args['order_id']}")
            return orders[args["order_id"]]
        raise KeyError(name)


class InventoryEpisode:
    def __init__(self, state: dict[str, Any], query: str, reference: Sequence[Call] | None):
        self.inventory = Inventory(state)
        self.initial = copy.deepcopy(state)
        self.user_message = query
        self.reference = reference
        self.done = False
        self._tools = {t.name: t for t in TOOLS}

    def tool_list(self) -> list[Tool]:
        return list(TOOLS)

    def step(self, calls: Sequence[Call], assistant_text: str = "") -> StepOutcome:
        if self.done:
            raise FailedPrecondition("the episode is finished")
        if not calls:
            self.done = True
            return StepOutcome([], done=True)
        results = []
        for c in calls:
            tool = self._tools.get(c.name)
            if tool is None:
                results.append(CallResult(c.call_id, f"Error: unknown tool '{c.name}'", True))
                continue
            problems = check_object(c.arguments, tool.parameters)
            if problems:
                results.append(CallResult(c.call_id, "Error: " + "; ".join(problems), True))
                continue
            try:
                results.append(CallResult(c.call_id, repr(self.inventory.call(c.name, c.arguments)), False))
            except (KeyError, ValueError) as e:
                results.append(CallResult(c.call_id, f"Error: {e}", True))
        return StepOutcome(results)

    def state(self) -> dict[str, Any]:
        return copy.deepcopy(self.inventory.state)

    def evaluate(self) -> Score:
        if self.reference is None:
            raise FailedPrecondition("no reference for an instance created from an explicit state")
        expected = Inventory(self.initial)
        for c in self.reference:
            expected.call(c.name, c.arguments)
        ok = expected.state == self.inventory.state
        return Score(1.0 if ok else 0.0, ok, {"state_match": ok})

    def close(self) -> None:
        pass


class InventoryEnvironment:
    env_id = "inventory"
    state_visible = True

    def tools(self, toolsets: Sequence[str] = ()) -> list[Tool]:
        return list(TOOLS)

    def seed_tasks(self, split: str = "") -> list[SeedTask]:
        return [SeedTask(i, s, (q,), INITIAL, ("inventory",)) for i, s, q, _ in SEEDS if not split or s == split]

    def create(self, *, seed_task_id=None, initial_state=None, toolsets=(), query_override="") -> InventoryEpisode:
        if seed_task_id:
            seed = next((s for s in SEEDS if s[0] == seed_task_id), None)
            if seed is None:
                raise NotFound(f"no seed task {seed_task_id!r}")
            return InventoryEpisode(INITIAL, query_override or seed[2], None if query_override else seed[3])
        if not isinstance(initial_state, dict) or "items" not in initial_state:
            raise InvalidArgument("initial_state_json", "must be an object with 'items' (and optionally 'orders')")
        state = {"orders": {}, "next_order": 1, **initial_state}
        return InventoryEpisode(state, query_override, None)
