"""What a control-plane build says while it runs: which component, how many packages it has
compiled, the time so far and what the last build took (``binaries.build``)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TextIO

FIRST_BUILD_ESTIMATE = "about 10-15 minutes on 2 cores"


def minutes(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


@dataclass
class Progress:
    """Says what the build is doing: every ``interval`` seconds a line, or one line kept current
    on a terminal."""

    out: TextIO
    total_steps: int
    expected: float | None
    """What the last build of the same components took, if known."""
    interval: float = 15.0
    step: int = 0
    label: str = ""
    action: str = ""
    compiled: int = 0
    packages: int | None = None
    started: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    def line(self) -> str:
        with self._lock:
            done = ""
            if self.compiled:
                of = f"/{max(self.packages, self.compiled)}" if self.packages else ""
                done = f", {self.compiled}{of} packages"
            last = (
                f"last build took {minutes(self.expected)}"
                if self.expected
                else f"a first build takes {FIRST_BUILD_ESTIMATE}"
            )
            return (
                f"[{self.step}/{self.total_steps}] {self.label}: {self.action}{done} - "
                f"{minutes(time.monotonic() - self.started)} so far ({last})"
            )

    def begin(self, label: str) -> None:
        with self._lock:
            self.step += 1
            self.label = label
        self.set_action("starting")

    def set_action(self, action: str, packages: int | None = None) -> None:
        with self._lock:
            self.action, self.packages, self.compiled = action, packages, 0
        self.show()

    def tick(self) -> None:
        with self._lock:
            self.compiled += 1

    def show(self) -> None:
        if self.out.isatty():
            self.out.write("\r\033[K" + self.line())
        else:
            self.out.write(self.line() + "\n")
        self.out.flush()

    def __enter__(self) -> Progress:
        every = 1.0 if self.out.isatty() else self.interval
        threading.Thread(target=self._run, args=(every,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.out.isatty():
            self.out.write("\n")
            self.out.flush()

    def _run(self, every: float) -> None:
        while not self._stop.wait(every):
            self.show()
