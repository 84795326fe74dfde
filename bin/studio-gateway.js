#!/usr/bin/env node
// The package's command line. It runs the TypeScript compiled to dist/ (`npm ci` compiles it through
// the `prepare` script), compiling again first only when a source is newer than the last build.
import { ensureFreshDist } from './fresh-dist.js'

ensureFreshDist()
const { main } = await import('../dist/cli/main.js')
process.exitCode = await main(process.argv.slice(2))
