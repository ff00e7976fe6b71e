"""The secure-training task's options: DP-SGD settings and the SecAgg+ set-up, defined once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from dp_accounting import dp_event

from fedinsight.core.errors import ConfigError
from fedinsight.federation.delta import HELP as delta_help
from fedinsight.federation.delta import provisional
from fedinsight.federation.options import Options, option
from fedinsight.privacy.ledger import compose_epsilon, dpsgd_event


@dataclass(frozen=True)
class SecureTrainingOptions(Options):
    rounds: int = option(3, "Federated rounds.", minimum=1)
    noise_multiplier: float = option(1.0, "DP-SGD noise multiplier.", above=0)
    max_grad_norm: float = option(1.0, "DP-SGD per-customer gradient clipping norm.", above=0)
    sample_rate: float = option(0.05, "Poisson sampling rate of customers per step.", above=0, maximum=1)
    local_steps: int = option(20, "DP-SGD steps per partner per round.", minimum=1)
    lr: float = option(0.5, "Learning rate.", above=0)
    delta: float | None = option(None, delta_help, above=0, below=1)
    cutoff: str = option("2025-06-30", "Cutoff date: features before it, label = buys after it.")
    max_shares: int = option(9, "At most this many SecAgg+ shares per secret (odd; fewer partners: all).", minimum=3)
    clipping_range: float = option(8.0, "SecAgg+ clipping range of the (quantised) update.", above=0)

    ALIASES: ClassVar[dict[str, str]] = {"num-server-rounds": "rounds", "learning-rate": "lr"}

    def validate(self) -> None:
        try:
            import pandas as pd

            pd.Timestamp(self.cutoff)
        except (ValueError, TypeError):
            raise ConfigError(f"--cutoff '{self.cutoff}' is not a date (use YYYY-MM-DD)") from None

    def round_event(self) -> dp_event.DpEvent:
        """One partner's DP-SGD steps in one round."""
        return dpsgd_event(self.noise_multiplier, self.sample_rate, self.local_steps)

    @property
    def epsilon(self) -> float:
        """The whole job's epsilon per partner at ``delta`` (what the ledger is charged)."""
        return compose_epsilon([self.round_event()] * self.rounds, provisional(self.delta))

    def num_shares(self, partners: int) -> int:
        """Odd, at most the number of partners and ``max_shares`` (an even integer crashes ``secaggplus_mod``)."""
        shares = min(partners, self.max_shares)
        return shares if shares % 2 else shares - 1

    def threshold(self, partners: int) -> int:
        """Shares needed to reconstruct a secret: a majority (tolerates a minority dropping out)."""
        return self.num_shares(partners) // 2 + 1
