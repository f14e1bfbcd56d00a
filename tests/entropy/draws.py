"""Randomness as a Python agent meets it (the entropy end-to-end test runs it recorded and
replayed): uuid4, random, secrets, hash randomisation, tempfile's names, /dev/urandom."""
import os
import random
import secrets
import tempfile
import uuid

print("uuid4", uuid.uuid4())
print("random", random.random(), random.randint(0, 10**9))
print("secrets", secrets.token_hex(16))
print("hash", hash("abc"))
fd, name = tempfile.mkstemp(dir=".", prefix="scratch-")
os.close(fd)
print("mkstemp", os.path.basename(name))
with open("/dev/urandom", "rb") as f:
    print("urandom", f.read(16).hex())
print("os.urandom", os.urandom(16).hex())
