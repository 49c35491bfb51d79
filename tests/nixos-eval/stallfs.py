# A FUSE filesystem whose server answers INIT and then nothing: what the
# service user's own FUSE server can do (with user_allow_other). Any request
# sent to it (a stat, a lookup, an open) waits until this process dies.
# Used by tests/nixos-eval/check against left4me-declare; the Rust tests
# have the same in tests/common (StallingFuse).
#   python3 stallfs.py MOUNTPOINT UID
import ctypes
import os
import struct
import sys

FUSE_INIT = 26
mountpoint, uid = sys.argv[1], int(sys.argv[2])
fd = os.open("/dev/fuse", os.O_RDWR)
options = f"fd={fd},rootmode=40000,user_id={uid},group_id={uid},allow_other"
libc = ctypes.CDLL(None, use_errno=True)
MS_NOSUID, MS_NODEV = 2, 4
if libc.mount(b"stallfs", mountpoint.encode(), b"fuse.stallfs", MS_NOSUID | MS_NODEV, options.encode()) != 0:
    sys.exit(f"stallfs: mount: errno {ctypes.get_errno()}")
while True:
    request = os.read(fd, 1 << 20)
    _length, opcode, unique = struct.unpack_from("<IIQ", request, 0)
    if opcode == FUSE_INIT:
        # fuse_init_out (protocol 7.31): major, minor, max_readahead, flags,
        # max_background, congestion_threshold, max_write, time_gran,
        # max_pages, map_alignment, flags2, unused[7].
        body = struct.pack("<IIIIHHIIHHI7I", 7, 31, 0, 0, 0, 0, 4096, 0, 0, 0, 0, *([0] * 7))
        os.write(fd, struct.pack("<IiQ", 16 + len(body), 0, unique) + body)
