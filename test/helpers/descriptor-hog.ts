// The gateway as `serve` runs it, which can be made to run out of file descriptors on demand, for
// the descriptor tests: SIGWINCH opens /dev/null until the process has none left and holds them,
// SIGURG gives them back. SIGTTIN throws an EMFILE error from a timer (a path nobody guarded),
// SIGTTOU a plain error (a bug). Each signal is acknowledged on stdout.
import { closeSync, openSync } from 'node:fs'
import { loadConfig } from '../../config.js'
import { serve } from '../../server.js'

await serve(loadConfig(process.env))
const held: number[] = []
process.on('SIGWINCH', () => {
  try {
    for (;;) held.push(openSync('/dev/null', 'r'))
  } catch {
    // EMFILE: every descriptor is taken
  }
  process.stdout.write(`holding ${held.length} descriptors\n`)
})
process.on('SIGURG', () => {
  for (const fd of held.splice(0)) closeSync(fd)
  process.stdout.write('descriptors released\n')
})
process.on('SIGTTIN', () => {
  setTimeout(() => {
    throw Object.assign(new Error('EMFILE: too many open files, open'), { code: 'EMFILE' })
  })
  process.stdout.write('throwing EMFILE\n')
})
process.on('SIGTTOU', () => {
  setTimeout(() => {
    throw new Error('a bug nobody caught')
  })
  process.stdout.write('throwing a bug\n')
})
process.stdout.write('hog ready\n')
