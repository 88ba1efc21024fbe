"""A library-loans environment written from the proto alone: grpcio, the generated stubs and
the standard library. Nothing from Evolver is imported (the first line makes sure of it).

    python examples/proto_only_env/generate_stubs.py /tmp/stubs
    python examples/proto_only_env/server.py --stubs /tmp/stubs --port 50070
    evolver env add 127.0.0.1:50070 --id library

docs/ENVIRONMENTS.md walks through it. The state is id-keyed (books and loans by id), so
exploration has to use ids the environment itself returned."""

import sys

sys.modules["evolver"] = None  # type: ignore[assignment]  # proof: `import evolver` fails here

import argparse  # noqa: E402
import copy  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import threading  # noqa: E402
import uuid  # noqa: E402
from concurrent import futures  # noqa: E402

import grpc  # noqa: E402

INITIAL = {
    "books": {"b1": {"title": "Dune", "author": "Frank Herbert", "available": True},
              "b2": {"title": "Emma", "author": "Jane Austen", "available": True},
              "b3": {"title": "Ulysses", "author": "James Joyce", "available": False}},
    "loans": {"l1": {"book_id": "b3", "member": "ana"}},
}
TOOLS = [
    ("list_books", "List the library's books, optionally by one author.",
     {"type": "object", "properties": {"author": {"type": "string"}}}),
    ("borrow_book", "Lend an available book to a member; returns the new loan id.",
     {"type": "object", "properties": {"book_id": {"type": "string"}, "member": {"type": "string"}},
      "required": ["book_id", "member"]}),
    ("return_book", "Return a loaned book by its loan id.",
     {"type": "object", "properties": {"loan_id": {"type": "string"}}, "required": ["loan_id"]}),
    ("list_loans", "List current loans, optionally of one member.",
     {"type": "object", "properties": {"member": {"type": "string"}}}),
]
# (id, split, user turns, the end state's check) - the environment's own tasks.
SEEDS = [
    ("lib-0", "train", ["Lend Dune to bo."], lambda s: any(l["book_id"] == "b1" and l["member"] == "bo"
                                                          for l in s["loans"].values())),
    ("lib-1", "train", ["Ana brought Ulysses back; record the return."], lambda s: not s["loans"]),
    ("lib-2", "test", ["Lend Emma to cy.", "Now list cy's loans."],
     lambda s: any(l["book_id"] == "b2" and l["member"] == "cy" for l in s["loans"].values())),
]


NO_SEEDS = False


def canonical_hash(state):
    text = json.dumps(state, sort_keys=True, separators=(",", ":"))
    return text, hashlib.sha256(text.encode()).hexdigest()[:32]


class Instance:
    def __init__(self, state, turns, check):
        self.state, self.turns, self.check, self.turn, self.done = state, turns, check, 0, False

    def call(self, name, args):
        books, loans = self.state["books"], self.state["loans"]
        if name == "list_books":
            return {i: b for i, b in books.items() if not args.get("author") or b["author"] == args["author"]}
        if name == "list_loans":
            return {i: l for i, l in loans.items() if not args.get("member") or l["member"] == args["member"]}
        if name == "borrow_book":
            book = books.get(args.get("book_id"))
            if book is None or not book["available"]:
                raise ValueError(f"no available book {args.get('book_id')!r}")
            n = 1
            while f"l{n}" in loans:
                n += 1
            loan_id = f"l{n}"
            loans[loan_id] = {"book_id": args["book_id"], "member": str(args.get("member", ""))}
            book["available"] = False
            return {"loan_id": loan_id}
        if name == "return_book":
            loan = loans.pop(args.get("loan_id"), None)
            if loan is None:
                raise ValueError(f"no loan {args.get('loan_id')!r}")
            books[loan["book_id"]]["available"] = True
            return {"returned": loan["book_id"]}
        raise ValueError(f"unknown tool {name!r}")


def make_servicer(pb, pb_grpc, tpb):
    def tool_schemas():
        return [pb.ToolSchema(name=n, description=d, parameters_json_schema=json.dumps(s)) for n, d, s in TOOLS]

    class LibraryEnvironment(pb_grpc.EnvironmentServiceServicer):
        def __init__(self):
            self.instances, self.lock = {}, threading.Lock()

        def _get(self, request, context):
            inst = self.instances.get(request.instance_id)
            if inst is None:
                context.abort(grpc.StatusCode.NOT_FOUND, "no such instance")
            return inst

        def ListTools(self, request, context):
            return pb.ListToolsResponse(tools=tool_schemas(), state_visible=True)

        def ListSeedTasks(self, request, context):
            if NO_SEEDS:
                return pb.ListSeedTasksResponse()
            if request.page_token:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "page_token: not a token this server issued")
            return pb.ListSeedTasksResponse(tasks=[
                pb.SeedTask(seed_task_id=i, split=split, user_turns=turns, initial_state_json=json.dumps(INITIAL))
                for i, split, turns, _ in SEEDS if not request.split or request.split == split])

        def Create(self, request, context):
            source = request.WhichOneof("source")
            if source == "seed_task_id":
                seed = next((s for s in SEEDS if s[0] == request.seed_task_id), None)
                if seed is None:
                    context.abort(grpc.StatusCode.NOT_FOUND, f"no seed task {request.seed_task_id[:64]!r}")
                state, turns, check = copy.deepcopy(INITIAL), list(seed[2]), seed[3]
            elif source == "initial_state_json":  # "{}": the default initial state
                state = json.loads(request.initial_state_json) or copy.deepcopy(INITIAL)
                turns, check = ["Explore the library."], None
            else:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "source: set seed_task_id or initial_state_json")
            if request.query_override:  # a synthetic task: one turn, no ground truth of its own
                turns, check = [request.query_override], None
            instance_id = uuid.uuid4().hex
            with self.lock:
                self.instances[instance_id] = Instance(state, turns, check)
            return pb.CreateResponse(instance_id=instance_id, user_message=turns[0], tools=tool_schemas())

        def Step(self, request, context):
            inst = self._get(request, context)
            if inst.done:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the episode is finished")
            if not request.tool_calls:  # an answer ends the user turn
                inst.turn += 1
                inst.done = inst.turn >= len(inst.turns)
                return pb.StepResponse(next_user_message="" if inst.done else inst.turns[inst.turn], done=inst.done)
            observations = []
            for c in request.tool_calls:  # a failing call is an observation, never a gRPC error
                try:
                    args = json.loads(c.arguments_json or "{}")
                    result = inst.call(c.name, args if isinstance(args, dict) else {})
                    observations.append(tpb.Observation(call_id=c.call_id, kind=tpb.OBSERVATION_KIND_RESULT,
                                                        content=json.dumps(result)))
                except Exception as e:  # noqa: BLE001 - the agent must see what went wrong
                    observations.append(tpb.Observation(call_id=c.call_id, kind=tpb.OBSERVATION_KIND_TOOL_ERROR,
                                                        content=f"Error: {e}"))
            return pb.StepResponse(observations=observations)

        def Evaluate(self, request, context):
            inst = self._get(request, context)
            if inst.check is None:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no ground truth: a synthetic or explicit-state instance")
            ok = bool(inst.check(inst.state))
            return pb.EvaluateResponse(score=float(ok), success=ok, details_json="{}")

        def GetState(self, request, context):
            text, digest = canonical_hash(self._get(request, context).state)
            return pb.GetStateResponse(state_json=text, state_hash=digest)

        def Release(self, request, context):
            with self.lock:
                self.instances.pop(request.instance_id, None)
            return pb.ReleaseResponse()

    return LibraryEnvironment()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--stubs", required=True, help="the OUT_DIR of generate_stubs.py")
    p.add_argument("--package", default="libenv_stubs")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--no-seed-tasks", action="store_true", help="offer no seed tasks (explored from the default state)")
    a = p.parse_args()
    global NO_SEEDS
    NO_SEEDS = a.no_seed_tasks
    sys.path.insert(0, a.stubs)
    import importlib
    pb = importlib.import_module(f"{a.package}.v1.environment_pb2")
    pb_grpc = importlib.import_module(f"{a.package}.v1.environment_pb2_grpc")
    tpb = importlib.import_module(f"{a.package}.v1.trajectory_pb2")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    pb_grpc.add_EnvironmentServiceServicer_to_server(make_servicer(pb, pb_grpc, tpb), server)
    port = server.add_insecure_port(f"127.0.0.1:{a.port}")
    server.start()
    print(f"library environment serving grpc=127.0.0.1:{port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
