"""How the worker process ends: a bounded shutdown, and a loud exit instead of a live process doing nothing."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from functools import partial

import faust

from streams.logs import bound_repeats

logger = logging.getLogger(__name__)

EXIT_FAILED = 70  # EX_SOFTWARE: the worker stopped working; a supervisor should restart it
EXIT_FORCED = 143  # 128 + SIGTERM: asked to stop, and the graceful stop did not finish in time


def exit_now(code: int, reason: str, exc: BaseException | None = None) -> None:
    """Log why, flush the logs and end the process at once (uncommitted events are replayed on restart)."""
    detail = "".join(traceback.format_exception(exc)) if exc is not None else ""
    logger.critical("exiting with code %d: %s%s", code, reason, f"\n{detail}" if detail else "")
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):  # a broken handler must not keep the process alive
            handler.flush()
    sys.stderr.flush()
    os._exit(code)


class Worker(faust.Worker):
    """faust's worker, whose stop is bounded by ``shutdown_timeout`` and whose logs repeat boundedly.

    A graceful stop commits offsets and leaves the consumer group; when it cannot finish in time (the broker
    is down, say) the process exits anyway: every uncommitted event is replayed by the next owner.
    """

    def __init__(self, *args, shutdown_timeout: float = 8.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._shutdown_timeout = shutdown_timeout
        self._deadline: threading.Timer | None = None

    def _install_signal_handlers_unix(self) -> None:
        # mode handles SIGINT/SIGTERM on the event loop, which never runs them if the loop is stuck; a plain
        # handler arms the deadline at once and then asks the loop for the graceful stop.
        super()._install_signal_handlers_unix()
        for number, on_signal in ((signal.SIGINT, self._on_sigint), (signal.SIGTERM, self._on_sigterm)):
            self.loop.remove_signal_handler(number)
            signal.signal(number, partial(self._on_stop_signal, on_signal))

    def _on_stop_signal(self, on_signal: Callable[[], None], number: int, frame: object) -> None:
        self._arm_deadline(signal.Signals(number))
        self.loop.call_soon_threadsafe(on_signal)

    def _arm_deadline(self, received: signal.Signals) -> None:
        if self._deadline is None:
            self._deadline = threading.Timer(
                self._shutdown_timeout,
                exit_now,
                (EXIT_FORCED, f"{received.name}: the graceful stop took longer than {self._shutdown_timeout:.0f}s"),
            )
            self._deadline.daemon = True
            self._deadline.start()

    def _schedule_shutdown(self, signal: signal.Signals) -> None:
        self._arm_deadline(signal)
        super()._schedule_shutdown(signal)

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        # No terminal spinner: faust's sets the root logger to DEBUG to spin on every record, which makes
        # every debug call of the Kafka client build a record on the hot path.
        self.spinner = None
        super().on_setup_root_logger(logger, level)
        bound_repeats(logger)
