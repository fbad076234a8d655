#!/usr/bin/env python3
"""A Raft node in plain Python (standard library only) for Consenso and Maelstrom.

It speaks Maelstrom's protocol: one JSON message per line on stdin and stdout,
`{"src": ..., "dest": ..., "body": {"type": ..., ...}}`, and serves the lin-kv
workload (`read`, `write`, `cas`). Consenso carries its messages, draws them, and
checks it:  consenso test --server-cmd 'python3 examples/python/raft.py'

What Consenso adds, all optional (docs/node-protocol.md):
- `init` carries `consenso: {time_scale, data_dir, election_timeout_ms, heartbeat_ms}`;
- `init_ok` may say `durable: true` (this node keeps term, vote and log on disk);
- `consenso_time` tells the node to run its timers slower, stop or jump them;
- the node writes `consenso_status` lines so the page can draw it.

Rules are numbered as in the Raft paper (Ongaro & Ousterhout, 2014), Figure 2.
"""

import json
import os
import queue
import random
import sys
import threading
import time

FOLLOWER, CANDIDATE, LEADER = "follower", "candidate", "leader"
TEMPORARILY_UNAVAILABLE, TIMEOUT, KEY_DOES_NOT_EXIST, PRECONDITION_FAILED = 11, 0, 20, 22


class Clock:
    """Milliseconds that run `1/scale` as fast as real time, stop, and jump when told."""

    def __init__(self):
        self.scale, self.stopped, self.base, self.real = 1.0, False, 0.0, time.monotonic()

    def now(self):
        if self.stopped:
            return self.base
        return self.base + (time.monotonic() - self.real) * 1000.0 / self.scale

    def set(self, scale, stopped, advanced_ms=0):
        self.base, self.real = self.now() + advanced_ms, time.monotonic()
        self.scale, self.stopped = max(scale, 0.001), stopped


class Node:
    def __init__(self):
        self.id, self.peers = None, []
        self.clock = Clock()
        self.election_timeout, self.heartbeat = 150, 50
        self.data_dir = None
        # Persistent state on all servers (Figure 2), written before answering anyone.
        self.term, self.voted_for, self.log = 0, None, []  # log: [{"term", "op"}], index 1 first
        # Volatile state.
        self.role, self.leader, self.commit, self.applied = FOLLOWER, None, 0, 0
        self.kv = {}
        self.next_index, self.match_index, self.votes = {}, {}, set()
        self.deadline, self.next_heartbeat = 0, 0
        self.waiting = {}  # log index -> (client, msg_id, term) to answer once applied
        self.status_sent, self.log_changed_from = None, 1

    # --- messages ---------------------------------------------------------------------------
    def send(self, dest, body):
        sys.stdout.write(json.dumps({"src": self.id, "dest": dest, "body": body}) + "\n")

    def reply(self, request, body):
        body["in_reply_to"] = request["body"].get("msg_id")
        self.send(request["src"], body)

    # --- persistence ------------------------------------------------------------------------
    def load(self):
        path = os.path.join(self.data_dir, "raft.json") if self.data_dir else None
        if path and os.path.exists(path):
            with open(path) as f:
                state = json.load(f)
            self.term, self.voted_for, self.log = state["term"], state["voted_for"], state["log"]

    def persist(self):
        if not self.data_dir:
            return
        path = os.path.join(self.data_dir, "raft.json")
        with open(path + ".tmp", "w") as f:
            json.dump({"term": self.term, "voted_for": self.voted_for, "log": self.log}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(path + ".tmp", path)

    # --- helpers ----------------------------------------------------------------------------
    def last_index(self):
        return len(self.log)

    def term_at(self, index):
        return self.log[index - 1]["term"] if 0 < index <= len(self.log) else 0

    def majority(self):
        return len(self.peers) // 2 + 1

    def reset_election_timer(self):
        self.deadline = self.clock.now() + random.uniform(self.election_timeout, 2 * self.election_timeout)

    def become_follower(self, term, leader=None):
        if term > self.term:
            self.term, self.voted_for = term, None
            self.persist()
        self.role, self.leader = FOLLOWER, leader
        # Writes this node took as leader may still commit under another: their outcome is unknown.
        for index, (client, msg_id, _) in list(self.waiting.items()):
            self.send(client, {"type": "error", "code": TIMEOUT, "in_reply_to": msg_id,
                               "text": "leadership lost; the write may or may not happen"})
        self.waiting.clear()

    # --- elections (§5.2) -------------------------------------------------------------------
    def start_election(self):
        self.term += 1
        self.role, self.voted_for, self.leader, self.votes = CANDIDATE, self.id, None, {self.id}
        self.persist()
        self.reset_election_timer()
        for peer in self.others():
            self.send(peer, {"type": "request_vote", "term": self.term, "candidate_id": self.id,
                             "last_log_index": self.last_index(), "last_log_term": self.term_at(self.last_index())})

    def others(self):
        return [p for p in self.peers if p != self.id]

    def up_to_date(self, last_index, last_term):
        """§5.4.1: the candidate's log is at least as up-to-date as ours."""
        mine = self.term_at(self.last_index())
        return last_term > mine or (last_term == mine and last_index >= self.last_index())

    def on_request_vote(self, msg):
        b = msg["body"]
        if b["term"] > self.term:
            self.become_follower(b["term"])
        granted = (b["term"] == self.term and self.voted_for in (None, msg["src"])
                   and self.up_to_date(b["last_log_index"], b["last_log_term"]))
        if granted:
            self.voted_for = msg["src"]
            self.persist()
            self.reset_election_timer()
        self.send(msg["src"], {"type": "request_vote_res", "term": self.term, "vote_granted": granted})

    def on_vote(self, msg):
        b = msg["body"]
        if b["term"] > self.term:
            return self.become_follower(b["term"])
        if self.role != CANDIDATE or b["term"] != self.term or not b["vote_granted"]:
            return
        self.votes.add(msg["src"])
        if len(self.votes) >= self.majority():
            self.role, self.leader = LEADER, self.id
            self.next_index = {p: self.last_index() + 1 for p in self.others()}
            self.match_index = {p: 0 for p in self.others()}
            self.next_heartbeat = 0  # assert leadership at once

    # --- replication (§5.3) -----------------------------------------------------------------
    def replicate(self):
        for peer in self.others():
            prev = self.next_index[peer] - 1
            entries = self.log[prev:prev + 64]
            self.send(peer, {"type": "append_entries", "term": self.term, "prev_log_index": prev,
                             "prev_log_term": self.term_at(prev), "entries": entries,
                             "leader_commit": self.commit})
        self.next_heartbeat = self.clock.now() + self.heartbeat

    def on_append_entries(self, msg):
        b = msg["body"]
        if b["term"] > self.term or (b["term"] == self.term and self.role != FOLLOWER):
            self.become_follower(b["term"], msg["src"])
        ok = False
        if b["term"] == self.term:
            self.leader = msg["src"]
            self.reset_election_timer()
            prev = b["prev_log_index"]
            if prev <= self.last_index() and self.term_at(prev) == b["prev_log_term"]:
                ok = True
                for i, entry in enumerate(b["entries"]):
                    index = prev + 1 + i
                    if self.term_at(index) != entry["term"]:
                        # A conflict: delete it and all that follow (§5.3, rule 3), then append.
                        del self.log[index - 1:]
                        self.log.append(entry)
                        self.log_changed_from = min(self.log_changed_from, index)
                self.persist()
                match = prev + len(b["entries"])
                if b["leader_commit"] > self.commit:
                    self.commit = min(b["leader_commit"], match)
        reply = {"type": "append_entries_res", "term": self.term, "success": ok}
        if ok:
            reply["match_index"] = prev + len(b["entries"])
        self.send(msg["src"], reply)

    def on_append_result(self, msg):
        b, peer = msg["body"], msg["src"]
        if b["term"] > self.term:
            return self.become_follower(b["term"])
        if self.role != LEADER or b["term"] != self.term:
            return
        if b["success"]:
            self.match_index[peer] = max(self.match_index[peer], b["match_index"])
            self.next_index[peer] = self.match_index[peer] + 1
            self.advance_commit()
        else:
            self.next_index[peer] = max(1, self.next_index[peer] - 1)

    def majority_match(self):
        """The highest index stored on a majority (the leader counts itself)."""
        matches = sorted([self.last_index()] + list(self.match_index.values()), reverse=True)
        return matches[self.majority() - 1]

    def advance_commit(self):
        n = self.majority_match()
        # §5.4.2: a leader commits only entries of its own term by counting replicas.
        if n > self.commit and self.term_at(n) == self.term:
            self.commit = n

    # --- the key-value store ----------------------------------------------------------------
    def on_client(self, msg):
        if self.role != LEADER:
            hint = f"; try {self.leader}" if self.leader else ""
            return self.reply(msg, {"type": "error", "code": TEMPORARILY_UNAVAILABLE, "text": "not the leader" + hint})
        b = msg["body"]
        op = {k: b[k] for k in ("type", "key", "value", "from", "to") if k in b}
        self.log.append({"term": self.term, "op": op})
        self.persist()
        self.waiting[self.last_index()] = (msg["src"], b.get("msg_id"), self.term)
        self.advance_commit()  # alone in a one-node cluster
        self.replicate()  # at once, not at the next heartbeat

    def apply(self):
        while self.applied < self.commit:
            self.applied += 1
            entry = self.log[self.applied - 1]
            answer = self.execute(entry["op"])
            waiting = self.waiting.pop(self.applied, None)
            if waiting and waiting[2] == entry["term"]:
                client, msg_id, _ = waiting
                answer["in_reply_to"] = msg_id
                self.send(client, answer)

    def execute(self, op):
        key = op["key"]
        if op["type"] == "read":
            if key not in self.kv:
                return {"type": "error", "code": KEY_DOES_NOT_EXIST, "text": "no such key"}
            return {"type": "read_ok", "value": self.kv[key]}
        if op["type"] == "write":
            self.kv[key] = op["value"]
            return {"type": "write_ok"}
        if key not in self.kv:
            return {"type": "error", "code": KEY_DOES_NOT_EXIST, "text": "no such key"}
        if self.kv[key] != op["from"]:
            return {"type": "error", "code": PRECONDITION_FAILED, "text": f"expected {op['from']}, found {self.kv[key]}"}
        self.kv[key] = op["to"]
        return {"type": "cas_ok"}

    # --- what Consenso draws ----------------------------------------------------------------
    def report(self):
        """A status line whenever something the page draws changed; the log from the first
        entry that changed since the last line."""
        status = (self.role, self.term, self.voted_for, self.leader, self.commit, self.last_index(), self.deadline,
                  len(self.votes))
        if status == self.status_sent and self.log_changed_from > self.last_index():
            return
        start = min(self.log_changed_from, self.last_index() + 1)
        log = [{"term": e["term"], "op": describe(e["op"])} for e in self.log[start - 1:]]
        self.send("consenso", {"type": "consenso_status", "role": self.role, "term": self.term,
                               "voted_for": self.voted_for, "leader": self.leader, "commit": self.commit,
                               "log_from": start, "log": log,
                               "election_timer_ms": None if self.role == LEADER else max(0, round(self.deadline - self.clock.now())),
                               "votes": sorted(self.votes) if self.role == CANDIDATE else None})
        self.status_sent, self.log_changed_from = status, self.last_index() + 1

    # --- the loop ---------------------------------------------------------------------------
    def handle(self, msg):
        kind = msg["body"]["type"]
        if kind == "init":
            b = msg["body"]
            self.id, self.peers = b["node_id"], b["node_ids"]
            extra = b.get("consenso") or {}
            self.election_timeout = extra.get("election_timeout_ms", 150)
            self.heartbeat = extra.get("heartbeat_ms", 50)
            self.data_dir = extra.get("data_dir") or os.environ.get("CONSENSO_DATA_DIR")
            self.clock.set(extra.get("time_scale", 1.0), extra.get("time_stopped", False))
            self.load()
            self.log_changed_from = 1
            self.reset_election_timer()
            self.reply(msg, {"type": "init_ok", "durable": bool(self.data_dir)})
        elif kind == "consenso_time":
            b = msg["body"]
            self.clock.set(b["scale"], b["stopped"], b.get("advanced_ms", 0))
        elif kind == "request_vote":
            self.on_request_vote(msg)
        elif kind == "request_vote_res":
            self.on_vote(msg)
        elif kind == "append_entries":
            self.on_append_entries(msg)
        elif kind == "append_entries_res":
            self.on_append_result(msg)
        elif kind in ("read", "write", "cas"):
            self.on_client(msg)

    def tick(self):
        now = self.clock.now()
        if self.role == LEADER and now >= self.next_heartbeat:
            self.replicate()
        elif self.role != LEADER and now >= self.deadline:
            self.start_election()

    def run(self, lines):
        while True:
            wait = 0.01
            try:
                line = lines.get(timeout=wait)
            except queue.Empty:
                line = ""
            if line is None:
                return  # stdin closed: Consenso is gone
            if line.strip():
                self.handle(json.loads(line))
            if self.id is not None:
                self.tick()
                self.apply()
                self.report()
            sys.stdout.flush()


def describe(op):
    """An entry as the page's log shows it."""
    if op["type"] == "write":
        return f"{op['key']}={op['value']}"
    if op["type"] == "cas":
        return f"{op['key']}:{op['from']}→{op['to']}"
    return f"read {op['key']}"


def main(node_class=Node):
    lines = queue.Queue()

    def read():
        for line in sys.stdin:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    node_class().run(lines)


if __name__ == "__main__":
    main()
