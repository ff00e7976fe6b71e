"""A simulation on partners in different currencies: refused without a rate table, converted with one.

The refusals happen before the run folder exists (nothing written, nothing charged); an accepted table reaches
the run config in its canonical form, from the CLI (inline or a TOML file) and from the Python call alike.
"""

from __future__ import annotations

from typing import Any

import pytest
from support.exports import write_raw_federation

import fedinsight as fi
from fedinsight.cli import main
from fedinsight.partner.policy_init import init_partner
from fedinsight.simulation import run as driver


class Reached(Exception):
    """Raised in place of Flower's runtime: the simulation got as far as starting it."""


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw") / "exports"
    found = write_raw_federation(root, customers=60)
    for export in found.values():
        init_partner(export.folder)
    return root


@pytest.fixture
def started(monkeypatch):
    seen: dict[str, Any] = {}

    def fake_runtime(run_config: dict[str, Any], num_partners: int, **_: Any) -> None:
        seen.update(run_config)
        raise Reached

    monkeypatch.setattr(driver, "run_simulation", fake_runtime)
    return seen


def test_cny_and_usd_partners_without_a_table_are_refused(exports, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["simulate", "preflight", "--dataset", str(exports), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "different currencies" in err and "华东零售 (GB18030): CNY" in err and "us shop: USD" in err
    assert "--currency" in err and "--rates" in err and "Traceback" not in err
    assert not out.exists()


def test_a_task_that_adds_no_money_is_not_refused_for_mixed_currencies(exports, tmp_path, capsys):
    # baskets counts customers per category: CNY and USD partners need no rate table. These exports fail a later
    # check instead (the US shop maps no category), which is reached only once the currencies were accepted
    out = tmp_path / "run"
    assert main(["simulate", "baskets", "--dataset", str(exports), "--out", str(out)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "different currencies" not in err and "'us shop' has no purchase category" in err
    assert main(["simulate", "preflight", "--dataset", str(exports), "--out", str(out)]) == 2  # it does read money
    assert "different currencies" in capsys.readouterr().err


def test_a_currency_missing_from_the_table_is_refused_naming_it_and_the_flag(exports, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["simulate", "preflight", "--dataset", str(exports), "--out", str(out),
                 "--currency", "USD", "--rates", "EUR=1.08"])
    assert code == 2
    err = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert "in CNY" in err and "--rates CNY=<USD per CNY>" in err
    assert not out.exists()


def test_a_rates_file_reaches_the_run_config_canonically(exports, tmp_path, started):
    rates = tmp_path / "rates.toml"
    rates.write_text("# published 2026-01-01\n[rates]\ncny = 0.138\nEUR = 1.08\n", encoding="utf-8")
    with pytest.raises(Reached):
        main(["simulate", "preflight", "--dataset", str(exports), "--out", str(tmp_path / "run"),
              "--currency", "usd", "--rates", str(rates)])
    assert started["currency"] == "USD" and started["rates"] == "CNY=0.138,EUR=1.08"


def test_the_python_call_takes_a_dict_of_rates(exports, tmp_path, started):
    fed = fi.Federation.from_folder(exports)
    with pytest.raises(Reached):
        fed.simulate("preflight", out=tmp_path / "run", currency="CNY", rates={"USD": 7.2})
    assert started["currency"] == "CNY" and started["rates"] == "USD=7.2"
    with pytest.raises(fi.ConfigError, match="--rates needs --currency"):
        fed.simulate("preflight", out=tmp_path / "other", rates={"USD": 7.2})
    assert not (tmp_path / "other").exists()


SPEC = ('epsilon = 1.0\n[window]\nend = "2026-01-01"\n'
        '[[insight]]\nname = "seg"\nkind = "segment_profile"\nby = "rfm_segment"\n')


def test_insights_run_of_a_spec_takes_the_same_flags(exports, tmp_path, started, capsys):
    spec = tmp_path / "mine.toml"
    spec.write_text(SPEC, encoding="utf-8")
    base = ["insights", "run", str(spec), "--dataset", str(exports), "--out", str(tmp_path / "run"), "--yes"]
    assert main(base) == 2
    assert "different currencies" in capsys.readouterr().err and not (tmp_path / "run").exists()
    with pytest.raises(Reached):
        main([*base, "--currency", "USD", "--rates", "CNY=0.138"])
    assert started["currency"] == "USD" and started["rates"] == "CNY=0.138"
