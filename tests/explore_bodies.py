import json, sys, hashlib
sys.path.insert(0, "/work/main/tests")
import morello
from morello.testing import running
from e2e_support import cherrypy_reference, exchange, raw_exchange


def build(cp):
    class Root:
        @cp.expose
        def index(self):
            return "alive"

        @cp.expose
        def echo(self, **kwargs):
            return json.dumps(kwargs, sort_keys=True, default=repr)

        @cp.expose
        def one(self, a):
            return "a=" + a

        @cp.expose
        def raw(self):
            body = cp.request.body.read()
            return json.dumps({"body": body.decode("latin-1"), "params": cp.request.params})
        raw._cp_config = {"request.process_request_body": False}

        @cp.expose
        def json_raw(self, **kw):
            return cp.request.body.read()

        @cp.expose
        def small(self, **kwargs):
            return "ok"
        small._cp_config = {"request.body.maxbytes": 10}

        @cp.expose
        def upload(self, myfile, note=""):
            data = myfile.file.read()
            return json.dumps({"filename": myfile.filename, "type": str(myfile.content_type),
                               "len": len(data), "note": note, "value": repr(myfile.value)})

    return Root(), {}


def reqs():
    form = b"a=1&b=2&a=3"
    yield b"POST /echo?a=0&c=9 HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s" % (len(form), form)
    yield b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n"
    yield b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 5\r\n\r\na=%FF"
    yield b"POST /one HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\n\r\na=1&b=2"
    yield b"GET /one?a=1&b=2 HTTP/1.1\r\nHost: x\r\n\r\n"
    yield b"POST /one/x HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 3\r\n\r\na=1"
    yield b"GET /one/x?a=1 HTTP/1.1\r\nHost: x\r\n\r\n"
    yield b"POST /raw?q=1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-foo\r\nContent-Length: 5\r\n\r\nhello"
    yield b"POST /raw HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 3\r\n\r\na=1"
    yield b'POST /json_raw HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 8\r\n\r\n{"a": 1}'
    yield b"POST /small HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 20\r\n\r\na=11111111111111111"
    yield b"POST /small HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n5\r\na=111\r\n10\r\n1111111111111111\r\n0\r\n\r\n"
    yield b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n3\r\na=1\r\n4\r\n&b=2\r\n0\r\n\r\n"
    mp = (b"--XX\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n"
          b"--XX\r\nContent-Disposition: form-data; name=\"myfile\"; filename=\"a.txt\"; filename*=UTF-8''%E2%82%AC%20r.txt\r\nContent-Type: text/plain\r\n\r\nDATA\r\n--XX--\r\n")
    yield b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=XX\r\nContent-Length: %d\r\n\r\n%s" % (len(mp), mp)


def run(port):
    out = []
    for r in reqs():
        try:
            rep = exchange(port, r)
            out.append((rep.status, rep.body[:300]))
        except Exception as e:
            out.append(("EXC", repr(e)))
    return out


with cherrypy_reference("explore_bodies:build") as port:
    cp_out = run(port)
morello_root, conf = build(morello)
with running({"": morello_root}, conf) as client:
    m_out = run(client.port)
for r, a, b in zip(reqs(), cp_out, m_out):
    print("REQ", r[:60])
    print("  CP ", a)
    print("  MO ", b)
