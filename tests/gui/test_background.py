"""The window's one kind of background work, `Lane`: results, errors and progress on the Qt thread, stale
requests dropped (the newest of a key wins, an unwanted one never runs), urgent requests first and in between
a long job's steps, nothing run after shutdown."""

from __future__ import annotations

import threading

import pytest

from detr_studio.app.background import Lane


@pytest.fixture
def lane():
    made = Lane("test")
    yield made
    made.shutdown(wait_s=5.0)


def test_a_result_arrives_on_the_qt_thread_through_the_event_loop_never_inside_submit(qtbot, lane):
    got: list[tuple[int, str]] = []
    finished = threading.Event()

    def quick() -> int:
        finished.set()
        return 7

    lane.submit(quick, done=lambda value: got.append((value, threading.current_thread().name)))
    finished.wait(5)
    assert got == []  # what follows a request can be connected after submitting it
    qtbot.waitUntil(lambda: bool(got), timeout=5_000)
    assert got == [(7, threading.main_thread().name)] and lane.pending == 0


def test_an_error_goes_to_failed_with_the_exception_itself(qtbot, lane):
    errors: list[BaseException] = []

    def broken() -> None:
        raise ValueError("photo.jpg: truncated")

    lane.submit(broken, done=lambda _v: errors.append(None), failed=errors.append)
    qtbot.waitUntil(lambda: bool(errors), timeout=5_000)
    assert isinstance(errors[0], ValueError) and str(errors[0]) == "photo.jpg: truncated"


def test_the_newest_request_of_a_key_wins_and_an_unwanted_one_never_runs(qtbot, lane):
    gate = threading.Event()
    ran: list[str] = []
    lane.submit(gate.wait, 5)  # keeps the lane busy while the requests pile up
    for name in ("a", "b", "c"):
        lane.submit(ran.append, name, key="shown image")
    lane.submit(ran.append, "stale", wanted=lambda: False)
    gate.set()
    assert lane.wait(5.0)
    qtbot.waitUntil(lambda: lane.pending == 0, timeout=5_000)
    assert ran == ["c"]


def test_urgent_requests_go_first_in_order_and_a_long_job_lets_them_in_between(qtbot, lane):
    order: list[str] = []
    started = threading.Event()
    proceed = threading.Event()

    def long_job(job) -> None:
        for step in range(3):
            order.append(f"step {step}")
            if step == 0:
                started.set()
                proceed.wait(5)
            job.serve_urgent()

    lane.submit(long_job, context=True)
    started.wait(5)
    lane.submit(order.append, "plain")
    lane.submit(order.append, "load", urgent=True)
    lane.submit(order.append, "predict", urgent=True)
    proceed.set()
    assert lane.wait(5.0)
    assert order == ["step 0", "load", "predict", "step 1", "step 2", "plain"]


def test_progress_and_cancel_reach_a_job_with_context(qtbot, lane):
    seen: list[int] = []
    go_on = threading.Event()

    def counting(job) -> str:
        for k in range(1000):
            if job.cancelled:
                return "cancelled"
            job.report(k)
            if k == 2:
                go_on.wait(5)
        return "done"

    outcome: list[str] = []
    job = lane.submit(counting, context=True, progress=seen.append, done=outcome.append)
    qtbot.waitUntil(lambda: len(seen) >= 3, timeout=5_000)
    job.cancel()
    go_on.set()
    qtbot.waitUntil(lambda: bool(outcome), timeout=5_000)
    assert outcome == ["cancelled"] and seen[:3] == [0, 1, 2]


def test_a_request_after_shutdown_is_dropped_quietly(qtbot):
    lane = Lane("closing")
    ran: list[int] = []
    lane.submit(ran.append, 1)
    qtbot.waitUntil(lambda: lane.pending == 0, timeout=5_000)
    lane.shutdown(wait_s=5.0)
    lane.shutdown()  # twice is fine
    lane.submit(ran.append, 2)  # a window closing while a project opens does this
    qtbot.wait(100)
    assert ran == [1] and lane.pending == 0


def test_a_lane_keeps_the_collector_on_the_qt_thread_until_it_shuts_down(qtbot):
    import gc

    from detr_studio.app.main_thread_gc import MainThreadCollector

    before = MainThreadCollector.acquire()._users - 1
    MainThreadCollector.release()
    lane = Lane("collecting")
    assert MainThreadCollector.acquire()._users - 1 == before + 1 and not gc.isenabled()
    MainThreadCollector.release()
    lane.shutdown()
    lane.shutdown()
    assert MainThreadCollector.acquire()._users - 1 == before
    MainThreadCollector.release()
