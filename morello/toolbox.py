"""The default toolbox, ``morello.tools``, with the built-in tools.

Hook points and priorities are CherryPy's, so tools combine in the same
order as there.
"""

from __future__ import annotations

from morello.lib import cptools, encoding
from morello.tool import Tool, Toolbox

default_toolbox = tools = Toolbox("tools")

tools.log_tracebacks = Tool("before_error_response", cptools.log_traceback)
tools.log_headers = Tool("before_error_response", cptools.log_request_headers)
tools.log_hooks = Tool("on_end_request", cptools.log_hooks, priority=100)
tools.decode = Tool("before_request_body", encoding.decode)
tools.encode = Tool("before_handler", encoding.ResponseEncoder, priority=70)
tools.trailing_slash = Tool("before_handler", cptools.trailing_slash, priority=60)
