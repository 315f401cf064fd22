"""Writes the chart's seccomp profile for the worker pod: files/worker-sandbox-seccomp.json.

The profile is an allowlist, like the container runtime's default (unknown and future syscalls
fail with ENOSYS): every syscall libseccomp knows on x86_64 and aarch64, minus what the runtime
default refuses to an unprivileged container (Docker/containerd's "significant syscalls blocked"),
except what bubblewrap needs to build the script sandbox from inside a non-root pod: clone and
clone3 with namespace flags, unshare, setns, mount, umount2, pivot_root, chroot. The scripts
themselves run under the runner's own, stricter filters (orchestrator/runner/sandbox.py), which
refuse all of those again. Run with the project's venv (pyseccomp): python deploy/helm/gen-sandbox-profiles.py
"""

from __future__ import annotations

import json
from pathlib import Path

import pyseccomp as sc

OUT = Path(__file__).resolve().parent / "nango-orchestrator" / "files" / "worker-sandbox-seccomp.json"
# What the runtime default refuses and neither the worker nor bubblewrap needs.
DENIED = sorted({
    "acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module", "delete_module", "finit_module",
    "get_kernel_syms", "get_mempolicy", "init_module", "ioperm", "iopl", "kcmp", "kexec_file_load", "kexec_load",
    "keyctl", "lookup_dcookie", "mbind", "move_pages", "name_to_handle_at", "nfsservctl", "open_by_handle_at",
    "perf_event_open", "quotactl", "quotactl_fd", "reboot", "request_key", "set_mempolicy", "settimeofday", "stime",
    "swapon", "swapoff", "sysfs", "_sysctl", "uselib", "userfaultfd", "ustat", "vm86", "vm86old", "fsconfig",
    "fsmount", "fsopen", "fspick", "move_mount", "open_tree", "mount_setattr", "syslog", "ptrace",
    "process_vm_readv", "process_vm_writev", "io_uring_setup", "io_uring_enter", "io_uring_register", "adjtimex",
    "afs_syscall", "tuxcall", "security", "vserver", "getpmsg", "putpmsg", "query_module", "pciconfig_read",
    "pciconfig_write", "pciconfig_iobase", "lsm_set_self_attr",
})
# What bubblewrap needs in a non-root pod (the runtime default refuses these without CAP_SYS_ADMIN).
BUBBLEWRAP = ("clone", "clone3", "unshare", "setns", "mount", "umount2", "pivot_root", "chroot")


def known_syscalls() -> set[str]:
    names: set[str] = set()
    for arch in (sc.Arch.X86_64, sc.Arch.AARCH64):
        for number in range(1024):
            try:
                name = sc.resolve_syscall(arch, number)
            except (ValueError, OSError, RuntimeError):
                continue
            if name and not name.startswith(b"UNKNOWN"):
                names.add(name.decode())
    return names


def profile() -> dict[str, object]:
    allowed = sorted((known_syscalls() - set(DENIED)) | set(BUBBLEWRAP))
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 38,  # ENOSYS: unknown syscalls look absent, so libc falls back
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
        "syscalls": [
            {"names": allowed, "action": "SCMP_ACT_ALLOW"},
            {"names": DENIED, "action": "SCMP_ACT_ERRNO", "errnoRet": 1},  # EPERM, as the runtime default
        ],
    }


if __name__ == "__main__":
    OUT.write_text(json.dumps(profile(), indent=1) + "\n")
    print(f"wrote {OUT}")
