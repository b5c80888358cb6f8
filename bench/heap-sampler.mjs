// Loaded into a server under test by `npm run bench:alloc` (node --import):
// V8's sampling heap profiler, started and stopped over IPC. Objects the GC
// has already collected are counted too, so the profile is what the process
// allocated in between, not what it kept.
import { Session } from 'node:inspector'

const session = new Session()
session.connect()
const post = (method, params) => new Promise((resolve, reject) => {
  session.post(method, params, (err, result) => err ? reject(err) : resolve(result))
})

// Bytes allocated by each function (its own allocations, not its callees'),
// as `name file:line`.
function byFunction (profile) {
  const functions = new Map()
  const visit = (node) => {
    const { functionName, url, lineNumber } = node.callFrame
    const where = `${functionName || '(anonymous)'} ${url.split('/').slice(-2).join('/')}:${lineNumber + 1}`
    if (node.selfSize > 0) functions.set(where, (functions.get(where) ?? 0) + node.selfSize)
    for (const child of node.children) visit(child)
  }
  visit(profile.head)
  return functions
}

process.on('message', async (message) => {
  if (message.cmd === 'heapStart') {
    await post('HeapProfiler.enable')
    await post('HeapProfiler.startSampling', {
      samplingInterval: message.interval,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true
    })
    process.send({ id: message.id })
  } else if (message.cmd === 'heapStop') {
    const { profile } = await post('HeapProfiler.stopSampling')
    const functions = [...byFunction(profile)]
    const total = functions.reduce((sum, [, bytes]) => sum + bytes, 0)
    process.send({ id: message.id, total, functions })
  }
})
