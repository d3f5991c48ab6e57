"""Fault rules on their own: building and parsing them, and which rule
decides a step (first match, ``match``, ``times``, ``after``, ``session``,
seeded probability), with no server and no socket."""

from __future__ import annotations

import os
import re
import threading

import pytest

import pytest_smtpd
from conftest import run_python
from pytest_smtpd.faults import Action, Fault, Faults
from pytest_smtpd.replies import Reply

BUSY = "450 4.2.1 Mailbox busy"


def fired(faults: Faults, steps: list[tuple[str, str]], session: int = 1) -> list[str | None]:
    """What fires for each (step, argument), as ``describe()`` lines."""
    decided = [faults.decide(step, argument, session) for step, argument in steps]
    return [fault.describe() if fault is not None else None for fault in decided]


def test_fault_is_importable_from_the_package() -> None:
    assert pytest_smtpd.Fault is Fault
    assert "Fault" in pytest_smtpd.__all__


def test_constructors_make_the_rules_they_name() -> None:
    reply = Fault.reply("rcpt", BUSY, match="ghost@")
    assert (reply.step, reply.action, reply.response) == ("RCPT", Action.REPLY, Reply(450, "4.2.1 Mailbox busy"))
    assert reply.match == "ghost@"
    assert Fault.disconnect("DATA", after_bytes=100).after_bytes == 100
    assert Fault.delay("MAIL", 5).seconds == 5.0
    assert Fault.stall("CONNECT").action is Action.STALL
    assert Fault.reply("MAIL", Reply(421, "4.3.2 Going down")).closes_session
    assert not reply.closes_session
    assert Fault.disconnect("QUIT").closes_session


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: Fault.reply("HELLO", BUSY), "unknown fault step 'HELLO'"),
        (lambda: Fault.reply("RCPT", "250 OK"), "needs a 4xx or 5xx reply"),
        (lambda: Fault.reply("RCPT", "busy"), "not an SMTP reply"),
        (lambda: Fault.disconnect("MAIL", after_bytes=10), "after_bytes is for disconnect faults on DATA or BDAT"),
        (lambda: Fault.disconnect("DATA", after_bytes=-1), "after_bytes must be 0 or more"),
        (lambda: Fault.delay("MAIL", -1), "finite number of seconds"),
        (lambda: Fault.delay("MAIL", float("inf")), "finite number of seconds"),
        (lambda: Fault.stall("MAIL", times=0), "times must be 1 or more"),
        (lambda: Fault.stall("MAIL", after=-1), "after must be 0 or more"),
        (lambda: Fault.stall("MAIL", session=0), "session counts from 1"),
        (lambda: Fault.stall("MAIL", probability=0.5), "needs a seed="),
        (lambda: Fault.stall("MAIL", probability=1.5, seed=1), "between 0 and 1"),
    ],
)
def test_a_bad_rule_is_a_clear_error(make: object, error: str) -> None:
    assert callable(make)
    with pytest.raises(ValueError, match=re.escape(error)):
        make()


def test_match_must_be_text_or_a_regex() -> None:
    with pytest.raises(TypeError, match="match must be a str or a compiled regex, not int"):
        Fault.stall("MAIL", match=3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("RCPT=450 4.2.1 Mailbox busy", Fault.reply("RCPT", BUSY)),
        ("rcpt = 550 5.1.1 No such user", Fault.reply("RCPT", "550 5.1.1 No such user")),
        ("DATA=disconnect", Fault.disconnect("DATA")),
        ("DATA=disconnect:100", Fault.disconnect("DATA", after_bytes=100)),
        ("MAIL=delay:5", Fault.delay("MAIL", 5)),
        ("MAIL=delay:0.25", Fault.delay("MAIL", 0.25)),
        ("MESSAGE=stall", Fault.stall("MESSAGE")),
        ("CONNECT=421 4.3.2 Not now", Fault.reply("CONNECT", "421 4.3.2 Not now")),
        ("RCPT[times=1]=450 4.2.1 Mailbox busy", Fault.reply("RCPT", BUSY, times=1)),
        (
            "RCPT[match=ghost@, after=1, session=2]=550 5.1.1 No such user",
            Fault.reply("RCPT", "550 5.1.1 No such user", match="ghost@", after=1, session=2),
        ),
        ("MAIL[probability=0.5,seed=7]=delay:1", Fault.delay("MAIL", 1, probability=0.5, seed=7)),
        ("DATA [times=2] = disconnect:10", Fault.disconnect("DATA", after_bytes=10, times=2)),
        ("RCPT=450 4.2.1 a=b [x]", Fault.reply("RCPT", "450 4.2.1 a=b [x]")),
    ],
)
def test_parse_reads_the_command_line_form(text: str, expected: Fault) -> None:
    assert Fault.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("RCPT", "expected STEP=REPLY"),
        ("=450 busy", "expected STEP=REPLY"),
        ("RCPT=", "expected STEP=REPLY"),
        ("RCPT=busy", "after '=' comes a reply"),
        ("MAIL=delay:soon", "delay:SECONDS needs a number"),
        ("DATA=disconnect:ten", "disconnect:OCTETS needs a whole number"),
        ("MAIL=stall:3", "after '=' comes a reply"),
        ("NOPE=stall", "unknown fault step 'NOPE'"),
        ("RCPT[times=1=450 busy", "'[' without its ']'"),
        ("RCPT[times=1]x=450 busy", "expected '=' right after ']'"),
        ("RCPT[times]=450 busy", "limits are NAME=VALUE"),
        ("RCPT[often=2]=450 busy", "unknown limit 'often'"),
        ("RCPT[times=two]=450 busy", "times needs a number, got 'two'"),
        ("RCPT[times=1,times=2]=450 busy", "times is given twice"),
        ("RCPT[times=0]=450 4.2.1 busy", "times must be 1 or more"),
    ],
)
def test_parse_rejects_what_it_cannot_read(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=re.escape(error)):
        Fault.parse(text)


def test_the_first_matching_rule_decides() -> None:
    faults = Faults()
    faults.reply("RCPT", "550 5.1.1 No such user", match="ghost@")
    faults.reply("RCPT", BUSY)
    assert fired(faults, [("RCPT", "TO:<ghost@example.com>"), ("RCPT", "TO:<b@example.com>"), ("MAIL", "")]) == [
        "RCPT: reply 550 5.1.1 No such user",
        "RCPT: reply 450 4.2.1 Mailbox busy",
        None,
    ]


def test_match_takes_a_compiled_regex() -> None:
    faults = Faults([Fault.reply("RCPT", BUSY, match=re.compile(r"<[^@]*@example\.org>", re.I))])
    assert fired(faults, [("RCPT", "TO:<a@EXAMPLE.org>"), ("RCPT", "TO:<a@example.org.uk>")]) == [
        "RCPT: reply 450 4.2.1 Mailbox busy",
        None,
    ]


def test_times_fires_that_often_then_stands_aside_for_the_next_rule() -> None:
    faults = Faults([Fault.reply("RCPT", BUSY, times=2), Fault.reply("RCPT", "550 5.1.1 Gone")])
    assert fired(faults, [("RCPT", "")] * 3) == [
        "RCPT: reply 450 4.2.1 Mailbox busy",
        "RCPT: reply 450 4.2.1 Mailbox busy",
        "RCPT: reply 550 5.1.1 Gone",
    ]


def test_after_lets_the_first_matching_steps_pass() -> None:
    faults = Faults([Fault.disconnect("RCPT", after=2, times=1, match="@b")])
    steps = [("RCPT", "TO:<x@a>"), ("RCPT", "TO:<x@b>"), ("RCPT", "TO:<y@b>"), ("RCPT", "TO:<x@a>")]
    steps += [("RCPT", "TO:<z@b>"), ("RCPT", "TO:<w@b>")]
    # Only steps the rule matches count towards after=2.
    assert fired(faults, steps) == [None, None, None, None, "RCPT: disconnect", None]


def test_session_limits_a_rule_to_one_connection() -> None:
    faults = Faults([Fault.reply("CONNECT", "421 4.3.2 Try later", session=1)])
    assert fired(faults, [("CONNECT", "")], session=1) == ["CONNECT: reply 421 4.3.2 Try later"]
    assert fired(faults, [("CONNECT", "")], session=2) == [None]


def test_a_probability_needs_a_seed_and_repeats_with_it() -> None:
    def run() -> list[str | None]:
        faults = Faults([Fault.reply("RCPT", BUSY, probability=0.5, seed=42)])
        return fired(faults, [("RCPT", "")] * 40)

    first = run()
    assert first == run()
    assert 5 < first.count(None) < 35  # some fire, some do not


def test_counts_belong_to_the_list_not_the_rule() -> None:
    """One Fault (from a marker, say) in two lists is counted in each."""
    rule = Fault.reply("RCPT", BUSY, times=1)
    one, two = Faults([rule]), Faults([rule])
    assert fired(one, [("RCPT", "")] * 2) == ["RCPT: reply 450 4.2.1 Mailbox busy", None]
    assert fired(two, [("RCPT", "")]) == ["RCPT: reply 450 4.2.1 Mailbox busy"]


def test_the_list_reads_like_a_sequence_and_clears() -> None:
    faults = Faults(["RCPT=450 4.2.1 Mailbox busy"])
    added = faults.stall("DATA")
    assert list(faults) == [Fault.reply("RCPT", BUSY), added]
    assert len(faults) == 2 and faults and faults[1] is added
    assert repr(faults).startswith("Faults([Fault(step='RCPT'")
    faults.clear()
    assert not faults and list(faults) == [] and faults.decide("DATA", "", 1) is None


def test_a_single_rule_where_a_list_belongs_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match="a list of Fault rules"):
        Faults(Fault.stall("DATA"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="a list of Fault rules"):
        Faults("DATA=stall")
    with pytest.raises(TypeError, match="must be a Fault or a 'STEP=WHAT' string, not int"):
        Faults([1])  # type: ignore[list-item]


def test_adding_from_threads_while_another_decides_loses_nothing() -> None:
    """The test thread adds rules while the loop thread consults them."""
    faults = Faults()
    per_thread, threads = 200, 4
    start = threading.Barrier(threads + 1)
    decided: list[int] = []

    def add(index: int) -> None:
        start.wait()
        for n in range(per_thread):
            faults.reply("RCPT", f"450 4.2.1 busy {index}-{n}", times=1)

    def consult() -> None:
        start.wait()
        for _ in range(threads * per_thread):
            if faults.decide("RCPT", "", 1) is not None:
                decided.append(1)

    workers = [threading.Thread(target=add, args=(i,)) for i in range(threads)]
    workers.append(threading.Thread(target=consult))
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(10)
        assert not worker.is_alive()
    assert len(faults) == threads * per_thread
    # Each rule fires once at most: what the consumer missed fires now.
    rest = 0
    while faults.decide("RCPT", "", 1) is not None:
        rest += 1
        assert rest <= threads * per_thread
    assert len(decided) + rest == threads * per_thread


FORK_SCRIPT = """
import os, sys, threading
from pytest_smtpd import Server
server = Server()
held, release = threading.Event(), threading.Event()
def hold():
    with server.faults._lock:  # as the loop thread deciding a step
        held.set()
        release.wait(30)
threading.Thread(target=hold, daemon=True).start()
held.wait(30)
pid = os.fork()
if pid == 0:
    server.faults.reply("RCPT", "450 4.2.1 Mailbox busy")  # would hang on the copied lock
    os._exit(0 if len(server.faults) == 1 else 1)
release.set()
_, status = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_fork_child_can_change_the_rules_while_the_parent_held_the_lock() -> None:
    result = run_python(FORK_SCRIPT, timeout=30)
    assert result.stdout.strip() == "child 0", result.stderr
