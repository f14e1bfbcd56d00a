# File times the program asks to be "now" read back as its clock: os.utime(path) (utimensat with
# NULL times) and os.utime(fd) (futimens). Recorded, the kernel's clock and the program's agree;
# a replay runs after the recording ended, which slept two seconds last (a sleep the replay
# skips), so the kernel's clock is then at least that far past every time the program reads,
# unless the time set is the program's clock. Times given explicitly stay as given. Prints what a
# replay must print again.
import os
import time

with open("touched.txt", "w") as touched:
    touched.write("x")
now = time.time()
os.utime("touched.txt")
print("utime(path) is the clock:", abs(os.stat("touched.txt").st_mtime - now) < 0.5)
descriptor = os.open("touched.txt", os.O_RDONLY)
os.utime(descriptor)
os.close(descriptor)
print("utime(fd) is the clock:", abs(os.stat("touched.txt").st_mtime - now) < 0.5)
os.utime("touched.txt", ns=(1_000_000_123, 2_000_000_456))
print("explicit times stay:", os.stat("touched.txt").st_mtime_ns)
time.sleep(2)
