// Nango's own Node client (@nangohq/node, pinned in package.json) against our live API.
// Driven by tests/test_node_client.py: config in NANGO_COMPAT (JSON), one JSON result per step on stdout.
import { Nango } from '@nangohq/node';
import { outcome } from './outcome.mjs';

const cfg = JSON.parse(process.env.NANGO_COMPAT);
const nango = new Nango({ secretKey: cfg.key, host: cfg.host });
const pck = cfg.integration;
const cid = cfg.connectionId;
const results = {};

async function step(name, fn) {
    results[name] = await outcome(fn);
}

const slim = (res) => ({ status: res.status, data: res.data });

await step('listIntegrations', () => nango.listIntegrations());
await step('getIntegration', () => nango.getIntegration({ uniqueKey: pck }));
await step('listConnections', () => nango.listConnections());
await step('listConnectionsObject', () => nango.listConnections({ integrationId: [pck], limit: 10 }));
await step('getConnection', () => nango.getConnection(pck, cid));
await step('getConnectionForceRefresh', () => nango.getConnection(pck, cid, true, true));
await step('getToken', () => nango.getToken(pck, cid));

await step('listRecordsPaged', async () => {
    const pages = [];
    let cursor = undefined;
    for (let i = 0; i < 20; i++) {
        const page = await nango.listRecords({ providerConfigKey: pck, connectionId: cid, model: cfg.model, limit: 2, cursor });
        pages.push(page.records.map((r) => ({ id: r.id, title: r.title, meta: r._nango_metadata })));
        cursor = page.next_cursor;
        if (!cursor) break;
    }
    return pages;
});
await step('listRecordsUpdated', () => nango.listRecords({ providerConfigKey: pck, connectionId: cid, model: cfg.model, filter: 'updated' }));
await step('listRecordsAddedUpdated', () => nango.listRecords({ providerConfigKey: pck, connectionId: cid, model: cfg.model, filter: 'added,updated', modifiedAfter: '2000-01-01T00:00:00.000Z' }));
await step('listRecordsIds', () => nango.listRecords({ providerConfigKey: pck, connectionId: cid, model: cfg.model, ids: cfg.someIds }));

await step('triggerAction', () => nango.triggerAction(pck, cid, 'create-issue', { title: 'from node' }));
await step('triggerActionError', () => nango.triggerAction(pck, cid, 'create-issue', { title: '   ' }));
await step('triggerActionAsync', async () => {
    const started = await nango.triggerActionAsync(pck, cid, 'create-issue', { title: 'async from node' });
    for (let i = 0; i < 100; i++) {
        try {
            return { started, result: await nango.getAsyncActionResult({ statusUrl: started.statusUrl }) };
        } catch (err) {
            if (!err.response || err.response.status !== 404) throw err;
            await new Promise((r) => setTimeout(r, 300));
        }
    }
    throw new Error('async action never finished');
});

await step('setMetadata', async () => slim(await nango.setMetadata(pck, cid, { repo: cfg.repo, a: 1 })));
await step('updateMetadata', async () => slim(await nango.updateMetadata(pck, [cid, cfg.secondConnectionId], { b: 2 })));
await step('getMetadata', () => nango.getMetadata(pck, cid));
await step('getEnvironmentVariables', () => nango.getEnvironmentVariables());
await step('createConnectSession', () => nango.createConnectSession({ end_user: { id: 'u1', email: 'u1@example.com' }, allowed_integrations: [pck] }));

await step('proxyGet', async () => slim(await nango.get({
    endpoint: '/user', providerConfigKey: pck, connectionId: cid, retries: 2, retryOn: [429, 503],
    headers: { 'X-Trace': 'node' }
})));
await step('proxyParams', async () => slim(await nango.proxy({
    method: 'GET', endpoint: `repos/${cfg.repo}/issues`, providerConfigKey: pck, connectionId: cid,
    params: { per_page: '2', state: 'all' }
})));
await step('proxyPost', async () => slim(await nango.post({
    endpoint: `/repos/${cfg.repo}/issues`, providerConfigKey: pck, connectionId: cid, data: { title: 'proxied from node' }
})));
await step('proxyNotFound', () => nango.get({ endpoint: `/repos/${cfg.repo}/issues/99999`, providerConfigKey: pck, connectionId: cid }));

await step('pauseSync', async () => slim(await nango.pauseSync(pck, ['issues'], cid)));
await step('syncStatusPaused', () => nango.syncStatus(pck, ['issues'], cid));
await step('startSync', async () => slim(await nango.startSync(pck, ['issues'], cid)));
await step('syncStatusAll', () => nango.syncStatus(pck, '*', cid));
await step('updateFrequency', () => nango.updateSyncConnectionFrequency(pck, 'issues', cid, 'every 2h'));
await step('resetFrequency', () => nango.updateSyncConnectionFrequency(pck, 'issues', cid, null));
await step('triggerSync', async () => slim(await nango.triggerSync(pck, ['issues'], cid)));
await step('triggerSyncReset', async () => slim(await nango.triggerSync(pck, ['issues'], cid, { reset: true })));
await step('triggerSyncLegacy', async () => slim(await nango.triggerSync(pck, ['issues'], cid, false)));

await step('deleteConnection', async () => slim(await nango.deleteConnection(pck, cfg.secondConnectionId)));
await step('listConnectionsAfterDelete', () => nango.listConnections());
await step('wrongKey', () => new Nango({ secretKey: 'sk_not_a_key', host: cfg.host }).listConnections());

process.stdout.write(JSON.stringify(results));
