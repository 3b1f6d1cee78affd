#!/usr/bin/env python3
"""matrix-nio 0.26 against a running Tidings server: presence lists with consent.

Usage: python scenario.py BASE_URL      (e.g. http://127.0.0.1:8008)

The server must be fresh enough that open registration works. Exit status 0
means that every check below passed; otherwise the first failed check is
printed (what was expected, what came back) and the exit status is 1. The
whole run has a deadline of 60 s.

What it proves, using nio's own client methods wherever Matrix has one:

1. nio can register (`AsyncClient.register`, `m.login.dummy` sent on the first
   request without a session), log out, log in with a password, and read
   `whoami` and the profile: the responses satisfy nio's schemas.
2. The Tidings presence-list extension (`/_tidings/client/v1`, plain HTTP):
   alice invites bob, bob sees the request and allows it, alice's list shows
   bob as accepted.
3. With alice, bob and carol running nio's `sync_forever()` (its default
   60 s long poll), bob's `set_presence("online", "at the desk")` reaches
   alice's sync within 1 s of bob's call returning, and so does
   `set_presence("unavailable", "lunch")`. Every presence event parses as a
   nio `PresenceEvent`, and an idle client really long-polls.
4. Consent holds: carol, who never asked, gets 403 `M_FORBIDDEN`
   (`PresenceGetError`) from `get_presence(bob)` (as for a user who does not
   exist), and neither her running sync nor a fresh initial sync ever
   contains bob's presence.
5. alice's `get_presence(bob)` returns bob's current state, and a fresh
   initial sync of alice's carries it too.
6. alice uploads a file with nio's `upload()`; bob's `download()` of its
   `mxc://` URI (the authenticated media path) returns the same bytes, type
   and file name.

Lines starting "nio WARNING" are nio's own log; it also logs the schema
mismatch of the error responses this scenario expects (401, 403).
"""

from __future__ import annotations

import asyncio
import io
import logging
import secrets
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import quote

import aiohttp
from nio import (
    AsyncClient,
    BadEvent,
    LoginResponse,
    LogoutResponse,
    MemoryDownloadResponse,
    PresenceEvent,
    PresenceGetError,
    PresenceGetResponse,
    PresenceSetResponse,
    ProfileGetResponse,
    ProfileSetDisplayNameResponse,
    RegisterResponse,
    SyncError,
    SyncResponse,
    UploadResponse,
    UnknownBadEvent,
    WhoamiError,
    WhoamiResponse,
)

DEADLINE_S = 60.0
LATENCY_LIMIT_S = 1.0  # presence change -> watcher's sync
WAIT_REPORT_S = 8.0  # how long to keep waiting to report a late arrival's delay
IDLE_WINDOW_S = 1.5  # carol, who sees nobody, is watched at least this long ...
IDLE_SYNC_LIMIT = 4  # ... and may make at most this many /sync round trips in it
PASSWORD = "nio-scenario-" + secrets.token_hex(8)
EXT = "/_tidings/client/v1"


class ScenarioFailure(Exception):
    pass


def step(text: str) -> None:
    print(f"==> {text}", flush=True)


def ok(text: str) -> None:
    print(f"    ok: {text}", flush=True)


def fail(what: str, expected: Any, got: Any) -> None:
    raise ScenarioFailure(f"{what}\n    expected: {expected}\n    got:      {got}")


def check(cond: bool, what: str, expected: Any, got: Any) -> None:
    if not cond:
        fail(what, expected, got)


def describe(resp: Any) -> str:
    """A one-line account of a nio response, errors included."""
    transport = getattr(resp, "transport_response", None)
    status = getattr(transport, "status", "?")
    if hasattr(resp, "status_code") and hasattr(resp, "message"):
        # aiohttp keeps the body nio read; show it, as nio's parse may hide why.
        raw = getattr(transport, "_body", None) or b""
        return (
            f"{type(resp).__name__} (HTTP {status}): errcode={resp.status_code!r} "
            f"error={resp.message!r} body={raw[:300].decode('utf-8', 'replace')!r}"
        )
    return f"{type(resp).__name__} (HTTP {status}): {resp}"


def expect_type(resp: Any, cls: type, what: str) -> Any:
    check(isinstance(resp, cls), what, cls.__name__, describe(resp))
    return resp


# --------------------------------------------------------------------------
# Accounts


@dataclass
class User:
    name: str
    localpart: str
    user_id: str = ""
    client: AsyncClient | None = None


async def register(base: str, name: str) -> User:
    """Register with nio's own register(), then log that session out."""
    user = User(name, f"{name}-{secrets.token_hex(4)}")
    reg = AsyncClient(base)
    try:
        resp = await reg.register(user.localpart, PASSWORD, device_name=f"{name} (register)")
        expect_type(resp, RegisterResponse, f"register {user.localpart}")
        check(
            resp.user_id.startswith(f"@{user.localpart}:"),
            "registered user_id",
            f"@{user.localpart}:<server_name>",
            resp.user_id,
        )
        user.user_id = resp.user_id
        old_token, old_device = resp.access_token, resp.device_id
        expect_type(await reg.logout(), LogoutResponse, f"logout of {name}'s registration session")
    finally:
        await reg.close()

    stale = AsyncClient(base)
    try:
        stale.restore_login(user.user_id, old_device, old_token)
        resp = await stale.whoami()
        check(
            isinstance(resp, WhoamiError) and resp.status_code == "M_UNKNOWN_TOKEN",
            "whoami with a logged-out token",
            "WhoamiError M_UNKNOWN_TOKEN",
            describe(resp),
        )
    finally:
        await stale.close()
    ok(f"registered {user.user_id} and logged that session out")
    return user


async def login(base: str, user: User, device_name: str) -> AsyncClient:
    """Log in with a password (identifier m.id.user, the localpart) and check whoami."""
    client = AsyncClient(base, user=user.localpart)
    resp = await client.login(PASSWORD, device_name=device_name)
    expect_type(resp, LoginResponse, f"password login of {user.localpart}")
    check(resp.user_id == user.user_id, "login user_id", user.user_id, resp.user_id)
    who = expect_type(await client.whoami(), WhoamiResponse, f"whoami of {user.name}")
    check(who.user_id == user.user_id, "whoami user_id", user.user_id, who.user_id)
    check(who.device_id == resp.device_id, "whoami device_id", resp.device_id, who.device_id)
    ok(f"{user.name} logged in: {resp.user_id}, device {resp.device_id}")
    return client


async def check_profile(user: User) -> None:
    client = user.client
    display = f"{user.name.capitalize()} the tester"
    resp = await client.set_displayname(display)
    expect_type(resp, ProfileSetDisplayNameResponse, f"{user.name}'s set_displayname")
    prof = expect_type(await client.get_profile(), ProfileGetResponse, f"{user.name}'s get_profile")
    check(prof.displayname == display, "profile displayname", display, prof.displayname)
    ok(f"{user.name}'s displayname set and read back: {display!r}")


# --------------------------------------------------------------------------
# Plain HTTP for what nio has no method for


async def http_json(
    http: aiohttp.ClientSession,
    base: str,
    method: str,
    path: str,
    token: str | None = None,
    body: Any = None,
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, base + path, json=body, headers=headers) as resp:
        text = await resp.text()
        try:
            return resp.status, await resp.json(content_type=None)
        except ValueError:
            return resp.status, text


async def expect_json(
    http: aiohttp.ClientSession,
    base: str,
    method: str,
    path: str,
    token: str | None = None,
    body: Any = None,
) -> Any:
    status, data = await http_json(http, base, method, path, token, body)
    check(status == 200 and isinstance(data, dict), f"{method} {path}", "200 with a JSON object", f"{status} {data!r}")
    return data


async def check_versions(http: aiohttp.ClientSession, base: str) -> None:
    data = await expect_json(http, base, "GET", "/_matrix/client/versions")
    versions = data.get("versions")
    check(
        isinstance(versions, list) and versions and all(isinstance(v, str) for v in versions),
        "versions",
        "a non-empty list of strings",
        versions,
    )
    ok(f"versions: {versions}")


async def arrange_consent(http: aiohttp.ClientSession, base: str, alice: User, bob: User) -> None:
    """alice asks to watch bob; bob sees the request and allows it."""
    a_tok, b_tok = alice.client.access_token, bob.client.access_token
    list_path = f"{EXT}/presence/list/{quote(alice.user_id, safe='')}"

    data = await expect_json(http, base, "POST", list_path, a_tok, {"invite": [bob.user_id]})
    check(data == {}, "answer to alice's invite", {}, data)
    ok(f"alice invited {bob.user_id}")

    entry = list_entry(await expect_json(http, base, "GET", list_path, a_tok), bob.user_id)
    check(entry is not None and entry.get("subscription") == "pending",
          "alice's list entry for bob before bob answers", "subscription 'pending'", entry)
    ok("alice's list shows bob as pending")

    data = await expect_json(http, base, "GET", f"{EXT}/presence/requests", b_tok)
    requests = data.get("requests")
    askers = [r.get("user_id") for r in requests] if isinstance(requests, list) else requests
    check(isinstance(askers, list) and alice.user_id in askers,
          "bob's pending presence requests", f"a list containing {alice.user_id}", data)
    ok(f"bob sees the request from {alice.user_id}")

    answer_path = f"{EXT}/presence/requests/{quote(alice.user_id, safe='')}"
    data = await expect_json(http, base, "POST", answer_path, b_tok, {"allow": True})
    check(data == {}, "answer to bob's allow", {}, data)

    entry = list_entry(await expect_json(http, base, "GET", list_path, a_tok), bob.user_id)
    check(entry is not None and entry.get("subscription") == "accepted",
          "alice's list entry for bob after bob allowed", "subscription 'accepted'", entry)
    ok(f"bob allowed alice; alice's list entry: {entry}")


def list_entry(data: dict, user_id: str) -> dict | None:
    entries = data.get("entries")
    if not isinstance(entries, list):
        fail("presence list", "an object with an 'entries' list", data)
    return next((e for e in entries if isinstance(e, dict) and e.get("user_id") == user_id), None)


# --------------------------------------------------------------------------
# Syncing


@dataclass
class Seen:
    at: float  # time.monotonic() when nio handed the event to us
    event: Any


@dataclass
class SyncWatcher:
    """Runs nio's sync_forever() for one client and records what arrives."""

    name: str
    client: AsyncClient
    presence: list[Seen] = field(default_factory=list)
    bad: list[Any] = field(default_factory=list)
    errors: list[Any] = field(default_factory=list)
    syncs: int = 0
    task: asyncio.Task | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def start(self) -> None:
        self.client.add_presence_callback(self._on_presence, (PresenceEvent, BadEvent, UnknownBadEvent))
        self.client.add_response_callback(self._on_sync, (SyncResponse, SyncError))
        # nio's defaults: the first sync without a timeout, then 60 s long polls.
        self.task = asyncio.create_task(self.client.sync_forever(), name=f"sync-{self.name}")
        self.task.add_done_callback(lambda _t: self.changed.set())

    async def _on_presence(self, event: Any) -> None:
        if isinstance(event, PresenceEvent):
            self.presence.append(Seen(time.monotonic(), event))
        else:
            self.bad.append(event)
        self.changed.set()

    async def _on_sync(self, resp: Any) -> None:
        if isinstance(resp, SyncError):
            self.errors.append(describe(resp))
        else:
            self.syncs += 1
        self.changed.set()

    def _check_health(self) -> None:
        if self.bad:
            fail(f"presence events in {self.name}'s sync", "events nio parses as PresenceEvent",
                 [getattr(b, "source", b) for b in self.bad])
        if self.errors:
            fail(f"{self.name}'s /sync", "SyncResponse", self.errors[0])
        if self.task is not None and self.task.done():
            exc = None if self.task.cancelled() else self.task.exception()
            fail(f"{self.name}'s sync_forever", "still running", repr(exc))

    async def wait_for(self, pred: Callable[[], Any], timeout: float) -> Any:
        """Wait until pred() returns something truthy; None on timeout."""
        end = time.monotonic() + timeout
        while True:
            self._check_health()
            found = pred()
            if found:
                return found
            left = end - time.monotonic()
            if left <= 0:
                return None
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    def first_presence(self, user_id: str, presence: str, status_msg: str | None, after: float) -> Seen | None:
        for seen in self.presence:
            ev = seen.event
            if seen.at >= after and ev.user_id == user_id and ev.presence == presence and ev.status_msg == status_msg:
                return seen
        return None

    def presence_of(self, user_id: str) -> list[PresenceEvent]:
        return [s.event for s in self.presence if s.event.user_id == user_id]

    async def stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):
                pass


async def set_and_watch(bob: User, watcher: SyncWatcher, presence: str, status_msg: str) -> None:
    """bob sets presence with nio; alice's running sync must show it within 1 s."""
    called = time.monotonic()
    resp = await bob.client.set_presence(presence, status_msg)
    returned = time.monotonic()
    expect_type(resp, PresenceSetResponse, f"bob's set_presence({presence!r}, {status_msg!r})")
    ok(f"bob's set_presence({presence!r}, {status_msg!r}) took {returned - called:.3f} s")

    seen = await watcher.wait_for(
        lambda: watcher.first_presence(bob.user_id, presence, status_msg, called),
        LATENCY_LIMIT_S + WAIT_REPORT_S,
    )
    if seen is None:
        fail(f"bob's {presence!r} in alice's sync",
             f"PresenceEvent {bob.user_id} {presence!r} status_msg {status_msg!r} within {LATENCY_LIMIT_S} s",
             f"nothing within {LATENCY_LIMIT_S + WAIT_REPORT_S} s; bob's events seen by alice: "
             f"{watcher.presence_of(bob.user_id)}")
    delay = seen.at - returned
    check(delay <= LATENCY_LIMIT_S, f"delay of bob's {presence!r} reaching alice",
          f"<= {LATENCY_LIMIT_S} s after bob's call returned", f"{delay:.3f} s")
    ok(f"alice saw bob {presence!r} / {status_msg!r} {max(delay, 0.0):.3f} s after bob's call returned "
       f"(event: {seen.event})")


async def fresh_initial_sync(base: str, user: User, label: str) -> SyncResponse:
    """A new device of `user` does nio's initial sync (no since, no timeout)."""
    client = await login(base, user, label)
    try:
        return expect_type(await client.sync(), SyncResponse, f"{label}: initial sync")
    finally:
        await client.close()


# --------------------------------------------------------------------------
# The scenario


CURRENT_STEP = "start-up"


def begin(text: str) -> None:
    global CURRENT_STEP
    CURRENT_STEP = text
    step(text)


async def run(base: str) -> None:
    users: list[User] = []
    watchers: list[SyncWatcher] = []
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20))
    try:
        begin("0. the server answers GET /_matrix/client/versions")
        await check_versions(http, base)

        begin("1. register alice, bob and carol with nio; log in with a password")
        alice, bob, carol = [await register(base, n) for n in ("alice", "bob", "carol")]
        users = [alice, bob, carol]
        for u in users:
            u.client = await login(base, u, f"nio scenario ({u.name})")
        await check_profile(alice)

        begin("2. alice asks to watch bob over the Tidings API; bob allows it")
        await arrange_consent(http, base, alice, bob)

        begin("3. all three run nio's sync_forever(); bob changes presence")
        watchers = [SyncWatcher(u.name, u.client) for u in users]
        for w in watchers:
            w.start()
        for w in watchers:
            done = await w.wait_for(lambda w=w: w.syncs >= 1, 10.0)
            check(bool(done), f"{w.name}'s first sync", "a SyncResponse within 10 s", f"{w.syncs} syncs")
        await asyncio.sleep(0.3)  # let the long polls reach the server
        alice_w, _bob_w, carol_w = watchers
        carol_syncs_before, idle_since = carol_w.syncs, time.monotonic()
        ok("first syncs done; long polls in flight")

        await set_and_watch(bob, alice_w, "online", "at the desk")
        await set_and_watch(bob, alice_w, "unavailable", "lunch")

        begin("4. carol, who never asked, may not see bob")
        resp = await carol.client.get_presence(bob.user_id)
        check(isinstance(resp, PresenceGetError) and resp.status_code == "M_FORBIDDEN"
              and resp.transport_response is not None and resp.transport_response.status == 403,
              "carol's get_presence(bob)", "PresenceGetError, HTTP 403, M_FORBIDDEN", describe(resp))
        ok(f"carol's get_presence(bob): {describe(resp)}")

        nobody = f"@nobody-{secrets.token_hex(4)}:{alice.user_id.split(':', 1)[1]}"
        resp = await carol.client.get_presence(nobody)
        check(isinstance(resp, PresenceGetError) and resp.status_code == "M_FORBIDDEN",
              f"carol's get_presence of a user who does not exist ({nobody})",
              "PresenceGetError M_FORBIDDEN, the same as for bob", describe(resp))
        ok("carol's get_presence of a non-existent user: M_FORBIDDEN as well")

        carol_w._check_health()
        leaked = carol_w.presence_of(bob.user_id)
        check(not leaked, "bob's presence in carol's running sync", "none", leaked)
        await asyncio.sleep(max(0.0, idle_since + IDLE_WINDOW_S - time.monotonic()))
        idle_syncs = carol_w.syncs - carol_syncs_before
        idle_s = time.monotonic() - idle_since
        check(idle_syncs <= IDLE_SYNC_LIMIT, f"carol's /sync round trips in {idle_s:.1f} s with nothing new",
              f"at most {IDLE_SYNC_LIMIT} (nio asks for 60 s long polls)", idle_syncs)
        ok(f"carol's running sync carried no presence of bob "
           f"({idle_syncs} round trips in {idle_s:.1f} s: it long-polls)")

        resp = await fresh_initial_sync(base, carol, "carol's second device")
        leaked = [e for e in resp.presence_events if getattr(e, "user_id", None) == bob.user_id]
        check(not leaked, "bob's presence in carol's fresh initial sync", "none", leaked)
        ok("carol's fresh initial sync carried no presence of bob")

        begin("5. alice reads bob's presence directly")
        resp = await alice.client.get_presence(bob.user_id)
        expect_type(resp, PresenceGetResponse, "alice's get_presence(bob)")
        check((resp.presence, resp.status_msg) == ("unavailable", "lunch"),
              "alice's get_presence(bob)", ("unavailable", "lunch"), (resp.presence, resp.status_msg))
        ok(f"alice's get_presence(bob): presence={resp.presence!r} status_msg={resp.status_msg!r} "
           f"last_active_ago={resp.last_active_ago} currently_active={resp.currently_active}")

        resp = await fresh_initial_sync(base, alice, "alice's second device")
        mine = [e for e in resp.presence_events if getattr(e, "user_id", None) == bob.user_id]
        check(any(isinstance(e, PresenceEvent) and (e.presence, e.status_msg) == ("unavailable", "lunch")
                  for e in mine),
              "bob's presence in alice's fresh initial sync",
              "a PresenceEvent 'unavailable' / 'lunch'", mine or resp.presence_events)
        ok("alice's fresh initial sync carries bob's current presence")

        begin("6. alice uploads a file with nio; bob downloads it")
        data = secrets.token_bytes(20_000)
        resp, _ = await alice.client.upload(io.BytesIO(data), content_type="image/png",
                                            filename="dot.png", filesize=len(data))
        expect_type(resp, UploadResponse, "alice's upload()")
        check(resp.content_uri.startswith("mxc://"), "the content URI", "mxc://...", resp.content_uri)
        got = await bob.client.download(mxc=resp.content_uri)
        expect_type(got, MemoryDownloadResponse, "bob's download()")
        check((got.body, got.content_type, got.filename) == (data, "image/png", "dot.png"),
              "bob's download", "the same 20000 bytes, image/png, dot.png",
              (len(got.body), got.content_type, got.filename))
        ok(f"uploaded {len(data)} bytes as {resp.content_uri}; bob downloaded them back")

        for w in watchers:
            w._check_health()
    finally:
        for w in watchers:
            await w.stop()
        for u in users:
            if u.client is not None:
                await u.client.close()
        await http.close()


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    base = sys.argv[1].rstrip("/")
    # nio logs why a response failed its schema; expected errors (403, 401) log too.
    logging.basicConfig(level=logging.WARNING, format="    nio %(levelname)s: %(message)s", stream=sys.stdout)
    started = time.monotonic()
    try:
        asyncio.run(asyncio.wait_for(run(base), DEADLINE_S))
    except ScenarioFailure as e:
        print(f"FAIL in step '{CURRENT_STEP}': {e}", flush=True)
        return 1
    except asyncio.TimeoutError as e:
        if time.monotonic() - started >= DEADLINE_S - 0.5:
            print(f"FAIL: global deadline of {DEADLINE_S:.0f} s passed during step '{CURRENT_STEP}'", flush=True)
        else:  # an HTTP request of our own timed out
            print(f"FAIL in step '{CURRENT_STEP}': request timed out: {e!r}", flush=True)
        return 1
    except Exception as e:  # connection refused, a nio crash, ...
        print(f"FAIL in step '{CURRENT_STEP}': {type(e).__name__}: {e}", flush=True)
        return 1
    print(f"PASS: all checks passed in {time.monotonic() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
