"""An interrupt a signal asked for, kept until it is taken, so that Python cannot drop it.

SIGTERM (and Ctrl-C outside an event loop) stops a command by raising KeyboardInterrupt in
whatever Python code runs when the signal is handled. When that code is a finalizer or a weakref
callback (SQLAlchemy's, run by the garbage collector), Python prints "Exception ignored in ..."
and carries on: the command would go on as if never interrupted (seen in CI: a SIGTERM while a
40,000-line file was loading, and the run went on to send). So the signal handler also records
the request here, whoever takes the KeyboardInterrupt marks it taken, and long loops and the
start of sending call ``raise_if_dropped``, which raises it again where the work can stop
cleanly.
"""

from __future__ import annotations

_requested = False


def requested() -> None:
    """A signal asked for an interrupt (its handler raises KeyboardInterrupt next)."""
    global _requested  # noqa: PLW0603 - one process, one pending interrupt
    _requested = True


def taken() -> None:
    """The interrupt reached code that acts on it."""
    global _requested  # noqa: PLW0603
    _requested = False


def raise_if_dropped() -> None:
    """Raise the KeyboardInterrupt a signal asked for if it never arrived anywhere."""
    if _requested:
        taken()
        raise KeyboardInterrupt
