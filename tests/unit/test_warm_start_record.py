"""A run's warm start, kept whole so that a later run starts RL from it: its bytes round-trip,
damaged bytes are refused with a reason, and a run may reuse only a warm start made on its own
base model and its own train tasks (one trained on a task it holds out would leak it)."""

from __future__ import annotations

import hashlib

import pytest
import torch

from evolver.cli._run import load_spec, with_warm_start
from evolver.errors import FailedPrecondition
from services.trainer.warm_start_record import WarmStartRecord, check_reusable, pack, unpack, warm_start_key


def record(**kw) -> WarmStartRecord:
    base = dict(source_run="boot", base_model="SmolLM2-135M-Instruct", base_model_digest="sha256:" + "a" * 64,
                task_ids=["syn-1", "syn-2"], updates=4, loss_first=1.9, loss_last=0.2, checkpoint=b"\x80weights")
    return WarmStartRecord(**{**base, **kw})


def test_a_warm_start_round_trips_and_damaged_bytes_say_why():
    raw = pack(record())
    assert unpack(raw) == record()
    for damaged, why in ((b"PK\x03\x04 a zip", "not an Evolver warm start"), (raw[:25], "cut short"),
                         (raw[:-len(b"\x80weights")], "cut short")):
        with pytest.raises(ValueError, match=why):
            unpack(damaged)
    header_broken = raw.replace(b'"updates": 4', b'"updates": "x"')
    with pytest.raises(ValueError, match="header is unreadable"):
        unpack(header_broken)
    assert warm_start_key("boot") != warm_start_key("file-boot")


def test_only_a_warm_start_on_this_runs_base_model_and_train_tasks_is_reusable():
    digest = record().base_model_digest
    check_reusable(record(), digest, {"syn-1", "syn-2", "syn-3"})  # a subset of the train tasks: fine
    with pytest.raises(FailedPrecondition, match=r"warm_start_from.*1 task\(s\) that are not train tasks.*'syn-held"):
        check_reusable(record(task_ids=["syn-1", "syn-held" + "x" * 500]), digest, {"syn-1", "syn-2"})
    try:
        check_reusable(record(task_ids=["syn-held" + "x" * 500]), digest, set())
    except FailedPrecondition as e:
        assert len(str(e)) < 400  # a short prefix of the id, not all of it
    with pytest.raises(FailedPrecondition, match="another base model"):
        check_reusable(record(), "sha256:" + "b" * 64, {"syn-1", "syn-2"})


def test_evolver_run_warm_start_names_the_file_by_its_content_and_refuses_what_it_cannot_use(tmp_path):
    good = tmp_path / "warm_start.bin"
    good.write_bytes(pack(record()))
    spec = load_spec(None, {})
    assert spec.mechanisms.bootstrapping  # the default config bootstraps
    named, raw = with_warm_start(spec, good)
    assert raw == good.read_bytes()
    assert named.bootstrapping.warm_start_from == "file-" + hashlib.sha256(raw).hexdigest()[:12]
    bad = tmp_path / "not.bin"
    bad.write_bytes(b"hello")
    with pytest.raises(ValueError, match="not an Evolver warm start"):
        with_warm_start(spec, bad)
    with pytest.raises(ValueError, match="cannot read"):
        with_warm_start(spec, tmp_path / "missing.bin")
    off = spec.model_copy(update={"mechanisms": spec.mechanisms.model_copy(update={"bootstrapping": False})})
    with pytest.raises(ValueError, match="bootstrapping off"):
        with_warm_start(off, good)


def test_a_warm_start_from_another_lora_rank_is_refused_and_one_that_fits_restores_exactly(tiny_model_dir):
    from services.trainer.updater import PolicyUpdater
    from services.trainer.warm_start_record import restore

    def updater(r: int) -> PolicyUpdater:
        return PolicyUpdater(tiny_model_dir, learning_rate=1e-3, lora_r=r, lora_alpha=2 * r, beta=0.0, epsilon=0.2,
                             epsilon_high=0.28, off_cliprange_high=0.6, temperature=1.0)
    source = updater(4)
    with torch.no_grad():
        for p in source._trainable().values():
            p.add_(0.01)  # away from the init, so a restore that did nothing would show
    kept = record(checkpoint=source.checkpoint_blob())
    same = updater(4)
    restore(same, kept)
    assert all(torch.equal(a, b) for a, b in zip(same._trainable().values(), source._trainable().values()))
    with pytest.raises(FailedPrecondition, match="does not fit this policy"):
        restore(updater(8), kept)


def test_a_run_names_a_missing_or_damaged_warm_start_as_a_failed_precondition():
    from services.trainer.warm_start_record import reusable
    digest = record().base_model_digest
    assert reusable(pack(record()), "boot", digest, {"syn-1", "syn-2"}) == record()
    with pytest.raises(FailedPrecondition, match="warm_start_from: no warm start named 'gone'"):
        reusable(None, "gone", digest, {"syn-1"})
    with pytest.raises(FailedPrecondition, match="warm_start_from: 'junk': not an Evolver warm start"):
        reusable(b"junk", "junk", digest, {"syn-1"})
