"""Fuzz the engine-file loader, op constructors, kernels and CLI with structure-aware mutants.

    python scripts/fuzz_engine.py --n 10000 --seed 1            # cases 0..9999 of seed 1
    python scripts/fuzz_engine.py --seed 1 --case 1769 --save m.qe   # replay one case

Exit code 1 when any case crashed, hung, raised something other than a qengine error, or made
the CLI print a traceback; the failing mutants are kept (--save-failures). What is mutated and
how cases run: tests/engine_fuzz.py. Results of full runs: docs/sanitizers.md.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import engine_fuzz  # noqa: E402


def _progress(total: int):
    """tqdm when installed, else a line every 5% on stderr."""
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    if tqdm is not None:
        bar = tqdm(total=total, unit="case", smoothing=0.05)

        def update(done, report):
            bar.update(1)
            bar.set_postfix(failures=len(report.failures), refresh=False)
            if done == total:
                bar.close()
        return update
    start, step = time.perf_counter(), max(1, total // 20)

    def update(done, report):
        if done % step == 0 or done == total:
            rate = done / max(time.perf_counter() - start, 1e-9)
            print(f"{done}/{total} cases, {rate:.1f}/s, {len(report.failures)} failures, "
                  f"eta {(total - done) / rate:.0f} s", file=sys.stderr, flush=True)
    return update


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=10_000, help="number of cases (default 10000)")
    p.add_argument("--start", type=int, default=0, help="first case index (default 0)")
    p.add_argument("--seed", type=int, default=1, help="seed (default 1)")
    p.add_argument("--timeout", type=float, default=20.0,
                   help="seconds one case may take before it counts as a hang (default 20)")
    p.add_argument("--threads", type=int, default=1, help="kernel threads (default 1)")
    p.add_argument("--cli-every", type=int, default=1,
                   help="run the CLI in-process on every k-th case (default 1; 0: never)")
    p.add_argument("--cli-subprocess-every", type=int, default=100,
                   help="run `python -m qengine` on every k-th case (default 100; 0: never)")
    p.add_argument("--save-failures", type=Path,
                   help="directory for failing mutants (default: qengine-fuzz-failures-SEED in "
                        "the temp dir)")
    p.add_argument("--case", type=int, help="replay this one case in this process")
    p.add_argument("--save", type=Path, help="with --case: write the mutant here")
    args = p.parse_args(argv)
    failures_dir = args.save_failures or Path(tempfile.gettempdir()) / \
        f"qengine-fuzz-failures-{args.seed}"

    with tempfile.TemporaryDirectory(prefix="qengine-fuzz-") as tmp:
        corpus = engine_fuzz.build_corpus(tmp)
        if args.case is not None:
            return _replay(corpus, args)
        report = engine_fuzz.run_fuzz(
            corpus, args.seed, range(args.start, args.start + args.n), tmp,
            timeout=args.timeout, threads=args.threads, cli_every=args.cli_every,
            cli_subprocess_every=args.cli_subprocess_every, progress=_progress(args.n),
            save_failures=failures_dir)
    print(f"seed {args.seed}, cases {args.start}..{args.start + args.n - 1}, corpus "
          f"{', '.join(b.name for b in corpus)}")
    print("\n".join(report.lines()))
    if not report.ok():
        print(f"failing mutants: {failures_dir} (replay one: --seed {args.seed} --case N)")
    return 0 if report.ok() else 1


def _replay(corpus, args) -> int:
    """Load and run one mutant here, so that its traceback (or crash) is in plain sight."""
    import numpy as np
    import qengine
    base, data, muts = engine_fuzz.make_case(corpus, args.seed, args.case)
    print(f"case {args.case} of seed {args.seed}: base {base.name}; " + " | ".join(muts))
    path = args.save or Path(tempfile.mkdtemp(prefix="qengine-case-")) / "mutant.qe"
    path.write_bytes(data)
    print(f"mutant: {path}")
    print(f"inputs: {' '.join(f'--input {k}={v}' for k, v in base.inputs.items())}")
    try:
        sess = qengine.load(path)
    except qengine.QEngineError as e:
        print(f"load: {type(e).__name__}: {e}")
        return 0
    feeds = {k: np.load(v) for k, v in base.inputs.items()}
    try:
        out = sess.run(feeds)
        sess.run(feeds)
    except qengine.QEngineError as e:
        print(f"run: {type(e).__name__}: {e}")
        return 0
    print("ran: " + ", ".join(f"{k} {v.dtype}{list(v.shape)}" for k, v in out.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
