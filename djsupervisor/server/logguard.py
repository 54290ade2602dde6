"""Log files that survive a full disk or an I/O error.

supervisor's file handlers let a failing write print a traceback (one per write) and
a failing flush or close raise out of supervisord's loop: with the log directory full,
the first program exit killed supervisord and every program with it. Here the same
handlers write unbuffered, so a failed write loses exactly that write and nothing is
left to fail at close; what could not be written is counted and reported, at most once
a minute per program, and each write tries again, so logging resumes by itself.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any

from supervisor import loggers

#: At most one "dropped" line per program in this many seconds.
REPORT_INTERVAL = 60.0


class DropMeter:
    """Count the log bytes one program (or supervisord) lost; report them rarely."""

    def __init__(
        self,
        name: str,
        report: Callable[[str], None],
        *,
        clock: Callable[[], float] = time.monotonic,
        interval: float = REPORT_INTERVAL,
    ) -> None:
        self.name = name
        self.report = report
        self.clock = clock
        self.interval = interval
        self.dropped = 0
        self.failing = False
        self.reason = ""
        self.last_report: float | None = None

    def failed(self, nbytes: int, path: str, error: OSError) -> None:
        self.dropped += nbytes
        self.failing = True
        self.reason = f"cannot write {path}: {error.strerror or error}"
        self.maybe_report()

    def succeeded(self) -> None:
        self.failing = False
        if self.dropped:
            self.maybe_report()

    def maybe_report(self) -> None:
        """Say how much was lost, unless this program already said so within the interval."""
        if not self.dropped:
            return
        now = self.clock()
        if self.last_report is not None and now - self.last_report < self.interval:
            return
        if self.failing:
            text = f"{self.name}: {self.reason}; dropped {self.dropped} bytes of log output"
        else:
            text = f"{self.name}: writing logs again; {self.dropped} bytes of log output dropped"
        # Set before reporting: the report may itself fail to reach a full disk.
        self.last_report = now
        self.dropped = 0
        self.report(text)


def _unbuffered(stream: Any) -> Any:
    # supervisor flushes after every record anyway, so a buffer only adds a way to
    # fail later (at close) with data that can no longer be attributed or dropped.
    if isinstance(stream, io.BufferedWriter):
        return stream.detach()
    return stream


class _Guarded:
    """Mixed into supervisor's file handlers: no write, flush or close ever raises."""

    meter: DropMeter
    stream: Any
    fmt: str
    mode: str
    baseFilename: str
    closed: bool
    #: Open the file again at the next write (False once closed for good).
    retry: bool = True

    def _format(self, record: Any) -> bytes:
        # supervisor's Handler.emit: raw bytes for a program's output, else formatted.
        if (
            self.fmt == "%(message)s"
            and isinstance(record.msg, bytes)
            and (not record.kw or record.kw == {"exc_info": None})
        ):
            return bytes(record.msg)
        return str(self.fmt % record.asdict()).encode("utf-8")

    def _open(self) -> OSError | None:
        """Open the file again (after a failed reopen or rollover); the error if it fails."""
        try:
            self.stream = _unbuffered(open(self.baseFilename, self.mode))  # noqa: SIM115
        except OSError as error:
            self.stream = None
            self.closed = True
            return error
        self.closed = False
        return None

    def emit(self, record: Any) -> None:
        try:
            data = self._format(record)
        except Exception:  # a bad format string must not stop supervisord either
            return
        if not data:
            return
        if self.closed or self.stream is None:
            if not self.retry:
                return  # closed on purpose (its process is gone): nothing to log to
            error = self._open()
            if error is not None:
                self.meter.failed(len(data), self.baseFilename, error)
                return
        view = memoryview(data)
        try:
            while view:
                written = self.stream.write(view)
                if not written:
                    raise OSError(f"wrote nothing of {len(view)} bytes")
                view = view[written:]
        except (OSError, ValueError) as error:
            oserror = error if isinstance(error, OSError) else OSError(str(error))
            self.meter.failed(len(view), self.baseFilename, oserror)
            return
        self.meter.succeeded()

    def flush(self) -> None:
        pass  # unbuffered: nothing waits

    def close(self) -> None:
        self.retry = False
        if self.stream is not None:
            try:
                loggers.Handler.close(self)
            except OSError as error:  # EIO at close (NFS, a failing disk)
                self.meter.failed(0, self.baseFilename, error)
        self.closed = True
        self.meter.maybe_report()

    def reopen(self) -> None:
        self.close()
        # A failed open is retried at the next write.
        self.retry = True
        error = self._open()
        if error is not None:
            self.meter.failed(0, self.baseFilename, error)

    def remove(self) -> None:
        try:
            loggers.FileHandler.remove(self)
        except OSError as error:
            self.meter.failed(0, self.baseFilename, error)


class GuardedFileHandler(_Guarded, loggers.FileHandler):  # type: ignore[misc]
    pass


class GuardedRotatingFileHandler(_Guarded, loggers.RotatingFileHandler):  # type: ignore[misc]
    def emit(self, record: Any) -> None:
        _Guarded.emit(self, record)
        if self.closed or self.stream is None:
            return
        try:
            self.doRollover()
        except OSError as error:
            self.meter.failed(0, self.baseFilename, error)
        if self.stream.closed:
            self.closed = True  # the new file could not be opened: retried next write
        else:
            self.stream = _unbuffered(self.stream)


def guard_handler(handler: Any, meter: DropMeter) -> Any:
    """Turn one of supervisor's file handlers, as opened, into its guarded version."""
    # In place: supervisor's handle_file() builds and opens the handler itself, so the
    # class is swapped on the finished object (its file and settings stay as they are).
    if isinstance(handler, loggers.RotatingFileHandler):
        handler.__class__ = GuardedRotatingFileHandler
    elif isinstance(handler, loggers.FileHandler):
        handler.__class__ = GuardedFileHandler
    else:
        return handler  # syslog, a bounded capture buffer, the console: no disk
    handler.meter = meter
    handler.stream = _unbuffered(handler.stream)
    return handler


class GuardedLogger(loggers.Logger):  # type: ignore[misc]
    """A supervisor logger whose file handlers are guarded as they are added."""

    meter: DropMeter | None = None

    def addHandler(self, hdlr: Any) -> None:
        if self.meter is not None:
            hdlr = guard_handler(hdlr, self.meter)
        super().addHandler(hdlr)


def guard_logger(logger: Any, meter: DropMeter) -> None:
    """Guard the file handlers ``logger`` already has, and any it gets later."""
    logger.handlers[:] = [guard_handler(h, meter) for h in logger.handlers]
    logger.__class__ = GuardedLogger
    logger.meter = meter


class LogGuard:
    """One drop meter per program (its stdout and stderr logs share it) and supervisord.

    Kept across reloads, so a reload does not reset the once-a-minute limit; each
    round's options set ``report`` to their own logger.
    """

    def __init__(self) -> None:
        self.report: Callable[[str], None] = lambda text: None
        self.meters: dict[str, DropMeter] = {}

    def meter(self, name: str) -> DropMeter:
        if name not in self.meters:
            self.meters[name] = DropMeter(name, lambda text: self.report(text))
        return self.meters[name]

    def logger(self, name: str, *args: Any, **kwargs: Any) -> GuardedLogger:
        logger = GuardedLogger(*args, **kwargs)
        logger.meter = self.meter(name)
        return logger
