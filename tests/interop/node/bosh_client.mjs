// A real BOSH client (Strophe.js, the library Converse.js is built on) against Corvid's
// /http-bind, run by test_bosh.py: it logs in, sends initial presence, sends a message to
// PEER and waits for PEER's answer, then disconnects. Everything it observes is printed
// as one JSON line per event; the exit status says whether it got the answer in time.
//
// Environment: BOSH_URL, JID, PASSWORD, PEER, TIMEOUT_MS.

import XMLHttpRequest from 'xhr2';
const { Strophe, $msg, $pres } = await import('strophe.js');

// Browsers parse XML answers into responseXML, which Strophe's BOSH reads; xhr2 gives only
// responseText, so parse it the browser's way (DOMParser is @xmldom's, installed by
// Strophe's Node build).
class BrowserLikeXHR extends XMLHttpRequest {
  get responseXML() {
    if (this.readyState !== 4 || !this.responseText) return null;
    return new DOMParser().parseFromString(this.responseText, 'text/xml');
  }
}
globalThis.XMLHttpRequest = BrowserLikeXHR;

const { BOSH_URL, JID, PASSWORD, PEER } = process.env;
const timeoutMs = Number(process.env.TIMEOUT_MS ?? 20000);
const report = (event, data = {}) => console.log(JSON.stringify({ event, ...data }));
const names = Object.fromEntries(Object.entries(Strophe.Status).map(([k, v]) => [v, k]));

const timer = setTimeout(() => {
  report('timeout');
  process.exit(2);
}, timeoutMs);

Strophe.setLogLevel(Strophe.LogLevel.WARN);

// An http(s) URL: Strophe speaks BOSH.
const connection = new Strophe.Connection(BOSH_URL);
connection.addHandler(
  (message) => {
    const body = message.getElementsByTagName('body')[0];
    if (!body) return true;
    report('message', { from: message.getAttribute('from'), body: body.textContent });
    connection.disconnect('done');
    return false;
  },
  null,
  'message',
);
connection.connect(JID, PASSWORD, (status, condition) => {
  report('status', { status: names[status] ?? status, condition: condition ?? null });
  if (status === Strophe.Status.CONNECTED) {
    report('bound', { jid: connection.jid, mechanism: connection._sasl_mechanism?.mechname ?? null });
    connection.send($pres());
    connection.send($msg({ to: PEER, type: 'chat' }).c('body').t('hello over BOSH'));
  } else if (status === Strophe.Status.DISCONNECTED) {
    clearTimeout(timer);
    process.exit(0);
  } else if ([Strophe.Status.AUTHFAIL, Strophe.Status.CONNFAIL, Strophe.Status.ERROR].includes(status)) {
    clearTimeout(timer);
    process.exit(1);
  }
});
