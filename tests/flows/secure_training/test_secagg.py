"""Secure aggregation: the coordinator only ever receives masked vectors and their sum; dropouts survive.

The simulation test runs the real SecAgg+ protocol (Flower's workflow + ``secaggplus_mod``) around the
real partner training. Two instruments, neither of which changes the protocol:

* on the server, a grid wrapper that keeps a copy of every message the server-side code sends and
  receives;
* on each partner, a mod placed *inside* ``secaggplus_mod`` that writes the partner's plaintext update
  to a file before it is masked (the ground truth the server must never see), and that makes partner 0
  go offline in the middle of round 2 (after the key exchange, before it sends its masked vector).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
from dp_accounting import dp_event
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp

from fedinsight.core.errors import BudgetExceededError, ConfigError
from fedinsight.federation.job import JobSettings
from fedinsight.federation.task import result_of, start
from fedinsight.privacy.ledger import PrivacyLedger
from fedinsight.tasks.secure_training import TASK
from fedinsight.tasks.secure_training.options import SecureTrainingOptions

ROUNDS = 2
DROP_PARTNER, DROP_ROUND = 0, 2


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    from fedinsight.data.synth import SynthConfig, write_synthetic
    from fedinsight.partner.policy_init import init_partner

    root = tmp_path_factory.mktemp("secagg") / "data"
    write_synthetic(SynthConfig(customers=2400, partners=3, seed=3), root)
    for k in range(3):  # each partner's protection policy: the planted name/phone/e-mail columns are dropped
        init_partner(root / f"partner-{k}")
    return root


def test_num_shares_is_always_odd_and_threshold_a_majority():
    options = SecureTrainingOptions()
    for partners in range(3, 30):
        shares = options.num_shares(partners)
        assert shares % 2 == 1 and 3 <= shares <= min(partners, 9)
        assert shares // 2 < options.threshold(partners) <= shares
    with pytest.raises(ConfigError, match="at least 3 partners"):
        TASK.check(options, JobSettings(task=TASK.name, partners=2))
    with pytest.raises(ConfigError, match="--sample-rate must be at most 1"):
        SecureTrainingOptions.from_run_config({"sample-rate": 1.5})


class _FakeGrid:
    """Answers only the hello query; records every message type it is asked to send."""

    def __init__(self, partners: list[str]) -> None:
        self.partners = partners
        self.sent: list[str] = []

    def get_node_ids(self):  # noqa: ANN201
        return list(range(1, len(self.partners) + 1))

    def send_and_receive(self, messages, *, timeout=None):  # noqa: ANN001, ANN201
        replies = []
        for m in messages:
            self.sent.append(m.metadata.message_type)
            assert m.metadata.message_type.startswith("query."), "nothing but the hello may be sent before charging"
            name = self.partners[m.metadata.dst_node_id - 1]
            reply = Message(RecordDict({"partner": ConfigRecord({"partner-id": name})}), reply_to=m)
            replies.append(reply)
        return replies


def test_overspending_job_is_refused_before_any_partner_trains(tmp_path):
    from flwr.common.constant import SUPERLINK_NODE_ID
    from flwr.supercore.task_identity import TaskIdentity

    # What a ServerApp process has set before its main runs (Messages read it).
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, SUPERLINK_NODE_ID
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = PrivacyLedger(url)
    for pid in ("a", "b", "c"):
        ledger.set_budget(pid, 0.5, 1e-6)
    grid = _FakeGrid(["a", "b", "c"])
    context = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(),
                      run_config={"task": "secagg", "partners": 3, "ledger-url": url, "noise-multiplier": 0.8})
    with pytest.raises(BudgetExceededError, match="would reach epsilon"):
        start(TASK, grid, context)  # type: ignore[arg-type]
    assert grid.sent == ["query.secure_training"] * 3
    assert all(ledger.status(p).charges == 0 for p in ("a", "b", "c"))


class _RecordingGrid:
    """Delegates to the real grid; keeps what the server-side code sends and receives."""

    def __init__(self, grid: Grid) -> None:
        self._grid = grid
        self.outgoing: list[tuple[str, RecordDict]] = []
        self.incoming: list[tuple[int, RecordDict]] = []

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self._grid, name)

    def send_and_receive(self, messages, *, timeout=None):  # noqa: ANN001, ANN201
        messages = list(messages)
        for m in messages:
            self.outgoing.append((m.metadata.message_type, m.content.copy() if hasattr(m.content, "copy")
                                  else m.content))
        replies = list(self._grid.send_and_receive(messages, timeout=timeout))
        for r in replies:
            if not r.has_error():
                self.incoming.append((r.metadata.src_node_id, r.content))
        return replies


def _plaintext_mod(out_dir: str):  # noqa: ANN202
    import flwr.compat.common.recorddict_compat as compat
    from flwr.common import parameters_to_ndarrays

    def mod(msg: Message, context: Context, call_next):  # noqa: ANN001, ANN202
        pid = int(context.node_config["partition-id"])
        server_round = int(compat.recorddict_to_fitins(msg.content, keep_input=True).config["round"])
        if pid == DROP_PARTNER and server_round == DROP_ROUND:
            raise RuntimeError("partner went offline mid-round")
        reply = call_next(msg, context)
        fitres = compat.recorddict_to_fitres(reply.content, keep_input=True)
        flat = np.concatenate([a.ravel() for a in parameters_to_ndarrays(fitres.parameters)])
        np.save(Path(out_dir) / f"plain-{pid}-round-{server_round}.npy", flat)
        return reply

    return mod


def _all_arrays(content: RecordDict) -> list[np.ndarray]:
    """Every numeric vector in a message: array records and byte-encoded ndarrays in config records."""
    from flwr.common import bytes_to_ndarray

    found = []
    for record in content.values():
        if isinstance(record, ArrayRecord):
            found += [a.numpy().ravel() for a in record.values()]
        elif isinstance(record, ConfigRecord):
            for value in record.values():
                if isinstance(value, list) and value and isinstance(value[0], bytes):
                    for b in value:
                        with contextlib.suppress(Exception):  # ciphertexts and keys are not ndarrays
                            found.append(bytes_to_ndarray(b).ravel())
    return found


@pytest.mark.slow
def test_server_sees_only_masked_vectors_and_a_round_survives_a_dropout(synth_root, tmp_path):
    from fedinsight.federation.simulation import run_simulation
    from fedinsight.partner.clientapp import build_client_app

    plain_dir = tmp_path / "plain"
    plain_dir.mkdir()
    client = build_client_app([TASK], inner_mods=[_plaintext_mod(str(plain_dir))])

    server = ServerApp()
    recorder: dict[str, _RecordingGrid] = {}

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        recorder["grid"] = _RecordingGrid(grid)
        start(TASK, recorder["grid"], context)  # type: ignore[arg-type]

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    run_config = {"task": "secure_training", "partners": 3, "rounds": ROUNDS, "data-root": str(synth_root),
                  "ledger-url": url, "local-steps": 5, "sample-rate": 0.1, "timeout": 120.0, "budget": 10.0,
                  "partner-ledger-url": f"sqlite:///{tmp_path / 'partners.db'}"}
    context = run_simulation(run_config, 3, server_app=server, client_app=client, cpus=2)
    summary = result_of(context)
    grid = recorder["grid"]

    plain = {(int(f.stem.split("-")[1]), int(f.stem.split("-")[3])): np.load(f) for f in plain_dir.glob("*.npy")}
    assert sorted(plain) == [(0, 1), (1, 1), (1, 2), (2, 1), (2, 2)]  # partner 0 never trained in round 2

    # 1. Nothing the server received is, or contains, a partner's update: masked integer vectors only.
    received = [a for _, content in grid.incoming for a in _all_arrays(content)]
    assert received, "the server received the masked vectors"
    for arr in received:
        assert arr.dtype.kind in "iu", f"a float array reached the server: {arr}"
        for update in plain.values():
            assert not (arr.shape == update.shape and np.allclose(arr.astype(float), update, atol=1e-3))
    # masks make the masked vectors look uniform on [0, 2^32): far outside the quantisation range 2^22
    assert max(int(a.max()) for a in received) > 2**22

    # 2. The model sent out in round 2 is exactly the average of round 1's three updates (only the sum was learnt).
    round2_fitins = [c for t, c in grid.outgoing if t == "train" and any(isinstance(r, ArrayRecord) and len(r)
                                                                        for r in c.values())]
    sent_models = [np.concatenate([a.ravel() for a in _all_arrays(c) if a.dtype.kind == "f"]) for c in round2_fitins]
    round1_mean = np.mean([plain[(p, 1)] for p in range(3)], axis=0)
    assert any(np.allclose(m, round1_mean, atol=1e-4) for m in sent_models)

    # 3. Round 2 lost partner 0 mid-round and still finished: the result is the average of the two survivors.
    final = np.asarray(summary["weights"])
    assert np.allclose(final, np.mean([plain[(1, 2)], plain[(2, 2)]], axis=0), atol=1e-4)
    assert not np.allclose(final, np.mean([plain[(p, 1)] for p in range(3)], axis=0), atol=1e-4)

    # 4. Every partner was charged the whole job's DP-SGD event once, up front.
    expected = SecureTrainingOptions.from_run_config(run_config).epsilon
    ledger = PrivacyLedger(url)
    for pid in ("partner-0", "partner-1", "partner-2"):
        status = ledger.status(pid)
        assert status.charges == 1 and status.epsilon_spent == pytest.approx(expected)
        assert isinstance(ledger.charges(pid)[0].event, dp_event.SelfComposedDpEvent)
