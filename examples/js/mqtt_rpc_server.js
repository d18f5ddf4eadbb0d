#!/usr/bin/env node
// RPC (tutorial 6) the other way round: an AMQP client calls a server that speaks MQTT 5 (a
// device, say). The AMQP client uses direct reply-to (`amq.rabbitmq.reply-to`) and publishes to
// `amq.topic` with key rpc.mqtt-fib. The MQTT 5 server, subscribed to `rpc/mqtt-fib`, sees the
// reply address as a Response Topic in the gateway's reserved namespace
// (`$amqp/reply/<queue>`) and the correlationId as Correlation Data; it answers by publishing
// to that Response Topic with the same Correlation Data, which the gateway delivers to the
// AMQP reply queue.
// One command: the MQTT server (MQTT.js), the AMQP client (amqplib), two requests.
'use strict';

const amqp = require('amqplib');
const mqtt = require('mqtt');
const { randomUUID } = require('crypto');
const { AMQP_URL, MQTT_URL, TIMEOUT_MS, expectMessages, run } = require('./common');

const REPLY_TO = 'amq.rabbitmq.reply-to';

function fibonacci(n) {
  let [a, b] = [0, 1];
  for (let i = 0; i < n; i += 1) [a, b] = [b, a + b];
  return a;
}

async function mqttServer(answers) {
  const server = await mqtt.connectAsync(MQTT_URL, {
    clientId: 'fib-server', protocolVersion: 5, reconnectPeriod: 0, connectTimeout: TIMEOUT_MS,
  });
  server.on('message', (topic, payload, packet) => {
    const { responseTopic, correlationData } = packet.properties || {};
    const n = parseInt(payload.toString(), 10);
    if (!responseTopic) return answers.fail(`request on ${topic} has no Response Topic`);
    console.log(' [.] fib(%d), Response Topic %s', n, responseTopic);
    server.publish(responseTopic, fibonacci(n).toString(), {
      qos: 1,
      properties: { correlationData },
    });
    return undefined;
  });
  await server.subscribeAsync('rpc/mqtt-fib', { qos: 1 });
  console.log(' [x] Awaiting RPC requests on rpc/mqtt-fib');
  return server;
}

run(async () => {
  const answers = expectMessages(2, 'RPC replies');
  const server = await mqttServer(answers);

  const connection = await amqp.connect(AMQP_URL);
  const channel = await connection.createChannel();
  const questions = new Map(); // correlationId -> n
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
    channel.publish('amq.topic', 'rpc.mqtt-fib', Buffer.from(n.toString()), {
      correlationId, replyTo: REPLY_TO,
    });
  }
  await answers.done;
  await connection.close();
  await server.endAsync();
});
