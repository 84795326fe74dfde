import swagger, { type SwaggerTransformObject } from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import fp from 'fastify-plugin'
import {
  DOCUMENT_INFO,
  DOCUMENT_TAGS,
  describeOperations,
  factsOf,
  type OperationFacts,
  SECURITY_SCHEMES,
} from '../lib/openapi-document.js'

/** The explorer's top-bar logo: the product's name, in the top bar's white. */
const EXPLORER_LOGO = `<svg xmlns="http://www.w3.org/2000/svg" width="260" height="40" viewBox="0 0 260 40">
<text x="0" y="28" font-family="sans-serif" font-size="24" font-weight="bold" fill="#ffffff">${DOCUMENT_INFO.title}</text>
</svg>`

/** The tab's icon: the product's initials. */
const EXPLORER_ICON = `<svg xmlns="http://www.w3.org/2000/svg" width="32" height="32" viewBox="0 0 32 32">
<rect width="32" height="32" rx="6" fill="#1b1b1b"/>
<text x="16" y="22" text-anchor="middle" font-family="sans-serif" font-size="15" font-weight="bold" fill="#ffffff">SG</text>
</svg>`

/**
 * The OpenAPI 3.1 description of the API, generated from the route schemas, and the explorer.
 * Registered before the routes, so its `onRoute` hooks see all of them. `/docs` (Swagger UI),
 * `/openapi.json` and `/openapi.yaml` need no key and are not part of the described API.
 */
export default fp(
  async function openapi(app) {
    const facts = new Map<string, OperationFacts>()
    app.addHook('onRoute', (route) => {
      const entry = factsOf(route)
      if (entry) facts.set(...entry)
    })

    await app.register(swagger, {
      openapi: {
        openapi: '3.1.0',
        info: DOCUMENT_INFO,
        // Relative: the explorer and clients call the host that served the document.
        servers: [{ url: '/', description: 'This gateway' }],
        tags: DOCUMENT_TAGS,
        components: { securitySchemes: SECURITY_SCHEMES },
      },
      // Shared schemas keep their `$id` as the component name (the default is `def-0`, `def-1`…).
      refResolver: {
        buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`),
      },
      transformObject: (documentObject) => {
        if (!('openapiObject' in documentObject)) throw new Error('an OpenAPI 3 document was expected')
        const described = describeOperations(documentObject.openapiObject as Record<string, unknown>, facts)
        return described as ReturnType<SwaggerTransformObject>
      },
    })

    await app.register(swaggerUi, {
      routePrefix: '/docs',
      // The product's name in the tab, the top bar and the icon, not Swagger's or Fastify's.
      logo: { type: 'image/svg+xml', content: EXPLORER_LOGO, href: '/docs', target: '_self' },
      theme: {
        title: `${DOCUMENT_INFO.title} · API explorer`,
        favicon: [
          { filename: 'favicon.svg', rel: 'icon', sizes: 'any', type: 'image/svg+xml', content: EXPLORER_ICON },
        ],
      },
      uiConfig: {
        // Paste a key once in "Authorize"; it survives a reload. Every operation can be called at once.
        persistAuthorization: true,
        tryItOutEnabled: true,
        displayOperationId: true,
        displayRequestDuration: true,
        defaultModelsExpandDepth: 1,
      },
    })

    app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger())
    app.get('/openapi.yaml', { schema: { hide: true } }, async (_request, reply) =>
      reply.type('application/yaml; charset=utf-8').send(app.swagger({ yaml: true })),
    )
  },
  { name: 'openapi' },
)
