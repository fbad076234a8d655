#!/usr/bin/env python3
# Usage: python3 bench/snapshot_catchup.py target/release/consenso PORT
# Time for a follower to catch up by snapshot while writes go on (3 servers, compaction every
# 200 entries, 1 KiB values, 4 bench clients).
import json, os, subprocess, sys, time
bin_, port = sys.argv[1], int(sys.argv[2])
env = dict(os.environ, CONSENSO_TOKEN="cu")
data = f"/tmp/consenso-catchup-{port}"
subprocess.run(["rm", "-rf", data])
cl = subprocess.Popen([bin_, "cluster", "--nodes", "3", "--port", str(port), "--data-dir", data,
                       "--token", "cu", "--snapshot-every", "200"], env=env,
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
proxy = f"127.0.0.1:{port}"
def cli(*a):
    return subprocess.run([bin_, "client", "--proxy", proxy, *a], env=env, capture_output=True, text=True, timeout=60)
def status():
    r = cli("status", "--json")
    return json.loads(r.stdout) if r.returncode == 0 else None
try:
    for _ in range(100):
        s = status()
        if s and s.get("leader"): break
        time.sleep(0.2)
    leader = s["leader"]; follower = [n["id"] for n in s["nodes"] if n["id"] != leader][0]
    cli("crash", str(follower))
    bench = subprocess.Popen([bin_, "bench", "--proxy", proxy, "--clients", "4", "--duration", "40",
                              "--value-size", "1024", "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    time.sleep(10)
    def node(s, i): return next(n for n in s["nodes"] if n["id"] == i)
    s = status(); lead = s["leader"]
    behind = node(s, lead)["commit"]
    t0 = time.time(); cli("restart", str(follower))
    reached = steady = None
    while time.time() - t0 < 25:
        s = status()
        if s:
            f = node(s, follower); l = node(s, s["leader"] or lead)
            if f.get("applied") is not None and l.get("commit") is not None:
                applied = f["applied"]; commit = l["commit"]
                if reached is None and applied >= behind: reached = time.time() - t0
                if reached is not None and commit - applied < 100: steady = time.time() - t0; break
        time.sleep(0.05)
    out = bench.communicate(timeout=120)[0]
    b = json.loads(out)
    print(json.dumps({"entries_missed": behind, "reached_restart_commit_s": reached, "within_100_of_leader_s": steady,
                      "writes_per_s": b.get("writes_per_s")}))
finally:
    cl.terminate(); cl.wait()
