"""The frontend SDK's `/connect/ws` sockets: a public route, so each API process holds a bounded number and
one database poll serves them all (each socket used to poll on its own, four times a second)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from orchestrator.api.app import create_app
from orchestrator.api.socket_results import SOCKETS
from orchestrator.store import oauth as oauth_repo
from tests.conftest import Stack, eventually, setup_github


async def test_sockets_get_their_flows_outcome_and_a_full_process_refuses_the_next(stack: Stack) -> None:
    gh = await setup_github(stack, issues=1)
    async with stack.pool.acquire() as conn:
        env_id, integration_id = await conn.fetchrow(
            "SELECT e.id, i.id FROM environments e JOIN integrations i ON i.environment_id = e.id"
            " WHERE e.name = $1 AND i.unique_key = 'github'", gh.env)
    async with TestClient(TestServer(create_app(stack.settings, temporal=stack.client))) as api:
        api.app[SOCKETS].max_sockets = 3
        sockets = [await api.ws_connect("/connect/ws") for _ in range(3)]
        ids = [(await ws.receive_json())["ws_client_id"] for ws in sockets]
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await api.ws_connect("/connect/ws")
        assert refused.value.status == 503
        assert len(api.app[SOCKETS]) == 3

        async with stack.pool.acquire() as conn:  # the callbacks of two flows write their outcome
            for n, client_id in enumerate(ids[:2]):
                state = f"s-{uuid.uuid4()}"
                await oauth_repo.create_state(
                    conn, state=state, environment_id=env_id, integration_id=integration_id,
                    connection_id=f"c{n}", connection_config={}, metadata={}, redirect_uri="http://x/cb",
                    return_url=None, expires_at=datetime.now(UTC) + timedelta(minutes=5), ws_client_id=client_id)
                await oauth_repo.set_result(conn, state, {"message_type": "success", "connectionId": f"c{n}"})
        got = await asyncio.wait_for(asyncio.gather(*(ws.receive_json() for ws in sockets[:2])), timeout=10)
        assert [g["connectionId"] for g in got] == ["c0", "c1"]
        for ws in sockets[:2]:
            assert (await ws.receive()).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)

        again = await api.ws_connect("/connect/ws")  # room again once sockets are done
        assert (await again.receive_json())["message_type"] == "connection_ack"
        await sockets[2].close()
        await again.close()

        async def drained() -> None:
            assert len(api.app[SOCKETS]) == 0
        await eventually(drained, timeout=10)  # a browser that closes its socket stops waiting
