#!/usr/bin/env node
// RabbitMQ tutorial 3 ("Publish/Subscribe") with amqplib: a fanout exchange `logs` copies every
// message to each bound queue. Each subscriber declares its own exclusive, server-named queue
// (amq.gen-...), which disappears when the subscriber goes away.
// One command: starts two subscribers, emits two log lines, waits until both saw both.
'use strict';

const amqp = require('amqplib');
const { AMQP_URL, expectMessages, run } = require('./common');

const exchange = 'logs';
const logs = ['info: Hello World!', 'warning: disk almost full'];

async function receiveLogs(name) {
  const connection = await amqp.connect(AMQP_URL);
  const channel = await connection.createChannel();
  await channel.assertExchange(exchange, 'fanout', { durable: false });
  // '' asks the server for a fresh name; exclusive: only this connection, deleted with it.
  const { queue } = await channel.assertQueue('', { exclusive: true });
  await channel.bindQueue(queue, exchange, ''); // fanout ignores the routing key
  const received = expectMessages(logs.length, `${name} logs`);
  await channel.consume(queue, (msg) => {
    console.log(" [%s] %s '%s'", name, queue, msg.content.toString());
    received.add(msg.content.toString());
  }, { noAck: true });
  console.log(' [%s] Waiting for logs in %s', name, queue);
  return { connection, received };
}

run(async () => {
  const subscribers = [await receiveLogs('subscriber 1'), await receiveLogs('subscriber 2')];

  const connection = await amqp.connect(AMQP_URL);
  const channel = await connection.createChannel();
  await channel.assertExchange(exchange, 'fanout', { durable: false });
  for (const log of logs) {
    channel.publish(exchange, '', Buffer.from(log));
    console.log(" [x] Sent '%s'", log);
  }

  await Promise.all(subscribers.map((s) => s.received.done));
  console.log('Each of the %d subscribers received all %d logs', subscribers.length, logs.length);
  await connection.close();
  for (const s of subscribers) await s.connection.close();
});
