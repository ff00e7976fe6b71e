"""The partner process's decision when its SuperNode exits: retry with back-off once admitted (a coordinator
restart), give up with the reason when never admitted (an unregistered key)."""

from __future__ import annotations

from fedinsight.partner.reconnect import Reconnect, log_since

ADMITTED_LOG = "INFO :      SuperNode ID: 4711\nERROR :     heartbeat failed: 401 Unauthorized\n"
REFUSED_LOG = "ERROR :     Failed to activate SuperNode. (code 305)\n"


def test_an_admitted_supernode_is_started_again_with_growing_back_off():
    backoff = Reconnect(max_delay=8.0)
    waits = [backoff.after_exit(ADMITTED_LOG if i == 0 else REFUSED_LOG) for i in range(6)]
    # refused while the restarted coordinator has not registered the keys yet: still retried, 1 2 4 8 8 8 s
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert backoff.admitted and backoff.attempts == 6


def test_a_supernode_never_admitted_gives_up():
    assert Reconnect().after_exit(REFUSED_LOG) is None  # an unregistered key
    # a wrong address or certificate, or max-wait-time reached before the coordinator came up: reported, not hidden
    assert Reconnect().after_exit("WARNING :   connection refused, retrying\n") is None


def test_the_back_off_starts_again_after_a_run_that_stayed_up(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("fedinsight.partner.reconnect.time.monotonic", lambda: clock[0])
    backoff = Reconnect(max_delay=4.0)
    assert [backoff.after_exit(ADMITTED_LOG) for _ in range(3)] == [1.0, 2.0, 4.0]
    backoff.restarted()
    clock[0] += 5.0  # the restarted SuperNode stayed up longer than the largest delay: a new outage
    assert backoff.after_exit(ADMITTED_LOG) == 1.0


def test_each_run_reads_only_its_own_lines(tmp_path):
    log = tmp_path / "supernode.log"
    log.write_text(ADMITTED_LOG)
    offset = log.stat().st_size
    with open(log, "a") as handle:
        handle.write(REFUSED_LOG)
    assert log_since(log, offset) == REFUSED_LOG
    assert log_since(tmp_path / "missing.log", 0) == ""
