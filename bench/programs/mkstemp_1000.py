"""Makes 1,000 temporary files in the workspace with tempfile.mkstemp (O_CREAT|O_EXCL each)."""
import os
import tempfile

os.makedirs("tmp", exist_ok=True)
for _ in range(1000):
    fd, _name = tempfile.mkstemp(dir="tmp")
    os.write(fd, b"x")
    os.close(fd)
print(len(os.listdir("tmp")))
