"""How many tokens a step that carries decodes may compute, so that it ends within a target.

A prefill chunk that shares a step with decoding sequences delays each of their next tokens by the
chunk's whole compute: on an accelerator with a low FLOP rate a 2048-token chunk makes that step
several times the time-per-output-token target. With a target for such steps
(`EngineConfig.decode_step_target_s`), the scheduler cuts the chunk to what fits. Step time is
fitted as `intercept + per_token * tokens` by least squares over the last `window` steps that
prefilled (a decode-only step may run another code path at another cost); the budget is the tokens
that fit the target, and never less than `MIN_PREFILL_TOKENS` past the decodes, so a prompt always
advances. Steps without decodes keep the whole `max_batched_tokens`: nobody waits on them but the
prompts themselves. Steps the budget sized feed back how far they ran over or under the line
(`observe_budgeted`), which scales the next budgets. The same trade as Sarathi-Serve's
time-between-tokens budget, learned from the engine's own steps rather than profiled ahead.
"""

from __future__ import annotations

import math
from collections import deque

MIN_PREFILL_TOKENS = 16  # a prompt advances at least this much in a step whatever the target
MIN_SAMPLES = 8  # steps timed before the fit is trusted
# The steps' sizes must spread this much (standard deviation over mean) to tell intercept from slope.
MIN_SPREAD = 0.25
# Budgeted steps (prefill beside decodes) correct the fit by how far they ran over or under it: an
# average over about this many steps, kept within the bounds.
CORRECTION_STEPS = 5
CORRECTION_BOUNDS = (0.5, 4.0)


class StepTimeModel:
    """A linear fit of step seconds against tokens computed, over the latest `window` steps.

    Running sums make `observe` and `fit` O(1): the engine feeds every step, and the fleet simulator
    runs millions of them. The sums are rebuilt from the window every `window` steps so rounding
    from subtracting evicted steps cannot build up."""

    def __init__(self, window: int = 256) -> None:
        if window < MIN_SAMPLES:
            raise ValueError(f"window must be at least {MIN_SAMPLES}")
        self._samples: deque[tuple[int, float]] = deque(maxlen=window)
        self._sums = [0.0, 0.0, 0.0, 0.0]  # tokens, seconds, tokens^2, tokens*seconds
        self._since_rebuild = 0
        self.correction = 1.0  # budgeted steps' time over the fit's prediction, averaged

    def observe_budgeted(self, num_tokens: int, seconds: float) -> None:
        """A step whose prefill the budget sized, beside decodes. Such steps cost more than the line
        through all prefill steps says (each decode adds its own attention and sampling, and a long
        prompt's later chunks attend over more): their ratio to the prediction scales the budget."""
        fitted = self.fit()
        if fitted is None:
            self.observe(num_tokens, seconds)  # no line yet (a fleet loaded from its start): draw one
        elif num_tokens > 0 and seconds > 0:
            # Not fed to the line: it stays the cost of prefill alone, and the correction tracks what
            # the decodes beside it add at the operating point.
            predicted = fitted[0] + fitted[1] * num_tokens
            low, high = CORRECTION_BOUNDS
            ratio = min(high, max(low, seconds / predicted))
            self.correction += (ratio - self.correction) / CORRECTION_STEPS

    def observe(self, num_tokens: int, seconds: float) -> None:
        if num_tokens <= 0 or seconds <= 0:
            return
        samples = self._samples
        if len(samples) == samples.maxlen:
            self._add(*samples[0], sign=-1.0)
        samples.append((num_tokens, seconds))
        self._add(num_tokens, seconds, sign=1.0)
        self._since_rebuild += 1
        if self._since_rebuild >= len(samples):
            self._sums = [0.0, 0.0, 0.0, 0.0]
            for tokens, secs in samples:
                self._add(tokens, secs, sign=1.0)
            self._since_rebuild = 0

    def _add(self, tokens: int, seconds: float, sign: float) -> None:
        sums = self._sums
        sums[0] += sign * tokens
        sums[1] += sign * seconds
        sums[2] += sign * tokens * tokens
        sums[3] += sign * tokens * seconds

    def fit(self) -> tuple[float, float] | None:
        """(intercept seconds, seconds per token), or None while the steps seen cannot tell them
        apart (too few, or all of about the same size) or the fit is not increasing."""
        n = len(self._samples)
        if n < MIN_SAMPLES:
            return None
        sum_t, sum_s, sum_tt, sum_ts = self._sums
        mean_t, mean_s = sum_t / n, sum_s / n
        variance = sum_tt / n - mean_t * mean_t
        if variance <= (MIN_SPREAD * mean_t) ** 2:
            return None
        per_token = (sum_ts / n - mean_t * mean_s) / variance
        if per_token <= 0:
            return None
        return max(0.0, mean_s - per_token * mean_t), per_token

    def tokens_within(self, seconds: float) -> int | None:
        """Most tokens a step can compute in `seconds`; None when the fit is not trusted yet."""
        fitted = self.fit()
        if fitted is None:
            return None
        intercept, per_token = fitted
        usable = seconds / self.correction
        return max(0, math.floor((usable - intercept) / per_token + 1e-6))  # 1e-6: float fits of exact lines


def record_step(
    model: StepTimeModel, num_tokens: int, num_decodes: int, seconds: float, target_s: float | None
) -> None:
    """Feed a step the engine ran to `model`: nothing without a target (the engine's step path pays
    nothing for an unused feature); a step that prefilled beside decodes corrects the line, one that
    only prefilled draws it, and a decode-only step (another code path) is left out."""
    if target_s is None or num_tokens <= num_decodes:
        return
    if num_decodes:
        model.observe_budgeted(num_tokens, seconds)
    else:
        model.observe(num_tokens, seconds)


def prefill_budget(
    max_batched_tokens: int, num_decodes: int, target_s: float | None, model: StepTimeModel
) -> int:
    """Tokens left for prefill in a step that carries `num_decodes` decode tokens."""
    left = max_batched_tokens - num_decodes
    if target_s is None or num_decodes == 0:
        return left
    fits = model.tokens_within(target_s)
    if fits is None:
        return left
    return min(left, max(fits - num_decodes, MIN_PREFILL_TOKENS))
