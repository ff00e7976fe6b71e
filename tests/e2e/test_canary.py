"""Canary leak test: the scanner sees through every encoding, and nothing planted leaves a partner."""

from __future__ import annotations

import gzip
import importlib.util
import io
import random
import shutil
import sqlite3
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity

from fedinsight.data.synth import SynthConfig, write_synthetic
from fedinsight.federation.capture import CapturingGrid
from fedinsight.partner.policy import find_policy
from fedinsight.partner.policy_init import init_partner
from fedinsight.partner.protection import load_protected
from fedinsight.partner.vault import PartnerVault
from fedinsight.privacy.canary import CanaryScanner, make_canary_customers, plant_canaries
from fedinsight.privacy.encryption import write_encrypted
from fedinsight.privacy.keys import generate_keyring

ROOT = Path(__file__).resolve().parents[2]


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("canary_benchmark", ROOT / "benchmarks" / "canary.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def customers():
    return make_canary_customers(6, random.Random(7))


@pytest.fixture
def scanner(customers):
    return CanaryScanner([c for x in customers for c in x.canaries()])


def test_canaries_look_like_the_identifiers_they_stand_for(customers):
    from fedinsight.privacy.pii import kind_from_values

    for column in ("phone", "email", "name"):
        found = kind_from_values(pd.Series([getattr(c, column) for c in customers]))
        assert found is not None and found[0] == column
    assert any(c.customer_id.isdigit() for c in customers) and any(not c.customer_id.isdigit() for c in customers)


def test_scanner_finds_canaries_in_every_encoding(tmp_path, customers, scanner):
    phone, name, numeric_id = customers[0].phone, customers[2].name, customers[1].customer_id
    assert numeric_id.isdigit()
    blobs = {
        "text": f"log line: customer {customers[0].email} opened".encode(),
        "utf16": name.upper().encode("utf-16-le"),
        "digits": ("tel:" + "".join(ch for ch in phone if ch.isdigit())).encode(),
        "int64": b"\x00" * 3 + struct.pack("<q", int(numeric_id)) + b"\x01",
        "gzip": gzip.compress(name.encode() * 3),
    }
    for label, blob in blobs.items():
        assert scanner.scan_bytes(blob, label), label
    frame = pd.DataFrame({"x": [name] * 200 + [f"other {i}" for i in range(2_000)]})
    frame.to_parquet(tmp_path / "t.parquet", compression="zstd")
    assert scanner.scan_file(tmp_path / "t.parquet")
    with sqlite3.connect(tmp_path / "d.db") as con:
        con.execute("CREATE TABLE t (v TEXT)")
        con.execute("INSERT INTO t VALUES (?)", (phone,))
    assert scanner.scan_file(tmp_path / "d.db")
    buffer = io.BytesIO()
    np.savez_compressed(buffer, ids=np.array([int(numeric_id)] * 50, dtype=np.int64))
    assert scanner.scan_bytes(buffer.getvalue(), "npz")
    assert scanner.report()["canaries_found"] == 4  # the e-mail, the name, the phone and the numeric id


def test_scanner_decrypts_partner_artifacts_and_has_no_false_positives(tmp_path, customers, scanner):
    ring = generate_keyring(tmp_path / "enc.key", "encryption")
    path = write_encrypted(tmp_path / "features.enc", customers[3].email.encode(), ring, context="features")
    assert not scanner.scan_file(path)  # encryption hides it from a plain byte search ...
    with_key = CanaryScanner(scanner.canaries, [ring])
    assert with_key.scan_file(path)  # ... and the audit opens it with the partner's key
    assert not scanner.scan_bytes(np.random.default_rng(0).bytes(2_000_000), "noise")


def test_capturing_grid_records_both_directions_in_wire_format(monkeypatch, customers, scanner):
    monkeypatch.setattr(TaskIdentity, "_run_id", 1)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)
    monkeypatch.setattr(TaskIdentity, "_node_id", 0)

    class EchoGrid(Grid):  # a stand-in Grid whose partners answer with what they were sent
        run = None

        def set_run(self, run): ...
        def create_message(self, *a, **k): ...
        def get_node_ids(self): return [1, 2]
        def push_messages(self, messages): return []
        def pull_messages(self, message_ids): return []

        def send_and_receive(self, messages, *, timeout=None):
            return [Message(RecordDict({"echo": ConfigRecord({"v": str(m.content["q"]["v"])})}), reply_to=m)
                    for m in messages]

    recorded = []
    grid = CapturingGrid(EchoGrid(), lambda direction, m: recorded.append((direction, m)))
    msgs = [Message(RecordDict({"q": ConfigRecord({"v": customers[4].name})}), dst_node_id=n, message_type="query.x")
            for n in grid.get_node_ids()]
    assert len(list(grid.send_and_receive(msgs))) == 2
    assert [d for d, _ in recorded] == ["sent", "sent", "received", "received"]
    from fedinsight.federation.capture import message_bytes

    assert all(scanner.scan_bytes(message_bytes(m), d) for d, m in recorded)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("canary") / "data"
    write_synthetic(SynthConfig(customers=500, partners=1, seed=5, fmt="parquet"), root)
    return root / "partner-0", plant_canaries(root / "partner-0", 8, random.Random(11))


def test_a_leaky_policy_is_caught_and_the_default_one_is_not(tmp_path, planted):
    source, canary_customers = planted
    canaries = [c for x in canary_customers for c in x.canaries()]
    for policy_line, leaks in (('"customers.phone" = "keep"', True), (None, False)):
        folder = tmp_path / f"partner-{leaks}"
        shutil.copytree(source, folder)
        init_partner(folder)
        if policy_line:
            text = (folder / "protection.toml").read_text().replace('"customers.phone" = "drop"', policy_line)
            (folder / "protection.toml").write_text(text)
        protected = load_protected(folder)
        data = protected.for_purpose("analytics")
        assert len(set(data.customers["customer_id"])) >= len(canary_customers)  # canary customers are used
        PartnerVault(protected.policy).save_frame("customer-features", data.customers, kind="features")
        scanner = CanaryScanner(canaries, [find_policy(folder).encryption_ring()])
        scanner.scan_tree(folder / ".fedinsight")
        kinds = {h.kind for h in scanner.hits}
        assert kinds == ({"phone"} if leaks else set())


@pytest.mark.slow
def test_canary_audit_of_every_installed_job_finds_nothing(tmp_path):
    bench = _load_benchmark()
    assert "preflight" in bench.installed_tasks()
    # 3 partners: secure aggregation (the `secure_training` task) needs at least three.
    report = bench.run_canary_audit(tmp_path / "audit", customers=600, partners=3, per_partner=6, seed=1)
    assert report["canaries_planted"] == 3 * 6 * 4
    assert report["control_canaries_found_in_inputs"] == report["canaries_planted"]  # the scanner works
    assert report["canaries_found"] == 0, report["leaks"]
    assert report["payloads_scanned"] >= 4 and report["streams_scanned"] >= 20 and report["files_scanned"] >= 10
    assert all(v == "ok" for v in report["jobs"].values()), report["jobs"]
    assert bench.audit_passed(report)
