#!/usr/bin/env node
// Topics (tutorial 5) from the MQTT side: an AMQP publisher sends to `amq.topic` with routing
// keys user.created, billing.error and user.error; MQTT subscribers see them as topics
// user/created, billing/error and user/error. MQTT's `+` is AMQP's `*` (one level), MQTT's `#`
// is AMQP's `#`: subscribing to `user/+` is binding with `user.*`, `+/error` is `*.error`.
// One command: two MQTT subscribers, one AMQP publisher, three messages.
'use strict';

const amqp = require('amqplib');
const mqtt = require('mqtt');
const { AMQP_URL, MQTT_URL, TIMEOUT_MS, expectMessages, run } = require('./common');

const logs = [
  ['user.created', 'user 42 signed up'],
  ['billing.error', 'card declined for invoice 7'],
  ['user.error', 'user 42 could not verify their email'],
];
const subscriptions = {
  'user/+': ['user/created', 'user/error'],
  '+/error': ['billing/error', 'user/error'],
};

async function receiveLogsTopic(filter, index) {
  const client = await mqtt.connectAsync(MQTT_URL, {
    clientId: `receive-logs-topic-${index}`, reconnectPeriod: 0, connectTimeout: TIMEOUT_MS,
  });
  const wanted = subscriptions[filter];
  const received = expectMessages(wanted.length, `subscriber ${filter}`);
  client.on('message', (topic, payload) => {
    console.log(" [%s] %s: '%s'", filter, topic, payload);
    if (!wanted.includes(topic)) received.fail(`got ${topic}`);
    received.add(topic);
  });
  await client.subscribeAsync(filter, { qos: 1 });
  console.log(' [%s] Subscribed', filter);
  return { close: () => client.endAsync(), received };
}

run(async () => {
  const subscribers = [];
  for (const [index, filter] of Object.keys(subscriptions).entries()) {
    subscribers.push(await receiveLogsTopic(filter, index + 1));
  }

  const connection = await amqp.connect(AMQP_URL);
  const channel = await connection.createChannel();
  for (const [key, text] of logs) {
    channel.publish('amq.topic', key, Buffer.from(text)); // amq.topic always exists
    console.log(" [x] Sent %s: '%s'", key, text);
  }

  await Promise.all(subscribers.map((s) => s.received.done));
  console.log('user/+ got user/created and user/error; +/error got billing/error and user/error');
  await connection.close();
  for (const s of subscribers) await s.close();
});
