"""Tools changing the workspace, one subprocess at a time, and the workspace listed after each.

A replay does not run a tool: what it did must come from the tape. After every command this
prints every entry of the workspace (type, mode, link count, link target, size, digest), so
that a run natively, recorded and replayed can be compared line for line.
Usage: python3 tool_effects.py [--repeat N] [--attribution]
  --repeat N     each command N times in a shell loop (a fast tool), in N folders that each go
                 through the whole sequence
  --attribution  the program itself writes a file while a subprocess sleeps
"""

import hashlib
import os
import stat
import subprocess
import sys

COMMANDS = [
    "mkdir -p a/b/c/d/e",
    "echo hello > a/b/c/d/e/f.txt",
    "cp -r a a2",
    "mv a2 moved",
    "rm -rf moved/b/c",
    "ln -s a/b/c/d/e/f.txt link",
    "ln a/b/c/d/e/f.txt hard",
    "chmod +x a/b/c/d/e/f.txt",
    "chmod 700 a/b",
    "touch empty",
    "tar cf t.tar a && mkdir x && tar xf t.tar -C x",
    "zip -qr z.zip a && unzip -q z.zip -d y",
    "git init -q repo && cd repo && echo one > f && git add f && git commit -qm one",
    "cd repo && git checkout -qb side && echo two > f && echo new > g && git add . && "
    "git commit -qm two && git checkout -q -",
    "cd repo && git checkout -q side",
    "sed -i s/hello/bye/ a/b/c/d/e/f.txt",
    "printf 'b\\na\\n' > s.txt && sort -o s.txt s.txt",
    "install -D -m 640 s.txt deep/er/inst.txt",
    "truncate -s 100 s.txt",
    "mkdir r && rmdir r && rmdir x/a/b/c/d/e 2>/dev/null || true",
    "mv a/b/c/d/e a/e2",
    "ln -sf ../s.txt a/rel_link",
    "rm link",
    "chmod 600 hard",
    "mkdir -m 500 ro",
    "cp -a a/e2 kept",
    "rm -rf x y",
    "mv s.txt s2.txt",
    "python3 -c \"import os; os.makedirs('py/a/b'); open('py/a/b/f','w').write('x')\"",
    "ln -s missing dangling && mkfifo pipe && rm pipe",
]

# Git's objects hold dates: fixed, so that every run makes the same ones.
GIT = {
    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
    "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
}


def listing():
    lines = []
    for folder, folders, files in os.walk("."):
        folders.sort()
        for name in sorted(folders + files):
            path = os.path.join(folder, name)
            info = os.lstat(path)
            mode = oct(stat.S_IMODE(info.st_mode))
            if stat.S_ISLNK(info.st_mode):
                lines.append(f"l {mode} {path} -> {os.readlink(path)}")
            elif stat.S_ISDIR(info.st_mode):
                lines.append(f"d {mode} {path}")
            elif path.endswith(("/.git/index", ".tar", ".zip")):
                # Git's stat cache (inodes, times) and archives (times): their size only.
                lines.append(f"f {mode} {info.st_nlink} {path} {info.st_size}")
            else:
                with open(path, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()[:16]
                lines.append(f"f {mode} {info.st_nlink} {path} {info.st_size} {digest}")
    return lines


def main():
    args = sys.argv[1:]
    repeat = int(args[args.index("--repeat") + 1]) if "--repeat" in args else 0
    env = dict(os.environ, **GIT)
    if "--attribution" in args:
        sleeper = subprocess.Popen(["sleep", "0.5"])
        with open("mine.txt", "w") as f:
            f.write("written by the program while its subprocess ran\n")
        sleeper.wait()
    for step, command in enumerate(COMMANDS, 1):
        if repeat:
            command = (f"for i in $(seq {repeat}); do mkdir -p r$i && "
                       f"(cd r$i && {{ {command} ; }}) >/dev/null 2>&1; done; true")
        done = subprocess.run(command, shell=True, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        print(f"## {step} {command} -> {done.returncode}")
        for line in listing():
            print(line)
        sys.stdout.flush()


main()
