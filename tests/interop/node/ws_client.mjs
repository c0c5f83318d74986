// An @xmpp/client session over WebSocket, for tests/interop/test_node_clients.py.
// Env: SERVICE (ws://…/xmpp-websocket), DOMAIN, USERNAME, PASSWORD, PEER (a full JID).
// Writes one JSON line per event: online, message (each chat message received), error.
// Sends PEER one message once online, and stops after the first message PEER sends back.
import { WebSocket } from "ws";
import { client, xml } from "@xmpp/client";

// Node 20 has no WebSocket of its own; @xmpp/websocket uses the global one.
globalThis.WebSocket = WebSocket;

const say = (event) => process.stdout.write(JSON.stringify(event) + "\n");
const { SERVICE, DOMAIN, USERNAME, PASSWORD, PEER } = process.env;

const xmpp = client({
  service: SERVICE,
  domain: DOMAIN,
  resource: "node",
  username: USERNAME,
  password: PASSWORD,
});

xmpp.on("error", (err) => {
  say({ event: "error", message: String(err) });
  process.exitCode = 1;
});

xmpp.on("stanza", async (stanza) => {
  if (!stanza.is("message") || !stanza.getChildText("body")) return;
  const from = stanza.attrs.from;
  say({ event: "message", from, body: stanza.getChildText("body") });
  if (from === PEER) {
    await xmpp.stop();
  }
});

xmpp.on("online", async (address) => {
  say({ event: "online", jid: address.toString(), mechanism: xmpp.mechanism ?? null });
  await xmpp.send(xml("presence"));
  await xmpp.send(
    xml("message", { type: "chat", to: PEER }, xml("body", {}, "hello from node over websocket")),
  );
});

const deadline = setTimeout(() => {
  say({ event: "error", message: "timed out" });
  process.exit(2);
}, 20000);
deadline.unref();

await xmpp.start();
