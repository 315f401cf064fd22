"""The first code a sandboxed child runs: its CPU priority, then the child's imports without `ssl`.

Standard library only, and nothing heavy before the priority is lowered: a warm child's boot (about
150-200 ms of CPU, of which ~40 ms the sandbox and the bare interpreter, the rest imports) must yield
the CPU to the worker, the API and the runs in flight, which it otherwise competes with as an equal
(bwrap's `--new-session` gives the child its own session, and so its own scheduler autogroup where
the kernel has them). The script that later runs in this process stays at that priority: untrusted
code runs below the trusted worker that serves it. It cannot lower its nice value (that needs a
privilege or RLIMIT_NICE, which it has neither of); on a kernel with autogroups it can set its
session's group back to 0, the weight every child had before, never above the worker.
"""

from __future__ import annotations

import os
import sys
import types


def lower_priority(nice: int) -> None:
    """Run at `nice` (0: unchanged): the process's own nice value and, where the kernel groups the CPU
    by session (autogroup: the CPU cgroup is the root one), its session's group. Lowering one's own
    priority needs no privilege; a child that cannot do it still runs."""
    if nice <= 0:
        return
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except OSError:
        pass
    try:  # absent without a private /proc or without autogroup; then the nice value above is what counts
        with open("/proc/self/autogroup", "w") as group:
            group.write(str(nice))
    except OSError:
        pass


def import_child() -> types.ModuleType:
    """Import the child with `ssl` kept out: asyncio imports it only if it can (the child has no network),
    and it costs about 10 ms of CPU per boot. A script that imports ssl itself still gets it."""
    blocked = "ssl" not in sys.modules
    if blocked:
        sys.modules["ssl"] = None  # type: ignore[assignment]  # import ssl raises ImportError meanwhile
    try:
        from orchestrator.runner import child
    finally:
        if blocked and sys.modules.get("ssl", 0) is None:
            del sys.modules["ssl"]
    return child


def start(fd: int, child_filter: str, nice: int, models: bool = False) -> None:
    lower_priority(nice)
    child = import_child()
    child.entry(fd, child_filter, models)
