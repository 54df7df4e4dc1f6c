"""XML-RPC services: :class:`XMLRPCController` (``cherrypy._cptools.XMLRPCController``).

An XML-RPC call is dispatched twice: the URL leads to a controller (as for
any page), then the method name in the body leads to an exposed method of
that controller. Both halves are here; :class:`~morello.dispatchers.XMLRPCDispatcher`
only tidies the URL (``/RPC2`` prefix, trailing slash) for the first.
"""

from __future__ import annotations

from typing import Any

from morello.exposure import expose
from morello.lib import xmlrpcutil
from morello.serving import serving


class UnknownMethod(LookupError):
    """The XML-RPC method named in the call does not exist or is not exposed."""


class XMLRPCController:
    """Base class of XML-RPC services: each exposed method is an RPC method.

    Subclasses switch on the ``tools.xmlrpc`` error tool, so that every
    failure reaches the client as an XML-RPC fault with ``200 OK``. Dotted
    method names (``math.add``) walk attributes from the controller. The
    call's parameters follow any path segments left after the controller as
    positional arguments; query-string parameters are keyword arguments.

    Config: ``tools.xmlrpc.encoding`` (``'utf-8'``) and
    ``tools.xmlrpc.allow_none`` (``False``: returning None is a fault).
    """

    _cp_config = {"tools.xmlrpc.on": True}

    @expose
    def default(self, *vpath: str, **params: Any) -> Any:
        """Run the method the request body calls and answer with its result."""
        rpc_params, method_name = xmlrpcutil.read_call()
        method = self._rpc_method(method_name)
        result = method(*vpath, *rpc_params, **params)
        settings = serving.request.toolmaps["tools"].get("xmlrpc", {})
        xmlrpcutil.respond(
            result, settings.get("encoding", "utf-8"), settings.get("allow_none", False)
        )
        return serving.response.body

    def _rpc_method(self, name: str) -> Any:
        target: Any = self
        for attr in name.split("."):
            # Dunder names would walk out of the service into Python internals.
            if attr.startswith("__"):
                target = None
                break
            target = getattr(target, attr, None)
        if target is None or not getattr(target, "exposed", False):
            raise UnknownMethod(f"The XML-RPC method {name!r} does not exist.")
        return target
