import { randomBytes } from 'node:crypto'
import closeWithGrace from 'close-with-grace'
import type { FastifyInstance } from 'fastify'
import { buildApp } from './app.js'
import type { Config } from './config.js'
import { DEMO_ACCOUNT, DEMO_STUDIOS, seedDemo } from './lib/demo-seed.js'
import { openStore } from './stores/index.js'
import type { SqlStore } from './stores/types.js'

/** How long in-flight requests get to finish after SIGTERM / SIGINT before the process exits anyway. */
export const SHUTDOWN_GRACE_MS = 10_000

/** The secret that signs pagination cursors: kept in the store so every instance on it agrees. */
export async function cursorSecretOf(store: SqlStore): Promise<Buffer> {
  const encoded = await store.settings.getOrCreate('cursor_secret', () => randomBytes(32).toString('base64url'))
  return Buffer.from(encoded, 'base64url')
}

/** Opens the store, seeds the demo on a first start, listens, and closes gracefully on a signal. */
export async function serve(config: Config, out: NodeJS.WritableStream = process.stdout): Promise<FastifyInstance> {
  const store = await openStore(config)
  const demoSecret = !config.production && store.dialect === 'sqlite' ? await seedDemo(store) : undefined
  const app = await buildApp({
    config,
    keys: store.keys,
    studios: store.studios,
    cursorSecret: await cursorSecretOf(store),
    dependencyChecks: { [store.dialect]: () => store.ping() },
  })
  app.addHook('onClose', async () => store.close())

  closeWithGrace({ delay: SHUTDOWN_GRACE_MS }, async ({ signal, err }) => {
    if (err) app.log.error({ err }, 'shutting down after an unexpected error')
    else app.log.info({ signal }, 'shutting down: finishing in-flight requests')
    await app.close()
  })

  const address = await app.listen({ port: config.port, host: config.host })
  if (demoSecret !== undefined) out.write(demoBanner(address, demoSecret))
  return app
}

function demoBanner(address: string, secret: string): string {
  return [
    '',
    `Studio Gateway seeded a demo account on this empty store: ${DEMO_ACCOUNT}, studios ${DEMO_STUDIOS.map((s) => s.id).join(' and ')}.`,
    'Demo API key with every scope (shown once; mint another with `npx studio-gateway keys create`):',
    '',
    `  export STUDIO_KEY=${secret}`,
    `  curl -H "Authorization: Bearer $STUDIO_KEY" ${address}/v1/studios`,
    '',
    '',
  ].join('\n')
}
