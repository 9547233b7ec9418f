"""Reading what is left of a damaged rosbag2 recording, and saying what was lost.

A recording cut by a power loss (a truncated MCAP without summary), a corrupt chunk, a
missing or garbage ``metadata.yaml``, a topic whose type cannot be read: rosbags refuses
such a bag whole. Here the MCAP files are walked record by record with the ``mcap``
library's stream reader (chunks unpacked one at a time with their CRC checked), so every
intact chunk is replayed; a chunk that fails is skipped and its messages, known from the
message indexes written after it, are counted as lost per topic with their time range.
sqlite3 bags are read row by row until the first unreadable row. Messages come in log-time
order within a one-second window (recorders write nearly in order). Intact bags read the
same way: this is the MCAP reader of ``iter_bag``.
"""

from __future__ import annotations

import heapq
import sqlite3
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcap.records import Channel, Chunk, Message, MessageIndex, Schema
from mcap.stream_reader import StreamReader, breakup_chunk

REORDER_WINDOW_NS = 1_000_000_000


@dataclass
class BagDamage:
    """What a damaged bag lost. ``lost`` counts messages known to exist (message indexes,
    metadata) that could not be read, per topic; ``unreadable_topics`` names topics whose
    type could not be read at all."""

    path: str
    problems: list[str] = field(default_factory=list)
    lost: Counter[str] = field(default_factory=Counter)
    lost_from_ns: int | None = None
    lost_to_ns: int | None = None
    unreadable_topics: dict[str, str] = field(default_factory=dict)

    def lose(self, topic: str, n: int, start_ns: int | None, end_ns: int | None) -> None:
        self.lost[topic] += n
        if start_ns is not None:
            self.lost_from_ns = (
                start_ns if self.lost_from_ns is None else min(self.lost_from_ns, start_ns)
            )
        if end_ns is not None:
            self.lost_to_ns = end_ns if self.lost_to_ns is None else max(self.lost_to_ns, end_ns)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "problems": self.problems,
            "lost": dict(sorted(self.lost.items())),
            "lost_time_range_ns": [self.lost_from_ns, self.lost_to_ns],
            "unreadable_topics": self.unreadable_topics,
        }


@dataclass(frozen=True)
class RawRecord:
    topic: str
    msgtype: str
    log_time_ns: int
    data: bytes


def _ordered(records: Iterator[RawRecord]) -> Iterator[RawRecord]:
    """Log-time order, for input that is in order but for less than a window."""
    heap: list[tuple[int, int, RawRecord]] = []
    for n, rec in enumerate(records):
        heapq.heappush(heap, (rec.log_time_ns, n, rec))
        while heap and heap[0][0] < rec.log_time_ns - REORDER_WINDOW_NS:
            yield heapq.heappop(heap)[2]
    while heap:
        yield heapq.heappop(heap)[2]


def _mcap_records(path: Path, damage: BagDamage) -> Iterator[RawRecord]:
    schemas: dict[int, str] = {}
    channels: dict[int, tuple[str, str]] = {}
    # Log times read from the current chunk, per channel: the message indexes written
    # after a chunk say what it held, so a chunk read only in part is counted too.
    chunk_times: dict[int, Counter[int]] | None = None
    chunk_span = ""

    def take(record: Any) -> RawRecord | None:
        if isinstance(record, Schema):
            schemas[record.id] = record.name
        elif isinstance(record, Channel):
            channels[record.id] = (record.topic, schemas.get(record.schema_id, ""))
        elif isinstance(record, Message):
            topic, msgtype = channels.get(record.channel_id, ("", ""))
            if not topic:
                damage.problems.append(f"message on unknown channel {record.channel_id}")
                return None
            if chunk_times is not None:
                chunk_times.setdefault(record.channel_id, Counter())[record.log_time] += 1
            return RawRecord(topic, msgtype, record.log_time, record.data)
        return None

    def index(record: MessageIndex) -> None:
        if chunk_times is None:
            return
        lost = Counter(t for t, _ in record.records) - chunk_times.get(record.channel_id, Counter())
        n = sum(lost.values())
        if n:
            topic = channels.get(record.channel_id, (f"channel {record.channel_id}", ""))[0]
            damage.lose(topic, n, min(lost), max(lost))
            damage.problems.append(f"{path.name}: chunk {chunk_span}: {n} {topic} unreadable")

    with open(path, "rb") as stream:
        reader = StreamReader(stream, emit_chunks=True)
        try:
            for record in reader.records:
                if isinstance(record, Chunk):
                    chunk_times = {}
                    chunk_span = f"{record.message_start_time}-{record.message_end_time} ns"
                    try:
                        inner = breakup_chunk(record, validate_crc=True)
                    except Exception as exc:
                        why = f"{type(exc).__name__}: {exc}"
                        damage.problems.append(
                            f"{path.name}: chunk {chunk_span} unreadable ({why})"
                        )
                        continue
                    for rec in inner:
                        out = take(rec)
                        if out is not None:
                            yield out
                elif isinstance(record, MessageIndex):
                    index(record)
                else:
                    chunk_times = None  # past the chunk and its indexes
                    out = take(record)
                    if out is not None:
                        yield out
        except Exception as exc:  # truncated: the stream ends inside a record
            damage.problems.append(f"{path.name}: read stopped ({type(exc).__name__}: {exc})")


def _sqlite_records(path: Path, damage: BagDamage) -> Iterator[RawRecord]:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        damage.problems.append(f"{path.name}: cannot open ({exc})")
        return
    try:
        topics = {
            tid: (name, kind) for tid, name, kind in db.execute("SELECT id, name, type FROM topics")
        }
        rows = db.execute("SELECT topic_id, timestamp, data FROM messages ORDER BY timestamp")
        while True:
            try:
                row = rows.fetchone()
            except sqlite3.Error as exc:
                damage.problems.append(f"{path.name}: read stopped ({exc})")
                return
            if row is None:
                return
            name, kind = topics.get(row[0], ("", ""))
            if name:
                yield RawRecord(name, kind, int(row[1]), bytes(row[2]))
    except sqlite3.Error as exc:
        damage.problems.append(f"{path.name}: {exc}")
    finally:
        db.close()


def _expected_counts(folder: Path, damage: BagDamage) -> tuple[dict[str, int], int | None]:
    """Per-topic message counts and end time from metadata.yaml, where it can be read."""
    import yaml

    if not (folder / "metadata.yaml").is_file():
        damage.problems.append(f"{folder.name}: no metadata.yaml (what is missing is unknown)")
        return {}, None
    try:
        doc = yaml.safe_load((folder / "metadata.yaml").read_text())
        info = doc["rosbag2_bagfile_information"]
        counts = {
            t["topic_metadata"]["name"]: int(t["message_count"])
            for t in info["topics_with_message_count"]
        }
        start = int(info["starting_time"]["nanoseconds_since_epoch"])
        end = start + int(info["duration"]["nanoseconds"])
        return counts, end
    except Exception as exc:
        damage.problems.append(f"{folder.name}: metadata.yaml unreadable ({type(exc).__name__})")
        return {}, None


def salvage_records(path: Path, damage: BagDamage) -> Iterator[RawRecord]:
    """Every readable message of a rosbag2 folder or a single .mcap/.db3 file, in
    log-time order; what could not be read is recorded in ``damage``."""
    files = [path] if path.is_file() else sorted(path.glob("*.mcap")) + sorted(path.glob("*.db3"))
    if not files:
        damage.problems.append(f"{path}: no .mcap or .db3 files")
        return
    seen: Counter[str] = Counter()
    last_ns: int | None = None
    for file in files:
        reader = _mcap_records if file.suffix == ".mcap" else _sqlite_records
        for rec in _ordered(reader(file, damage)):
            seen[rec.topic] += 1
            last_ns = rec.log_time_ns
            yield rec
    if path.is_dir():
        expected, end_ns = _expected_counts(path, damage)
        for topic, n in expected.items():
            missing = n - seen[topic] - damage.lost[topic]
            if missing > 0:  # after a cut: known from metadata, not from any index
                damage.lose(topic, missing, last_ns, end_ns)
