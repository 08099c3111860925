// One MQTT.js session against Herald, run inside the page by run.mjs.
//
// A TCP client has left a retained message on browser/<tag>/retained. The page
// subscribes to browser/<tag>/#, expects that retained message, publishes at QoS 0, 1
// and 2 and a binary payload (all 256 byte values, invalid UTF-8 included), then
// "ready"; the TCP client answers "ready" with browser/<tag>/from-tcp. Everything the
// page received is returned for the Rust test to check.

/* global mqtt */

window.binaryPayload = () => {
  const bytes = new Uint8Array(1027);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7 + 3) % 256;
  return bytes;
};

window.runScenario = ({ url, protocolVersion, tag }) =>
  new Promise((resolve, reject) => {
    const base = `browser/${tag}`;
    const wanted = ['retained', 'q0', 'q1', 'q2', 'binary', 'ready', 'from-tcp'];
    const received = [];
    const client = mqtt.connect(url, {
      protocolVersion,
      clientId: `browser-${tag}`,
      clean: true,
      reconnectPeriod: 0,
      connectTimeout: 10000,
    });
    const fail = (error) => {
      client.end(true);
      reject(new Error(`${tag}: ${error && error.message ? error.message : error}`));
    };
    client.on('error', fail);
    client.on('close', () => {
      if (received.length < wanted.length) fail('connection closed early');
    });
    client.on('message', (topic, payload, packet) => {
      const properties = packet.properties || {};
      received.push({
        topic,
        qos: packet.qos,
        retain: packet.retain,
        payload: Array.from(payload),
        content_type: properties.contentType || null,
        user_properties: properties.userProperties || null,
      });
      const seen = new Set(received.map((m) => m.topic.slice(base.length + 1)));
      if (wanted.every((name) => seen.has(name))) {
        client.end(false, {}, () => resolve({ received }));
      }
    });
    client.on('connect', async () => {
      try {
        await client.subscribeAsync(`${base}/#`, { qos: 2 });
        await client.publishAsync(`${base}/q0`, 'at most once', { qos: 0 });
        await client.publishAsync(`${base}/q1`, 'at least once', { qos: 1 });
        await client.publishAsync(`${base}/q2`, 'exactly once', { qos: 2 });
        const binary = { qos: 1 };
        if (protocolVersion === 5) {
          binary.properties = {
            contentType: 'application/octet-stream',
            userProperties: { origin: 'chromium' },
          };
        }
        await client.publishAsync(`${base}/binary`, window.binaryPayload(), binary);
        await client.publishAsync(`${base}/ready`, 'ready', { qos: 1 });
      } catch (error) {
        fail(error);
      }
    });
  });
