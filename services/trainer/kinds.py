"""The run config's mechanism choices (verifiable | llm | hybrid and the like) as the proto enums
that carry them to the services, in one place."""

from __future__ import annotations

from evolver.v1 import attribution_pb2 as apb
from evolver.v1 import experience_pb2 as exp_pb
from evolver.v1 import task_pb2
from evolver.v1 import trajectory_pb2 as tpb

# questioning
EXPLORERS = {"schema": task_pb2.EXPLORER_KIND_SCHEMA, "llm": task_pb2.EXPLORER_KIND_LLM,
             "mixed": task_pb2.EXPLORER_KIND_MIXED}
TASK_WRITERS = {"verifiable": task_pb2.TASK_WRITER_KIND_TEMPLATE, "llm": task_pb2.TASK_WRITER_KIND_LLM,
                "hybrid": task_pb2.TASK_WRITER_KIND_HYBRID}
FEASIBILITY = {"verifiable": task_pb2.FEASIBILITY_KIND_REPLAY, "llm": task_pb2.FEASIBILITY_KIND_LLM,
               "hybrid": task_pb2.FEASIBILITY_KIND_HYBRID}
# rollouts
REWARD_JUDGES = {"verifiable": tpb.REWARD_JUDGE_STATE_MATCH, "llm": tpb.REWARD_JUDGE_LLM,
                 "hybrid": tpb.REWARD_JUDGE_HYBRID}
CONTEXT_TEMPLATES = {"linear": tpb.CONTEXT_TEMPLATE_LINEAR, "strip_reasoning": tpb.CONTEXT_TEMPLATE_STRIP_REASONING,
                     "sliding_window": tpb.CONTEXT_TEMPLATE_SLIDING_WINDOW}
# navigating
EXTRACTORS = {"verifiable": exp_pb.EXPERIENCE_EXTRACTOR_KIND_RULES, "llm": exp_pb.EXPERIENCE_EXTRACTOR_KIND_LLM,
              "hybrid": exp_pb.EXPERIENCE_EXTRACTOR_KIND_HYBRID}
EXPERIENCE_KEYS = {"when_and_content": exp_pb.EXPERIENCE_KEY_UNSPECIFIED,
                   "when_to_use": exp_pb.EXPERIENCE_KEY_WHEN_TO_USE, "task_query": exp_pb.EXPERIENCE_KEY_TASK_QUERY}
# attributing
STEP_LABELERS = {"verifiable": apb.STEP_LABELER_STATE_PROGRESS, "llm": apb.STEP_LABELER_LLM,
                 "hybrid": apb.STEP_LABELER_HYBRID}
STEP_LABEL_SKIPS = {"none": apb.STEP_LABEL_SKIP_UNSPECIFIED, "small_advantage": apb.STEP_LABEL_SKIP_SMALL_ADVANTAGE,
                    "negative": apb.STEP_LABEL_SKIP_NEGATIVE}
