"""A progress bar for restores at a terminal: one line on stderr, redrawn at most 10 times a second.

Plain text from the standard library: the restore knows its total in bytes up front (the
manifest's size), which is all a bar needs, and the operator's image gains no dependency for it.
"""

from __future__ import annotations

import time
from typing import TextIO

MiB = 2**20


def render_bar(stage: str, done: int, total: int | None, seconds: float, width: int = 30) -> str:
    """`checking sha256  [#########.........]  45%  120.0/260.0 MiB  35.2 MiB/s`."""
    rate = f"{done / MiB / seconds:.1f} MiB/s" if seconds > 0 else ""
    if not total:
        return f"{stage:<22} {done / MiB:.1f} MiB  {rate}".rstrip()
    fraction = min(done / total, 1.0)
    filled = int(width * fraction)
    bar = "#" * filled + "." * (width - filled)
    amounts = f"{done / MiB:.1f}/{total / MiB:.1f} MiB"
    return f"{stage:<22} [{bar}] {fraction:4.0%}  {amounts}  {rate}".rstrip()


class TerminalProgress:
    """Call it with (stage, done, total): redraws in place on a terminal, else prints each stage."""

    def __init__(self, stream: TextIO, interval_seconds: float = 0.1) -> None:
        self.stream = stream
        self.interactive = stream.isatty()
        self.interval_seconds = interval_seconds
        self._stage: str | None = None
        self._stage_started = 0.0
        self._last_draw = 0.0
        self._line = ""

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        if stage != self._stage:
            self.finish()
            self._stage, self._stage_started, self._last_draw = stage, now, 0.0
            if not self.interactive:
                print(f"{stage} ...", file=self.stream, flush=True)
        complete = total is not None and done >= total
        if not self.interactive or (now - self._last_draw < self.interval_seconds and not complete):
            return
        self._last_draw = now
        line = render_bar(stage, done, total, now - self._stage_started)
        self.stream.write("\r" + line.ljust(len(self._line)))
        self.stream.flush()
        self._line = line

    def finish(self) -> None:
        """End the current bar's line."""
        if self.interactive and self._line:
            self.stream.write("\n")
            self.stream.flush()
        self._line = ""
