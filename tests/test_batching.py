"""Generation batches bounded by count, by padded tokens and by padding: one long prompt does not pad a
wide batch, and the padding a run's batches add is recorded."""

from __future__ import annotations

import numpy as np
import pytest

from ragft.models.generation import Batching

RNG_LENGTHS = [int(x) for x in np.random.default_rng(0).lognormal(6, 0.8, size=200)]  # 40 to 4,000 tokens


def padding(lengths: list[int], batch: list[int]) -> int:
    return len(batch) * max(lengths[i] for i in batch) - sum(lengths[i] for i in batch)


@pytest.mark.parametrize("batching", [Batching(32, 0.2), Batching(32, 0.2, 8192), Batching(8, None), Batching(1)])
def test_every_prompt_once_within_every_bound(batching):
    batches = batching.batches(RNG_LENGTHS)
    assert sorted(i for b in batches for i in b) == list(range(len(RNG_LENGTHS)))
    flat = [RNG_LENGTHS[i] for b in batches for i in b]
    assert flat == sorted(flat)  # shortest first
    for batch in batches:
        assert len(batch) <= batching.size
        if len(batch) > 1 and batching.max_tokens is not None:
            assert len(batch) * max(RNG_LENGTHS[i] for i in batch) <= batching.max_tokens
        if len(batch) > 1 and batching.max_padding is not None:
            assert padding(RNG_LENGTHS, batch) <= batching.max_padding * sum(RNG_LENGTHS[i] for i in batch)


def test_one_long_prompt_does_not_pad_a_wide_batch():
    lengths = [100] * 31 + [4000]
    assert Batching(32, 0.2).batches(lengths) == [list(range(31)), [31]]
    assert Batching(32, None).batches(lengths) == [list(range(32))]  # count alone: 31 rows padded to 4,000
    equal = [300] * 70
    assert [len(b) for b in Batching(32, 0.2, 4 * 300).batches(equal)] == [4] * 17 + [2]


def test_a_run_records_the_padding_its_batches_add(smoke_cfg):
    """The recorded share is the padding of the batches the run's own prompt lengths make, and within
    `generation.max_padding`."""
    from ragft.recipe import run_experiment_arm
    from ragft.record.run import read_predictions
    from tests.conftest import record_of

    for max_padding in (0.02, None):  # each in its own experiment: batching is no result setting
        cfg = smoke_cfg(
            "arm=few_shot", f"generation.max_padding={max_padding or 'null'}", f"exp_name=pad_{max_padding}"
        )
        run_dir = run_experiment_arm(cfg)
        lengths = [row["prompt_tokens"] for row in read_predictions(run_dir)]
        batches = Batching(cfg.generation.batch_size, max_padding).batches(lengths)
        expected = sum(padding(lengths, b) for b in batches) / sum(lengths)
        share = record_of(run_dir).cost.generation.prompt_padding_share
        assert share == pytest.approx(expected) and (max_padding is None or share <= max_padding)
