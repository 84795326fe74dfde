import { StudioGatewayClient, type StudioGatewayError } from '@studio-gateway/client'

/**
 * The consumer's own code under test: take a studio live, and report the outcome the way this
 * application needs it. The client already retried what the spec calls transient; what reaches
 * here is final, and the application branches on `error.code` only.
 */
export type GoLiveOutcome =
  | { readonly ok: true; readonly status: string }
  | {
      readonly ok: false
      readonly code: string
      /** Worth trying again later (the client gave up retrying it for now). */
      readonly transient: boolean
      /** Only on insufficient_scope: the scope to ask for. */
      readonly requiredScope: string | undefined
      readonly requestId: string | undefined
      readonly attempts: number
    }

export async function goLive(client: StudioGatewayClient, studioId: string, title: string): Promise<GoLiveOutcome> {
  try {
    const stream = await client.goLive(studioId, { title })
    return { ok: true, status: stream.status }
  } catch (error) {
    const failure = error as StudioGatewayError
    if (failure.name !== 'StudioGatewayError') throw error
    return {
      ok: false,
      code: failure.code,
      transient: failure.transient,
      requiredScope: failure.requiredScope,
      requestId: failure.requestId,
      attempts: failure.attempts,
    }
  }
}

export interface ConnectOptions {
  readonly baseUrl: string
  readonly apiKey: string
  /** The fetch the client uses; CI wraps it to add Simulate-Error. */
  readonly fetch?: typeof fetch
  readonly maxAttempts?: number
  readonly onEvent?: ConstructorParameters<typeof StudioGatewayClient>[0]['onEvent']
}

/** The client as this application configures it: short backoffs, a bounded number of attempts. */
export function connect(options: ConnectOptions): StudioGatewayClient {
  return new StudioGatewayClient({
    baseUrl: options.baseUrl,
    apiKey: options.apiKey,
    retry: { maxAttempts: options.maxAttempts ?? 3, baseDelayMs: 50, maxDelayMs: 400 },
    timeoutMs: 15_000,
    ...(options.fetch ? { fetch: options.fetch } : {}),
    ...(options.onEvent ? { onEvent: options.onEvent } : {}),
  })
}
