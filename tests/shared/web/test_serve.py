"""shared/web/serve.py: the rate-limited log, limits from settings, the descriptor budget."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap

import pytest

from shared.errors import ValidationFailed
from shared.settings import SettingsError, load_settings
from shared.web.serve import (
    ACCEPT_ERROR_MESSAGE,
    ConnectionGuard,
    ConnectionLimits,
    RateLimitedLog,
    connection_cap,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lines(caplog: pytest.LogCaptureFixture, message: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == message]


# -- RateLimitedLog ---------------------------------------------------------------------------


def test_the_first_occurrence_is_logged_then_one_line_per_interval_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    clock = FakeClock()
    limiter = RateLimitedLog(logging.getLogger("test.limiter"), "noisy", 10.0, clock)
    assert limiter.note(error="EMFILE") is True
    written = [limiter.note(error="EMFILE") for _ in range(10_000)]
    assert not any(written)
    clock.now += 9.9
    assert limiter.note() is False
    clock.now += 0.2
    assert limiter.note(error="last") is True
    records = lines(caplog, "noisy")
    assert [r.count for r in records] == [1, 10_002]  # type: ignore[attr-defined]
    assert records[1].error == "last" and records[1].over_s == pytest.approx(10.1)  # type: ignore[attr-defined]


def test_flush_writes_what_was_counted_and_nothing_when_nothing_was(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    clock = FakeClock()
    limiter = RateLimitedLog(logging.getLogger("test.limiter"), "noisy", 10.0, clock)
    limiter.note()
    limiter.note()
    limiter.note()
    limiter.flush()
    limiter.flush()
    assert [r.count for r in lines(caplog, "noisy")] == [1, 2]  # type: ignore[attr-defined]


async def test_the_guard_folds_accept_errors_and_passes_other_loop_errors_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    clock = FakeClock()
    guard = ConnectionGuard(ConnectionLimits(log_interval_s=5.0), clock)
    loop = asyncio.get_running_loop()
    before = loop.get_exception_handler()
    with guard.installed(loop):
        for _ in range(5_000):
            loop.call_exception_handler(
                {"message": ACCEPT_ERROR_MESSAGE, "exception": OSError(24, "Too many open files")}
            )
        clock.now += 6
        loop.call_exception_handler({"message": ACCEPT_ERROR_MESSAGE, "exception": OSError(24, "again")})
        loop.call_exception_handler({"message": "something else broke"})
    assert loop.get_exception_handler() is before
    records = lines(caplog, "accept errors")
    assert [r.count for r in records] == [1, 5_000]  # type: ignore[attr-defined]
    assert all(r.exc_info is None for r in records)  # no traceback per error
    assert any(r.getMessage() == "something else broke" for r in caplog.records)


# -- limits -------------------------------------------------------------------------------------


def test_the_cap_stays_below_the_descriptor_limit() -> None:
    assert connection_cap(20_000, 512) == 19_488
    assert connection_cap(1024, 512, 100) == 100
    assert connection_cap(1024, 512, 100_000) == 512  # never above what descriptors allow
    with pytest.raises(ValidationFailed, match="ulimit"):
        connection_cap(256, 512)


def test_limits_from_settings() -> None:
    settings = load_settings(
        http_header_timeout_s=3,
        http_body_timeout_s=4,
        http_idle_timeout_s=5,
        http_max_connections_per_ip=7,
        http_max_connections=50,
        trusted_proxies="10.0.0.1,::ffff:10.0.0.2",
    )
    limits = ConnectionLimits.from_settings(settings, fd_limit=4096)
    assert (limits.header_timeout_s, limits.body_timeout_s, limits.idle_timeout_s) == (3, 4, 5)
    assert (limits.max_per_ip, limits.max_connections) == (7, 50)
    assert limits.exempt == {"10.0.0.1", "10.0.0.2"}
    assert ConnectionLimits.from_settings(load_settings(), fd_limit=4096).max_connections == 4096 - 512


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("http_header_timeout_s", 0),
        ("http_body_timeout_s", -1),
        ("http_idle_timeout_s", 0),
        ("http_max_connections_per_ip", 0),
        ("http_max_connections", -5),
    ],
)
def test_bad_limits_are_refused_naming_the_setting(name: str, value: float) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings(**{name: value})
    # Settings built without validation (a copy for a test) are still refused here.
    unchecked = load_settings().model_copy(update={name: value})
    with pytest.raises(ValidationFailed, match=name):
        ConnectionLimits.from_settings(unchecked, fd_limit=4096)


def test_the_soft_descriptor_limit_is_raised_to_the_hard_one() -> None:
    script = textwrap.dedent(
        """
        import resource
        from shared.web.serve import descriptor_limit
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
        print(descriptor_limit(), hard, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True
    ).stdout.split()
    got, hard, soft_now = (int(x) for x in out)
    assert got == hard == soft_now
