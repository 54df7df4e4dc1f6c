"""The demo application the load tests drive: a small shop site on morello.

Serve it with several workers and a session store given by a config file
(``python -m loadtests`` writes one per store)::

    python -m morello.master serve loadtests.app:Root --workers 2 --config app.conf

    # app.conf
    [/]
    tools.sessions.on = True
    tools.sessions.storage_type = "file"
    tools.sessions.storage_path = "/tmp/sessions"

Routes:

* HTML pages: ``/``, ``/about``, ``/products``, ``/products/N`` and
  ``/account`` (the logged-in user's page);
* the login flow: ``GET /login`` (a form), ``POST /login`` (``username``:
  puts the user in a fresh session, counter 0, then 303 to ``/account``),
  ``POST /counter/increment`` (JSON ``{"user": ..., "counter": new value}``),
  ``GET /counter`` (the same, read only; 401 ``{"error": ...}`` when not
  logged in), ``POST /logout`` (expires the session, 303 to ``/``);
* a JSON API, without sessions: ``POST /api/echo`` (returns the body it
  got), ``GET /api/items?page=&per_page=`` (a catalogue page),
  ``GET /api/items/N`` and ``POST /api/items`` (validates a new item: 201,
  or 400 with ``{"error": ...}``);
* static files below ``/static/`` (``style.css``, ``app.js``), by
  ``tools.staticdir``;
* ``/slow?ms=N``: answers after N milliseconds (0 to :data:`MAX_SLOW_MS`).

For testing the load tests themselves, the environment variable
``LOADTESTS_DROP_SESSION_EVERY=N`` makes every Nth counter increment of each
worker process lose the session's counter first (as a broken store would),
so the client sees a wrong value.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import morello

STATIC_DIR = str(Path(__file__).resolve().parent / "static")
#: The longest ``/slow`` wait, in milliseconds; larger values are clamped to it.
MAX_SLOW_MS = 2000
PRODUCT_COUNT = 40
_USERNAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")

#: Every Nth increment (per process) loses the counter; 0: never. For tests only.
DROP_SESSION_EVERY = int(os.environ.get("LOADTESTS_DROP_SESSION_EVERY", "0") or 0)
_increments = 0
_increments_lock = threading.Lock()


def _product(number: int) -> dict[str, Any]:
    """A deterministic catalogue entry (the same in every worker)."""
    digest = hashlib.sha256(str(number).encode()).hexdigest()
    return {
        "id": number,
        "name": f"Product {number:03d}",
        "price": round(5 + int(digest[:6], 16) % 9500 / 100, 2),
        "stock": int(digest[6:9], 16) % 250,
        "description": f"A fine item number {number}, reference {digest[:12]}.",
    }


PRODUCTS = [_product(number) for number in range(1, PRODUCT_COUNT + 1)]


def page(title: str, body: str) -> str:
    """The site's layout around ``body`` (already HTML), with the login state in the header."""
    user = morello.session.get("user")
    who = (
        f'Logged in as <b>{html.escape(user)}</b> <form method="post" action="/logout" '
        'style="display:inline"><button>Log out</button></form>'
        if user
        else '<a href="/login">Log in</a>'
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)} - morello shop</title>
<link rel="stylesheet" href="/static/style.css">
<script src="/static/app.js" defer></script>
</head>
<body>
<header><nav><a href="/">Home</a><a href="/products">Products</a><a href="/about">About</a>
<a href="/account">Account</a></nav><div>{who}</div></header>
<main>
<h1>{html.escape(title)}</h1>
{body}
</main>
<footer>Served by worker {os.getpid()} at {time.strftime("%H:%M:%S")}.</footer>
</body>
</html>
"""


def _json_error(status: int, message: str) -> dict[str, str]:
    morello.response.status = status
    return {"error": message}


def _session_state() -> dict[str, Any] | None:
    """``{"user", "counter"}`` of the logged-in session, or None (and a 401) if none."""
    user = morello.session.get("user")
    if user is None:
        morello.response.status = 401
        return None
    return {"user": user, "counter": morello.session.get("counter", 0)}


class Api:
    """The JSON API: no sessions, JSON in and out."""

    _cp_config = {
        "tools.sessions.on": False,
        "tools.json_in.on": True,
        "tools.json_out.on": True,
    }

    @morello.expose
    def echo(self, **params: Any) -> Any:
        request = morello.request
        if request.method != "POST":
            morello.response.headers["Allow"] = "POST"
            return _json_error(405, "POST a JSON document")
        document = getattr(request, "json", None)
        encoded = json.dumps(document, sort_keys=True).encode()
        return {
            "echo": document,
            "params": params,
            "sha256": hashlib.sha256(encoded).hexdigest(),
            "worker": os.getpid(),
        }

    @morello.expose
    def items(self, item_id: str | None = None, page: str = "1", per_page: str = "10") -> Any:
        request = morello.request
        if request.method == "POST":
            if item_id is not None:
                return _json_error(405, "POST to /api/items")
            return self._create(getattr(request, "json", None))
        if item_id is not None:
            if not item_id.isdigit() or not 1 <= int(item_id) <= PRODUCT_COUNT:
                return _json_error(404, f"no item {item_id}")
            return PRODUCTS[int(item_id) - 1]
        try:
            number, size = int(page), int(per_page)
        except ValueError:
            return _json_error(400, "page and per_page must be integers")
        if number < 1 or not 1 <= size <= 50:
            return _json_error(400, "page >= 1 and 1 <= per_page <= 50")
        start = (number - 1) * size
        return {
            "page": number,
            "per_page": size,
            "total": PRODUCT_COUNT,
            "items": PRODUCTS[start : start + size],
        }

    @staticmethod
    def _create(document: Any) -> Any:
        if not isinstance(document, dict):
            return _json_error(400, "the body must be a JSON object")
        name, price = document.get("name"), document.get("price")
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            return _json_error(400, "name must be a non-empty string of at most 200 characters")
        if isinstance(price, bool) or not isinstance(price, (int, float)) or price < 0:
            return _json_error(400, "price must be a number >= 0")
        tags = document.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
            return _json_error(400, "tags must be a list of strings")
        morello.response.status = 201
        digest = hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()
        return {"id": digest[:16], "name": name.strip(), "price": price, "tags": sorted(tags)}


class Static:
    """``/static/...``: files from :data:`STATIC_DIR`."""

    _cp_config = {
        "tools.sessions.on": False,
        "tools.staticdir.on": True,
        "tools.staticdir.dir": STATIC_DIR,
    }


class Root:
    """The site. The config file turns sessions on (``tools.sessions.on`` in
    ``[/]``) with its store; ``/api`` and ``/static`` never use them."""

    api = Api()
    static = Static()

    @morello.expose
    def index(self) -> str:
        featured = "".join(
            f'<li><a href="/products/{p["id"]}">{p["name"]}</a> - {p["price"]:.2f}</li>'
            for p in PRODUCTS[:5]
        )
        return page(
            "Welcome",
            f"<p>A demo shop served by morello.</p><h2>Featured</h2><ul>{featured}</ul>",
        )

    @morello.expose
    def about(self) -> str:
        paragraphs = "".join(
            f"<p>Paragraph {n}: morello serves this page from one of several prefork "
            "workers, with sessions shared through the configured store.</p>"
            for n in range(1, 6)
        )
        return page("About", paragraphs)

    @morello.expose
    def products(self, number: str | None = None) -> str:
        if number is None:
            rows = "".join(
                f'<tr><td><a href="/products/{p["id"]}">{p["name"]}</a></td>'
                f'<td class="price">{p["price"]:.2f}</td><td>{p["stock"]}</td></tr>'
                for p in PRODUCTS
            )
            return page(
                "Products",
                f"<table><tr><th>Name</th><th>Price</th><th>Stock</th></tr>{rows}</table>",
            )
        if not number.isdigit() or not 1 <= int(number) <= PRODUCT_COUNT:
            raise morello.NotFound()
        product = PRODUCTS[int(number) - 1]
        return page(
            product["name"],
            f'<div class="card"><p>{html.escape(product["description"])}</p>'
            f'<p class="price">{product["price"]:.2f}</p><p>{product["stock"]} in stock</p></div>',
        )

    @morello.expose
    def login(self, username: str | None = None) -> str:
        if morello.request.method != "POST":
            return page(
                "Log in",
                '<form method="post" action="/login"><label>Name <input name="username">'
                "</label><button>Log in</button></form>",
            )
        if username is None or not _USERNAME.fullmatch(username):
            raise morello.HTTPError(400, "username: 1 to 64 letters, digits, '.', '_' or '-'")
        session = morello.session
        # A fresh id at login (no session fixation); the data moves with it.
        session.regenerate()
        session.clear()
        session["user"] = username
        session["counter"] = 0
        session["logged_in_at"] = time.time()
        raise morello.HTTPRedirect("/account", 303)

    @morello.expose
    def logout(self) -> str:
        if morello.request.method != "POST":
            morello.response.headers["Allow"] = "POST"
            raise morello.HTTPError(405)
        morello.session.expire()
        raise morello.HTTPRedirect("/", 303)

    @morello.expose
    def account(self) -> str:
        user = morello.session.get("user")
        if user is None:
            raise morello.HTTPRedirect("/login", 303)
        counter = morello.session.get("counter", 0)
        return page(
            "Account",
            f'<p data-user="{html.escape(user)}">Counter: <b id="counter">{counter}</b></p>'
            '<button id="increment">Increment</button>',
        )

    @morello.expose
    @morello.tools.json_out()
    def counter(self, action: str | None = None) -> Any:
        """``GET /counter`` reads the session's counter; ``POST /counter/increment`` adds one."""
        method = morello.request.method
        if action is None:
            if method not in ("GET", "HEAD"):
                morello.response.headers["Allow"] = "GET, HEAD"
                return _json_error(405, "GET /counter")
            return _session_state() or {"error": "not logged in"}
        if action != "increment":
            return _json_error(404, f"no action {action!r}")
        if method != "POST":
            morello.response.headers["Allow"] = "POST"
            return _json_error(405, "POST /counter/increment")
        state = _session_state()
        if state is None:
            return {"error": "not logged in"}
        session = morello.session
        if DROP_SESSION_EVERY and _drop_now():
            session.pop("counter", None)  # the injected fault: a lost update
        session["counter"] = session.get("counter", 0) + 1
        return {"user": state["user"], "counter": session["counter"]}

    @morello.expose
    def slow(self, ms: str = "100") -> str:
        try:
            wait = int(ms)
        except ValueError:
            raise morello.HTTPError(400, "ms must be an integer") from None
        wait = max(0, min(wait, MAX_SLOW_MS))
        time.sleep(wait / 1000)
        return f"waited {wait} ms in worker {os.getpid()}\n"


def _drop_now() -> bool:
    global _increments
    with _increments_lock:
        _increments += 1
        return _increments % DROP_SESSION_EVERY == 0


if __name__ == "__main__":  # pragma: no cover - one process, RAM sessions
    morello.quickstart(Root(), "", {"/": {"tools.sessions.on": True}})
