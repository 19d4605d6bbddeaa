"""The pure parts of the dev control plane's pod logs: CRI records and ``Logs`` entries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from streamspace_dev.podlogs import cri_lines, log_path, with_entry

pytestmark = pytest.mark.unit

AT = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def test_cri_records_one_per_line_in_utc() -> None:
    at_plus_two = AT.astimezone(timezone(timedelta(hours=2)))
    assert cri_lines(["a b", "c\nd"], "stderr", at_plus_two) == (
        "2030-01-02T03:04:05.678901Z stderr F a b\n"
        "2030-01-02T03:04:05.678901Z stderr F c\n"
        "2030-01-02T03:04:05.678901Z stderr F d\n"
    )


def test_cri_stream_is_stdout_or_stderr() -> None:
    with pytest.raises(ValueError, match="stream"):
        cri_lines(["x"], "stdin", AT)


def test_log_path_per_container() -> None:
    assert log_path(Path("/p"), "ns", "pod", "app") == Path("/p/ns/pod/app.log")


@pytest.mark.parametrize(
    ("logs", "expected"),
    [
        ([], [{"containers": ["app"], "logsFile": "/new"}]),
        (
            [{"containers": ["side"], "logsFile": "/side"}, {"logsFile": "/default"}],
            [
                {"containers": ["side"], "logsFile": "/side"},
                {"logsFile": "/default"},
                {"containers": ["app"], "logsFile": "/new"},
            ],
        ),
        (
            [{"containers": ["app", "side"], "logsFile": "/old"}],
            [
                {"containers": ["side"], "logsFile": "/old"},
                {"containers": ["app"], "logsFile": "/new"},
            ],
        ),
        (
            [{"containers": ["app"], "logsFile": "/old"}],
            [{"containers": ["app"], "logsFile": "/new"}],
        ),
    ],
)
def test_with_entry_names_the_container_once(
    logs: list[dict[str, object]], expected: list[dict[str, object]]
) -> None:
    assert with_entry(logs, {"containers": ["app"], "logsFile": "/new"}) == expected
