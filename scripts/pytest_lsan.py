"""pytest plugin used by scripts/sanitize.sh: one LeakSanitizer pass when the session ends.

The sanitized run sets leak_check_at_exit=0: at exit CPython and NumPy leave objects alive by
design and every process would fail. Checking here instead, after a gc pass, sees the heap
while the interpreter is intact; the report goes to ASan's log_path, where
scripts/sanitizer_logs.py keeps only leaks allocated by qengine's compiled code.
"""
import ctypes
import gc


def pytest_unconfigure(config):
    # after the test summary is printed: should LeakSanitizer itself fail, the results stand
    check = getattr(ctypes.CDLL(None), "__lsan_do_recoverable_leak_check", None)
    if check is None:        # not running under ASan/LSan
        return
    gc.collect()
    check()
