"""Just enough of a Dockerfile and .dockerignore reader to check what the image is built from and runs."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY ...
    args: str

    def exec_form(self) -> list[str]:
        """The JSON-array arguments of CMD/ENTRYPOINT (or of HEALTHCHECK's CMD); shell form is split."""
        text = self.args
        if self.keyword == "HEALTHCHECK":
            text = re.sub(r"^(--\S+\s+)*CMD\s+", "", text)
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return shlex.split(text)
        assert isinstance(value, list), f"{self.keyword} {self.args!r} is not an array"
        return [str(v) for v in value]

    def options(self) -> dict[str, str]:
        """Leading --flag=value options (COPY --from=build, HEALTHCHECK --interval=15s)."""
        return dict(re.findall(r"--([\w-]+)=(\S+)", self.args.split(" CMD ")[0]))


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for pair in shlex.split(instruction.args):
                name, _, value = pair.partition("=")
                values[name] = value
        return values


def instructions(text: str) -> list[Instruction]:
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    if pending:
        lines.append(pending)
    result = []
    for line in lines:
        keyword, _, args = line.partition(" ")
        result.append(Instruction(keyword.upper(), " ".join(args.split())))
    return result


def stages(text: str) -> list[Stage]:
    """Build stages, with `FROM ${ARG}` resolved from the global ARG defaults."""
    global_args: dict[str, str] = {}
    found: list[Stage] = []
    for instruction in instructions(text):
        if instruction.keyword == "FROM":
            words = instruction.args.split()
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: global_args.get(m.group(1), m.group(0)), words[0])
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            found.append(Stage(base, name))
        elif instruction.keyword == "ARG" and not found:
            name, _, default = instruction.args.partition("=")
            global_args[name] = default
        elif found:
            found[-1].instructions.append(instruction)
    return found


def excluded(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore `patterns` leave `path` (relative to the context) out of the build context.

    The last matching pattern wins and `!` re-includes, as Docker does. A pattern also excludes everything
    under a directory it matches. `*` may match `/` here, which only makes this stricter than Docker."""
    parts = Path(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern.lstrip("!").strip("/")
        if any(
            fnmatch.fnmatchcase(c, glob) or fnmatch.fnmatchcase(c, glob.replace("**/", ""))
            for c in candidates
        ):
            result = not negate
    return result


def dockerignore_patterns(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
