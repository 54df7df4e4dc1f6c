"""What handlers return, streaming, and the encode tool's charset negotiation."""

import io

import cherrypy


class Stream:
    _cp_config = {"response.stream": True}

    @cherrypy.expose
    def index(self):
        for i in range(3):
            yield f"chunk {i}\n"

    @cherrypy.expose
    def bytes_chunks(self):
        yield b"raw "
        yield b""
        yield b"bytes"

    @cherrypy.expose
    def with_length(self):
        cherrypy.response.headers["Content-Length"] = "11"
        yield "hello "
        yield "world"

    @cherrypy.expose
    def text(self):
        cherrypy.response.headers["Content-Type"] = "text/plain"
        yield "caf\u00e9 "
        yield "cr\u00e8me"

    @cherrypy.expose
    def fails_first(self):
        raise ValueError("failed before the first chunk")
        yield "never"

    @cherrypy.expose
    def fails_later(self):
        yield "partial "
        raise ValueError("failed after the first chunk")

    @cherrypy.expose
    def listed(self):
        return ["a", "b", "c"]

    @cherrypy.expose
    def empty(self):
        return iter([])


class Charsets:
    @cherrypy.expose
    def index(self):
        return "caf\u00e9 \u20ac"

    @cherrypy.expose
    def latin(self):
        return "caf\u00e9"

    @cherrypy.expose
    @cherrypy.tools.encode(encoding="iso-8859-1")
    def forced(self):
        return "caf\u00e9"

    @cherrypy.expose
    @cherrypy.tools.encode(encoding="utf-16")
    def utf16(self):
        return "caf\u00e9"

    @cherrypy.expose
    def plain(self):
        cherrypy.response.headers["Content-Type"] = "text/plain; format=flowed"
        return "caf\u00e9"

    @cherrypy.expose
    def json(self):
        cherrypy.response.headers["Content-Type"] = "application/json"
        return '{"caf\u00e9": 1}'

    @cherrypy.expose
    def charset_given(self):
        cherrypy.response.headers["Content-Type"] = "text/html; charset=iso-8859-1"
        return "caf\u00e9"

    @cherrypy.expose
    @cherrypy.tools.encode(add_charset=False)
    def no_charset(self):
        return "caf\u00e9"

    @cherrypy.expose
    @cherrypy.tools.encode(text_only=False)
    def any_type(self):
        cherrypy.response.headers["Content-Type"] = "application/xml"
        return "<caf\u00e9/>"

    @cherrypy.expose
    @cherrypy.tools.encode(errors="replace", encoding="ascii")
    def replaced(self):
        return "caf\u00e9"


class Callable:
    exposed = True

    def __call__(self, *args, **kwargs):
        return f"called with {args!r} {sorted(kwargs.items())!r}"


class Root:
    def __init__(self):
        self.callable = Callable()
        self.stream = Stream()
        self.charsets = Charsets()

    @cherrypy.expose
    def text(self):
        return "just text"

    @cherrypy.expose
    def raw(self):
        return b"just bytes \xff"

    @cherrypy.expose
    def empty_text(self):
        return ""

    @cherrypy.expose
    def none(self):
        return None

    @cherrypy.expose
    def text_list(self):
        return ["one ", "two ", "three"]

    @cherrypy.expose
    def bytes_list(self):
        return [b"one ", b"two"]

    @cherrypy.expose
    def mixed_list(self):
        return ["text ", b"bytes"]

    @cherrypy.expose
    def generator(self):
        yield "gen "
        yield b"erated"

    @cherrypy.expose
    def text_tuple(self):
        return ("a", "b")

    @cherrypy.expose
    def file_like(self):
        return io.BytesIO(b"from a file")

    @cherrypy.expose
    def number(self):
        return 42

    @cherrypy.expose
    def content_type(self):
        cherrypy.response.headers["Content-Type"] = "text/xml; charset=utf-8"
        return "<a>\u00e9</a>"

    @cherrypy.expose
    def headers(self):
        cherrypy.response.headers["X-Custom"] = "custom value"
        cherrypy.response.headers["x-lower"] = "lower"
        cherrypy.response.headers["Cache-Control"] = "no-cache"
        return "headers"

    @cherrypy.expose
    def length_set(self):
        cherrypy.response.headers["Content-Length"] = "5"
        return "12345"

    @cherrypy.expose
    def upload(self, **kwargs):
        """The upload example of the notes: count the bytes of each file part."""
        lines = []
        for name, value in sorted(kwargs.items()):
            parts = value if isinstance(value, list) else [value]
            for part in parts:
                if isinstance(part, str):
                    lines.append(f"{name}: field {part!r}")
                    continue
                if not part.filename:
                    # The notes' advice: a part without a file name has no file to read.
                    lines.append(f"{name}: no file ({part.filename!r})")
                    continue
                size = 0
                while True:
                    data = part.file.read(8192)
                    if not data:
                        break
                    size += len(data)
                lines.append(f"{name}: file {part.filename!r} {part.content_type} {size} bytes")
        return "\n".join(lines)

    @cherrypy.expose
    def header_values(self):
        headers = cherrypy.response.headers
        headers["X-Latin"] = "caf\u00e9"
        headers["X-Euro"] = "\u20ac 5"
        headers["X-Number"] = 42
        return "header values"

    @cherrypy.expose
    def form(self, **params):
        return repr(sorted(params.items()))

    @cherrypy.expose
    @cherrypy.config(**{"request.process_request_body": False})
    def unread(self, **params):
        return f"body left unread, params {sorted(params.items())!r}"

    @cherrypy.expose
    def echo_body(self):
        return cherrypy.request.body.read()

    @cherrypy.expose
    def echo_headers(self, **params):
        request = cherrypy.request
        names = sorted(k for k in request.headers if k.lower() not in ("host",))
        return "\n".join(
            [
                f"{request.method} {request.path_info} {request.query_string!r} "
                f"{request.protocol!r} {request.base} {request.scheme}"
            ]
            + [f"{name}: {request.headers[name]}" for name in names]
        )


if __name__ == "__main__":
    cherrypy.quickstart(Root())
