"""Client of `npm run bench:files`: one measurement, printed as JSON. Runs the same way directly
(local files) and under `mirrord exec` (the target's files).
  read PATH          whole file with 1 MiB raw reads -> {"mbps", "bytes"}
  lines PATH         line by line (buffered text I/O) -> {"ms", "lines"}
  stat PATH N        N x os.stat -> {"us"} per call
"""
import json, os, sys, time

mode, path = sys.argv[1], sys.argv[2]
if mode == "read":
    t = time.perf_counter(); n = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            n += len(b)
    dt = time.perf_counter() - t
    print(json.dumps({"mbps": n / (1 << 20) / dt, "bytes": n}))
elif mode == "lines":
    t = time.perf_counter(); n = 0
    with open(path) as f:
        for _ in f:
            n += 1
    print(json.dumps({"ms": (time.perf_counter() - t) * 1000, "lines": n}))
elif mode == "stat":
    count = int(sys.argv[3]); t = time.perf_counter()
    for _ in range(count):
        os.stat(path)
    print(json.dumps({"us": (time.perf_counter() - t) * 1e6 / count}))
