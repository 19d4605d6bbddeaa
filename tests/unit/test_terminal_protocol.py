"""The terminal's messages, its exit codes and its settings, as tables (``termproto``)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from streamspace.config import ConfigError, load_settings
from streamspace.config.terminal import DEFAULT_SHELLS
from streamspace_dev.podexec import WORK_DIR, cluster_exec
from streamspace_facade import termproto
from streamspace_facade.termproto import BadMessage, Resize, Stdin

pytestmark = pytest.mark.unit

CLIENT = [
    ('{"type": "stdin", "data": "ls -l\\n"}', Stdin(b"ls -l\n")),
    ('{"type": "stdin", "data": "\\u00e9"}', Stdin("é".encode())),
    ('{"type": "resize", "cols": 80, "rows": 24}', Resize(80, 24)),
    ('{"type": "resize", "cols": 10000, "rows": 1}', Resize(10000, 1)),
]
BAD = [
    ("not json", "JSON objects"),
    ("[1, 2]", "JSON objects"),
    ('{"type": "stdin"}', "data must be a string"),
    ('{"type": "stdin", "data": 5}', "data must be a string"),
    ('{"type": "resize", "cols": 80}', "must be integers"),
    ('{"type": "resize", "cols": true, "rows": 24}', "must be integers"),
    ('{"type": "resize", "cols": 0, "rows": 24}', "between 1 and 10000"),
    ('{"type": "resize", "cols": 80, "rows": 10001}', "between 1 and 10000"),
    ('{"type": "signal", "name": "KILL"}', "stdin or resize"),
]


@pytest.mark.parametrize(("text", "expected"), CLIENT)
def test_client_messages(text: str, expected: Stdin | Resize) -> None:
    assert termproto.parse_client(text) == expected


@pytest.mark.parametrize(("text", "problem"), BAD)
def test_messages_not_understood_say_why(text: str, problem: str) -> None:
    with pytest.raises(BadMessage, match=problem):
        termproto.parse_client(text)


def test_frames_for_the_api_server() -> None:
    assert termproto.upstream(Stdin(b"echo\n")) == b"\x00echo\n"
    frame = termproto.upstream(Resize(120, 40))
    assert frame[0] == termproto.RESIZE
    assert json.loads(frame[1:]) == {"Width": 120, "Height": 40}
    assert termproto.command("/bin/bash") == ["env", "TERM=xterm-256color", "/bin/bash"]


EXITS: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"status": "Success"}, {"type": "exit", "code": 0}),
    (  # a kubelet: the code as a structured cause
        {
            "status": "Failure",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": "137"}]},
            "message": "command terminated with non-zero exit code: exit status 137",
        },
        {"type": "exit", "code": 137},
    ),
    (  # kwok: Go's os/exec error in the message
        {
            "status": "Failure",
            "reason": "InternalError",
            "message": "error executing command in container: cmd wait: env /bin/sh: exit status 3",
        },
        {"type": "exit", "code": 3},
    ),
    (
        {"status": "Failure", "message": 'exec: "/bin/zsh": no such file or directory'},
        {"type": "exit", "code": None, "error": 'exec: "/bin/zsh": no such file or directory'},
    ),
    ({"status": "Failure"}, {"type": "exit", "code": None, "error": "the command failed"}),
]


@pytest.mark.parametrize(("status", "expected"), EXITS)
def test_exit_codes_from_the_status_channel(
    status: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert termproto.exit_message(status) == expected


def test_output_joins_utf8_split_across_frames() -> None:
    out = termproto.Output("stdout")
    snowman = "☃".encode()
    assert out.message(b"a" + snowman[:1]) == {"type": "stdout", "data": "a"}
    assert out.message(snowman[1:]) == {"type": "stdout", "data": "☃"}
    assert out.message(b"\xff\n") == {"type": "stdout", "data": "\ufffd\n"}
    assert out.message(b"") is None


def test_terminal_settings() -> None:
    settings = load_settings({}).terminal
    assert settings.shells == DEFAULT_SHELLS and settings.shells[0] == "/bin/sh"
    assert settings.max_per_user == 3 and settings.idle_timeout.total_seconds() == 900
    custom = load_settings(
        {"TERMINAL_SHELLS": "/bin/bash, /bin/sh", "TERMINAL_IDLE_TIMEOUT": "2m"}
    ).terminal
    assert custom.shells == ("/bin/bash", "/bin/sh")
    assert custom.idle_timeout.total_seconds() == 120
    with pytest.raises(ConfigError) as raised:
        load_settings({"TERMINAL_SHELLS": "sh,/bin/sh -c id", "TERMINAL_MAX_PER_USER": "0"})
    text = str(raised.value)
    assert "'sh' is not an absolute path" in text
    assert "'/bin/sh -c id' is not an absolute path" in text
    assert "TERMINAL_MAX_PER_USER=0" in text


def test_the_dev_plane_runs_exec_commands_unprivileged_when_root() -> None:
    as_root = cluster_exec(euid=0)["spec"]["execs"][0]["local"]
    assert as_root["securityContext"]["runAsUser"] != 0
    assert as_root["workDir"] == WORK_DIR
    as_user = cluster_exec(euid=1000)["spec"]["execs"][0]["local"]
    assert "securityContext" not in as_user  # a user cannot switch to another one
