"""The kinds of tool the executor (:mod:`switchboard.actors.tool_executor`) runs.

- builtins (``lookup_hours``, ``transfer_to_human``, ``hangup_call``,
  ``search_knowledge``), answered in the runtime;
- webhooks: an HTTP request to the business's URL, signed per Standard
  Webhooks, through a guarded client (deadline, byte cap, no redirects, SSRF
  checks on the resolved address) (:mod:`.webhook`, :mod:`.guarded_http`,
  the rules and the tenant allowlist in :mod:`.address_policy`, the body and
  the answer's reading shared with edge functions in :mod:`.tool_http`);
- edge functions: ``{FUNCTIONS_BASE_URL}/{name}`` with a short-lived tenant
  token (:mod:`.edge_function`);
- Python tools from installed packages (the ``switchboard.tools`` entry-point
  group, :mod:`.python_tools`).

Each runner takes a :class:`~.invocation.ToolInvocation` and returns a
:class:`~.invocation.ToolOutcome`; it never raises for a tool's failure.
"""
