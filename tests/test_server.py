"""The signalling server end to end: real server on port 0, real websocket clients."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import json

import aiohttp
import pytest
from websockets.asyncio.client import connect

from signalling.client import Client, ClientError
from signalling.model import SiteId
from web.app import Huishang
from web.config import HuishangConfig

STREETS = ["tianhe.zhuji", "tianhe.xiancun", "tianhe.liede", "tianhe.shahe"]


async def join(app: Huishang, site: str, name: str = "test") -> Client:
    token = app.token_for(site)  # type: ignore[arg-type]
    assert token is not None
    return await Client.connect(app.signalling_url, token, client_name=name)


async def raw(app: Huishang):  # type: ignore[no-untyped-def]
    return await connect(app.signalling_url, compression=None, max_size=None)


async def recv_json(ws, timeout: float = 5) -> dict:  # type: ignore[no-untyped-def,type-arg]
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))  # type: ignore[no-any-return]


async def test_info_and_welcome_snapshot(server: Huishang) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.web_url}/api/info") as resp:
            info = await resp.json()
        async with http.get(f"{server.web_url}/healthz") as resp:
            assert resp.status == 200
    assert info == {"protocol": 1, "signalling": server.signalling_url}
    client = await join(server, "tianhe.zhuji")
    welcome = client.welcome
    assert welcome["protocol"] == 1
    assert welcome["re"] == "hello"
    assert welcome["site"] == {
        "id": "tianhe.zhuji",
        "name": "珠吉街",
        "level": "street",
        "role": "terminal",
        "parent": "tianhe",
    }
    snapshot = welcome["conference"]
    ids = [s["id"] for s in snapshot["sites"]]
    assert ids == [s.id for s in server.config.sites]  # every registered site, online or not
    me = next(s for s in snapshot["sites"] if s["id"] == "tianhe.zhuji")
    assert me["online"] is True and me["name"] == "珠吉街"
    for key in ("floor", "rollcall", "layout", "recording", "banner"):
        assert key in snapshot
    await client.close()


async def test_wrong_token_gets_error_then_4401(server: Huishang) -> None:
    ws = await raw(server)
    await ws.send(json.dumps({"type": "hello", "protocol": 1, "token": "nope", "id": 7}))
    reply = await recv_json(ws)
    assert reply == {"type": "error", "re": 7, "code": "unauthorized", "message": reply["message"]}
    await asyncio.wait_for(ws.wait_closed(), 5)
    assert ws.close_code == 4401
    with pytest.raises(ClientError) as info:
        await Client.connect(server.signalling_url, "still-wrong")
    assert info.value.code == "unauthorized" and info.value.close_code == 4401


async def test_second_login_replaces_first_with_4409(server: Huishang) -> None:
    first = await join(server, "tianhe.liede", "first")
    second = await join(server, "tianhe.liede", "second")
    for _ in range(50):
        if first.closed:
            break
        await asyncio.sleep(0.1)
    assert first.close_code == 4409
    # The site never went offline, and the new session works.
    reply = await second.request({"type": "hand", "up": True})
    assert reply["type"] == "ok"
    assert server.conference.snapshot()["hands"] == ["tianhe.liede"]
    await second.close()


async def test_recoverable_errors_keep_the_connection(server: Huishang) -> None:
    ws = await raw(server)
    # Before hello: anything else is refused, the connection stays.
    await ws.send(json.dumps({"type": "floor", "site": None, "id": 1}))
    assert (await recv_json(ws))["code"] == "bad_request"
    await ws.send(json.dumps({"type": "hello", "protocol": 99, "token": "x", "id": 2}))
    assert (await recv_json(ws))["code"] == "bad_request"
    token = server.token_for("tianhe.shahe")  # type: ignore[arg-type]
    await ws.send(json.dumps({"type": "hello", "protocol": 1, "token": token, "id": 3}))
    assert (await recv_json(ws))["type"] == "welcome"
    cases = [
        ("{not json", "bad_request"),
        ("[1,2]", "bad_request"),
        (json.dumps({"type": "warp_drive", "id": 4}), "bad_request"),
        (json.dumps({"type": "hand", "id": 5}), "bad_request"),
        (json.dumps({"type": "floor", "site": "tianhe.zhuji", "id": 6}), "forbidden"),
        (json.dumps({"type": "mute", "site": "tianhe.zhuji", "audio": True, "id": 7}), "forbidden"),
        (json.dumps({"type": "rollcall_ack", "id": 8}), "conflict"),
        (json.dumps({"type": "hello", "protocol": 1, "token": token, "id": 9}), "conflict"),
        (json.dumps({"type": "banner", "text": "x", "id": 10}), "forbidden"),
        (json.dumps({"type": "ping", "pad": "x" * (300 * 1024)}), "too_large"),
        (b"\x00binary", "bad_request"),
    ]
    for frame, code in cases:
        await ws.send(frame)
        reply = await recv_json(ws)
        while reply["type"] != "error":  # skip events broadcast meanwhile
            reply = await recv_json(ws)
        assert reply["code"] == code, (frame[:60], reply)
        assert reply["message"]
    await ws.send(json.dumps({"type": "ping", "id": "alive"}))
    reply = await recv_json(ws)
    while reply.get("re") != "alive":
        reply = await recv_json(ws)
    assert reply["type"] == "ok"
    await ws.close()


async def test_rate_limit_refuses_then_recovers(server: Huishang) -> None:
    client = await join(server, "tianhe.zhuji")
    burst = server.config.limits.rate_burst
    for i in range(burst * 2):
        await client.send({"type": "ping", "id": f"p{i}"})
    await asyncio.sleep(0.5)
    limited = [e for e in client.events if e.get("code") == "rate_limited"]
    assert limited, "a burst twice the allowance must be refused in part"
    await asyncio.sleep(burst / server.config.limits.rate_per_s)
    assert (await client.request({"type": "ping"}))["type"] == "ok"
    await client.close()


async def test_vanished_client_goes_offline_after_grace(demo_config: HuishangConfig) -> None:
    config = dataclasses.replace(
        demo_config, limits=dataclasses.replace(demo_config.limits, rejoin_grace_s=0.5)
    )
    app = await Huishang.open(config=config)
    try:
        chair = await join(app, "tianhe")
        street = await join(app, "tianhe.zhuji")
        street._ws.transport.abort()
        event = await chair.next_event(
            "site",
            timeout=5,
            where=lambda e: e["site"]["id"] == "tianhe.zhuji" and not e["site"]["online"],
        )
        assert event["site"]["hand"] is False
        # A rejoin within the grace period resumes silently: no offline event.
        again = await join(app, "tianhe.zhuji")
        again._ws.transport.abort()
        back = await join(app, "tianhe.zhuji")
        await asyncio.sleep(0.2)
        assert app.conference.snapshot()["sites"][1]["online"] is True
        await back.close()
        await chair.close()
    finally:
        await app.close()


async def test_twenty_terminals_see_the_same_roster(server: Huishang) -> None:
    sites = [s.id for s in server.config.sites if s.role.value == "terminal"][:20]
    clients = await asyncio.gather(*(join(server, s, f"t{i}") for i, s in enumerate(sites)))
    expected = set(sites)

    def online_view(client: Client) -> set[str]:
        view = {s["id"]: s["online"] for s in client.welcome["conference"]["sites"]}
        for event in client.events:
            if event.get("type") == "site":
                view[event["site"]["id"]] = event["site"]["online"]
        return {k for k, v in view.items() if v}

    for _ in range(50):
        if all(online_view(c) == expected for c in clients):
            break
        await asyncio.sleep(0.1)
    for client in clients:
        assert online_view(client) == expected
    await asyncio.gather(*(c.close() for c in clients))


async def test_rollcall_round_persists_across_restart(demo_config: HuishangConfig) -> None:
    app = await Huishang.open(config=demo_config)
    conference_id = app.conference.config.conference_id
    chair_token = app.token_for("tianhe")  # type: ignore[arg-type]
    try:
        chair = await join(app, "tianhe")
        terminals = {s: await join(app, s) for s in STREETS[:3]}
        await chair.request({"type": "rollcall", "action": "start", "sites": STREETS})
        # First two answer, the third is skipped by the chair, the fourth is offline: stop.
        for site in STREETS[:2]:
            await terminals[site].next_event(
                "rollcall", where=lambda e, s=site: e["state"]["current"] == s
            )
            await terminals[site].request({"type": "rollcall_ack"})
        await chair.next_event("rollcall", where=lambda e: e["state"]["current"] == STREETS[2])
        await chair.request({"type": "rollcall", "action": "next"})
        await chair.request({"type": "rollcall", "action": "stop"})
        final = await chair.next_event("rollcall", where=lambda e: not e["state"]["active"])
        assert final["state"]["acked"] == STREETS[:2]
        assert final["state"]["missed"] == STREETS[2:4]
        for client in [chair, *terminals.values()]:
            await client.close()
    finally:
        await app.close()
    # Restart on the same data directory: the old conference's attendance is still there.
    app = await Huishang.open(config=demo_config)
    try:
        assert app.conference.config.conference_id != conference_id
        async with aiohttp.ClientSession() as http:
            url = f"{app.web_url}/api/attendance.csv"
            params = {"token": chair_token, "conference": conference_id}
            async with http.get(url, params=params) as resp:
                assert resp.status == 200
                text = (await resp.read()).decode("utf-8-sig")
            params["token"] = app.token_for("tianhe.zhuji")  # type: ignore[arg-type,assignment]
            async with http.get(url, params=params) as resp:
                assert resp.status == 403
            async with http.get(url, params={"conference": conference_id}) as resp:
                assert resp.status == 401
        rows = list(csv.reader(io.StringIO(text)))
        flat = "\n".join(",".join(r) for r in rows)
        assert "珠吉街" in flat and "冼村街" in flat
        results = {(r[0], r[-2]) for r in rows[1:] if len(r) >= 2}
        assert ("tianhe.zhuji", "acked") in results
        assert ("tianhe.liede", "missed") in results
        assert ("tianhe.shahe", "missed") in results
    finally:
        await app.close()


async def test_token_issued_while_running_works_and_old_one_stops(server: Huishang) -> None:
    from web.token_command import issue_token

    old = server.token_for("tianhe.chebei")  # type: ignore[arg-type]
    new = issue_token(server.config, "tianhe.chebei")
    await asyncio.sleep(1.1)  # the server re-reads the store's tokens at most once a second
    client = await Client.connect(server.signalling_url, new)
    assert client.site["id"] == "tianhe.chebei"
    await client.close()
    with pytest.raises(ClientError) as info:
        await Client.connect(server.signalling_url, old or "")
    assert info.value.close_code == 4401


async def test_presets_survive_a_restart(demo_config: HuishangConfig) -> None:
    layout = {"kind": "4", "tiles": [{"source": s} for s in STREETS]}
    app = await Huishang.open(config=demo_config)
    try:
        operator = await join(app, "tianhe.operator")
        await operator.request({"type": "layout", "layout": layout})
        await operator.request({"type": "preset_save", "name": "四街道"})
        await operator.request({"type": "preset_save", "name": "临时"})
        await operator.request({"type": "preset_delete", "name": "临时"})
        with pytest.raises(ClientError) as info:
            await operator.request({"type": "preset_load", "name": "临时"})
        assert info.value.code == "not_found"
        await operator.close()
    finally:
        await app.close()
    app = await Huishang.open(config=demo_config)
    try:
        operator = await join(app, "tianhe.operator")
        presets = operator.welcome["conference"]["presets"]
        assert "四街道" in presets and "临时" not in presets
        await operator.request({"type": "preset_load", "name": "四街道"})
        event = await operator.next_event("layout")
        assert [t["source"] for t in event["layout"]["tiles"]] == STREETS
        await operator.close()
    finally:
        await app.close()


async def test_server_side_session_is_present_and_can_take_the_floor(server: Huishang) -> None:
    chair = await join(server, "tianhe", "chair")
    session = server.signalling.attach_local(SiteId("tianhe.uplink"))
    event = await chair.next_event(
        "site", where=lambda e: e["site"]["id"] == "tianhe.uplink" and e["site"]["online"]
    )
    assert event["site"]["online"] is True
    reply = await chair.request({"type": "floor", "site": "tianhe.uplink"})
    assert reply["type"] == "ok"
    assert server.conference.floor == "tianhe.uplink"
    await server.signalling.detach_local(session)
    await chair.next_event(
        "site", where=lambda e: e["site"]["id"] == "tianhe.uplink" and not e["site"]["online"]
    )
    assert server.conference.floor is None  # the floor holder left
    await server.signalling.detach_local(session)  # idempotent
    with pytest.raises(Exception, match="unknown site"):
        server.signalling.attach_local(SiteId("nowhere"))
    await chair.close()


async def test_websocket_login_replaces_a_server_side_session(server: Huishang) -> None:
    local = server.signalling.attach_local(SiteId("tianhe.zhuji"))
    assert server.conference.live_session(SiteId("tianhe.zhuji")) == local
    terminal = await join(server, "tianhe.zhuji", "terminal")
    assert server.conference.live_session(SiteId("tianhe.zhuji")) == terminal.session
    await server.signalling.detach_local(local)  # the replaced session: site stays online
    assert "tianhe.zhuji" in server.conference.online()
    await terminal.close()
