# --cell-types on a small gene panel: the second type's responses redraw about half of
# each perturbation's downstream genes from the pool, which 50-60 genes can exhaust
# (this hung: the draw retried forever). Each run must finish (timeout 60 s: a hang
# fails the test instead of stalling ctest), and every perturbation of every type
# must keep --downstream distinct genes.
set -euo pipefail
mkdir -p "$WORK_DIR" && cd "$WORK_DIR"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
i=0
while read -r extra; do
  i=$((i + 1))
  rm -f "small$i".*
  # shellcheck disable=SC2086 # extra holds several options
  if ! timeout 60 "$MPIEXEC" --oversubscribe -n 2 "$PERTSCORE" simulate --cells 100 --perturbations 3 --cell-types 2 \
    $extra --out "small$i" --quiet </dev/null; then
    echo "FAIL: simulate $extra did not finish (exit code above, 124 = timeout)"; exit 1
  fi
  "$PYTHON" - "small$i.effects.tsv" "$extra" <<'PY'
import collections, sys
path, extra = sys.argv[1], sys.argv[2]
words = extra.split()
down = int(words[words.index("--downstream") + 1]) if "--downstream" in words else 20
genes = collections.defaultdict(list)
for line in open(path).read().splitlines()[1:]:
    pert, gene, lfc, role = line.split("\t")
    if role == "downstream":
        genes[pert].append((gene, float(lfc)))
types = {p.split("@")[1] for p in genes}
assert types == {"type1", "type2"}, f"{extra}: types {types}"
assert len(genes) == 6, f"{extra}: {sorted(genes)}"
for pert, g in genes.items():
    names = [n for n, _ in g]
    assert len(names) == down and len(set(names)) == down, f"{extra}: {pert} has {len(set(names))} distinct of {down}"
for p in {q.split("@")[0] for q in genes}:
    assert genes[p + "@type1"] != genes[p + "@type2"], f"{extra}: {p} responds the same in both types"
print(f"ok: {extra}: 3 perturbations x 2 types, {down} distinct downstream genes each, types differ")
PY
done <<'CASES'
--genes 60
--genes 50
--genes 60 --type-genes 5
--genes 50 --downstream 5
--genes 100
CASES
echo "small panels: all checks passed"
