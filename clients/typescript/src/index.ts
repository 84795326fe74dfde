export {
  type ApiKey,
  type ApiKeyDetails,
  type ApiKeyList,
  type CallOptions,
  type ClientEvent,
  type ClientOptions,
  type CreateKeyInput,
  type ErrorEnvelope,
  type GoLiveInput,
  type ListKeysQuery,
  type ListSessionsQuery,
  type ListStudiosQuery,
  type NewApiKey,
  type RequestIdContext,
  type RollKeyInput,
  type Scope,
  type Session,
  type SessionList,
  type Stream,
  type Studio,
  StudioGatewayClient,
  type StudioList,
} from './client.js'
export {
  type ApiErrorCode,
  type ClientErrorCode,
  type OperationId,
  StudioGatewayError,
  type StudioGatewayErrorCode,
} from './errors.js'
export type { components, operations, paths } from './openapi.generated.js'
export { type RateLimitPolicy, type RateLimitState, rateLimitOf } from './rate-limit.js'
export type { Clock, GiveUpReason, RetryOptions } from './retry.js'
