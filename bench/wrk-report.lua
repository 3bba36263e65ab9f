-- Prints one machine-readable line for bench/run:
-- WRKRESULT <bytes read> <duration us> <requests completed> <socket errors> <non-2xx/3xx>
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRKRESULT %d %d %d %d %d\n", summary.bytes, summary.duration,
    summary.requests, e.connect + e.read + e.write + e.timeout, e.status))
end
