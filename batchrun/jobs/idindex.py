"""The custom_ids seen so far in a file, kept small enough for millions of lines."""

from __future__ import annotations

import hashlib
from array import array


class IdIndex:
    """custom_id -> first line in 16-32 bytes per id: 64-bit hashes, never the strings.

    An open-addressing table in two flat arrays, because a dict of Python ints costs ~115 bytes
    per entry (116 MB for a million lines). Two ids sharing a 64-bit hash would be reported as
    duplicates: about one chance in 40 million for a file of a million ids.
    """

    def __init__(self) -> None:
        self.keys = array("Q", bytes(8 * 1024))  # 0 marks an empty slot
        self.lines = array("Q", bytes(8 * 1024))
        self.count = 0

    def first_line(self, custom_id: str, line_no: int) -> int:
        """The line that first used ``custom_id``; records ``line_no`` if none did."""
        digest = hashlib.blake2b(custom_id.encode(), digest_size=8).digest()
        key = int.from_bytes(digest, "big") or 1
        slot = self._slot(key)
        if self.keys[slot]:
            return self.lines[slot]
        self.keys[slot], self.lines[slot] = key, line_no
        self.count += 1
        if self.count * 2 > len(self.keys):  # keep probe chains short: at most half full
            self._grow()
        return line_no

    def _slot(self, key: int) -> int:
        """The slot holding ``key``, or the empty slot where it belongs."""
        keys, mask = self.keys, len(self.keys) - 1
        slot = key & mask
        while keys[slot] and keys[slot] != key:
            slot = (slot + 1) & mask
        return slot

    def _grow(self) -> None:
        old = zip(self.keys, self.lines, strict=True)
        size = len(self.keys) * 2
        self.keys, self.lines = array("Q", bytes(8 * size)), array("Q", bytes(8 * size))
        for key, line_no in old:
            if key:
                slot = self._slot(key)
                self.keys[slot], self.lines[slot] = key, line_no
