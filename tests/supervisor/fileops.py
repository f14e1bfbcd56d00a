"""Everyday file operations, each printed with what the file system answered.

Run natively, under `tapedeck run` and under `tapedeck replay` in the same starting workspace,
the three outputs must be identical (tests/supervisor/fileops_test.sh). The output holds only
what a file system decides (results, errno names, bytes, modes, link targets, listings), never
what differs between two native runs (inode numbers, times of day, random names).

Grow it: every file operation a program may make belongs here.
"""
import errno
import hashlib
import os
import shutil
import stat
import sys
import tempfile

step_number = 0


def say(what, answer):
    global step_number
    step_number += 1
    print(f"{step_number:02d} {what}: {answer}", flush=True)


def attempt(what, action):
    """Runs `action`, printing its result or the errno it failed with."""
    try:
        result = action()
    except OSError as error:
        say(what, "error " + errno.errorcode.get(error.errno, str(error.errno)))
        return None
    say(what, "ok" if result is None else result)
    return result


def read(path, **kwargs):
    with open(path, "rb", **kwargs) as f:
        return f.read()


def write(path, data, mode="wb"):
    with open(path, mode) as f:
        f.write(data)


def mode_of(path, follow=True):
    return oct(stat.S_IMODE(os.stat(path, follow_symlinks=follow).st_mode))


def snapshot(root):
    """The tree under root: type, mode, size, content digest, link target; sorted."""
    lines = []
    for folder, dirs, files in os.walk(root):
        if os.path.relpath(folder, root) == "tmp":  # random names: only how many
            lines.append(f"tmp holds {len(dirs)} folder(s) and {len(files)} file(s)")
            dirs.clear()
            continue
        dirs.sort()
        for name in sorted(dirs) + sorted(files):
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            kind = "l" if stat.S_ISLNK(st.st_mode) else "d" if stat.S_ISDIR(st.st_mode) else "f"
            extra = ""
            if kind == "l":
                extra = "-> " + os.readlink(path)
            elif kind == "f":
                extra = f"{st.st_size} {hashlib.sha256(read(path)).hexdigest()[:12]}"
            lines.append(f"{kind} {oct(stat.S_IMODE(st.st_mode))} {rel} {extra}".rstrip())
    return lines


def main():
    os.umask(0o022)
    root = os.getcwd()

    # Files the workspace holds before the run.
    attempt("read a workspace file", lambda: read("input.txt").decode())
    attempt("stat a workspace file's size", lambda: os.stat("input.txt").st_size)
    attempt("open a file that is not there", lambda: read("missing.txt"))
    attempt("stat a file that is not there", lambda: os.stat("missing.txt"))
    attempt("exists/isfile/isdir", lambda: (os.path.exists("input.txt"),
                                            os.path.isfile("input.txt"),
                                            os.path.isdir("input.txt")))

    # Plain writes, O_TRUNC, O_APPEND, ftruncate, fsync.
    attempt("write a new file", lambda: write("notes.txt", b"first line\n"))
    attempt("read it back", lambda: read("notes.txt"))
    attempt("append (O_APPEND)", lambda: write("notes.txt", b"second line\n", "ab"))
    attempt("append again", lambda: write("notes.txt", b"third line\n", "ab"))
    attempt("read after appends", lambda: read("notes.txt"))
    attempt("overwrite (O_TRUNC)", lambda: write("notes.txt", b"replaced\n"))
    attempt("read after truncation", lambda: read("notes.txt"))

    def truncate_through_fd():
        fd = os.open("notes.txt", os.O_RDWR)
        try:
            os.ftruncate(fd, 3)
            os.fsync(fd)
            os.lseek(fd, 0, os.SEEK_END)
            os.write(fd, b"!")
        finally:
            os.close(fd)
        return read("notes.txt")

    attempt("write a file and delete it at once",
            lambda: (write("short-lived.txt", b"here a moment\n"), os.unlink("short-lived.txt"),
                     os.path.exists("short-lived.txt"))[2])
    attempt("ftruncate to 3, fsync, write at the end", truncate_through_fd)
    attempt("os.truncate by path", lambda: (os.truncate("notes.txt", 2), read("notes.txt"))[1])
    attempt("modify a workspace file in place (r+)", lambda: _rplus("input.txt"))

    # O_CREAT|O_EXCL: lock files and temp files.
    def exclusive(path):
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        os.write(fd, b"locked")
        os.close(fd)

    attempt("O_CREAT|O_EXCL a new file", lambda: exclusive("app.lock"))
    attempt("O_CREAT|O_EXCL it again", lambda: exclusive("app.lock"))
    attempt("O_CREAT|O_EXCL a workspace file", lambda: exclusive("input.txt"))
    attempt("the lock file's bytes", lambda: read("app.lock"))

    os.makedirs("tmp", exist_ok=True)

    def temp_files():
        names = []
        for _ in range(5):
            fd, name = tempfile.mkstemp(dir="tmp", prefix="scratch-", suffix=".txt")
            os.write(fd, b"temp")
            os.close(fd)
            names.append(name)
        return (len(set(names)), all(os.path.basename(n).startswith("scratch-") for n in names),
                sorted(os.path.getsize(n) for n in names), mode_of(names[0]))

    attempt("tempfile.mkstemp five times", temp_files)

    def temp_folder():
        folder = tempfile.mkdtemp(dir="tmp", prefix="d-")
        write(os.path.join(folder, "inside.txt"), b"x")
        return (os.path.isdir(folder), mode_of(folder), os.listdir(folder))

    attempt("tempfile.mkdtemp", temp_folder)

    def named_temp():
        with tempfile.NamedTemporaryFile(dir="tmp", delete=True) as f:
            f.write(b"gone soon")
            f.flush()
            present = os.path.exists(f.name)
            name = f.name
        return (present, os.path.exists(name))

    attempt("NamedTemporaryFile, deleted at close", named_temp)

    def atomic_write():
        fd, name = tempfile.mkstemp(dir=".", prefix=".config.")
        with os.fdopen(fd, "wb") as f:
            f.write(b"setting = 1\n")
        os.replace(name, "config.ini")
        return read("config.ini")

    attempt("atomic write: mkstemp then os.replace", atomic_write)

    # Folders.
    attempt("os.makedirs work/sub", lambda: os.makedirs("work/sub"))
    attempt("os.makedirs it again", lambda: os.makedirs("work/sub"))
    attempt("shutil.copy into the new folder",
            lambda: os.path.relpath(shutil.copy("input.txt", "work/sub"), root))
    attempt("read the copy", lambda: read("work/sub/input.txt"))
    attempt("shutil.copy2 keeps the mode", lambda: (os.chmod("config.ini", 0o640),
                                                    shutil.copy2("config.ini", "work/c.ini"),
                                                    mode_of("work/c.ini"))[2])
    attempt("listdir work", lambda: sorted(os.listdir("work")))
    attempt("mkdir of an existing folder", lambda: os.mkdir("work"))
    attempt("mkdir under a missing parent", lambda: os.mkdir("nope/child"))
    attempt("rmdir of a non-empty folder", lambda: os.rmdir("work"))
    attempt("rmdir of a file", lambda: os.rmdir("notes.txt"))
    attempt("mkdir then rmdir an empty folder", lambda: (os.mkdir("empty"), os.rmdir("empty"),
                                                         os.path.exists("empty"))[2])
    attempt("rename a folder", lambda: (os.rename("work", "work2"), sorted(os.listdir("work2")))[1])
    attempt("listdir of the old name", lambda: os.listdir("work"))

    # Metadata.
    attempt("chmod 600", lambda: (os.chmod("notes.txt", 0o600), mode_of("notes.txt"))[1])
    attempt("chmod a workspace file 755", lambda: (os.chmod("input.txt", 0o755),
                                                   mode_of("input.txt"))[1])
    attempt("access W_OK / X_OK", lambda: (os.access("notes.txt", os.W_OK),
                                           os.access("notes.txt", os.X_OK),
                                           os.access("input.txt", os.X_OK)))
    attempt("utime", lambda: (os.utime("notes.txt", (1_000_000, 2_000_000)),
                              int(os.stat("notes.txt").st_mtime))[1])
    attempt("utime a folder", lambda: (os.utime("work2", (5_000_000, 6_000_000)),
                                       int(os.stat("work2").st_mtime))[1])

    # Links.
    attempt("symlink", lambda: os.symlink("notes.txt", "link-to-notes"))
    attempt("readlink", lambda: os.readlink("link-to-notes"))
    attempt("lstat is a link, stat is a file",
            lambda: (stat.S_ISLNK(os.lstat("link-to-notes").st_mode),
                     stat.S_ISREG(os.stat("link-to-notes").st_mode)))
    attempt("read through the link", lambda: read("link-to-notes"))
    attempt("symlink to a missing target", lambda: (os.symlink("nowhere", "dangling"),
                                                    os.path.exists("dangling"),
                                                    os.path.lexists("dangling"))[1:])
    attempt("symlink over an existing name", lambda: os.symlink("x", "notes.txt"))
    attempt("realpath through the link",
            lambda: os.path.relpath(os.path.realpath("link-to-notes"), root))
    attempt("hard link", lambda: (os.link("notes.txt", "notes-hard.txt"),
                                  os.stat("notes.txt").st_nlink)[1])
    attempt("write through one name, read the other",
            lambda: (write("notes-hard.txt", b"shared\n", "ab"), read("notes.txt"))[1])
    attempt("same inode", lambda: os.stat("notes.txt").st_ino == os.stat("notes-hard.txt").st_ino)
    attempt("unlink one name", lambda: (os.unlink("notes-hard.txt"),
                                        os.stat("notes.txt").st_nlink)[1])

    # Renames and deletes.
    attempt("rename over an existing file", lambda: (write("a.txt", b"A"), write("b.txt", b"B"),
                                                     os.rename("a.txt", "b.txt"),
                                                     read("b.txt"), os.path.exists("a.txt"))[3:])
    attempt("rename a missing file", lambda: os.rename("a.txt", "c.txt"))
    attempt("delete a workspace file", lambda: (os.unlink("delete-me.txt"),
                                                os.path.exists("delete-me.txt"))[1])
    attempt("delete it again", lambda: os.unlink("delete-me.txt"))
    attempt("unlink a folder", lambda: os.unlink("work2"))

    # Relative paths through a directory fd (openat and friends).
    def through_dirfd():
        os.makedirs("fdroot/inner")
        dfd = os.open("fdroot", os.O_RDONLY | os.O_DIRECTORY)
        try:
            fd = os.open("inner/f.txt", os.O_CREAT | os.O_WRONLY, 0o600, dir_fd=dfd)
            os.write(fd, b"via dirfd")
            os.close(fd)
            got = []
            got.append(os.stat("inner/f.txt", dir_fd=dfd).st_size)
            fd = os.open("inner/f.txt", os.O_RDONLY, dir_fd=dfd)
            got.append(os.read(fd, 100))
            os.close(fd)
            os.mkdir("made", dir_fd=dfd)
            os.rename("inner/f.txt", "made/g.txt", src_dir_fd=dfd, dst_dir_fd=dfd)
            got.append(sorted(os.listdir(dfd)))
            os.unlink("made/g.txt", dir_fd=dfd)
            os.rmdir("made", dir_fd=dfd)
            got.append(sorted(os.listdir(dfd)))
            return got
        finally:
            os.close(dfd)

    attempt("openat, fstatat, mkdirat, renameat, unlinkat through a folder fd", through_dirfd)

    # Names with spaces and beyond ASCII.
    odd = "a file with spaces.txt"
    wide = "naïve-日本語.txt"
    attempt("write names with spaces and non-ASCII", lambda: (write(odd, b"spaces"),
                                                              write(wide, "ünïcödé".encode())))
    attempt("read them back", lambda: (read(odd), read(wide).decode()))
    attempt("rename the non-ASCII one", lambda: (os.rename(wide, "ça va.txt"),
                                                 sorted(n for n in os.listdir(".")
                                                        if not n.isascii() or " " in n)))

    # Reading a folder while changing it.
    def listing_while_changing():
        os.makedirs("churn")
        for i in range(20):
            write(f"churn/f{i:02d}", b"x")
        seen = []
        with os.scandir("churn") as entries:
            for entry in entries:
                seen.append(entry.name)
                os.unlink(entry.path)
        return (sorted(seen) == [f"f{i:02d}" for i in range(20)], os.listdir("churn"))

    attempt("scandir while deleting every entry", listing_while_changing)

    # A whole tree.
    def tree():
        os.makedirs("tree/a/b/c")
        for folder in ("tree", "tree/a", "tree/a/b", "tree/a/b/c"):
            write(folder + "/leaf.txt", folder.encode())
        os.symlink("../leaf.txt", "tree/a/up")
        copied = shutil.copytree("tree", "tree-copy", symlinks=True)
        shutil.rmtree("tree")
        return (os.path.exists("tree"), sorted(os.listdir(copied)), os.readlink("tree-copy/a/up"))

    attempt("copytree then rmtree", tree)
    attempt("rmtree of a missing folder", lambda: shutil.rmtree("tree"))

    # Working directory.
    def change_folder():
        os.makedirs("deep/er")
        os.chdir("deep/er")
        write("here.txt", b"relative")
        where = os.path.relpath(os.getcwd(), root)
        os.chdir(root)
        return (where, read("deep/er/here.txt"))

    attempt("chdir into a new folder, write relatively, getcwd", change_folder)

    print("-- the workspace as the program sees it at the end")
    for line in snapshot(root):
        print(line)
    return 0


def _rplus(path):
    with open(path, "r+b") as f:
        head = f.read(5)
        f.seek(0)
        f.write(b"EDITED")
    return (head, read(path))


if __name__ == "__main__":
    sys.exit(main())
