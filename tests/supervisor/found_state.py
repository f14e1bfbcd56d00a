# An agent that keeps its state in the workspace, as agents do: it looks for its state file and
# makes it on its first run (a new file renamed over the old), appends to a log that was there,
# writes a scratch file through mkstemp and links a second name to it, truncates a file, and
# prints what it found. A recording changes all of these; a replay in the workspace the
# recording left must print what the recording printed.
import json
import os
import tempfile

first = not os.path.exists("state.json")
state = {"runs": 0} if first else json.load(open("state.json"))
state["runs"] += 1
with open("state.json.tmp", "w") as staged:
    json.dump(state, staged)
os.replace("state.json.tmp", "state.json")
with open("log.txt", "a") as log:
    log.write("run %d\n" % state["runs"])
lines = len(open("log.txt").read().splitlines())
handle, scratch = tempfile.mkstemp(prefix="scratch-", dir=".")
os.write(handle, b"scratch")
os.close(handle)
linked = not os.path.exists("scratch-link")
os.link(scratch, "scratch-link")
os.truncate("trimmed.txt", 3)
print("first run:", first, "runs:", state["runs"], "log lines:", lines,
      "link made:", linked, "trimmed:", open("trimmed.txt").read())
