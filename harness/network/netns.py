"""Entering a network namespace from Python, which has no os.setns before 3.12: libc's
setns(2) through ctypes, on the file `ip netns add` binds under /run/netns.

A network namespace is entered per *thread*: the caller's thread moves, the process's other
threads stay where they were, and a socket stays in the namespace its thread was in when it
was made. So a probe enters in a thread of its own, and a child enters after fork (in
preexec_fn), where it has one thread.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from collections.abc import Callable
from typing import TypeVar

NETNS_DIR = "/run/netns"  # where iproute2 binds named namespaces (its NETNS_RUN_DIR)
CLONE_NEWNET = 0x40000000  # linux/sched.h

T = TypeVar("T")


class NamespaceError(OSError):
    """A namespace that cannot be entered: gone, or not ours to enter."""


def _load_setns() -> Callable[[int, int], int] | None:
    """libc's setns, looked up once at import: a child after fork() only calls it."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        setns: Callable[[int, int], int] = libc.setns
    except (OSError, AttributeError):
        return None
    return setns


_SETNS = _load_setns()


def path(name: str) -> str:
    return os.path.join(NETNS_DIR, name)


def enter_fd(fd: int) -> None:
    """Move the calling thread into the network namespace `fd` refers to."""
    if _SETNS is None:
        raise NamespaceError("this libc has no setns(2)")
    if _SETNS(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise NamespaceError(errno, f"setns: {os.strerror(errno)}")


def enter(name: str) -> None:
    """Move the calling thread into the named namespace (one `ip netns add` made)."""
    try:
        fd = os.open(path(name), os.O_RDONLY | os.O_CLOEXEC)
    except OSError as error:
        raise NamespaceError(error.errno, f"network namespace {name}: {error.strerror}") from None
    try:
        enter_fd(fd)
    finally:
        os.close(fd)


def setns_preexec(name: str) -> Callable[[], None]:
    """A subprocess preexec_fn that moves the child into the named namespace before exec, so
    that every socket it makes is there. Combine it with other preexec work by calling both.

    The namespace file is opened in the child (a descriptor opened here could not be closed
    in the parent); setns was looked up at import, so the child makes no dlsym call."""
    if _SETNS is None:
        raise NamespaceError("this libc has no setns(2)")
    target = path(name)

    def preexec() -> None:
        fd = os.open(target, os.O_RDONLY | os.O_CLOEXEC)
        try:
            enter_fd(fd)
        finally:
            os.close(fd)

    return preexec


def run_in(name: str, work: Callable[[], T]) -> T:
    """`work()` on a new thread inside the named namespace; its result, or its exception
    re-raised here. The thread ends with the call, so no pooled thread is left in the
    namespace by surprise."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def body() -> None:
        try:
            enter(name)
            outcome.append(work())
        except BaseException as error:  # handed to the caller's thread
            failure.append(error)

    thread = threading.Thread(target=body, name=f"netns {name}", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]
