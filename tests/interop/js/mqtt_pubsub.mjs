// MQTT.js publisher and subscriber against the gateway, over TCP or WebSocket.
//   node mqtt_pubsub.mjs <url> <protocolVersion 4|5> <topic prefix>
// Prints one JSON object: what the subscriber received and how the SUBSCRIBE was granted.
// Covers QoS 0/1/2, a wildcard filter, a retained message, and with MQTT 5 the application
// properties, Topic Alias in both directions and Subscription Identifiers.
import mqtt from 'mqtt'

const [url, versionArg, prefix] = process.argv.slice(2)
const protocolVersion = Number(versionArg)
const v5 = protocolVersion === 5
const TIMEOUT_MS = 8000

function connect (clientId, extra = {}) {
  return mqtt.connectAsync(url, {
    clientId, protocolVersion, reconnectPeriod: 0, connectTimeout: TIMEOUT_MS, ...extra
  })
}

function fail (why) {
  console.error(why)
  process.exit(1)
}

const timer = setTimeout(() => fail('timed out'), TIMEOUT_MS)

const pub = await connect(`${prefix}-pub`, v5 ? { autoUseTopicAlias: true } : {})
await pub.publishAsync(`${prefix}/ret`, 'retained', { qos: 1, retain: true })

// The subscriber accepts aliases from the server (v5): MQTT.js resolves them, except on a
// QoS 2 PUBLISH (it emits the stored packet's empty topic at PUBREL), so every QoS gets its own
// topic here and only QoS 1 messages repeat one.
const sub = await connect(`${prefix}-sub`, v5 ? { properties: { topicAliasMaximum: 10 } } : {})
const received = []
let expected = v5 ? 7 : 4
let done
const allIn = new Promise((resolve) => { done = resolve })
sub.on('message', (topic, payload, packet) => {
  const props = packet.properties || {}
  received.push({
    topic,
    payload: payload.toString(),
    qos: packet.qos,
    retain: packet.retain,
    alias: props.topicAlias ?? null,
    contentType: props.contentType ?? null,
    correlationData: props.correlationData ? props.correlationData.toString('hex') : null,
    responseTopic: props.responseTopic ?? null,
    userProperties: props.userProperties ?? null,
    payloadFormatIndicator: props.payloadFormatIndicator ?? null,
    messageExpiryInterval: props.messageExpiryInterval ?? null,
    subscriptionIdentifier: props.subscriptionIdentifier ?? null
  })
  if (received.length === expected) done()
})
const subOpts = v5 ? { properties: { subscriptionIdentifier: 42 } } : {}
const granted = await sub.subscribeAsync({ [`${prefix}/+/c`]: { qos: 2 }, [`${prefix}/ret`]: { qos: 1 } }, subOpts)

for (const qos of [0, 1, 2]) {
  await pub.publishAsync(`${prefix}/q${qos}/c`, `q${qos}`, { qos })
}
if (v5) {
  const properties = {
    contentType: 'text/plain',
    correlationData: Buffer.from([0, 1, 254, 255]),
    responseTopic: `${prefix}/reply`,
    userProperties: { site: '7', tags: ['a', 'b'] },
    payloadFormatIndicator: true,
    messageExpiryInterval: 120
  }
  await pub.publishAsync(`${prefix}/p/c`, 'props', { qos: 1, properties })
  // The publisher registers alias 3 and then sends the alias alone (autoUseTopicAlias).
  await pub.publishAsync(`${prefix}/alias/c`, 'alias-set', { qos: 1, properties: { topicAlias: 3 } })
  await pub.publishAsync(`${prefix}/alias/c`, 'alias-used', { qos: 1 })
}

await allIn
await sub.endAsync()
// Clear the retained message again: the gateway is shared with other tests.
await pub.publishAsync(`${prefix}/ret`, '', { qos: 1, retain: true })
await pub.endAsync()
clearTimeout(timer)
console.log(JSON.stringify({ granted: granted.map((g) => [g.topic, g.qos]), received }))
