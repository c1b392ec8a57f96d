"""Summarise the ASan/UBSan/LSan log files of a sanitized test run; exit 1 on a real report.

    python scripts/sanitizer_logs.py LOG_DIR

scripts/sanitize.sh points ASAN_OPTIONS/UBSAN_OPTIONS log_path at LOG_DIR, so every process
(pytest and the subprocesses tests start) writes its reports to LOG_DIR/{asan,ubsan}.<pid>.

Every AddressSanitizer error and every UBSan "runtime error" is real: fail. Leak reports are
different: CPython and NumPy deliberately leave objects alive at exit, and LeakSanitizer lists
them all. A leak counts only when one of its allocation frames is in qengine's compiled code
(src_pyx/, include/qengine/, qengine/_ext/) and none is module initialisation (state kept for
the life of the process by design); the rest are counted and ignored.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

OURS = re.compile(r"(/src_pyx/|/include/qengine/|/qengine/_ext/)")
MODULE_INIT = re.compile(r"\b(PyInit_|__pyx_pymod_exec_|__Pyx_InitCachedBuiltins|"
                         r"__Pyx_InitConstants|__Pyx_modinit_)")
LEAK_HEAD = re.compile(r"^(Direct|Indirect) leak of (\d+) byte", re.M)
ERROR = re.compile(r"^(==\d+==ERROR: AddressSanitizer.*|.*runtime error:.*|"
                   r"==\d+==LeakSanitizer has encountered a fatal error.*)$", re.M)


def leak_blocks(text: str):
    """Yield (kind, bytes, block text) for every leak record of an LSan report."""
    heads = list(LEAK_HEAD.finditer(text))
    for i, m in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        block = text[m.start():end].split("\n\n")[0]
        yield m.group(1), int(m.group(2)), block


def main(log_dir: str) -> int:
    files = sorted(p for p in Path(log_dir).iterdir()
                   if p.name.startswith(("asan.", "ubsan.")))
    errors, ours, ignored, ignored_bytes = [], [], 0, 0
    for path in files:
        text = path.read_text(errors="replace")
        for m in ERROR.finditer(text):
            errors.append((path.name, m.group(1).strip(), text))
        for kind, nbytes, block in leak_blocks(text):
            if OURS.search(block) and not MODULE_INIT.search(block):
                ours.append((path.name, block))
            else:
                ignored += 1
                ignored_bytes += nbytes
    seen = set()
    for name, line, text in errors:
        if line in seen:
            continue
        seen.add(line)
        print(f"--- {name}: {line}\n{text[:6000]}")
    for name, block in ours:
        print(f"--- {name}: leak from qengine code\n{block}")
    print(f"sanitizer logs: {len(files)} files, {len(errors)} error reports, {len(ours)} leaks "
          f"from qengine code, {ignored} leak records from CPython/NumPy/module state ignored "
          f"({ignored_bytes} bytes)")
    return 1 if errors or ours else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
