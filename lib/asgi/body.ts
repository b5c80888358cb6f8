// The body of an ASGI denial response, as a stream the engine can send: one
// chunk per `websocket.http.response.body` message (boundaries kept, so the
// response is streamed as the application sends it), with backpressure (a
// send resolves once the engine has taken its chunk), and a failure that
// takes effect only after the chunks already sent have gone out.
import { Readable } from 'node:stream'

interface Pending { chunk: Buffer | null, taken: () => void }

export class AsgiBody extends Readable {
  readonly #pending: Pending[] = []
  #wanted = false
  #failure: Error | undefined

  // No read-ahead: a chunk is taken only when the engine asks for the next.
  constructor () {
    super({ objectMode: true, highWaterMark: 0 })
  }

  /** Queues a chunk (null ends the body); resolves when the engine has taken it. */
  send (chunk: Buffer | null): Promise<void> {
    // The client left and the engine destroyed us: nothing more will be taken.
    if (this.destroyed) return Promise.resolve()
    return new Promise((resolve) => {
      this.#pending.push({ chunk, taken: resolve })
      this.#flush()
    })
  }

  /** Ends the body with an error, after what was already sent. */
  fail (err: Error): void {
    this.#failure = err
    this.#flush()
  }

  override _read (): void {
    this.#wanted = true
    this.#flush()
  }

  override _destroy (err: Error | null, callback: (err?: Error | null) => void): void {
    for (const { taken } of this.#pending.splice(0)) taken()
    callback(err)
  }

  #flush (): void {
    while (this.#wanted && this.#pending.length > 0) {
      const { chunk, taken } = this.#pending.shift() as Pending
      this.#wanted = this.push(chunk)
      taken()
    }
    if (this.#wanted && this.#failure !== undefined) this.destroy(this.#failure)
  }
}
