"""morello's HTTP/1.1 request path, inside cheroot's connection handling.

cheroot accepts connections, wraps them in TLS and runs the thread pool;
this package collects, reads, parses and answers the requests of each
connection:

* :mod:`~morello.http.reader`: the connection's receive buffer;
* :mod:`~morello.http.parser`: request heads, parsed by llhttp (httptools);
* :mod:`~morello.http.framing`: morello's strict framing rules, the chunked
  body reader, shared with cheroot's own request path;
* :mod:`~morello.http.target`: the request target's path and query;
* :mod:`~morello.http.environ`: the WSGI environ;
* :mod:`~morello.http.response`: the response head and body on the wire;
* :mod:`~morello.http.connection`: the cheroot connection tying them together;
* :mod:`~morello.http.gathering`: requests collected without a thread;
* :mod:`~morello.http.turns`: the pool's threads taking turns at the selector;
* :mod:`~morello.http.accepting`: the connection manager's accept() back-off.
"""
