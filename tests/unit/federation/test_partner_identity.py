"""A partner's id is bound to its registered key: a node claiming another partner's id is refused at hello,
before any plan, charge or computation.

Flower's SuperLink binds each node id to the public key registered under it (a request signed with another
key is rejected by Flower itself); the coordinator records partner id -> node id when it registers the keys
(:mod:`fedinsight.coordinator.identities`). Here an in-process grid plays the authenticated nodes 100 and 101
and each node states whatever partner id its node config says, as a partner's own ``partner.toml`` would.
"""

from __future__ import annotations

import pytest
from flwr.app import Context, RecordDict

from fedinsight.coordinator.identities import read_partner_nodes, write_partner_nodes
from fedinsight.core.errors import PartnerIdentityError, StateIntegrityError
from fedinsight.federation.task import Session, partner_reply, settings_of, start
from fedinsight.tasks.preflight import TASK
from tests.support.fake_grid import InProcessGrid

REGISTERED = {"retail": 100, "bank": 101}  # what `flwr supernode register` returned for each partner's key


def _grid(claims: dict[int, str]) -> InProcessGrid:
    def client(msg, context):  # answers hello with the id its own configuration states
        return partner_reply(msg, str(context.node_config["partner-id"]), {})

    return InProcessGrid(client, len(claims), node_config=lambda k: {"partner-id": claims[100 + k]})


def _start(grid: InProcessGrid, identities, **run_config):
    config = {"task": "preflight", "partners": 2, "job-id": "job-identity", "timeout": 5.0, **run_config}
    context = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=config)
    return start(TASK, grid, context, identities=identities)


def _phases(grid: InProcessGrid) -> list[str]:
    return [str(m.content["config"]["phase"]) for m in grid.sent]


def test_nodes_claiming_their_own_ids_pass_hello():
    grid = _grid({100: "retail", 101: "bank"})
    job, options = settings_of(TASK, {"task": "preflight", "partners": 2, "job-id": "job-identity"})
    session = Session(TASK, grid, job, options, [100, 101])
    session.hello(REGISTERED)
    assert session.partner_ids == ["bank", "retail"] and session.name(101) == "bank"


def test_a_node_presenting_another_partners_id_is_refused_before_anything_is_computed():
    grid = _grid({100: "retail", 101: "retail-2"})
    with pytest.raises(PartnerIdentityError, match="node 101 authenticated with the key registered for partner "
                                                    "'bank' but claims to be partner 'retail-2'"):
        _start(grid, REGISTERED)
    # bank's key (node 101) claiming to be retail, while retail's own node states another name
    grid = _grid({100: "bank-copy", 101: "retail"})
    with pytest.raises(PartnerIdentityError) as caught:
        _start(grid, REGISTERED)
    message = str(caught.value)
    assert "node 101 authenticated with the key registered for partner 'bank' but claims to be partner 'retail'" \
        in message
    assert "node 100 authenticated with the key registered for partner 'retail'" in message
    assert _phases(grid) == ["hello", "hello"]  # refused at hello: no partner was asked anything else


def test_swapped_ids_are_refused_and_a_simulation_is_not_bound():
    with pytest.raises(PartnerIdentityError, match="claims to be partner 'bank'"):
        _start(_grid({100: "bank", 101: "retail"}), REGISTERED)
    # a key registered earlier without a known node id binds nothing: its partner is refused, not trusted
    with pytest.raises(PartnerIdentityError, match="partner 'retail', whose key is not registered"):
        _start(_grid({100: "retail", 101: "bank"}), {"retail": None, "bank": 101})


def test_the_coordinators_record_round_trips_and_a_broken_one_is_an_error(tmp_path):
    assert read_partner_nodes(tmp_path) is None  # no record: not a deployed coordinator
    write_partner_nodes(tmp_path, {"retail": 7, "bank": None})
    assert read_partner_nodes(tmp_path) == {"retail": 7, "bank": None}
    assert (tmp_path / "partner-nodes.json").stat().st_mode & 0o077 == 0
    (tmp_path / "partner-nodes.json").write_text("{not json")
    with pytest.raises(StateIntegrityError, match="restart the coordinator"):
        read_partner_nodes(tmp_path)
