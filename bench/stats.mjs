// Statistics shared by the benchmark scripts.

/** The median: the middle value, or the mean of the two middle values. */
export function median (values) {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/**
 * A 95% confidence interval for the median of a sample, free of any
 * assumption about its distribution: the k-th smallest and k-th largest
 * values, with k the largest for which fewer than k of n values fall below the
 * median with probability ≤ 2.5% (binomial, p = 1/2). null below 6 values.
 */
export function medianInterval (values) {
  const sorted = [...values].sort((a, b) => a - b)
  const n = sorted.length
  let below = 0
  let term = 0.5 ** n
  let k = 0
  while (below + term <= 0.025) {
    below += term
    term = term * (n - k) / (k + 1)
    k++
  }
  return k === 0 ? null : [sorted[k - 1], sorted[n - k]]
}

/** The median of a sample with its 95% interval (null below 6 values). */
export function medianWithInterval (values) {
  return { value: median(values), ci: medianInterval(values) }
}

/** An interval as `low–high`, or '–' when there is none. */
export function formatInterval (ci, digits) {
  return ci === null ? '–' : `${ci[0].toFixed(digits)}–${ci[1].toFixed(digits)}`
}
