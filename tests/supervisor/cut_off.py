"""A process under the preload whose supervisor goes away ends at once; it never spins.

Stands in for the supervisor: listens on a Unix socket, starts a program under the preload
library pointed at it, takes its connection, then closes it (as a killed tapedeck's socket
closes). The program, a loop of short sleeps and clock reads, must end within a second, with
tapedeck's one line on stderr.
Usage: python3 cut_off.py PRELOAD_LIBRARY
"""
import os
import socket
import subprocess
import sys
import tempfile
import time

library = sys.argv[1]
folder = tempfile.mkdtemp()
path = os.path.join(folder, "s")
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(path)
listener.listen(8)
env = dict(os.environ, LD_PRELOAD=library, TAPEDECK_MODE="record", TAPEDECK_SOCKET=path,
           TAPEDECK_EXEC="/bin/true")
program = subprocess.Popen(
    [sys.executable, "-c", "import time\nwhile True:\n    time.sleep(0.01); time.time()"],
    env=env, stderr=subprocess.PIPE)
listener.settimeout(10)
connection, _ = listener.accept()
time.sleep(0.3)  # it runs, taped
connection.close()
listener.close()
cut = time.monotonic()
try:
    code = program.wait(timeout=5)
except subprocess.TimeoutExpired:
    program.kill()
    print("FAIL: the program still ran 5 s after its supervisor went away")
    sys.exit(1)
took = time.monotonic() - cut
err = program.stderr.read().decode()
ok = took < 1.0 and code == 137 and "lost the supervisor" in err
print(f"{'ok' if ok else 'FAIL'}: cut off from its supervisor, the program ended in {took:.2f} s "
      f"(exit {code}; stderr {err.strip()!r})")
sys.exit(0 if ok else 1)
