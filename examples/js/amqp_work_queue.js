#!/usr/bin/env node
// RabbitMQ tutorials 1 and 2 ("Hello World!", "Work queues") with amqplib: a durable queue,
// persistent messages, prefetch 1 and manual acks. Two workers share the tasks; a task leaves the
// queue only when a worker acks it, so a worker that dies mid-task loses nothing.
// One command: starts two workers, sends four tasks, waits until all are done.
'use strict';

const amqp = require('amqplib');
const { AMQP_URL, expectMessages, run } = require('./common');

const queue = 'task_queue';
const tasks = ['First task.', 'Second task..', 'Third task...', 'Fourth task....'];

async function worker(name, done) {
  const connection = await amqp.connect(AMQP_URL);
  const channel = await connection.createChannel();
  await channel.assertQueue(queue, { durable: true });
  channel.prefetch(1); // no new task to a worker until it acked the one it has
  await channel.consume(queue, (msg) => {
    const task = msg.content.toString();
    console.log(' [%s] Received %s', name, task);
    // The tutorial sleeps a second per dot here; the work is instant in this example.
    console.log(' [%s] Done', name);
    channel.ack(msg);
    done.add(task);
  }, { noAck: false });
  console.log(' [%s] Waiting for messages in %s', name, queue);
  return { connection, channel };
}

run(async () => {
  const sender = await amqp.connect(AMQP_URL);
  const channel = await sender.createChannel();
  await channel.assertQueue(queue, { durable: true });
  await channel.purgeQueue(queue); // a durable queue keeps tasks from earlier runs

  const done = expectMessages(tasks.length, 'tasks done');
  const workers = [await worker('worker 1', done), await worker('worker 2', done)];

  for (const task of tasks) {
    channel.sendToQueue(queue, Buffer.from(task), { persistent: true });
    console.log(" [x] Sent '%s'", task);
  }
  await done.done;

  // Closing a worker's channel requeues what it left unacked: the queue must be empty.
  // (The channel first: amqplib may send connection.close ahead of other channels' acks.)
  for (const w of workers) {
    await w.channel.close();
    await w.connection.close();
  }
  const { messageCount } = await channel.checkQueue(queue);
  if (messageCount !== 0) throw new Error(`${messageCount} task(s) left in ${queue}`);
  console.log('All %d tasks done and acked; %s is empty', tasks.length, queue);
  await sender.close();
});
