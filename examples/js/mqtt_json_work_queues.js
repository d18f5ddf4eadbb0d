#!/usr/bin/env node
// JSON work queues from the MQTT side: an MQTT 5 client (the shop front end) publishes JSON jobs
// at QoS 1 with Content Type application/json to the topics `payment` and `email`. The gateway
// routes them on `amq.topic` into the durable queues `payment` and `email`, where AMQP workers
// (amqplib) see contentType 'application/json' and deliveryMode 2, and ack after processing.
// PUBACK is the MQTT side's publisher confirm: for a durable queue it comes after the store
// committed the job.
// One command: both workers, one MQTT publisher, two jobs per queue.
'use strict';

const amqp = require('amqplib');
const mqtt = require('mqtt');
const { AMQP_URL, MQTT_URL, TIMEOUT_MS, expectMessages, run } = require('./common');

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
  await channel.bindQueue(queue, 'amq.topic', queue); // MQTT topic `payment` = key `payment`
  await channel.purgeQueue(queue); // durable queues keep jobs from earlier runs
  channel.prefetch(1);
  const done = expectMessages(jobs[queue].length, `${queue} jobs`);
  await channel.consume(queue, (msg) => {
    const { contentType, deliveryMode } = msg.properties;
    if (contentType !== 'application/json') {
      channel.nack(msg, false, false);
      done.fail(`content type ${contentType}`);
      return;
    }
    const job = JSON.parse(msg.content.toString());
    console.log(' [%s worker] %s (%s, deliveryMode %d)', queue, handlers[queue](job), contentType,
      deliveryMode);
    channel.ack(msg);
    done.add(job);
  }, { noAck: false });
  console.log(' [%s worker] Waiting for jobs', queue);
  return { connection, channel, done };
}

run(async () => {
  const workers = [await startWorker('payment'), await startWorker('email')];

  const frontEnd = await mqtt.connectAsync(MQTT_URL, {
    clientId: 'shop-frontend', protocolVersion: 5, reconnectPeriod: 0, connectTimeout: TIMEOUT_MS,
  });
  for (const [topic, list] of Object.entries(jobs)) {
    for (const job of list) {
      // Resolves on PUBACK; a v5 PUBACK with an error reason code rejects.
      await frontEnd.publishAsync(topic, JSON.stringify(job), {
        qos: 1,
        properties: { contentType: 'application/json' },
      });
      console.log(' [x] Published %s %s (PUBACK)', topic, JSON.stringify(job));
    }
  }
  await frontEnd.endAsync();

  await Promise.all(workers.map((w) => w.done.done));
  for (const w of workers) {
    await w.channel.close(); // after the acks, so nothing is requeued
  }
  const check = await workers[0].connection.createChannel();
  for (const queue of Object.keys(jobs)) {
    const { messageCount } = await check.checkQueue(queue);
    if (messageCount !== 0) throw new Error(`${messageCount} job(s) left in ${queue}`);
  }
  console.log('All MQTT jobs processed and acked by AMQP workers; payment and email are empty');
  for (const w of workers) await w.connection.close();
});
