"""Flower's SecAgg+ as fedinsight uses it: the transport under which the coordinator sees only sums.

Flower 1.41 runs SecAgg+ only on its legacy path: the server's ``SecAggPlusWorkflow`` drives plain
``train`` messages through four stages, and ``secaggplus_mod`` on the partner answers the key-exchange
stages itself and masks the training result in the "collect masked vectors" stage. Every task that
releases through SecAgg+ shares this one transport:

- :func:`strict_workflow`: ``SecAggPlusWorkflow`` that raises when a round halts (too few partners online
  to unmask) instead of silently keeping the old model;
- :func:`to_legacy_config` / :func:`from_legacy_config`: legacy fit configs hold scalars only;
- :func:`dropout_guard_mod`: before ``secaggplus_mod`` on the partner, refuses to unmask a distributed-noise
  round that lost more partners (and so noise shares) than the job tolerates;
- :data:`SECAGG_MODS` and :func:`legacy_train_handler`: the partner's one legacy ``train`` handler, which
  hands each fit to the secure fit of the task named in its config (``secagg-task``);
- :func:`check_secagg_setup` (partner) and :func:`secure_sum` (coordinator): one distributed-noise round of
  any task, the partner checking SecAgg+'s own state before it releases a share;
- :func:`shares_of`, :func:`trust_text` and :func:`check_own_trust`: the trust model (honest partners, tolerated
  drop-outs) every distributed-noise task states and every partner may refuse.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from flwr.app import Context, Error, Message
from flwr.client import NumPyClient
from flwr.client.message_handler.message_handler import handle_legacy_message_from_msgtype
from flwr.client.mod import secaggplus_mod
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, RECORD_KEY_STATE, Key, Stage
from flwr.serverapp import Grid

from fedinsight.core.errors import ConfigError, SecureAggregationError
from fedinsight.federation.manifest import PUBLIC, Release

log = logging.getLogger(__name__)

GUARD_RECORD = "fedinsight.recommend-secagg"
GUARD_ERROR_CODE = 3002
"""Partner state a distributed-noise round leaves for :func:`dropout_guard_mod`; the error code of its refusal."""


class SecAggRoundFailed(RuntimeError):
    """A SecAgg+ round halted (fewer partners than the reconstruction threshold stayed online)."""


def strict_workflow(**kwargs: Any):  # type: ignore[no-untyped-def]
    """``SecAggPlusWorkflow`` that raises when a round halts, instead of silently keeping the old model."""
    from flwr.server.workflow import SecAggPlusWorkflow

    class StrictSecAggPlusWorkflow(SecAggPlusWorkflow):
        def __call__(self, grid: Grid, context: Context) -> None:
            self._unmasked = False
            super().__call__(grid, context)
            if not self._unmasked:
                raise SecAggRoundFailed("a secure-aggregation round halted: too few partners stayed online to "
                                        "reconstruct the sum (see the coordinator log)")

        def unmask_stage(self, grid, context, state) -> bool:  # type: ignore[no-untyped-def]
            self._unmasked = bool(super().unmask_stage(grid, context, state))
            return self._unmasked

    return StrictSecAggPlusWorkflow(**kwargs)


class TimedRounds:
    """Wraps a fit workflow and records each round's wall time (for the job summary and benchmarks)."""

    def __init__(self, fit_workflow: Any) -> None:
        self.fit_workflow = fit_workflow
        self.seconds: list[float] = []

    def __call__(self, grid: Grid, context: Context) -> None:
        started = time.perf_counter()
        self.fit_workflow(grid, context)
        self.seconds.append(time.perf_counter() - started)


def to_legacy_config(config: dict[str, Any]) -> dict[str, Any]:
    """Legacy fit configs hold scalars only: list values travel as JSON strings (``<key>-json``)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, list):
            out[f"{key}-json"] = json.dumps(value)
        else:
            out[key] = value
    return out


def from_legacy_config(config: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if key.endswith("-json") and isinstance(value, str):
            out[key[: -len("-json")]] = json.loads(value)
        else:
            out[key] = value
    return out


def dropout_guard_mod(msg: Message, ctxt: Context, call_next):  # type: ignore[no-untyped-def]
    """Before ``secaggplus_mod``: in the unmask stage of a distributed-noise round, refuse to send shares
    when more partners dropped out than the job tolerates (their noise shares are missing from the sum)."""
    if GUARD_RECORD not in ctxt.state.config_records or RECORD_KEY_CONFIGS not in msg.content.config_records:
        return call_next(msg, ctxt)
    configs = msg.content.config_records[RECORD_KEY_CONFIGS]
    if configs.get(Key.STAGE) != Stage.UNMASK:
        return call_next(msg, ctxt)
    guard = ctxt.state.config_records.pop(GUARD_RECORD)
    dead = list(configs.get(Key.DEAD_NODE_ID_LIST, []))  # type: ignore[arg-type]
    allowed = int(guard["max-dropouts"])  # type: ignore[arg-type]
    if len(dead) > allowed:
        reason = (f"SecureAggregationError: {len(dead)} partner(s) dropped out of this round, at most {allowed} "
                  "tolerated: the sum would lack their noise shares; this partner refuses to unmask it")
        return Message(Error(code=GUARD_ERROR_CODE, reason=reason), reply_to=msg)
    return call_next(msg, ctxt)


SECAGG_MODS = [dropout_guard_mod, secaggplus_mod]
"""The mods the partner's legacy ``train`` handler runs under (tests add an inner recording mod after these)."""

SecureFit = Callable[[Any, list[np.ndarray], dict[str, Any]], tuple[list[np.ndarray], int, dict[str, Any]]]
"""A task's SecAgg+ fit on the partner: (partner, global parameters, fit config) -> (vector to mask, weight, {})."""

TASK_KEY = "task"
SECAGG_REPLY = "secagg"
PROTOCOL_KEYS = (Key.PUBLIC_KEY_1, Key.PUBLIC_KEY_2, Key.DESTINATION_LIST, Key.CIPHERTEXT_LIST, Key.NODE_ID_LIST,
                 Key.SHARE_LIST)


def legacy_train_handler(fits: Mapping[str, SecureFit], default: str,
                         partner_for: Callable[[str, Context, dict[str, Any]], Any] | None = None,
                         ) -> Callable[[Message, Context], Message]:
    """The partner's legacy ``train`` handler: NumPyClient-style fit, dispatched to ``fits[config["task"]]``.

    ``partner_for(task, context, config)`` builds what the fit is handed as its partner (the ClientApp passes
    its :class:`~fedinsight.federation.task.Partner` factory; tests may pass the Flower context through).
    """

    class _Client(NumPyClient):
        def __init__(self, context: Context) -> None:
            self.context = context

        def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple[list[np.ndarray], int, dict]:
            task = str(config.get(TASK_KEY, default))
            if task not in fits:
                known = ", ".join(sorted(fits))
                raise ConfigError(f"no task '{task}' trains under secure aggregation (known: {known})")
            partner = partner_for(task, self.context, config) if partner_for is not None else self.context
            return fits[task](partner, parameters, config)

    def handle(msg: Message, context: Context) -> Message:
        return handle_legacy_message_from_msgtype(client_fn=lambda ctx: _Client(ctx).to_client(), message=msg,
                                                  context=context)

    return handle


def secagg_releases(*, update_event: Any, count: int, what: str, sensitivity: str,
                    mechanism: str = "dp-sgd+secagg") -> list[Any]:
    """The manifest of a task that releases through SecAgg+: the protocol's messages, and the masked update
    (``mechanism``: what protects it, as the manifest and ledger name it)."""
    protocol = Release(SECAGG_REPLY, RECORD_KEY_CONFIGS, dict.fromkeys(PROTOCOL_KEYS), PUBLIC, kind="protocol",
                       what="SecAgg+ key agreement: public keys, encrypted shares for other partners, unmasking "
                            "shares of drop-outs",
                       reason="key material and shares encrypted to other partners reveal nothing of the data "
                              "(Bell et al., CCS 2020); unmasking shares are sent only for partners that dropped out")
    masked = masked_release(event=update_event, count=count, what=what, sensitivity=sensitivity, mechanism=mechanism)
    envelope = "the legacy fit reply around the masked vector (Flower's NumPyClient format)"
    fit = [Release(SECAGG_REPLY, "fitres.num_examples", {"num_examples": None}, PUBLIC, what="the partner's weight",
                   reason="always 1: partners are weighted equally (a customer count would be confidential)"),
           Release(SECAGG_REPLY, "fitres.status", {"code": None, "message": None}, PUBLIC, kind="protocol",
                   what="the fit's status", reason=envelope),
           Release(SECAGG_REPLY, "fitres.metrics", {}, PUBLIC, kind="text", what="no metrics",
                   reason=envelope + "; must be empty"),
           Release(SECAGG_REPLY, "fitres.parameters", {}, PUBLIC, kind="arrays", what="no parameters",
                   reason=envelope + "; secaggplus_mod empties it (the parameters travel masked)")]
    return [protocol, masked, *fit]


def masked_release(*, event: Any, count: int, what: str, sensitivity: str, mechanism: str) -> Release:
    """One more masked vector a task sends through SecAgg+ (a task with several kinds of distributed-noise release
    declares the protocol once, with :func:`secagg_releases`, and each further kind with this)."""
    return Release(SECAGG_REPLY, RECORD_KEY_CONFIGS, {Key.MASKED_PARAMETERS: None}, mechanism, kind="protocol",
                   what=what, sensitivity=sensitivity, event=event, count=count)


class _GuardedGrid:
    """A Grid whose received SecAgg+ replies are checked against the job's manifest (others dropped)."""

    def __init__(self, grid: Grid, guard: Any) -> None:
        self._grid, self._guard = grid, guard

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)

    def send_and_receive(self, messages: Any, *, timeout: float | None = None) -> list[Message]:
        replies = list(self._grid.send_and_receive(messages, timeout=timeout))
        ok = [r for r in replies if not r.has_error()]
        before = len(self._guard.violations)
        kept = self._guard.check(ok, SECAGG_REPLY)
        for violation in self._guard.violations[before:]:
            log.warning("SecAgg+ reply dropped: %s", violation)
        return [*kept, *[r for r in replies if r.has_error()]]


def guarded(grid: Grid, guard: Any) -> Grid:
    """``grid`` with every reply held against the manifest's SecAgg+ releases."""
    return _GuardedGrid(grid, guard)  # type: ignore[return-value]


def check_secagg_setup(context: Context, settings: Mapping[str, float | int], partners: int,
                       max_dropouts: int) -> None:
    """On the partner: refuse a distributed-noise share unless SecAgg+ was set up as the job's accounting assumes
    (``settings``: the encoding's clipping, quantisation and modulus ranges; weight 1; at least ``partners -
    max_dropouts`` partners in the round, each sharing keys with all others so it sees every drop-out).
    Read from ``secaggplus_mod``'s own state, never from the coordinator's word."""
    if RECORD_KEY_STATE not in context.state.config_records:
        raise SecureAggregationError("a distributed-noise round arrived outside SecAgg+; refused")
    state = context.state.config_records[RECORD_KEY_STATE]
    got = {"clipping_range": float(state.get("clipping_range", 0.0)),  # type: ignore[arg-type]
           "quantization_range": int(state.get("target_range", 0)),  # type: ignore[arg-type]
           "modulus_range": int(state.get("mod_range", 0))}  # type: ignore[arg-type]
    expected = {"clipping_range": float(settings["clipping_range"]),
                "quantization_range": int(settings["quantization_range"]),
                "modulus_range": int(settings["modulus_range"])}
    if got != expected:
        raise SecureAggregationError(f"SecAgg+ is set up with {got}, the job's encoding needs {expected}; refused")
    if float(state.get("max_weight", 0.0)) != 1.0:  # type: ignore[arg-type]
        raise SecureAggregationError("SecAgg+ max-weight must be 1 (the weight would rescale the noisy share)")
    sampled, shares = int(state.get("sample_num", 0)), int(state.get("share_num", 0))  # type: ignore[arg-type]
    if sampled < partners - max_dropouts:
        raise SecureAggregationError(f"only {sampled} of the job's {partners} partners are in this round; at most "
                                     f"{max_dropouts} may be missing; refused")
    if shares < sampled:
        raise SecureAggregationError("every partner must share keys with every other (num_shares = all) so that "
                                     "each one sees every drop-out; refused")


def shares_of(partners: int, honest: int, max_dropouts: int) -> int:
    """Noise shares the sum must hold: honest partners (0: all) minus the drop-outs a round tolerates."""
    honest = honest or partners
    if not 1 <= honest <= partners:
        raise ConfigError(f"--honest-partners must be between 1 and the number of partners ({partners}), or 0 for all")
    if not 0 <= max_dropouts < honest:
        raise ConfigError(f"--max-dropouts must be below the number of honest partners ({honest})")
    return honest - max_dropouts


class NoiseModelOptions:
    """What the options of a task with ``--noise-model distributed-secagg`` derive alike (a mixin: the task's options
    class has the fields ``honest_partners``, ``max_dropouts`` and ``sample_rate`` and the property
    ``distributed``)."""

    def noise_shares(self, partners: int) -> int:
        """Honest partners less tolerated drop-outs (ConfigError if the trust settings do not fit ``partners``)."""
        if partners < 2:
            raise ConfigError("--noise-model distributed-secagg needs at least 2 partners")
        return shares_of(partners, self.honest_partners, self.max_dropouts)  # type: ignore[attr-defined]

    @property
    def batch_rate(self) -> float:
        """The DP-SGD sample rate the accounting assumes: 1 (full batch) with distributed noise, whose sum of
        discrete-Gaussian shares is proven equivalent for unsampled releases only."""
        return 1.0 if self.distributed else self.sample_rate  # type: ignore[attr-defined]


def check_partner_fits(partner: Any, *, assumed_honest: int, customers: int, max_customers: int) -> None:
    """What a partner checks of a distributed-noise job from its options alone (in hello, before any charge, and again
    each round): it accepts the trust model (its own ``max-honest-partners``) and its ``customers`` fit under the
    job's public bound (the message names the bound, never the partner's own count)."""
    check_own_trust(partner, assumed_honest)
    if customers > max_customers:
        raise SecureAggregationError(f"partner {partner.partner_id} has more training customers than the job's public "
                                     f"bound --max-customers {max_customers}; refused (raise the bound)")


def check_share_round(partner: Any, enc: Any, *, honest: int, max_dropouts: int, customers: int) -> None:
    """What a partner checks before it computes a distributed-noise share: :func:`check_partner_fits`, and SecAgg+
    was set up as the encoding ``enc`` assumes (read from SecAgg+'s own state)."""
    check_partner_fits(partner, assumed_honest=honest or enc.partners, customers=customers,
                       max_customers=enc.max_customers)
    check_secagg_setup(partner.context, enc.flower_settings(), enc.partners, max_dropouts)


def trust_text(partners: int, honest: int, max_dropouts: int) -> str:
    """The trust model in words (summary.json, ledger descriptions, report)."""
    honest = honest or partners
    shares = honest - max_dropouts
    return (f"distributed-secagg: SecAgg+ sum of {partners} partners, each adding a discrete-Gaussian share "
            f"N(0, (z C')^2 / {shares}); assumes at least {honest} partners do not collude with the coordinator; "
            f"a sum that lost more than {max_dropouts} partner(s) is never unmasked")


def check_shares(partners: int, shares: int, max_dropouts: int) -> int:
    """The honest partners a job's noise shares assume, refused if the shares cannot survive its tolerated drop-outs.

    Each partner adds 1/``shares`` of the noise variance and a sum may lose ``max_dropouts`` partners before it is
    unmasked, so ``shares + max_dropouts`` partners must take part; a coordinator that sends more shares (less noise
    each) than that would unmask sums short of the noise the ledger prices. Returns ``shares + max_dropouts``."""
    if not (shares >= 1 and max_dropouts >= 0 and shares + max_dropouts <= partners):
        raise SecureAggregationError(f"the job's noise plan ({shares} noise shares, {max_dropouts} tolerated "
                                     f"drop-outs) does not fit its {partners} partners: a sum could be unmasked with "
                                     "less noise than charged; refused")
    return shares + max_dropouts


def check_own_trust(partner: Any, assumed_honest: int) -> None:
    """The trust model is the partner's to accept: its node config ``max-honest-partners`` is the most partners it
    trusts not to collude with the coordinator (0: it takes part in no distributed-noise job)."""
    own = partner.setting("max-honest-partners")
    if own is None:
        return
    try:
        limit = int(own)
    except (TypeError, ValueError):
        raise ConfigError(f"node config max-honest-partners={own!r} must be a whole number") from None
    if assumed_honest > limit:
        raise SecureAggregationError(f"the job assumes {assumed_honest} partners do not collude with the coordinator; "
                                     f"this partner trusts at most {limit} (node config max-honest-partners); refused")


def secure_sum(grid: Grid, guard: Any, *, fit_config: dict[str, Any], settings: Mapping[str, float | int],
               partners: int, max_dropouts: int, timeout: float | None,
               initial: list[np.ndarray] | None = None) -> tuple[list[np.ndarray], int]:
    """One SecAgg+ round over ``partners`` partners (every one of them sampled, weight 1): Flower's average of the
    unmasked vectors and how many partners it holds. Raises :class:`SecureAggregationError` when the round halted
    (too few partners online, or partners refused to unmask a sum that lost more than ``max_dropouts`` shares)."""
    from flwr.app import RecordDict
    from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.server import LegacyContext, ServerConfig
    from flwr.server.strategy import FedAvg
    from flwr.server.workflow import DefaultWorkflow

    config = to_legacy_config({**fit_config, "max-dropouts": max_dropouts})

    class _Counting(FedAvg):
        """FedAvg over identical unmasked sums (SecAgg+ hands every result the same vector); counts them."""

        contributors = 0
        result: list[np.ndarray] | None = None

        def aggregate_fit(self, server_round, results, failures):  # type: ignore[no-untyped-def]
            self.contributors = len(results)
            if results:
                self.result = parameters_to_ndarrays(results[0][1].parameters)
            return super().aggregate_fit(server_round, results, failures)

    strategy = _Counting(
        fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=partners, min_evaluate_clients=0,
        min_available_clients=partners,
        initial_parameters=ndarrays_to_parameters(initial if initial is not None else [np.zeros(1)]),
        on_fit_config_fn=lambda _rnd: config, accept_failures=True)
    context = Context(run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config={})
    legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=1), strategy=strategy)
    workflow = strict_workflow(num_shares=1.0, reconstruction_threshold=0.5, max_weight=1.0,
                               clipping_range=float(settings["clipping_range"]),
                               quantization_range=int(settings["quantization_range"]),
                               modulus_range=int(settings["modulus_range"]), timeout=timeout)
    try:
        DefaultWorkflow(fit_workflow=workflow)(guarded(grid, guard), legacy)
    except SecAggRoundFailed as exc:
        raise SecureAggregationError(f"{exc}; partners refuse to unmask a sum that lacks noise shares (a partner "
                                     "dropped out or refused: see the partners' logs)") from None
    if strategy.result is None or strategy.contributors < partners - max_dropouts:
        raise SecureAggregationError(f"the secure sum holds {strategy.contributors} of {partners} partners' shares "
                                     f"(at most {max_dropouts} may be missing); not released")
    return strategy.result, strategy.contributors
