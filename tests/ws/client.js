// A real MQTT-over-WebSocket client for tests/websockets.rs (mqtt.js).
// usage: node client.js <url> pub <topic> <message> [qos]
//        node client.js <url> sub <topic> <count>     (prints "topic payload" lines)
// Options by environment: MQTT_VERSION (3, 4 or 5), INSECURE=1 for wss with
// a self-signed certificate. Exits 0 on success, 1 on error, 2 on timeout.
const mqtt = require('mqtt');
const [url, mode, topic, arg, qosArg] = process.argv.slice(2);
const opts = {
  protocolVersion: Number(process.env.MQTT_VERSION || 4),
  reconnectPeriod: 0,
  connectTimeout: 5000,
  rejectUnauthorized: process.env.INSECURE !== '1',
};
const c = mqtt.connect(url, opts);
const timer = setTimeout(() => { console.error('timeout'); process.exit(2); }, 8000);
c.on('error', (e) => { console.error('error: ' + e.message); process.exit(1); });
c.on('connect', () => {
  if (mode === 'pub') {
    c.publish(topic, arg, { qos: Number(qosArg || 1) }, (err) => {
      if (err) { console.error('error: ' + err.message); process.exit(1); }
      c.end(false, () => { clearTimeout(timer); process.exit(0); });
    });
  } else {
    let left = Number(arg || 1);
    c.on('message', (t, m) => {
      console.log(t + ' ' + m.toString());
      if (--left === 0) { c.end(false, () => { clearTimeout(timer); process.exit(0); }); }
    });
    c.subscribe(topic, { qos: 1 }, (err) => {
      if (err) { console.error('error: ' + err.message); process.exit(1); }
      console.log('subscribed');
    });
  }
});
