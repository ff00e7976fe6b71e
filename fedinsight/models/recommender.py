"""BPR matrix factorisation, split into a shared item side and a private customer side.

score(u, i) = p_u . q_i + b_i. The item side (embeddings ``q`` and biases ``b``) is what partners
share; the customer side (one embedding ``p_u`` per customer) never leaves the partner that holds the
customer. Training optimises Rendle et al.'s BPR loss -log sigmoid(score(u,i) - score(u,j)) for each
interaction (u, i) and a sampled item j the customer has not interacted with.

Why manual gradients instead of autograd: the gradient of one interaction on the item table touches
two rows, ``-g p_u`` at i and ``+g p_u`` at j (g = sigmoid(-x)). Writing these rows out explicitly
gives (a) a dense-free update, and (b) per-customer contributions that
:mod:`fedinsight.privacy.sparse_dp` can clip customer by customer — customer-level DP at almost the
cost of plain SGD, where Opacus's per-sample hooks on ``nn.Embedding`` cost ~220x.

Nothing here knows about Flower; :mod:`fedinsight.tasks.recommend.client` and the centralized baseline both
call :class:`LocalTrainer`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from fedinsight.core.errors import ConfigError
from fedinsight.models.ranking import InteractionSplit
from fedinsight.privacy.sparse_dp import add_gaussian_noise, clip_per_unit_rank_one, noise_generator


@dataclass
class ItemParams:
    """The shared item side: embeddings (num_items, dim) and biases (num_items,), float32."""

    embeddings: np.ndarray
    bias: np.ndarray

    @classmethod
    def init(cls, num_items: int, dim: int, seed: int, scale: float = 0.1) -> ItemParams:
        if num_items < 1 or dim < 1:
            raise ConfigError(f"need at least one item and dimension >= 1 (got {num_items} items, dim {dim})")
        rng = np.random.default_rng([seed, 7])
        emb = (rng.standard_normal((num_items, dim)) * scale).astype(np.float32)
        return cls(emb, np.zeros(num_items, dtype=np.float32))

    @property
    def num_items(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def copy(self) -> ItemParams:
        return ItemParams(self.embeddings.copy(), self.bias.copy())

    def as_matrix(self) -> np.ndarray:
        """(num_items, dim + 1): embeddings with the bias as last column (how updates are averaged)."""
        return np.concatenate([self.embeddings, self.bias[:, None]], axis=1)

    @classmethod
    def from_matrix(cls, matrix: np.ndarray) -> ItemParams:
        m = np.asarray(matrix, dtype=np.float32)
        return cls(np.ascontiguousarray(m[:, :-1]), np.ascontiguousarray(m[:, -1]))


@dataclass(frozen=True)
class BPRConfig:
    """Hyper-parameters of local BPR training (the same for the federated and centralized runs).

    ``lr``/``customer_lr``: Adagrad-free SGD step sizes for the item and customer side; ``reg``: L2
    weight decay; ``batch_customers``: customers per step (non-private); under DP, customers are
    Poisson-sampled at ``DPConfig.sample_rate`` instead. ``dp_lr`` is the item step size under DP, where
    the update is a clipped *sum per customer* averaged over the expected batch, not a mean per
    interaction, so it lives on a different scale.
    """

    dim: int = 32
    lr: float = 0.01
    customer_lr: float = 0.01
    reg: float = 1e-5
    customer_reg: float = 1e-5
    batch_customers: int = 32
    dp_lr: float = 5.0
    init_scale: float = 0.1
    optimizer: str = "adam"  # item side: "adam" or "sgd" (the customer side always uses Adam)

    def __post_init__(self) -> None:
        if self.dim < 1 or self.dim > 1024:
            raise ConfigError(f"--dim must be between 1 and 1024 (got {self.dim})")
        for name in ("lr", "customer_lr", "dp_lr"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be a positive number (got {value})")
        if self.optimizer not in ("adam", "sgd"):
            raise ConfigError(f"optimizer must be adam or sgd (got {self.optimizer})")


@dataclass(frozen=True)
class DPConfig:
    """Customer-level DP-SGD on the item side: Poisson rate, noise multiplier, clipping norm."""

    noise_multiplier: float
    clip: float = 1.0
    sample_rate: float = 0.1
    bias_scale: float = 1.0  # item bias enters as bias_scale * b': its share of the clipping budget

    def __post_init__(self) -> None:
        if not 0 < self.sample_rate <= 1:
            raise ConfigError(f"sample rate must be in (0, 1] (got {self.sample_rate})")
        if not (self.clip > 0 and math.isfinite(self.clip)):
            raise ConfigError(f"clipping norm must be positive (got {self.clip})")
        if self.noise_multiplier < 0:
            raise ConfigError(f"noise multiplier must be >= 0 (got {self.noise_multiplier})")

    def steps_per_epoch(self) -> int:
        """Poisson steps that visit each customer once in expectation."""
        return max(1, round(1.0 / self.sample_rate))


@dataclass
class TrainStats:
    """What one local training call did (all scalars may be sent to the coordinator)."""

    steps: int = 0
    interactions: int = 0
    loss: float = 0.0
    seconds: float = 0.0
    clipped_fraction: float = 0.0
    mean_norm: float = 0.0


SEEN_MATRIX_LIMIT = 50_000_000  # customers x items of a party below which negatives are checked in a bool matrix


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch on one thread inside the block.

    Why: a step here is a few thousand rows of index arithmetic; torch's intra-op threads add only
    contention, and on two shared cores a BPR epoch measured 12x slower with 2 threads than with 1.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class _Adam:
    """Row-sparse-aware Adam on one tensor (moments for every row; bias-corrected)."""

    def __init__(self, shape: tuple[int, ...], lr: float, betas: tuple[float, float] = (0.9, 0.999)) -> None:
        self.lr, self.b1, self.b2 = lr, betas[0], betas[1]
        self.m = torch.zeros(shape)
        self.v = torch.zeros(shape)
        self.t = 0

    def step(self, param: torch.Tensor, grad: torch.Tensor) -> None:
        self.t += 1
        self.m.mul_(self.b1).add_(grad, alpha=1 - self.b1)
        self.v.mul_(self.b2).addcmul_(grad, grad, value=1 - self.b2)
        m_hat = self.m / (1 - self.b1**self.t)
        v_hat = self.v / (1 - self.b2**self.t)
        param.sub_(self.lr * m_hat / (v_hat.sqrt() + 1e-8))


class _DenseRows:
    """The customer side's update before issue 18: :class:`_Adam` over every customer's row at every step.

    Kept only as the reference :class:`_RowAdam` is checked against (tests/unit/models/test_row_adam.py) and timed
    against (benchmarks/recommend_step.py); ``LocalTrainer(dense_customers=True)`` selects it."""

    def __init__(self, table: torch.Tensor, lr: float, steps: int) -> None:
        del steps
        self.table, self.adam = table, _Adam(tuple(table.shape), lr)

    def catch_up(self, rows: torch.Tensor) -> None:
        del rows  # every row is always up to date

    def step(self, rows: torch.Tensor, grad_rows: torch.Tensor) -> None:
        full = torch.zeros_like(self.table)
        full[rows] = grad_rows
        self.adam.step(self.table, full)

    def finish(self) -> None:
        pass


SMALL_SECOND_MOMENT = 1e-10
"""Below this second moment (√v < 1e-5) Adam's eps (1e-8) changes a missed step by more than 0.1 %: such elements
(a gradient coordinate near zero) are caught up step by step, the others in closed form."""
EXACT_WINDOW = 400


_EXACT_CHUNK = 4_096
"""Elements per chunk of :meth:`_RowAdam._missed_exactly` (4,096 x 400 float64 terms: ~13 MB)."""


class _RowAdam:
    """:class:`_Adam` on a table of which a step touches only a few rows, at the cost of those rows.

    Why not a lazy ("sparse") Adam that freezes untouched rows: dense Adam keeps moving a row after its batch, by
    its decaying first moment, and over the next steps that adds up to about ten times the row's own step
    (sum of 0.9^k). Freezing would make the customer side learn several times slower and change every result
    measured so far. So each row remembers the step it was last brought up to date, and before it is read (or at
    the end of a training call) the zero-gradient steps it missed are applied in closed form: over steps
    k = l+1..t its moments decay to m b1^(t-l), v b2^(t-l), and it moves by
    lr · m/√v · Σ_k (b1/√b2)^(k-l) · √(1-b2^k)/(1-b1^k); the sums come from one backward recurrence over the
    call's steps. The only difference to dense Adam is Adam's eps (1e-8) in the missed steps' denominators,
    dropped there (below 0.1 % of a step where √v > 1e-5; elements with a smaller second moment, a gradient
    coordinate near zero, are caught up step by step with eps) -- plus float rounding. A step then costs
    O(batch x dim) instead of O(customers x dim).
    """

    def __init__(self, table: torch.Tensor, lr: float, steps: int, betas: tuple[float, float] = (0.9, 0.999)) -> None:
        self.table, self.lr = table, lr
        self.b1, self.b2 = betas
        self.m = torch.zeros_like(table)
        self.v = torch.zeros_like(table)
        self.last = torch.zeros(len(table), dtype=torch.int64)  # the step each row is up to date with
        self.t = 0
        k = np.arange(1, steps + 1, dtype=np.float64)
        self.r = self.b1 / math.sqrt(self.b2)
        c = np.sqrt(1 - self.b2**k) / (1 - self.b1**k)  # c[k-1]: bias corrections of step k
        tail = np.zeros(steps + 1)  # tail[l] = sum over k = l+1..steps of r^(k-l) c_k
        for step in range(steps - 1, -1, -1):
            tail[step] = self.r * (c[step] + tail[step + 1])
        self.tail = torch.from_numpy(tail)

    def _bring(self, rows: torch.Tensor, upto: int) -> None:
        last = self.last[rows]
        gap = (upto - last).to(torch.float64)
        moved = gap > 0
        if not bool(moved.any()):
            return
        rows, last, gap = rows[moved], last[moved], gap[moved]
        total = self.tail[last] - self.r**gap * self.tail[upto]  # sum over the missed steps l+1..upto
        m, v = self.m[rows], self.v[rows]
        ratio = torch.where(v > 0, m / v.clamp_min(1e-30).sqrt(), torch.zeros_like(m))
        move = self.lr * total[:, None] * ratio.to(torch.float64)
        small = (v > 0) & (v < SMALL_SECOND_MOMENT)
        if bool(small.any()):  # where eps is not negligible, the missed steps one by one (exact)
            r, c = torch.nonzero(small, as_tuple=True)
            move[r, c] = self._missed_exactly(m[r, c].double(), v[r, c].double(), last[r], gap[r])
        self.table[rows] -= move.to(self.table.dtype)
        self.m[rows] = m * (self.b1**gap)[:, None].to(m.dtype)
        self.v[rows] = v * (self.b2**gap)[:, None].to(v.dtype)
        self.last[rows] = upto

    def _missed_exactly(self, m: torch.Tensor, v: torch.Tensor, last: torch.Tensor, gap: torch.Tensor
                        ) -> torch.Tensor:
        """The move of single elements over their missed steps, step by step with eps (the first
        :data:`EXACT_WINDOW` of them: later ones are below 0.9^400 of a step). In chunks of elements, so memory
        stays ~13 MB per array whatever the partner's size (one array for every element took 2.3 GB at 1 M
        customers)."""
        j = torch.arange(1, EXACT_WINDOW + 1, dtype=torch.float64)[None, :]
        out = torch.empty(len(m), dtype=torch.float64)
        for lo in range(0, len(m), _EXACT_CHUNK):
            hi = lo + _EXACT_CHUNK
            k = last[lo:hi].double()[:, None] + j
            terms = (m[lo:hi, None] * self.b1**j / (1 - self.b1**k)
                     / ((v[lo:hi, None] * self.b2**j / (1 - self.b2**k)).sqrt() + 1e-8))
            out[lo:hi] = self.lr * torch.where(j <= gap[lo:hi, None], terms, torch.zeros_like(terms)).sum(dim=1)
        return out

    def catch_up(self, rows: torch.Tensor) -> None:
        """Bring ``rows`` up to the last step taken (before they are read)."""
        self._bring(rows, self.t)

    def step(self, rows: torch.Tensor, grad_rows: torch.Tensor) -> None:
        """One Adam step in which only ``rows`` (distinct, already caught up) have a non-zero gradient."""
        self.t += 1
        self._bring(rows, self.t - 1)
        m = self.m[rows].mul_(self.b1).add_(grad_rows, alpha=1 - self.b1)
        v = self.v[rows].mul_(self.b2).addcmul_(grad_rows, grad_rows, value=1 - self.b2)
        self.m[rows], self.v[rows] = m, v
        m_hat = m / (1 - self.b1**self.t)
        v_hat = v / (1 - self.b2**self.t)
        self.table[rows] -= self.lr * m_hat / (v_hat.sqrt() + 1e-8)
        self.last[rows] = self.t

    def finish(self) -> None:
        """Bring every row up to the last step (the end of a training call)."""
        self._bring(torch.arange(len(self.table)), self.t)


@dataclass
class LocalTrainer:
    """One party's BPR training state: its interactions and its customers' private embeddings.

    A partner keeps one of these per job (customer embeddings saved between rounds with
    :func:`fedinsight.tasks.recommend.client.save_customer_state`); the centralized baseline uses one for
    the pooled data. ``train`` returns a new :class:`ItemParams` and never the customer embeddings.

    ``seed=None`` (the default, and what partners use) draws Poisson batches, shuffles, negatives and the
    initial customer embeddings from OS entropy (a fresh 128-bit ``SeedSequence``): subsampling amplification
    assumes the sample is secret, and a coordinator that knows the seed could replay every batch. An integer
    seed makes a run repeatable, for the simulation's non-private baselines and for tests only.
    """

    split: InteractionSplit
    num_items: int
    config: BPRConfig = field(default_factory=BPRConfig)
    seed: int | None = None
    customer_embeddings: np.ndarray | None = None
    dense_customers: bool = False
    """True: the customer side's pre-issue-18 update (every customer's row at every step), for the equivalence test
    and the speed benchmark only; the default touches only the batch's customers (:class:`_RowAdam`)."""

    def _generator(self, stream: int) -> np.random.Generator:
        """The generator of one stream: OS entropy without a seed, else repeatable from (seed, stream)."""
        return np.random.default_rng(np.random.SeedSequence() if self.seed is None else [self.seed, stream])

    def __post_init__(self) -> None:
        n = self.split.num_customers
        if self.customer_embeddings is None:
            rng = self._generator(11)
            self.customer_embeddings = (rng.standard_normal((n, self.config.dim)) * self.config.init_scale
                                        ).astype(np.float32)
        if self.customer_embeddings.shape != (n, self.config.dim):
            raise ConfigError(
                f"stored customer embeddings have shape {self.customer_embeddings.shape}, expected "
                f"({n}, {self.config.dim}); the partner's data or --dim changed since they were trained"
            )
        self._rng = self._generator(13)
        cust = self.split.train_customer_index()
        self._seen_keys = np.sort(cust.astype(np.int64) * self.num_items + self.split.train_items)
        self._seen: np.ndarray | None = None  # dense (customers x items) lookup when it is small enough
        if n * self.num_items <= SEEN_MATRIX_LIMIT:
            self._seen = np.zeros((n, self.num_items), dtype=bool)
            self._seen[cust, self.split.train_items] = True

    # --- sampling --------------------------------------------------------------------------------

    def _interactions_of(self, customers: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(customer position, position within ``customers``, positive item) of every training interaction of
        ``customers``."""
        starts = self.split.train_indptr[customers]
        sizes = self.split.train_indptr[customers + 1] - starts
        local = np.repeat(np.arange(len(customers)), sizes)
        offsets = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        return customers[local], local, self.split.train_items[np.repeat(starts, sizes) + offsets]

    def _negatives(self, owner: np.ndarray) -> np.ndarray:
        """One uniformly drawn item per interaction that the customer has not interacted with."""
        neg = self._rng.integers(0, self.num_items, size=len(owner))
        for _ in range(10):
            if self._seen is not None:
                bad = self._seen[owner, neg]
            else:
                keys = owner.astype(np.int64) * self.num_items + neg
                pos = np.minimum(np.searchsorted(self._seen_keys, keys), len(self._seen_keys) - 1)
                bad = self._seen_keys[pos] == keys
            if not bad.any():
                break
            neg[bad] = self._rng.integers(0, self.num_items, size=int(bad.sum()))
        return neg

    def _batches(self, epochs: int, dp: DPConfig | None) -> list[np.ndarray]:
        n = self.split.num_customers
        batches: list[np.ndarray] = []
        if dp is None:
            size = max(1, self.config.batch_customers)
            for _ in range(epochs):
                order = self._rng.permutation(n)
                batches.extend(order[i:i + size] for i in range(0, n, size))
            return batches
        for _ in range(epochs * dp.steps_per_epoch()):  # Poisson sampling: each customer independently
            batches.append(np.flatnonzero(self._rng.random(n) < dp.sample_rate))
        return batches

    # --- training --------------------------------------------------------------------------------

    def train(self, items: ItemParams, epochs: int, dp: DPConfig | None = None,
              generator: torch.Generator | None = None, train_items: bool = True) -> tuple[ItemParams, TrainStats]:
        """``epochs`` local epochs from ``items``; returns the updated item side and statistics.

        With ``dp``, the item update of every step is the customer-level clipped, noised sum of
        :mod:`fedinsight.privacy.sparse_dp`; the customer side is updated from the customer's own
        rows only (it is never released). ``train_items=False`` only fits the customer embeddings.
        """
        if items.num_items != self.num_items or items.dim != self.config.dim:
            raise ConfigError(
                f"item parameters are {items.num_items} x {items.dim}, expected {self.num_items} x {self.config.dim}"
            )
        with single_threaded():
            return self._train(items, epochs, dp, generator, train_items)

    def clipped_item_sum(self, items: ItemParams, clip: float) -> tuple[np.ndarray, TrainStats]:
        """One full-batch step's customer-level clipped sum on the item table, *not* noised or applied.

        For distributed noise under secure aggregation (:mod:`fedinsight.privacy.distributed_dp`): the
        partner adds its share of the noise and the coordinator applies the step to the global table.
        The customer side takes its usual step (it never leaves the partner). Returns a
        (num_items, dim + 1) array whose rows are [embedding gradient, bias gradient] summed over customers.
        """
        if items.num_items != self.num_items or items.dim != self.config.dim:
            raise ConfigError(
                f"item parameters are {items.num_items} x {items.dim}, expected {self.num_items} x {self.config.dim}"
            )
        collected: list[torch.Tensor] = []
        dp = DPConfig(noise_multiplier=0.0, clip=clip, sample_rate=1.0)
        with single_threaded():
            _, stats = self._train(items, 1, dp, None, True, collected)
        total = collected[0] if collected else torch.zeros(self.num_items, self.config.dim + 1)
        return total.numpy().astype(np.float64), stats

    def _train(self, items: ItemParams, epochs: int, dp: DPConfig | None, generator: torch.Generator | None,
               train_items: bool, collect: list[torch.Tensor] | None = None) -> tuple[ItemParams, TrainStats]:
        cfg = self.config
        start = time.perf_counter()
        Q = torch.from_numpy(items.embeddings.copy())
        b = torch.from_numpy(items.bias.copy())
        P = torch.from_numpy(self.customer_embeddings.copy())
        if dp is not None and dp.noise_multiplier > 0 and generator is None:
            generator = noise_generator()
        use_adam = cfg.optimizer == "adam"
        item_lr = cfg.dp_lr if dp is not None else cfg.lr
        opt_q = _Adam(tuple(Q.shape), item_lr) if use_adam else None
        opt_b = _Adam(tuple(b.shape), item_lr) if use_adam else None
        batches = self._batches(epochs, dp)
        rows_update = _DenseRows if self.dense_customers else _RowAdam
        opt_p = rows_update(P, cfg.customer_lr, sum(1 for batch in batches if len(batch)))
        stats = TrainStats()
        total_loss = 0.0
        clipped = norms = 0.0
        for batch in batches:
            stats.steps += 1
            if len(batch) == 0:
                if dp is not None and train_items and collect is None:
                    self._dp_item_step(Q, b, None, dp, generator, opt_q, opt_b, item_lr)
                continue
            owner, owner_local, pos = self._interactions_of(batch)
            neg = self._negatives(owner)
            rows = torch.from_numpy(batch)
            opt_p.catch_up(rows)  # the batch's customers as dense Adam would have them now; no other row is read
            u = torch.from_numpy(owner)
            u_local = torch.from_numpy(owner_local)
            i = torch.from_numpy(pos)
            j = torch.from_numpy(neg)
            pu = P[u]
            diff = Q[i] - Q[j]
            x = (pu * diff).sum(dim=1) + b[i] - b[j]
            g = torch.sigmoid(-x)  # -d loss / d x
            if dp is not None:  # every row customer u adds to the item table is coef * [p_u, bias_scale]
                vectors = torch.cat([P[rows], torch.full((len(batch), 1), dp.bias_scale)], dim=1)  # before P moves
                unit_local = u_local
            total_loss += float(torch.nn.functional.softplus(-x).sum())
            stats.interactions += len(owner)
            # customer side: mean gradient per interaction of each customer's own rows, the batch's rows only
            grad_p = torch.zeros(len(batch), P.shape[1]).index_add_(0, u_local, -g[:, None] * diff)
            counts = torch.zeros(len(batch)).index_add_(0, u_local, torch.ones(len(u)))
            opt_p.step(rows, grad_p / counts[:, None] + cfg.customer_reg * P[rows])
            if not train_items:
                continue
            coef = torch.cat([-g, g])  # d loss / d score at (u, i) and (u, j)
            item_rows = torch.cat([i, j])
            if dp is None:
                grad_q = torch.zeros_like(Q).index_add_(0, item_rows, coef[:, None] * torch.cat([pu, pu]))
                grad_b = torch.zeros_like(b).index_add_(0, item_rows, coef)
                grad_q = grad_q / len(owner) + cfg.reg * Q
                grad_b = grad_b / len(owner)
                if use_adam:
                    opt_q.step(Q, grad_q)  # type: ignore[union-attr]
                    opt_b.step(b, grad_b)  # type: ignore[union-attr]
                else:
                    Q -= item_lr * grad_q
                    b -= item_lr * grad_b
            else:
                summed = clip_per_unit_rank_one(torch.cat([unit_local, unit_local]), item_rows, coef, vectors,
                                                self.num_items, dp.clip)
                clipped += summed.clipped_fraction
                norms += summed.mean_norm
                if collect is not None:  # distributed noise: the sum leaves (noised) instead of a local step
                    collect.append(summed.total)
                    continue
                self._dp_item_step(Q, b, summed.total, dp, generator, opt_q, opt_b, item_lr)
        opt_p.finish()
        self.customer_embeddings = P.numpy()
        stats.loss = total_loss / max(1, stats.interactions)
        stats.seconds = time.perf_counter() - start
        if dp is not None and stats.steps:
            stats.clipped_fraction = clipped / stats.steps
            stats.mean_norm = norms / stats.steps
        return ItemParams(Q.numpy(), b.numpy()), stats

    def _dp_item_step(self, Q: torch.Tensor, b: torch.Tensor, total: torch.Tensor | None, dp: DPConfig,
                      generator: torch.Generator | None, opt_q: _Adam | None, opt_b: _Adam | None,
                      lr: float) -> None:
        """Noise the clipped sum, average over the *expected* batch (public), step (post-processing)."""
        if total is None:
            total = torch.zeros(self.num_items, Q.shape[1] + 1)
        if dp.noise_multiplier > 0:
            assert generator is not None
            total = add_gaussian_noise(total, dp.noise_multiplier, dp.clip, generator)
        expected = dp.sample_rate * self.split.num_customers
        grad = total / max(expected, 1.0)
        grad_q = grad[:, :-1] + self.config.reg * Q
        grad_b = grad[:, -1] * dp.bias_scale
        if opt_q is not None and opt_b is not None:
            opt_q.step(Q, grad_q)
            opt_b.step(b, grad_b)
        else:
            Q -= lr * grad_q
            b -= lr * grad_b

    # --- scoring ---------------------------------------------------------------------------------

    def scores(self, items: ItemParams, rows: np.ndarray) -> np.ndarray:
        """Full-catalogue scores of the customers at positions ``rows``."""
        assert self.customer_embeddings is not None
        return self.customer_embeddings[rows] @ items.embeddings.T + items.bias[None, :]


def fit_bpr(split: InteractionSplit, num_items: int, config: BPRConfig, epochs: int, seed: int,
            on_epoch: Callable[[int], None] | None = None) -> tuple[LocalTrainer, ItemParams]:
    """Plain (non-federated, non-private) BPR-MF on one party's data: the centralized baseline on the
    pooled split, or a partner training alone on its own."""
    trainer = LocalTrainer(split, num_items, replace(config, optimizer="adam"), seed=seed)
    items = ItemParams.init(num_items, config.dim, seed, config.init_scale)
    for epoch in range(epochs):
        items, _ = trainer.train(items, 1)
        if on_epoch is not None:
            on_epoch(epoch + 1)
    return trainer, items
