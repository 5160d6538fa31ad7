"""Process start cost, for bench/devcontainer.ts: posix_spawn + waitpid of a program, in turns over
the variants given as JSON on stdin ({"name": {"env": {...}, "preload": TEXT or null}}), N rounds;
prints one JSON object of name -> list of microseconds. A variant with "preload" writes (or, null,
removes) /etc/ld.so.preload before its spawn, outside the timed part: the loader reads it at each
exec, so variants can alternate. Python's own cost per call is the same for every variant."""
import json
import os
import sys
import time

PRELOAD = "/etc/ld.so.preload"
program = sys.argv[1]
rounds = int(sys.argv[2])
variants = json.load(sys.stdin)
out = {name: [] for name in variants}


def set_preload(text):
    if text is None:
        if os.path.exists(PRELOAD):
            os.remove(PRELOAD)
    else:
        with open(PRELOAD, "w") as f:
            f.write(text)


try:
    for _ in range(rounds):
        for name, v in variants.items():
            if "preload" in v:
                set_preload(v["preload"])
            t0 = time.perf_counter_ns()
            pid = os.posix_spawn(program, [program], v["env"])
            _, status = os.waitpid(pid, 0)
            out[name].append((time.perf_counter_ns() - t0) / 1000)
            if status != 0:
                sys.exit(f"{program} failed under {name}: status {status}")
finally:
    if any("preload" in v for v in variants.values()):
        set_preload(None)
json.dump(out, sys.stdout)
