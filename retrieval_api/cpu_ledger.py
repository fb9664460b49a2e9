"""The CPU time each call cost, from the process's CPU clock.

Searches overlap in a server's threads, and the model runs in threads of its own, so no one
thread's clock holds a call's cost. The ledger reads the process's clock whenever a call starts
or ends and shares the CPU spent since among the calls in flight: a lone call is charged exactly
what the process spent meanwhile, and over any period the calls together are charged all of it.
"""

from __future__ import annotations

import itertools
import threading
import time


class CpuLedger:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[int, float] = {}
        self._numbers = itertools.count()
        self._last = time.process_time()

    def _settle(self) -> None:
        """Shares the CPU since the last event among the open calls (the lock is held)."""
        now = time.process_time()
        if self._open:
            share = (now - self._last) / len(self._open)
            for number in self._open:
                self._open[number] += share
        self._last = now

    def start(self) -> int:
        with self._lock:
            self._settle()
            number = next(self._numbers)
            self._open[number] = 0.0
            return number

    def stop(self, number: int) -> float:
        """CPU seconds charged to the call."""
        with self._lock:
            self._settle()
            return self._open.pop(number)
