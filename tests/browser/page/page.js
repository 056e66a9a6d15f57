// The browser side of tests/browser.rs: loaded by headless Chromium from
// midge's own http_dir, it talks MQTT over the same listener (ws:// for an
// http:// page, wss:// for an https:// one) with the browser build of mqtt.js.
//
// Query string: url (the MQTT WebSocket URL), v (MQTT protocol version, 4 or
// 5), tag (topic prefix), big (payload size in bytes).
// Before the page loads, the test publishes two retained messages from TCP:
// <tag>/retained ("kept for the browser") and <tag>/retained-big (big bytes,
// pattern seed 7). The page then publishes <tag>/from-browser (big bytes,
// seed 13), which the test checks on its TCP subscriber.
//
// Result: document.body.dataset.result = JSON {ok, steps, error}; the test
// polls it over the DevTools protocol. Steps are also listed on the page for
// the screenshot taken when it fails.
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
    document.body.dataset.result = JSON.stringify({ ok: ok, steps: steps, error: error || null });
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

  // What the browser's own WebSocket negotiated: it offers permessage-deflate
  // and midge must not accept it (midge frames are never compressed), and it
  // must agree on the "mqtt" subprotocol.
  function probe() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, ['mqtt']);
      ws.onopen = () => {
        const got = { protocol: ws.protocol, extensions: ws.extensions };
        ws.close(1000);
        resolve(got);
      };
      ws.onerror = () => reject(new Error('plain WebSocket to ' + url + ' failed to open'));
    });
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
        clientId: 'browser-' + tag.replace(/\W/g, '-'),
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

  step('page loaded from ' + location.origin + ' (' + navigator.userAgent + ')');
  probe()
    .then((got) => {
      step('WebSocket open: protocol=' + JSON.stringify(got.protocol) + ' extensions=' + JSON.stringify(got.extensions));
      if (got.protocol !== 'mqtt') throw new Error('subprotocol ' + JSON.stringify(got.protocol) + ', wanted "mqtt"');
      if (got.extensions !== '') throw new Error('extensions ' + JSON.stringify(got.extensions) + ' were agreed, wanted none');
      return mqttSession();
    })
    .then(() => finish(true), (e) => finish(false, e.message));
})();
