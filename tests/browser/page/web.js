// Web readers without an MQTT library, run inside the page by run.mjs: EventSource
// with resume, long polling with fetch(), and the iframe stream. `base` is the
// broker's HTTP listener (another origin: CORS); `/broker` on the page's own origin
// reaches the same listener through run.mjs, for the iframe stream, whose script
// calls its parent and so must share its origin.
//
// The page tells the test's MQTT client what to publish next by POST /publish on
// web/<tag>/ready; the MQTT client answers on web/<tag>/data.

const post = (base, topic, body) =>
  fetch(`${base}/publish?topic=${encodeURIComponent(topic)}&qos=1`, { method: 'POST', body })
    .then((r) => { if (!r.ok) throw new Error(`publish ${topic}: ${r.status}`); return r.json(); });

const waitFor = (check, what, ms = 10000) => new Promise((resolve, reject) => {
  const started = Date.now();
  const tick = () => {
    if (check()) return resolve();
    if (Date.now() - started > ms) return reject(new Error(`timed out waiting for ${what}`));
    setTimeout(tick, 20);
  };
  tick();
});

// EventSource: receives 1..3, closes, 4..6 are published meanwhile, a new stream with
// last_event_id gets exactly 4..6, then 7 live.
window.sseScenario = async ({ base, tag }) => {
  const data = `web/${tag}/data`;
  const url = `${base}/events?topic=${encodeURIComponent(data)}`;
  const phases = [];
  const listen = (source, into) => source.addEventListener('message', (e) => {
    into.push({ id: e.lastEventId, payload: JSON.parse(e.data).payload });
  });
  const first = new EventSource(url);
  const before = [];
  listen(first, before);
  await new Promise((resolve, reject) => {
    first.onopen = resolve;
    first.onerror = () => reject(new Error('EventSource failed to open'));
  });
  await post(base, `web/${tag}/ready`, 'sse1');
  await waitFor(() => before.length >= 3, 'messages 1..3');
  first.close();
  phases.push(before);

  await post(base, `web/${tag}/ready`, 'sse2');
  // The MQTT client says when 4..6 are out, with a retained marker.
  for (;;) {
    const retained = await fetch(`${base}/retained?topic=${encodeURIComponent(`web/${tag}/published`)}`)
      .then((r) => r.json());
    if (retained.length > 0) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const last = before[before.length - 1].id;
  const resumed = new EventSource(`${url}&last_event_id=${last}`);
  const after = [];
  listen(resumed, after);
  await waitFor(() => after.length >= 3, 'messages 4..6 replayed');
  await post(base, `web/${tag}/ready`, 'sse3');
  await waitFor(() => after.length >= 4, 'message 7 live');
  // Anything more would be a repeat.
  await new Promise((r) => setTimeout(r, 300));
  resumed.close();
  phases.push(after);
  return { phases };
};

// Long polling: fetch() in a loop, each poll from the last `next`, while 20 messages
// are published.
window.pollScenario = async ({ base, tag }) => {
  const topic = encodeURIComponent(`web/${tag}/data`);
  const head = await fetch(`${base}/poll?topic=${topic}&timeout=0`).then((r) => r.json());
  let next = head.next;
  await post(base, `web/${tag}/ready`, 'poll');
  const received = [];
  while (received.length < 20) {
    const answer = await fetch(`${base}/poll?topic=${topic}&since=${next}&timeout=5`)
      .then((r) => r.json());
    for (const m of answer.messages) received.push({ id: m.id, payload: m.payload });
    next = answer.next;
  }
  return { received };
};

// The iframe stream: a hidden iframe whose scripts call window.onFrame.
window.iframeScenario = async ({ tag }) => {
  const frames = [];
  window.onFrame = (message) => frames.push(message);
  const iframe = document.createElement('iframe');
  iframe.style.display = 'none';
  const topic = encodeURIComponent(`web/${tag}/data`);
  iframe.src = `/broker/iframe?topic=${topic}&callback=onFrame`;
  document.body.appendChild(iframe);
  await waitFor(() => frames.length >= 1, 'the retained message');
  await post('/broker', `web/${tag}/ready`, 'frame');
  await waitFor(() => frames.length >= 3, 'two live messages');
  iframe.remove();
  return { frames: frames.map((f) => ({ topic: f.topic, payload: f.payload, retain: f.retain })) };
};
