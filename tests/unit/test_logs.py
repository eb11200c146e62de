"""Bounded logging: repeated records from one line of code are counted, not written."""

import logging

from streams.logs import RepeatFilter


def record(line, msg="connection to %s failed", args=("broker",)):
    return logging.LogRecord("kafka", logging.ERROR, "client.py", line, msg, args, None)


def test_a_burst_per_site_per_window_then_a_count():
    now = [0.0]
    limit = RepeatFilter(window=10, burst=2, clock=lambda: now[0])
    passed = [limit.filter(record(7)) for _ in range(50)]
    assert passed.count(True) == 2
    assert limit.filter(record(8)), "another call site has its own budget"
    now[0] = 10.5
    first = record(7)
    assert limit.filter(first)
    assert "48 more like this" in first.getMessage() and "broker" in first.getMessage()
