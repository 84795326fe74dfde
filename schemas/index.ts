import { ErrorCodeName, ErrorEnvelope } from './error-envelope.js'
import { ApiKeyDetails, ApiKeyList, NewApiKey } from './keys.js'
import { ApiKeyInfo, ScopeName, Session, SessionList, Stream, Studio, StudioList } from './resources.js'

/** Schemas with an `$id`, registered once at the root so every route and the OpenAPI share them. */
export const sharedSchemas = [
  ErrorCodeName,
  ErrorEnvelope,
  ScopeName,
  Studio,
  Stream,
  Session,
  StudioList,
  SessionList,
  ApiKeyInfo,
  ApiKeyDetails,
  NewApiKey,
  ApiKeyList,
]
