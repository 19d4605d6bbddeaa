"""The product's two processes as tests run them: the operator in a thread of the test process,
and ``Stack``, operator and facade sharing one database (the ``stack`` fixture of conftest).

Kept out of ``conftest`` so that test modules can import them: a directory of tests with a
conftest of its own (tests/browser) makes ``from conftest import ...`` ambiguous.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from facade_testing import Client, FacadeThread, token
from streamspace.config import Settings
from streamspace_operator.runtime import RunOptions, serve
from streamspace_testing import closing_finished


class OperatorThread:
    """The real operator (our registry, Kopf, kubernetes_asyncio) in a thread of this process."""

    def __init__(
        self,
        settings: Settings,
        priority: int | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self.priority = priority
        self.clock = clock  # the schedules' clock (None: the real one)
        self.stop_flag = threading.Event()
        self.ready_flag = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="operator", daemon=True)

    @property
    def metrics_url(self) -> str:
        return f"http://{self.settings.metrics.host}:{self.settings.metrics.port}/metrics"

    def _run(self) -> None:
        options = RunOptions(
            liveness_endpoint=None,
            standalone=self.priority is None,
            priority=self.priority or 0,
            clock=self.clock,
        )

        async def main() -> None:
            await serve(
                self.settings, options, stop_flag=self.stop_flag, ready_flag=self.ready_flag
            )
            await closing_finished()  # Kopf's last TLS closes, before the loop goes away

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def start(self) -> OperatorThread:
        self.thread.start()
        assert self.ready_flag.wait(60), f"operator not ready: {self.error!r}"
        return self

    def stop(self) -> None:
        self.stop_flag.set()
        self.thread.join(60)
        assert not self.thread.is_alive(), "operator did not stop"
        assert self.error is None, self.error


@dataclass
class Stack:
    """Operator + facade + PostgreSQL on the test's namespace, with callers of every role."""

    url: str
    namespace: str
    database_url: str
    facade: FacadeThread
    settings: Settings
    operator: OperatorThread | None = None

    def client(self, user: str | None, role: str = "user") -> Client:
        return Client(self.url, None if user is None else token(user, role))
