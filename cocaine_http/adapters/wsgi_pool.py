# Strategy: the WSGI app's threads, built for a worker's load rather than for generic futures.
# ThreadPoolExecutor makes a Future per job and wakes a thread per submit; under load every
# request then paid a futex wake and a GIL hand-over of its own. Here the loop appends a job to
# one deque and wakes a parked thread only when no thread is awake to take it: an awake thread
# runs job after job until the queue is empty, so a burst of requests costs one wake-up. So that
# a slow job does not hold up the ones queued behind it, the loop checks on a short timer while
# jobs wait: if no job finished since the last check, it wakes one more thread (up to the pool
# size). A parked thread blocks on its own lock (acquire; the waker releases it).
#
# The threads run with the SCHED_BATCH policy on Linux (`--no-wsgi-batch` leaves the
# default): a thread woken by the loop would otherwise preempt the loop's thread at once, find
# the GIL held, and sleep again, two context switches for nothing; a batch thread waits for
# the loop to block (in epoll, GIL released) and then runs the jobs queued meanwhile. Threads
# an app starts from a request inherit the policy, which changes only that: they never
# preempt on wake-up, and otherwise get their fair share as before.
#
# The pool also knows what each thread is doing, which is what lets the worker refuse to be
# wedged: `running` maps a thread to the job it started, `stuck` counts threads whose request
# the worker gave up on (timed out) and that have not returned, and `close()` drops the queued
# jobs at once and waits a bounded time for the running ones.
"""The WSGI thread pool: one job queue, few wake-ups, and a view of stuck threads."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from time import monotonic
from typing import Any

log = logging.getLogger("cocaine_http.wsgi")

#: Seconds between the loop's checks that queued jobs are being taken.
CHECK_INTERVAL = 0.002
#: Seconds between a parked thread's checks that the interpreter is not exiting.
PARK_POLL = 1.0

Job = Callable[[], None]


class Pool:
    """`size` threads running jobs submitted from the event loop.

    Args:
        size: the number of threads (started lazily, as jobs need them).
        loop: the loop that submits (its timer checks for jobs held up by slow ones).
        name: thread name prefix.
    """

    def __init__(self, size: int, loop: asyncio.AbstractEventLoop,
                 name: str = "cocaine-http-wsgi", batch: bool = True) -> None:
        self.size = size
        #: whether the threads take the SCHED_BATCH policy (see _batch_policy)
        self.batch = batch
        self.loop = loop
        self.name = name
        self.jobs: deque[Job] = deque()
        #: Jobs started, by thread index (cleared when the job returns).
        self.running: dict[int, Job] = {}
        #: Threads whose job the worker gave up on (see mark_stuck()) and that still run it.
        self.stuck_threads: set[int] = set()
        self.finished = 0
        self.closed = False
        self._lock = threading.Lock()
        self._parked: list[threading.Lock] = []
        self._threads: list[threading.Thread] = []
        self._awake = 0
        self._check: asyncio.TimerHandle | None = None
        self._checked_at = -1
        self._idle = threading.Condition(self._lock)

    def submit(self, job: Job) -> None:
        """Queue a job (from the loop); it runs on a pool thread."""
        with self._lock:
            if self.closed:
                return
            self.jobs.append(job)
            if self._awake == 0:
                self._wake()
        if self._check is None and self._awake < self.size:
            self._checked_at = self.finished
            self._check = self.loop.call_later(CHECK_INTERVAL, self._on_check)

    def _wake(self) -> None:
        """Wake a parked thread or start a new one (the lock is held)."""
        self._awake += 1
        if self._parked:
            self._parked.pop().release()
        elif len(self._threads) < self.size:
            park = threading.Lock()
            park.acquire()
            # Not daemon threads: threads an app starts from a request inherit that, and
            # would otherwise be cut off at exit (app.exit_within() bounds a stuck one).
            thread = threading.Thread(target=self._work, args=(len(self._threads), park),
                                      name=f"{self.name}-{len(self._threads)}")
            self._threads.append(thread)
            thread.start()
        else:
            self._awake -= 1

    def _on_check(self) -> None:
        self._check = None
        with self._lock:
            if not self.jobs or self.closed:
                return
            if self.finished == self._checked_at and self._awake < self.size:
                self._wake()  # no job returned in CHECK_INTERVAL: the awake ones are slow
        self._checked_at = self.finished
        self._check = self.loop.call_later(CHECK_INTERVAL, self._on_check)

    def _work(self, index: int, park: threading.Lock) -> None:
        if self.batch:
            _batch_policy()
        jobs = self.jobs
        running = self.running
        while True:
            try:
                job = jobs.popleft()
            except IndexError:
                with self._lock:
                    if jobs:
                        continue
                    self._awake -= 1
                    if self.closed:
                        self._idle.notify_all()
                        return
                    self._parked.append(park)
                    if not running:
                        self._idle.notify_all()
                while not park.acquire(timeout=PARK_POLL):
                    if not threading.main_thread().is_alive():  # exiting without close()
                        with self._lock:
                            if park in self._parked:
                                self._parked.remove(park)
                                return
                if self.closed:
                    return
                continue
            running[index] = job
            try:
                job()
            except BaseException:  # a job handles its own errors; this is a last resort
                log.exception("WSGI job failed")
            finally:
                del running[index]
                self.finished += 1
                if self.stuck_threads and index in self.stuck_threads:
                    with self._lock:
                        self.stuck_threads.discard(index)

    def mark_stuck(self, job: Job) -> bool:
        """The worker gave up on `job` (its session timed out): if a thread still runs it,
        count that thread as stuck until the job returns. Returns whether it was running."""
        with self._lock:
            for index, running in list(self.running.items()):
                if running is job:
                    self.stuck_threads.add(index)
                    return True
        return False

    @property
    def exhausted(self) -> bool:
        """Every thread is stuck in a request the worker gave up on."""
        return len(self.stuck_threads) >= self.size

    def close(self, timeout: float) -> int:
        """Drop the queued jobs, wake the parked threads, wait up to `timeout` seconds for
        the running jobs (from any thread but the pool's); returns how many were dropped."""
        with self._lock:
            self.closed = True
            dropped = len(self.jobs)
            self.jobs.clear()
            for park in self._parked:
                park.release()
            self._parked.clear()
            deadline = monotonic() + timeout
            while self.running and (left := deadline - monotonic()) > 0:
                self._idle.wait(left)
        if self._check is not None:
            self._check.cancel()
            self._check = None
        return dropped


def _batch_policy() -> None:
    """Mark the calling thread SCHED_BATCH (Linux): woken by the loop, it does not preempt
    the loop's thread, which holds the GIL it would wait for; it runs when the loop blocks."""
    policy = getattr(os, "SCHED_BATCH", None)
    if policy is None:
        return
    try:
        os.sched_setscheduler(0, policy, os.sched_param(0))
    except OSError:  # not permitted here: the default policy only costs extra switches
        pass
