"""The control endpoint's ``GET /``: the master's status as a page a person reads.

:func:`render` turns the ``/status`` document into one self-contained HTML
page: inline CSS, no script, no external asset (it may be read where only
the control port is reachable), a refresh every few seconds, and a workers
table that scrolls sideways on a narrow screen. Every value is escaped: the
document holds text that workers and the application chose (request paths).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from html import escape
from typing import Any

#: Seconds between the page's automatic reloads.
REFRESH_SECONDS = 5

_STYLE = """
:root{color-scheme:light dark;--fg:#1d232a;--dim:#5b6670;--bg:#fff;--line:#d8dde2;
--card:#f4f6f8;--ok:#1a7f37;--warn:#9a6700;--bad:#cf222e;--accent:#0b5cad}
@media (prefers-color-scheme:dark){:root{--fg:#e6e9ec;--dim:#9aa5ae;--bg:#14181c;
--line:#2e363d;--card:#1d2329;--ok:#4ac26b;--warn:#d4a72c;--bad:#ff6b6b;--accent:#6cb6ff}}
*{box-sizing:border-box}
body{margin:0 auto;max-width:72rem;padding:1rem;font:15px/1.45 system-ui,-apple-system,
"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
header{display:flex;flex-wrap:wrap;align-items:baseline;gap:.4rem 1rem}
h1{font-size:1.35rem;margin:0}
h1 small{font-weight:400;color:var(--dim)}
h2{font-size:1.05rem;margin:1.4rem 0 .5rem}
nav{margin-left:auto}
nav a{color:var(--accent);margin-left:.8rem}
.badge{display:inline-block;padding:.05rem .55rem;border-radius:1rem;font-size:.85rem;
font-weight:600;color:#fff;background:var(--ok)}
.badge.warn{background:var(--warn)}.badge.bad{background:var(--bad)}
.alert{border-left:4px solid var(--bad);background:var(--card);padding:.6rem .8rem;
margin:.8rem 0}
.alert.warn{border-color:var(--warn)}
dl{display:flex;flex-wrap:wrap;gap:.5rem;margin:.8rem 0 0}
dl div{flex:1 1 auto;min-width:7.5rem;background:var(--card);border-radius:.4rem;
padding:.45rem .7rem}
dt{font-size:.78rem;color:var(--dim);text-transform:uppercase;letter-spacing:.03em}
dd{margin:0;font-size:1.05rem;font-weight:600;overflow-wrap:anywhere}
.scroll{overflow-x:auto;border:1px solid var(--line);border-radius:.4rem}
table{border-collapse:collapse;width:100%;white-space:nowrap;font-variant-numeric:tabular-nums}
th,td{padding:.4rem .65rem;text-align:right;border-bottom:1px solid var(--line)}
th{font-size:.78rem;color:var(--dim);text-transform:uppercase;background:var(--card)}
tr:last-child td{border-bottom:0}
th:nth-child(-n+4),td:nth-child(-n+4),.text{text-align:left}
td.ready{color:var(--ok);font-weight:600}td.booting{color:var(--warn);font-weight:600}
td.retiring{color:var(--dim);font-weight:600}
.dim{color:var(--dim)}
ol{list-style:none;padding:0;margin:0;border:1px solid var(--line);border-radius:.4rem}
li{padding:.3rem .7rem;border-bottom:1px solid var(--line);overflow-wrap:anywhere}
li:last-child{border-bottom:0}
time{color:var(--dim);font-variant-numeric:tabular-nums;margin-right:.6rem}
footer{margin-top:1rem;font-size:.8rem;color:var(--dim)}
"""


def render(status: dict[str, Any], now: float | None = None) -> str:
    """The HTML page for a ``/status`` document (``now``: wall-clock time, for the footer)."""
    master = status.get("master", {})
    workers = status.get("workers", [])
    events = status.get("events", [])
    now = time.time() if now is None else now
    title = f"morello master {master.get('pid', '?')}"
    return "".join(
        [
            '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">',
            f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>",
            _header(master),
            *_alerts(master, now),
            _summary(master),
            f"<h2>Workers ({len(workers)})</h2>",
            _workers_table(workers),
            "<h2>Recent events</h2>",
            _events(events, now),
            f"<footer>Updated {escape(_clock(now))} UTC; this page reloads every "
            f"{REFRESH_SECONDS} s. The same data: <a href=\"/status\">/status</a> (JSON), "
            '<a href="/metrics">/metrics</a> (Prometheus), <a href="/routes">/routes</a>.'
            "</footer></body></html>\n",
        ]
    )


def _header(master: dict[str, Any]) -> str:
    state = str(master.get("state", "unknown"))
    kind = {"running": "", "halted": " bad"}.get(state, " warn")
    return (
        f"<header><h1>morello <small>{escape(str(master.get('version', '')))}</small></h1>"
        f'<span class="badge{kind}">{escape(state)}</span>'
        f"<span class=\"dim\">master pid {escape(str(master.get('pid', '?')))}</span>"
        '<nav><a href="/status">/status</a><a href="/metrics">/metrics</a></nav></header>'
    )


def _alerts(master: dict[str, Any], now: float) -> Iterable[str]:
    if master.get("halted"):
        yield f'<p class="alert"><strong>Halted:</strong> {escape(str(master["halted"]))}</p>'
    rollout = master.get("rollout")
    if rollout:
        yield (
            f'<p class="alert warn"><strong>Rolling restart</strong> from generation '
            f"{escape(str(rollout.get('from_generation')))} to "
            f"{escape(str(master.get('generation')))}: {escape(str(rollout.get('ready')))} "
            f"of {escape(str(rollout.get('target')))} new workers ready."
            f"{escape(_canary_text(rollout.get('canary')))}</p>"
        )
    last = master.get("last_rollout")
    if isinstance(last, dict) and last.get("state") != "complete" and not rollout:
        # A rollout that did not go through: the old generation serves, and here is why.
        yield (
            f'<p class="alert"><strong>Last rolling restart</strong> to generation '
            f"{escape(str(last.get('to_generation')))} (at {escape(_clock(last.get('time'), now))} "
            f"UTC) {escape(str(last.get('state')))}; generation "
            f"{escape(str(master.get('generation')))} keeps serving.</p>"
        )


def _canary_text(canary: Any) -> str:
    """`` Canary pid 12: judging, 20s left, 340 requests (...).`` or nothing."""
    if not isinstance(canary, dict):
        return ""
    parts = [str(canary.get("state"))]
    if canary.get("seconds_left") is not None:
        parts.append(f"{_duration(canary['seconds_left'])} left")
    requests, needed = canary.get("requests"), canary.get("min_requests")
    if isinstance(requests, int):
        short = isinstance(needed, int) and requests < needed
        parts.append(f"{requests} requests" + (f" of the {needed} needed" if short else ""))
    summary = f" ({canary['summary']})" if canary.get("summary") else ""
    pid = f" pid {canary['pid']}" if canary.get("pid") else ""
    return f" Canary{pid}: {', '.join(parts)}{summary}."


def _summary(master: dict[str, Any]) -> str:
    active = master.get("active_workers")
    target = master.get("target_workers")
    rollout = master.get("rollout")
    items = [
        ("Uptime", _duration(master.get("uptime"))),
        ("Generation", master.get("generation")),
        ("Workers", f"{active} of {target}" if active is not None else target),
        ("Rollout", _rollout_cell(rollout, master.get("last_rollout"))),
        ("Boot failures", master.get("boot_failures", 0)),
        ("Restarts", master.get("restarts", 0)),
        ("Binds", ", ".join(map(str, master.get("binds", []))) or "-"),
    ]
    cells = "".join(
        f"<div><dt>{escape(name)}</dt><dd>{escape(_text(value))}</dd></div>"
        for name, value in items
    )
    return f"<dl>{cells}</dl>"


def _rollout_cell(rollout: Any, last: Any) -> str:
    """The summary's Rollout cell: progress of the one under way, else how the last one ended."""
    if rollout:
        canary = rollout.get("canary")
        if isinstance(canary, dict) and canary.get("state") != "passed":
            return f"canary {canary.get('state')}"
        return f"{rollout['ready']} / {rollout['target']} ready"
    if isinstance(last, dict):
        return str(last.get("state", "none")).split(":")[0]
    return "none"


#: The workers table's columns, and whether each holds text (left-aligned) or a number.
_COLUMNS = (("id", False), ("pid", False), ("gen", False), ("state", False), ("age", False),
            ("requests", False), ("req/s", False), ("busy / threads", False),
            ("oldest request", True), ("rss", False), ("recycled for", True))  # fmt: skip


def _workers_table(workers: list[dict[str, Any]]) -> str:
    if not workers:
        return '<p class="dim">No workers.</p>'
    head = "".join(
        f'<th class="text">{escape(name)}</th>' if text else f"<th>{escape(name)}</th>"
        for name, text in _COLUMNS
    )
    rows = "".join(_worker_row(worker) for worker in workers)
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    return f'<div class="scroll">{table}</div>'


def _worker_row(worker: dict[str, Any]) -> str:
    state = str(worker.get("state", "?"))
    oldest = worker.get("oldest_request")
    if isinstance(oldest, dict):
        request = f"{_duration(oldest.get('age'))} {oldest.get('path', '')}"
    else:
        request = "-"
    rate = worker.get("requests_per_second")
    cells = [
        ("", worker.get("id")),
        ("", worker.get("pid")),
        ("", worker.get("generation")),
        (state if state in ("ready", "booting", "retiring") else "", state),
        ("", _duration(worker.get("age"))),
        ("", worker.get("requests", 0)),
        ("", "-" if rate is None else f"{rate:.1f}"),
        ("", f"{worker.get('busy_threads', 0)} / {worker.get('threads', 0)}"),
        ("text", request),
        ("", _size(worker.get("rss"))),
        ("text", worker.get("recycle_reason") or worker.get("retired_for") or "-"),
    ]
    tds = "".join(
        (f'<td class="{css}">' if css else "<td>") + f"{escape(_text(value))}</td>"
        for css, value in cells
    )
    return f"<tr>{tds}</tr>"


def _events(events: list[dict[str, Any]], now: float) -> str:
    if not events:
        return '<p class="dim">Nothing yet.</p>'
    items = "".join(
        f"<li><time>{escape(_clock(event.get('time'), now))}</time>"
        f"{escape(str(event.get('text')))}</li>"
        for event in reversed(events)  # newest first
    )
    return f"<ol>{items}</ol>"


# -- formatting ------------------------------------------------------------------


def _text(value: Any) -> str:
    return "-" if value is None else str(value)


def _duration(seconds: Any) -> str:
    """``3725`` -> ``1h 2m``: two units at most, enough at a glance."""
    if not isinstance(seconds, int | float):
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {minutes}m" if hours else f"{minutes}m {secs}s"


def _size(size: Any) -> str:
    if not isinstance(size, int | float):
        return "-"
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def _clock(when: Any, now: float | None = None) -> str:
    """``when`` in UTC: the time of day, with the date unless it is ``now``'s day."""
    if not isinstance(when, int | float):
        return "-"
    moment = time.gmtime(when)
    if now is not None and moment[:3] == time.gmtime(now)[:3]:
        return time.strftime("%H:%M:%S", moment)
    return time.strftime("%Y-%m-%d %H:%M:%S", moment)
