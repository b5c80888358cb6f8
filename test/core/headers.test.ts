// The core's header rules alone.
import t from 'tap'
import { toHeaderPairs } from '../../lib/core/headers.js'

t.test('headers given as an object: its own enumerable keys, in order, never inherited ones', async (t) => {
  const headers = Object.create({ 'X-Inherited': 'no' }, {
    'X-First': { value: '1', enumerable: true },
    'X-Hidden': { value: 'no', enumerable: false },
    'X-Second': { value: ['2', 3], enumerable: true }
  }) as Record<string, string>
  t.strictSame(toHeaderPairs(headers), [['X-First', '1'], ['X-Second', '2'], ['X-Second', '3']])
  t.strictSame(toHeaderPairs(new Map([['X-Map', 'm']])), [['X-Map', 'm']], 'an iterable of pairs')
  t.strictSame(toHeaderPairs(undefined), [])
})
