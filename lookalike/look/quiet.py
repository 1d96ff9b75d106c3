"""Keeping MediaPipe's native log lines off the terminal.

MediaPipe's C++ code (TensorFlow Lite, absl logging) writes notes such as "INFO: Created TensorFlow Lite XNNPACK
delegate for CPU" and "W0000 ... inference_feedback_manager.cc ..." straight to file descriptor 2, from its own
threads, when its graph starts, runs and stops; Python cannot catch them and redirecting the descriptor for a moment
misses the ones written later. So, once MediaPipe is used, descriptor 2 goes through a pipe read by a thread that
drops those lines and passes everything else (Python's own messages, tracebacks, a server's logs) on unchanged.
At exit the descriptor is put back after the pipe is drained.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import threading

#: Lines of MediaPipe's native logging (TensorFlow Lite, absl's "W0000 hh:mm:ss..." format, glog-style notes).
NOISE = re.compile(rb"^(INFO: Created TensorFlow Lite|WARNING: All log messages before absl::InitializeLog"
                   rb"|[IWE]\d{4} [\d:. ]+\d+ \w+\.cc:\d+\])")
PREFIXES = (b"INFO: Created TensorFlow Lite", b"WARNING: All log messages before absl::InitializeLog")
_installed = False
_lock = threading.Lock()


def filter_native_logs() -> None:
    """Route descriptor 2 through the filter (once per process; a no-op where descriptors cannot be piped)."""
    global _installed
    with _lock:
        if _installed:
            return
        try:
            original = os.dup(2)
            read, write = os.pipe()
        except OSError:
            return
        sys.stderr.flush()
        os.dup2(write, 2)
        os.close(write)
        thread = threading.Thread(target=_pump, args=(read, original), name="lookalike-stderr-filter", daemon=True)
        thread.start()
        atexit.register(_restore, original, thread)
        _installed = True


def _pump(read: int, original: int) -> None:
    """Copy the pipe to the real stderr without MediaPipe's lines. It never stops before the pipe closes (a dead
    pump would leave writers to fd 2 blocked once the pipe fills): output it cannot write is dropped. Text without
    its newline yet goes through at once unless it may be the start of a noise line (a progress bar's '\\r' updates
    are not held)."""
    pending = b""
    while True:
        chunk = os.read(read, 65536)
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        kept = b"".join(line + b"\n" for line in lines if not NOISE.match(line))
        if pending and not _may_be_noise(pending):
            kept, pending = kept + pending, b""
        _write(original, kept)
    if pending and not NOISE.match(pending):
        _write(original, pending)
    os.close(read)


def _may_be_noise(start: bytes) -> bool:
    return any(p.startswith(start[:len(p)]) for p in PREFIXES) or bool(re.match(rb"^[IWE]\d{0,4}( |$)", start[:6]))


def _write(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:     # stderr closed or gone (a pipe to a finished `head`): drop it, keep draining the pipe
        pass


def _restore(original: int, thread: threading.Thread) -> None:
    """Put descriptor 2 back (closing the pipe's last writer ends the pump) and let the pump write what is left."""
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os.dup2(original, 2)
    thread.join(timeout=2)
