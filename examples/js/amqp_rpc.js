#!/usr/bin/env node
// RabbitMQ tutorial 6 ("RPC") with amqplib: a server answers fib(n) requests from `rpc_queue`.
// The client uses direct reply-to: it consumes the pseudo-queue `amq.rabbitmq.reply-to`
// (no queue to declare) and sends requests with replyTo set to it and a correlationId that
// matches each answer to its question.
// One command: starts the server, sends two requests at once, prints both answers.
'use strict';

const amqp = require('amqplib');
const { randomUUID } = require('crypto');
const { AMQP_URL, expectMessages, run } = require('./common');

const queue = 'rpc_queue';
const REPLY_TO = 'amq.rabbitmq.reply-to';

function fibonacci(n) {
  let [a, b] = [0, 1];
  for (let i = 0; i < n; i += 1) [a, b] = [b, a + b];
  return a;
}

async function rpcServer() {
  const connection = await amqp.connect(AMQP_URL);
  const channel = await connection.createChannel();
  await channel.assertQueue(queue, { durable: false });
  channel.prefetch(1);
  await channel.consume(queue, (msg) => {
    const n = parseInt(msg.content.toString(), 10);
    console.log(' [.] fib(%d)', n);
    channel.sendToQueue(msg.properties.replyTo, Buffer.from(fibonacci(n).toString()), {
      correlationId: msg.properties.correlationId,
    });
    channel.ack(msg);
  });
  console.log(' [x] Awaiting RPC requests');
  return connection;
}

run(async () => {
  const server = await rpcServer();

  const connection = await amqp.connect(AMQP_URL);
  const channel = await connection.createChannel();
  const questions = new Map(); // correlationId -> n
  const answers = expectMessages(2, 'RPC replies');
  // Direct reply-to: consume before publishing, with noAck (the pseudo-queue requires it).
  await channel.consume(REPLY_TO, (msg) => {
    const n = questions.get(msg.properties.correlationId);
    if (n === undefined) return answers.fail(`unknown correlationId ${msg.properties.correlationId}`);
    const result = Number(msg.content.toString());
    console.log(' [.] Got fib(%d) = %d', n, result);
    if (result !== fibonacci(n)) answers.fail(`fib(${n}) is not ${result}`);
    return answers.add(n);
  }, { noAck: true });

  for (const n of [10, 30]) {
    const correlationId = randomUUID();
    questions.set(correlationId, n);
    console.log(' [x] Requesting fib(%d)', n);
    channel.sendToQueue(queue, Buffer.from(n.toString()), { correlationId, replyTo: REPLY_TO });
  }
  await answers.done;
  await connection.close();
  await server.close();
});
