import type { FastifyPluginAsync } from 'fastify'
import key from './key.js'
import keys from './keys.js'
import studios from './studios/index.js'
import sessions from './studios/sessions.js'
import stream from './studios/stream.js'

/** Every /v1 route; the checks in front of them are registered by app.ts in the /v1 scope. */
const v1Routes: FastifyPluginAsync = async (app) => {
  await app.register(studios)
  await app.register(stream)
  await app.register(sessions)
  await app.register(key)
  await app.register(keys)
}

export default v1Routes
