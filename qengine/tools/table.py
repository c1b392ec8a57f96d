"""Plain-text tables for the CLI (returns strings; the CLI prints them)."""
from __future__ import annotations


def format_table(headers, rows, align=None) -> str:
    """Columns padded to their widest cell; `align` is a string of 'l'/'r' per column
    (default: numbers right, text left)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in r] for r in rows]
    if align is None:
        align = "".join("r" if rows and all(isinstance(r[i], (int, float)) for r in rows)
                        else "l" for i in range(len(headers)))
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r):
        return "  ".join(c.rjust(w) if a == "r" else c.ljust(w)
                         for c, w, a in zip(r, widths, align)).rstrip()
    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), sep] + [line(r) for r in cells[1:]])


def _fmt(c) -> str:
    if isinstance(c, float):
        return f"{c:.4g}" if abs(c) < 1e-3 and c != 0 else f"{c:.3f}"
    return str(c)


def human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
