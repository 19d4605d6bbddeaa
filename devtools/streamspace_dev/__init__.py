"""Developer tooling for StreamSpace: the local control plane, PostgreSQL and ``streamspace dev``.

Not product code: it is its own distribution (``streamspace-dev``, installed by ``make venv``
beside the product's dev extra), contributes the ``dev`` subcommand through the
``streamspace.commands`` entry points, and may reach into the repository (``crds/``,
``examples/``). The product packages never import it (an import-linter contract says so).
"""
