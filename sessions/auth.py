"""``tools.session_auth``: a login form that keeps the user name in the session.

Paths ending in ``login_screen``, ``do_login`` (POST) and ``do_logout``
(POST) are answered by the tool; any other path requires
``session[session_key]`` (or an ``anonymous()`` name), else the login
form is shown. Every attribute of :class:`SessionAuth` can be set in config
(``tools.session_auth.check_username_and_password = func``...).
"""

from __future__ import annotations

import html
from typing import Any

import morello
from morello.errors import HTTPError, HTTPRedirect
from morello.serving import serving
from morello.tool import HandlerTool
from morello.urls import url

_LOGIN_FORM = """<html><body>
Message: {error_msg}
<form method="post" action="do_login">
    Login: <input type="text" name="username" value="{username}" size="10" />
    <br />
    Password: <input type="password" name="password" size="10" />
    <br />
    <input type="hidden" name="from_page" value="{from_page}" />
    <br />
    <input type="submit" />
</form>
</body></html>"""


def _session() -> Any:
    return serving.session


def _answer(body: bytes) -> bool:
    """Make ``body`` the response and tell the tool the request is handled."""
    response = serving.response
    response.body = body
    # finalize() computes it again for the new body.
    response.headers.pop("Content-Length", None)
    return True


class SessionAuth:
    """The login flow; override the hooks (or set them in config) to plug in users."""

    session_key = "username"
    debug = False

    def check_username_and_password(self, username: str, password: str) -> str | None:
        """An error message if the credentials are wrong, else None."""
        return None

    def anonymous(self) -> str | None:
        """A user name for visitors who did not log in (None: they must log in)."""
        return None

    def on_login(self, username: str) -> None:
        """Called after a successful login."""

    def on_logout(self, username: str) -> None:
        """Called after a logout."""

    def on_check(self, username: str) -> None:
        """Called on each request of a logged-in user."""

    def login_screen(
        self, from_page: str = "..", username: str = "", error_msg: str = "", **kwargs: Any
    ) -> bytes:
        """The login form (HTML-escaped values)."""
        return _LOGIN_FORM.format(
            error_msg=html.escape(error_msg or ""),
            username=html.escape(username or ""),
            from_page=html.escape(from_page or ""),
        ).encode("utf-8")

    def do_login(self, username: str, password: str, from_page: str = "..", **kwargs: Any) -> bool:
        """Check the credentials: show the form again, or log in and redirect."""
        error_msg = self.check_username_and_password(username, password)
        if error_msg:
            return _answer(self.login_screen(from_page, username, error_msg))
        serving.request.login = username
        _session()[self.session_key] = username
        self.on_login(username)
        raise HTTPRedirect(from_page or "/")

    def do_logout(self, from_page: str = "..", **kwargs: Any) -> bool:
        """Forget the user and redirect."""
        session = _session()
        username = session.get(self.session_key)
        session[self.session_key] = None
        if username:
            serving.request.login = None
            self.on_logout(username)
        raise HTTPRedirect(from_page)

    def do_check(self) -> bool | None:
        """Let a logged-in (or anonymous) user through, else show the login form."""
        session = _session()
        request = serving.request
        username = session.get(self.session_key)
        if not username:
            session[self.session_key] = username = self.anonymous()
        if not username:
            self._debug_message("no user: showing the login screen")
            return _answer(self.login_screen(url(qs=request.query_string)))
        request.login = username
        self.on_check(username)
        return None

    def _debug_message(self, message: str) -> None:
        if self.debug:
            morello.log(message, "TOOLS.SESSAUTH")

    def run(self) -> bool | None:
        """Route the request: login screen, login, logout or check."""
        request = serving.request
        path = request.path_info
        if path.endswith("login_screen"):
            return _answer(self.login_screen(**request.params))
        for action, method in (("do_login", self.do_login), ("do_logout", self.do_logout)):
            if path.endswith(action):
                if request.method != "POST":
                    serving.response.headers["Allow"] = "POST"
                    raise HTTPError(405)
                return method(**request.params)
        return self.do_check()


def session_auth(**kwargs: Any) -> bool | None:
    """The tool's callable: a :class:`SessionAuth` configured with ``kwargs``, run."""
    auth = SessionAuth()
    for name, value in kwargs.items():
        setattr(auth, name, value)
    return auth.run()


class SessionAuthTool(HandlerTool):
    """``tools.session_auth``: answers the login paths, checks the rest."""

    def __init__(self) -> None:
        super().__init__(session_auth)
