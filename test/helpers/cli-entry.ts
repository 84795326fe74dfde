// The command line from source (the bin runs the compiled dist/), for tests that spawn a process.
import { main } from '../../cli/main.js'

process.exitCode = await main(process.argv.slice(2))
