import fp from 'fastify-plugin'
import secureJson from 'secure-json-parse'
import { BODY_LIMIT, invalidRequest } from '../lib/errors.js'

/**
 * Request bodies are JSON only, at most BODY_LIMIT bytes: any other content type is refused (415
 * inside Fastify, which the catalog maps to 400), an empty body is no body, and `__proto__` and
 * `constructor.prototype` keys are refused.
 */
export default fp(
  async function bodyParser(app) {
    app.removeAllContentTypeParsers()
    app.addContentTypeParser(
      'application/json',
      { parseAs: 'string', bodyLimit: BODY_LIMIT },
      (_request, body, done) => {
        done(null, parseJsonBody(body as string))
      },
    )
  },
  { name: 'body-parser' },
)

function parseJsonBody(text: string): unknown {
  if (text.trim() === '') return null
  try {
    return secureJson.parse(text, undefined, { protoAction: 'error', constructorAction: 'error' })
  } catch (error) {
    if (error instanceof SyntaxError && /prototype/.test(error.message)) {
      throw invalidRequest('body must not contain a "__proto__" or "constructor.prototype" key')
    }
    throw invalidRequest('body is not valid JSON')
  }
}
