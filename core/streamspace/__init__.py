"""StreamSpace core: the shared domain of the operator and the facade.

Settings, naming, resource shapes, database access and the local development tooling live here.
This package imports neither Kopf nor aiohttp (checked by import-linter), so both processes can
depend on it without depending on each other.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("streamspace")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

API_GROUP = "stream.space"
API_VERSION = "v1alpha1"
