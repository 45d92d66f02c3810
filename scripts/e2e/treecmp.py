#!/usr/bin/env python3
"""Compare two directory trees without ever building a full path.

Usage: treecmp.py [--contents-only] LEFT RIGHT

Walks both trees side by side with directory file descriptors (os.open with dir_fd,
os.scandir(fd), os.stat(name, dir_fd=..., follow_symlinks=False)), so trees nested
deeper than PATH_MAX compare fine; rsync and find cannot do that. For every entry it
compares the name, the type, the permission bits (including setuid, setgid and sticky),
owner and group, the size, the modification time in nanoseconds, symlink targets,
device numbers, and the SHA-256 of regular files. The roots' own metadata is compared
as well, unless --contents-only is given (for a subtree restored into a target directory
whose own metadata is not the subtree's). LEFT and RIGHT themselves may be longer than
PATH_MAX: they are opened one component at a time.

Prints one line per difference (names are shown with Python's repr of their bytes)
and a summary line; exits 0 when the trees match, 1 when they differ, 2 on usage or
I/O errors. Independent of zaibei: it uses nothing but the Python standard library.
"""

import hashlib
import os
import stat
import sys

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
NOATIME = getattr(os, "O_NOATIME", 0)


def kind(mode):
    for test, name in (
        (stat.S_ISDIR, "dir"),
        (stat.S_ISREG, "file"),
        (stat.S_ISLNK, "symlink"),
        (stat.S_ISFIFO, "fifo"),
        (stat.S_ISCHR, "chardev"),
        (stat.S_ISBLK, "blockdev"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return name
    return "unknown"


def open_file(name, dir_fd):
    """Opens for reading without touching the access time where allowed."""
    if NOATIME:
        try:
            return os.open(name, FILE_FLAGS | NOATIME, dir_fd=dir_fd)
        except PermissionError:
            pass
    return os.open(name, FILE_FLAGS, dir_fd=dir_fd)


def sha256_at(dir_fd, name):
    fd = open_file(name, dir_fd)
    try:
        h = hashlib.sha256()
        while True:
            block = os.read(fd, 1 << 20)
            if not block:
                break
            h.update(block)
        return h.hexdigest()
    finally:
        os.close(fd)


def describe(dir_fd, name, st):
    """The compared properties of one entry."""
    k = kind(st.st_mode)
    d = {
        "type": k,
        "mode": oct(stat.S_IMODE(st.st_mode)),
        "uid": st.st_uid,
        "gid": st.st_gid,
        "mtime_ns": st.st_mtime_ns,
    }
    if k != "dir":
        d["size"] = st.st_size
    if k == "file":
        d["sha256"] = sha256_at(dir_fd, name)
    elif k == "symlink":
        d["target"] = os.readlink(name, dir_fd=dir_fd)
    elif k in ("chardev", "blockdev"):
        d["rdev"] = (os.major(st.st_rdev), os.minor(st.st_rdev))
    return d


def open_dir(path):
    """Opens a directory by a path of any length, one component at a time."""
    fd = os.open(b"/" if path.startswith(b"/") else b".", DIR_FLAGS)
    try:
        for part in path.split(b"/"):
            if part in (b"", b"."):
                continue
            # Symlinks are followed only here, in the roots given on the command line.
            nfd = os.open(part, DIR_FLAGS & ~os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd


def show(path):
    return repr(path)[1:] if isinstance(path, bytes) else repr(path)


class Comparison:
    def __init__(self):
        self.differences = 0
        self.entries = 0
        self.max_depth = 0
        self.max_path = 0

    def differ(self, path, what):
        self.differences += 1
        if self.differences <= 200:
            print(f"DIFF {show(path)}: {what}")
        elif self.differences == 201:
            print("... further differences not shown")

    def compare_entry(self, path, lfd, rfd, name):
        """Compares one entry; returns True when both are directories to descend into."""
        self.entries += 1
        self.max_path = max(self.max_path, len(path))
        ls = os.stat(name, dir_fd=lfd, follow_symlinks=False)
        rs = os.stat(name, dir_fd=rfd, follow_symlinks=False)
        if kind(ls.st_mode) != kind(rs.st_mode):
            self.differ(path, f"type {kind(ls.st_mode)} != {kind(rs.st_mode)}")
            return False
        ld = describe(lfd, name, ls)
        rd = describe(rfd, name, rs)
        for key in ld:
            if ld[key] != rd.get(key):
                self.differ(path, f"{key} {ld[key]!r} != {rd.get(key)!r}")
        return ld["type"] == "dir"

    def compare_dir(self, path, lfd, rfd):
        """Compares the entries of one directory pair; returns the common subdirectories."""
        lnames = {os.fsencode(e.name) for e in os.scandir(lfd)}
        rnames = {os.fsencode(e.name) for e in os.scandir(rfd)}
        for n in sorted(lnames - rnames):
            self.differ(path + b"/" + n, "only in left")
        for n in sorted(rnames - lnames):
            self.differ(path + b"/" + n, "only in right")
        subdirs = []
        for n in sorted(lnames & rnames):
            if self.compare_entry(path + b"/" + n, lfd, rfd, n):
                subdirs.append(n)
        subdirs.reverse()
        return subdirs

    def run(self, left, right, contents_only):
        lroot = open_dir(left)
        try:
            rroot = open_dir(right)
        except BaseException:
            os.close(lroot)
            raise
        ls, rs = os.fstat(lroot), os.fstat(rroot)
        for key, lv, rv in () if contents_only else (
            ("mode", stat.S_IMODE(ls.st_mode), stat.S_IMODE(rs.st_mode)),
            ("uid", ls.st_uid, rs.st_uid),
            ("gid", ls.st_gid, rs.st_gid),
            ("mtime_ns", ls.st_mtime_ns, rs.st_mtime_ns),
        ):
            if lv != rv:
                self.differ(b".", f"{key} {lv!r} != {rv!r}")
        # Depth-first with an explicit stack of frames (relative path, left dir fd, right dir
        # fd, subdirectories still to visit): one pair of handles per level, no recursion.
        stack = [(b".", lroot, rroot, [])]
        try:
            stack[0] = (b".", lroot, rroot, self.compare_dir(b".", lroot, rroot))
            while stack:
                path, lfd, rfd, pending = stack[-1]
                self.max_depth = max(self.max_depth, len(stack) - 1)
                if not pending:
                    stack.pop()
                    os.close(lfd)
                    os.close(rfd)
                    continue
                name = pending.pop()
                child = path + b"/" + name
                clfd = os.open(name, DIR_FLAGS, dir_fd=lfd)
                try:
                    crfd = os.open(name, DIR_FLAGS, dir_fd=rfd)
                except BaseException:
                    os.close(clfd)
                    raise
                # On the stack before its entries are read, so that `finally` closes it.
                stack.append((child, clfd, crfd, []))
                stack[-1] = (child, clfd, crfd, self.compare_dir(child, clfd, crfd))
        finally:
            for _, lfd, rfd, _ in stack:
                os.close(lfd)
                os.close(rfd)
        print(
            f"compared {self.entries} entries, deepest level {self.max_depth}, "
            f"longest relative path {self.max_path} bytes: {self.differences} differences"
        )
        return self.differences == 0


def main(argv):
    args = argv[1:]
    contents_only = bool(args) and args[0] == "--contents-only"
    if contents_only:
        args = args[1:]
    if len(args) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    try:
        ok = Comparison().run(os.fsencode(args[0]), os.fsencode(args[1]), contents_only)
    except OSError as e:
        print(f"treecmp: {e}", file=sys.stderr)
        return 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
