"""Streaming pieces that need no broker: the message envelope, the sources, topic specs and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from parse_sources.__main__ import main
from parse_sources.stream import envelope, sources, staging
from parse_sources.stream.topics import TopicSpec


def test_an_envelope_round_trips_a_record_with_its_schema_version() -> None:
    encoded = envelope.encode({"n": 1, "at": "x"})
    assert json.loads(encoded) == {"schema_version": 1, "data": {"n": 1, "at": "x"}}
    assert envelope.decode(encoded) == {"n": 1, "at": "x"}


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "empty value (tombstone)"),
        (b"\xff", "value is not UTF-8"),
        (b"{", "value is not JSON: Expecting property name enclosed in double quotes at position 1"),
        (b'"text"', "value is a JSON str, not an object"),
        (b'{"schema_version": 0, "data": {}}', "schema_version is missing or not a positive integer"),
        (b'{"schema_version": true, "data": {}}', "schema_version is missing or not a positive integer"),
        (b'{"schema_version": 1, "data": [1]}', "data is missing or not a JSON object"),
    ],
)
def test_a_malformed_message_is_rejected_with_its_reason(value: bytes | None, reason: str) -> None:
    with pytest.raises(envelope.MalformedMessage) as error:
        envelope.decode(value)
    assert str(error.value) == reason


def test_a_non_object_line_in_a_json_lines_file_is_an_error_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n[1]\n')
    with pytest.raises(ValueError, match=r"x.jsonl:2: expected a JSON object, got list"):
        list(sources.read_file(path))


def test_a_record_without_its_key_field_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("id,name\n,nobody\n")
    with pytest.raises(ValueError, match="no key field 'id'"):
        list(sources.read_file(path, key_field="id"))


def fake_proc(root: Path, ticks: int, ctxt: int) -> Path:
    (root / "stat").write_text(
        f"cpu  {ticks} 0 {ticks} {2 * ticks} 0 0 0 0 0 0\ncpu0 1 2 3 4\nintr {ctxt * 2} 1 2\nctxt {ctxt}\n"
        "procs_running 3\nprocs_blocked 1\n"
    )
    (root / "vmstat").write_text(f"pgpgin {ctxt}\npgpgout 0\npswpin 0\npswpout 0\n")
    (root / "meminfo").write_text(
        "MemTotal: 1000 kB\nMemFree: 400 kB\nMemAvailable: 600 kB\nBuffers: 10 kB\nCached: 100 kB\n"
        "SwapTotal: 50 kB\nSwapFree: 20 kB\n"
    )
    return root


def test_host_metrics_turn_proc_counters_into_vmstat_like_rates_and_shares(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, ticks=100, ctxt=1000)

    def advance(_seconds: float) -> None:  # stands for the interval passing: counters move on
        fake_proc(tmp_path, ticks=200, ctxt=3000)

    [(key, sample)] = list(sources.host_metrics(1.0, count=1, proc=proc, host="h", sleep=advance))
    assert key == f"h:{sample['ts']}"
    assert (sample["cpu_user"], sample["cpu_system"], sample["cpu_idle"]) == (25.0, 25.0, 50.0)
    assert (sample["procs_running"], sample["procs_blocked"]) == (3, 1)
    assert (sample["mem_free_kb"], sample["mem_available_kb"], sample["swap_used_kb"]) == (400, 600, 30)
    assert sample["context_switches"] > 0
    # rates are per second of real (unfaked) time, rounded to 0.1: twice the counter, within that rounding
    assert sample["interrupts"] == pytest.approx(2 * sample["context_switches"], abs=0.15)


def test_topic_specs_take_the_deploy_configurations_shape() -> None:
    spec = TopicSpec.from_mapping("events", {"partitions": 6, "retention_ms": 1000, "cleanup_policy": "delete"}, 3)
    assert spec == TopicSpec("events", 6, 3, {"retention.ms": "1000", "cleanup.policy": "delete"})
    assert TopicSpec.from_mapping("small", {}, brokers=5).replication_factor == 3


def test_the_cli_offers_the_streaming_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    usage = capsys.readouterr().out
    assert all(command in usage for command in ("produce", "sink", "topics"))


class FakeMessage:
    """Just what staging reads from a confluent_kafka.Message."""

    def __init__(self, offset: int, key: bytes | None, value: bytes | None, partition: int = 0) -> None:
        self._offset, self._key, self._value, self._partition = offset, key, value, partition

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_123)


def test_staging_keeps_the_latest_message_per_key_and_escapes_raw_json_for_copy() -> None:
    first = envelope.encode({"n": 1})
    latest = b'{"schema_version": 1,\t"data": {"n": 2, "s": "a\\\\b\\n"}}\n'
    messages = [FakeMessage(0, b"k", first), FakeMessage(1, b"k", latest), FakeMessage(2, b"\xff", first)]
    rows, dead = staging.decode(messages).fresh({0: 0})  # type: ignore[arg-type]
    assert [row.record for row in rows.values()] == [{"n": 2, "s": "a\\b\n"}]
    assert [reason for _, reason in dead] == ["key is not UTF-8"]
    line = b'k\t0\t1\t1700000000123\t{"schema_version": 1,\\t"data": {"n": 2, "s": "a\\\\\\\\b\\\\n"}}\\n\n'
    assert staging.copy_text(rows.values()) == line


def test_only_messages_not_yet_landed_are_staged_and_an_old_one_never_hides_a_new_one() -> None:
    value = envelope.encode({"n": 1})
    messages = [
        FakeMessage(7, b"k", value, partition=1),  # new: partition 1 has landed up to offset 6
        FakeMessage(3, b"k", value, partition=0),  # the same key on another partition, already landed
        FakeMessage(4, b"dup", None, partition=0),  # a dead letter, already landed
        FakeMessage(5, b"dup", None, partition=0),  # a new dead letter
    ]
    rows, dead = staging.decode(messages).fresh({0: 5, 1: 7})  # type: ignore[arg-type]
    assert [(row.partition, row.offset) for row in rows.values()] == [(1, 7)]
    assert [(message.offset(), reason) for message, reason in dead] == [(5, "empty value (tombstone)")]


def test_staging_renames_fields_like_columns_and_keeps_integers_beyond_64_bits_exact() -> None:
    value = b'{"schema_version": 1, "data": {"Big N": 123456789012345678901234567890, "_kafka_key": "x"}}'
    [row] = staging.decode([FakeMessage(0, None, value)]).rows  # type: ignore[list-item]
    assert row.key == b"0-0"
    assert row.record == {"big_n": 123456789012345678901234567890, "kafka_key": "x"}  # as column_name() has it
    assert json.loads(row.value) == {"data": row.record}
