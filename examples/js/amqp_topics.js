#!/usr/bin/env node
// RabbitMQ tutorial 5 ("Topics") with amqplib: a topic exchange `topic_logs` matches routing
// keys word by word; `*` stands for exactly one word, `#` for zero or more.
// One command: binds `user.*` and `*.error`, emits user.created, billing.error and user.error,
// checks that user.error reached both and the others exactly one.
'use strict';

const amqp = require('amqplib');
const { AMQP_URL, expectMessages, run } = require('./common');

const exchange = 'topic_logs';
const logs = [
  ['user.created', 'user 42 signed up'],
  ['billing.error', 'card declined for invoice 7'],
  ['user.error', 'user 42 could not verify their email'],
];
const subscriptions = {
  'user.*': ['user.created', 'user.error'],
  '*.error': ['billing.error', 'user.error'],
};

async function receiveLogsTopic(bindingKey) {
  const connection = await amqp.connect(AMQP_URL);
  const channel = await connection.createChannel();
  await channel.assertExchange(exchange, 'topic', { durable: false });
  const { queue } = await channel.assertQueue('', { exclusive: true });
  await channel.bindQueue(queue, exchange, bindingKey);
  const wanted = subscriptions[bindingKey];
  const received = expectMessages(wanted.length, `binding ${bindingKey}`);
  await channel.consume(queue, (msg) => {
    const key = msg.fields.routingKey;
    console.log(" [%s] %s: '%s'", bindingKey, key, msg.content.toString());
    if (!wanted.includes(key)) received.fail(`got ${key}`);
    received.add(key);
  }, { noAck: true });
  console.log(' [%s] Waiting for logs', bindingKey);
  return { connection, received };
}

run(async () => {
  const subscribers = [];
  for (const bindingKey of Object.keys(subscriptions)) {
    subscribers.push(await receiveLogsTopic(bindingKey));
  }

  const connection = await amqp.connect(AMQP_URL);
  const channel = await connection.createChannel();
  await channel.assertExchange(exchange, 'topic', { durable: false });
  for (const [key, text] of logs) {
    channel.publish(exchange, key, Buffer.from(text));
    console.log(" [x] Sent %s: '%s'", key, text);
  }

  await Promise.all(subscribers.map((s) => s.received.done));
  console.log('user.* got user.created and user.error; *.error got billing.error and user.error');
  await connection.close();
  for (const s of subscribers) await s.connection.close();
});
