#!/usr/bin/env node
// The work queue (tutorials 1 and 2) with an MQTT producer: MQTT has no queues, so an MQTT
// client publishes tasks to the topic `tasks` and the gateway routes them on `amq.topic` with
// routing key `tasks` into the durable queue `task_queue`, where two AMQP workers (amqplib)
// share them with prefetch 1 and manual acks.
// QoS 1 plays the part of publisher confirms: PUBACK arrives once the gateway has the task.
// One command: starts the workers, publishes four tasks over MQTT, waits until all are acked.
'use strict';

const amqp = require('amqplib');
const mqtt = require('mqtt');
const { AMQP_URL, MQTT_URL, TIMEOUT_MS, expectMessages, run } = require('./common');

const queue = 'task_queue';
const topic = 'tasks'; // MQTT topic a/b/c is AMQP routing key a.b.c on amq.topic
const tasks = ['First task.', 'Second task..', 'Third task...', 'Fourth task....'];

async function worker(name, done) {
  const connection = await amqp.connect(AMQP_URL);
  const channel = await connection.createChannel();
  await channel.assertQueue(queue, { durable: true });
  await channel.bindQueue(queue, 'amq.topic', topic);
  channel.prefetch(1);
  await channel.consume(queue, (msg) => {
    // QoS 1 arrives as a persistent message (deliveryMode 2).
    console.log(' [%s] Received %s (deliveryMode %d)', name, msg.content, msg.properties.deliveryMode);
    console.log(' [%s] Done', name);
    channel.ack(msg);
    done.add(msg.content.toString());
  }, { noAck: false });
  console.log(' [%s] Waiting for messages in %s (bound to amq.topic "%s")', name, queue, topic);
  return { connection, channel };
}

run(async () => {
  const admin = await amqp.connect(AMQP_URL);
  const adminChannel = await admin.createChannel();
  await adminChannel.assertQueue(queue, { durable: true });
  await adminChannel.purgeQueue(queue); // a durable queue keeps tasks from earlier runs

  const done = expectMessages(tasks.length, 'tasks done');
  const workers = [await worker('worker 1', done), await worker('worker 2', done)];

  const producer = await mqtt.connectAsync(MQTT_URL, {
    clientId: 'new-task', reconnectPeriod: 0, connectTimeout: TIMEOUT_MS,
  });
  for (const task of tasks) {
    await producer.publishAsync(topic, task, { qos: 1 }); // resolves on PUBACK
    console.log(" [x] Sent '%s' (PUBACK: the gateway has it)", task);
  }
  await producer.endAsync();
  await done.done;

  for (const w of workers) {
    await w.channel.close(); // after their acks: anything unacked would be requeued
    await w.connection.close();
  }
  const { messageCount } = await adminChannel.checkQueue(queue);
  if (messageCount !== 0) throw new Error(`${messageCount} task(s) left in ${queue}`);
  console.log('All %d MQTT tasks done and acked by AMQP workers; %s is empty', tasks.length, queue);
  await admin.close();
});
