import type { FastifyBaseLogger } from 'fastify'
import { type Bindings, type ChildLoggerOptions, type Level, type LevelWithSilent, type Logger, levels } from 'pino'

type LogArguments = [unknown, ...unknown[]]

/**
 * The logger of one request, made a pino child only when the request logs something. Fastify's
 * default builds a child for every request (its bindings serialised, its methods set up), which
 * most requests never use: the access log is written without it (plugins/observe.ts), and at
 * warn a request that goes well logs nothing at all.
 */
class RequestLogger {
  #child: Logger | undefined
  readonly #parent: Logger
  readonly #bindings: Bindings
  readonly #options: ChildLoggerOptions

  constructor(parent: Logger, bindings: Bindings, options: ChildLoggerOptions) {
    this.#parent = parent
    this.#bindings = bindings
    this.#options = options
  }

  #logger(): Logger {
    this.#child ??= this.#parent.child(this.#bindings, this.#options)
    return this.#child
  }

  /** Whether a line at `level` would be written: checked before a child is made for it. */
  #enabled(level: Level): boolean {
    return (levels.values[level] as number) >= (levels.values[this.level] ?? Number.POSITIVE_INFINITY)
  }

  get level(): LevelWithSilent {
    return (this.#child?.level ?? this.#options.level ?? this.#parent.level) as LevelWithSilent
  }

  set level(level: LevelWithSilent) {
    this.#logger().level = level
  }

  fatal(...args: LogArguments) {
    if (this.#enabled('fatal')) this.#logger().fatal(...(args as [string]))
  }
  error(...args: LogArguments) {
    if (this.#enabled('error')) this.#logger().error(...(args as [string]))
  }
  warn(...args: LogArguments) {
    if (this.#enabled('warn')) this.#logger().warn(...(args as [string]))
  }
  info(...args: LogArguments) {
    if (this.#enabled('info')) this.#logger().info(...(args as [string]))
  }
  debug(...args: LogArguments) {
    if (this.#enabled('debug')) this.#logger().debug(...(args as [string]))
  }
  trace(...args: LogArguments) {
    if (this.#enabled('trace')) this.#logger().trace(...(args as [string]))
  }
  silent() {}

  child(bindings: Bindings, options?: ChildLoggerOptions): FastifyBaseLogger {
    return this.#logger().child(bindings, options) as FastifyBaseLogger
  }
}

/** Fastify's `childLoggerFactory`: a request logger that becomes a pino child on first use. */
export function lazyChildLogger(
  logger: FastifyBaseLogger,
  bindings: Bindings,
  options: ChildLoggerOptions,
): FastifyBaseLogger {
  return new RequestLogger(logger as unknown as Logger, bindings, options) as unknown as FastifyBaseLogger
}
