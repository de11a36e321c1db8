"""The floor under fork isolation's CPU per script: what fork(), _exit()
and waitpid() cost the jail's interpreter with the preloaded modules
imported and its objects frozen, as the zygote is when it forks, and
nothing else (no namespaces, no cgroup, no script, no HTTP).

Usage: python -I barefork.py FORKS [MODULES]
MODULES is comma-separated, numpy,pandas by default. Prints one JSON line:
the forks made, the CPU seconds they took (this process and its children,
from getrusage) and the wall seconds.
"""
import gc
import importlib
import json
import os
import resource
import sys
import time


def cpu_seconds():
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        total += r.ru_utime + r.ru_stime
    return total


def main():
    forks = int(sys.argv[1])
    modules = sys.argv[2] if len(sys.argv) > 2 else "numpy,pandas"
    for name in filter(None, modules.split(",")):
        importlib.import_module(name)
    gc.collect()
    gc.freeze()
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    for _ in range(forks):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    print(json.dumps({"forks": forks, "cpu_s": cpu_seconds() - cpu0,
                      "wall_s": time.perf_counter() - wall0, "modules": modules}))


main()
