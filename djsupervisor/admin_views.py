"""The admin's Programs page: the table, the actions, the logs (see ``urls.py``).

Every view runs inside ``admin.site.admin_view`` (staff login, CSRF, never cached) and
checks its permission itself. Nothing happens on GET; every action is a POST, answered
with supervisord's verdict and written to the admin's ``LogEntry`` history.
"""

from __future__ import annotations

import datetime
import signal as signals
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseRedirect,
    JsonResponse,
)
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from .client.api import connect_here
from .client.info import ProcessInfo
from .client.stats import human_bytes
from .client.supervisor import Supervisor
from .errors import ConfigError, NoSuchProcess, NotRunning, SupervisorError
from .models import Programs

VIEW = "djsupervisor.view_programs"
CONTROL = "djsupervisor.control_programs"
ACTIONS = ("start", "stop", "restart", "signal")
#: The signals offered per program (any name supervisord accepts works in a POST).
SIGNALS = ("HUP", "TERM", "INT", "QUIT", "USR1", "USR2", "KILL")
#: How much of a log the log view shows at first, and at most per poll.
TAIL_BYTES = 16 * 1024
START_HINT = "python manage.py supervisor --daemonize"


@dataclass(frozen=True)
class Row:
    """One line of the table: a process and what the page shows of it."""

    info: ProcessInfo
    command: str
    uptime: str
    rss: str


def _may(request: HttpRequest, permission: str) -> bool:
    # Any user model the admin accepts has has_perm (superusers have every permission).
    return bool(cast(Any, request.user).has_perm(permission))


def _permitted(request: HttpRequest, permission: str) -> None:
    if not _may(request, permission):
        raise PermissionDenied


def _uptime(info: ProcessInfo, now: datetime.datetime) -> str:
    if info.state != "RUNNING" or info.started_at is None:
        return ""
    seconds = max(int((now - info.started_at).total_seconds()), 0)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _table_context(request: HttpRequest) -> dict[str, Any]:
    """The table's context: rows, or why there are none."""
    context: dict[str, Any] = {"can_control": _may(request, CONTROL), "signals": SIGNALS}
    try:
        client = connect_here()
        infos = client.status(stats=True)
        commands = client.commands()
    except (NotRunning, ConfigError) as error:
        return {**context, "rows": [], "down": str(error), "start_hint": START_HINT}
    except SupervisorError as error:
        return {**context, "rows": [], "error": str(error)}
    now = datetime.datetime.now(datetime.timezone.utc)
    rows = [
        Row(info, commands.get(info.namespec, ""), _uptime(info, now), human_bytes(info.rss))
        for info in infos
    ]
    return {**context, "rows": rows}


@require_GET
def programs(request: HttpRequest) -> HttpResponse:
    """The page: every process, the action buttons, the recent actions."""
    _permitted(request, VIEW)
    content_type = ContentType.objects.get_for_model(Programs)
    recent = LogEntry.objects.filter(content_type=content_type).select_related("user")[:10]
    context = {
        **admin.site.each_context(request),
        **_table_context(request),
        "title": "Programs",
        "opts": Programs._meta,
        "recent_actions": recent,
    }
    return render(request, "djsupervisor/programs.html", context)


@require_GET
def table(request: HttpRequest) -> HttpResponse:
    """The table's rows alone, for the page's refresh."""
    _permitted(request, VIEW)
    return render(request, "djsupervisor/table.html", _table_context(request))


def _perform(client: Supervisor, action: str, name: str, sig: str) -> str:
    """Run one action; return what happened, or raise ``SupervisorError``."""
    names = ["all"] if name == "all" else [name]
    if action == "start":
        client.start(*names)
        return f"started {name}"
    if action == "stop":
        client.stop(*names)
        return f"stopped {name}"
    if action == "restart":
        client.restart(*names)
        return f"restarted {name}"
    client.signal(name, sig)
    return f"sent SIG{sig} to {name}"


def _log_action(request: HttpRequest, name: str, message: str) -> None:
    LogEntry.objects.create(
        user_id=request.user.pk,
        content_type=ContentType.objects.get_for_model(Programs),
        object_id=name,
        object_repr=name[:200],
        action_flag=CHANGE,
        change_message=message,
    )


@require_POST
def action(request: HttpRequest) -> HttpResponse:
    """Start, stop, restart or signal one process, a group (``group:*``) or ``all``."""
    _permitted(request, CONTROL)
    what = request.POST.get("action", "")
    name = request.POST.get("name", "").strip()
    sig = request.POST.get("signal", "").strip().upper().removeprefix("SIG")
    if what not in ACTIONS or not name:
        return HttpResponseBadRequest("action must be start, stop, restart or signal, with a name")
    if what == "signal" and (name == "all" or f"SIG{sig}" not in signals.Signals.__members__):
        return HttpResponseBadRequest("signal needs a program (or group:*) and a signal name")
    ok = True
    try:
        said = _perform(connect_here(), what, name, sig)
    except SupervisorError as error:
        ok, said = False, f"{what} {name} failed: {error}"
    _log_action(request, name, said)
    if "application/json" in request.headers.get("Accept", ""):
        return JsonResponse({"ok": ok, "message": said})
    (messages.success if ok else messages.error)(request, said)
    return HttpResponseRedirect(reverse("djsupervisor:programs"))


def _known(client: Supervisor, name: str) -> ProcessInfo:
    try:
        [info] = client.status(name)
    except NoSuchProcess:
        raise Http404(f"no such program: {name}") from None
    except ValueError:  # a group name selects several
        raise Http404(f"not one program: {name}") from None
    return info


def _stream(request: HttpRequest) -> str:
    return "stderr" if request.GET.get("stream") == "stderr" else "stdout"


def _with_client(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Answer 503 with the reason when supervisord cannot be reached."""

    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        _permitted(request, VIEW)
        try:
            return view(request, connect_here(), *args, **kwargs)
        except SupervisorError as error:
            return HttpResponse(str(error), status=503, content_type="text/plain")

    return wrapped


@require_GET
@_with_client
def log(request: HttpRequest, client: Supervisor, name: str) -> HttpResponse:
    """A process's log tail, following live (``programs.js`` polls ``log_tail``)."""
    info = _known(client, name)
    stream = _stream(request)
    text, offset, _ = client.log_since(name, 0, limit=TAIL_BYTES, stderr=stream == "stderr")
    context = {
        **admin.site.each_context(request),
        "title": f"Log of {info.namespec}",
        "opts": Programs._meta,
        "info": info,
        "stream": stream,
        "text": text,
        "offset": offset,
        "has_file": (info.stderr_logfile if stream == "stderr" else info.stdout_logfile)
        is not None,
    }
    return render(request, "djsupervisor/log.html", context)


@require_GET
@_with_client
def log_tail(request: HttpRequest, client: Supervisor, name: str) -> HttpResponse:
    """What the log gained since ``offset``, as JSON: one short request per poll."""
    _known(client, name)
    try:
        offset = max(int(request.GET.get("offset", "0")), 0)
    except ValueError:
        return HttpResponseBadRequest("offset must be a number")
    text, offset, overflow = client.log_since(
        name, offset, limit=TAIL_BYTES, stderr=_stream(request) == "stderr"
    )
    return JsonResponse({"text": text, "offset": offset, "overflow": overflow})


@require_GET
@_with_client
def download(request: HttpRequest, client: Supervisor, name: str) -> HttpResponseBase:
    """The whole current log file (not its rotated backups), as an attachment."""
    info = _known(client, name)
    stream = _stream(request)
    path = info.stderr_logfile if stream == "stderr" else info.stdout_logfile
    if path is None:
        raise Http404(f"{name} has no {stream} log file")
    try:
        handle = path.open("rb")
    except OSError:
        raise Http404(f"{name}'s {stream} log file cannot be read") from None
    filename = f"{info.namespec.replace(':', '_')}-{stream}.log"
    return FileResponse(handle, as_attachment=True, filename=filename, content_type="text/plain")
