"""End users, tags and reconnect sessions (issue 19), through Nango's own Node client: a connect session names the
end user and organization, the OAuth flow it starts makes a connection that keeps them (as tags too), which
`listConnections` filters by; `patchConnection` changes the tags; a reconnect session re-authorizes the same
connection and keeps its end user."""

from __future__ import annotations

import json
import shutil
import uuid
from typing import Any

import aiohttp
import pytest

from tests.conftest import Stack, setup_github
from tests.test_node_client import _install
from tests.test_node_client import _run as run_node

pytestmark = pytest.mark.skipif(shutil.which("node") is None or shutil.which("npm") is None,
                                reason="Node.js is not installed: the @nangohq/node client cannot run")

SESSION = """
const { Nango } = require('@nangohq/node');
const nango = new Nango({ secretKey: process.env.KEY, host: process.env.HOST });
(async () => {
  const made = await nango.createConnectSession({
    end_user: { id: 'u-1', email: 'ada@example.com', display_name: 'Ada', tags: { Plan: 'pro' } },
    organization: { id: 'org-9', display_name: 'Analytical' }, allowed_integrations: ['github'],
    tags: { region: 'eu' } });
  console.log(JSON.stringify(made.data));
})().catch((e) => { console.error(e.response ? JSON.stringify(e.response.data) : e); process.exit(1); });
"""

AFTER = """
const { Nango } = require('@nangohq/node');
const nango = new Nango({ secretKey: process.env.KEY, host: process.env.HOST });
const id = process.env.CONNECTION;
(async () => {
  const byUser = await nango.listConnections({ userId: 'u-1' });
  const byEmail = await nango.listConnections({ tags: { email: 'ada@example.com' } });
  const nobody = await nango.listConnections({ userId: 'u-2' });
  const patched = await nango.patchConnection({ connectionId: id, provider_config_key: 'github' },
                                              { tags: { region: 'us' } });
  const byRegion = await nango.listConnections({ tags: { region: 'us' } });
  const again = await nango.createReconnectSession({ connection_id: id, integration_id: 'github' });
  console.log(JSON.stringify({ byUser, byEmail, nobody, patched, byRegion, reconnect: again.data }));
})().catch((e) => { console.error(e.response ? JSON.stringify(e.response.data) : e); process.exit(1); });
"""


async def _oauth(link: str) -> dict[str, Any]:
    """Follow a connect link as a browser would: our connect URL, the provider's consent, the callback."""
    async with aiohttp.ClientSession() as browser:
        async with browser.get(link, allow_redirects=False) as resp:
            assert resp.status == 302, await resp.text()
            to_provider = resp.headers["Location"]
        async with browser.get(to_provider, allow_redirects=False) as resp:
            callback = resp.headers["Location"]
        async with browser.get(callback) as resp:
            assert resp.status == 200, await resp.text()
            return dict(await resp.json())


async def test_end_users_tags_and_reconnect_through_nangos_node_client(stack: Stack) -> None:
    await _install()
    gh = await setup_github(stack)
    async with stack.api(gh.key) as api:
        await api.update_integration("github", client_id=stack.demo.client_id, client_secret=stack.demo.client_secret,
                                     authorization_url=f"{stack.provider_url}/login/oauth/authorize",
                                     token_url=f"{stack.provider_url}/login/oauth/access_token")
    env = {"KEY": gh.key, "HOST": stack.api_url}
    code, out, err = await run_node("node", "-e", SESSION, timeout=60, env=env)
    assert code == 0, err
    session = json.loads(out)
    assert session["token"].startswith("nango_connect_session_")
    assert session["connect_link"] == f"{stack.api_url}/connect/ui/?session_token={session['token']}"

    made = await _oauth(session["connect_url"])
    connection_id = made["connection_id"]
    assert made["created"] and str(uuid.UUID(connection_id)) == connection_id
    async with stack.api(gh.key) as api:
        got = await api.get_connection("github", connection_id)
    assert got["end_user"] == {"id": "u-1", "email": "ada@example.com", "display_name": "Ada",
                               "tags": {"Plan": "pro"},
                               "organization": {"id": "org-9", "display_name": "Analytical"}}
    assert got["tags"] == {"end_user_id": "u-1", "end_user_email": "ada@example.com", "end_user_display_name": "Ada",
                           "plan": "pro", "organization_id": "org-9", "organization_display_name": "Analytical",
                           "region": "eu"}

    code, out, err = await run_node("node", "-e", AFTER, timeout=60, env={**env, "CONNECTION": connection_id})
    assert code == 0, err
    seen = json.loads(out)
    assert [c["connection_id"] for c in seen["byUser"]["connections"]] == [connection_id]
    assert [c["connection_id"] for c in seen["byEmail"]["connections"]] == [connection_id]
    assert seen["nobody"]["connections"] == [] and seen["patched"] == {"success": True}
    assert [c["connection_id"] for c in seen["byRegion"]["connections"]] == [connection_id]
    assert seen["byRegion"]["connections"][0]["tags"] == {"region": "us"}

    # the reconnect session's flow re-authorizes the same connection; its end user stays
    again = await _oauth(seen["reconnect"]["connect_url"])
    assert again == {**again, "connection_id": connection_id, "created": False}
    async with stack.api(gh.key) as api:
        after = await api.get_connection("github", connection_id)
        assert after["end_user"]["id"] == "u-1"
        assert after["credentials"]["access_token"] != got["credentials"]["access_token"]
        missing = await api.request("POST", "/connect/sessions/reconnect", ok=(404,),
                                    json={"connection_id": "nobody", "integration_id": "github"})
    assert missing["error"]["code"] == "unknown_connection"
