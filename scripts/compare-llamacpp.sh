#!/usr/bin/env bash
# compare-llamacpp.sh — side-by-side prefill/decode throughput of llama.cpp's
# llama-bench and `specsweep bench` on the same GGUF model (issue #8).
#
# Usage: scripts/compare-llamacpp.sh LLAMA_BENCH_BINARY MODEL.gguf [extra specsweep bench flags]
#
# Runs both tools with the same test matrix (pp128, tg64 at depths 0 and 2048,
# 2 threads, 3 repetitions, an f16 KV cache as llama-bench's default; override with
# P, N, D, T, R and KV (f16 | f32 | q8_0 | q4_0 | q4_1 | q5_0 | q5_1 | iq4_nl: llama-bench -ctk/-ctv,
# specsweep --kv-type; K/V such as q8_0/q4_0 for different key and value types; a block type adds
# llama-bench -fa 1, which a quantized V cache needs) env vars), then joins the JSON outputs on (n_prompt, n_gen, n_depth) and prints a
# markdown table: llama.cpp avg_ts, specsweep avg_ts and specsweep/llama.cpp ratio.
# The specsweep binary is ${SPECSWEEP:-/var/tmp/specsweep-target/debug/specsweep}.
set -euo pipefail

if [ "$#" -lt 2 ]; then
  echo "usage: $0 LLAMA_BENCH_BINARY MODEL.gguf [extra specsweep bench flags]" >&2
  exit 2
fi
LLAMA_BENCH=$1
MODEL=$2
shift 2
SPECSWEEP=${SPECSWEEP:-/var/tmp/specsweep-target/debug/specsweep}
P=${P:-128}
N=${N:-64}
D=${D:-0,2048}
T=${T:-2}
R=${R:-3}
KV=${KV:-f16}
# KV is one type for K and V, or K/V (q8_0/q4_0: llama-bench -ctk q8_0 -ctv q4_0)
CTK=${KV%%/*}
CTV=${KV#*/}
FA=()
for t in "$CTK" "$CTV"; do
  case "$t" in
    f16|f32) ;;
    q8_0|q4_0|q4_1|q5_0|q5_1|iq4_nl) FA=(-fa 1) ;;  # llama.cpp quantizes a V cache only with flash attention
    *) echo "error: KV must be f16, f32, q8_0, q4_0, q4_1, q5_0, q5_1 or iq4_nl, or K/V of two of them, got: $KV" >&2; exit 2 ;;
  esac
done

[ -x "$LLAMA_BENCH" ] || { echo "error: llama-bench binary not executable: $LLAMA_BENCH" >&2; exit 2; }
[ -x "$SPECSWEEP" ] || { echo "error: specsweep binary not executable: $SPECSWEEP" >&2; exit 2; }
[ -f "$MODEL" ] || { echo "error: model file not found: $MODEL" >&2; exit 2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "# llama.cpp: $LLAMA_BENCH -m $MODEL -t $T -p $P -n $N -d $D -r $R -ctk $CTK -ctv $CTV ${FA[*]} -o json" >&2
"$LLAMA_BENCH" -m "$MODEL" -t "$T" -p "$P" -n "$N" -d "$D" -r "$R" -ctk "$CTK" -ctv "$CTV" "${FA[@]}" -o json >"$tmp/llama.json"
echo "# specsweep: $SPECSWEEP bench --model $MODEL -p $P -n $N -d $D -t $T -r $R --kv-type $KV -o json $*" >&2
"$SPECSWEEP" bench --model "$MODEL" -p "$P" -n "$N" -d "$D" -t "$T" -r "$R" --kv-type "$KV" -o json "$@" >"$tmp/specsweep.json"

python3 - "$tmp/llama.json" "$tmp/specsweep.json" "$MODEL" "$*" "$CTK" "$CTV" <<'PY'
import json, sys

llama_path, spec_path, model, extra, ctk, ctv = sys.argv[1:7]

def load(path, tool):
    try:
        with open(path) as f:
            rows = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        sys.exit(f"error: cannot parse {tool} JSON output {path}: {e}")
    out = {}
    for r in rows:
        key = (int(r["n_prompt"]), int(r["n_gen"]), int(r.get("n_depth", 0)))
        got = (r.get("type_k", ctk), r.get("type_v", ctv))
        if got != (ctk, ctv):
            sys.exit(f"error: {tool} ran a {got[0]}/{got[1]} (K/V) cache, expected {ctk}/{ctv}")
        out[key] = r
    return out

llama = load(llama_path, "llama-bench")
spec = load(spec_path, "specsweep")

def name(key):
    p, n, d = key
    t = f"pp{p}" if p and not n else f"tg{n}" if n and not p else f"pp{p}+tg{n}"
    return f"{t} @ d{d}"

kv = f"{ctk} (K and V)" if ctk == ctv else f"K {ctk}, V {ctv}"
print(f"\nmodel: `{model}`  KV cache: {kv}  specsweep flags: `{extra or '(none)'}`\n")
print("| test | llama.cpp t/s | specsweep t/s | specsweep / llama.cpp |")
print("|---|---:|---:|---:|")
for key in sorted(set(llama) | set(spec), key=lambda k: (k[2], k[1] != 0, k[0], k[1])):
    a = llama.get(key, {}).get("avg_ts")
    b = spec.get(key, {}).get("avg_ts")
    fa = f"{a:.2f} ± {llama[key].get('stddev_ts', 0):.2f}" if a is not None else "—"
    fb = f"{b:.2f} ± {spec[key].get('stddev_ts', 0):.2f}" if b is not None else "—"
    ratio = f"{b / a:.3f}" if a and b else "—"
    print(f"| {name(key)} | {fa} | {fb} | {ratio} |")
PY
