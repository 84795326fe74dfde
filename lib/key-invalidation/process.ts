import { EventEmitter } from 'node:events'
import { resolve } from 'node:path'
import type { InvalidationChannel, InvalidationHandlers } from './channel.js'

/** One emitter per data directory: gateways of one process on the same embedded store hear each other. */
const buses = new Map<string, EventEmitter>()

/**
 * The embedded store's channel: within this process. (SQLite serves one process; a second process
 * on the same file, such as the command line, is covered by KEY_CACHE_TTL.)
 */
export function processChannel(dataDir: string, handlers: InvalidationHandlers): InvalidationChannel {
  const name = resolve(dataDir)
  let bus = buses.get(name)
  if (!bus) {
    bus = new EventEmitter()
    bus.setMaxListeners(0)
    buses.set(name, bus)
  }
  const emitter = bus
  const listener = (keyId: string) => handlers.onKey(keyId)
  emitter.on('key', listener)
  return {
    name: 'process',
    async publish(keyId) {
      emitter.emit('key', keyId)
    },
    async close() {
      emitter.off('key', listener)
      if (emitter.listenerCount('key') === 0) buses.delete(name)
    },
  }
}
