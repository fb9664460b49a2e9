"""Peak resident memory of a command and every process it starts, sampled every 0.2 s.

`/usr/bin/time -v` reports the largest single process; an ingest that parses in worker processes
needs the sum over its process tree as well (what the machine must have), and the main process's
own peak (what grows with the corpus).

    python bench/peak_rss.py -- sluice ingest ../shared/data/docs --exclude MANIFEST.tsv --json

Prints, on stderr's last line, one JSON object: `seconds`, `exit_code`, `peak_tree_rss_mb`,
`peak_main_rss_mb` and `peak_processes`.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time

import psutil


def main() -> None:
    command = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]
    if not command:
        raise SystemExit(__doc__)
    started = time.perf_counter()
    child = subprocess.Popen(command)
    main_process = psutil.Process(child.pid)
    peak_tree = peak_main = 0
    peak_processes = 1
    while child.poll() is None:
        try:
            tree = [main_process, *main_process.children(recursive=True)]
            sizes = []
            for process in tree:
                with contextlib.suppress(psutil.Error):
                    sizes.append(process.memory_info().rss)
            peak_main = max(peak_main, sizes[0] if sizes else 0)
            peak_tree = max(peak_tree, sum(sizes))
            peak_processes = max(peak_processes, len(sizes))
        except psutil.Error:
            pass
        time.sleep(0.2)
    figures = {
        "seconds": round(time.perf_counter() - started, 1),
        "exit_code": child.returncode,
        "peak_tree_rss_mb": round(peak_tree / 2**20, 1),
        "peak_main_rss_mb": round(peak_main / 2**20, 1),
        "peak_processes": peak_processes,
    }
    print(json.dumps(figures), file=sys.stderr)


if __name__ == "__main__":
    main()
