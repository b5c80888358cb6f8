// The core's reason phrases are Node's: the JSON bodies the gate writes name
// statuses exactly as the HTTP/1.1 wire's status lines do.
import { STATUS_CODES } from 'node:http'
import t from 'tap'
import { statusText } from '../../lib/core/status.js'

t.test('statusText() agrees with Node\'s STATUS_CODES for every status from 200 to 599', async (t) => {
  const differ: number[] = []
  for (let status = 200; status <= 599; status++) if (statusText(status) !== STATUS_CODES[status]) differ.push(status)
  t.strictSame(differ, [])
  t.equal(statusText(401), 'Unauthorized')
  t.equal(statusText(599), undefined)
})
