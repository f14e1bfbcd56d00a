# A program that keeps temporary files, as agents and their tools do: a tempfile.mkdtemp()
# folder with a file in it, a file the host put in /tmp before the run (read), a file written
# beside it, files tools write in /tmp that it then reads (a replay does not run the tools), a
# file and a folder of the host's that a tool removes, and a workspace file; and in the home
# folder, as agents keep their state, a counter of its runs, a settings file it updates by
# renaming a new one over it, and a marker of its first run.
# Prints what a replay must print again. Usage: private_world.py HOST_FOLDER (a folder of the
# host's /tmp)
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import uuid

host = sys.argv[1]
folder = tempfile.mkdtemp(prefix="agent-")
with open(os.path.join(folder, "scratch.txt"), "w") as scratch:
    scratch.write("kept for a moment")
print("temporary folder", folder, "holds", os.listdir(folder))
print("TMPDIR", os.environ.get("TMPDIR"))
with open(os.path.join(host, "from-host.txt")) as given:
    print("the host's file says", given.read().strip())
with open(os.path.join(host, "written.txt"), "w") as written:
    written.write("by the program")
subprocess.run(["sh", "-c", f"echo by a tool > {host}/tool.txt"], check=True)
subprocess.run(["sh", "-c", f"mkdir {folder}/made && date +%N > {folder}/made/out.txt"], check=True)
subprocess.run(["rm", "-r", f"{host}/to-remove.txt", f"{host}/folder-to-remove"], check=True)
print("after the tool removed them, the host's file is there:",
      os.path.exists(f"{host}/to-remove.txt"), "and its folder:",
      os.path.exists(f"{host}/folder-to-remove"))
print("the tool left", open(f"{host}/tool.txt").read().strip(), "and",
      open(f"{folder}/made/out.txt").read().strip())
with open("result.txt", "w") as result:
    result.write(str(uuid.uuid4()))
print("result", open("result.txt").read())
counter = pathlib.Path.home() / ".agentrc"
runs = int(counter.read_text()) + 1 if counter.exists() else 1
counter.write_text(str(runs))
print("runs so far", counter.read_text())
# Settings updated as agents update them: a new file renamed over the old one.
settings = pathlib.Path.home() / ".config" / "agent" / "settings.json"
values = json.loads(settings.read_text())
values["runs"] += 1
staged = settings.with_suffix(".json.tmp")
staged.write_text(json.dumps(values))
os.replace(staged, settings)
print("settings now", settings.read_text())
marker = pathlib.Path.home() / ".agent-first-run"
print("the first-run marker was there:", marker.exists())
marker.write_text("seen")
