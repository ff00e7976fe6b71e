"""A database password given with ``--db`` reaches no file of the run, no line of output and no log record.

Flower's runtime is stubbed (it would need a PostgreSQL server to write to), and the stub's summary carries
the URL under a key no task uses, as a task that forgot ``safe_url`` would: the run's writers must redact it.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from fedinsight.cli import main
from fedinsight.core.redact import redact_secrets, redact_tree
from fedinsight.simulation import run as driver

SECRET = "Pw-7q%2Fz9"
DB = f"postgresql+psycopg://fedinsight:{SECRET}@127.0.0.1:1/ledger"
ROWS = "customer_id,timestamp,amount,quantity\n" + "".join(f"c{i},2024-01-0{1 + i % 9},{i + 1},1\n" for i in range(30))


def _summary(_context: Any) -> dict[str, Any]:
    rows = [{"partner": p, "status": "ok", "error": "", "policy": "", "dropped": [], "tokenized": []}
            for p in ("alpha", "beta")]
    return {"task": "preflight", "purpose": "analytics", "results": rows, "ok": True,
            "privacy": {"ledger_url": DB}, "notes": [f"ledger at {DB}"]}


def test_db_password_reaches_no_output(tmp_path, monkeypatch, capsys, caplog):
    for name in ("alpha", "beta"):
        (tmp_path / "partners" / name).mkdir(parents=True)
        (tmp_path / "partners" / name / "transactions.csv").write_text(ROWS, encoding="utf-8")
    monkeypatch.setattr(driver, "run_simulation", lambda *a, **k: object())
    monkeypatch.setattr(driver, "result_of", _summary)
    out = tmp_path / "run"
    caplog.set_level(logging.DEBUG)
    code = main(["simulate", "preflight", "--dataset", str(tmp_path / "partners"), "--out", str(out),
                 "--db", DB, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    written = sorted(p for p in out.rglob("*") if p.is_file())
    assert {p.name for p in written} >= {"summary.json", "run.json"}
    for path in written:
        assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in captured.out + captured.err
    assert SECRET not in caplog.text
    assert "fedinsight:***@127.0.0.1" in (out / "summary.json").read_text()  # redacted, not dropped


@pytest.mark.parametrize("url", [
    "postgresql://user:PW@host/db", "postgresql://:PW@host/db", "postgresql://user:P/W@host/db",
    "postgresql://user:P@W@host/db", "postgresql://user@host/db?password=PW&sslmode=require",
    "--db mysql+pymysql://u:PW@h:3306/x --out y",
])
def test_passwords_are_redacted(url):
    assert "PW" not in redact_secrets(url).replace("P/W", "PW").replace("P@W", "PW")
    assert "P/W" not in redact_secrets(url) and "P@W" not in redact_secrets(url)


def test_urls_without_passwords_are_kept():
    for url in ("sqlite:////tmp/ledger.db", "postgresql://user@host/db", "https://example.org/a@b"):
        assert redact_secrets(url) == url


def test_redact_tree_reaches_nested_values():
    tree = {"a": [{"b": DB}], "c": (DB, 1), "d": 2.5}
    assert SECRET not in repr(redact_tree(tree)) and redact_tree(tree)["d"] == 2.5
