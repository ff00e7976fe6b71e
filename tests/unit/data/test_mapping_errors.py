"""A mapping that does not fit: one clear error naming the mapping file and the key, exit code 2, nothing written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support.exports import CN_MAPPING, write_cn_export

from fedinsight.cli import main
from fedinsight.core.errors import MappingError
from fedinsight.data.federation import load_partner_folder


def _edit(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


CASES = {
    "missing source column": (lambda m: _edit(m, 'customer_id = "会员手机号"', 'customer_id = "会员手机"'),
                              "tables.transactions.columns.customer_id",
                              "'会员手机' is not a column of 订单明细_2024.csv, 订单明细_2025.csv"),
    "unknown table": (lambda m: _edit(m, "[tables.events]", "[tables.event]")
                      .replace("[tables.events.columns]", "[tables.event.columns]")
                      .replace("[tables.events.values.stage]", "[tables.event.values.stage]"),
                      "tables.event", "unknown table (did you mean 'events'?)"),
    "unknown canonical column": (lambda m: _edit(m, 'amount = "实付金额"', 'amount = "实付金额"\namt = "实付金额"'),
                                 "tables.transactions.columns.amt", "not a column of the canonical transactions"),
    "unknown time zone": (lambda m: _edit(m, '"Asia/Shanghai"', '"Asia/Shangai"'),
                          "timezone", "unknown time zone 'Asia/Shangai' (did you mean 'Asia/Shanghai'?)"),
    "unknown currency": (lambda m: _edit(m, '"CNY"', '"RMB"'), "currency",
                         "'RMB' is not an ISO 4217 currency code (did you mean 'CNY'?)"),
    "value map leaves values": (lambda m: _edit(m, '"转化" = "convert"\n', ""), "tables.events.values.stage",
                                "leaves 1 value(s) of column 事件类型 of 营销活动日志.csv unmapped"),
    "glob matches nothing": (lambda m: _edit(m, '"订单明细_*.csv"', '"订单明细_*.xlsx"'), "tables.transactions.files",
                             '"订单明细_*.xlsx" matches no file'),
    "unknown top-level key": (lambda m: _edit(m, "timezone =", "timezon ="), "timezon",
                              "unknown key (did you mean 'timezone'?)"),
    "bad stage in a value map": (lambda m: _edit(m, '"转化" = "convert"', '"转化" = "conversion"'),
                                 'tables.events.values.stage."转化"', '"conversion" is not a stage'),
}


def _snapshot(folder: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(folder)), p.stat().st_mtime_ns) for p in folder.rglob("*"))


@pytest.fixture
def export(tmp_path):
    return write_cn_export(tmp_path / "华东零售", customers=60)


@pytest.mark.parametrize("case", sorted(CASES))
def test_one_error_naming_the_mapping_file_and_key(export, capsys, case):
    edit, key, fragment = CASES[case]
    export.mapping_path.write_text(edit(export.mapping_path.read_text(encoding="utf-8")), encoding="utf-8")
    before = _snapshot(export.folder)
    with pytest.raises(MappingError) as info:
        load_partner_folder(export.folder)
    (problem,) = info.value.problems
    assert problem.file == str(export.mapping_path)
    assert f"key '{key}'" in problem.message and fragment in str(problem), str(problem)
    for command in (["data", "validate", str(export.folder)], ["partner", "check", "--data", str(export.folder)],
                    ["partner", "init", "--data", str(export.folder)]):
        assert main(command) == 2, command
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.startswith("error")]  # (a progress bar may precede it)
        assert len(lines) == 1 and "mapping.toml" in lines[0] and key in lines[0], err
        assert "Traceback" not in err
    assert _snapshot(export.folder) == before  # nothing written: no policy, no keys, no state folder


def test_value_map_gaps_show_the_values(export):
    text = export.mapping_path.read_text(encoding="utf-8")
    export.mapping_path.write_text(_edit(_edit(text, '"转化" = "convert"\n', ""), '"参与" = "participate"\n', ""),
                                   encoding="utf-8")
    with pytest.raises(MappingError) as info:
        load_partner_folder(export.folder)
    (problem,) = info.value.problems
    assert set(problem.values) == {"参与", "转化"} and "leaves 2 value(s)" in problem.message
    assert "转化" not in info.value.public_message


def test_a_file_in_another_encoding_names_the_file_and_the_key(export, capsys):
    (export.folder / "订单明细_2099.csv").write_bytes("订单编号,会员手机号\nA,1\n".encode("utf-16"))
    before = _snapshot(export.folder)
    with pytest.raises(MappingError) as info:
        load_partner_folder(export.folder)
    (problem,) = info.value.problems
    assert "key 'encoding'" in problem.message and "订单明细_2099.csv is not UTF-8 or GB18030 text" in problem.message
    assert main(["data", "validate", str(export.folder)]) == 2
    assert _snapshot(export.folder) == before


def test_several_problems_are_reported_together(export):
    text = _edit(_edit(CN_MAPPING, '"Asia/Shanghai"', '"Mars/Olympus"'), '"CNY"', '"XYZ"')
    export.mapping_path.write_text(text, encoding="utf-8")
    with pytest.raises(MappingError) as info:
        load_partner_folder(export.folder)
    assert [p.message.split(":")[0] for p in info.value.problems] == ["key 'timezone'", "key 'currency'"]


def test_not_toml_and_missing_required_mapping(export):
    export.mapping_path.write_text("timezone = Asia/Shanghai\n", encoding="utf-8")
    with pytest.raises(MappingError, match="is not valid TOML"):
        load_partner_folder(export.folder)
    export.mapping_path.write_text(_edit(CN_MAPPING, 'amount = "实付金额"\n', ""), encoding="utf-8")
    with pytest.raises(MappingError) as info:
        load_partner_folder(export.folder)
    (problem,) = info.value.problems
    assert "required column 'amount'" in problem.message and 'amount = "实付金额"' in problem.message


def test_the_command_line_exits_2_without_a_traceback(export):
    export.mapping_path.write_text(_edit(CN_MAPPING, '"Asia/Shanghai"', '"Asia/Shangai"'), encoding="utf-8")
    exe = Path(sys.executable).with_name("fedinsight")
    proc = subprocess.run([str(exe), "data", "validate", str(export.folder)], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr + proc.stdout
    assert "mapping.toml: key 'timezone'" in proc.stderr
