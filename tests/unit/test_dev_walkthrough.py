"""The walkthrough `make run` prints: every command it shows can run as pasted."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamspace_dev.stack import Welcome, welcome

pytestmark = pytest.mark.unit


def test_walkthrough_exports_what_its_commands_need(tmp_path: Path) -> None:
    text = welcome(
        Welcome(
            api="http://127.0.0.1:8080",
            operator_metrics="http://127.0.0.1:9090/metrics",
            key="sk_admin",
            template="firefox-browser",
            repository=tmp_path / "example-templates",
            made_up={"WEBHOOK_SECRET": "w" * 32, "JWT_SECRET": "j" * 43},
            database="postgresql://streamspace:pw@127.0.0.1:5432/streamspace",
            kubeconfig=tmp_path / "kubeconfig",
            logs=tmp_path / "logs",
        )
    )
    # `streamspace token` never guesses a database: the walkthrough exports the run's own
    exports = text.index(
        "export DATABASE_URL=postgresql://streamspace:pw@127.0.0.1:5432/streamspace"
    )
    assert exports < text.index("token create --user bob")
    assert text.index("export JWT_SECRET=") < text.index("token jwt --user alice")
    assert "export TOKEN=sk_admin" in text
    # the console comes first, with the key to sign in with
    assert text.index("Console:     http://127.0.0.1:8080/") < text.index("export TOKEN=sk_admin")
