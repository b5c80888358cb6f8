// A fake time for the keeper (lib/limits/leases.ts, its Clock) and the
// in-process store (its `now`): time moves only when the test says, and
// timers fire in order, each at its own time, with every promise they start
// settled before the next. Each node gets its own Clock on the shared time;
// a node that crashed never fires a timer again.
import type { Clock } from '../../lib/limits/leases.js'

interface Timer {
  at: number
  seq: number
  fn: () => void
  owner: Node
}

interface Node {
  dead: boolean
}

// A bound on the timers one advance() may fire, so that a timer loop fails the test.
const MAX_TIMERS = 100_000

/** Lets every pending promise chain run (the in-process store's calls settle in microtasks). */
export const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

export class FakeTime {
  now = 0
  #timers = new Set<Timer>()
  #seq = 0

  /** A Clock on this time, for one node; `kill()` stops its timers for good. */
  clock (): Clock & { kill (): void } {
    const owner: Node = { dead: false }
    return {
      now: () => this.now,
      setTimeout: (fn, ms) => {
        const timer = { at: this.now + ms, seq: this.#seq++, fn, owner }
        if (!owner.dead) this.#timers.add(timer)
        return timer
      },
      clearTimeout: (timer) => { this.#timers.delete(timer as Timer) },
      kill: () => {
        owner.dead = true
        for (const timer of this.#timers) if (timer.owner === owner) this.#timers.delete(timer)
      }
    }
  }

  /** How many timers are set. */
  get pending (): number {
    return this.#timers.size
  }

  /** Moves time forward by `ms`, firing each timer due on the way, at its time; `after` runs after each. */
  async advance (ms: number, after: () => void = () => {}): Promise<void> {
    const end = this.now + ms
    for (let fired = 0; ; fired++) {
      if (fired === MAX_TIMERS) throw new Error(`more than ${MAX_TIMERS} timers in ${ms} ms`)
      let next: Timer | undefined
      for (const timer of this.#timers) {
        if (timer.at <= end && (next === undefined || timer.at < next.at || (timer.at === next.at && timer.seq < next.seq))) next = timer
      }
      if (next === undefined) break
      this.#timers.delete(next)
      this.now = Math.max(this.now, next.at)
      next.fn()
      await settle()
      after()
    }
    this.now = end
    await settle()
  }
}
