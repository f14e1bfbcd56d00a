#!/usr/bin/env python3
"""An example agent that touches every effect tapedeck tapes: the wall and monotonic clocks, a
sleep (a polite back-off), files in its workspace (read, write, delete), a subprocess, and an
LLM over HTTP, plain and streamed, at OPENAI_BASE_URL (tapedeck's proxy under `tapedeck run`).
It uses only the standard library, the way many small agents do.

    OPENAI_API_KEY=... python3 agent.py        run it in its workspace folder
"""
import json
import os
import subprocess
import sys
import time
import urllib.request

BASE_URL = os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8080/v1").rstrip("/")
API_KEY = os.environ.get("OPENAI_API_KEY", "sk-example-key")


def chat(prompt, stream=False):
    body = json.dumps({"model": "standin-1", "stream": stream,
                       "messages": [{"role": "system", "content": "You plan work."},
                                    {"role": "user", "content": prompt}]}).encode()
    request = urllib.request.Request(BASE_URL + "/chat/completions", data=body, method="POST",
                                     headers={"Content-Type": "application/json",
                                              "Authorization": "Bearer " + API_KEY})
    with urllib.request.urlopen(request, timeout=60) as response:
        if not stream:
            return json.load(response)["choices"][0]["message"]["content"], 1
        text, events = "", 0
        for line in response:
            line = line.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            events += 1
            text += json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
        return text, events


def main():
    started = time.time()
    clock_start = time.monotonic()
    print("agent started at", time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started)))

    with open("tasks.txt") as f:
        tasks = [line.strip() for line in f if line.strip()]
    print("tasks:", len(tasks))

    tool = subprocess.run(["wc", "-w", "tasks.txt"], capture_output=True, text=True)
    print("tool says:", tool.stdout.strip(), "(exit %d)" % tool.returncode)

    plan, _ = chat("Pick the most urgent of: " + "; ".join(tasks))
    print("plan:", plan)
    time.sleep(1.0)  # back off before the next call, as rate limits ask
    summary, events = chat("Summarize the plan in one line: " + plan, stream=True)
    print("summary (%d events): %s" % (events, summary))

    # Written the careful way: a temporary file, then an atomic rename into a fresh folder.
    os.makedirs("out", exist_ok=True)
    with open("out/report.md.tmp", "w") as f:
        f.write("# Report\n\nStarted %d\n\n%s\n\n%s\n" % (int(started), plan, summary))
    os.replace("out/report.md.tmp", "out/report.md")
    if os.path.exists("scratch.tmp"):
        os.remove("scratch.tmp")
        print("cleared scratch.tmp")
    print("workspace now:", sorted(os.listdir(".")), "out/:", sorted(os.listdir("out")))
    with open("out/report.md") as f:
        print("report:", len(f.read()), "bytes")
    print("took %.1f s of agent time" % (time.monotonic() - clock_start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
