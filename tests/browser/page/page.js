// The browser side of tests/browser.rs: loaded by headless Chromium from
// midge's own http_dir, it talks MQTT over the same listener (ws:// for an
// http:// page, wss:// for an https:// one) with the browser build of mqtt.js.
//
// Query string: url (the MQTT WebSocket URL), v (MQTT protocol version: 3
// for 3.1, 4 for 3.1.1, 5), tag (topic prefix and client id), big (payload
// size in bytes).
//
// 1. The browser's own WebSocket: each subprotocol offer, the close
//    handshake, a refused offer, a text frame.
// 2. mqtt.js: connect, subscribe to <tag>/#, receive the two retained
//    messages the test published from TCP before the page loaded
//    (<tag>/retained: "kept for the browser"; <tag>/retained-big: big bytes,
//    pattern seed 7), then publish <tag>/from-browser (big bytes, seed 13)
//    with QoS 1 and receive it back; the test checks it on a TCP subscriber.
// 3. A second mqtt.js client connects with a will on <tag>/gone and stays
//    connected; the test closes the tab and expects the will.
//
// Result: document.body.dataset.result = JSON {ok, tag, steps, error}; the
// test polls it over the DevTools protocol. Steps are also listed on the
// page for the screenshot taken when it fails.
(function () {
  'use strict';
  const q = new URLSearchParams(location.search);
  const url = q.get('url');
  const version = Number(q.get('v') || 4);
  const tag = q.get('tag');
  const bigLen = Number(q.get('big') || 102400);
  const steps = [];
  let done = false;

  function step(text) {
    steps.push(text);
    const li = document.createElement('li');
    li.textContent = text;
    document.getElementById('steps').appendChild(li);
  }

  function finish(ok, error) {
    if (done) return;
    done = true;
    clearTimeout(timer);
    const status = document.getElementById('status');
    status.textContent = ok ? 'PASS' : 'FAIL: ' + error;
    status.className = ok ? 'pass' : 'fail';
    document.body.dataset.result = JSON.stringify({ ok: ok, tag: tag, steps: steps, error: error || null });
  }

  const timer = setTimeout(() => finish(false, 'timed out in the page'), 12000);
  window.addEventListener('error', (e) => finish(false, 'uncaught: ' + e.message));

  function pattern(n, seed) {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
    return b;
  }

  function same(a, b) {
    if (a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }

  // The browser's own WebSocket, before mqtt.js: one connection per
  // subprotocol offer, then the close handshake. The browser always offers
  // permessage-deflate; midge must decline it (its frames are never
  // compressed) and pick the first offered subprotocol it speaks.
  function socket(offer, onOpen) {
    return new Promise((resolve) => {
      const ws = new WebSocket(url, offer);
      const got = { opened: false };
      const t = setTimeout(() => { got.hung = true; ws.close(); resolve(got); }, 5000);
      ws.onopen = () => {
        got.opened = true;
        got.protocol = ws.protocol;
        got.extensions = ws.extensions;
        onOpen(ws);
      };
      ws.onclose = (e) => {
        clearTimeout(t);
        got.code = e.code;
        got.reason = e.reason;
        got.clean = e.wasClean;
        resolve(got);
      };
    });
  }

  async function probes() {
    const offers = [
      [['mqtt'], 'mqtt'],
      [['mqttv3.1'], 'mqttv3.1'],
      [['mqttv3.1', 'mqtt'], 'mqttv3.1'],
      [[], ''],
    ];
    for (const [offer, want] of offers) {
      const got = await socket(offer, (ws) => ws.close(1000, 'probe done'));
      const what = 'offer ' + JSON.stringify(offer);
      if (!got.opened) throw new Error(what + ': did not open (close code ' + got.code + ')');
      if (got.protocol !== want) throw new Error(what + ': subprotocol ' + JSON.stringify(got.protocol) + ', wanted ' + JSON.stringify(want));
      if (got.extensions !== '') throw new Error(what + ': extensions ' + JSON.stringify(got.extensions) + ' agreed, wanted none');
      if (got.code !== 1000 || !got.clean) throw new Error(what + ': close was ' + got.code + (got.clean ? ' clean' : ' not clean') + ', wanted a clean 1000');
      step(what + ': open with protocol=' + JSON.stringify(got.protocol) + ' extensions="" then a clean close');
    }
    const refused = await socket(['foo'], (ws) => ws.close());
    if (refused.opened || refused.hung) throw new Error('offer ["foo"]: ' + (refused.opened ? 'opened' : 'hung') + ', wanted the handshake refused');
    step('offer ["foo"]: refused (close code ' + refused.code + ')');
    const text = await socket(['mqtt'], (ws) => ws.send('not MQTT'));
    if (text.code !== 1003 || !text.clean) throw new Error('text frame: close was ' + text.code + (text.clean ? ' clean' : ' not clean') + ' ' + JSON.stringify(text.reason) + ', wanted a clean 1003');
    step('text frame: clean close 1003 ' + JSON.stringify(text.reason));
  }

  function mqttSession() {
    return new Promise((resolve, reject) => {
      const bigOut = pattern(bigLen, 13);
      const bigRetained = pattern(bigLen, 7);
      const want = { retained: false, retainedBig: false };
      let published = false;
      let ending = false;
      let acked = false;
      let echoed = false;
      // Done once the PUBACK and the echo of the big publish are both in.
      function endWhenBoth() {
        if (!acked || !echoed || ending) return;
        ending = true;
        client.end(false, () => resolve());
      }
      const client = mqtt.connect(url, {
        protocolVersion: version,
        // MQTT 3.1 also makes mqtt.js ask for the "mqttv3.1" subprotocol.
        protocolId: version === 3 ? 'MQIsdp' : 'MQTT',
        clientId: tag.replace(/\W/g, '-'),
        reconnectPeriod: 0,
        connectTimeout: 5000,
      });
      client.on('error', (e) => reject(new Error('mqtt.js: ' + e.message)));
      client.on('close', () => { if (!ending) reject(new Error('mqtt.js: connection closed')); });
      client.on('connect', () => {
        step('connected with MQTT v' + version);
        client.subscribe(tag + '/#', { qos: 1 }, (err, granted) => {
          if (err) return reject(new Error('subscribe: ' + err.message));
          step('subscribed to ' + tag + '/# with QoS ' + granted.map((g) => g.qos).join(','));
        });
      });
      client.on('message', (topic, payload, packet) => {
        if (topic === tag + '/retained') {
          if (!packet.retain) return reject(new Error('retained message arrived without the retain flag'));
          const text = new TextDecoder().decode(payload);
          if (text !== 'kept for the browser') return reject(new Error('retained payload was ' + JSON.stringify(text)));
          want.retained = true;
          step('received the retained message');
        } else if (topic === tag + '/retained-big') {
          if (!packet.retain) return reject(new Error('big retained message arrived without the retain flag'));
          if (!same(payload, bigRetained)) return reject(new Error('big retained payload differs (' + payload.length + ' bytes)'));
          want.retainedBig = true;
          step('received the retained ' + payload.length + '-byte payload intact');
        } else if (topic === tag + '/from-browser') {
          if (!published) return reject(new Error('own message arrived before it was sent'));
          if (!same(payload, bigOut)) return reject(new Error('echo of own payload differs (' + payload.length + ' bytes)'));
          step('received its own ' + payload.length + '-byte payload back');
          echoed = true;
          return endWhenBoth();
        } else {
          return reject(new Error('unexpected message on ' + topic));
        }
        if (want.retained && want.retainedBig && !published) {
          published = true;
          client.publish(tag + '/from-browser', bigOut, { qos: 1 }, (err) => {
            if (err) return reject(new Error('publish: ' + err.message));
            step('published ' + bigLen + ' bytes with QoS 1 (PUBACK received)');
            acked = true;
            endWhenBoth();
          });
        }
      });
    });
  }

  // A client left connected with a will: the test then closes the tab and
  // expects the will on <tag>/gone.
  function willSession() {
    return new Promise((resolve, reject) => {
      const client = mqtt.connect(url, {
        protocolVersion: version,
        protocolId: version === 3 ? 'MQIsdp' : 'MQTT',
        clientId: tag.replace(/\W/g, '-') + '-will',
        reconnectPeriod: 0,
        connectTimeout: 5000,
        will: { topic: tag + '/gone', payload: 'tab closed', qos: 1, retain: false },
      });
      client.on('error', (e) => reject(new Error('mqtt.js (will client): ' + e.message)));
      client.on('connect', () => {
        step('second client connected with a will on ' + tag + '/gone');
        resolve();
      });
    });
  }

  step('page loaded from ' + location.origin + ' (' + navigator.userAgent + ')');
  probes()
    .then(mqttSession)
    .then(willSession)
    .then(() => finish(true), (e) => finish(false, e.message));
})();
