from evolver.bus import retry_delay, topology
from evolver.bus.client import message_id


def test_every_event_subject_is_captured_by_its_stream():
    for spec in topology.EVENT_SPECS:
        concrete = spec.subject.replace("*", "x")
        assert any(topology.subject_matches(p, concrete) for p in spec.stream.subjects), spec.subject
        assert topology.event_for(concrete) is spec


def test_consumers_filter_declared_subjects_and_names_are_unique():
    durables = [c.durable for c in topology.CONSUMERS]
    assert len(durables) == len(set(durables))
    for c in topology.CONSUMERS:
        assert any(topology.subject_matches(p, c.filter_subject.replace(">", "x")) or p == c.filter_subject
                   for p in c.stream.subjects), c.durable
        assert c.service in (*topology.SERVICES, "*")
    # Every service answers diag pings with its own durable.
    assert {c.service for c in topology.CONSUMERS if c.filter_subject == "diag.ping"} == set(topology.SERVICES)


def test_work_queues_have_one_consumer_per_subject():
    # WorkQueue streams reject overlapping consumers (NATS error 10100).
    for stream in (s for s in topology.STREAMS if s.work_queue):
        filters = [c.filter_subject for c in topology.CONSUMERS if c.stream is stream]
        assert len(filters) == len(set(filters)), stream.name


def test_subject_matching():
    assert topology.subject_matches("diag.pong.*", "diag.pong.memory")
    assert not topology.subject_matches("diag.pong.*", "diag.pong.memory.x")
    assert topology.subject_matches("dead.>", "dead.explore.requested")
    assert not topology.subject_matches("dead.>", "dead")
    assert not topology.subject_matches("rollout.completed", "rollout.attributed")


def test_message_ids_are_deterministic_business_keys():
    assert message_id("rollout.completed", "run1:3:task9") == message_id("rollout.completed", "run1:3:task9")
    assert message_id("rollout.completed", "a") != message_id("rollout.attributed", "a")


def test_retry_delay_is_exponential_and_capped():
    assert [retry_delay(a, 1.0, 10.0) for a in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert retry_delay(1, 0.0, 5.0) == 0.0
