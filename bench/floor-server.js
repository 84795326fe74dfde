// The contract floor: bare Fastify answering the same body with the same response headers the
// gateway sends for the same request (their names and values, captured by the harness), set from
// an async onRequest hook, with an async onResponse hook, as the gateway's pipeline does. What
// this costs over bench/bare-server.js is the cost of the contract itself (the headers every
// answer must carry, two hooks); what the gateway costs over this is our own code's.
import Fastify from 'fastify'

const { BENCH_ROUTE, BENCH_STATUS, BENCH_BODY, BENCH_HEADERS, HOST = '127.0.0.1', PORT = '0' } = process.env
if (!BENCH_ROUTE || !BENCH_STATUS || !BENCH_BODY || !BENCH_HEADERS) {
  process.stderr.write('floor-server: BENCH_ROUTE, BENCH_STATUS, BENCH_BODY and BENCH_HEADERS are required\n')
  process.exit(2)
}
const status = Number(BENCH_STATUS)
const body = JSON.parse(BENCH_BODY)
/** [name, value] pairs; a value with `{id}` gets a fresh value of the same shape per request. */
const headers = Object.entries(JSON.parse(BENCH_HEADERS))

let sequence = 0
const app = Fastify({ logger: false })
app.addHook('onRequest', async (_request, reply) => {
  sequence++
  for (const [name, value] of headers) {
    reply.header(name, name === 'x-request-id' ? `req_${sequence.toString(16).padStart(16, '0')}` : value)
  }
})
app.addHook('onResponse', async () => {})
app.get(BENCH_ROUTE, async (_request, reply) => {
  reply.code(status)
  return body
})

await app.listen({ host: HOST, port: Number(PORT) })
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.once(signal, () => {
    app.close().then(() => process.exit(0))
  })
}
