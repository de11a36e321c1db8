"""What PYEXEC_PRELOAD costs a worker: spawns the harness N times for each
value compared and reports, at its ready line, the CPU time it used
(/proc/PID/stat) and its memory (/proc/PID/smaps_rollup, RSS and PSS).
Outside the jail: the interpreter's own cost, without nsjail's.

Usage: .venv/bin/python bench/preload/preload_cost.py pyharness/harness.py 5
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

harness, n = sys.argv[1], int(sys.argv[2])
for preload in ("numpy,pandas", "numpy,pandas,matplotlib.pyplot"):
    rows = []
    for _ in range(n):
        conf = tempfile.mkdtemp()
        env = {"PATH": "/usr/bin:/bin", "MPLCONFIGDIR": conf, "MPLBACKEND": "Agg", "PYEXEC_PRELOAD": preload,
               "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        t0 = time.perf_counter()
        p = subprocess.Popen([sys.executable, "-I", harness], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        json.loads(p.stdout.readline())
        wall = time.perf_counter() - t0
        with open("/proc/%d/stat" % p.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        mem = {}
        with open("/proc/%d/smaps_rollup" % p.pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("Rss", "Pss"):
                    mem[k] = int(v.split()[0]) / 1024
        p.stdin.close()
        p.wait()
        rows.append((cpu, wall, mem["Rss"], mem["Pss"]))
        shutil.rmtree(conf)
    rows.sort()
    med = rows[len(rows) // 2]
    print("%-32s CPU %.2f s  wall %.2f s  RSS %.0f MiB  PSS %.0f MiB  (median of %d; CPU %.2f-%.2f)" % (
        preload, med[0], med[1], med[2], med[3], n, rows[0][0], rows[-1][0]))
