#!/usr/bin/env python3
"""matrix-nio 0.26 against a running Tidings server: rooms.

Usage: python rooms.py BASE_URL

Exit status 0 means every check passed; otherwise the first failed check is
printed and the exit status is 1. The whole run has a deadline of 60 s.

What it proves, with nio's own client methods and response schemas:

1. alice registers and creates a private room with a name and topic
   (`room_create`), and invites bob (`room_invite`).
2. bob's `sync()` shows the invite (nio's `InviteInfo` with the room name from
   the stripped state); bob joins (`join`).
3. alice sends a text (`room_send`); bob's sync timeline carries it as a
   `RoomMessageText` from alice; nio's room state knows both members.
4. bob answers in a thread (`m.relates_to` with `rel_type: m.thread`); alice's
   `room_messages` (dir b) returns both, the root with the server-bundled
   `m.thread` summary (count 1, bob's reply as latest event).
5. `room_get_event_relations` yields the reply, `room_get_event` the root, and
   `GET /_matrix/client/v1/rooms/{roomId}/threads` lists the root.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
from typing import Any
from urllib.parse import quote

import aiohttp
from nio.api import RelationshipType
from nio import (
    AsyncClient,
    InviteInfo,
    JoinResponse,
    LoginResponse,
    MessageDirection,
    RegisterResponse,
    RoomCreateResponse,
    RoomGetEventResponse,
    RoomInviteResponse,
    RoomMessagesResponse,
    RoomMessageText,
    RoomPreset,
    RoomSendResponse,
    SyncResponse,
)

DEADLINE_S = 60.0
PASSWORD = "nio-rooms-" + secrets.token_hex(8)


class ScenarioFailure(Exception):
    pass


def ok(text: str) -> None:
    print(f"    ok: {text}", flush=True)


def check(cond: bool, what: str, expected: Any, got: Any) -> None:
    if not cond:
        raise ScenarioFailure(f"{what}: expected {expected!r}, got {got!r}")


def expect_type(resp: Any, cls: type, what: str) -> Any:
    check(isinstance(resp, cls), what, cls.__name__, f"{type(resp).__name__}: {getattr(resp, 'message', resp)}")
    return resp


async def user(base: str, name: str) -> AsyncClient:
    localpart = f"{name}-{secrets.token_hex(4)}"
    reg = AsyncClient(base)
    try:
        expect_type(await reg.register(localpart, PASSWORD), RegisterResponse, f"register {localpart}")
    finally:
        await reg.close()
    client = AsyncClient(base, user=localpart)
    expect_type(await client.login(PASSWORD, device_name=f"{name} rooms"), LoginResponse, f"login {localpart}")
    return client


async def sync_until(client: AsyncClient, since: str | None, what: str, found) -> tuple[Any, str]:
    """nio's own sync() (long polls) until `found(resp)` is truthy."""
    for _ in range(20):
        resp = expect_type(await client.sync(timeout=5000, since=since), SyncResponse, f"sync ({what})")
        since = resp.next_batch
        hit = found(resp)
        if hit:
            return hit, since
    raise ScenarioFailure(f"{what}: never seen in 20 syncs")


async def run(base: str) -> None:
    alice = await user(base, "alice")
    bob = await user(base, "bob")
    try:
        created = expect_type(
            await alice.room_create(name="Tea room", topic="Leaves", preset=RoomPreset.private_chat),
            RoomCreateResponse,
            "room_create",
        )
        room_id = created.room_id
        ok(f"alice created {room_id}")
        _, alice_since = await sync_until(alice, None, "alice's own room", lambda r: room_id in r.rooms.join)
        _, bob_since = await sync_until(bob, None, "bob's first sync", lambda r: True)
        expect_type(await alice.room_invite(room_id, bob.user_id), RoomInviteResponse, "room_invite")

        invite, bob_since = await sync_until(
            bob, bob_since, "bob's invite", lambda r: r.rooms.invite.get(room_id)
        )
        check(isinstance(invite, InviteInfo), "invite info", "InviteInfo", type(invite).__name__)
        check(bob.invited_rooms[room_id].name == "Tea room", "invite's room name", "Tea room", bob.invited_rooms[room_id].name)
        ok("bob's sync shows the invite with the room's name")
        expect_type(await bob.join(room_id), JoinResponse, "join")

        sent = expect_type(
            await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "cup of tea?"}),
            RoomSendResponse,
            "room_send",
        )
        root_id = sent.event_id

        def alice_text(r: SyncResponse):
            room = r.rooms.join.get(room_id)
            if not room:
                return None
            return next((e for e in room.timeline.events if isinstance(e, RoomMessageText) and e.body == "cup of tea?"), None)

        event, bob_since = await sync_until(bob, bob_since, "alice's message", alice_text)
        check(event.sender == alice.user_id, "sender", alice.user_id, event.sender)
        members = set(bob.rooms[room_id].users)
        check(members == {alice.user_id, bob.user_id}, "members nio knows", {alice.user_id, bob.user_id}, members)
        ok("bob's sync carries alice's message; nio knows both members")

        reply = expect_type(
            await bob.room_send(
                room_id,
                "m.room.message",
                {
                    "msgtype": "m.text",
                    "body": "yes please",
                    "m.relates_to": {"rel_type": "m.thread", "event_id": root_id, "is_falling_back": True,
                                     "m.in_reply_to": {"event_id": root_id}},
                },
            ),
            RoomSendResponse,
            "thread reply",
        )
        page = expect_type(
            await alice.room_messages(room_id, start=alice_since, direction=MessageDirection.front, limit=50),
            RoomMessagesResponse,
            "room_messages",
        )
        texts = [e for e in page.chunk if isinstance(e, RoomMessageText)]
        check([e.body for e in texts] == ["cup of tea?", "yes please"], "messages", ["cup of tea?", "yes please"], [e.body for e in texts])
        root = texts[0].source
        thread = root.get("unsigned", {}).get("m.relations", {}).get("m.thread", {})
        check(thread.get("count") == 1, "bundled thread count", 1, thread)
        check(thread.get("latest_event", {}).get("event_id") == reply.event_id, "latest thread event", reply.event_id, thread)
        ok("room_messages returns the root with its bundled m.thread summary")

        related = [e async for e in alice.room_get_event_relations(room_id, root_id, RelationshipType.thread)]
        check([e.event_id for e in related] == [reply.event_id], "relations", [reply.event_id], [e.event_id for e in related])
        got = expect_type(await alice.room_get_event(room_id, root_id), RoomGetEventResponse, "room_get_event")
        check(got.event.event_id == root_id, "room_get_event", root_id, got.event.event_id)
        async with aiohttp.ClientSession() as http:
            url = f"{base}/_matrix/client/v1/rooms/{quote(room_id, safe='')}/threads"
            async with http.get(url, headers={"Authorization": f"Bearer {alice.access_token}"}) as resp:
                body = await resp.json()
        roots = [e["event_id"] for e in body.get("chunk", [])]
        check(roots == [root_id], "threads", [root_id], body)
        ok("relations, the event and the thread list agree")
    finally:
        await alice.close()
        await bob.close()


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    try:
        asyncio.run(asyncio.wait_for(run(sys.argv[1].rstrip("/")), DEADLINE_S))
    except ScenarioFailure as e:
        print(f"FAILED: {e}", flush=True)
        return 1
    print("all room checks passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
