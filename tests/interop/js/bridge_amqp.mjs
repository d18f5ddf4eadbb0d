// amqplib on the AMQP side of the bridge tests: one JSON object per stdout line.
// Usage: AMQP_URL=amqp://guest:guest@127.0.0.1:5672 node bridge_amqp.mjs MODE ARGS...
//   consume BINDING COUNT      bind a queue to amq.topic, print {ready}, then COUNT messages
//   publish KEY BODY OPTIONS   publish to amq.topic with amqplib options (JSON), wait for confirm
//   worker BINDING             answer one request: reply to amq.topic with its x-reply-to-topic
//   request KEY BODY MODE      publish with reply_to (MODE plain: a queue, direct: direct
//                              reply-to) and a correlation id, print what comes back
import amqp from 'amqplib';
import { randomUUID } from 'crypto';

const EXCHANGE = 'amq.topic';
const [mode, ...args] = process.argv.slice(2);

// Buffers (AMQP byte arrays and non-UTF-8 long strings) print as {"$bytes": hex}.
function emit(value) {
  const replacer = function replace(key, item) {
    const raw = this[key];
    return Buffer.isBuffer(raw) ? { $bytes: raw.toString('hex') } : item;
  };
  process.stdout.write(`${JSON.stringify(value, replacer)}\n`);
}

function describe(message) {
  const p = message.properties;
  return {
    exchange: message.fields.exchange,
    routingKey: message.fields.routingKey,
    body: message.content.toString(),
    properties: {
      contentType: p.contentType,
      correlationId: p.correlationId,
      replyTo: p.replyTo,
      deliveryMode: p.deliveryMode,
      expiration: p.expiration,
      headers: p.headers,
    },
  };
}

function nextMessage(channel, queue, options) {
  return new Promise((resolve, reject) => {
    channel.consume(queue, (message) => resolve(message), options).catch(reject);
  });
}

function publishConfirmed(channel, exchange, key, body, options) {
  return new Promise((resolve, reject) => {
    channel.publish(exchange, key, Buffer.from(body), options, (err) => (err ? reject(err) : resolve()));
  });
}

const connection = await amqp.connect(process.env.AMQP_URL);
const timer = setTimeout(() => {
  process.stderr.write(`bridge_amqp.mjs ${mode}: timed out\n`);
  process.exit(2);
}, 15000);
try {
  const channel = await connection.createConfirmChannel();
  if (mode === 'consume') {
    const [binding, count] = args;
    const { queue } = await channel.assertQueue('', { exclusive: true });
    await channel.bindQueue(queue, EXCHANGE, binding);
    emit({ ready: true });
    let left = Number(count);
    await new Promise((resolve, reject) => {
      channel.consume(queue, (message) => {
        emit(describe(message));
        channel.ack(message);
        left -= 1;
        if (left === 0) resolve();
      }).catch(reject);
    });
  } else if (mode === 'publish') {
    const [key, body, options] = args;
    await publishConfirmed(channel, EXCHANGE, key, body, JSON.parse(options));
    emit({ confirmed: true });
  } else if (mode === 'worker') {
    const [binding] = args;
    const { queue } = await channel.assertQueue('', { exclusive: true });
    await channel.bindQueue(queue, EXCHANGE, binding);
    emit({ ready: true });
    const request = await nextMessage(channel, queue, { noAck: true });
    emit(describe(request));
    const replyKey = request.properties.headers['x-reply-to-topic'];
    await publishConfirmed(channel, EXCHANGE, replyKey, `re:${request.content}`, {
      correlationId: request.properties.correlationId,
      contentType: 'text/plain',
    });
    emit({ replied: replyKey });
  } else if (mode === 'request') {
    const [key, body, replyMode] = args;
    let replyTo = 'amq.rabbitmq.reply-to';
    if (replyMode === 'plain') {
      replyTo = (await channel.assertQueue('', { exclusive: true })).queue;
    }
    const reply = nextMessage(channel, replyTo, { noAck: true });
    const correlationId = `amqplib-${randomUUID().slice(0, 8)}`;
    await publishConfirmed(channel, EXCHANGE, key, body, { replyTo, correlationId });
    emit({ sent: { replyTo, correlationId } });
    emit({ reply: describe(await reply) });
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
} finally {
  clearTimeout(timer);
  await connection.close();
}
