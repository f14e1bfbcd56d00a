#!/usr/bin/env python3
"""Durability of streaming recording, driven through tests/tape/stream_helper.

  kill        a recorder writing 1,000,000 records is killed (SIGKILL) at random points, 20
              times; every time the tape loads, every record in it is whole, seq runs 0..N-1, and
              N is at least what the writer had reported flushed before the kill (a torn last
              line, cut by the kill mid-write, is allowed: readers stop before it).
  threads     8 threads x 250,000 records into one tape: seq exactly 0..N-1, every line parses.
  processes   4 processes x 2 threads x 50,000 records appending to one tape at once.
  disk_full   the disk fills up mid-recording (a 16 MiB tmpfs where mounting is allowed, and a
              file-size limit, which always is): one clear error line, exit 2, and a valid tape
              holding every record flushed before the failure.

With --compressed every tape is named *.tape.zst, so each is written as zstd frames (the frame a
kill leaves open is its torn tail, and writers sharing a tape close a frame per append).

Usage: durability_test.py SCENARIO STREAM_HELPER [--compressed]
"""
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time


SUFFIX = ".tape"


def tape_path(work, name):
    return os.path.join(work, name + SUFFIX)


def check(helper, tape, minimum, exact=None, allow_torn=False):
    args = [helper, "check", tape, str(minimum)] + ([str(exact)] if exact is not None else [])
    env = dict(os.environ, TAPEDECK_ALLOW_TORN="1") if allow_torn else None
    result = subprocess.run(args, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise AssertionError(f"check {tape}: {result.stdout.strip()} {result.stderr.strip()}")
    return int(result.stdout.split()[-1])


class Recording:
    """A stream_helper record run whose 'flushed N' reports are followed as they come."""

    def __init__(self, helper, tape, per_thread, threads, *extra, preexec=None):
        self.flushed = 0
        self.lines = []
        self.process = subprocess.Popen(
            [helper, "record", tape, str(per_thread), str(threads), *extra],
            stdout=subprocess.PIPE, text=True, preexec_fn=preexec)
        self.reader = threading.Thread(target=self._follow)
        self.reader.start()

    def _follow(self):
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("flushed "):
                self.flushed = int(line.split()[1])

    def wait(self):
        code = self.process.wait()
        self.reader.join()
        return code


def scenario_kill(helper, work):
    records = 1_000_000
    # Calibrate: how long one whole recording takes here (sanitizer builds are slower).
    started = time.monotonic()
    whole = Recording(helper, tape_path(work, "whole"), records, 1, "--interval", "20")
    assert whole.wait() == 0, whole.lines[-3:]
    duration = time.monotonic() - started
    check(helper, tape_path(work, "whole"), records, records)
    print(f"one recording of {records} records takes {duration:.2f}s")

    rng = random.Random(20261124)
    for trial in range(20):
        tape = tape_path(work, f"killed{trial}")
        run = Recording(helper, tape, records, 1, "--interval", "20")
        time.sleep(rng.uniform(0.0, duration))
        run.process.send_signal(signal.SIGKILL)
        run.wait()
        reported = run.flushed
        if not os.path.exists(tape):
            assert reported == 0, f"trial {trial}: {reported} flushed but no tape"
            print(f"trial {trial}: killed before the tape existed")
            continue
        # A kill in the middle of a write leaves a torn last line: readers stop before it.
        found = check(helper, tape, reported, allow_torn=True)
        print(f"trial {trial}: killed with {reported} reported flushed; tape holds {found}")


def scenario_threads(helper, work):
    tape = tape_path(work, "threads")
    run = Recording(helper, tape, 250_000, 8)
    assert run.wait() == 0, run.lines[-3:]
    found = check(helper, tape, 2_000_000, 2_000_000)
    print(f"8 threads x 250,000: {found} records, seq 0..{found - 1}")


def scenario_processes(helper, work):
    tape = tape_path(work, "shared")
    runs = [Recording(helper, tape, 50_000, 2, "--interval", "5") for _ in range(4)]
    for run in runs:
        assert run.wait() == 0, run.lines[-3:]
    found = check(helper, tape, 400_000, 400_000)
    print(f"4 processes x 2 threads x 50,000: {found} records, seq 0..{found - 1}")


def fill_up(helper, tape, preexec=None):
    run = Recording(helper, tape, 1_000_000, 2, "--interval", "2", preexec=preexec)
    code = run.wait()
    errors = [line for line in run.lines if line.startswith("error: ")]
    assert code == 2, f"exit {code}, expected 2: {run.lines[-3:]}"
    assert len(errors) == 1, f"expected one error line: {run.lines[-3:]}"
    # A compressed tape's frame stays open after the failed write (closing it is a write too): its
    # torn tail, past every whole record.
    found = check(helper, tape, run.flushed, allow_torn=SUFFIX != ".tape")
    assert found > 0, "nothing was flushed before the disk filled: the test proves little"
    print(f"  {errors[0]}")
    print(f"  the tape holds {found} whole records ({run.flushed} reported flushed)")


def scenario_disk_full(helper, work):
    mount = os.path.join(work, "small-disk")
    os.mkdir(mount)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", mount],
                             capture_output=True).returncode == 0
    if mounted:
        try:
            print("a 16 MiB tmpfs fills up:")
            fill_up(helper, tape_path(mount, "full"))
        finally:
            subprocess.run(["umount", mount])
    else:
        print("mounting a tmpfs is not allowed here; the file-size limit below stands in")

    # Compressed, two million records take far less than the plain tape's 24 MiB.
    limit = (24 if SUFFIX == ".tape" else 1) << 20

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    print(f"a {limit >> 20} MiB file-size limit is reached:")
    fill_up(helper, tape_path(work, "limited"), preexec=limit_file_size)


def main():
    global SUFFIX
    if len(sys.argv) not in (3, 4) or sys.argv[3:] not in ([], ["--compressed"]):
        print(__doc__)
        return 2
    scenario, helper = sys.argv[1], sys.argv[2]
    if sys.argv[3:]:
        SUFFIX = ".tape.zst"
    work = tempfile.mkdtemp(prefix="tapedeck-durability-")
    try:
        globals()[f"scenario_{scenario}"](helper, work)
    except AssertionError as failure:
        print(f"FAIL: {scenario}: {failure}")
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{scenario}: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
