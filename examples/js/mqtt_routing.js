#!/usr/bin/env node
// Routing by severity (tutorial 4) from the MQTT side: MQTT has no direct exchange; a topic
// filter without wildcards is the direct binding. A device publishes to `logs/<severity>`; an
// MQTT subscriber that only saves errors subscribes to exactly `logs/error`, and an AMQP console
// subscriber binds its exclusive queue to `amq.topic` with `logs.info`, `logs.warning` and
// `logs.error` (the same topics in AMQP form: `/` becomes `.`).
// One command: both subscribers, one MQTT publisher, one log per severity.
'use strict';

const amqp = require('amqplib');
const mqtt = require('mqtt');
const { AMQP_URL, MQTT_URL, TIMEOUT_MS, expectMessages, run } = require('./common');

const logs = [
  ['info', 'Starting the report job'],
  ['warning', 'Disk 80% full'],
  ['error', 'Run. Run. Or it will explode.'],
];

function connectMqtt(clientId) {
  return mqtt.connectAsync(MQTT_URL, { clientId, reconnectPeriod: 0, connectTimeout: TIMEOUT_MS });
}

async function errorsToDisk() {
  const client = await connectMqtt('errors-to-disk');
  const received = expectMessages(1, 'errors-to-disk (logs/error)');
  client.on('message', (topic, payload) => {
    console.log(" [errors-to-disk] %s: '%s'", topic, payload);
    if (topic !== 'logs/error') received.fail(`got ${topic}`);
    received.add(topic);
  });
  await client.subscribeAsync('logs/error', { qos: 1 });
  console.log(' [errors-to-disk] Subscribed to logs/error');
  return { close: () => client.endAsync(), received };
}

async function amqpConsole() {
  const connection = await amqp.connect(AMQP_URL);
  const channel = await connection.createChannel();
  const { queue } = await channel.assertQueue('', { exclusive: true });
  for (const [severity] of logs) await channel.bindQueue(queue, 'amq.topic', `logs.${severity}`);
  const received = expectMessages(logs.length, 'amqp console (logs.info, logs.warning, logs.error)');
  await channel.consume(queue, (msg) => {
    console.log(" [amqp console] %s: '%s'", msg.fields.routingKey, msg.content);
    received.add(msg.fields.routingKey);
  }, { noAck: true });
  console.log(' [amqp console] Waiting for logs.info, logs.warning, logs.error in %s', queue);
  return { close: () => connection.close(), received };
}

run(async () => {
  const subscribers = [await errorsToDisk(), await amqpConsole()];

  const publisher = await connectMqtt('emit-log-direct');
  for (const [severity, text] of logs) {
    await publisher.publishAsync(`logs/${severity}`, text, { qos: 1 });
    console.log(" [x] Sent logs/%s: '%s'", severity, text);
  }

  await Promise.all(subscribers.map((s) => s.received.done));
  console.log('errors-to-disk got logs/error only; the AMQP console got all three severities');
  await publisher.endAsync();
  for (const s of subscribers) await s.close();
});
