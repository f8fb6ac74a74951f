#!/usr/bin/env bash
# Server benchmark, side by side: `hearth serve` and llama.cpp's llama-server (the PyPI-built
# peer, scripts/build-peer.sh) with the same model, context per slot, parallel slots and
# threads. For each number of concurrent streams, every client sends streaming
# /v1/completions requests (distinct prompts of ~100 tokens, a fixed number of new tokens with
# ignore_eos, temperature 0.8 with a per-request seed) back to back; reported are the
# aggregate generated tokens/s over the phase and the time to first token (p50 / p99).
#
#   scripts/bench-server.sh [-m MODEL.gguf] [-c CTX_PER_SLOT] [--parallel N] [-t THREADS]
#                           [-n NEW_TOKENS] [-r REQUESTS_PER_CLIENT] [--streams "1 4 8 16"]
#
# Defaults: the default model, -c 1024, --parallel 8, all cores, -n 64, -r 3, streams 1 4 8 16.
# Prints a Markdown table (and writes it to target/bench-server.md).
set -euo pipefail
cd "$(dirname "$0")/.."

model="" ctx=1024 parallel=8 threads=$(nproc) n=64 r=3 streams="1 4 8 16"
while [ $# -gt 0 ]; do
  case "$1" in
    -m) model=$2; shift 2 ;;
    -c) ctx=$2; shift 2 ;;
    --parallel) parallel=$2; shift 2 ;;
    -t) threads=$2; shift 2 ;;
    -n) n=$2; shift 2 ;;
    -r) r=$2; shift 2 ;;
    --streams) streams=$2; shift 2 ;;
    *) echo "bench-server: unknown argument $1" >&2; exit 2 ;;
  esac
done

bin=$(scripts/build-peer.sh)
cargo build --release --quiet -p hearth-cli
hearth=target/release/hearth
if [ -z "$model" ]; then
  model=$($hearth fetch-fixtures | sed -n 's/^model: *//p')
fi

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_health() {
  for _ in $(seq 600); do
    if curl -sf "http://127.0.0.1:$1/health" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "bench-server: server on port $1 did not become healthy" >&2
  return 1
}

cat > "$tmp/load.py" <<'EOF'
import http.client, json, sys, threading, time

port, label, n_new, reqs, streams = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5].split()
text = ("The history of the printing press begins with movable type in East Asia and continues "
        "with Gutenberg's press in Mainz around 1440, which made books cheaper, spread literacy, "
        "and changed science, religion and politics across Europe within a century. ")

def one(i, out):
    body = json.dumps({"prompt": f"Request {i}. {text} Write a story about it:", "max_tokens": n_new,
                       "ignore_eos": True, "temperature": 0.8, "seed": i, "stream": True,
                       "cache_prompt": False})
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t0 = time.perf_counter()
    c.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    resp = c.getresponse()
    assert resp.status == 200, (resp.status, resp.read()[:300])
    ttft, n = None, 0
    for line in resp:
        line = line.strip()
        if not line.startswith(b"data: ") or line == b"data: [DONE]":
            continue
        d = json.loads(line[6:])
        ch = d.get("choices") or []
        if ch and ch[0].get("text"):
            n += 1
            if ttft is None:
                ttft = time.perf_counter() - t0
    c.close()
    out.append((ttft if ttft is not None else time.perf_counter() - t0, n))

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]

one(10**6, [])  # warm-up
for s in streams:
    s = int(s)
    out, threads = [], []
    def client(k):
        for j in range(reqs):
            one(k * 1000 + j, out)
    t0 = time.perf_counter()
    for k in range(s):
        threads.append(threading.Thread(target=client, args=(k,)))
        threads[-1].start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    tokens = len(out) * n_new
    ttfts = [o[0] for o in out]
    print(json.dumps({"server": label, "streams": s, "requests": len(out), "tokens": tokens,
                      "tok_s": tokens / wall, "ttft_p50_ms": pct(ttfts, 50) * 1e3,
                      "ttft_p99_ms": pct(ttfts, 99) * 1e3, "wall_s": wall}), flush=True)
EOF

run_hearth() {
  port=$(free_port)
  $hearth serve -m "$model" --port "$port" --parallel "$parallel" -c "$ctx" -t "$threads" \
    >"$tmp/hearth.out" 2>"$tmp/hearth.err" &
  pids+=($!); local pid=$!
  wait_health "$port"
  python3 "$tmp/load.py" "$port" hearth "$n" "$r" "$streams" | tee -a "$tmp/results.jsonl" >&2
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

run_llama() {
  port=$(free_port)
  "$bin/llama-server" -m "$model" --host 127.0.0.1 --port "$port" -np "$parallel" \
    -c $((ctx * parallel)) -t "$threads" --no-webui \
    >"$tmp/llama.out" 2>"$tmp/llama.err" &
  pids+=($!); local pid=$!
  wait_health "$port"
  python3 "$tmp/load.py" "$port" llama-server "$n" "$r" "$streams" | tee -a "$tmp/results.jsonl" >&2
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

run_hearth
run_llama

python3 - "$tmp/results.jsonl" "$model" "$ctx" "$parallel" "$threads" "$n" "$r" <<'EOF' | tee target/bench-server.md
import json, sys
path, model, ctx, par, thr, n, r = sys.argv[1:]
rows = [json.loads(l) for l in open(path)]
by = {(x["server"], x["streams"]): x for x in rows}
print(f"model {model.split('/')[-1]}, context {ctx} per slot, {par} slots, {thr} threads, "
      f"{n} new tokens per request, {r} requests per client\n")
print("| streams | hearth tok/s | llama-server tok/s | ratio | hearth TTFT p50 / p99 ms | llama-server TTFT p50 / p99 ms |")
print("|---:|---:|---:|---:|---:|---:|")
for s in sorted({x["streams"] for x in rows}):
    h, l = by.get(("hearth", s)), by.get(("llama-server", s))
    if not h or not l:
        continue
    print(f"| {s} | {h['tok_s']:.1f} | {l['tok_s']:.1f} | {h['tok_s'] / l['tok_s']:.2f}x | "
          f"{h['ttft_p50_ms']:.0f} / {h['ttft_p99_ms']:.0f} | {l['ttft_p50_ms']:.0f} / {l['ttft_p99_ms']:.0f} |")
EOF
