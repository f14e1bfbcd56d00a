"""A late scrub killed (SIGKILL) at any point loses nothing and leaves no key behind.

A tape holds a value of no credential shape (as a token learned only when the proxy relays it)
in 300 command lines, printed outputs and file bytes. Its scrub is killed at points spread over
its measured duration, 24 times, and once the state a kill after the new tape was in place
leaves is built. After every kill: `tapedeck verify` passes (the tape and every
entry its records name are whole, old or new), `tapedeck scan` reports the value wherever it is
still left, and after `tapedeck verify --repair` no byte of the value is
left anywhere, verify and scan pass, and the tape still holds all its records.

Usage: scrub_kill_test.py SCRUB_HELPER TAPEDECK
"""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

GROUPS = 300


def holds(tape, value):
    """Whether any byte sequence of the tape or its sidecar is `value`."""
    needle = value.encode()
    paths = [tape] + [os.path.join(tape + ".cas", name) for name in os.listdir(tape + ".cas")]
    return any(needle in open(path, "rb").read() for path in paths if os.path.isfile(path))


def tapedeck(td, *args):
    return subprocess.run([td, *args], capture_output=True, text=True)


def said(result):
    """The first lines a command printed, for a failure's message."""
    return " | ".join((result.stdout + result.stderr).strip().splitlines()[:3])


def records_in(td, tape):
    return json.loads(tapedeck(td, "stats", tape, "--json").stdout)["records"]


def main():
    helper, td = sys.argv[1], sys.argv[2]
    work = tempfile.mkdtemp()
    try:
        value = "tdk" + "".join(random.Random(7).choice("abcdefghijklmnopqrstuvwxyz0123456789")
                                for _ in range(36))
        pristine = os.path.join(work, "pristine.tape")
        subprocess.run([helper, "make", pristine, value, str(GROUPS)], check=True)
        assert holds(pristine, value)
        expected_records = records_in(td, pristine)

        def fresh(name):
            tape = os.path.join(work, name)
            shutil.copy(pristine, tape)
            shutil.copytree(pristine + ".cas", tape + ".cas")
            return tape

        # Calibrate: whole scrubs, from their "scrubbing" line to their end (median of 3).
        durations = []
        for whole in range(3):
            tape = fresh(f"whole{whole}.tape")
            run = subprocess.Popen([helper, "scrub", tape, value], stdout=subprocess.PIPE,
                                   text=True)
            run.stdout.readline()
            started = time.monotonic()
            assert run.wait() == 0
            durations.append(time.monotonic() - started)
            assert not holds(tape, value), "a whole scrub left the value"
            assert not os.path.exists(tape + ".scrub"), "a whole scrub left its journal"
        duration = sorted(durations)[1]
        print(f"one scrub of {GROUPS * 3} records takes {duration:.3f}s")

        failures = 0
        stopped = 0  # kills that left a scrub to finish
        before = 0  # of them, kills before the new tape was in place (the old one holds the value)
        rng = random.Random(20261126)
        for trial in range(25):
            tape = fresh(f"killed{trial}.tape")
            if trial < 24:
                # Spread over a little more than the scrub takes: some kills come after its end.
                run = subprocess.Popen([helper, "scrub", tape, value], stdout=subprocess.PIPE,
                                       text=True)
                run.stdout.readline()
                time.sleep(1.2 * duration * (trial + rng.random()) / 24)
                run.send_signal(signal.SIGKILL)
                run.wait()
            else:
                # The window after the new tape is in place (removing the old entries) is short:
                # that state is built here. The scrubbed tape, the old entries put back, and the
                # journal, as a kill there leaves them.
                subprocess.run([helper, "scrub", tape, value], capture_output=True, check=True)
                for name in os.listdir(pristine + ".cas"):
                    shutil.copy(os.path.join(pristine + ".cas", name), tape + ".cas")
                subprocess.run([helper, "journal", tape, value], check=True)
            journal = os.path.exists(tape + ".scrub")
            stopped += journal
            # Whether the new tape was in place: its lines no longer hold the value.
            replaced = value.encode() not in open(tape, "rb").read()
            problems = []
            verify = tapedeck(td, "verify", tape)
            if verify.returncode != 0:
                problems.append(f"verify after the kill exited {verify.returncode}: "
                                f"{said(verify)}")
            # A kill after the last sweep (only the journal's removal left) leaves no value to
            # report; before that, scan must find it wherever it still is.
            held = holds(tape, value)
            if held and tapedeck(td, "scan", tape).returncode != 1:
                problems.append("scan did not report the value a stopped scrub left")
            repair = tapedeck(td, "verify", "--repair", tape)
            if repair.returncode != 0:
                problems.append(f"verify --repair exited {repair.returncode}: {said(repair)}")
            if holds(tape, value):
                problems.append("the value survived verify --repair")
            if os.path.exists(tape + ".scrub"):
                problems.append("the journal survived verify --repair")
            if tapedeck(td, "scan", tape).returncode != 0:
                problems.append("scan after the repair still finds something")
            after = tapedeck(td, "verify", tape)
            if after.returncode != 0:
                problems.append(f"verify after the repair fails: {said(after)}")
            if records_in(td, tape) != expected_records:
                problems.append("records were lost")
            state = ("scrub had ended" if not journal else
                     "stopped after the tape was replaced" if replaced else
                     "stopped before the tape was replaced")
            before += journal and not replaced
            print(f"trial {trial}: {state}; " + ("ok" if not problems else "; ".join(problems)))
            failures += bool(problems)
        # Kills spread over the measured duration must land inside it; if none did, this test
        # tested nothing.
        if before == 0:
            print("FAIL: no kill landed while the scrub ran")
            failures += 1
        print(f"{stopped} of 25 stops left a scrub to finish, {before} of them before the tape was "
              "replaced")
        if failures:
            print(f"{failures} trial(s) failed")
            return 1
        print("all trials passed")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
