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


def test_the_readme_names_only_files_a_clone_has() -> None:
    """The README once sent readers to a design folder outside the repository: every
    path it names in backquotes, and every section it links to, is in the clone."""
    readme = (ROOT / "README.md").read_text()
    paths = set(
        re.findall(
            r"`((?:orchestrator|actors|codecs|tests|bench|deploy|examples)/[\w./-]+)`", readme
        )
    )
    assert paths
    named = [p for p in sorted(paths) if "NNNN" not in p]  # a pattern, not a file
    missing = [p for p in named if not (ROOT / p.rstrip("/")).exists()]
    assert not missing, missing
    assert "shared folder" not in readme and "../shared" not in readme
    anchors = {
        re.sub(r"[^\w\- ]", "", title).strip().lower().replace(" ", "-")
        for title in re.findall(r"^#+ (.+)$", readme, re.M)
    }
    links = set(re.findall(r"\]\(#([\w-]+)\)", readme))
    assert links and links <= anchors, sorted(links - anchors)
