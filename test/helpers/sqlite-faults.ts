import { execFile, spawn } from 'node:child_process'
import { mkdtemp, open, rm } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { Test } from 'tap'

const run = promisify(execFile)
const betterSqlite3 = createRequire(import.meta.url).resolve('better-sqlite3')

/**
 * Another process (as the command line would be) holding the write lock of the SQLite file at
 * `file`: a second better-sqlite3 connection in a child process that began an IMMEDIATE
 * transaction and wrote a row it has not committed. `release()` rolls it back and ends the child.
 */
export async function holdSqliteWriteLock(t: Test, file: string) {
  const script = `
    const Database = require(${JSON.stringify(betterSqlite3)})
    const db = new Database(${JSON.stringify(file)})
    db.exec('begin immediate')
    db.prepare("insert into settings (name, value) values ('held_by_another_process', 'x')").run()
    process.stdout.write('locked\\n')
    process.stdin.on('data', () => { db.exec('rollback'); db.close(); process.exit(0) })
  `
  const child = spawn(process.execPath, ['-e', script], { stdio: ['pipe', 'pipe', 'inherit'] })
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()))
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL')
    return exited
  })
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('locked')) resolve()
    })
    child.on('exit', (code) => reject(new Error(`the lock holder exited with ${code} before locking`)))
  })
  return {
    async release() {
      child.stdin.write('release\n')
      await exited
    },
  }
}

/**
 * Why a tmpfs cannot be mounted here (mounting needs root), or false when it can: tried once,
 * with a mount that is removed at once.
 */
export async function tinyDiskSkipReason(): Promise<string | false> {
  const dir = await mkdtemp(join(tmpdir(), 'studio-gateway-mount-'))
  try {
    await run('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir])
    await run('umount', [dir])
    return false
  } catch {
    return 'a tmpfs cannot be mounted here (it needs root): the full-disk case is not exercised'
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/** A directory on a tmpfs of `sizeBytes` (a disk that can be filled), unmounted at the end of `t`. */
export async function mountTinyDisk(t: Test, sizeBytes: number): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'studio-gateway-full-'))
  await run('mount', ['-t', 'tmpfs', '-o', `size=${sizeBytes}`, 'tmpfs', dir])
  t.teardown(async () => {
    await run('umount', ['-l', dir])
    await rm(dir, { recursive: true, force: true })
  })
  return dir
}

/** Fills the file system of `dir` with a file until writes fail with ENOSPC; returns its path. */
export async function fillDisk(dir: string): Promise<string> {
  const path = join(dir, 'filler')
  const file = await open(path, 'w')
  try {
    for (const size of [64 * 1024, 4096, 512, 1]) {
      const chunk = Buffer.alloc(size)
      try {
        for (;;) await file.write(chunk)
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error
      }
    }
  } finally {
    await file.close()
  }
  return path
}
