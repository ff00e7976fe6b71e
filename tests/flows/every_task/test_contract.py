"""The task contract, held against every registered task on a federation nobody here named.

- every value a partner sends is declared in its task's release manifest, and each partner's ledger charge is
  exactly the composed cost of the manifest's DP releases (the coordinator's and the partner's own);
- customers who refused consent and customers erased with ``partner forget`` reach no task's handler, and no
  score or recommendation;
- a partner started the way ``fedinsight partner start`` starts it refuses, in every task, to go past its cap;
- a simulation's run folder never holds a value of a declared identifier column.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import pytest
from support.federations import PARTNER_NAMES, LocalRun, raw_frames, run_in_process

from fedinsight.core.errors import BudgetExceededError, UnknownCustomerError
from fedinsight.federation.budget import stated_epsilon
from fedinsight.federation.guard import check_reply, spec_for
from fedinsight.federation.task import job_delta
from fedinsight.partner.view import PartnerView
from fedinsight.privacy.ledger import PrivacyLedger
from fedinsight.tasks import TASKS as SHIPPED

TASKS = sorted(t.name for t in SHIPPED)
SPENDING = [t for t in TASKS if t != "preflight"]


@pytest.fixture(scope="module")
def federation(shared_own_federation):
    return shared_own_federation


class _Runs:
    """One in-process job per task on the federation, run the first time a test asks for it and shared by the
    tests below (each checks another side of the same job: its messages and charges, the customers its handlers
    were given, the scores and recommendations of its model). Every table handed to a handler is recorded."""

    def __init__(self, federation, root: Path) -> None:  # noqa: ANN001
        self.federation, self.root = federation, root
        self.done: dict[str, tuple[LocalRun, Path, dict[str, set[str]]]] = {}
        self.scanned: dict[str, dict[str, int]] = {}  # task -> partner -> most customers one engine scan numbered

    def __getitem__(self, task: str) -> tuple[LocalRun, Path, dict[str, set[str]]]:
        if task not in self.done:
            handed: dict[str, set[str]] = defaultdict(set)
            scanned: dict[str, int] = defaultdict(int)
            original, original_scans = PartnerView.tables, PartnerView.scans

            def spy(view):  # noqa: ANN001, ANN202 - every table every handler was given
                data = original(view)
                for frame in data.tables().values():
                    if "customer_id" in frame.columns:
                        handed[view.folder.name] |= set(frame["customer_id"].astype(str))
                return data

            def spy_scans(view, scans):  # noqa: ANN001, ANN202 - and every engine scan's result (insights, propensity)
                results = original_scans(view, scans)
                for frame in results:
                    if "customer_id" in frame.columns:
                        handed[view.folder.name] |= set(frame["customer_id"].astype(str))
                    if "cust" in frame.columns:  # row-level scans carry customer numbers, not ids
                        scanned[view.folder.name] = max(scanned[view.folder.name], int(frame["cust"].nunique()))
                    scanned[view.folder.name] = max(scanned[view.folder.name], 1)
                return results

            out = self.root / task
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(PartnerView, "tables", spy)
                patch.setattr(PartnerView, "scans", spy_scans)
                run = run_in_process(task, self.federation, out)
            self.done[task] = (run, out, dict(handed))
            self.scanned[task] = dict(scanned)
        return self.done[task]


@pytest.fixture(scope="module")
def runs(federation, tmp_path_factory) -> _Runs:
    return _Runs(federation, tmp_path_factory.mktemp("runs"))


def _kind(msg) -> str:  # noqa: ANN001
    """The manifest's name for the reply to ``msg``: a query's phase, ``train``/``evaluate``, or SecAgg+."""
    kind = msg.metadata.message_type.split(".")[0]
    if "." not in msg.metadata.message_type:
        return "secagg"  # Flower's legacy path, which only SecAgg+ uses
    return str(msg.content["config"]["phase"]) if kind == "query" else kind


@pytest.mark.parametrize("task", TASKS)
def test_every_value_a_partner_sends_is_declared_and_the_charge_is_the_manifests(task, runs):
    run, out, _ = runs[task]
    manifest = run.session.guard.manifest
    assert run.summary["messages"]["violations"] == [] and run.summary["messages"]["failures"] == []
    pairs = list(zip(run.grid.sent, run.grid.replies, strict=True))
    assert pairs
    for msg, reply in pairs:
        assert not reply.has_error(), reply.error.reason
        check_reply(reply, spec_for(manifest, _kind(msg)))  # raises on anything undeclared
    docs = (Path(__file__).resolve().parents[3] / "docs" / "privacy.md").read_text()
    for release in manifest.releases:  # docs/privacy.md lists every release of every task
        assert f"| {release.reply} | {release.record}:" in docs, (task, release.reply, release.record)
    for release in manifest.private():  # each partner made each DP release exactly as often as declared
        # a reply made the release when it carries all its fields, or (a propensity evaluation withheld on its
        # noisy count) only its `suppressed` flag: charged and made all the same
        made = Counter(m.metadata.dst_node_id for m, r in pairs if _kind(m) == release.reply
                       and release.record in r.content
                       and (set(release.fields) <= set(r.content[release.record])
                            or set(release.fields) & set(r.content[release.record]) == {"suppressed"}))
        assert sorted(made.values()) == [release.count] * len(PARTNER_NAMES), release.what
    # the coordinator charged each partner the composed cost of the manifest's DP releases, and so did the
    # partner's own gate (epsilon at the job's delta plus its thresholding deltas, which every ledger records)
    delta = job_delta(run.session.plan, run.session.options)
    expected = stated_epsilon(manifest.events(), delta) if manifest.events() else 0.0
    assert run.summary["privacy"]["epsilon_charged"] == pytest.approx(expected, rel=1e-6)
    coordinator = PrivacyLedger(f"sqlite:///{out / 'ledger.db'}")
    own = PrivacyLedger(f"sqlite:///{out / 'partners.db'}")
    for partner in PARTNER_NAMES:
        if not expected:
            assert partner not in coordinator.partners()  # nothing charged, no phantom budget
            continue
        assert coordinator.status(partner).epsilon_spent == pytest.approx(expected, rel=1e-6)
        spent_own = stated_epsilon(own.job_events(partner, run.session.job.job_id), delta)
        assert spent_own == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("task", TASKS)
def test_opted_out_and_erased_customers_reach_no_task(task, federation, runs):
    """Every table a task's handlers were given and every engine scan's result: tokens of kept customers only."""
    _, _, handed = runs[task]
    assert set(handed) == set(PARTNER_NAMES)
    for partner in PARTNER_NAMES:
        view = PartnerView(federation.folder(partner), "analytics")
        from fedinsight.privacy.tokenize import Tokenizer

        tokenizer = Tokenizer(view.policy.tokenization_ring())
        excluded = {tokenizer.token(c) for c in federation.excluded[partner]}
        kept = {tokenizer.token(c) for c in raw_frames(federation, partner)["customers"]["customer_id"]} - excluded
        assert handed[partner] and handed[partner] <= kept, partner  # tokens only, none of the excluded
        assert not handed[partner] & excluded
        if task in ("insights", "propensity"):  # these read through the engine: its scans were checked too
            assert runs.scanned[task].get(partner, 0) >= 1, partner
            assert runs.scanned[task][partner] <= len(kept), partner  # numbered customers: the kept ones at most


def test_scores_and_recommendations_leave_out_opted_out_and_erased_customers(federation, runs):
    from fedinsight.models.propensity import ModelBundle
    from fedinsight.partner.side import open_partner
    from fedinsight.tasks.propensity.scoring import score_partner
    from fedinsight.tasks.recommend.serving import recommend_items

    _, propensity_out, _ = runs["propensity"]
    _, recommend_out, _ = runs["recommend"]
    bundle = ModelBundle.load(propensity_out / "model.pt")
    for partner in PARTNER_NAMES:
        scores = score_partner(bundle, open_partner(federation.folder(partner), "training"), "2025-07-01")
        ids = set(scores["customer_id"])
        assert len(ids) > 50 and not ids & set(federation.excluded[partner])
        assert all(i.startswith("member-") for i in ids)  # the partner's own ids again, on the partner
        side = open_partner(federation.folder(partner), "recommendation")
        for customer in federation.excluded[partner]:
            with pytest.raises(UnknownCustomerError, match="consent to recommendations .or it was erased"):
                recommend_items(recommend_out / "model", side, customer)


def _started_like_partner_start(folder, partner_id: str, state, certs) -> dict[str, object]:  # noqa: ANN001
    """The node config `fedinsight partner start` gives its SuperNode, parsed as Flower parses it."""
    from flwr.common.config import parse_config_args

    from fedinsight.partner.config import load_partner_config
    from fedinsight.partner.process import node_config

    toml = state / f"{partner_id}.toml"
    toml.write_text(f'[partner]\nid = "{partner_id}"\ndata-path = "{folder}"\nstate-dir = "{state / partner_id}"\n'
                    f'epsilon = 0.5\n\n[superlink]\naddress = "127.0.0.1:9"\nca-cert = "{certs}/ca.crt"\n'
                    f'private-key = "{certs}/partners/{partner_id}.key"\n')
    return parse_config_args([node_config(load_partner_config(toml, check_files=False))])


@pytest.mark.parametrize("task", SPENDING)
def test_a_partner_started_by_partner_start_refuses_past_its_own_cap(task, federation, tmp_path):
    ids = [f"p{k}" for k in range(len(PARTNER_NAMES))]
    nodes = [_started_like_partner_start(federation.folder(p), pid, tmp_path, tmp_path / "certs")
             for p, pid in zip(PARTNER_NAMES, ids, strict=True)]
    assert all(n["epsilon"] == 0.5 and n["require-dp"] is True for n in nodes)
    # the coordinator asks for more than 0.5 (its own ledger would allow 20): every partner refuses
    more = {"propensity": {"epsilon": 2.0}, "insights": {"epsilon": 2.0}, "recommend": {"epsilon": 2.0},
            "secure_training": {"noise-multiplier": 0.7}, "segments": {"epsilon": 2.0},
            "baskets": {"epsilon": 2.0}, "uplift": {"epsilon": 2.0}}[task]
    with pytest.raises(BudgetExceededError):
        run_in_process(task, federation, tmp_path / "out", node_config=lambda k: nodes[k], **more)
    for pid in ids:  # and the partners' own ledgers stayed within their caps
        own = PrivacyLedger(str(nodes[ids.index(pid)]["ledger-url"]))
        if pid in own.partners():
            assert own.status(pid).epsilon_spent <= 0.5 + 1e-9


MARKERS = ("Quibblewick", "planted.example", "+86 139 ", "-7f3a9c")
"""Every planted identifier value contains one of these (names, e-mails, phones, the partners' raw customer
ids): a run folder holding none of them holds none of the values."""


@pytest.mark.slow
def test_simulations_use_the_folders_in_place_and_their_run_folders_hold_no_identifier(federation, own_simulations):
    assert all(any(m in value for m in MARKERS) for value in federation.identifiers)
    before = sorted(p.relative_to(federation.root) for p in federation.root.rglob("*.csv"))
    folders = []
    for task in TASKS:  # each simulated on Flower's runtime once per session (support/federations.OwnSimulations)
        run = own_simulations[task]
        assert run.summary["partner_ids"] == sorted(PARTNER_NAMES)  # the folders' own names
        assert not (run.out_dir / "partners").exists()  # nothing of the partners was copied
        folders.append(run.out_dir)
    assert sorted(p.relative_to(federation.root) for p in federation.root.rglob("*.csv")) == before
    files = [p for folder in folders for p in folder.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"summary.json", "report.html", "ledger.db", "model.pt", "insights.json"}
    for path in files:
        blob = path.read_bytes()
        found = [m for m in MARKERS if m.encode() in blob]
        assert not found, f"{path} holds an identifier ({found})"
