import type { FastifyReply } from 'fastify'

/** What Fastify sets on a JSON answer it serializes itself: a kept text goes out with the same. */
const JSON_CONTENT_TYPE = 'application/json; charset=utf-8'

/**
 * Answers kept as JSON text. A store that answers from memory hands out the same object again and
 * again (a cached studio, a cached page of the list: immutable until the store replaces them);
 * its answer is serialized once, by the route's own response schema (Fastify's `reply.serialize`,
 * the very function Fastify would call), kept beside the object, and sent as is while the object
 * is the one the store gives. Keyed weakly: a text lives as long as the object it was made from.
 *
 * `variant` is what else the answer holds beside the object (a list's next cursor): a different
 * one is serialized anew.
 */
export function createKeptJson<K extends object>() {
  const texts = new WeakMap<K, { readonly variant: string | null; readonly text: string }>()
  return function sendKept(reply: FastifyReply, key: K, payload: unknown = key, variant: string | null = null): void {
    let kept = texts.get(key)
    if (kept === undefined || kept.variant !== variant) {
      // The route's serializers are JSON ones (lib/schema-compilers.ts): their output is text.
      kept = { variant, text: reply.serialize(payload) as string }
      texts.set(key, kept)
    }
    // A string with a JSON content type is sent as it is: Fastify does not serialize it again.
    reply.type(JSON_CONTENT_TYPE).send(kept.text)
  }
}
