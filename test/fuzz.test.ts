import t from 'tap'
import { fuzz } from './helpers/fuzz.js'

// A quick run in `npm test`; `npm run fuzz` runs 100 000 (FUZZ_RUNS) and prints the figures.
// FUZZ_SEED replays a run.
const runs = Number(process.env.FUZZ_RUNS ?? '3000')
const seed = process.env.FUZZ_SEED === undefined ? undefined : Number(process.env.FUZZ_SEED)

t.test(
  'every answer to a random request is a known status, the envelope or a declared success, with a safe request id',
  async (t) => {
    const result = await fuzz(t, runs, seed)
    const summary = `fuzz: ${result.passed + (result.failure ? 1 : 0)} cases, ${result.failure ? 1 : 0} failures (seed ${result.seed})`
    t.comment(summary)
    if (process.env.FUZZ_REPORT === '1') process.stderr.write(`${summary}\n`)
    t.equal(result.failure, undefined, 'no failure')
    t.equal(result.passed, runs, `${runs} cases passed`)
    for (const gw of result.target.gateways) {
      const logs = gw.logText()
      t.notOk(
        result.target.secrets.some((secret) => logs.includes(secret)),
        'no key secret in any log line',
      )
    }
  },
)
