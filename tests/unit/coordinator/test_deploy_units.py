"""Deployment pieces without processes: certificates, configs, restart semantics, job apps, partner checks, CLI."""

from __future__ import annotations

import json
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509

from fedinsight.cli import main
from fedinsight.core.errors import ConfigError, DataValidationError, DeploymentError
from fedinsight.federation.certs import certificate_hosts, init_certs, load_private_key, load_public_key


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("deploy") / "certs"
    init_certs(out, hosts=["coord.example.com", "127.0.0.1"], partners=["retail", "bank"])
    return out


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_certs_private_keys_are_0600_and_formats_are_what_flower_reads(certs):
    from flwr.cli.supernode.register import try_load_public_key

    for key in ("ca.key", "coordinator.key", "partners/retail.key", "partners/bank.key"):
        assert _mode(certs / key) == 0o600, key
    assert _mode(certs / "ca.crt") == 0o644
    cert = x509.load_pem_x509_certificate((certs / "coordinator.crt").read_bytes())
    assert certificate_hosts(cert) == ["coord.example.com", "127.0.0.1"]
    ca = x509.load_pem_x509_certificate((certs / "ca.crt").read_bytes())
    cert.verify_directly_issued_by(ca)
    # Python's TLS stack accepts the chain for the SAN host name (what uvicorn/httpx/gRPC clients check).
    ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    ctx.load_verify_locations(cafile=str(certs / "ca.crt"))
    assert (certs / "partners" / "retail.pub").read_text().startswith("ecdsa-sha2-nistp384 ")
    assert len(try_load_public_key(certs / "partners" / "retail.pub")) > 0  # flwr supernode register's loader
    assert load_private_key(certs / "partners" / "retail.key").curve.name == "secp384r1"
    assert load_public_key(certs / "partners" / "bank.pub").curve.name == "secp384r1"


def test_certs_refuse_to_overwrite_and_bad_ids(certs, tmp_path):
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        init_certs(certs, hosts=["localhost"], partners=["retail"])
    with pytest.raises(ConfigError, match="not valid"):
        init_certs(tmp_path / "x", hosts=["localhost"], partners=["../evil"])
    with pytest.raises(ConfigError, match="neither an IP"):
        init_certs(tmp_path / "y", hosts=["bad host"], partners=[])
    key = tmp_path / "loose.key"
    key.write_bytes((certs / "partners" / "bank.key").read_bytes())
    key.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_private_key(key)


def _coordinator_toml(folder: Path, certs: Path, **extra: str) -> Path:
    body = (f'[coordinator]\nfederation = "marketing"\nstate-dir = "state"\n{extra.get("coordinator", "")}\n'
            f'[superlink]\nport = 9092\n{extra.get("superlink", "")}\n'
            f'[tls]\nca-cert = "{certs}/ca.crt"\ncert = "{certs}/coordinator.crt"\nkey = "{certs}/coordinator.key"\n\n'
            f'[api]\nport = 8443\n\n'
            f'[[partners]]\nid = "retail"\npublic-key = "{certs}/partners/retail.pub"\nepsilon = 5.0\n\n'
            f'[[partners]]\nid = "bank"\npublic-key = "{certs}/partners/bank.pub"\nepsilon = 3.0\n')
    path = folder / "coordinator.toml"
    path.write_text(body)
    return path


def test_coordinator_config_valid_and_relative_paths(certs, tmp_path):
    from fedinsight.coordinator.config import load_coordinator_config

    cfg = load_coordinator_config(_coordinator_toml(tmp_path, certs))
    assert cfg.state_dir == (tmp_path / "state").resolve()
    assert cfg.database_url.endswith("state/fedinsight.db") and cfg.flwr_home == cfg.state_dir / "flwr"
    assert [p.id for p in cfg.partners] == ["retail", "bank"] and cfg.api_url == "https://127.0.0.1:8443"


@pytest.mark.parametrize("extra,message", [
    ({"coordinator": "federaton = 'x'"}, "coordinator.federaton: unknown key"),
    ({"superlink": "host = 'no such host'"}, "superlink.host: .*not a host name"),
    ({"superlink": "public-address = 'other.example.com:9092'"}, "not valid for 'other.example.com'"),
])
def test_coordinator_config_errors_say_what_to_fix(certs, tmp_path, extra, message):
    from fedinsight.coordinator.config import load_coordinator_config

    with pytest.raises(ConfigError, match=message):
        load_coordinator_config(_coordinator_toml(tmp_path, certs, **extra))


def test_coordinator_config_missing_file_and_bad_toml(tmp_path):
    from fedinsight.coordinator.config import load_coordinator_config

    with pytest.raises(ConfigError, match="does not exist"):
        load_coordinator_config(tmp_path / "nope.toml")
    (tmp_path / "bad.toml").write_text("[coordinator\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_coordinator_config(tmp_path / "bad.toml")
    (tmp_path / "empty.toml").write_text("")
    with pytest.raises(ConfigError, match="tls: required key is missing"):
        load_coordinator_config(tmp_path / "empty.toml")


def test_restart_keeps_spent_budget_records_changes_and_fails_interrupted_jobs(certs, tmp_path):
    from fedinsight.coordinator.config import load_coordinator_config
    from fedinsight.coordinator.process import apply_budgets, fail_interrupted_jobs
    from fedinsight.coordinator.state import CoordinatorState
    from fedinsight.privacy.ledger import dpsgd_event

    cfg = load_coordinator_config(_coordinator_toml(tmp_path, certs))
    state = CoordinatorState.from_config(cfg)
    assert apply_budgets(cfg, state) == {"retail": "created", "bank": "created"}
    state.ledger.charge(["retail", "bank"], dpsgd_event(1.0, 0.05, 10), job_id="job-a", kind="training")
    running = state.jobs.create(task="secagg", federation="marketing", run_config={}, requester="operator")
    state.jobs.mark(running.id, "running")
    spent = state.ledger.status("retail").epsilon_spent

    # "restart": a fresh process opens the same database
    cfg2 = load_coordinator_config(_coordinator_toml(tmp_path, certs).parent / "coordinator.toml")
    state2 = CoordinatorState.from_config(cfg2)
    assert apply_budgets(cfg2, state2) == {"retail": "unchanged", "bank": "unchanged"}
    assert spent > 0 and state2.ledger.status("retail").epsilon_spent == pytest.approx(spent)
    assert fail_interrupted_jobs(state2) == [running.id]
    failed = state2.jobs.get(running.id)
    assert failed.status == "failed" and "stopped while this job was running" in failed.error
    assert [e.action for e in state2.audit.entries()][-1] == "job.finish"

    body = (tmp_path / "coordinator.toml").read_text().replace("epsilon = 5.0", "epsilon = 6.0")
    (tmp_path / "coordinator.toml").write_text(body)
    cfg3 = load_coordinator_config(tmp_path / "coordinator.toml")
    assert apply_budgets(cfg3, state2)["retail"] == "changed"
    after = state2.ledger.status("retail")
    assert after.epsilon_budget == 6.0 and after.epsilon_spent == pytest.approx(spent)  # spend never reset
    assert state2.audit.verify().ok


def test_job_app_builds_a_code_free_fab_and_options_parse(tmp_path):
    import zipfile
    from io import BytesIO

    from flwr.cli.build import build_fab_from_disk

    from fedinsight.coordinator.jobs import parse_options, write_job_app

    opts = parse_options(["num-server-rounds=2", "sample-rate=0.1", "cutoff=2025-06-30", "flag=true"])
    assert opts == {"num-server-rounds": 2, "sample-rate": 0.1, "cutoff": "2025-06-30", "flag": True}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_options(["oops"])
    app = write_job_app(tmp_path / "app", {"task": "secagg", "job-id": "job-1", **opts})
    fab = zipfile.ZipFile(BytesIO(build_fab_from_disk(app)))
    assert not [n for n in fab.namelist() if n.endswith(".py")]  # partners run their own installed code
    import tomllib

    config = tomllib.loads(fab.read("pyproject.toml").decode())["tool"]["flwr"]["app"]
    assert config["components"]["clientapp"] == "fedinsight.partner.clientapp:app"
    assert config["config"]["job-id"] == "job-1" and config["config"]["num-server-rounds"] == 2


def test_submit_refuses_unknown_task_and_wrong_federation(certs, tmp_path):
    from fedinsight.coordinator.config import load_coordinator_config
    from fedinsight.coordinator.jobs import submit_job
    from fedinsight.coordinator.state import CoordinatorState

    cfg = load_coordinator_config(_coordinator_toml(tmp_path, certs))
    state = CoordinatorState.from_config(cfg)
    with pytest.raises(ConfigError, match="serves federation 'marketing'"):
        submit_job(cfg, state, "secagg", federation="other")
    with pytest.raises(ConfigError, match="unknown task 'teleport'"):
        submit_job(cfg, state, "teleport", federation="marketing")
    with pytest.raises(ConfigError, match="cannot set job-id"):
        submit_job(cfg, state, "secagg", federation="marketing", options={"job-id": "x"})
    assert state.jobs.list() == []


def test_partner_refuses_invalid_data_before_joining(certs, tmp_path):
    from fedinsight.partner.config import load_partner_config
    from fedinsight.partner.process import node_config, run_partner

    data = tmp_path / "data"
    data.mkdir()
    (data / "transactions.csv").write_text("customer_id,timestamp,amount,quantity\nc1,not-a-date,-5,1\n")
    toml = tmp_path / "partner.toml"
    toml.write_text(f'[partner]\nid = "retail"\ndata-path = "data"\n\n[superlink]\naddress = "127.0.0.1:9"\n'
                    f'ca-cert = "{certs}/ca.crt"\nprivate-key = "{certs}/partners/retail.key"\n')
    with pytest.raises(DataValidationError, match="transactions.csv"):
        run_partner(toml, say=lambda m: None)
    assert not (tmp_path / "state" / "partner.pid").exists()  # refused before anything started
    node = node_config(load_partner_config(toml))
    assert 'partner-id="retail"' in node and "epsilon=10.0" in node and "ledger-url=" in node
    assert "require-dp=true" in node and "local-" not in node  # one spelling per key


def test_pid_file_refuses_a_second_instance(tmp_path):
    import os
    import subprocess
    import sys

    from fedinsight.core.procs import PidFile, stop_by_pid_file

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "x.pid").write_text(f"{other.pid}\n")
        with pytest.raises(DeploymentError, match="already running"):
            PidFile(tmp_path / "x.pid", "coordinator").acquire()
        assert stop_by_pid_file(tmp_path / "x.pid", "coordinator", timeout=10) == other.pid
        other.wait(timeout=10)
        pid = PidFile(tmp_path / "x.pid", "coordinator")
        pid.acquire()
        assert pid.read() == os.getpid()
        pid.release()
        assert not (tmp_path / "x.pid").exists()
    finally:
        if other.poll() is None:
            other.kill()


def test_cli_certs_tokens_and_audit_verify(tmp_path, capsys, certs):
    assert main(["certs", "init", "--out", str(tmp_path / "c"), "--partner", "p1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["partners"]["p1"]["public_key"].endswith("p1.pub")
    assert main(["certs", "init", "--out", str(tmp_path / "c"), "--partner", "p1"]) == 2  # no silent overwrite
    assert "refusing to overwrite" in capsys.readouterr().err

    cfg = str(_coordinator_toml(tmp_path, certs))
    assert main(["tokens", "create", "ana", "--role", "analyst", "--config", cfg, "--json"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["token"].startswith("fit_") and created["role"] == "analyst"
    assert main(["tokens", "create", "x", "--role", "root", "--config", cfg]) == 2
    assert "unknown role" in capsys.readouterr().err
    assert main(["tokens", "revoke", created["id"], "--config", cfg, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["revoked_at"] is not None
    assert main(["audit", "verify", "--config", cfg, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["entries"] == 2

    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{tmp_path / 'state' / 'fedinsight.db'}")
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET actor = 'nobody' WHERE seq = 1"))
    assert main(["audit", "verify", "--config", cfg]) == 6
    assert "entry 1: contents do not match" in capsys.readouterr().err


def test_cli_coordinator_refuses_invalid_config(tmp_path, capsys):
    (tmp_path / "c.toml").write_text('[coordinator]\nfederation = "bad name"\n')
    assert main(["coordinator", "start", "--config", str(tmp_path / "c.toml")]) == 2
    err = capsys.readouterr().err
    assert "coordinator.federation" in err and "Traceback" not in err


def test_cli_simulate_secure_training_refuses_fewer_than_three_partners(tmp_path, capsys):
    for name in ("retail", "bank"):  # any folder names
        (tmp_path / "data" / name).mkdir(parents=True)
        (tmp_path / "data" / name / "transactions.csv").write_text("customer_id,timestamp,amount\nc1,2025-01-01,3\n")
    for command in ("secure-training", "secagg"):  # the old name still works
        code = main(["simulate", command, "--dataset", str(tmp_path / "data"), "--out", str(tmp_path / "out")])
        assert code == 2
        assert "at least 3 partners" in capsys.readouterr().err
        assert not (tmp_path / "out").exists()  # refused before anything was written


def test_a_deployed_job_s_rate_table_is_checked_and_travels_canonically(certs, tmp_path, monkeypatch):
    import tomllib

    import fedinsight.coordinator.jobs as jobs
    from fedinsight.coordinator.config import load_coordinator_config
    from fedinsight.coordinator.state import CoordinatorState

    cfg = load_coordinator_config(_coordinator_toml(tmp_path, certs))
    state = CoordinatorState.from_config(cfg)
    with pytest.raises(ConfigError, match="--rates: the rate of CNY must be a positive number"):
        jobs.submit_job(cfg, state, "insights", federation="marketing",
                        options={"currency": "USD", "rates": "CNY=zero", "as-of": "2026-01-01"})
    assert state.jobs.list() == []  # refused before anything was recorded
    apps: list[str] = []
    monkeypatch.setattr(jobs, "flwr_json", lambda args, home: apps.append(args[1]) or {"run-id": 7})
    job = jobs.submit_job(cfg, state, "insights", federation="marketing",
                          options={"currency": "usd", "rates": "EUR = 1.08\nCNY = 0.138\n", "as-of": "2026-01-01"})
    config = tomllib.loads((Path(apps[0]) / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    assert config["currency"] == "USD" and config["rates"] == "CNY=0.138,EUR=1.08"
    assert job.run_config["rates"] == "CNY=0.138,EUR=1.08"
