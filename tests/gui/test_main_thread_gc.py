"""While a window is open, garbage cycles (which may hold Qt objects) are freed on the Qt thread, never on the
worker thread that happened to allocate: freeing Qt objects there can deadlock against the Qt thread."""

from __future__ import annotations

import gc
import threading

from PySide6.QtCore import QObject

from detr_studio.app.main_thread_gc import MainThreadCollector


class _Cycle:
    """A reference cycle holding a Qt object; records the thread that frees it."""

    def __init__(self, freed_on: list[str]):
        self.freed_on = freed_on
        self.me = self
        self.qt = QObject()

    def __del__(self):
        self.freed_on.append(threading.current_thread().name)


def test_a_cycle_made_on_the_qt_thread_is_freed_there_though_a_worker_allocates_past_the_threshold(
    qtbot, window
):
    assert not gc.isenabled()
    freed_on: list[str] = []
    _Cycle(freed_on)  # garbage at once; nothing collects it before the worker allocates
    kept: list[list] = []
    worker = threading.Thread(
        target=lambda: kept.extend([] for _ in range(50 * gc.get_threshold()[0])), name="allocator"
    )
    worker.start()
    worker.join()
    assert freed_on == []  # automatic collection would have freed it on "allocator"
    qtbot.waitUntil(lambda: bool(freed_on), timeout=5_000)
    assert freed_on == [threading.current_thread().name]


def test_automatic_collection_comes_back_when_the_last_window_shuts_down(make_window):
    held = MainThreadCollector.acquire()._users - 1  # what is held now (the lanes of live windows too)
    MainThreadCollector.release()
    for _ in range(held):
        MainThreadCollector.release()
    try:
        assert gc.isenabled()
        first, second = make_window(), make_window()
        assert not gc.isenabled()
        first.shutdown()
        first.shutdown()  # a second shutdown releases nothing more
        assert not gc.isenabled()
        second.shutdown()
        assert gc.isenabled()
    finally:
        for _ in range(held):
            MainThreadCollector.acquire()


def test_collect_due_collects_the_oldest_generation_past_its_threshold(monkeypatch):
    monkeypatch.setattr(gc, "get_threshold", lambda: (700, 10, 10))
    collected: list[int] = []
    monkeypatch.setattr(gc, "collect", collected.append)
    for counts, expected in [((5, 0, 0), -1), ((701, 3, 0), 0), ((701, 11, 2), 1), ((701, 11, 11), 2)]:
        monkeypatch.setattr(gc, "get_count", lambda counts=counts: counts)
        assert MainThreadCollector.collect_due() == expected
    assert collected == [0, 1, 2]
    monkeypatch.setattr(gc, "get_threshold", lambda: (0, 10, 10))  # turned off by threshold
    assert MainThreadCollector.collect_due() == -1
