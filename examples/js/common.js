// What every example shares: where the brokers are, a deadline, and a clear exit status.
'use strict';

const AMQP_URL = process.env.AMQP_URL || 'amqp://guest:guest@localhost:5672/';
const MQTT_URL = process.env.MQTT_URL || 'mqtt://localhost:1883';
const TIMEOUT_MS = 10000;

// Resolves `promise`, or rejects naming `what` (a string or a function giving one) after `ms`.
function within(promise, what, ms = TIMEOUT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => {
      const text = typeof what === 'function' ? what() : what;
      reject(new Error(`timed out after ${ms / 1000} s waiting for ${text}`));
    }, ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// Collects what a consumer receives: `done` resolves with the items once `count` arrived,
// and rejects on fail() (e.g. a message that should not have been routed here).
function expectMessages(count, what) {
  const items = [];
  let resolve;
  let reject;
  const arrived = new Promise((res, rej) => { resolve = res; reject = rej; });
  return {
    items,
    add(item) {
      items.push(item);
      if (items.length === count) resolve(items);
    },
    fail(reason) { reject(new Error(`${what}: ${reason}`)); },
    done: within(arrived, () => `${what} (${count} expected, got ${items.length}: ${JSON.stringify(items)})`),
  };
}

// Runs the example: exit 0 when `main` resolves, 1 with the reason when it fails or hangs.
function run(main) {
  const watchdog = setTimeout(() => {
    console.error(`FAILED: no result after ${(3 * TIMEOUT_MS) / 1000} s`);
    process.exit(1);
  }, 3 * TIMEOUT_MS);
  main().then(
    () => { clearTimeout(watchdog); process.exit(0); },
    (err) => {
      console.error(`FAILED: ${err && err.message ? err.message : err}`);
      process.exit(1);
    },
  );
}

module.exports = { AMQP_URL, MQTT_URL, TIMEOUT_MS, within, expectMessages, run };
