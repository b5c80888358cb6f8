// Marks a handshake function that drives the engine itself (asgi() does)
// instead of returning a decision: the plugin hands it the engine.
export const kDrivesEngine = Symbol('fastify-ws-gate.drives-engine')
