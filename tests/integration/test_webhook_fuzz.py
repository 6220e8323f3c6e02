"""Fuzzing the webhook intake with hypothesis (issue 12 item 7): structural mutations of real
events — values swapped for other JSON types, fields removed, renamed or duplicated (duplicate
keys in the raw bytes), deep nesting, non-finite and huge numbers, NUL characters and lone
surrogates, invalid UTF-8 — through `flowjobs replay-event` (in this process for many examples,
as a subprocess for a few) and `flowjobs serve` (real HTTP on loopback).

Never an unexpected error (exit 1, HTTP 500, a traceback); never a half-written row: a
refused event stores nothing (replay-event) or one `rejected` row with its reason (serve); an
accepted one is a routed row with its run (or `ignored`); a dry run changes nothing; and every
accepted event's handler ends `completed` or fails at once with a reason — never retried on a
crash. Example counts stay modest so the suite stays fast.
"""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlmodel import select

from flowjobs.webhooks.models import InboxEvent
from flowjobs.webhooks.replay import snapshot
from tests.billing_helpers import drain, stripe_sections
from tests.cli_helpers import cli_env, flowjobs
from tests.integration.test_webhooks_http import TOKEN, post, served, sign  # noqa: F401  (fixture)
from tests.integration.test_webhooks_malformed import run_cli
from tests.webhook_helpers import SECRET, real_events

FAST = dict(deadline=None, database=None, suppress_health_check=list(HealthCheck))


# ---- building mutated bodies ----------------------------------------------------------------


class Raw(str):
    """JSON text written as it is (numbers Python would not write, nesting built as text)."""


class Pairs(list):
    """An object written as these (key, value) pairs: duplicate keys allowed."""


def dumps(value) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        value = Pairs(value.items())
    if isinstance(value, Pairs):
        return "{" + ",".join(f"{json.dumps(k)}:{dumps(v)}" for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    return json.dumps(
        value
    )  # NaN / Infinity for non-finite floats; \udXXX escapes for lone surrogates


def paths(doc, prefix=()) -> list[tuple]:
    found = []
    items = (
        doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    )
    for key, value in items:
        found.append(prefix + (key,))
        if not isinstance(value, str):
            found.extend(paths(value, prefix + (key,)))
    return found


def node(doc, path):
    for key in path:
        doc = doc[key]
    return doc


def parent(doc, path):
    return node(doc, path[:-1])


NUMBERS = st.sampled_from(
    [
        0,
        -1,
        1,
        2**31,
        2**53 + 1,
        2**63,
        -(2**63) - 1,
        10**30,
        0.5,
        -0.0,
        1e308,
        float("nan"),
        float("inf"),
        float("-inf"),
        Raw("1e400"),
        Raw("-1e400"),
        Raw("1" * 400),
        Raw("9" * 5000),
        Raw("1E2"),
        Raw("-0"),
        Raw("2500.0"),
    ]
)
STRINGS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        [
            "",
            "\x00",
            "evt_\x00x",
            "\ud800",
            "x\udfff",
            "a" * 6000,
            "evt_1Fuzz",
            "pi_1",
            "succeeded",
            "paid",
            "INSERT",
            "payment_intent.succeeded",
            "acct_1FuzzAccount",
            "ch_1",
            "usd",
            "1800000000",
            "true",
            "null",
        ]
    ),
)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), NUMBERS, STRINGS)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
READ = {  # the fields flowjobs reads (Stripe's and Supabase's names): mutated more often than the rest
    "account",
    "amount",
    "billingRunId",
    "capabilities",
    "code",
    "created",
    "currency",
    "currently_due",
    "data",
    "date",
    "details_submitted",
    "email",
    "failure_code",
    "failure_message",
    "id",
    "last_payment_error",
    "latest_charge",
    "livemode",
    "message",
    "metadata",
    "name",
    "object",
    "old_record",
    "organization_id",
    "past_due",
    "payment_intent",
    "payment_method",
    "payouts_enabled",
    "record",
    "requirements",
    "status",
    "table",
    "tos_acceptance",
    "type",
    "user_id",
    "transfers",
}
BAD_UTF8 = [b"\xff", b"\xfe", b"\x80", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc3"]


def swapped(value):
    """The same content as another JSON type."""
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return [value] if not value.isdigit() else int(value)
    return {}


@st.composite
def mutated(draw, bases: dict[str, dict]) -> tuple[str, bytes]:
    """(the base's kind, the mutated body)."""
    kind = draw(st.sampled_from(sorted(bases)))
    doc = copy.deepcopy(bases[kind])
    for _ in range(draw(st.integers(1, 3))):
        where = paths(doc)
        if not where:
            break
        read = [p for p in where if p[-1] in READ]  # mostly the fields flowjobs reads
        path = draw(st.sampled_from(read if read and draw(st.integers(0, 3)) else where))
        holder, key = parent(doc, path), path[-1]
        op = draw(st.sampled_from(["replace", "swap", "remove", "nest", "rename"]))
        if op == "replace":
            holder[key] = draw(VALUES)
        elif op == "swap":
            holder[key] = swapped(holder[key])
        elif op == "remove":
            del holder[key]
        elif op == "nest":
            depth = draw(st.sampled_from([1, 3, 63, 64, 65, 200, 5000]))
            opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
            holder[key] = Raw(opener * depth + dumps(holder[key]) + closer * depth)
        elif isinstance(holder, dict):  # rename
            new = draw(
                st.sampled_from([key.upper(), key.title(), key + "_", "", key.replace("_", "")])
            )
            holder[new] = holder.pop(key)
    if draw(st.integers(0, 3)) == 3:  # a duplicate key somewhere (before or after the original)
        objects = [p for p in [()] + paths(doc) if isinstance(node(doc, p), dict) and node(doc, p)]
        if objects:
            path = draw(st.sampled_from(objects))
            holder = node(doc, path)
            key = draw(st.sampled_from(sorted(holder)))
            extra = (key, draw(st.one_of(st.just(holder[key]), VALUES)))
            pairs = list(holder.items())
            replacement = Pairs([extra] + pairs if draw(st.booleans()) else pairs + [extra])
            if path:
                parent(doc, path)[path[-1]] = replacement
            else:
                doc = replacement
    body = dumps(doc).encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 5)) == 5:  # invalid UTF-8, or a cut
        at = draw(st.integers(0, len(body)))
        body = (
            body[:at]
            + draw(st.sampled_from(BAD_UTF8 + [b""]))
            + (body[at:] if draw(st.booleans()) else b"")
        )
    return kind, body


# ---- checks ---------------------------------------------------------------------------------


def domain(session) -> dict:
    """Every billing table's rows (the inbox and the jobs table left out)."""
    return {
        t: rows
        for t, rows in snapshot(session).items()
        if t not in ("webhook_events", "flowjobs_runs")
    }


def assert_handlers_ended_cleanly(rt, run_ids):
    """Every handler run completed, or failed at its first attempt with a reason (an event it
    refuses, an object it cannot find): an unexpected exception would have been retried."""
    for run_id in run_ids:
        run = rt.store.get_run(run_id)
        assert run["status"] in ("completed", "failed"), run
        if run["status"] == "failed":
            assert run["attempt"] == 1 and run["error"] and "Traceback" not in run["error"], run


@pytest.fixture
def fuzz_rt(make_runtime, localstripe_url, monkeypatch):
    sections = stripe_sections(localstripe_url)
    sections["stripe"]["webhook_secret"] = SECRET
    rt = make_runtime(pinned=False, **sections)
    for key, value in cli_env(
        rt.db.url,
        FLOWJOBS_STRIPE_TEST_API_KEY="sk_test_flowjobs",
        FLOWJOBS_STRIPE_API_BASE=localstripe_url,
        FLOWJOBS_STRIPE_WEBHOOK_SECRET=SECRET,
    ).items():
        if key.startswith("FLOWJOBS_"):
            monkeypatch.setenv(key, value)
    return rt, real_events(rt, localstripe_url)


def _many(rt) -> int:
    return 100 if rt.db.url.startswith("sqlite") else 30


def test_fuzzed_events_in_a_dry_run_never_crash_and_change_nothing(fuzz_rt, tmp_path, capsys):
    """replay-event --dry-run runs the handler itself, in this process: every mutation that
    gets past the models reaches a real handler on real rows."""
    rt, bases = fuzz_rt
    with rt.billing.unit() as s:
        before = snapshot(s)
    outcomes = {0: 0, 2: 0}
    path = tmp_path / "event.json"

    # one event as it came and one cut short: the run always sees both outcomes (30 random
    # mutations were once all refused, and this test failed without anything being wrong)
    first = sorted(bases)[0]

    @settings(max_examples=_many(rt), **FAST)
    @given(mutated(bases))
    @example((first, dumps(bases[first]).encode()))
    @example((first, dumps(bases[first]).encode()[:-1]))
    def check(case):
        kind, body = case
        path.write_bytes(body)
        code, out, err = run_cli(
            capsys, "replay-event", str(path), "--dry-run", "--allow-mode-mismatch"
        )
        assert code in (0, 2) and "Traceback" not in err and "unexpected" not in err, (
            kind,
            body[:300],
            code,
            err,
        )
        assert (code == 0 and "dry run" in out) or (code == 2 and err.startswith("error: ")), (
            kind,
            code,
            out,
            err,
        )
        outcomes[code] += 1

    check()
    with rt.billing.unit() as s:
        assert snapshot(s) == before  # row for row: refused or rolled back, never half-written
    assert outcomes[0] and outcomes[2], outcomes  # both accepted and refused events were seen


def test_fuzzed_events_stored_for_real_are_whole_rows_and_their_handlers_end_cleanly(
    fuzz_rt, tmp_path, capsys
):
    rt, bases = fuzz_rt
    with rt.billing.unit() as s:
        before = domain(s)
    path = tmp_path / "event.json"
    accepted: list[dict] = []
    counter = iter(range(10**6))

    def fresh(kind: str) -> dict:  # a new event id each time, so each example is stored anew
        event = copy.deepcopy(bases[kind])
        if "id" in event and event.get("object") == "event":
            event["id"] = f"{event['id']}x{next(counter)}"
        return event

    @settings(max_examples=_many(rt) // 3, **FAST)
    @given(st.data())
    def check(data):
        kind, body = data.draw(mutated({k: fresh(k) for k in bases}))
        with rt.billing.unit() as s:
            rows = len(list(s.exec(select(InboxEvent.id))))
        runs = len(rt.store.list_runs(limit=100000))
        path.write_bytes(body)
        code, out, err = run_cli(capsys, "replay-event", str(path), "--json")
        assert code in (0, 2) and "Traceback" not in err and "unexpected" not in err, (
            kind,
            body[:300],
            code,
            err,
        )
        with rt.billing.unit() as s:
            stored = list(s.exec(select(InboxEvent)))
        if code == 2:  # refused: nothing stored, nothing triggered
            assert (len(stored), len(rt.store.list_runs(limit=100000))) == (rows, runs), err
            return
        result = json.loads(out)
        if result["duplicate"]:
            assert len(stored) == rows
            return
        row = next(r for r in stored if r.id == result["inboxId"])
        assert len(stored) == rows + 1 and row.body == body
        if row.status == "routed":
            assert (
                row.run_id == result["runId"] and rt.store.get_run(row.run_id)["task"] == row.task
            )
            accepted.append(result)
        else:
            assert (row.status, row.run_id) == ("ignored", None)

    check()
    with rt.billing.unit() as s:
        assert (
            domain(s) == before
        )  # nothing but the inbox and the jobs table moved before the handlers ran
    drain(rt)
    assert_handlers_ended_cleanly(rt, [r["runId"] for r in accepted])


def test_fuzzed_events_through_the_replay_event_command(fuzz_rt, tmp_path):
    """The real command, as a subprocess, for a handful of examples."""
    rt, bases = fuzz_rt
    env = cli_env(rt.db.url, FLOWJOBS_STRIPE_WEBHOOK_SECRET=SECRET)
    path = tmp_path / "event.json"
    with rt.billing.unit() as s:
        before = snapshot(s)

    @settings(max_examples=6, **FAST)
    @given(mutated(bases))
    def check(case):
        kind, body = case
        path.write_bytes(body)
        result = flowjobs("replay-event", str(path), "--dry-run", env=env)
        assert result.returncode in (0, 2) and "Traceback" not in result.stderr, (
            kind,
            body[:300],
            result.stderr,
        )

    check()
    with rt.billing.unit() as s:
        assert snapshot(s) == before


def test_fuzzed_requests_to_serve_are_answered_200_or_400_and_kept_whole(served, localstripe_url):
    rt, _, base, proc = served
    bases = real_events(rt, localstripe_url)
    with rt.billing.unit() as s:
        before = domain(s)
    answers: list[tuple[int, dict]] = []

    @settings(max_examples=80 if rt.db.url.startswith("sqlite") else 40, **FAST)
    @given(mutated(bases), st.booleans())
    def check(case, signed):
        kind, body = case
        if ":" in kind:
            url, headers = f"{base}/webhooks/supabase", {"Authorization": f"Bearer {TOKEN}"}
        else:
            url = f"{base}/webhooks/stripe/testmode"
            try:
                headers = sign(body) if signed else {}
            except UnicodeDecodeError:
                headers = {"Stripe-Signature": "t=1,v1=00"}
        code, reply = post(url, body, headers)
        assert code in (200, 400), (kind, body[:300], code, reply)
        answers.append((code, reply))

    # One real event as it is, so the accepted path is always exercised (every fuzzed example is
    # mutated, and a run may happen to draw only refusals).
    kind = next(k for k in sorted(bases) if ":" not in k)
    body = json.dumps(bases[kind]).encode()
    code, reply = post(f"{base}/webhooks/stripe/testmode", body, sign(body))
    assert code == 200, reply
    answers.append((code, reply))
    check()
    assert proc.poll() is None and post(f"{base}/healthz", b"", method="GET")[0] == 200
    with rt.billing.unit() as s:
        rows = {r.id: r for r in s.exec(select(InboxEvent))}
        assert domain(s) == before
    routed = []
    for code, reply in answers:
        row = rows[reply["inboxId"]]
        if code == 400:  # rejected, with the reason it was answered, and never routed
            assert (row.status, row.run_id, row.error) == ("rejected", None, reply["error"])
        elif row.status == "routed":
            assert row.run_id == reply["runId"] and rt.store.get_run(row.run_id) is not None
            routed.append(row.run_id)
        else:
            assert (row.status, row.run_id) == ("ignored", None)
    assert {code for code, _ in answers} == {200, 400}
    drain(rt)
    assert_handlers_ended_cleanly(rt, set(routed))
