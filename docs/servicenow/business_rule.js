/*
 * escalation-sync: notify the sync service that a record changed.
 *
 * Business Rule settings (System Definition > Business Rules > New):
 *   Name:      escalation-sync notify
 *   Table:     Incident [incident]   (or the table escalation-sync is configured for)
 *   Advanced:  checked
 *   When:      async        Insert: checked   Update: checked
 *   Order:     1000
 *   Script:    this file
 *
 * System properties read (see README.md in this folder):
 *   escalation_sync.webhook.url        receiver URL, e.g. https://sync.example.com/webhooks/servicenow
 *   escalation_sync.webhook.secret     shared secret, same text as servicenow.webhook_secret
 *   escalation_sync.integration_user   user name escalation-sync writes as (its changes are skipped)
 *
 * Body (every value a string, as GlideRecord returns it):
 *   {"table","sys_id","number","sys_mod_count","sys_updated_on","sys_updated_by","operation"}
 * Headers:
 *   X-Escalation-Sync-Timestamp: epoch seconds
 *   X-Escalation-Sync-Signature: base64(HMAC-SHA256(secret, timestamp + "." + body))
 *
 * The post only says "this record changed"; the service re-reads the record through the Table API,
 * so a lost post is caught by its poller and nothing sensitive travels in the body.
 */
(function executeRule(current, previous /* null in async rules */) {
    var PREFIX = 'escalation_sync.';
    var MAX_ATTEMPTS = 3;

    var url = gs.getProperty(PREFIX + 'webhook.url', '');
    var secret = gs.getProperty(PREFIX + 'webhook.secret', '');
    var integrationUser = gs.getProperty(PREFIX + 'integration_user', '');
    if (!url || !secret) {
        gs.warn('escalation-sync: webhook URL or secret property is empty; not notifying');
        return;
    }

    // Changes escalation-sync made itself must not come back to it as new work.
    var updatedBy = current.getValue('sys_updated_by') || '';
    if (integrationUser && (gs.getUserName() == integrationUser || updatedBy == integrationUser)) {
        return;
    }

    var operation = current.operation();
    if (operation != 'insert' && operation != 'update') {
        operation = current.getValue('sys_mod_count') == '0' ? 'insert' : 'update';
    }

    var body = JSON.stringify({
        table: current.getTableName(),
        sys_id: current.getUniqueValue(),
        number: current.getValue('number') || '',
        sys_mod_count: current.getValue('sys_mod_count') || '0',
        sys_updated_on: current.getValue('sys_updated_on') || '',
        sys_updated_by: updatedBy,
        operation: operation
    });

    var timestamp = String(Math.floor(new GlideDateTime().getNumericValue() / 1000));
    // generateMac takes its key base64-encoded; the receiver uses the secret's UTF-8 bytes.
    var key = GlideStringUtil.base64Encode(secret);
    var signature = new GlideCertificateEncryption().generateMac(
        key, 'HmacSHA256', timestamp + '.' + body);

    // Retries reuse the same timestamp and signature, so a post that arrived but whose answer
    // was lost is recognised by the receiver as the same delivery.
    for (var attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
        var status = 0;
        var error = '';
        try {
            var request = new sn_ws.RESTMessageV2();
            request.setEndpoint(url);
            request.setHttpMethod('post');
            request.setHttpTimeout(10000);
            request.setRequestHeader('Content-Type', 'application/json');
            request.setRequestHeader('Accept', 'application/json');
            request.setRequestHeader('X-Escalation-Sync-Timestamp', timestamp);
            request.setRequestHeader('X-Escalation-Sync-Signature', signature);
            request.setRequestBody(body);
            var response = request.execute();
            status = response.getStatusCode();
            if (response.haveError()) {
                error = response.getErrorMessage();
            }
        } catch (ex) {
            error = String(ex);
        }
        if (status >= 200 && status < 300) {
            return;
        }
        // 4xx other than 429 will not get better by repeating: a wrong secret or URL.
        var transient = status == 0 || status == 429 || status >= 500;
        if (!transient || attempt == MAX_ATTEMPTS) {
            gs.warn('escalation-sync: notify for ' + current.getValue('number') + ' failed (HTTP ' +
                status + ') ' + error + '; the poller will pick the change up');
            return;
        }
        gs.sleep(1000 * attempt);
    }
})(current, previous);
