// MQTT.js persistent session: subscribe, go away, messages are queued, come back.
//   node mqtt_session.mjs <url> <protocolVersion 4|5> <topic prefix>
// Prints {firstSessionPresent, sessionPresent, received: [[topic, payload, qos], ...]}.
import mqtt from 'mqtt'

const [url, versionArg, prefix] = process.argv.slice(2)
const protocolVersion = Number(versionArg)
const v5 = protocolVersion === 5
const TIMEOUT_MS = 8000
const timer = setTimeout(() => { console.error('timed out'); process.exit(1) }, TIMEOUT_MS)

// Resolve with the CONNACK so that Session Present can be read.
function connect (clientId, clean, onMessage) {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url, {
      clientId,
      protocolVersion,
      clean,
      reconnectPeriod: 0,
      properties: v5 ? { sessionExpiryInterval: 60 } : undefined
    })
    if (onMessage) client.on('message', onMessage)
    client.once('connect', (connack) => resolve([client, connack]))
    client.once('error', reject)
  })
}

const clientId = `${prefix}-persistent`
const [first, firstAck] = await connect(clientId, false)
await first.subscribeAsync(`${prefix}/#`, { qos: 1 })
await first.endAsync()

const [pub] = await connect(`${prefix}-pub`, true)
for (const n of [1, 2, 3]) {
  await pub.publishAsync(`${prefix}/m${n}`, `queued${n}`, { qos: 1 })
}
await pub.endAsync()

const received = []
let done
const allIn = new Promise((resolve) => { done = resolve })
const [again, againAck] = await connect(clientId, false, (topic, payload, packet) => {
  received.push([topic, payload.toString(), packet.qos])
  if (received.length === 3) done()
})
await allIn
// End the session for good (v5: Session Expiry 0 on DISCONNECT).
await again.endAsync(false, v5 ? { properties: { sessionExpiryInterval: 0 } } : {})
clearTimeout(timer)
console.log(JSON.stringify({
  firstSessionPresent: firstAck.sessionPresent,
  sessionPresent: againAck.sessionPresent,
  received
}))
