// A gateway process whose studio reads take SLOW_MS, for the graceful-shutdown tests: it builds the
// real app on the SQLite store in DATA_DIR, with getStudio slowed down, and listens through the
// same listenGracefully as `serve`. Each slow read prints "slow read started" once it is in flight.
import { setTimeout as sleep } from 'node:timers/promises'
import { buildApp } from '../../app.js'
import { loadConfig } from '../../config.js'
import { listenGracefully } from '../../server.js'

const config = loadConfig(process.env)
const slowMs = Number(process.env.SLOW_MS ?? '1000')
const app = await buildApp(config, {
  studios: (_store, studios) => ({
    ...studios,
    async getStudio(ctx, studioId) {
      process.stdout.write('slow read started\n')
      await sleep(slowMs)
      return studios.getStudio(ctx, studioId)
    },
  }),
})
const address = await listenGracefully(app, config)
process.stdout.write(`slow gateway at ${address}\n`)
