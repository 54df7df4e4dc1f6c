"""Hook points: callbacks that run at fixed stages of every request."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import morello
from morello.errors import HTTPError, HTTPRedirect, InternalRedirect

#: The stages of a request, in the order they run.
HOOK_POINTS = (
    "on_start_resource",
    "before_request_body",
    "before_handler",
    "before_finalize",
    "on_end_resource",
    "on_end_request",
    "before_error_response",
    "after_error_response",
)


class Hook:
    """A callback with its keyword arguments, a priority and a failsafe flag.

    Lower priorities run first (default: ``callback.priority`` or 50). A
    failsafe hook still runs after an earlier hook at the same point raised.
    """

    __slots__ = ("callback", "failsafe", "priority", "kwargs")

    def __init__(
        self,
        callback: Callable[..., Any],
        failsafe: bool | None = None,
        priority: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.callback = callback
        self.failsafe = getattr(callback, "failsafe", False) if failsafe is None else failsafe
        self.priority = getattr(callback, "priority", 50) if priority is None else priority
        self.kwargs = kwargs

    def __lt__(self, other: Hook) -> bool:
        return self.priority < other.priority

    def __call__(self) -> Any:
        return self.callback(**self.kwargs)

    def __repr__(self) -> str:
        name = getattr(self.callback, "__name__", repr(self.callback))
        return f"Hook({name}, failsafe={self.failsafe}, priority={self.priority}, {self.kwargs!r})"


class HookMap(dict):
    """Hook point name -> list of :class:`Hook`."""

    def __init__(self, points: Iterable[str] | None = None) -> None:
        super().__init__()
        for point in points or ():
            self[point] = []

    def __missing__(self, point: str) -> list[Hook]:
        # Per-request maps start with the non-empty points only (cheaper to
        # copy); a standard point gets its list on first use.
        if point not in HOOK_POINTS:
            raise KeyError(point)
        hooks: list[Hook] = []
        self[point] = hooks
        return hooks

    def copy(self) -> HookMap:
        new = HookMap()
        dict.update(new, {point: hooks[:] for point, hooks in self.items() if hooks})
        return new

    def attach(
        self,
        point: str,
        callback: Callable[..., Any],
        failsafe: bool | None = None,
        priority: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Add ``callback`` (called with ``kwargs``) at ``point``."""
        self[point].append(Hook(callback, failsafe, priority, **kwargs))

    def run(self, point: str) -> None:
        """Run the hooks at ``point`` by priority.

        After a hook raises, only failsafe hooks still run; then the latest
        exception is re-raised. Unexpected errors are logged as they happen
        because a later failsafe hook might hide them.
        """
        hooks = self.get(point)
        if hooks:
            self.run_hooks(sorted(hooks) if len(hooks) > 1 else hooks)
        elif hooks is None and point not in HOOK_POINTS:
            raise KeyError(point)

    @classmethod
    def run_hooks(cls, hooks: Iterable[Hook]) -> None:
        """Run ``hooks`` in the given order with failsafe semantics."""
        error: BaseException | None = None
        for hook in hooks:
            if error is not None and not hook.failsafe:
                continue
            try:
                hook()
            except (KeyboardInterrupt, SystemExit):
                raise
            except (HTTPError, HTTPRedirect, InternalRedirect) as exc:
                error = exc
            except Exception as exc:
                error = exc
                morello.log(traceback=True, severity=40)
        if error is not None:
            raise error

    def __repr__(self) -> str:
        return f"{type(self).__module__}.HookMap(points={sorted(self)!r})"
