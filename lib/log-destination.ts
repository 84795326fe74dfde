import { pino } from 'pino'

/**
 * The log's destination in production: pino's SonicBoom on stdout, writing synchronously, handed
 * what was logged once per turn of the event loop rather than line by line.
 *
 * One write per turn: a line each would be a write(2) per request at info, and SonicBoom measures
 * the text it is handed on every write. Lines logged during a turn (every request answered in it)
 * go out together when it ends, in order.
 *
 * Synchronous: the turn's lines are written before the next turn starts, so none is held in
 * memory while a write is in flight. Written asynchronously (SonicBoom's `sync: false`), lines
 * logged while a write waited on the pipe (its reader drains it when it gets to it) were kept as
 * strings, outlived the young generation's collections, and were promoted to the old generation
 * as garbage: under load at info the process's memory peak was 10–20 MB higher, for no gain in
 * throughput (bench/RESULTS.md). The cost is the usual one of synchronous logging: a reader of
 * stdout that stops reading slows the gateway down instead of growing its memory without bound.
 * What is still pending when the process exits is written first (this listener is installed
 * before SonicBoom's own).
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
  const boom = pino.destination({ dest: 1, sync: true })

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
