"""An agent with two LLM calls, the second's prompt from its command line, and a tool run on
that prompt: what a changed prompt looks like to a replay (tests/supervisor/on_miss_test.sh).

    python3 two_calls.py "SECOND PROMPT"
"""
import json
import os
import subprocess
import sys
import time
import urllib.request

BASE_URL = os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8080/v1").rstrip("/")


def chat(prompt):
    body = json.dumps({"model": "standin-1",
                       "messages": [{"role": "user", "content": prompt}]}).encode()
    request = urllib.request.Request(
        BASE_URL + "/chat/completions", data=body, method="POST",
        headers={"Content-Type": "application/json",
                 "Authorization": "Bearer " + os.environ.get("OPENAI_API_KEY", "none")})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)["choices"][0]["message"]["content"]


print("started at", int(time.time()))
print("first:", chat("List the files to read first"))
time.sleep(0.5)
print("second:", chat(sys.argv[1]))
tool = subprocess.run(["wc", "-c"], input=sys.argv[1], capture_output=True, text=True)
counted = subprocess.run(["printf", "%s|", *sys.argv[1].split()], capture_output=True, text=True)
print("tool:", tool.stdout.strip(), counted.stdout, "(exit %d)" % counted.returncode)
with open("answer.txt", "w") as f:
    f.write(sys.argv[1] + "\n")
print("done at", int(time.time()))
