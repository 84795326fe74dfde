import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type BrowserContext, chromium, type Page } from 'playwright-core'
import t, { type Test } from 'tap'
import { startGateway } from './helpers/gateway.js'

/**
 * The explorer in a real browser: headless Chromium (Debian's `chromium` package) opens /docs on a
 * listening gateway, pastes a key in "Authorize" and calls getStudio from the page.
 */

const CHROMIUM = '/usr/bin/chromium'
// The machine has no network: without these, Chromium waits on background connections.
const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

/** A browser with a fresh profile (no key remembered from another run), closed at the end. */
async function openBrowser(t: Test): Promise<BrowserContext> {
  const profile = await mkdtemp(join(tmpdir(), 'studio-gateway-chromium-'))
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_FLAGS,
  })
  // A loaded 2-core machine renders slowly; the default 30 s per action is not a bound worth failing on.
  context.setDefaultTimeout(60_000)
  t.teardown(async () => {
    await context.close()
    await rm(profile, { recursive: true, force: true })
  })
  return context
}

const getStudio = '#operations-studios-getStudio'

/** Expands an operation of the explorer (`#operations-<tag>-<operationId>`) until its studioId input shows. */
async function expand(page: Page, operation: string) {
  const block = page.locator(operation)
  const input = block.locator('input[placeholder="studioId"]')
  // Expanding is a click on the summary, which toggles: click only while the block is closed, and
  // give a slow machine time to render before trying again (a second click would close it).
  for (let attempt = 1; !(await input.isVisible()); attempt++) {
    if (attempt > 5) throw new Error(`${operation} never expanded`)
    const open = await block.evaluate((element) => element.classList.contains('is-open'))
    if (!open) await block.locator('.opblock-summary').click()
    await input.waitFor({ timeout: 5000 }).catch(() => {})
  }
  return block
}

/** Runs an expanded operation for `studioId` as the explorer pre-filled it; the status and body shown. */
async function execute(page: Page, operation: string, studioId: string) {
  const block = await expand(page, operation)
  await block.locator('input[placeholder="studioId"]').fill(studioId)
  await block.locator('button.execute').click()
  const status = block.locator('.live-responses-table .response .response-col_status')
  await status.first().waitFor()
  const body = await block.locator('.live-responses-table .response-col_description .microlight').first().textContent()
  const shown = { status: ((await status.first().textContent()) ?? '').trim(), body: JSON.parse(body ?? 'null') }
  // Clear the answer, so that the next call of this operation waits for its own.
  await block.locator('button.btn-clear').click()
  return shown
}

/** Pastes `secret` in "Authorize" as the Bearer key. */
async function authorize(page: Page, secret: string) {
  await page.locator('button.authorize').click()
  await page.locator('#auth-bearer-value').fill(secret)
  await page.locator('.auth-container:has(#auth-bearer-value) button[type=submit]').click()
  await page.locator('button.btn-done').first().click()
}

const skip = !existsSync(CHROMIUM) && `browser test skipped: ${CHROMIUM} is not installed (apt-get install -y chromium)`

t.test('the explorer at /docs calls the API with a pasted key', { skip }, async (t) => {
  const gw = await startGateway(t)
  const address = await gw.app.listen({ port: 0, host: '127.0.0.1' })
  const { secret } = await gw.key()
  const studioId = await gw.studio('acct_test', 'Main Stage')

  t.test('without a key the call answers the 401 envelope', async (t) => {
    const page = await (await openBrowser(t)).newPage()
    await page.goto(`${address}/docs`)
    await page.locator(getStudio).waitFor()
    const { status, body } = await execute(page, getStudio, studioId)
    t.equal(status, '401')
    t.equal(body.error.code, 'invalid_key')
    t.match(body.error.requestId, /^req_[0-9a-f]{16}$/)
  })

  t.test('with a key pasted in Authorize the call answers 200 with the studio', async (t) => {
    const page = await (await openBrowser(t)).newPage()
    await page.goto(`${address}/docs`)
    await authorize(page, secret)
    const { status, body } = await execute(page, getStudio, studioId)
    t.equal(status, '200')
    t.match(body, { id: studioId, name: 'Main Stage', createdAt: String })

    await page.reload()
    await page.locator(getStudio).waitFor()
    const again = await execute(page, getStudio, studioId)
    t.equal(again.status, '200', 'the key survives a reload (persistAuthorization)')
  })
})

t.test('the explorer goes live, offline and live again, as it pre-fills each call', { skip }, async (t) => {
  const gw = await startGateway(t, { env: { WRITES_ENABLED: 'true' } })
  const address = await gw.app.listen({ port: 0, host: '127.0.0.1' })
  const { secret } = await gw.key()
  const studioId = await gw.studio('acct_test', 'Main Stage')
  const page = await (await openBrowser(t)).newPage()
  await page.goto(`${address}/docs`)
  await page.locator(getStudio).waitFor()
  t.equal(await page.title(), 'Studio Gateway · API explorer', "the tab shows the product's name")
  const logo = page.locator('#swagger-ui .topbar .topbar-wrapper a.link img')
  t.match(await logo.getAttribute('src'), /^data:image\/svg\+xml;base64,/, 'the top bar shows our logo')
  t.match(
    Buffer.from((await logo.getAttribute('src'))?.split(',')[1] ?? '', 'base64').toString(),
    />Studio Gateway</,
    "the logo is the product's name",
  )
  await authorize(page, secret)

  const goLive = '#operations-stream-goLive'
  const goOffline = '#operations-stream-goOffline'
  const liveBlock = await expand(page, goLive)
  t.equal(await liveBlock.locator('input[placeholder="Idempotency-Key"]').inputValue(), '', 'no key is pre-filled')
  t.same(
    JSON.parse(await liveBlock.locator('textarea.body-param__text').inputValue()),
    { title: 'Friday Q&A: the new studio tour' },
    'the body is pre-filled with a realistic title',
  )
  const live = await execute(page, goLive, studioId)
  t.equal(live.status, '200', JSON.stringify(live.body))
  t.match(live.body, { studioId, status: 'live', title: 'Friday Q&A: the new studio tour' })

  const offlineBlock = await expand(page, goOffline)
  t.equal(await offlineBlock.locator('input[placeholder="Idempotency-Key"]').inputValue(), '', 'no key is pre-filled')
  const offline = await execute(page, goOffline, studioId)
  t.equal(offline.status, '200', JSON.stringify(offline.body))
  t.match(offline.body, { studioId, status: 'offline', title: null })

  const again = await execute(page, goLive, studioId)
  t.equal(again.status, '200', 'a second go-live from the explorer works too')
  t.match(again.body, { status: 'live' })
})
