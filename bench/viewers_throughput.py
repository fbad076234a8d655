#!/usr/bin/env python3
# Writes/s at 16 clients with N subscribed viewer connections (as pages; no token).
# Usage: python3 bench/viewers_throughput.py target/release/consenso PORT N
# Uses the small WebSocket helper in ../shared/acceptance/lib (beside this repository).
import json, subprocess, sys, threading, time, os
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "shared", "acceptance", "lib"))
import ws
bin_, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
env = dict(os.environ, CONSENSO_TOKEN="vt")
subprocess.run(["rm", "-rf", f"/tmp/vt{port}"])
cl = subprocess.Popen([bin_, "cluster", "--nodes", "3", "--port", str(port), "--data-dir", f"/tmp/vt{port}", "--token", "vt"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
proxy = f"127.0.0.1:{port}"
try:
    for _ in range(100):
        if subprocess.run([bin_, "client", "--proxy", proxy, "put", "w", "1"], env=env, capture_output=True).returncode == 0: break
        time.sleep(0.2)
    stop = False; got = [0] * n
    def view(i):
        c = ws.Conn(port, token=None, timeout=30)
        while not stop:
            try: f = c.recv(); got[i] += 1
            except Exception: return
    # Conn says hello without subscribe; patch the hello to subscribe
    orig_send = ws.Conn.send
    def send(self, obj):
        if obj.get("type") == "hello": obj = dict(obj, subscribe=True)
        return orig_send(self, obj)
    ws.Conn.send = send
    threads = [threading.Thread(target=view, args=(i,), daemon=True) for i in range(n)]
    for t in threads: t.start()
    time.sleep(3)
    out = subprocess.run([bin_, "bench", "--proxy", proxy, "--clients", "16", "--duration", "8", "--json", "--no-floor"], env=env, capture_output=True, text=True).stdout
    d = json.loads(out)
    stop = True
    print(n, "viewers:", round(d["writes_per_s"]), "writes/s p50", d["write_latency_ms"]["p50"], "p99", d["write_latency_ms"]["p99"], "frames/viewer", (sum(got) // max(n, 1)))
finally:
    cl.terminate(); cl.wait()
