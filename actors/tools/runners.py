"""Which runner carries out a tool that leaves the executor: by the tool's kind.

- ``webhook`` (``url``): :class:`~.webhook.WebhookRunner`, through the guarded
  client, signed with the tenant's secret;
- ``function``: :class:`~.edge_function.EdgeFunctionRunner` at
  ``FUNCTIONS_BASE_URL``, with a tenant token;
- ``python``: :class:`~.python_tools.PythonToolRunner` (an installed
  ``switchboard.tools`` entry point).

What the server lacks to run one (no guarded client, no tenant settings, no
``FUNCTIONS_BASE_URL``) is a ``not_configured`` outcome the model can act on.
"""

from __future__ import annotations

from switchboard.orchestrator.agents import ToolSpec

from .edge_function import EdgeFunctionRunner
from .invocation import ToolOutcome, ToolRunner
from .kit import ToolKit
from .python_tools import PythonToolRunner
from .tool_http import not_configured
from .webhook import WebhookRunner

__all__ = ["runner_for"]


def runner_for(spec: ToolSpec, kit: ToolKit) -> ToolRunner | ToolOutcome:
    """The runner of ``spec``, or the ``not_configured`` outcome saying what is missing."""
    if spec.url is not None:
        if kit.web is None or kit.tenant is None:
            return not_configured(spec.name, "webhook tools are not set up on this server")
        return WebhookRunner(spec, kit.tenant, kit.web)
    if spec.function is not None:
        if kit.web is None or kit.tenant is None or kit.functions_base_url is None:
            return not_configured(spec.name, "FUNCTIONS_BASE_URL is not set on this server")
        return EdgeFunctionRunner(spec, kit.tenant, kit.web, kit.functions_base_url)
    if spec.python is not None:
        return PythonToolRunner({spec.name: spec.python})
    return not_configured(spec.name, "it has no url, function or python entry point")
