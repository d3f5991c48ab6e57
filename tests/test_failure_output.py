"""What a failing test shows when the plugin raises: no plugin frames in the
traceback, one short line for a usage error naming its source and the fix,
an immediate error for a blocking wait inside an async test, and short,
quickly made listings over many messages. Run inside pytester with real
servers and clients, or on a store of 20,000 messages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pytester_helpers import strict_ini
from test_plugin import MARKER_TYPO

import pytest_smtpd
from pytest_smtpd import FixtureServer, Message, MessageStore, matching

#: Where the plugin's source is: a failure shows none of its lines.
PLUGIN_DIR = str(Path(pytest_smtpd.__file__).resolve().parent)


@pytest.fixture
def with_asyncio(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini(strict_ini(asyncio=True))
    return pytester


def failures(result: pytest.RunResult) -> str:
    output = result.stdout.str()
    return output[output.index("= FAILURES =") : output.index("short test summary")]


def test_failures_from_the_plugin_show_the_tests_line_not_the_plugins(strict: pytest.Pytester) -> None:
    strict.makepyfile(
        """
        import smtplib

        def send(smtpd):
            with smtplib.SMTP(smtpd.host, smtpd.port, timeout=10) as client:
                client.sendmail("a@example.com", ["b@example.com"], b"Subject: hi\\r\\n\\r\\n")

        def test_wait_for_times_out(smtpd):
            smtpd.messages.wait_for(timeout=0.01)

        def test_last_of_none(smtpd):
            smtpd.messages.last

        def test_unknown_criterion(smtpd):
            smtpd.assert_sent(subjet="hi")

        def test_filter_unknown_criterion(smtpd):
            smtpd.messages.filter(subjet="hi")

        def test_assert_sent_misses(smtpd):
            send(smtpd)
            smtpd.assert_sent(subject="bye", timeout=0.01)

        def test_assert_not_sent_finds(smtpd):
            send(smtpd)
            smtpd.assert_not_sent(subject="hi")

        def test_bad_timeout(smtpd):
            smtpd.assert_sent(timeout=float("inf"))
        """
    )
    result = strict.runpytest_inprocess("-p", "no:asyncio", "-p", "no:anyio")
    result.assert_outcomes(failed=7)
    shown = failures(result)
    assert PLUGIN_DIR not in shown
    for line in [
        "        smtpd.messages.wait_for(timeout=0.01)",
        "        smtpd.messages.last",
        '        smtpd.assert_sent(subjet="hi")',
        '        smtpd.messages.filter(subjet="hi")',
        '        smtpd.assert_sent(subject="bye", timeout=0.01)',
        '        smtpd.assert_not_sent(subject="hi")',
        '        smtpd.assert_sent(timeout=float("inf"))',
    ]:
        assert f">{line[1:]}" in shown, line
    assert "E       TimeoutError: waited 0.01s for 1 message(s), got 0 (of 0 received: [])" in shown
    assert "E       IndexError: no message has arrived yet" in shown
    assert "E       ValueError: timeout must be a finite number of seconds, 0 or more, got inf" in shown


def test_a_marker_typo_is_one_short_error_beside_pytest_asyncio(with_asyncio: pytest.Pytester) -> None:
    with_asyncio.makepyfile(MARKER_TYPO)
    result = with_asyncio.runpytest_inprocess()
    result.assert_outcomes(errors=1)
    output = result.stdout.str()
    block = output[output.index("ERROR at setup of test_typo") : output.index("short test summary")]
    assert block.splitlines()[1:-1] == [
        "@pytest.mark.smtpd: unknown option data_size_limt=100; did you mean data_size_limit=?"
    ]
    assert "raised in repr()" not in output
    assert "direct cause" not in output and "During handling" not in output
    assert PLUGIN_DIR not in output


@pytest.mark.parametrize(
    ("conftest", "mark", "message"),
    [
        ("", "data_size_limit='big'", "@pytest.mark.smtpd: data_size_limit='big': expected a whole number (int)"),
        ("", "tls='ssl'", "@pytest.mark.smtpd: tls must be None, 'starttls' or 'implicit', got 'ssl'"),
        ("", "enable_SMTPUTF8='yes'", "@pytest.mark.smtpd: enable_SMTPUTF8='yes': expected True or False"),
        ("", "timeout=float('inf')", "@pytest.mark.smtpd: timeout=inf: expected a finite number of seconds or None"),
        ("", "report='ful'", "@pytest.mark.smtpd: report='ful': expected full, summary or off"),
        # A bad value of smtpd_options is smtpd_options', even with a marker beside it.
        (
            "{'max_connections': -1}",
            "hostname='mx.test'",
            "the smtpd_options fixture: max_connections must be 0 (no limit) or positive, got -1",
        ),
        ("{'data_size_limit': 'big'}", "hostname='mx.test'", "the smtpd_options fixture: data_size_limit='big': *"),
        # A marker value that contradicts smtpd_options is the marker's.
        (
            "{'tls': 'starttls'}",
            "tls=None, require_starttls=True",
            "@pytest.mark.smtpd: tls_context, require_starttls*",
        ),
    ],
)
def test_bad_values_name_their_source(strict: pytest.Pytester, conftest: str, mark: str, message: str) -> None:
    if conftest:
        strict.makeconftest(f"import pytest\n\n@pytest.fixture\ndef smtpd_options():\n    return {conftest}\n")
    strict.makepyfile(f"import pytest\n\n@pytest.mark.smtpd({mark})\ndef test_bad(smtpd):\n    pass\n")
    result = strict.runpytest_inprocess("-p", "no:asyncio", "-p", "no:anyio")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*ERROR at setup of test_bad*", message])
    assert PLUGIN_DIR not in result.stdout.str()


def test_a_blocking_wait_in_an_async_test_fails_at_once_with_the_fix(with_asyncio: pytest.Pytester) -> None:
    with_asyncio.makepyfile(
        """
        import time
        import pytest

        @pytest.mark.asyncio
        async def test_assert_sent(smtpd):
            started = time.monotonic()
            with pytest.raises(RuntimeError) as raised:
                smtpd.assert_sent(subject="hi", timeout=30)
            assert time.monotonic() - started < 5
            assert "use `await smtpd.assert_sent_async(...)`" in str(raised.value)

        @pytest.mark.asyncio
        async def test_wait_for(smtpd):
            with pytest.raises(RuntimeError, match="would block this thread's running event loop"):
                smtpd.messages.wait_for(timeout=30)

        @pytest.mark.asyncio
        async def test_no_wait_is_fine(smtpd):
            smtpd.assert_sent(count=0)
            assert smtpd.messages.wait_for(count=0, timeout=0) == []
        """
    )
    result = with_asyncio.runpytest_inprocess()
    result.assert_outcomes(passed=3)


def many_messages(count: int) -> MessageStore:
    store = MessageStore()
    for n in range(count):
        data = f"Subject: m{n}\r\nTo: b@x.org\r\n\r\nbody\r\n".encode()
        store.append(Message(peer=("127.0.0.1", 1), mail_from="a@x.org", rcpt_tos=["b@x.org"], data=data))
    return store


def test_20000_messages_make_short_failures_quickly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Short: the first and last few messages and a count. Quick: a failed
    ``assert_sent(timeout=)`` checks each message at most twice (at the
    start and at the deadline) and finds the closest one among those
    checks; it used to check them five times over, and to build a
    1.37-million-character timeout message it then threw away (12 s).
    Envelope criteria, so that the test itself parses only the messages
    it lists."""
    server = FixtureServer()
    server.messages = many_messages(20_000)
    with pytest.raises(TimeoutError) as timed_out:
        server.messages.wait_for(timeout=0.01, where=lambda message: message.mail_from == "nope@x.org")
    text = str(timed_out.value)
    assert text.startswith("waited 0.01s for 1 message(s) matching the condition, got 0 (of 20000 received: [")
    assert "... 19994 more ..." in text and len(text) < 1000

    checked = []
    real_check = matching.check

    def counting_check(message: Message, criteria: dict[str, object]) -> list[matching.Check]:
        checked.append(message)
        return real_check(message, criteria)

    monkeypatch.setattr(matching, "check", counting_check)
    with pytest.raises(AssertionError) as missed:
        server.assert_sent(mail_from="nope@x.org", timeout=0.01)
    assert len(checked) <= 2 * 20_000 + 1
    lines = str(missed.value).splitlines()
    assert lines[:2] == [
        "expected at least 1 message(s) matching mail_from='nope@x.org', found 0 (waited 0.01s)",
        "20000 message(s) arrived:",
    ]
    assert lines[7] == "  ... 19990 more ..."
    assert lines[12] == (
        "  #20000 mail_from 'a@x.org', rcpt_to ['b@x.org'], To: ['b@x.org'], subject 'm19999', 38 bytes"
    )
    assert lines[13:] == ["closest, #20000:", "  FAIL mail_from: expected 'nope@x.org', got 'a@x.org'"]

    with pytest.raises(AssertionError) as found:
        server.assert_not_sent(mail_from=re.compile("^a@"))
    lines = str(found.value).splitlines()
    assert lines[0] == "expected no message matching mail_from=re.compile('^a@'), found 20000:"
    assert lines[6] == "  ... 19990 more ..." and len(lines) == 12


def test_indexing_none_and_an_async_wait_without_a_loop_hide_the_plugin_too(strict: pytest.Pytester) -> None:
    strict.makepyfile(
        """
        def test_first_of_none(smtpd):
            smtpd.messages[0]

        def test_async_wait_without_a_loop(smtpd):
            smtpd.messages.wait_for_async(timeout=1).send(None)
        """
    )
    result = strict.runpytest_inprocess("-p", "no:asyncio", "-p", "no:anyio")
    result.assert_outcomes(failed=2)
    shown = failures(result)
    assert PLUGIN_DIR not in shown
    assert "E       IndexError: list index out of range" in shown
    assert "wait_for_async needs a running event loop" in shown


def test_a_server_that_refused_its_options_has_a_plain_repr(strict: pytest.Pytester) -> None:
    """pytest shows ``self`` of the failed ``__init__``: it used to read
    ``[AttributeError("'FixtureServer' object has no attribute '_state'")
    raised in repr()]``."""
    strict.makepyfile(
        """
        from pytest_smtpd import FixtureServer

        def test_made_by_hand():
            FixtureServer(data_size_limit=-1)
        """
    )
    result = strict.runpytest_inprocess("-p", "no:asyncio", "-p", "no:anyio", "--tb=long")
    result.assert_outcomes(failed=1)
    assert "raised in repr()" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*self = <FixtureServer, not made: its options were refused>*"])
