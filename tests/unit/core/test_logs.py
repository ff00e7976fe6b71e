"""Routine library log lines (Flower, Ray, Opacus's root handler) are told apart from what a user must see."""

from __future__ import annotations

import logging

from flwr.common.logger import ConsoleHandler

from fedinsight.core.logs import is_routine, log_tail, worth_showing


def _flower(level: int, message: str, *, timestamps: bool = False, colored: bool = True) -> str:
    """A line exactly as Flower's own console handler writes it."""
    handler = ConsoleHandler(timestamps=timestamps, colored=colored)
    return handler.format(logging.LogRecord("flwr", level, __file__, 1, message, None, None))


def test_flower_debug_and_info_lines_are_routine_in_every_format():
    for level in (logging.DEBUG, logging.INFO):
        for timestamps in (False, True):
            for colored in (False, True):
                line = _flower(level, "[ROUND 1]", timestamps=timestamps, colored=colored)
                assert is_routine(line), line
    assert is_routine("12/06/2026 10:12:38:DEBUG:Pre-registering run with id 4277")  # Opacus's root handler
    assert is_routine("2026-12-06 10:12:39,157\tINFO worker.py:1841 -- Started a local Ray instance.")
    assert is_routine("(ClientAppActor pid=4242) INFO :      Received: train message")
    assert is_routine("INFO:     Uvicorn running on http://127.0.0.1:59411 (Press CTRL+C to quit)")  # a SuperNode's


def test_warnings_errors_tracebacks_and_our_own_messages_are_kept():
    for level in (logging.WARNING, logging.ERROR):
        assert not is_routine(_flower(level, "Failed to activate the SuperNode"))
    for line in ("Traceback (most recent call last):", "  File \"x.py\", line 1, in <module>",
                 "fedinsight.core.errors.ConfigError: --as-of is required", "INFORMATION about the partner",
                 "partner shop-us: data valid (customers 900)", "12/06/2026 10:12:38:WARNING:slow"):
        assert not is_routine(line), line
    lines = [_flower(logging.INFO, "[ROUND 2]"), "", _flower(logging.WARNING, "slow node"), "Traceback (most"]
    assert len(worth_showing(lines)) == 2
    assert len(worth_showing(lines, verbose=True)) == 3  # blank lines never


def test_a_dead_childs_log_is_quoted_without_routine_lines(tmp_path):
    log = tmp_path / "supernode.log"
    log.write_text("\n".join([_flower(logging.INFO, "Starting Flower SuperNode"),
                              _flower(logging.DEBUG, "gRPC channel"),
                              _flower(logging.ERROR, "Failed to activate: 305"), ""]))
    tail = log_tail(log)
    assert tail.startswith("ERROR") and tail.endswith("Failed to activate: 305") and "\x1b" not in tail  # no colours
    assert "Starting Flower SuperNode" in log_tail(log, verbose=True)
    log.write_text(_flower(logging.INFO, "only routine") + "\n")
    assert "only routine log lines" in log_tail(log) and str(log) in log_tail(log)
    assert log_tail(tmp_path / "missing.log") == ""


def test_a_verbose_run_does_not_leave_flower_verbose():
    from flwr.common.logger import FLOWER_LOGGER, update_console_handler

    from fedinsight.federation.simulation import flower_logs

    before = (FLOWER_LOGGER.level, FLOWER_LOGGER.propagate, [h.level for h in FLOWER_LOGGER.handlers])
    with flower_logs(verbose=True):
        update_console_handler(level=logging.DEBUG)  # what Flower's verbose_logging does, for good
        assert not FLOWER_LOGGER.propagate  # no second copy through a root handler
    assert (FLOWER_LOGGER.level, FLOWER_LOGGER.propagate, [h.level for h in FLOWER_LOGGER.handlers]) == before
    with flower_logs(verbose=False):
        assert not FLOWER_LOGGER.isEnabledFor(logging.INFO) and FLOWER_LOGGER.isEnabledFor(logging.WARNING)
    assert FLOWER_LOGGER.level == before[0]
