const BEARER = /^Bearer +(\S+) *$/i

/**
 * The token of an `Authorization: Bearer <token>` header value (RFC 6750; the scheme is
 * case-insensitive). Undefined for a missing header and for any other scheme or shape.
 */
export function bearerToken(authorization: string | undefined): string | undefined {
  return authorization === undefined ? undefined : BEARER.exec(authorization.trim())?.[1]
}
