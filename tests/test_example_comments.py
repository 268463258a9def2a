"""The example agent's comments name code that exists (a renamed function once left the
comment pointing at nothing)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from switchboard.orchestrator.server import example_agent_path

ROOT = Path(__file__).resolve().parent.parent


def test_every_dotted_name_and_file_the_example_agent_mentions_exists() -> None:
    comments = "\n".join(
        line for line in example_agent_path().read_text().splitlines() if line.lstrip()[:1] == "#"
    )
    names = re.findall(r"`(switchboard(?:\.\w+)+)`", comments)
    files = re.findall(
        r"\b((?:orchestrator|actors|codecs|examples)/[\w/]+\.(?:py|yaml|md))", comments
    )
    assert names and files, comments
    for dotted in names:
        module, _, attribute = dotted.rpartition(".")
        assert hasattr(importlib.import_module(module), attribute), dotted
    for file in files:
        assert (ROOT / file).is_file(), file
