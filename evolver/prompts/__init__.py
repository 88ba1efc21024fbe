"""Prompt templates of the LLM roles: one versioned file per role (`<role>.v<N>.txt`), read
once at start. A file holds a `## system` and a `## user` section, and optionally a `## reply`
section: text the reply is primed with (the model continues it; where the client cannot prefill,
the section is left out and the format instructions stand alone). `$name` fields are filled
with string.Template (braces in JSON examples need no escaping). What a role produces records
its template's version ("step_attributor/v1") so a result can be traced to the prompt behind it.

A deployment can point EVOLVER_PROMPTS_DIR at its own folder of the same file names."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from string import Template

from evolver.errors import FailedPrecondition

PACKAGED = Path(__file__).resolve().parent
_FILE = re.compile(r"^(?P<role>[a-z_]+)\.v(?P<version>\d+)\.txt$")


@dataclass(frozen=True)
class PromptTemplate:
    role: str
    version: str  # "<role>/v<N>"
    system: str
    user: str
    reply_prefix: str = ""

    def messages(self, **fields: object) -> list[dict[str, str]]:
        """The chat messages with every $field filled (a missing field is a bug: KeyError)."""
        values = {k: str(v) for k, v in fields.items()}
        return [{"role": "system", "content": Template(self.system).substitute(values)},
                {"role": "user", "content": Template(self.user).substitute(values)}]


def parse(text: str, role: str, version: str) -> PromptTemplate:
    sections = dict.fromkeys(("system", "user", "reply"), "")
    current = None
    for line in text.splitlines(keepends=True):
        m = re.match(r"^## (system|user|reply)\s*$", line)
        if m:
            current = m.group(1)
        elif current:
            sections[current] += line
    if not sections["user"].strip():
        raise FailedPrecondition(f"prompt {version}: no '## user' section")
    # The reply's primer keeps its trailing space (a tokenizer reads "Judgment: " and "Judgment:"
    # differently); only the file's line break is dropped.
    return PromptTemplate(role, version, sections["system"].strip(), sections["user"].strip(),
                          sections["reply"].strip("\n"))


def load(role: str, folder: str | Path | None = None) -> PromptTemplate:
    """The newest version of a role's template in `folder` (EVOLVER_PROMPTS_DIR, else the
    packaged one)."""
    folder = Path(folder or os.environ.get("EVOLVER_PROMPTS_DIR") or PACKAGED)
    found = [(int(m["version"]), p) for p in folder.glob(f"{role}.v*.txt") if (m := _FILE.match(p.name))]
    if not found:
        raise FailedPrecondition(f"no prompt template for role {role} in {folder}")
    version, path = max(found)
    return parse(path.read_text(), role, f"{role}/v{version}")
