// Every method of Nango's Node client (@nangohq/node, pinned in package.json), one real call each, against our
// live API. Driven by tests/test_node_client_methods.py: config in NANGO_COMPAT (JSON), one JSON result per
// method on stdout. The method list is the client's prototype: a method with no call below is reported as
// unclassified, so a method added to the client fails the test until it is classified.
import { Nango } from '@nangohq/node';
import { outcome } from './outcome.mjs';

const cfg = JSON.parse(process.env.NANGO_COMPAT);
const nango = new Nango({ secretKey: cfg.key, host: cfg.host, webhookSigningKey: cfg.webhookSecret });
const pck = cfg.integration;
const cid = cfg.connectionId;
const slim = (res) => ({ status: res.status, data: res.data });
const issues = `/repos/${cfg.repo}/issues`;

// in this order: later calls rely on what earlier ones made (an integration to update, a variant to delete, ...)
const calls = [
    ['listProviders', () => nango.listProviders()],
    ['getProvider', () => nango.getProvider({ provider: 'github' })],
    ['getProviderTemplates', () => nango.getProviderTemplates({ provider: 'github' })],
    ['listIntegrations', () => nango.listIntegrations()],
    ['getIntegration', () => nango.getIntegration({ uniqueKey: pck })],
    ['createIntegration', () => nango.createIntegration({ unique_key: 'extra', provider: 'github', display_name: 'Extra' })],
    ['createQuickstartIntegration', () => nango.createQuickstartIntegration({ unique_key: 'quick', provider: 'github' })],
    ['updateIntegration', () => nango.updateIntegration({ uniqueKey: 'extra' }, { display_name: 'Extra, renamed' })],
    ['deleteIntegration', async () => slim(await nango.deleteIntegration('extra'))],
    ['listFunctions', () => nango.listFunctions({ uniqueKey: pck }, { type: 'sync' })],
    ['getFunction', () => nango.getFunction({ uniqueKey: pck, name: 'issues' }, { type: 'sync' })],
    ['getFunctionCode', () => nango.getFunctionCode({ uniqueKey: pck, name: 'issues' }, { type: 'sync' })],
    ['deleteFunction', () => nango.deleteFunction({ uniqueKey: pck, name: 'issues' }, { type: 'sync' })],
    ['listConnections', () => nango.listConnections()],
    ['getConnection', () => nango.getConnection(pck, cid)],
    ['getConnectionDetails', async () => slim(await nango.getConnectionDetails({ providerConfigKey: pck, connectionId: cid }))],
    ['patchConnection', () => nango.patchConnection({ connectionId: cid, provider_config_key: pck },
        { end_user: { id: cfg.endUserId, email: 'node@example.com' }, tags: { team: 'compat' } })],
    ['waitForConnection', () => nango.waitForConnection(pck, cfg.endUserId)],
    ['getToken', () => nango.getToken(pck, cid)],
    ['getRawTokenResponse', () => nango.getRawTokenResponse(pck, cid)],
    ['setMetadata', async () => slim(await nango.setMetadata(pck, cid, { repo: cfg.repo, a: 1 }))],
    ['updateMetadata', async () => slim(await nango.updateMetadata(pck, cid, { b: 2 }))],
    ['getMetadata', () => nango.getMetadata(pck, cid)],
    ['getScriptsConfig', () => nango.getScriptsConfig()],
    ['listRecords', () => nango.listRecords({ providerConfigKey: pck, connectionId: cid, model: cfg.model })],
    ['syncStatus', () => nango.syncStatus(pck, ['issues'], cid)],
    ['pauseSync', async () => slim(await nango.pauseSync(pck, ['issues'], cid))],
    ['startSync', async () => slim(await nango.startSync(pck, ['issues'], cid))],
    ['updateSyncConnectionFrequency', () => nango.updateSyncConnectionFrequency(pck, 'issues', cid, 'every 2h')],
    ['createSyncVariant', () => nango.createSyncVariant({ provider_config_key: pck, connection_id: cid, name: 'issues', variant: 'v1' })],
    ['deleteSyncVariant', () => nango.deleteSyncVariant({ provider_config_key: pck, connection_id: cid, name: 'issues', variant: 'v1' })],
    ['getEnvironmentVariables', () => nango.getEnvironmentVariables()],
    ['_triggerAction', () => nango._triggerAction(pck, cid, 'create-issue', false, { title: 'through _triggerAction' })],
    ['triggerAction', () => nango.triggerAction(pck, cid, 'create-issue', { title: 'from node' })],
    ['triggerActionAsync', () => nango.triggerActionAsync(pck, cid, 'create-issue', { title: 'async from node' })],
    ['getAsyncActionResult', async () => {
        const started = await nango.triggerActionAsync(pck, cid, 'create-issue', { title: 'awaited from node' });
        for (let i = 0; i < 200; i++) {
            try {
                return await nango.getAsyncActionResult({ id: started.id });
            } catch (err) {
                if (!err.response || err.response.status !== 404) throw err;
                await new Promise((r) => setTimeout(r, 200));
            }
        }
        throw new Error('async action never finished');
    }],
    ['proxy', async () => slim(await nango.proxy({ method: 'GET', endpoint: issues, providerConfigKey: pck, connectionId: cid, params: { per_page: '2' } }))],
    ['get', async () => slim(await nango.get({ endpoint: '/user', providerConfigKey: pck, connectionId: cid }))],
    ['post', async () => slim(await nango.post({ endpoint: issues, providerConfigKey: pck, connectionId: cid, data: { title: 'proxied post' } }))],
    ['patch', async () => slim(await nango.patch({ endpoint: `${issues}/1`, providerConfigKey: pck, connectionId: cid, data: { title: 'proxied patch' } }))],
    // the demo provider has no PUT or DELETE for issues: its own 405 comes back through the proxy as it is
    ['put', () => nango.put({ endpoint: `${issues}/1`, providerConfigKey: pck, connectionId: cid, data: { title: 'x' } })],
    ['delete', () => nango.delete({ endpoint: `${issues}/1`, providerConfigKey: pck, connectionId: cid })],
    ['createConnectSession', () => nango.createConnectSession({ end_user: { id: cfg.endUserId }, allowed_integrations: [pck] })],
    ['createReconnectSession', () => nango.createReconnectSession({ connection_id: cid, integration_id: pck })],
    ['enrichHeaders', () => nango.enrichHeaders({})],
    ['verifyIncomingWebhookRequest', () => ({
        ours: nango.verifyIncomingWebhookRequest(cfg.webhookBody, cfg.webhookHeaders),
        tampered: nango.verifyIncomingWebhookRequest(cfg.webhookBody + ' ', cfg.webhookHeaders)
    })],
    ['verifyWebhookSignature', () => nango.verifyWebhookSignature(cfg.webhookHeaders['x-nango-hmac-sha256'], JSON.parse(cfg.webhookBody))],
    ['_verifyWebhookSignatureImpl', () => nango._verifyWebhookSignatureImpl(cfg.webhookHeaders['x-nango-hmac-sha256'], JSON.parse(cfg.webhookBody))],
    ['pruneRecords', async () => {
        const page = await nango.listRecords({ providerConfigKey: pck, connectionId: cid, model: cfg.model, limit: 1 });
        const untilCursor = page.records[0]._nango_metadata.cursor;
        return nango.pruneRecords({ providerConfigKey: pck, connectionId: cid, model: cfg.model, untilCursor });
    }],
    ['triggerSync', async () => slim(await nango.triggerSync(pck, ['issues'], cid))],
    ['deleteConnection', async () => slim(await nango.deleteConnection(pck, cfg.secondConnectionId))]
];

const byName = new Map(calls);
const methods = Object.getOwnPropertyNames(Nango.prototype).filter((n) => n !== 'constructor');
const results = {};
for (const [name, fn] of calls) {
    if (!methods.includes(name)) {
        results[name] = { ok: false, gone: true };  // classified, but no longer a method of the client
        continue;
    }
    results[name] = await outcome(fn);
}
for (const name of methods) {
    if (!byName.has(name)) {
        results[name] = { ok: false, unclassified: true };
    }
}
process.stdout.write(JSON.stringify({ methods, results }));
