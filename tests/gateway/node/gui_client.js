// What the eVOLVER GUI (Electron, socket.io-client 2.x) does on /dpu-evolver, driven by a plan:
//   node gui_client.js <url> '<plan JSON>'
// plan: {"emit": [[event, payload], ...], "wait_for": {event: count}, "timeout_ms": N}
// Every received event is printed as one JSON line; the last line is {"done": true, "transport": ...}.
const io = require('socket.io-client');

const [url, planText] = process.argv.slice(2);
const plan = JSON.parse(planText);
const seen = {};
const socket = io(url, { reconnect: true });  // the GUI's options

function report(event, data) {
  seen[event] = (seen[event] || 0) + 1;
  process.stdout.write(JSON.stringify({ event, data }) + '\n');
  const waiting = Object.entries(plan.wait_for).filter(([name, count]) => (seen[name] || 0) < count);
  if (waiting.length === 0) {
    process.stdout.write(JSON.stringify({ done: true, transport: socket.io.engine.transport.name }) + '\n');
    socket.close();
    process.exit(0);
  }
}

const listened = ['broadcast', 'commandbroadcast', 'fitnames', 'activecalibrations', 'calibration',
  'calibrationrawcallback', 'broadcastname', 'calibrationnames', 'config', 'benchbus_error'];
for (const name of listened) socket.on(name, (data) => report(name, data));
socket.on('connect', () => {
  report('connect', null);
  for (const [event, payload] of plan.emit) socket.emit(event, payload);
});
socket.on('error', (error) => process.stdout.write(JSON.stringify({ event: 'error', data: String(error) }) + '\n'));
setTimeout(() => {
  process.stdout.write(JSON.stringify({ done: false, seen }) + '\n');
  process.exit(1);
}, plan.timeout_ms || 20000);
