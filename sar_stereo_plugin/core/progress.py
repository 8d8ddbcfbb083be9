"""Progress and cancel of a long stage: one object every stage takes.

A stage's public function accepts the caller's ``progress(fraction)`` and ``is_canceled()``
callables (both optional, as QGIS's feedback gives them) and wraps them in a :class:`Progress`.
Reporting a fraction checks cancel first; ``part`` maps a sub-task onto a sub-range, so nested
steps report on the stage's single 0..1 scale.
"""

from .errors import Canceled


class Progress:
    """Reports fractions in [0, 1] and raises ``canceled(message)`` when the caller cancels."""

    def __init__(self, progress=None, is_canceled=None, canceled=Canceled, message="canceled; no output was written",
                 lo=0.0, hi=1.0):
        self._progress, self._is_canceled = progress, is_canceled
        self.canceled, self.message, self.lo, self.hi = canceled, message, lo, hi

    def __call__(self, fraction):
        """Check cancel, then report ``fraction`` of this (sub-)range."""
        self.check()
        if self._progress is not None:
            self._progress(self.lo + (self.hi - self.lo) * min(max(float(fraction), 0.0), 1.0))

    def done(self):
        """Report the end of this range, without a cancel check: the outputs are already in place."""
        if self._progress is not None:
            self._progress(self.hi)

    def is_canceled(self):
        return bool(self._is_canceled is not None and self._is_canceled())

    def check(self):
        """Raise the stage's cancel exception if the caller has canceled."""
        if self.is_canceled():
            self.cancel()

    def cancel(self, message=None):
        raise self.canceled(message or self.message)

    def part(self, lo, hi):
        """The same reporter for a sub-task that covers ``lo``..``hi`` of this range."""
        span = self.hi - self.lo
        return Progress(self._progress, self._is_canceled, self.canceled, self.message, self.lo + span * lo,
                        self.lo + span * hi)
