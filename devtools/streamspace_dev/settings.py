"""Settings of the developer tooling, read once from the environment like the product's."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from streamspace.config import ConfigError, EnvReader

REPO = Path(__file__).resolve().parents[2]
"""The repository this tooling runs from (it is installed editable, never as a wheel)."""

REPO_CRDS = REPO / "crds"
EXAMPLES = REPO / "examples"


@dataclass(frozen=True)
class DevSettings:
    """Settings of the local development tooling (``streamspace dev``), not of the product."""

    state_dir: Path = Path(".streamspace")
    """Git-ignored directory for the local stack's kubeconfig, pids, logs and data."""

    cache_dir: Path = Path.home() / ".cache" / "streamspace"
    """Where control-plane binaries are built, outside the repo (``STREAMSPACE_CACHE_DIR``)."""

    use_existing_cluster: bool = False
    """Use the cluster ``KUBECONFIG`` points at instead of starting one
    (``STREAMSPACE_USE_EXISTING_CLUSTER=true``)."""


def load_dev_settings(env: Mapping[str, str] | None = None) -> DevSettings:
    read = EnvReader(os.environ if env is None else env)
    xdg = read.text("XDG_CACHE_HOME")
    cache_default = Path(xdg) / "streamspace" if xdg else DevSettings.cache_dir
    settings = DevSettings(
        state_dir=Path(read.text("STREAMSPACE_STATE_DIR") or DevSettings.state_dir).absolute(),
        cache_dir=Path(read.text("STREAMSPACE_CACHE_DIR") or cache_default).absolute(),
        use_existing_cluster=read.flag("STREAMSPACE_USE_EXISTING_CLUSTER"),
    )
    if read.problems:
        raise ConfigError(read.problems)
    return settings
