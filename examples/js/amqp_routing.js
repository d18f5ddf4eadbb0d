#!/usr/bin/env node
// RabbitMQ tutorial 4 ("Routing") with amqplib: a direct exchange `direct_logs` delivers a
// message to the queues bound with exactly its routing key, here the severity. One subscriber
// only saves errors to disk; the other prints info, warning and error.
// One command: starts both subscribers, emits one log per severity, checks who got what.
'use strict';

const amqp = require('amqplib');
const { AMQP_URL, expectMessages, run } = require('./common');

const exchange = 'direct_logs';
const logs = [
  ['info', 'Starting the report job'],
  ['warning', 'Disk 80% full'],
  ['error', 'Run. Run. Or it will explode.'],
];

async function receiveLogsDirect(name, severities) {
  const connection = await amqp.connect(AMQP_URL);
  const channel = await connection.createChannel();
  await channel.assertExchange(exchange, 'direct', { durable: false });
  const { queue } = await channel.assertQueue('', { exclusive: true });
  for (const severity of severities) await channel.bindQueue(queue, exchange, severity);
  const expected = logs.filter(([severity]) => severities.includes(severity)).length;
  const received = expectMessages(expected, `${name} (${severities.join(', ')})`);
  await channel.consume(queue, (msg) => {
    const severity = msg.fields.routingKey;
    console.log(" [%s] %s: '%s'", name, severity, msg.content.toString());
    if (!severities.includes(severity)) received.fail(`got a ${severity} message`);
    received.add(severity);
  }, { noAck: true });
  console.log(' [%s] Waiting for %s logs', name, severities.join(', '));
  return { connection, received };
}

run(async () => {
  const subscribers = [
    await receiveLogsDirect('errors to disk', ['error']),
    await receiveLogsDirect('console', ['info', 'warning', 'error']),
  ];

  const connection = await amqp.connect(AMQP_URL);
  const channel = await connection.createChannel();
  await channel.assertExchange(exchange, 'direct', { durable: false });
  for (const [severity, text] of logs) {
    channel.publish(exchange, severity, Buffer.from(text));
    console.log(" [x] Sent %s: '%s'", severity, text);
  }

  await Promise.all(subscribers.map((s) => s.received.done));
  console.log('errors to disk got error only; console got info, warning and error');
  await connection.close();
  for (const s of subscribers) await s.connection.close();
});
