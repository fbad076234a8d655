#!/usr/bin/env python3
"""raft.py with one classic mistake: the leader counts an entry as committed as soon as it is
in its own log, without waiting for a majority to store it. It looks fine while nothing fails;
cut the leader off and it acknowledges writes that the rest of the cluster never sees.
`consenso test --server-cmd 'python3 examples/python/raft_broken.py'` catches it."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import raft  # noqa: E402


class BrokenNode(raft.Node):
    def majority_match(self):
        # WRONG: Figure 2 says N must be stored on a majority (matchIndex[i] >= N).
        return self.last_index()


if __name__ == "__main__":
    raft.main(BrokenNode)
