"""The default toolbox, ``morello.tools``, with the built-in tools.

Hook points and priorities are CherryPy's, so tools combine in the same
order as there.
"""

from __future__ import annotations

from morello.lib import (
    auth_basic,
    auth_digest,
    caching,
    caching_headers,
    cptools,
    encoding,
    jsontools,
    static,
    xmlrpcutil,
)
from morello.lib import sessions as _sessions  # noqa: F401 - for cherrypy.lib.sessions.expire()
from morello.lib.trusted_proxies import ProxyTool
from morello.sessions.auth import SessionAuthTool
from morello.sessions.tool import SessionTool
from morello.tool import ErrorTool, HandlerTool, Tool, Toolbox

default_toolbox = tools = Toolbox("tools")

tools.log_tracebacks = Tool("before_error_response", cptools.log_traceback)
tools.log_headers = Tool("before_error_response", cptools.log_request_headers)
tools.log_hooks = Tool("on_end_request", cptools.log_hooks, priority=100)
tools.decode = Tool("before_request_body", encoding.decode)
tools.encode = Tool("before_handler", encoding.ResponseEncoder, priority=70)
tools.trailing_slash = Tool("before_handler", cptools.trailing_slash, priority=60)
tools.xmlrpc = ErrorTool(xmlrpcutil.on_error)
tools.staticdir = HandlerTool(static.staticdir)
tools.staticfile = HandlerTool(static.staticfile)
tools.caching = caching.CachingTool("before_handler", caching.get, "caching")
tools.auth_basic = Tool("before_handler", auth_basic.basic_auth, priority=1)
tools.auth_digest = Tool("before_handler", auth_digest.digest_auth, priority=1)
tools.allow = Tool("on_start_resource", cptools.allow)
tools.proxy = ProxyTool("before_request_body", cptools.proxy, priority=30)
tools.response_headers = Tool("on_start_resource", cptools.response_headers)
tools.referer = Tool("before_request_body", cptools.referer)
tools.redirect = Tool("on_start_resource", cptools.redirect)
tools.err_redirect = ErrorTool(cptools.redirect)
tools.accept = Tool("on_start_resource", cptools.accept)
tools.autovary = Tool("on_start_resource", cptools.autovary, priority=0)
tools.ignore_headers = Tool("before_request_body", cptools.ignore_headers)
tools.flatten = Tool("before_finalize", cptools.flatten)
tools.etags = Tool("before_finalize", cptools.validate_etags, priority=75)
tools.params = Tool("before_handler", cptools.convert_params, priority=15)
tools.expires = Tool("before_finalize", caching_headers.expires)
# Before the caching tool stores the body (before_finalize, 100): it is cached compressed.
tools.gzip = Tool("before_finalize", encoding.gzip, priority=80)
tools.json_in = Tool("before_request_body", jsontools.json_in, priority=30)
tools.json_out = Tool("before_handler", jsontools.json_out, priority=30)
tools.sessions = SessionTool()
tools.session_auth = SessionAuthTool()
