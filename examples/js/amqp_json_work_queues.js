#!/usr/bin/env node
// Work queues for a shop backend with amqplib: JSON jobs on two durable queues, `payment` and
// `email`, one worker per queue that acks after processing. The producer uses publisher
// confirms: waitForConfirms() resolves once the broker has taken every job (for persistent
// messages on a durable queue, once they are on disk).
// One command: starts both workers, publishes two jobs per queue, waits until all are acked.
'use strict';

const amqp = require('amqplib');
const { AMQP_URL, expectMessages, run } = require('./common');

const jobs = {
  payment: [
    { orderId: 1001, amount: 42.5, currency: 'EUR' },
    { orderId: 1002, amount: 9.99, currency: 'EUR' },
  ],
  email: [
    { to: 'ada@example.com', template: 'order-confirmed', orderId: 1001 },
    { to: 'alan@example.com', template: 'order-confirmed', orderId: 1002 },
  ],
};

const handlers = {
  payment: (job) => `charged ${job.amount.toFixed(2)} ${job.currency} for order ${job.orderId}`,
  email: (job) => `sent '${job.template}' to ${job.to}`,
};

async function startWorker(queue) {
  const connection = await amqp.connect(AMQP_URL);
  const channel = await connection.createChannel();
  await channel.assertQueue(queue, { durable: true });
  channel.prefetch(1);
  const done = expectMessages(jobs[queue].length, `${queue} jobs`);
  await channel.consume(queue, (msg) => {
    if (msg.properties.contentType !== 'application/json') {
      channel.nack(msg, false, false); // not ours to parse: drop it (or dead-letter it)
      done.fail(`content type ${msg.properties.contentType}`);
      return;
    }
    const job = JSON.parse(msg.content.toString());
    console.log(' [%s worker] %s', queue, handlers[queue](job));
    channel.ack(msg); // processed: now the queue may forget it
    done.add(job);
  }, { noAck: false });
  console.log(' [%s worker] Waiting for jobs', queue);
  return { connection, channel, done };
}

run(async () => {
  const producer = await amqp.connect(AMQP_URL);
  const channel = await producer.createConfirmChannel();
  for (const queue of Object.keys(jobs)) {
    await channel.assertQueue(queue, { durable: true });
    await channel.purgeQueue(queue); // durable queues keep jobs from earlier runs
  }
  const workers = [await startWorker('payment'), await startWorker('email')];

  for (const [queue, list] of Object.entries(jobs)) {
    for (const job of list) {
      channel.sendToQueue(queue, Buffer.from(JSON.stringify(job)), {
        contentType: 'application/json',
        persistent: true,
      });
      console.log(' [x] Queued %s %s', queue, JSON.stringify(job));
    }
  }
  await channel.waitForConfirms(); // rejects if the broker nacked any of them
  console.log(' [x] Broker confirmed all 4 jobs');

  await Promise.all(workers.map((w) => w.done.done));
  for (const w of workers) {
    await w.channel.close(); // after their acks, so nothing is requeued
    await w.connection.close();
  }
  for (const queue of Object.keys(jobs)) {
    const { messageCount } = await channel.checkQueue(queue);
    if (messageCount !== 0) throw new Error(`${messageCount} job(s) left in ${queue}`);
  }
  console.log('All jobs processed and acked; payment and email are empty');
  await producer.close();
});
