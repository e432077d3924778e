"""Thread-Index / Thread-Topic (MS-OXOMSG §2.2.1.3 PidTagConversationIndex)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statusmail.outbound.threadindex import child_thread_index, new_thread_index, thread_topic

GUID = bytes(range(16))
T0 = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)


def raw(index: str) -> bytes:
    return base64.b64decode(index, validate=True)


def filetime(when: datetime) -> int:
    return int((when - datetime(1601, 1, 1, tzinfo=UTC)).total_seconds()) * 10_000_000


def child_delta(block: bytes) -> tuple[int, int]:
    """(delta code, stored delta in 100 ns) of a 5-byte child block."""
    word = int.from_bytes(block[:4], "big")
    code = word >> 31
    return code, (word & 0x7FFFFFFF) << (23 if code else 18)


def test_root_is_22_bytes_reserved_byte_time_and_guid() -> None:
    index = raw(new_thread_index(T0, GUID))
    assert len(index) == 22
    assert index[0] == 0x01
    assert index[6:] == GUID


def test_root_time_is_the_filetime_without_its_low_16_bits() -> None:
    index = raw(new_thread_index(T0, GUID))
    ft = filetime(T0)
    assert ft >> 56 == 0x01  # so the reserved byte is also the FILETIME's top byte
    assert int.from_bytes(index[1:6], "big") == (ft >> 16) & (2**40 - 1)


def test_known_outlook_header_value_is_reproduced() -> None:
    # An Outlook 2007 message's Thread-Index, published with its time 2/12/2015
    # 8:22:43 AM in the sender's zone (US Eastern, UTC-5): 01D046C6FC06 + GUID.
    guid = bytes.fromhex("C85C39B2C024428381B13C0C5C3FDEB4")
    when = datetime(2015, 2, 12, 13, 22, 43, 950_000, tzinfo=UTC)  # within the shown second
    assert raw(new_thread_index(when, guid)).hex().upper() == "01D046C6FC06" + guid.hex().upper()


def test_naive_datetimes_are_taken_as_utc() -> None:
    assert new_thread_index(T0.replace(tzinfo=None), GUID) == new_thread_index(T0, GUID)


def test_a_random_guid_is_made_when_none_is_given() -> None:
    assert raw(new_thread_index(T0))[6:] != raw(new_thread_index(T0))[6:]


def test_a_guid_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError):
        new_thread_index(T0, b"short")


def test_each_child_adds_five_bytes_and_keeps_the_root_as_prefix() -> None:
    root = new_thread_index(T0, GUID)
    index = root
    for n in range(1, 6):
        index = child_thread_index(index, T0 + timedelta(minutes=n))
        decoded = raw(index)
        assert len(decoded) == 22 + 5 * n
        assert decoded[:22] == raw(root)
        assert decoded[6:22] == GUID


def test_short_delta_uses_delta_code_0_with_26ms_resolution() -> None:
    child = raw(child_thread_index(new_thread_index(T0, GUID), T0 + timedelta(hours=2)))
    code, delta = child_delta(child[22:])
    assert code == 0
    root_ft = (filetime(T0) >> 16) << 16
    expected = filetime(T0 + timedelta(hours=2)) - root_ft
    assert expected - 2**18 < delta <= expected


def test_delta_over_about_1_7_years_uses_delta_code_1() -> None:
    later = T0 + timedelta(days=800)
    child = raw(child_thread_index(new_thread_index(T0, GUID), later))
    code, delta = child_delta(child[22:])
    assert code == 1
    expected = filetime(later) - ((filetime(T0) >> 16) << 16)
    assert expected - 2**23 < delta <= expected


def test_children_of_later_replies_sort_after_earlier_ones() -> None:
    root = new_thread_index(T0, GUID)
    first = child_thread_index(root, T0 + timedelta(minutes=5))
    second = child_thread_index(root, T0 + timedelta(minutes=9))
    assert raw(first)[22:26] < raw(second)[22:26]
    assert sorted([raw(second), raw(root), raw(first)]) == [raw(root), raw(first), raw(second)]


def test_a_clock_behind_the_parent_never_records_an_earlier_child() -> None:
    root = new_thread_index(T0, GUID)
    parent = child_thread_index(root, T0 + timedelta(hours=1))
    child = child_thread_index(parent, T0 + timedelta(minutes=1))
    assert child_delta(raw(child)[27:])[1] >= child_delta(raw(parent)[22:])[1]


def test_parent_time_is_a_floor_for_the_child_time() -> None:
    root = new_thread_index(T0, GUID)
    child = child_thread_index(root, T0, parent_time=T0 + timedelta(hours=3))
    assert child_delta(raw(child)[22:])[1] >= filetime(T0 + timedelta(hours=3)) - filetime(T0) - 2**18


def test_exchange_online_layout_parent_is_extended_from_its_own_header_time() -> None:
    # Exchange Online writes 0x01 then the FILETIME's top 40 bits.
    ft = filetime(T0)
    parent = base64.b64encode(bytes([1]) + (ft >> 24).to_bytes(5, "big") + GUID).decode()
    child = raw(child_thread_index(parent, T0 + timedelta(minutes=10)))
    code, delta = child_delta(child[22:])
    assert code == 0
    assert abs(delta - 10 * 60 * 10_000_000) < 2 * 2**24


@pytest.mark.parametrize("bad", ["", "not base64!", base64.b64encode(b"\x01" * 21).decode(),
                                 base64.b64encode(b"\x02" + bytes(21)).decode(),
                                 base64.b64encode(b"\x01" + bytes(23)).decode()])
def test_a_parent_that_is_not_a_conversation_index_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        child_thread_index(bad, T0)


@settings(max_examples=200, deadline=None)
@given(
    start=st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2050, 1, 1)),
    gaps=st.lists(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=900)), max_size=6),
    guid=st.binary(min_size=16, max_size=16),
)
def test_any_chain_round_trips_and_stays_monotonic(start: datetime, gaps: list[timedelta], guid: bytes) -> None:
    index = new_thread_index(start, guid)
    when = start
    previous = -1
    for n, gap in enumerate(gaps, 1):
        when = when + gap
        index = child_thread_index(index, when)
        decoded = raw(index)
        assert len(decoded) == 22 + 5 * n
        assert decoded[6:22] == guid
        assert base64.b64encode(decoded).decode() == index
        delta = child_delta(decoded[-5:])[1]
        assert delta >= previous
        previous = delta


@pytest.mark.parametrize(
    ("subject", "topic"),
    [
        ("Shipped the billing export", "Shipped the billing export"),
        ("Re: Shipped the billing export", "Shipped the billing export"),
        ("RE: Fwd: re:  Shipped", "Shipped"),
        ("AW: WG: Status", "Status"),
        ("SV: VS: Status", "Status"),
        ("Re[2]: Status", "Status"),
        ("Antw: Status", "Status"),
        ("回复：进展", "进展"),
        ("Multi\r\n line\tsubject", "Multi line subject"),
        ("Q3: numbers are in", "Q3: numbers are in"),
        ("Ready: review needed", "Ready: review needed"),
        ("", ""),
    ],
)
def test_thread_topic_drops_reply_prefixes_and_line_breaks(subject: str, topic: str) -> None:
    assert thread_topic(subject) == topic


@settings(max_examples=300, deadline=None)
@given(subject=st.text(max_size=200))
def test_thread_topic_is_always_one_line(subject: str) -> None:
    topic = thread_topic(subject)
    assert "\n" not in topic and "\r" not in topic
    assert topic == topic.strip()
