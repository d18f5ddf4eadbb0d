#!/usr/bin/env node
// RPC (tutorial 6) with an MQTT 5 client calling an AMQP server. MQTT 5 request/response:
// the request carries a Response Topic (where to answer) and Correlation Data (which question
// this is). The gateway hands them to AMQP as the header `x-reply-to-topic` (the topic in AMQP
// form, e.g. rpc.replies.fib-client) and `correlationId`. The AMQP server answers by publishing
// to `amq.topic` with that routing key and the same correlationId; the MQTT client receives the
// answer on its response topic with its Correlation Data.
// One command: the AMQP server (amqplib), the MQTT client (MQTT.js), two requests.
'use strict';

const amqp = require('amqplib');
const mqtt = require('mqtt');
const { randomUUID } = require('crypto');
const { AMQP_URL, MQTT_URL, TIMEOUT_MS, expectMessages, run } = require('./common');

const queue = 'rpc_queue';
const requestTopic = 'rpc/fib'; // routing key rpc.fib
const clientId = 'fib-client';
const responseTopic = `rpc/replies/${clientId}`;

function fibonacci(n) {
  let [a, b] = [0, 1];
  for (let i = 0; i < n; i += 1) [a, b] = [b, a + b];
  return a;
}

async function rpcServer() {
  const connection = await amqp.connect(AMQP_URL);
  const channel = await connection.createChannel();
  await channel.assertQueue(queue, { durable: false });
  await channel.bindQueue(queue, 'amq.topic', 'rpc.fib');
  channel.prefetch(1);
  await channel.consume(queue, (msg) => {
    const n = parseInt(msg.content.toString(), 10);
    const { replyTo, correlationId, headers } = msg.properties;
    const answer = Buffer.from(fibonacci(n).toString());
    if (replyTo) {
      channel.sendToQueue(replyTo, answer, { correlationId }); // an AMQP caller
    } else {
      const replyKey = headers['x-reply-to-topic']; // an MQTT 5 caller's Response Topic
      console.log(' [.] fib(%d), reply to amq.topic "%s"', n, replyKey);
      channel.publish('amq.topic', replyKey, answer, { correlationId });
    }
    channel.ack(msg);
  });
  console.log(' [x] Awaiting RPC requests on %s (bound to amq.topic "rpc.fib")', queue);
  return connection;
}

run(async () => {
  const server = await rpcServer();

  const client = await mqtt.connectAsync(MQTT_URL, {
    clientId, protocolVersion: 5, reconnectPeriod: 0, connectTimeout: TIMEOUT_MS,
  });
  const questions = new Map(); // Correlation Data -> n
  const answers = expectMessages(2, 'RPC replies');
  client.on('message', (topic, payload, packet) => {
    const correlation = packet.properties && packet.properties.correlationData;
    const n = correlation && questions.get(correlation.toString());
    if (n === undefined) return answers.fail(`unexpected reply on ${topic}`);
    console.log(' [.] Got fib(%d) = %s on %s', n, payload, topic);
    if (Number(payload.toString()) !== fibonacci(n)) answers.fail(`fib(${n}) is not ${payload}`);
    return answers.add(n);
  });
  await client.subscribeAsync(responseTopic, { qos: 1 });

  for (const n of [10, 30]) {
    const correlationId = randomUUID();
    questions.set(correlationId, n);
    console.log(' [x] Requesting fib(%d)', n);
    await client.publishAsync(requestTopic, n.toString(), {
      qos: 1,
      properties: { responseTopic, correlationData: Buffer.from(correlationId) },
    });
  }
  await answers.done;
  await client.endAsync();
  await server.close();
});
