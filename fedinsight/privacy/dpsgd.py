"""DP-SGD on one partner with Opacus, and the privacy accountant that outlives a Flower round.

Why this module exists: Flower's own Opacus example builds a fresh ``PrivacyEngine`` in every round, so
the epsilon it reports is the epsilon of *one* round. Here the noise multiplier is calibrated once for
the whole planned run (:func:`plan_dpsgd`), and each partner keeps one Opacus ``RDPAccountant`` whose
history (noise multiplier, sample rate, steps) is saved between invocations (:class:`PartnerAccountant`),
so the epsilon it reports is the cumulative epsilon of that partner's customers. Before every release
the partner prices it on that accountant and refuses if it would end past its budget.

The plan also covers a few Gaussian releases that accompany training (e.g. federated feature
statistics and quantile histograms): a Gaussian release with noise multiplier ``m`` is, for the RDP
accountant, one step of the sampled Gaussian mechanism with sample rate 1, so it enters the same history.
The same events, as ``dp_accounting`` DpEvents (:meth:`DpsgdPlan.events`), are what the coordinator's
privacy ledger charges; both accountants use RDP over the same orders and agree to ~1e-3.

Nothing here knows about marketing or Flower: tensors in, a trained module out. torch and Opacus are imported
by the functions that use them, not with the module: the options of every training task plan with
:class:`DpsgdPlan`, and registering those tasks (every simulation worker's ClientApp does) must not load them.
"""

from __future__ import annotations

import copy
import functools
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from dp_accounting import dp_event

from fedinsight.core.errors import ConfigError
from fedinsight.privacy.ledger import compose_epsilon, dpsgd_event

if TYPE_CHECKING:
    import torch
    from opacus.utils.uniform_sampler import UniformWithReplacementSampler
    from torch import nn

LossFn = Callable[["nn.Module", Sequence["torch.Tensor"]], "torch.Tensor"]
"""``loss_fn(module, batch) -> mean loss over the batch`` (per-sample losses averaged)."""

HistoryEntry = tuple[float, float, int]
"""Opacus RDP history entry: (noise multiplier, sample rate, steps)."""


@dataclass(frozen=True)
class DpsgdPlan:
    """Everything a run will release, fixed before round 1 so it can be priced and charged up front.

    ``gaussian_releases`` Gaussian releases with multiplier ``gaussian_noise_multiplier`` (L2 sensitivity
    1 after the caller's scaling) plus ``rounds x steps_per_round`` Poisson-sampled DP-SGD steps.
    """

    epsilon: float
    delta: float
    noise_multiplier: float
    sample_rate: float
    steps_per_round: int
    rounds: int
    max_grad_norm: float
    gaussian_noise_multiplier: float
    gaussian_releases: int

    @property
    def total_steps(self) -> int:
        return self.steps_per_round * self.rounds

    def gaussian_event(self) -> dp_event.DpEvent:
        return dp_event.GaussianDpEvent(self.gaussian_noise_multiplier)

    def training_event(self) -> dp_event.DpEvent:
        return dpsgd_event(self.noise_multiplier, self.sample_rate, self.total_steps)

    def events(self) -> list[dp_event.DpEvent]:
        """The run's releases as dp_accounting events (what the privacy ledger composes)."""
        return [self.gaussian_event()] * self.gaussian_releases + [self.training_event()]

    def history(self) -> list[HistoryEntry]:
        """The same releases as an Opacus RDP history."""
        gauss = [(self.gaussian_noise_multiplier, 1.0, 1)] * self.gaussian_releases
        return [*gauss, (self.noise_multiplier, self.sample_rate, self.total_steps)]

    def planned_epsilon(self) -> float:
        """Epsilon of the whole plan, the larger of Opacus's and dp_accounting's RDP figures."""
        return max(history_epsilon(self.history(), self.delta), compose_epsilon(self.events(), self.delta))

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> DpsgdPlan:
        return cls(**{k: (int(data[k]) if k in ("steps_per_round", "rounds", "gaussian_releases")  # type: ignore[call-overload]
                          else float(data[k])) for k in cls.__dataclass_fields__})  # type: ignore[arg-type]


def history_epsilon(history: Sequence[HistoryEntry], delta: float) -> float:
    """Epsilon at ``delta`` of an Opacus RDP history (0 for an empty history).

    Entries of one (noise multiplier, sample rate) are merged into one with their steps added -- Opacus
    adds the RDP of every entry, and the RDP of t steps is t times that of one, so the figure is the same --
    and the result is remembered: a partner checks its history on every message.
    """
    if not history:
        return 0.0
    steps: dict[tuple[float, float], int] = {}
    for s, q, t in history:
        key = (float(s), float(q))
        steps[key] = steps.get(key, 0) + int(t)
    return _history_epsilon(tuple(sorted((s, q, t) for (s, q), t in steps.items())), float(delta))


@functools.lru_cache(maxsize=4096)
def _history_epsilon(history: tuple[tuple[float, float, int], ...], delta: float) -> float:
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    acc.history = list(history)
    with warnings.catch_warnings():  # "optimal order is the largest alpha": the bound is valid, only loose
        warnings.simplefilter("ignore", UserWarning)
        return float(acc.get_epsilon(delta))


def _check_plan_inputs(epsilon: float, delta: float, sample_rate: float, steps_per_round: int, rounds: int,
                       gaussian_share: float) -> None:
    if not (epsilon > 0 and math.isfinite(epsilon)):
        raise ConfigError(f"--epsilon must be a positive number (got {epsilon}); use --non-private for no DP")
    if not (0 < delta < 1):
        raise ConfigError(f"--delta must be in (0, 1) (got {delta})")
    if not (0 < sample_rate <= 1):
        raise ConfigError(f"sample rate must be in (0, 1] (got {sample_rate})")
    if steps_per_round < 1 or rounds < 1:
        raise ConfigError(f"need at least one round and one step per round (got {rounds} x {steps_per_round})")
    if not (0 < gaussian_share < 1):
        raise ConfigError(f"the share of epsilon for feature statistics must be in (0, 1) (got {gaussian_share})")


@functools.lru_cache(maxsize=256)
def plan_dpsgd(
    epsilon: float,
    delta: float,
    *,
    sample_rate: float,
    steps_per_round: int,
    rounds: int,
    max_grad_norm: float = 1.0,
    gaussian_releases: int = 2,
    gaussian_share: float = 0.15,
) -> DpsgdPlan:
    """Calibrate noise so the whole run (Gaussian releases + all DP-SGD steps) costs at most ``epsilon``.

    DP-SGD's noise multiplier comes from Opacus's ``get_noise_multiplier`` for ``(1 - gaussian_share) x
    epsilon`` over all planned steps; the Gaussian releases then get the smallest noise multiplier that
    keeps the RDP composition of everything at or below ``epsilon`` (checked with Opacus's and
    dp_accounting's accountants, the larger figure counts).

    Remembered per arguments (the plan is frozen and a pure function of them): every partner message
    re-reads its task options, and a calibration costs about half a second.
    """
    from opacus.accountants.utils import get_noise_multiplier

    _check_plan_inputs(epsilon, delta, sample_rate, steps_per_round, rounds, gaussian_share)
    total = steps_per_round * rounds
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sigma = float(get_noise_multiplier(target_epsilon=(1 - gaussian_share) * epsilon, target_delta=delta,
                                           sample_rate=sample_rate, steps=total, accountant="rdp",
                                           epsilon_tolerance=0.005 * epsilon))

    def plan(m: float) -> DpsgdPlan:
        return DpsgdPlan(epsilon, delta, sigma, sample_rate, steps_per_round, rounds, max_grad_norm, m,
                         gaussian_releases)

    if gaussian_releases == 0:
        return plan(math.inf)
    lo, hi = 0.1, 1.0
    while history_epsilon(plan(hi).history(), delta) > epsilon:
        lo, hi = hi, hi * 2
        if hi > 1e7:  # pragma: no cover - cannot happen: DP-SGD alone is below epsilon
            raise ConfigError("cannot fit the feature statistics into the privacy budget")
    for _ in range(40):
        mid = math.sqrt(lo * hi)
        if history_epsilon(plan(mid).history(), delta) > epsilon:
            lo = mid
        else:
            hi = mid
        if hi / lo < 1.001:
            break
    result = plan(hi)
    while result.planned_epsilon() > epsilon:  # dp_accounting may differ from Opacus in the last digits
        result = plan(result.gaussian_noise_multiplier * 1.01)
    return result


class PartnerAccountant:
    """One partner's Opacus RDP accountant, with a history that can be saved and restored.

    The history is all this partner has released under the plan's accounting (Gaussian releases as
    sample-rate-1 steps). ``budget`` is the partner's own cap: :meth:`would_exceed` says whether a
    further release would pass it.
    """

    def __init__(self, history: Sequence[HistoryEntry] = (), *, delta: float, budget: float) -> None:
        if not (0 < delta < 1):
            raise ConfigError(f"delta must be in (0, 1) (got {delta})")
        from opacus.accountants import RDPAccountant

        self.accountant = RDPAccountant()
        self.accountant.history = [(float(s), float(q), int(t)) for s, q, t in history]
        self.delta = float(delta)
        self.budget = float(budget)

    @property
    def history(self) -> list[HistoryEntry]:
        return list(self.accountant.history)

    def epsilon(self) -> float:
        """Cumulative epsilon at the accountant's delta."""
        return history_epsilon(self.accountant.history, self.delta)

    def epsilon_after(self, entries: Sequence[HistoryEntry]) -> float:
        """Cumulative epsilon if ``entries`` were released next (nothing is recorded)."""
        return history_epsilon([*self.accountant.history, *entries], self.delta)

    def would_exceed(self, entries: Sequence[HistoryEntry]) -> bool:
        return self.epsilon_after(entries) > self.budget * (1 + 1e-9)

    def record_gaussian(self, noise_multiplier: float) -> None:
        """Record one Gaussian release (sensitivity-1 scaled) as a sample-rate-1 step."""
        self.accountant.step(noise_multiplier=float(noise_multiplier), sample_rate=1.0)

    def record_steps(self, noise_multiplier: float, sample_rate: float, steps: int) -> None:
        """Record ``steps`` DP-SGD steps that another accountant's optimizer hook already counted."""
        for _ in range(int(steps)):
            self.accountant.step(noise_multiplier=float(noise_multiplier), sample_rate=float(sample_rate))

    def to_dict(self) -> dict[str, list[float] | list[int]]:
        hist = self.accountant.history
        return {"noise": [float(h[0]) for h in hist], "rate": [float(h[1]) for h in hist],
                "steps": [int(h[2]) for h in hist]}

    @staticmethod
    def history_from_dict(data: dict[str, object]) -> list[HistoryEntry]:
        noise, rate, steps = (list(data.get(k, [])) for k in ("noise", "rate", "steps"))  # type: ignore[call-overload]
        if not len(noise) == len(rate) == len(steps):
            raise ConfigError("corrupt privacy accountant state: history columns differ in length")
        return [(float(s), float(q), int(t)) for s, q, t in zip(noise, rate, steps, strict=True)]


@dataclass(frozen=True)
class TrainStats:
    """What one local training call did (for timing and accounting; no data-dependent values)."""

    steps: int
    seconds: float


def _sampler(num_samples: int, sample_rate: float, steps: int, seed: int) -> UniformWithReplacementSampler:
    import torch
    from opacus.utils.uniform_sampler import UniformWithReplacementSampler

    generator = torch.Generator().manual_seed(int(seed))
    return UniformWithReplacementSampler(num_samples=num_samples, sample_rate=sample_rate, generator=generator,
                                         steps=steps)


def train_dpsgd(
    model: nn.Module,
    tensors: Sequence[torch.Tensor],
    loss_fn: LossFn,
    *,
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
    max_grad_norm: float,
    lr: float,
    accountant: PartnerAccountant | None = None,
    seed: int | None = None,
    momentum: float = 0.0,
) -> tuple[nn.Module, TrainStats]:
    """Run ``steps`` DP-SGD steps (Poisson sampling at ``sample_rate``, per-sample clipping, Gaussian noise).

    Returns a trained copy of ``model`` (the argument is not modified). Every optimizer step is recorded
    in ``accountant`` (if given) by Opacus's own accountant hook. Empty Poisson batches are real steps (pure noise),
    as the accounting assumes. ``seed=None`` (what partners use) draws the sampling and noise seeds from
    OS entropy: a seed the coordinator knows would let it subtract the noise. A seed is for tests only.
    """
    import torch
    from opacus.grad_sample import GradSampleModule
    from opacus.optimizers import DPOptimizer

    if seed is None:
        seed = int.from_bytes(os.urandom(7), "big")
    n = int(tensors[0].shape[0])
    if n == 0:
        raise ConfigError("a partner with no training customers cannot train")
    start = time.perf_counter()
    work = copy.deepcopy(model)
    gsm = GradSampleModule(work, loss_reduction="mean")
    optimizer = DPOptimizer(
        torch.optim.SGD(gsm.parameters(), lr=lr, momentum=momentum),
        noise_multiplier=noise_multiplier,
        max_grad_norm=max_grad_norm,
        expected_batch_size=max(1, round(sample_rate * n)),
        loss_reduction="mean",
        generator=torch.Generator().manual_seed(int(seed) + 1),
    )
    if accountant is not None:  # callers that account elsewhere (a budget gate) pass none
        optimizer.attach_step_hook(accountant.accountant.get_optimizer_hook_fn(sample_rate=sample_rate))
    gsm.train()
    with warnings.catch_warnings():  # torch warns that Opacus's hooks see no input gradients: expected
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        for batch_idx in _sampler(n, sample_rate, steps, seed):
            idx = torch.as_tensor(batch_idx, dtype=torch.long)
            batch = [t[idx] for t in tensors]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(gsm, batch)
            if len(idx) == 0:
                loss = sum((p * 0.0).sum() for p in gsm.parameters()) + loss.nan_to_num(0.0)
            loss.backward()
            optimizer.step()
    gsm.remove_hooks()
    trained = copy.deepcopy(model)  # a clean module, without Opacus's per-sample gradient attributes
    trained.load_state_dict(gsm._module.state_dict())
    return trained, TrainStats(steps=steps, seconds=time.perf_counter() - start)


def train_sgd(
    model: nn.Module,
    tensors: Sequence[torch.Tensor],
    loss_fn: LossFn,
    *,
    sample_rate: float,
    steps: int,
    lr: float,
    seed: int,
    max_grad_norm: float | None = None,
    momentum: float = 0.0,
) -> tuple[nn.Module, TrainStats]:
    """The non-private counterpart of :func:`train_dpsgd` (same sampling and steps, no noise).

    For simulations that measure what DP costs; partners refuse it unless they allow non-private runs.
    ``max_grad_norm`` clips the *batch* gradient (a plain stabiliser, not per-customer clipping): at
    learning rates tuned for clipped DP-SGD, unclipped squared-error gradients can diverge.
    """
    import torch
    from torch import nn

    n = int(tensors[0].shape[0])
    start = time.perf_counter()
    work = copy.deepcopy(model)
    optimizer = torch.optim.SGD(work.parameters(), lr=lr, momentum=momentum)
    work.train()
    for batch_idx in _sampler(n, sample_rate, steps, seed):
        if len(batch_idx) == 0:
            continue
        idx = torch.as_tensor(batch_idx, dtype=torch.long)
        optimizer.zero_grad(set_to_none=True)
        loss_fn(work, [t[idx] for t in tensors]).backward()
        if max_grad_norm is not None:
            nn.utils.clip_grad_norm_(work.parameters(), max_grad_norm)
        optimizer.step()
    return work, TrainStats(steps=steps, seconds=time.perf_counter() - start)


def clipped_gradient_sum(model: nn.Module, tensors: Sequence[torch.Tensor], loss_fn: LossFn, *,
                         max_grad_norm: float) -> torch.Tensor:
    """The sum over all rows of each row's loss gradient clipped to L2 ``max_grad_norm``, flattened in the order
    of ``model.parameters()``: one full-batch DP-SGD step *before* its noise.

    Why: under secure aggregation with distributed noise (:mod:`fedinsight.privacy.distributed_dp`) a partner
    sends this sum plus only its *share* of the noise; the sum over partners is then one full-batch Gaussian
    release of sensitivity ``max_grad_norm`` per customer (one row per customer). Per-row gradients come from
    Opacus's ``GradSampleModule`` (``loss_reduction="mean"``: each is the gradient of that row's own loss).
    ``model`` is not modified.
    """
    import torch
    from opacus.grad_sample import GradSampleModule

    n = int(tensors[0].shape[0])
    if n == 0:
        raise ConfigError("a partner with no training customers cannot train")
    work = copy.deepcopy(model)
    gsm = GradSampleModule(work, loss_reduction="mean")
    gsm.train()
    with warnings.catch_warnings():  # torch warns that Opacus's hooks see no input gradients: expected
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        loss_fn(gsm, list(tensors)).backward()
    per_row = torch.cat([p.grad_sample.reshape(n, -1) for p in gsm.parameters()], dim=1)  # type: ignore[union-attr]
    gsm.remove_hooks()
    norms = per_row.norm(dim=1, keepdim=True)
    scale = torch.clamp(float(max_grad_norm) / (norms + 1e-12), max=1.0)
    return (per_row * scale).sum(dim=0).detach()
