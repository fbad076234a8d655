#!/usr/bin/env python3
"""Screenshots of every lesson's key moment, as a class sees it: Chromium at 1280x720 in
presentation mode, each lesson started from the page and advanced with its Next button.

    consenso cluster --nodes 5 --port 8080 --token T --web-dir dist &
    python3 docs/lessons/shoot.py 8080 T docs/lessons [en|es]
    ONLY=leader-crash,membership python3 docs/lessons/shoot.py …   # some again (README kept)

For each lesson the caption it is about (named in KEY, else the one with the most messages
drawn, in flight or held) is kept as NAME.png, and the captions are listed in README.md beside
them. Needs chromium and chromium-driver (Debian packages); standard library only.
"""
import base64
import json
import os
import subprocess
import sys
import time
import urllib.request

port, token, out = sys.argv[1], sys.argv[2], sys.argv[3]
lang = sys.argv[4] if len(sys.argv) > 4 else "en"
WD_PORT = 9571
# The caption each lesson is about, where counting messages would pick another.
KEY = {"leader-crash": 4, "stale-read": 2, "pre-vote": 2, "partitioned-leader": 2, "leader-transfer": 2,
       "restart-catch-up": 3, "snapshot": 2, "membership": 2, "log-repair": 5}
WD = f"http://127.0.0.1:{WD_PORT}"


def call(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(WD + path, method=method, data=data, headers={"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(req, timeout=120).read())["value"]


def js(sid, script):
    return call("POST", f"/session/{sid}/execute/sync", {"script": script, "args": []})


def wait(sid, script, seconds):
    end = time.time() + seconds
    while time.time() < end:
        value = js(sid, script)
        if value:
            return value
        time.sleep(0.25)
    return None


def lessons():
    names = subprocess.run([sys.argv[5] if len(sys.argv) > 5 else "target/release/consenso", "scenario", "list"],
                           capture_output=True, text=True, check=True).stdout
    only = os.environ.get("ONLY", "").split(",")
    return [n for n in (line.split(" ")[0] for line in names.splitlines() if line.strip()) if only == [""] or n in only]


def shoot(sid, name):
    call("POST", f"/session/{sid}/url", {"url": f"http://127.0.0.1:{port}/?token={token}&present&lang={lang}"})
    wait(sid, "return document.querySelector('[data-control=lesson]') !== null", 20)
    js(sid, f"""const s = document.querySelector('[data-control=lesson]'); s.value = '{name}';
              s.dispatchEvent(new Event('change', {{bubbles: true}}));""")
    js(sid, "document.querySelector('[data-action=lesson-start]').click()")
    best, captions, step = None, [], 0
    for _ in range(40):
        # The next caption, waiting for Next (or the outcome).
        state = wait(sid, f"""const c = document.querySelector('.caption[data-step]');
            const o = document.querySelector('[data-lesson-outcome]');
            const n = document.querySelector('[data-action=lesson-next]');
            if (o) return 'done';
            if (c && Number(c.dataset.step) > {step} && n && !n.disabled) return 'caption';
            return null;""", 240)
        if state != "caption":
            break
        step += 1
        time.sleep(1.2)  # let the messages and rings be drawn where they are
        drawn = js(sid, "return document.querySelectorAll('[data-message-id]').length")
        text = js(sid, "const c = document.querySelector('.caption-text'); return c ? c.innerText : ''")
        captions.append(text.strip())
        png = base64.b64decode(call("GET", f"/session/{sid}/screenshot"))
        chosen = KEY.get(name)
        if (chosen is None and (best is None or drawn > best[0])) or chosen == step:
            best = (drawn, step, png)
        js(sid, "document.querySelector('[data-action=lesson-next]').click()")
    outcome = wait(sid, "const o = document.querySelector('[data-lesson-outcome]'); return o ? o.innerText : null", 240)
    js(sid, "const b = document.querySelector('[data-action=lesson-close]'); if (b) b.click()")
    if best:
        open(f"{out}/{name}.png", "wb").write(best[2])
    return best[1] if best else None, captions, outcome or "no outcome"


def main():
    driver = subprocess.Popen(["chromedriver", f"--port={WD_PORT}"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            try:
                urllib.request.urlopen(WD + "/status", timeout=2)
                break
            except OSError:
                time.sleep(0.2)
        args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,720"]
        # The page exactly 1280x720, as a projector shows it (a window's size includes its frame).
        metrics = {"deviceMetrics": {"width": 1280, "height": 720, "pixelRatio": 1.0}}
        options = {"binary": "/usr/bin/chromium", "args": args, "mobileEmulation": metrics}
        caps = {"capabilities": {"alwaysMatch": {"goog:chromeOptions": options}}}
        sid = call("POST", "/session", caps)["sessionId"]
        index = ["# The lessons at their key moment", "",
                 "Chromium at 1280×720 in presentation mode, five servers; made by `docs/lessons/shoot.py`.",
                 "Each picture is the lesson's key caption, in bold below it.", ""]
        try:
            for name in lessons():
                key, captions, outcome = shoot(sid, name)
                print(name, key, outcome.splitlines()[0] if outcome else "", flush=True)
                index += [f"## {name}", "", f"![{name}]({name}.png)", ""]
                index += [f"{i + 1}. {'**' if i + 1 == key else ''}{c}{'**' if i + 1 == key else ''}"
                          for i, c in enumerate(captions)]
                index += ["", f"*{outcome.strip()}*", ""]
        finally:
            call("DELETE", f"/session/{sid}")
        if not os.environ.get("ONLY"):
            open(f"{out}/README.md", "w").write("\n".join(index))
    finally:
        driver.terminate()


main()
