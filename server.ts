import closeWithGrace from 'close-with-grace'
import type { FastifyInstance } from 'fastify'
import { buildApp } from './app.js'
import type { Config } from './config.js'
import { DEMO_ACCOUNT, DEMO_SANDBOX_STUDIOS, DEMO_STUDIOS, type DemoSecrets, seedDemo } from './lib/demo-seed.js'
import { descriptorExhaustion, isDescriptorExhaustion } from './lib/descriptors.js'

/** How often idle keep-alive connections are closed while shutting down. */
const IDLE_SWEEP_INTERVAL_MS = 50
/** How often at most an uncaught descriptor shortage is logged: in one, it may repeat on every event. */
const SHORTAGE_LOG_INTERVAL_MS = 10_000

/**
 * Builds the app from the configuration, seeds the demo on a first start of the embedded store,
 * listens, and closes gracefully on a signal.
 */
export async function serve(config: Config, out: NodeJS.WritableStream = process.stdout): Promise<FastifyInstance> {
  const app = await buildApp(config)
  let demoSecrets: DemoSecrets | undefined
  try {
    demoSecrets = !config.production && app.store.dialect === 'sqlite' ? await seedDemo(app.store) : undefined
  } catch (error) {
    await app.close()
    throw error
  }
  const address = await listenGracefully(app, config)
  if (demoSecrets !== undefined) out.write(demoBanner(address, demoSecrets))
  return app
}

/**
 * Listens, then shuts down gracefully on SIGTERM / SIGINT (close-with-grace): the server stops
 * accepting connections, requests in flight finish (at most `SHUTDOWN_TIMEOUT`, else exit 1),
 * the app's onClose hooks close the stores and Redis, and the process exits 0. A second signal
 * exits at once with 1. An uncaught error shuts down the same way, then exits 1 — except running
 * out of file descriptors (EMFILE / ENFILE): transient, it is shed where it is known to happen
 * (lib/edge.ts, lib/descriptors.ts), and one thrown from anywhere else is logged and counted,
 * never the end of the process.
 */
export async function listenGracefully(app: FastifyInstance, config: Config): Promise<string> {
  let address: string
  try {
    address = await app.listen({ port: config.port, host: config.host })
  } catch (error) {
    await app.close()
    throw error
  }
  let unexpected: Error | undefined
  const graceful = closeWithGrace(
    {
      // Uncaught errors: below, so that a descriptor shortage can be told apart.
      skip: ['uncaughtException'],
      delay: config.shutdownTimeoutMs,
      logger: { error: (message: unknown) => app.log.error(message) },
      onSecondSignal: (signal) => app.log.error({ signal }, 'second signal: exiting at once'),
      onTimeout: (timeoutMs) =>
        app.log.error({ timeoutMs }, 'requests still in flight after SHUTDOWN_TIMEOUT: exiting anyway'),
    },
    async ({ signal, err = unexpected }) => {
      if (err) app.log.error({ err }, 'shutting down after an unexpected error')
      else app.log.info({ signal }, 'shutting down: no new connections, finishing in-flight requests')
      // Node closes idle keep-alive connections once, when closing starts; one that goes idle
      // after its in-flight request would hold the close for the whole keep-alive timeout
      // (fastify/fastify#7044). Sweep them until the close is done.
      const sweep = setInterval(() => app.server.closeIdleConnections(), IDLE_SWEEP_INTERVAL_MS)
      try {
        await app.close()
      } finally {
        clearInterval(sweep)
      }
      app.log.info('shut down cleanly')
      // close-with-grace exits 0 after a close it did not start from an error itself.
      if (unexpected !== undefined) process.exit(1)
    },
  )
  let lastShortageLog = 0
  process.on('uncaughtException', function survivingDescriptorExhaustion(error) {
    if (isDescriptorExhaustion(error)) {
      descriptorExhaustion.uncaught++
      if (Date.now() - lastShortageLog >= SHORTAGE_LOG_INTERVAL_MS) {
        lastShortageLog = Date.now()
        app.log.warn({ err: error }, 'out of file descriptors (uncaught): shedding load, not exiting')
      }
      return
    }
    process.removeListener('uncaughtException', survivingDescriptorExhaustion)
    unexpected = error
    graceful.close()
  })
  return address
}

function demoBanner(address: string, secrets: DemoSecrets): string {
  return [
    '',
    `Studio Gateway seeded a demo account on this empty store: ${DEMO_ACCOUNT}, studios ${DEMO_STUDIOS.map((s) => s.id).join(' and ')}.`,
    'Demo API key with every scope (shown once; mint another with `npx studio-gateway keys create`):',
    '',
    `  export STUDIO_KEY=${secrets.live}`,
    `  curl -H "Authorization: Bearer $STUDIO_KEY" ${address}/v1/studios`,
    '',
    `Demo test key (the sandbox: studios ${DEMO_SANDBOX_STUDIOS.map((s) => s.id).join(' and ')}, writes open, Simulate-Error; docs/test-mode.md):`,
    '',
    `  export STUDIO_TEST_KEY=${secrets.test}`,
    `  curl -H "Authorization: Bearer $STUDIO_TEST_KEY" ${address}/v1/studios`,
    '',
    '',
  ].join('\n')
}
