// amqplib (promise API) against the gateway: one JSON object of observations on stdout.
// Usage: AMQP_URL=amqp://guest:guest@127.0.0.1:5672 node amqp_features.mjs
import amqp from 'amqplib';
import { randomUUID } from 'crypto';

const url = process.env.AMQP_URL;
const id = randomUUID().slice(0, 8);
const results = {};

function withTimeout(promise, what, ms = 5000) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function nextMessage(channel, queue, options = { noAck: true }) {
  let resolveFirst;
  const first = new Promise((resolve) => { resolveFirst = resolve; });
  const { consumerTag } = await channel.consume(queue, (message) => resolveFirst(message), options);
  const message = await withTimeout(first, `a message on ${queue}`);
  await channel.cancel(consumerTag);
  return message;
}

const connection = await amqp.connect(url);
results.serverProduct = connection.connection.serverProperties.product;
try {
  // Publisher confirms and a mandatory return.
  const confirm = await connection.createConfirmChannel();
  const { queue: plain } = await confirm.assertQueue('', { exclusive: true });
  await new Promise((resolve, reject) =>
    confirm.sendToQueue(plain, Buffer.from('confirmed'), {}, (err) => (err ? reject(err) : resolve())));
  results.confirmed = true;
  const returned = new Promise((resolve) => confirm.once('return', resolve));
  confirm.publish('amq.direct', `nobody-${id}`, Buffer.from('bounced'), { mandatory: true });
  const bounce = await withTimeout(returned, 'basic.return');
  results.returned = {
    body: bounce.content.toString(),
    replyCode: bounce.fields.replyCode,
    replyText: bounce.fields.replyText,
  };

  // basic.get and get-empty.
  const got = await confirm.get(plain, { noAck: true });
  results.get = { body: got.content.toString(), messageCount: got.fields.messageCount };
  results.getEmpty = (await confirm.get(plain)) === false;

  // nack without requeue goes to the dead-letter exchange.
  const channel = await connection.createChannel();
  const { queue: dead } = await channel.assertQueue('', { exclusive: true });
  const { queue: work } = await channel.assertQueue('', {
    exclusive: true, deadLetterExchange: '', deadLetterRoutingKey: dead,
  });
  channel.sendToQueue(work, Buffer.from('poison'));
  const poison = await nextMessage(channel, work, { noAck: false });
  channel.nack(poison, false, false);
  const deadLettered = await nextMessage(channel, dead);
  results.deadLettered = {
    body: deadLettered.content.toString(),
    reason: deadLettered.properties.headers['x-death'][0].reason,
  };

  // Prefetch: two of five delivered while none is acked.
  const { queue: limited } = await channel.assertQueue('', { exclusive: true });
  for (let i = 0; i < 5; i++) channel.sendToQueue(limited, Buffer.from(String(i)));
  await channel.prefetch(2);
  const held = [];
  const two = new Promise((resolve) => {
    channel.consume(limited, (message) => {
      held.push(message);
      if (held.length === 2) resolve();
    });
  });
  await withTimeout(two, 'two prefetched messages');
  const check = await channel.checkQueue(limited);
  results.prefetch = { delivered: held.length, ready: check.messageCount };
  channel.ackAll();

  // Direct reply-to RPC: the reply consumer and the request share a channel.
  const server = await connection.createChannel();
  const { queue: rpc } = await server.assertQueue(`rpc-${id}`, { autoDelete: true });
  await server.consume(rpc, (request) => {
    server.sendToQueue(request.properties.replyTo, Buffer.from(request.content.toString().toUpperCase()), {
      correlationId: request.properties.correlationId,
    });
  }, { noAck: true });
  const client = await connection.createChannel();
  const reply = new Promise((resolve) => {
    client.consume('amq.rabbitmq.reply-to', resolve, { noAck: true });
  });
  await client.checkQueue('amq.rabbitmq.reply-to');
  client.sendToQueue(rpc, Buffer.from('ping'), { replyTo: 'amq.rabbitmq.reply-to', correlationId: 'c1' });
  const answer = await withTimeout(reply, 'a direct reply');
  results.directReply = { body: answer.content.toString(), correlationId: answer.properties.correlationId };

  // A large message crosses in many frames both ways.
  const big = Buffer.alloc(3 * 1024 * 1024, 7);
  channel.sendToQueue(plain, big);
  const bigBack = await nextMessage(channel, plain);
  results.large = { size: bigBack.content.length, intact: bigBack.content.equals(big) };

  // A 404 closes the channel; the connection carries on.
  const doomed = await connection.createChannel();
  doomed.on('error', () => {});
  try {
    await doomed.checkQueue(`missing-${id}`);
    results.notFound = null;
  } catch (err) {
    results.notFound = { code: err.code, message: err.message };
  }
  const after = await connection.createChannel();
  results.afterNotFound = (await after.checkExchange('amq.topic')) !== undefined;
} finally {
  await connection.close();
}
console.log(JSON.stringify(results));
