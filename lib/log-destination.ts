import { pino } from 'pino'

/**
 * The log's destination in production: pino's asynchronous SonicBoom on stdout, handed what was
 * logged once per turn of the event loop rather than line by line.
 *
 * Why: SonicBoom appends each line to the text it has not written yet and measures that text's
 * byte length on every write, which flattens it in memory each time: at info (an access-log line
 * per request) that was about 2.5 KB allocated per request, growing with the load. One write per
 * turn of the loop measures it once. Lines keep their order; what is still pending when the
 * process exits is written first (this listener is installed before SonicBoom's own).
 */
export function stdoutDestination() {
  let pending = ''
  let scheduled = false
  // Installed before pino.destination registers its exit flush, so it runs first.
  process.once('exit', () => {
    try {
      handOver()
      boom.flushSync()
    } catch {
      // stdout is gone (a closed pipe): nothing can be written any more.
    }
  })
  const boom = pino.destination({ dest: 1, sync: false })

  function handOver() {
    scheduled = false
    if (pending === '') return
    const chunk = pending
    pending = ''
    boom.write(chunk)
  }

  return {
    write(line: string): boolean {
      pending += line
      if (!scheduled) {
        scheduled = true
        setImmediate(handOver)
      }
      return true
    },
    /** What pino calls when it must write everything now (a fatal line, an exit). */
    flushSync() {
      handOver()
      boom.flushSync()
    },
  }
}
