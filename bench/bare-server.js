// The ceiling the gateway is compared with: Fastify with its logger off, one route, the same JSON
// body the gateway answered for the same path (captured by the harness and passed in the
// environment), serialized per request as a plain handler would. Plain JavaScript, run by plain
// node, so no TypeScript loader sits in this process either.
import Fastify from 'fastify'

const { BENCH_ROUTE, BENCH_STATUS, BENCH_BODY, HOST = '127.0.0.1', PORT = '0' } = process.env
if (!BENCH_ROUTE || !BENCH_STATUS || !BENCH_BODY) {
  process.stderr.write('bare-server: BENCH_ROUTE, BENCH_STATUS and BENCH_BODY are required\n')
  process.exit(2)
}
const status = Number(BENCH_STATUS)
const body = JSON.parse(BENCH_BODY)

const app = Fastify({ logger: false })
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
