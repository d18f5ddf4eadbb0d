#!/usr/bin/env node
// Publish/subscribe (tutorial 3) from the MQTT side: every MQTT subscription is its own
// queue inside the gateway, so fanout is what MQTT always does: each subscriber to `logs` gets
// a copy. An AMQP subscriber joins in the tutorial's way: an exclusive server-named queue,
// bound to `amq.topic` (where MQTT topics live) with routing key `logs`.
// One command: two MQTT subscribers and one AMQP subscriber, an MQTT publisher, two log lines.
'use strict';

const amqp = require('amqplib');
const mqtt = require('mqtt');
const { AMQP_URL, MQTT_URL, TIMEOUT_MS, expectMessages, run } = require('./common');

const topic = 'logs';
const logs = ['info: Hello World!', 'warning: disk almost full'];

function connectMqtt(clientId) {
  return mqtt.connectAsync(MQTT_URL, { clientId, reconnectPeriod: 0, connectTimeout: TIMEOUT_MS });
}

async function mqttSubscriber(name) {
  const client = await connectMqtt(name);
  const received = expectMessages(logs.length, `${name} logs`);
  client.on('message', (t, payload) => {
    console.log(" [%s] %s '%s'", name, t, payload);
    received.add(payload.toString());
  });
  await client.subscribeAsync(topic, { qos: 0 }); // resolves on SUBACK
  console.log(' [%s] Subscribed to %s', name, topic);
  return { close: () => client.endAsync(), received };
}

async function amqpSubscriber(name) {
  const connection = await amqp.connect(AMQP_URL);
  const channel = await connection.createChannel();
  const { queue } = await channel.assertQueue('', { exclusive: true });
  await channel.bindQueue(queue, 'amq.topic', topic);
  const received = expectMessages(logs.length, `${name} logs`);
  await channel.consume(queue, (msg) => {
    console.log(" [%s] %s '%s'", name, queue, msg.content);
    received.add(msg.content.toString());
  }, { noAck: true });
  console.log(' [%s] Waiting for logs in %s', name, queue);
  return { close: () => connection.close(), received };
}

run(async () => {
  const subscribers = [
    await mqttSubscriber('receive-logs-1'),
    await mqttSubscriber('receive-logs-2'),
    await amqpSubscriber('amqp subscriber'),
  ];

  const publisher = await connectMqtt('emit-log');
  for (const log of logs) {
    await publisher.publishAsync(topic, log, { qos: 0 });
    console.log(" [x] Sent '%s'", log);
  }

  await Promise.all(subscribers.map((s) => s.received.done));
  console.log('Each of the %d subscribers (2 MQTT, 1 AMQP) received all %d logs',
    subscribers.length, logs.length);
  await publisher.endAsync();
  for (const s of subscribers) await s.close();
});
