from collections import Counter

from evolver.algorithms.curriculum import TaskRecord, sample, weight
from evolver.algorithms.dedup import Candidate, jaccard, lexical_filter, words


def test_jaccard_filter_keeps_the_most_confident_of_near_duplicates():
    cands = [Candidate("a", "Move report.pdf into the temp folder", 0.5),
             Candidate("b", "move report.pdf into the temp folder please", 0.9),  # 6/7 = 0.86 vs a
             Candidate("c", "Post a tweet about budgets", 0.7),
             Candidate("d", "Delete the archive", 0.8, has_reference=False)]
    kept, rejected = lexical_filter(cands)
    assert [c.key for c in kept] == ["b", "c"]
    reasons = {c.key: r for c, r in rejected}
    assert reasons["a"].startswith("lexical near-duplicate (Jaccard 0.86") and reasons["d"] == "no reference solution"
    kept2, _ = lexical_filter([Candidate("e", "post a tweet about budgets")], kept_queries=["Post a tweet about budgets"])
    assert kept2 == []


def test_jaccard_threshold_is_inclusive_at_point_eight():
    a, b = words("a b c d"), words("a b c d e")
    assert jaccard(a, b) == 0.8
    assert lexical_filter([Candidate("x", "a b c d e")], ["a b c d"])[0] == []


def test_curriculum_prefers_tasks_neither_always_solved_nor_never():
    tasks = [TaskRecord("never", 20, 0), TaskRecord("always", 20, 20), TaskRecord("half", 20, 10), TaskRecord("new")]
    assert weight(tasks[2]) > weight(tasks[0]) and weight(tasks[2]) > weight(tasks[1])
    assert weight(tasks[3]) == weight(tasks[2])
    counts = Counter(sample(tasks, 1, seed=s)[0] for s in range(2000))
    # weights: half 1.05 vs never/always 0.22, so about 4.7x as often
    assert counts["half"] > 3 * counts["never"] and counts["half"] > 3 * counts["always"]
    assert counts["never"] > 0  # nothing starves
    assert sample(tasks, 10, seed=1) != [] and sorted(sample(tasks, 10, seed=1)) == sorted(t.task_id for t in tasks)
    assert sample(tasks, 2, seed=7) == sample(tasks, 2, seed=7)


def test_bootstrap_best_of_k_matches_its_closed_form():
    from evolver.envs.harness import bootstrap_best
    assert bootstrap_best([1.0] * 8, 8) == 1.0 and bootstrap_best([0.0] * 8, 8) == 0.0
    # one success in 8 attempts: P(best of 8 draws with replacement is 1) = 1 - (7/8)^8 = 0.656
    assert abs(bootstrap_best([1.0] + [0.0] * 7, 8) - (1 - (7 / 8) ** 8)) < 0.03
    assert bootstrap_best([0.2, 0.9], 2) == bootstrap_best([0.2, 0.9], 2)  # seeded
