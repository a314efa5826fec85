"""The open cases of an instance, as the definition deployed now describes them: which handler
serves each (thread, event), with the `WaitInfo` it decides on.

Finding them builds the instance's definition from its data, which costs far more than reading
the row; the inbox asks for fifty instances at every refresh. So the answer is kept per
instance *version* (every commit moves it), in a small least-recently-used table: a hit is
always the answer the instance's current row would give. What depends on the clock
(escalation, who may decide now) is worked out from the kept handler and info at each call,
never kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from signoff.engine.core.enums import ThreadStatus
from signoff.engine.core.handlers import Handler, Services, WaitInfo
from signoff.engine.core.state import InstanceState
from signoff.engine.core.stored import data_unreadable, read_state
from signoff.engine.core.tree import Statement, walk
from signoff.engine.core.waits import Wait
from signoff.engine.core.workflow import Workflow

Cases = dict[tuple[str, str], tuple[Handler, WaitInfo]]


class OpenCases:
    def __init__(self, services: Services, size: int = 4096) -> None:
        self.services = services
        self.size = size
        self._kept: OrderedDict[tuple[str, int, type[Workflow]], Cases] = OrderedDict()
        self._lock = threading.Lock()

    def of(
        self,
        instance_id: str,
        version: int,
        cls: type[Workflow] | None,
        data: str,
        state: InstanceState | str,
        build: Callable[[], Statement] | None = None,
    ) -> Cases:
        """(thread, event) -> (handler, wait info) for each open case of a waiting thread;
        {} when the workflow is not registered or its definition cannot be built. `build` gives
        the definition when the caller has it built already. A stored state or data that
        cannot be read raises `CorruptState`."""
        if cls is None:
            return {}
        key = (instance_id, version, cls)
        with self._lock:
            found = self._kept.get(key)
            if found is not None:
                self._kept.move_to_end(key)
                return found
        if isinstance(state, str):
            state = read_state(instance_id, state)
        found = self._find(instance_id, cls, data, state, build)
        with self._lock:
            self._kept[key] = found
            while len(self._kept) > self.size:
                self._kept.popitem(last=False)
        return found

    def _find(
        self,
        instance_id: str,
        cls: type[Workflow],
        data: str,
        state: InstanceState,
        build: Callable[[], Statement] | None,
    ) -> Cases:
        waiting = [t for t in state.threads.values() if t.status == ThreadStatus.WAITING and t.at]
        if not waiting:
            return {}
        try:
            definition = build() if build else cls.model_validate_json(data).definition()
        except Exception as exc:  # the workflow's own code: the stored descriptions will do
            corrupt = data_unreadable(instance_id, data, exc)
            if corrupt is not None:  # unless the data cannot be read at all
                raise corrupt from None
            return {}
        waits = {s.name: s for s in walk(definition) if isinstance(s, Wait)}
        found: Cases = {}
        for t in waiting:
            wait = waits.get(t.at or "")
            for c in t.cases:
                on = wait.case(c.event) if wait is not None else None
                if on is None:
                    continue
                info = WaitInfo(
                    instance_id,
                    cls.registered_name(),
                    t.id,
                    t.at or "",
                    c.event,
                    c.began_at,
                    c.stored,
                    self.services,
                    starter=state.started_by,
                    key=t.wait_key,
                    data_json=data,
                )
                found[(t.id, c.event)] = (on.handler, info)
        return found
