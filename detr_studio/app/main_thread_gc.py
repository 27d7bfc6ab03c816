"""Python's cyclic garbage collector, run on the Qt thread only while background threads of the window live.

The collector normally runs in whichever thread happens to allocate past its threshold. When that is a worker
thread (the inference worker building a model, a task on the pool) and the garbage holds Qt objects — a closed
dialog, a menu, a lambda connected to a widget's signal — the Qt objects are destroyed on the worker thread.
Qt's destructor takes its signal-slot lock and then calls back into Python, which needs the GIL; the Qt thread,
holding the GIL, may at that moment be destroying a widget that wants the same lock. Both wait for ever.

So while background threads live, automatic collection is off and a timer on the Qt thread collects instead,
with Python's own generation thresholds: every cycle with a Qt object in it is then freed on the Qt thread.
Each background `Lane` (``background.py``, the window's one way to run work off the Qt thread) holds the
collector from its start to its shutdown; its threads run Python (building a model, decoding images) and so can
still trigger a collection, which is why the rule stays.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer

_INTERVAL_MS = 250


class MainThreadCollector(QObject):
    """Collects on a Qt timer. Use `acquire`/`release` (each background lane does): the first turns automatic
    collection off, the last turns it back on as it was."""

    _instance: MainThreadCollector | None = None

    def __init__(self) -> None:
        super().__init__()
        self._users = 0
        self._was_enabled = True  # set by the first `acquire`
        self._timer = QTimer(self)
        self._timer.setInterval(_INTERVAL_MS)
        self._timer.timeout.connect(self.collect_due)

    @classmethod
    def acquire(cls) -> MainThreadCollector:
        """Called on the Qt thread, by each lane as it is made."""
        if cls._instance is None:
            cls._instance = cls()
        collector = cls._instance
        if collector._users == 0:
            collector._was_enabled = gc.isenabled()
            gc.disable()
            collector._timer.start()
        collector._users += 1
        return collector

    @classmethod
    def release(cls) -> None:
        """Called on the Qt thread when a lane shuts down; safe to call more often than `acquire`."""
        collector = cls._instance
        if collector is None or collector._users == 0:
            return
        collector._users -= 1
        if collector._users == 0:
            collector._timer.stop()
            collector.collect_due()
            if collector._was_enabled:
                gc.enable()

    @staticmethod
    def collect_due() -> int:
        """Collect the oldest generation whose threshold is passed, as automatic collection would; returns
        the generation collected, or -1 when none was due."""
        counts, thresholds = gc.get_count(), gc.get_threshold()
        generation = -1
        if thresholds[0] == 0:  # collection turned off by threshold
            return generation
        for gen in range(3):
            if counts[gen] <= thresholds[gen]:
                break
            generation = gen
        if generation >= 0:
            gc.collect(generation)
        return generation
