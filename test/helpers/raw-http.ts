import { connect } from 'node:net'
import type { TestGateway } from './gateway.js'

/** Listens on a free loopback port (for tests that need real sockets) and returns the port. */
export async function listenLocally(gw: TestGateway): Promise<number> {
  await gw.app.listen({ port: 0, host: '127.0.0.1' })
  const address = gw.app.server.address()
  return typeof address === 'object' && address ? address.port : 0
}

/** Sends raw bytes to a listening gateway and returns what came back. */
export function rawRequest(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    let answer = ''
    socket.on('data', (chunk) => {
      answer += chunk.toString('latin1')
    })
    socket.on('end', () => resolve(answer))
    socket.on('close', () => resolve(answer))
    socket.on('error', reject)
    socket.write(bytes, 'latin1')
  })
}
