"""supervisord's XML-RPC interface, aware of dependencies, health and broken configs.

Installed in-process in place of ``supervisor.rpcinterface:make_main_rpcinterface``
(the config text keeps the stock factory, so ``getconfig`` output runs anywhere).
"""

from __future__ import annotations

import time
from typing import Any

from supervisor.process import ProcessStates
from supervisor.rpcinterface import SupervisorNamespaceRPCInterface, make_main_rpcinterface
from supervisor.xmlrpc import Faults, RPCError

from ..errors import ConfigError
from ..protocol import HEALTH_KEY, NEVER_STARTS


class ProjectRPCInterface(SupervisorNamespaceRPCInterface):  # type: ignore[misc]
    def getProcessInfo(self, name: str) -> dict[str, Any]:  # XML-RPC name
        info: dict[str, Any] = super().getProcessInfo(name)
        orchestrator = getattr(self.supervisord, "orchestrator", None)
        if orchestrator is None:
            return info
        _, process = self._getGroupAndProcess(name)
        waiting, health = orchestrator.describe(process)
        if waiting and info["state"] in (ProcessStates.STOPPED, ProcessStates.EXITED):
            # Shown as starting: it will start by itself once its dependencies are met.
            if not waiting.startswith(NEVER_STARTS):
                info["state"] = ProcessStates.STARTING
                info["statename"] = "STARTING"
            info["description"] = waiting
        if health:
            info[HEALTH_KEY] = health
            info["description"] = f"{info['description']}, {health}".lstrip(", ")
        return info

    def startProcess(self, name: str, wait: bool = True) -> Any:
        orchestrator = getattr(self.supervisord, "orchestrator", None)
        _, process = self._getGroupAndProcess(name)
        if orchestrator is not None and process is not None:
            state = process.get_state()
            reason = orchestrator.blocked_by(process)
            if reason is not None and state not in (ProcessStates.STARTING, ProcessStates.RUNNING):
                if reason.startswith(NEVER_STARTS):
                    raise RPCError(Faults.SPAWN_ERROR, f"{name}: {reason}")
                # Accepted: it starts as soon as its dependencies are met.
                process.spawn()
                return True
        return super().startProcess(name, wait)

    def stopProcess(self, name: str, wait: bool = True) -> Any:
        orchestrator = getattr(self.supervisord, "orchestrator", None)
        group, process = self._getGroupAndProcess(name)
        if orchestrator is not None and process is not None:
            key = (group.config.name, process.config.name)
            if orchestrator.waiting.pop(key, None) and process.get_state() not in (
                ProcessStates.STARTING,
                ProcessStates.RUNNING,
                ProcessStates.BACKOFF,
            ):
                # It never started, so supervisord would autostart (and re-gate) it on
                # its next transition: count it as started once, as a stopped one is.
                process.laststart = process.laststart or time.time()
                return True  # it was only waiting: now it no longer will start
        return super().stopProcess(name, wait)

    def sendProcessStdin(self, name: str, chars: Any) -> Any:
        result = super().sendProcessStdin(name, chars)
        activity = getattr(self.supervisord, "activity", None)
        if activity is not None:
            # The loop registers pipes only after a change: this one now has data to write.
            activity.touch(self._getGroupAndProcess(name)[1])
        return result

    def restart(self) -> Any:
        # Refuse a reload that would stop everything and then fail to read the config.
        check = getattr(self.supervisord.options, "check_config", None)
        if check is not None:
            try:
                check()
            except ConfigError as error:
                raise RPCError(Faults.CANT_REREAD, str(error)) from None
        return super().restart()


def make_rpcinterface(supervisord: Any, **config: Any) -> ProjectRPCInterface:
    return ProjectRPCInterface(supervisord)


def swap_factories(factories: list[tuple[str, Any, dict[str, Any]]]) -> list[Any]:
    """Replace the stock main interface factory with ours, keep every other one."""
    return [
        (name, make_rpcinterface if factory is make_main_rpcinterface else factory, extra)
        for name, factory, extra in factories
    ]
