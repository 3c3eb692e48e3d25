"""Experiments on tiny models. Every experiment in conf/exp/, run as a user runs it
(`python -m ragft.run -m +exp=<name>`): each job of its sweep writes a finished record, and the sweep
writes the table and the report (marked `integration`: `pytest -m integration`). And one regression
test whose numbers are pinned on purpose."""

from pathlib import Path

import pytest

from ragft.errors import ConfigError
from tests.conftest import compose_config, experiments, external_data, ragft_command, records, sweep_jobs


def can_quantise_to_4_bits() -> bool:
    """Whether bitsandbytes quantises on this machine's device (QLoRA's arms fail before any work where not)."""
    from ragft.models.loading import best_device
    from ragft.models.quantization import require_4bit_support

    try:
        require_4bit_support(best_device())
    except ConfigError:
        return False
    return True


def expected_jobs(exp: str, *overrides: str) -> tuple[list[list[str]], list[list[str]]]:
    """The experiment's jobs that should finish here, and those that should fail before any work (4-bit
    arms where bitsandbytes cannot quantise)."""
    jobs = sweep_jobs(exp, "+debug=smoke", *overrides)
    if can_quantise_to_4_bits():
        return jobs, []
    needs_4bit = [compose_config(*job).adaptation.get("quantization") is not None for job in jobs]
    return [j for j, q in zip(jobs, needs_4bit) if not q], [j for j, q in zip(jobs, needs_4bit) if q]


@pytest.mark.integration
@pytest.mark.parametrize("exp", experiments())
def test_every_experiment_runs_each_arm_and_writes_its_report(exp: str, tmp_path: Path):
    data = external_data(compose_config(f"+exp={exp}").task.name)  # its folder, for a data set not shipped
    finishing, unsupported = expected_jobs(exp, *data)
    assert finishing, f"{exp}: no job of the sweep can run here"
    result = ragft_command(
        "ragft.run", "-m", f"+exp={exp}", "+debug=smoke", f"paths.results={tmp_path}", *data,
        expect=1 if unsupported else 0,
    )  # fmt: skip
    if unsupported:  # only the 4-bit arms fail, before any work, naming the setting
        assert "adaptation.quantization" in result.stderr

    exp_dir = tmp_path / compose_config(f"+exp={exp}").exp_name
    found = records(exp_dir)
    assert [r.identity.run_id for r in found if r.status != "finished"] == []
    assert len({r.identity.run_id for r in found}) == len(finishing), [r.identity.arm for r in found]
    for name in ("report.md", "report.html", "runs.csv"):
        assert (exp_dir / name).stat().st_size > 0, name
    report = (exp_dir / "report.md").read_text()
    assert [r.identity.arm for r in found if f"| {r.identity.arm}" not in report] == []  # every run is shown


# Pinned on purpose: the smoke run's six test notes, their prompts in tokens, and the demonstrations a
# seeded random few-shot context draws. Tokenizer, template, corpus and seeded choice only: no floating
# point, so the same on every machine. A change here changes every prompt a run sends: update these
# numbers only for a change meant to do that, and say so.
PINNED_TEST_IDS = [f"note-test-{i:03d}" for i in range(6)]
PINNED_PROMPT_TOKENS = {
    "zero_shot": [147, 148, 153, 147, 151, 152],  # corpus v2 (held-out knowledge): new notes, new lengths
    "few_shot_random": [364, 370, 376, 370, 373, 377],
}
PINNED_RANDOM_SHOTS = [[6, 11], [0, 4], [8, 7], [6, 4], [7, 5], [9, 3]]  # note-train-<n>, per test note


@pytest.mark.parametrize("context", sorted(PINNED_PROMPT_TOKENS))
def test_the_smoke_runs_prompts_keep_their_pinned_lengths_and_demonstrations(context: str):
    """A regression test with pinned numbers: see PINNED_PROMPT_TOKENS."""
    from ragft.models.generation import encode
    from ragft.models.loading import load_generator
    from ragft.recipe import prepare

    cfg = compose_config("+debug=smoke", f"context={context}")
    arm, generator = prepare(cfg), load_generator(cfg.generator)
    contexts = arm.builder.build(arm.test, arm.sources)
    prompts = [arm.template.render(e, c, generator.tokenizer) for e, c in zip(arm.test, contexts)]
    assert [e.id for e in arm.test] == PINNED_TEST_IDS
    assert [len(tokens) for tokens in encode(generator, prompts)] == PINNED_PROMPT_TOKENS[context]
    shots = [[int(s.id.rsplit("-", 1)[1]) for s in c.shots] for c in contexts]
    assert shots == (PINNED_RANDOM_SHOTS if context == "few_shot_random" else [[]] * len(PINNED_TEST_IDS))
