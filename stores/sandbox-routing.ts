import type { CallContext, StudioService } from './types.js'

/**
 * With an upstream studio service (UPSTREAM_URL), live data comes from the upstream and the
 * sandbox from the gateway's own store: the upstream has no notion of test data, a consumer's CI
 * must not need it to be up, and sandbox writes must never reach it. Each call goes to one of the
 * two by the caller's mode; nothing of one is ever seen through the other.
 */
export function serveSandboxFromStore(live: StudioService, sandbox: StudioService): StudioService {
  const serviceOf = (ctx: CallContext) => (ctx.mode === 'test' ? sandbox : live)
  return {
    listStudios: (ctx, page) => serviceOf(ctx).listStudios(ctx, page),
    getStudio: (ctx, studioId) => serviceOf(ctx).getStudio(ctx, studioId),
    getStream: (ctx, studioId) => serviceOf(ctx).getStream(ctx, studioId),
    listSessions: (ctx, studioId, page) => serviceOf(ctx).listSessions(ctx, studioId, page),
    goLive: (ctx, studioId, input) => serviceOf(ctx).goLive(ctx, studioId, input),
    goOffline: (ctx, studioId) => serviceOf(ctx).goOffline(ctx, studioId),
  }
}
