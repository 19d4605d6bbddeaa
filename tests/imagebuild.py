"""The Dockerfile, run without a container engine (``tests/integration/test_image.py``).

``parse`` reads its instructions by stage with the ``# image-test: <step>`` marker above each;
``Image`` plays the image's file system under a temporary root: it copies the builder's ``COPY``
sources through ``.dockerignore`` (``ignored``) and runs each marked ``RUN`` as written, with
only the image paths (``/src``, ``/wheels``, ``/opt/streamspace``) moved under the root.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
IMAGE_PATHS = ("/src", "/wheels", "/opt/streamspace")
"""Where the Dockerfile puts things; here they live under the test's root instead."""


@dataclass(frozen=True)
class Instruction:
    stage: int
    keyword: str
    words: list[str]
    marker: str | None  # the ``# image-test: <marker>`` comment right above it


def parse(text: str) -> list[Instruction]:
    """Instructions by build stage, continuation lines joined, with their image-test marker."""
    instructions: list[Instruction] = []
    stage, marker, pending = -1, None, ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            if line.startswith("# image-test:"):
                marker = line.removeprefix("# image-test:").strip().split()[0]
            continue
        pending += " " + line.removesuffix("\\")
        if line.endswith("\\"):
            continue
        keyword, _, rest = pending.strip().partition(" ")
        pending = ""
        if keyword.upper() == "FROM":
            stage += 1
        exec_form = rest.startswith("[")  # ["streamspace"]: JSON, as Docker reads it
        words = json.loads(rest) if exec_form else shlex.split(rest)
        instructions.append(Instruction(stage, keyword.upper(), words, marker))
        marker = None
    return instructions


def ignored(relative: str, patterns: list[str]) -> bool:
    """``.dockerignore``: a path is out when the last pattern matching it (or a directory above
    it) is not a ``!`` exception. ``**`` spans directories, ``*`` and ``?`` do not."""
    result = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = pattern.removeprefix("!").strip("/")
        regex = re.escape(body).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        parts = relative.split("/")
        if any(re.fullmatch(regex, "/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            result = not negated
    return result


def dockerignore() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _usable_by_others(path: Path) -> bool:
    """Readable and executable by any user, all the way down from /."""
    real = path.resolve()
    return all(p.stat().st_mode & stat.S_IXOTH for p in [real, *real.parents])


def interpreter(minor: str, *, for_others: bool) -> str:
    """A Python of the image's version (``python`` in the Dockerfile's RUN lines); with
    ``for_others``, one that the unprivileged user may run too (not one under /root)."""
    candidates = [sys._base_executable, shutil.which(f"python{minor}"), f"/usr/bin/python{minor}"]
    for candidate in filter(None, candidates):
        path = Path(candidate)
        if not path.exists() or (for_others and not _usable_by_others(path)):
            continue
        version = subprocess.run(
            [candidate, "-c", "import sys, ensurepip; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if version.returncode == 0 and version.stdout.strip() == minor:
            return candidate
    raise AssertionError(
        f"no Python {minor} with ensurepip here"
        + (" that an unprivileged user may run (e.g. Debian's python3-venv)" if for_others else "")
    )


@dataclass
class Image:
    """The image's file system as far as we build it: ``root`` stands for ``/``."""

    root: Path
    instructions: list[Instruction]
    python: str

    def path(self, image_path: str) -> Path:
        return self.root / image_path.lstrip("/")

    @property
    def venv(self) -> Path:
        return self.path("/opt/streamspace")

    def word(self, word: str) -> str:
        for prefix in IMAGE_PATHS:
            if word == prefix or word.startswith(prefix + "/"):
                return str(self.root) + word
        return word

    def command(self, words: list[str]) -> list[str]:
        """A RUN line here: its paths moved, its globs expanded, ``pip``/``python`` found."""
        words = [w for w in words if not w.startswith("--mount=")]  # BuildKit's, not the command
        head = {"pip": [sys.executable, "-m", "pip"], "python": [self.python]}.get(words[0])
        argv = head or [self.word(words[0])]
        for word in map(self.word, words[1:]):
            pattern = Path(word)
            matches = sorted(map(str, pattern.parent.glob(pattern.name))) if "*" in word else []
            argv += matches or [word]
        return argv

    def copy(self, words: list[str], workdir: str) -> None:
        """A COPY of the build context, through .dockerignore."""
        *sources, target = [w for w in words if not w.startswith("--")]
        destination = self.path(target if target.startswith("/") else f"{workdir}/{target}")
        patterns = dockerignore()
        for source in sources:
            origin = REPO / source
            if origin.is_file():
                destination.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, destination / origin.name)
                continue
            for file in sorted(origin.rglob("*")):
                relative = file.relative_to(REPO).as_posix()
                if file.is_file() and not ignored(relative, patterns):
                    out = destination / file.relative_to(origin)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(file, out)

    def build(self) -> None:
        workdir = "/"
        for step in self.instructions:
            if step.keyword == "WORKDIR":
                workdir = step.words[0]
                self.path(workdir).mkdir(parents=True, exist_ok=True)
            elif step.keyword == "COPY" and step.stage == 0:
                self.copy(step.words, workdir)
            elif step.keyword == "RUN" and step.marker != "skip":
                cwd = self.path(workdir) if step.stage == 0 else self.root
                subprocess.run(self.command(step.words), cwd=cwd, check=True)

    def env(self) -> dict[str, str]:
        """The final stage's ENV, as a container of the image starts with."""
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
        for step in self.instructions:
            if step.keyword == "ENV" and step.stage == self.instructions[-1].stage:
                for pair in step.words:
                    name, _, value = pair.partition("=")
                    env[name] = self.word(value.replace("$PATH", env["PATH"]))
        return env
