"""Make a package's ``switchboard.tools`` entry points visible without pip.

:func:`install_tools` writes what pip would leave in site-packages (the modules
and a ``NAME-VERSION.dist-info`` folder with ``METADATA`` and
``entry_points.txt``, per the Python packaging "Recording installed projects"
specification) into a temporary folder put first on ``sys.path``, so
:func:`importlib.metadata.entry_points` finds it as an installed distribution.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path

import pytest


def write_distribution(
    site: Path, name: str, entry_points: Mapping[str, str], version: str = "1.0.0"
) -> None:
    """A ``{name}-{version}.dist-info`` in ``site`` declaring ``entry_points``
    (entry point name -> ``module:attribute``) in the ``switchboard.tools`` group."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8"
    )
    lines = ["[switchboard.tools]", *(f"{k} = {v}" for k, v in entry_points.items()), ""]
    (info / "entry_points.txt").write_text("\n".join(lines), encoding="utf-8")


def install_tools(
    monkeypatch: pytest.MonkeyPatch,
    site: Path,
    name: str,
    modules: Mapping[str, str],
    entry_points: Mapping[str, str],
) -> None:
    """Install distribution ``name`` into ``site`` (a fresh folder) and put it on
    ``sys.path`` for the test: ``modules`` maps a module name to its source."""
    site.mkdir(parents=True, exist_ok=True)
    for module, source in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        # Recorded as absent, so the import the test makes is undone after it.
        monkeypatch.setitem(sys.modules, module, None)  # type: ignore[arg-type]
        monkeypatch.delitem(sys.modules, module)
    write_distribution(site, name, entry_points)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()  # the path finders' and importlib.metadata's caches
