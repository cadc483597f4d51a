"""The decode-step budget: the step-time fit and the prefill left to a step that carries decodes."""

from __future__ import annotations

import pytest

from tokenfleet_worker.step_budget import MIN_PREFILL_TOKENS, StepTimeModel, prefill_budget, record_step

pytestmark = pytest.mark.unit


def fed(samples: list[tuple[int, float]]) -> StepTimeModel:
    model = StepTimeModel(window=16)
    for tokens, seconds in samples:
        model.observe(tokens, seconds)
    return model


def linear(intercept: float, per_token: float, sizes: list[int]) -> list[tuple[int, float]]:
    return [(n, intercept + per_token * n) for n in sizes]


def test_fit_recovers_a_linear_step_time() -> None:
    model = fed(linear(0.02, 0.001, [1, 4, 8, 64, 128, 256, 512, 2, 16, 32]))
    intercept, per_token = model.fit() or (0.0, 0.0)
    assert intercept == pytest.approx(0.02) and per_token == pytest.approx(0.001)
    assert model.tokens_within(0.1) == 80  # (0.1 - 0.02) / 0.001
    assert model.tokens_within(0.01) == 0


@pytest.mark.parametrize(
    "samples",
    [
        linear(0.02, 0.001, [8, 64, 512]),  # too few steps
        linear(0.02, 0.001, [32, 33, 40, 35, 32, 38, 34, 36]),  # all about one size: no slope to see
        [(n, 0.5 - 0.0001 * n) for n in (1, 4, 8, 64, 128, 256, 512, 2)],  # bigger steps faster: noise
    ],
)
def test_fit_is_withheld_until_it_can_be_trusted(samples: list[tuple[int, float]]) -> None:
    model = fed(samples)
    assert model.fit() is None and model.tokens_within(1.0) is None


def test_fit_follows_the_latest_window_and_ignores_empty_steps() -> None:
    model = fed(linear(0.5, 0.01, [1, 4, 8, 64, 128, 256, 512, 2]))
    model.observe(0, 1.0)
    model.observe(10, 0.0)
    for tokens, seconds in linear(0.02, 0.001, [1, 4, 8, 64, 128, 256, 512, 2, 16, 32, 3, 5, 7, 9, 11, 13]):
        model.observe(tokens, seconds)
    assert model.fit() == pytest.approx((0.02, 0.001))


def test_budget_cuts_prefill_only_in_steps_that_carry_decodes() -> None:
    model = fed(linear(0.02, 0.001, [1, 4, 8, 64, 128, 256, 512, 2]))
    assert prefill_budget(2048, 10, None, model) == 2038  # no target: the whole budget
    assert prefill_budget(2048, 0, 0.1, model) == 2048  # nobody waits on a pure prefill step
    assert prefill_budget(2048, 10, 0.1, model) == 70  # 80 tokens fit 0.1 s, 10 of them decodes
    # More decodes than fit: prefill still advances; and never past the step's token budget.
    assert prefill_budget(2048, 100, 0.1, model) == MIN_PREFILL_TOKENS
    assert prefill_budget(12, 4, 0.1, model) == 8
    assert prefill_budget(2048, 10, 0.1, StepTimeModel()) == 2038  # nothing learned yet: no cut


def test_budgeted_steps_that_run_over_the_line_shrink_the_next_budgets() -> None:
    model = fed(linear(0.01, 0.001, [1, 4, 8, 64, 128, 256, 512, 2]))
    assert model.tokens_within(0.03) == 20
    for _ in range(40):  # steps beside decodes cost 1.5x what the line says
        model.observe_budgeted(20, 1.5 * (0.01 + 0.001 * 20))
    assert model.correction == pytest.approx(1.5, rel=0.01)
    assert model.tokens_within(0.03) == 10  # (0.03 / 1.5 - 0.01) / 0.001
    for _ in range(40):  # absurd readings are bounded
        model.observe_budgeted(20, 100.0)
    assert model.correction <= 4.0
    fresh = StepTimeModel()
    fresh.observe_budgeted(20, 1.0)  # nothing to predict with yet: only fed to the fit
    assert fresh.correction == 1.0


def test_record_step_feeds_only_what_the_budget_uses() -> None:
    model = StepTimeModel()
    for tokens in (1, 4, 8, 64, 128, 256, 512, 2):
        record_step(model, tokens, 0, 0.01 + 0.001 * tokens, None)  # no target: the engine pays nothing
    assert model.fit() is None
    for tokens in (1, 4, 8, 64, 128, 256, 512, 2):
        record_step(model, 4, 4, 5.0, 0.05)  # decode-only steps run another code path: left out
        record_step(model, tokens, 0, 0.01 + 0.001 * tokens, 0.05)  # pure prefill draws the line
    assert model.fit() == pytest.approx((0.01, 0.001)) and model.correction == 1.0
    record_step(model, 24, 4, 2 * (0.01 + 0.001 * 24), 0.05)  # beside decodes: corrects, not drawn
    assert model.fit() == pytest.approx((0.01, 0.001)) and model.correction > 1.0
