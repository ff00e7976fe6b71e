"""Run reports: one self-contained HTML page per simulation or job (``RUN/report.html``).

``write_report(run_dir)`` reads what a run wrote (``summary.json``, ``insights.json``), the privacy
ledger it charged, and renders learning curves, model quality against the baselines, the insights
with their intervals and suppressions, each partner's budget, the configuration and the command that
reproduces the run. ``fedinsight report DIR`` calls it, so do ``simulate`` and ``job run`` at their end,
and the coordinator's API serves it for stored jobs.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fedinsight.core.errors import ReportError
from fedinsight.core.files import atomic_output_file
from fedinsight.core.redact import redact_secrets
from fedinsight.core.version import __version__
from fedinsight.report.page import Section, currency_code, esc, fmt, key_values, money_label, page, table

REPORT_NAME = "report.html"
_RENDER_LOCK = threading.Lock()


def _read_json(path: Path) -> dict[str, Any]:
    data = _load_json(path)
    if not isinstance(data, dict):
        raise ReportError(f"{path} should hold a JSON object, found {type(data).__name__}")
    return data


def _load_json(path: Path) -> Any:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path} is not valid JSON (line {exc.lineno}: {exc.msg}); "
                          "re-run the job that wrote it") from None
    except OSError as exc:
        raise ReportError(f"cannot read {path}: {exc.strerror}") from exc
    return data


def load_run(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """``(summary, insights document or None)`` of a run folder, or a ReportError saying what is missing."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f"run folder {run_dir} does not exist (give the --out folder of a simulate or job run)")
    summary_path, insights_path = run_dir / "summary.json", run_dir / "insights.json"
    if not summary_path.is_file():
        raise ReportError(f"{run_dir} has no summary.json: it is not a finished fedinsight run")
    summary = _read_json(summary_path)
    insights = _read_json(insights_path) if insights_path.is_file() else None
    meta = _run_meta(run_dir)
    if meta.get("command") and not summary.get("command"):
        summary["command"] = meta["command"]
    return summary, insights


RUN_META = "run.json"


def record_command(run_dir: Path, command: str) -> None:
    """Write ``run_dir/run.json`` with the command that produced the run (the report's "reproduce" box)."""
    meta = {"command": redact_secrets(command), "fedinsight": __version__,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds")}
    with atomic_output_file(Path(run_dir) / RUN_META) as tmp:
        tmp.write_text(json.dumps(meta, indent=2), encoding="utf-8")


def _run_meta(run_dir: Path) -> dict[str, Any]:
    path = run_dir / RUN_META
    return _read_json(path) if path.is_file() else {}


def task_of(summary: dict[str, Any], insights: dict[str, Any] | None) -> str:
    if summary.get("task"):
        return str(summary["task"])
    return "insights" if insights is not None or "batch_id" in summary else "run"


Sections = Callable[[dict[str, Any], Path], tuple[list[str], list[Section]]]
"""A task's report sections: ``(summary, run folder) -> (headline cards, sections)``."""


def render_report(run_dir: Path, sections: Sections, *, ledger_url: str | None = None, title: str | None = None,
                  partner_budgets: bool = True) -> str:
    """The report page of ``run_dir`` as an HTML string; ``sections`` are the task's own (its contract's
    ``report_sections``); a task with none gets the generic results section.

    ``partner_budgets=False`` leaves out each partner's budget and remaining ε (the API's view for an analyst,
    who may see only the federation's tightest remaining budget, as ``GET /budget`` does).
    """
    with _RENDER_LOCK:  # pyplot's state is global: one render at a time (the API renders in worker threads)
        return _render(Path(run_dir), sections, ledger_url=ledger_url, title=title, partner_budgets=partner_budgets)


def _render(run_dir: Path, task_sections: Sections, *, ledger_url: str | None, title: str | None,
            partner_budgets: bool) -> str:
    from fedinsight.report.privacy import job_id_of, ledger_url_for, privacy_section, read_ledger

    summary, insights = load_run(run_dir)
    task = task_of(summary, insights)
    cards, found = task_sections(summary, run_dir)
    sections: list[Section] = list(found) or [_generic_section(summary)]

    url = ledger_url_for(run_dir, summary, ledger_url)
    spends = None
    if url is not None:
        try:
            spends = read_ledger(url)
        except Exception as exc:  # noqa: BLE001 - an unreadable ledger must not cost the rest of the report
            sections.append(_note_section("privacy-ledger", "Ledger not readable",
                                          f"{type(exc).__name__}: {exc}"))
    privacy_cards, privacy = privacy_section(summary, spends, url, partner_budgets=partner_budgets)
    overview = Section("overview", "At a glance")
    overview.add('<div class="cards">' + "".join(cards + privacy_cards) + "</div>")
    sections = [overview, *sections, privacy, _config_section(summary, insights, run_dir)]
    job = job_id_of(summary) or run_dir.name
    created = summary.get("created") or (insights or {}).get("created_at") or _mtime(run_dir)
    money = currency_code(summary)
    subtitle = " · ".join(str(x) for x in (f"job {job}", summary.get("dataset") and f"dataset {summary['dataset']}",
                                           _partners(summary, insights), money and f"amounts in {money}",
                                           f"written {created}") if x)
    return page(title or f"fedinsight {task} report", subtitle, sections)


def write_report(run_dir: Path, sections: Sections, *, ledger_url: str | None = None) -> Path:
    """Render and write ``run_dir/report.html`` atomically; returns its path."""
    html = render_report(run_dir, sections, ledger_url=ledger_url)
    target = Path(run_dir) / REPORT_NAME
    with atomic_output_file(target) as tmp:
        tmp.write_text(html, encoding="utf-8")
    return target


def _partners(summary: dict[str, Any], insights: dict[str, Any] | None) -> str | None:
    n = summary.get("partners") or (insights or {}).get("partners")
    return f"{n} partners" if n else None


def _mtime(run_dir: Path) -> str:
    return datetime.fromtimestamp(run_dir.stat().st_mtime, UTC).isoformat(timespec="seconds")


def _note_section(sid: str, title: str, text: str) -> Section:
    s = Section(sid, title)
    s.add(f'<p class="note">{esc(text)}</p>')
    return s


def _flat(node: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(node, dict):
        out: list[tuple[str, Any]] = []
        for k, v in node.items():
            out += _flat(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    if isinstance(node, list):
        return [(prefix, f"[{len(node)} values]")] if node and not all(isinstance(x, int | float | str)
                                                                          for x in node) else [(prefix, node)]
    return [(prefix, node)]


def _generic_section(summary: dict[str, Any]) -> Section:
    """Tasks without a layout of their own (secure training, preflight): their numbers, and lists of records
    as tables."""
    s = Section("results", "Results")
    body = {k: v for k, v in summary.items() if k not in ("settings", "config", "privacy", "command", "task",
                                                         "messages", "artifacts", "currency")}
    records = {k: v for k, v in body.items() if isinstance(v, list) and v and all(isinstance(x, dict) for x in v)}
    pairs = [(k, _short_list(v) if isinstance(v, list) else v)
             for k, v in _flat({k: v for k, v in body.items() if k not in records})]
    if pairs:
        s.add(key_values(pairs))
    for name, rows in records.items():
        columns = list(dict.fromkeys(c for r in rows for c in r))
        s.add(f"<h3>{esc(name)}</h3>" + table(columns, [[_cell(r.get(c)) for c in columns] for r in rows]))
    if not pairs and not records:
        s.add('<p class="note">This run recorded no results.</p>')
    return s


def _config_section(summary: dict[str, Any], insights: dict[str, Any] | None, run_dir: Path) -> Section:
    s = Section("config", "Configuration and how to reproduce")
    command = summary.get("command")
    if command:
        s.add("<h3>Command</h3><pre>" + esc(redact_secrets(str(command))) + "</pre>")
        s.add('<p class="note">DP noise is never seeded, so a re-run reproduces the data, split and model '
              "initialisation exactly and the private results up to fresh noise (within the intervals shown).</p>")
    else:
        s.add('<p class="note">The exact command was not recorded (a run written through the Python API or by an '
              "older fedinsight); the settings below are complete.</p>")
    settings = summary.get("settings") or summary.get("config") or {}
    if not settings and insights is not None:
        settings = {k: insights.get(k) for k in ("batch_id", "requester", "epsilon", "delta", "mechanism",
                                                 "min_group_size", "suppression_margin_sd", "partners")}
    if settings:
        s.add("<h3>Settings</h3>" + key_values((k, _cell(v)) for k, v in settings.items()))
    s.add(_currency_block(summary))
    files = sorted(p.name for p in run_dir.iterdir() if p.name not in (REPORT_NAME, RUN_META))
    s.add('<p class="note">Files in the run folder: ' + esc(", ".join(files)) + "</p>")
    return s


def _currency_block(summary: dict[str, Any]) -> str:
    """The job's reporting currency and rate table (public configuration), and each partner's declared currency."""
    record = summary.get("currency")
    if not isinstance(record, dict):
        return ""
    code = record.get("reporting")
    if not code:
        held = f" ({esc(record['amounts_in'])})" if record.get("amounts_in") else ""
        return f'<h3>Money</h3><p class="note">No rate table: amounts are as the partners hold them{held}.</p>'
    rates = record.get("rates") or {}
    rows = [[other, fmt(rate, 6), f"1 {other} = {fmt(rate, 6)} {code}"] for other, rate in rates.items()]
    out = (f'<h3>Money</h3><p class="note">Every amount (order values, prices, spend, LTV) was converted on each '
           f"partner to the reporting currency <b>{esc(code)}</b> with the job's declared rate table, before any "
           "task read it.</p>")
    out += table(["currency", money_label(summary, "rate"), "meaning"], rows) if rows else \
        f'<p class="note">No other currency in the table: every partner holds {esc(code)}.</p>'
    partners = record.get("partners")
    if isinstance(partners, dict) and partners:
        out += table(["partner", "declared currency"], [[name, value] for name, value in partners.items()])
    return out


def _short_list(values: list[Any], limit: int = 12) -> str:
    text = ", ".join(fmt(x) for x in values[:limit])
    return text + (f" … ({len(values)} values)" if len(values) > limit else "")


def _cell(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict | list):
        return redact_secrets(json.dumps(value)[:200])
    return redact_secrets(value) if isinstance(value, str) else value


__all__ = ["REPORT_NAME", "RUN_META", "currency_code", "load_run", "money_label", "record_command", "render_report",
           "write_report"]
